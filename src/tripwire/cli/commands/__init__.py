"""One module per command; each exposes ``register(subparsers) -> parser``."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]


def _registrars() -> list[Callable[..., argparse.ArgumentParser]]:
    from tripwire.cli.commands import (
        attack,
        bench,
        demo,
        detectors,
        evaluate,
        export_stix,
        forensics,
        guard,
        guard_train,
        pipeline,
        playbook,
        provenance,
        registry,
        repair,
        scan_data,
        scan_model,
        threat_model,
        train,
    )

    return [
        demo.register,
        train.register,
        evaluate.register,
        provenance.register_manifest,
        provenance.register_verify,
        detectors.register,
        attack.register,
        bench.register,
        guard_train.register,
        guard.register,
        scan_data.register_scan,
        scan_data.register_clean,
        scan_model.register,
        repair.register,
        threat_model.register,
        export_stix.register,
        registry.register,
        forensics.register,
        pipeline.register,
        playbook.register,
    ]


REGISTRARS = _registrars()
