"""``tripwire guard``: serve a model (or front an upstream OIP v2 server) and watch clients.

See :mod:`tripwire.gateway` for what the gateway does and ``guard.toml`` in
:mod:`tripwire.gateway.config` for the settings file.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.cli.common import console, out, positive_int
from tripwire.errors import InputError, UsageError

#: Reference samples kept at most (the monitor's fit and the drift baseline).
REFERENCE_SIZE = 2000


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape like 1x28x28") from None
    if not dims or min(dims) < 1 or len(dims) not in (1, 3):
        raise argparse.ArgumentTypeError(f"'{text}' must be CxHxW or D")
    return dims


def register(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "guard",
        help="serve a model over OIP v2 and watch every client for model extraction",
        description=(
            "Serve MODEL (or front --upstream URL) over the Open Inference Protocol v2 "
            "and watch every client's query stream for extraction: alerts, an admin API "
            "(/tripwire/v1/...), Prometheus /metrics, and in enforce mode degraded, "
            "throttled or blocked answers."
        ),
    )
    p.add_argument("model", nargs="?", metavar="MODEL", help="a model file (TorchScript, ...)")
    p.add_argument("--upstream", metavar="URL", help="forward to this OIP v2 server instead")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 = any free)")
    p.add_argument("--name", help="the model's name (default: the model file's stem)")
    p.add_argument(
        "--alias",
        metavar="NAME",
        help="serve the registry version this alias points to, and follow its promotions "
        "and rollbacks without a restart (instead of MODEL)",
    )
    p.add_argument(
        "--registry",
        metavar="PATH",
        help="the model registry for --alias (default: $TRIPWIRE_REGISTRY, else "
        ".tripwire/registry.db)",
    )
    p.add_argument(
        "--follow-interval",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds between registry polls with --alias (default: 2)",
    )
    p.add_argument(
        "--reference",
        metavar="DATA",
        help="a sample of the training distribution (any dataset tripwire reads)",
    )
    p.add_argument("--mode", choices=("observe", "enforce"), default="observe")
    p.add_argument(
        "--store",
        default="sqlite:tripwire-guard.db",
        help="sqlite:PATH (default: sqlite:tripwire-guard.db) or redis://HOST:PORT/DB",
    )
    p.add_argument("--config", metavar="TOML", help="guard.toml: API keys, actions, logs")
    p.add_argument(
        "--admin-token",
        help="token of the admin API (default: $TRIPWIRE_ADMIN_TOKEN, else a random one "
        "printed at start)",
    )
    p.add_argument("--input-shape", type=_shape, help="CxHxW or D, when nothing else says")
    p.add_argument(
        "--trigger-check",
        metavar="SPEC",
        help="run-time trigger check: 'reference' (fit the input-trigger detector on the "
        "model and --reference at start), or module:factory",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch and BLAS threads of the serving process (default: 1)",
    )
    p.add_argument(
        "--monitor-process",
        choices=("auto", "on", "off"),
        default="auto",
        help="run the monitor, client records, query log and admin API in a process of "
        "their own, so that serving keeps its interpreter to itself (auto, the default: "
        "on in observe mode with a SQLite store; enforce mode and Redis replicas monitor "
        "in the serving process)",
    )
    p.add_argument("--drift-report", metavar="JSON", help="write the drift report here on exit")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.set_defaults(func=run)
    return p


def guard_args(*argv: str) -> argparse.Namespace:
    """``tripwire guard``'s arguments from its command line, for code that builds a gateway
    in-process (benchmarks, the demo) exactly as the command would, defaults included.

    Raises
    ------
    UsageError
        A command line the parser refuses (it has printed why).
    """
    from tripwire.cli.main import build_parser

    try:
        return build_parser().parse_args(["guard", *argv])
    except SystemExit:
        raise UsageError(f"not a guard command line: {' '.join(argv)}") from None


def build_gateway(args: argparse.Namespace) -> Any:
    """The :class:`~tripwire.gateway.Gateway` that ``args`` describe (not yet serving)."""
    from tripwire.detectors.extraction import default_monitor
    from tripwire.detectors.extraction.base import Reference
    from tripwire.gateway import Gateway, LocalBackend, UpstreamBackend, load_config, open_store
    from tripwire.gateway.backend import model_input_shape
    from tripwire.gateway.hooks import ReferenceTriggerCheck, load_trigger_check
    from tripwire.io import load_dataset

    follower = None
    if args.alias:
        if args.model is not None or args.upstream is not None:
            raise UsageError("--alias replaces MODEL and --upstream: give one of the three")
        from tripwire.gateway.follow import AliasFollower
        from tripwire.response.registry import registry_path

        follower = AliasFollower(
            None, registry_path(args.registry), args.alias, interval=args.follow_interval
        )
        args.model = str(follower.first())
        args.name = args.name or args.alias
        console.print(f"alias '{args.alias}' points to {Path(args.model).name}")
    if (args.model is None) == (args.upstream is None):
        raise UsageError("give either MODEL or --upstream URL (or --alias; one of them)")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must lie in 0..65535, got {args.port}")
    config = load_config(args.config)
    ref_data = None
    if args.reference:
        ref_data = load_dataset(args.reference, split="train")
        if len(ref_data) > REFERENCE_SIZE:
            pick = np.random.default_rng(0).choice(len(ref_data), REFERENCE_SIZE, replace=False)
            ref_data = ref_data.subset(np.sort(pick))
    fallback = args.input_shape or (ref_data.input_shape if ref_data is not None else None)
    if fallback is None and follower is not None:
        # The registry keeps the .meta.json of the version; its copy lies beside the
        # model (model_input_shape reads it), and the database has it for versions
        # registered before the copy was kept.
        fallback = follower.input_shape()
    backend: Any
    if args.model is not None:
        try:
            import torch
        except ImportError:
            from tripwire.errors import MissingDependencyError

            raise MissingDependencyError("torch", "torch") from None
        from tripwire.models.loading import load_model

        torch.set_num_threads(args.threads)
        model = load_model(args.model)
        shape = model_input_shape(args.model, fallback)
        backend = LocalBackend(model, shape)
        name = args.name or Path(args.model).stem
    else:
        if not args.name:
            raise UsageError("--upstream needs --name (the model's name on the upstream)")
        name = args.name
        backend = UpstreamBackend(args.upstream, name)
        console.print(f"waiting up to 60 s for the upstream {args.upstream}")
        if not backend.wait_ready(60.0):
            raise InputError(
                "the upstream did not answer its model metadata in 60 s", args.upstream
            )
        if backend.input_shape is None:
            backend.input_shape = fallback
        if backend.input_shape is None:
            raise InputError(
                "the upstream's metadata gives no input shape: pass --input-shape or --reference",
                args.upstream,
            )
    if ref_data is not None and ref_data.input_shape != backend.input_shape:
        raise InputError(
            f"reference samples have shape {ref_data.input_shape}, the model takes "
            f"{backend.input_shape}",
            args.reference,
        )
    n_classes = backend.n_classes
    x_ref = probs_ref = None
    if ref_data is not None:
        x_ref = ref_data.model_input()
        probs_ref = np.concatenate(
            [backend.predict(x_ref[i : i + 256]).probs for i in range(0, len(x_ref), 256)]
        )
        n_classes = int(probs_ref.shape[1])
    if n_classes is None:
        raise InputError("cannot tell the number of classes: pass --reference", args.upstream)
    monitor = default_monitor(classifier=config.classifier or "default").fit(
        Reference(x=x_ref, probs=probs_ref, n_classes=n_classes, input_shape=backend.input_shape)
    )
    trigger: Any = None
    if args.trigger_check == "reference":
        if args.model is None or ref_data is None:
            raise UsageError("--trigger-check reference needs a model file and --reference")
        console.print("fitting the run-time trigger check on the reference data")
        trigger = ReferenceTriggerCheck.fit(backend.model, ref_data.model_input())
    elif args.trigger_check:
        trigger = load_trigger_check(args.trigger_check)
    possible = args.mode == "observe" and args.store.startswith("sqlite:")
    if args.monitor_process == "on" and not possible:
        raise UsageError(
            "--monitor-process on needs observe mode and a SQLite store: enforce mode "
            "decides each answer from the client's record, and replicas on Redis must see "
            "each other's alerts at once"
        )
    offload = args.monitor_process == "on" or (args.monitor_process == "auto" and possible)
    store = open_store(args.store)
    token = args.admin_token or os.environ.get("TRIPWIRE_ADMIN_TOKEN")
    if not token:
        token = secrets.token_urlsafe(24)
        console.print(f"admin token (none given): [bold]{token}[/]")
    try:
        gateway = Gateway(
            backend,
            name,
            monitor=monitor,
            store=store,
            config=config,
            mode=args.mode,
            admin_token=token,
            trigger_check=trigger,
            monitor_process=offload,
        )
    except RuntimeError as exc:  # the monitor process did not start
        raise InputError(str(exc), args.store) from None
    if follower is not None:
        follower.target = gateway
        gateway.follower = follower
    return gateway


def serving_threads(n: int) -> None:
    """Cap NumPy's BLAS at ``n`` threads for the rest of this serving process.

    The monitor's products are small (a request's samples against a few hundred stored
    ones); a multi-threaded OpenBLAS gains nothing on them, and its idle workers spin:
    measured in the gateway benchmark, 0.9 ms of a second core per one-image request,
    more than the model's own forward pass, taken from the other requests' threads.
    """
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    threadpool_limits(limits=n, user_api="blas")


def run(args: argparse.Namespace) -> int:
    from tripwire.gateway import GatewayServer
    from tripwire.gateway.core import write_json

    logging.basicConfig(
        level=getattr(logging, args.log_level),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    gateway = build_gateway(args)
    serving_threads(args.threads)
    try:
        server = GatewayServer(gateway, args.host, args.port)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc})"
        ) from None
    out(f"serving '{gateway.name}' on {server.url} (mode {gateway.mode}, store {args.store})")

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGTERM (what service managers and `docker stop` send) and SIGINT both shut down
    # cleanly; SIGINT explicitly, since a shell starts background jobs with it ignored.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    follower = getattr(gateway, "follower", None)
    if follower is not None:
        follower.start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        if follower is not None:
            follower.stop()
        server.httpd.server_close()
        if args.drift_report:
            # Before close: a monitor process ends with it.
            try:
                gateway.correlate_now()
                write_json(args.drift_report, {"drift": gateway.drift_report()})
            except Exception as exc:  # the report must not hide the shutdown
                console.print(f"cannot write the drift report: {exc}")
        gateway.close()
        if gateway.store is not None:
            gateway.store.close()
    return 0
