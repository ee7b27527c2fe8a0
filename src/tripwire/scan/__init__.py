"""Scans: orchestrate detectors over data and models into reports and findings."""
