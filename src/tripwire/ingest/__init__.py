"""Ingestion: record where each sample came from and check that nothing changed since."""

from tripwire.ingest.provenance import (
    HASH_ALGORITHM,
    MANIFEST_VERSION,
    DatasetDescription,
    Manifest,
    ManifestEntry,
    SampleChange,
    VerifyResult,
    build_manifest,
    describe_dataset,
    read_manifest,
    verify_dataset,
    verify_findings,
    write_manifest,
)

__all__ = [
    "HASH_ALGORITHM",
    "MANIFEST_VERSION",
    "DatasetDescription",
    "Manifest",
    "ManifestEntry",
    "SampleChange",
    "VerifyResult",
    "build_manifest",
    "describe_dataset",
    "read_manifest",
    "verify_dataset",
    "verify_findings",
    "write_manifest",
]
