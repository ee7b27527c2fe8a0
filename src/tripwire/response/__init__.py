"""Incident response: acting on what the scans found (model repair first; registry,
rollback, forensics and STIX export arrive with issue #7)."""
