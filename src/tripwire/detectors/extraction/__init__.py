"""Detectors of extraction (filled in by later work; see docs/architecture.md)."""
