"""Detectors of poisoning (filled in by later work; see docs/architecture.md)."""
