"""Incident response: threat models, STIX 2.1 sharing, the model registry, forensics,
model repair.

Most of it works on what the other layers write (manifests, scan reports, gateway
alerts, model files) and keeps torch out: it reads JSON, YAML and SQLite. ``repair``
acts on a model (issue #5).
"""
