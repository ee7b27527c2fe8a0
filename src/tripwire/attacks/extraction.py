"""Model extraction: steal a classifier through its prediction API, and measure the theft.

:func:`extract` queries a victim (any prediction function, a loaded
:class:`~tripwire.models.loading.Model` or a live Open Inference Protocol endpoint through
:class:`~tripwire.attacks.oip_client.OIPClient`) within a query budget, trains a
substitute on the victim's soft labels (knowledge distillation, Hinton et al. 2015) and
reports, per budget, the substitute's accuracy and its fidelity (agreement of the
predicted class with the victim's) on the victim's own test distribution. Every query
is logged as a :class:`~tripwire.attacks.benign.QueryStream` (inputs, client ids,
simulated send times), so that a gateway or a benchmark can replay the attack against
a detector next to benign traffic (:mod:`tripwire.attacks.benign`).

Kinds
-----
``random``
    Uniform noise in [0, 1] (the query strategy of Tramèr et al., "Stealing Machine
    Learning Models via Prediction APIs", USENIX Security 2016, for models beyond
    equation solving).
``jbda``
    Jacobian-based data augmentation (Papernot et al., "Practical Black-Box Attacks
    against Machine Learning", AsiaCCS 2017): a small seed set labelled by the victim,
    then rounds that train the substitute and add ``x + lambda * sign(dF_c/dx)`` for
    every ``x`` so far, ``c`` the victim's class of ``x`` and ``F`` the substitute's
    softmax; ``lambda`` flips sign every ``tau`` rounds. The last round is cut to the
    budget.
``knockoff``
    Natural images of another distribution, drawn at random (Orekondy et al.,
    "Knockoff Nets: Stealing Functionality of Black-Box Models", CVPR 2019, 'random'
    strategy).
``knockoff-adaptive``
    Knockoff's adaptive strategy, simplified: a gradient bandit over the classes of the
    natural data (flat, not the paper's label hierarchy) draws a batch from the chosen
    class and is rewarded by the victim's certainty (top-1 minus top-2 probability) plus
    diversity (probability mass above the running mean output). The paper's third
    reward, the substitute's loss, is left out so that no training runs in the loop.
``paced``
    A slow, careful attacker: mostly natural-looking inputs (the natural data, else the
    seed data) with a small fraction (``synthetic_fraction``) of synthetic boundary
    probes (interpolations between two queried inputs the victim labels differently, as
    active-learning thieves do, Pal et al., "ActiveThief", AAAI 2020), sent in requests
    of 1 to ``max_request`` inputs about ``interval`` seconds apart (60 s by default):
    the traffic that rate limits and distribution tests (Juuti et al., "PRADA", EuroS&P
    2019) are weakest against.
``sybil``
    The query budget of a ``base`` kind (``knockoff`` when natural data is given, else
    ``random``) spread round-robin over ``n_clients`` client ids (Douceur, "The Sybil
    Attack", IPTPS 2002), so that no id holds more than ``ceil(budget / n_clients)``
    queries; the ids query in parallel.

Times are simulated (nothing sleeps): each client sends a request, then waits an
exponential gap of mean ``interval`` seconds (0.05 s unless paced).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from tripwire.attacks.benign import QueryStream, request_sizes
from tripwire.attacks.oip_client import OIPClient
from tripwire.errors import InputError, MissingDependencyError
from tripwire.io.dataset import Dataset

if TYPE_CHECKING:
    import torch

    from tripwire.models.arch import ContractModule

#: A prediction function: float32 model-space inputs ``(N, ...)`` to probabilities ``(N, C)``.
ProbaFn = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
#: A prediction function that also takes the client id the query is sent as.
RoutedProbaFn = Callable[[npt.NDArray[np.float32], str], npt.NDArray[np.float32]]

#: Kind-specific parameters and their defaults (``extract(..., **params)``).
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "random": {},
    "jbda": {"n_seed": 100, "lam": 0.1, "tau": 3},
    "knockoff": {},
    "knockoff-adaptive": {"pull_size": 16, "bandit_lr": 0.5},
    "paced": {"synthetic_fraction": 0.1, "max_request": 4},
    "sybil": {"base": None, "n_clients": 10},
}
EXTRACTION_KINDS = tuple(KIND_DEFAULTS)

#: Mean seconds between two requests of one client: a plain attacker and a paced one.
FAST_INTERVAL = 0.05
PACED_INTERVAL = 60.0
#: Queries per request of a plain attacker; the strategy's batches are cut to this.
REQUEST_SIZE = 64
#: Client id of a single attacker, and the prefix of sybil ids.
ATTACKER_ID = "attacker-0"
SYBIL_PREFIX = "sybil-"
#: Client id under which fidelity is measured (not logged, not counted in the budget).
EVAL_CLIENT_ID = "tripwire-eval"

_BATCH = 64  # queries per strategy step, and training batch size


@runtime_checkable
class _HasProbabilities(Protocol):
    def probabilities(self, x: npt.ArrayLike) -> npt.NDArray[np.float32]: ...


@dataclass
class Victim:
    """The model under attack, seen only through its probabilities.

    Give ``predict`` (any ``x -> probabilities``) or ``routed`` (``(x, client_id) ->
    probabilities``, for endpoints that attribute queries to clients); when both are
    given, ``routed`` serves queries that carry a client id.

    Raises
    ------
    InputError
        Neither function given.
    """

    predict: ProbaFn | None = None
    routed: RoutedProbaFn | None = None
    name: str = "victim"

    def __post_init__(self) -> None:
        if self.predict is None and self.routed is None:
            raise InputError("a victim needs a prediction function", self.name)

    @classmethod
    def from_model(cls, model: _HasProbabilities, name: str = "model") -> Victim:
        """A victim from anything with ``probabilities(x)`` (a loaded ``Model``)."""
        return cls(predict=model.probabilities, name=name)

    @classmethod
    def from_oip(
        cls,
        url: str,
        model_name: str,
        *,
        api_key: str | None = None,
        api_keys: Mapping[str, str] | None = None,
        timeout: float = 30,
    ) -> Victim:
        """A victim behind an Open Inference Protocol v2 endpoint.

        Each client id gets its own :class:`OIPClient` sending ``X-Client-Id``; with
        ``api_keys`` (client id -> key) each sybil also authenticates with its own key.
        """
        clients: dict[str, OIPClient] = {}
        keys = dict(api_keys or {})

        def routed(x: npt.NDArray[np.float32], client_id: str) -> npt.NDArray[np.float32]:
            if client_id not in clients:
                clients[client_id] = OIPClient(
                    url,
                    model_name,
                    api_key=keys.get(client_id, api_key),
                    client_id=client_id,
                    timeout=timeout,
                )
            return clients[client_id].infer(x)

        OIPClient(url, model_name, api_key=api_key, timeout=timeout)  # validates the URL now
        return cls(routed=routed, name=url)

    def query(
        self, x: npt.NDArray[np.float32], client_id: str | None = None
    ) -> npt.NDArray[np.float32]:
        """Probabilities for ``x``; refuses outputs that are not probabilities."""
        if self.routed is not None and (client_id is not None or self.predict is None):
            out = self.routed(x, client_id or ATTACKER_ID)
        elif self.predict is not None:
            out = self.predict(x)
        else:  # pragma: no cover - __post_init__ guarantees one function
            raise InputError("a victim needs a prediction function", self.name)
        p = np.asarray(out, dtype=np.float64)
        if p.ndim != 2 or p.shape[0] != x.shape[0]:
            raise InputError(
                f"the victim returned shape {p.shape} for {x.shape[0]} inputs, expected (N, C)",
                self.name,
            )
        if not np.all(np.isfinite(p)) or np.any(p < -1e-6):
            raise InputError(
                "the victim returned negative or non-finite values "
                "(pass probabilities, not logits)",
                self.name,
            )
        sums = p.sum(axis=1, keepdims=True)
        if not np.allclose(sums, 1.0, atol=1e-3):
            raise InputError(
                "the victim's outputs do not sum to 1 (pass probabilities, not logits)",
                self.name,
            )
        return np.asarray(np.clip(p, 0.0, None) / sums, dtype=np.float32)


def as_victim(victim: Victim | ProbaFn | _HasProbabilities) -> Victim:
    """Wrap a prediction function or a model with ``probabilities`` as a :class:`Victim`."""
    if isinstance(victim, Victim):
        return victim
    if isinstance(victim, _HasProbabilities):
        return Victim.from_model(victim)
    if callable(victim):
        return Victim(predict=victim, name=getattr(victim, "__name__", "victim"))
    raise InputError("the victim must be a Victim, a model or a prediction function", "victim")


@dataclass
class ExtractionResult:
    """What :func:`extract` returns.

    Attributes
    ----------
    kind
        The attack kind.
    budgets
        The query budgets reported on, ascending; the last is the whole budget.
    accuracy
        Per budget: the stolen model's top-1 accuracy on the evaluation data.
    fidelity
        Per budget: the fraction of evaluation inputs where the stolen model's class
        equals the victim's.
    victim_accuracy
        The victim's own accuracy on the evaluation data.
    queries
        Every query in send order; ``queries.subset(range(b))`` is what the stolen
        model at budget ``b`` was trained on.
    responses
        The victim's probabilities for each logged query, aligned with ``queries``.
    seed, arch, input_shape, n_classes, params
        How the attack was run (``params`` adds what the strategy reports: jbda's
        rounds, the bandit's queries per arm, paced's synthetic query count).
    elapsed_s
        Wall-clock seconds of querying and training.
    """

    kind: str
    budgets: list[int]
    accuracy: list[float]
    fidelity: list[float]
    victim_accuracy: float
    queries: QueryStream
    responses: npt.NDArray[np.float32]
    seed: int
    arch: str
    input_shape: tuple[int, ...]
    n_classes: int
    params: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    _model: ContractModule | None = field(default=None, repr=False)

    def stolen_model(self) -> ContractModule:
        """The substitute trained on the whole budget (a torch module in eval mode)."""
        if self._model is None:
            raise InputError("this result holds no stolen model", self.kind)
        return self._model

    def predict_proba(self, x: npt.ArrayLike, *, batch_size: int = 512) -> npt.NDArray[np.float32]:
        """The stolen model's probabilities ``(N, C)`` for model-space inputs ``x``."""
        return _probabilities(self.stolen_model(), np.asarray(x, dtype=np.float32), batch_size)

    def predict(self, x: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The stolen model's classes for model-space inputs ``x``."""
        return np.asarray(self.predict_proba(x).argmax(axis=1), dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record of the attack and its effect (no arrays)."""
        return {
            "kind": self.kind,
            "seed": self.seed,
            "arch": self.arch,
            "input_shape": list(self.input_shape),
            "n_classes": self.n_classes,
            "params": self.params,
            "victim_accuracy": round(self.victim_accuracy, 6),
            "per_budget": [
                {"budget": b, "accuracy": round(a, 6), "fidelity": round(f, 6)}
                for b, a, f in zip(self.budgets, self.accuracy, self.fidelity, strict=True)
            ],
            "queries": self.queries.to_dict(),
            "elapsed_s": round(self.elapsed_s, 2),
        }


def extract(
    victim: Victim | ProbaFn | _HasProbabilities,
    kind: str,
    *,
    budget: int,
    input_shape: Sequence[int],
    n_classes: int,
    eval_data: Dataset,
    seed: int = 0,
    seed_data: Dataset | None = None,
    natural_data: Dataset | None = None,
    budgets_to_report: Sequence[int] | None = None,
    arch: str = "auto",
    epochs: int | None = None,
    interval: float | None = None,
    client_id: str = ATTACKER_ID,
    reference: ProbaFn | None = None,
    threads: int | None = None,
    **params: Any,
) -> ExtractionResult:
    """Run extraction attack ``kind`` against ``victim`` (see the module docstring).

    Parameters
    ----------
    victim
        A :class:`Victim`, a loaded model, or any ``x -> probabilities`` function.
    kind
        One of :data:`EXTRACTION_KINDS`.
    budget
        Number of queries (inputs, not requests) the attacker may send.
    input_shape, n_classes
        What the victim takes and returns: ``(C, H, W)`` or ``(D,)``, and ``C``.
    eval_data
        The victim's test distribution, for accuracy and fidelity; its queries are
        neither logged nor counted in the budget.
    seed
        Seeds every choice and the substitute's training.
    seed_data
        The attacker's few in-distribution samples (``jbda``; ``paced`` without natural
        data); their labels are not used, the victim labels them.
    natural_data
        Images of another distribution (``knockoff``, ``knockoff-adaptive``, ``paced``,
        ``sybil``), resized to ``input_shape`` when they differ.
    budgets_to_report
        Budgets at which a fresh substitute is trained on the first queries and
        measured; the whole budget is always included.
    arch
        Substitute architecture (see :mod:`tripwire.models.arch`).
    epochs
        Training epochs per substitute; by default enough for 30 epochs within 150 to
        500 optimiser steps.
    interval
        Mean seconds between two requests of one client (simulated).
    client_id
        The id of a single attacker (sybils get ``sybil-00``, ``sybil-01``, ...).
    reference
        Where fidelity's reference labels come from, when not the victim itself (for
        example the local model while the attack goes through a gateway).
    threads
        torch threads during the attack (restored afterwards).
    **params
        Kind-specific parameters, see :data:`KIND_DEFAULTS`.

    Raises
    ------
    InputError
        Unknown kind or parameter, a budget below 1, budgets outside ``1..budget``,
        missing or mismatched data, a victim whose outputs do not fit.
    """
    if kind not in KIND_DEFAULTS:
        raise InputError(f"unknown extraction kind (choose from {', '.join(KIND_DEFAULTS)})", kind)
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
        raise InputError(f"the budget must be an integer of at least 1, got {budget!r}", "budget")
    budget = int(budget)
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise InputError(f"input_shape must be (C, H, W) or (D,), got {shape}", "input_shape")
    if n_classes < 2:
        raise InputError(f"n_classes must be at least 2, got {n_classes}", "n_classes")
    if eval_data.input_shape != shape:
        raise InputError(
            f"evaluation samples have shape {eval_data.input_shape}, the victim takes {shape}",
            eval_data.path,
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"the seed must be a non-negative integer, got {seed!r}", "seed")
    if not client_id:
        raise InputError("the client id must not be empty", "client_id")
    if interval is not None and interval < 0:
        raise InputError(f"interval must not be negative, got {interval}", "interval")
    report = _report_budgets(budgets_to_report, budget)
    base = kind
    opts = dict(KIND_DEFAULTS[kind])
    if kind == "sybil":
        requested = params.get("base")
        base = str(requested or ("knockoff" if natural_data is not None else "random"))
        if base not in KIND_DEFAULTS or base == "sybil":
            raise InputError(
                f"sybil's base must be one of {', '.join(EXTRACTION_KINDS[:-1])}", "base"
            )
        opts.update(KIND_DEFAULTS[base])
    unknown = set(params) - set(opts)
    if unknown:
        raise InputError(
            f"unknown parameter(s) {', '.join(sorted(unknown))} for '{kind}' "
            f"(known: {', '.join(sorted(opts)) or 'none'})",
            kind,
        )
    opts.update(params)
    opts["base"] = base if kind == "sybil" else None
    _check_options(opts, budget)
    torch = _torch()
    v = as_victim(victim)
    natural = _natural_pool(natural_data, shape)
    seeds = None if seed_data is None else _fit_shape(seed_data.model_input(), shape, seed_data)
    if base in ("knockoff", "knockoff-adaptive") and natural is None:
        raise InputError(f"'{base}' needs natural_data (images of another distribution)", base)
    if base == "jbda" and seeds is None:
        raise InputError("'jbda' needs seed_data (a few in-distribution samples)", "seed_data")
    if base == "paced" and natural is None and seeds is None:
        raise InputError("'paced' needs natural_data or seed_data", "natural_data")

    rng = np.random.default_rng(seed)
    paced = base == "paced"
    n_clients = int(opts["n_clients"]) if kind == "sybil" else 1
    clients = (
        [f"{SYBIL_PREFIX}{i:02d}" for i in range(n_clients)] if kind == "sybil" else [client_id]
    )
    oracle = _Oracle(
        v,
        budget=budget,
        n_classes=n_classes,
        clients=clients,
        max_request=int(opts["max_request"]) if paced else REQUEST_SIZE,
        random_sizes=paced,
        interval=interval if interval is not None else (PACED_INTERVAL if paced else FAST_INTERVAL),
        rng=np.random.default_rng(rng.integers(2**32)),
    )
    arch_name = _arch_name(arch, shape)
    ctx = _Context(
        shape=shape,
        n_classes=n_classes,
        arch=arch_name,
        epochs=epochs,
        seed=seed,
        natural=natural,
        seeds=seeds,
        opts=opts,
    )
    start = time.perf_counter()
    with _threads(torch, threads):
        _STRATEGIES[base](oracle, rng, ctx)
        queries, responses = oracle.log(kind)
        x_eval = eval_data.model_input()
        ref = reference if reference is not None else (lambda x: v.query(x, EVAL_CLIENT_ID))
        victim_probs = _batched(ref, x_eval)
        if victim_probs.shape != (len(x_eval), n_classes):
            raise InputError(
                f"the reference returned shape {victim_probs.shape} on the evaluation data, "
                f"expected {(len(x_eval), n_classes)}",
                "reference",
            )
        victim_label = victim_probs.argmax(axis=1)
        accs: list[float] = []
        fids: list[float] = []
        model: ContractModule | None = None
        for b in report:
            # Seeded by the budget alone, so a budget's numbers do not depend on the others.
            model = ctx.new_model(queries.x[:b], seed_offset=b)
            _fit(model, queries.x[:b], responses[:b], steps=ctx.steps(b), seed=seed * 1009 + b)
            pred = _probabilities(model, x_eval, 512).argmax(axis=1)
            accs.append(float(np.mean(pred == eval_data.y)))
            fids.append(float(np.mean(pred == victim_label)))
    known = set(KIND_DEFAULTS[kind]) | set(KIND_DEFAULTS[base])
    recorded = {
        k: val.item() if isinstance(val, np.generic) else val
        for k, val in opts.items()
        if val is not None and k in known
    }
    if ctx.extra:
        recorded.update(ctx.extra)
    return ExtractionResult(
        kind=kind,
        budgets=report,
        accuracy=accs,
        fidelity=fids,
        victim_accuracy=float(np.mean(victim_label == eval_data.y)),
        queries=queries,
        responses=responses,
        seed=seed,
        arch=arch_name,
        input_shape=shape,
        n_classes=n_classes,
        params=recorded,
        elapsed_s=time.perf_counter() - start,
        _model=model,
    )


def train_substitute(
    x: npt.NDArray[np.float32],
    p: npt.NDArray[np.float32],
    *,
    n_classes: int,
    arch: str = "auto",
    epochs: int | None = None,
    seed: int = 0,
) -> ContractModule:
    """A substitute trained on inputs ``x`` and the victim's answers ``p``, exactly as
    :func:`extract` trains its own for a budget of ``len(x)`` queries (same architecture
    choice, soft-label loss, number of steps and seeding), so that an investigator who
    holds a client's logged queries can measure what that client could have stolen.

    Raises
    ------
    InputError
        Empty or mismatched inputs, an unknown architecture.
    """
    if len(x) == 0 or len(x) != len(p) or p.ndim != 2 or p.shape[1] != n_classes:
        raise InputError(
            f"need as many answers of {n_classes} classes as inputs, got {x.shape} and {p.shape}",
            "substitute",
        )
    shape = tuple(int(s) for s in x.shape[1:])
    ctx = _Context(
        shape=shape,
        n_classes=n_classes,
        arch=_arch_name(arch, shape),
        epochs=epochs,
        seed=seed,
        natural=None,
        seeds=None,
        opts={},
    )
    b = len(x)
    x = np.ascontiguousarray(x, dtype=np.float32)
    model = ctx.new_model(x, seed_offset=b)
    _fit(
        model,
        x,
        np.ascontiguousarray(p, dtype=np.float32),
        steps=ctx.steps(b),
        seed=seed * 1009 + b,
    )
    return model


def substitute_probabilities(
    model: ContractModule, x: npt.NDArray[np.float32], batch_size: int = 512
) -> npt.NDArray[np.float32]:
    """Softmax outputs of a substitute from :func:`train_substitute`."""
    return _probabilities(model, np.ascontiguousarray(x, dtype=np.float32), batch_size)


def save_stolen(result: ExtractionResult, path: str | Path) -> Path:
    """Write the stolen model as TorchScript at ``path`` and its record beside it.

    The archive follows the model contract, so :func:`tripwire.models.loading.load_model`
    reads it back; ``<stem>.meta.json`` holds :meth:`ExtractionResult.to_dict`.

    Raises
    ------
    InputError
        The file cannot be written, or the result holds no model.
    """
    torch = _torch()
    from tripwire.models.train import file_sha256, metadata_path

    target = Path(path)
    model = result.stolen_model()
    target.parent.mkdir(parents=True, exist_ok=True)
    scripted = torch.jit.script(model.cpu().eval())
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        scripted.save(str(tmp))
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write model ({exc.strerror or exc})", target) from None
    meta = {
        "format": "torchscript",
        "model_sha256": file_sha256(target),
        "arch": result.arch,
        "input_shape": list(result.input_shape),
        "num_classes": result.n_classes,
        "exports": ["forward", "features", "forward_features"],
        "extraction": result.to_dict(),
    }
    metadata_path(target).write_text(json.dumps(meta, indent=2) + "\n")
    return target


# -- the oracle: budget, clients, clock and log ---------------------------------------------


class _Oracle:
    """Sends the strategy's queries to the victim as clients would, and logs them.

    Query number ``q`` goes to client ``q mod n_clients``, so clients stay balanced to
    within one query. Each client cuts its share of a batch into requests and keeps its
    own simulated clock; clients run in parallel.
    """

    def __init__(
        self,
        victim: Victim,
        *,
        budget: int,
        n_classes: int,
        clients: list[str],
        max_request: int,
        random_sizes: bool,
        interval: float,
        rng: np.random.Generator,
    ) -> None:
        self.victim = victim
        self.budget = budget
        self.n_classes = n_classes
        self.clients = clients
        self.max_request = max_request
        self.random_sizes = random_sizes
        self.interval = interval
        self.rng = rng
        # Sybils start at staggered times, as independent accounts would.
        self.clock = [0.0] + [float(rng.uniform(0.0, interval)) for _ in clients[1:]]
        self.used = 0
        self.n_requests = 0
        self._x: list[npt.NDArray[np.float32]] = []
        self._p: list[npt.NDArray[np.float32]] = []
        self._client: list[npt.NDArray[np.int64]] = []
        self._t: list[npt.NDArray[np.float64]] = []
        self._req: list[npt.NDArray[np.int64]] = []
        self._origin: list[npt.NDArray[np.int64]] = []

    @property
    def remaining(self) -> int:
        return self.budget - self.used

    def ask(
        self, x: npt.NDArray[np.float32], origin: npt.NDArray[np.int64] | None = None
    ) -> npt.NDArray[np.float32]:
        """The victim's probabilities for ``x``, charged to the budget and logged."""
        k = int(x.shape[0])
        if k > self.remaining:  # a strategy bug, not a user error
            raise RuntimeError(f"strategy asked {k} queries with {self.remaining} left")
        x = np.ascontiguousarray(x, dtype=np.float32)
        org = np.full(k, -1, np.int64) if origin is None else np.asarray(origin, np.int64)
        who = (self.used + np.arange(k)) % len(self.clients)
        out = np.zeros((k, self.n_classes), dtype=np.float32)
        for c in np.unique(who):
            mine = np.flatnonzero(who == c)
            lo = 1 if self.random_sizes else self.max_request
            pos = 0
            for size in request_sizes(self.rng, mine.size, lo, self.max_request):
                idx = mine[pos : pos + size]
                pos += size
                p = self.victim.query(x[idx], self.clients[c])
                if p.shape[1] != self.n_classes:
                    raise InputError(
                        f"the victim returned {p.shape[1]} classes, expected {self.n_classes}",
                        self.victim.name,
                    )
                out[idx] = p
                self._x.append(x[idx])
                self._p.append(p)
                self._client.append(np.full(size, c, np.int64))
                self._t.append(np.full(size, self.clock[c]))
                self._req.append(np.full(size, self.n_requests, np.int64))
                self._origin.append(org[idx])
                self.n_requests += 1
                self.clock[c] += float(self.rng.exponential(self.interval))
        self.used += k
        return out

    def log(self, kind: str) -> tuple[QueryStream, npt.NDArray[np.float32]]:
        """The queries in send order (stable by time) and the victim's answers."""
        t = np.concatenate(self._t)
        order = np.argsort(t, kind="stable")
        stream = QueryStream(
            x=np.concatenate(self._x)[order],
            client_id=np.asarray(self.clients)[np.concatenate(self._client)[order]],
            t=t[order],
            request=np.concatenate(self._req)[order],
            origin=np.concatenate(self._origin)[order],
            kind=kind,
        )
        return stream, np.concatenate(self._p)[order]


# -- strategies ---------------------------------------------------------------------------


@dataclass
class _Context:
    shape: tuple[int, ...]
    n_classes: int
    arch: str
    epochs: int | None
    seed: int
    natural: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]] | None
    seeds: npt.NDArray[np.float32] | None
    opts: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def steps(self, n: int) -> int:
        per_epoch = -(-n // _BATCH)
        if self.epochs is not None:
            return max(1, self.epochs * per_epoch)
        return int(np.clip(30 * per_epoch, 150, 500))

    def new_model(self, x: npt.NDArray[np.float32], seed_offset: int) -> ContractModule:
        torch = _torch()
        from tripwire.models.arch import build_model

        torch.manual_seed(self.seed * 1009 + seed_offset)
        try:
            model = build_model(self.arch, self.shape, self.n_classes)
        except ValueError as exc:
            raise InputError(str(exc), "arch") from None
        if self.arch == "mlp":
            xt = torch.from_numpy(x)
            model.set_standardisation(xt.mean(0), xt.std(0))  # type: ignore[operator]
        return model


Strategy = Callable[[_Oracle, np.random.Generator, _Context], None]


def _random(oracle: _Oracle, rng: np.random.Generator, ctx: _Context) -> None:
    while oracle.remaining:
        k = min(_BATCH, oracle.remaining)
        oracle.ask(rng.random((k, *ctx.shape), dtype=np.float32))


def _knockoff(oracle: _Oracle, rng: np.random.Generator, ctx: _Context) -> None:
    x, _ = _need(ctx.natural)
    # Without replacement while the pool lasts, then a fresh pass.
    for idx in _cycle(rng, np.arange(len(x)), oracle.remaining):
        oracle.ask(x[idx], idx)


def _knockoff_adaptive(oracle: _Oracle, rng: np.random.Generator, ctx: _Context) -> None:
    x, y = _need(ctx.natural)
    arms = np.unique(y)
    pools = [np.flatnonzero(y == a) for a in arms]
    order = [rng.permutation(p) for p in pools]
    cursor = np.zeros(len(arms), dtype=np.int64)
    pref = np.zeros(len(arms))
    lr = float(ctx.opts["bandit_lr"])
    pull = int(ctx.opts["pull_size"])
    mean_out = np.full(ctx.n_classes, 1.0 / ctx.n_classes)
    baseline, pulls = 0.0, 0
    counts = np.zeros(len(arms), dtype=np.int64)
    while oracle.remaining:
        pi = np.exp(pref - pref.max())
        pi /= pi.sum()
        a = int(rng.choice(len(arms), p=pi))
        k = min(pull, oracle.remaining)
        take = np.empty(k, dtype=np.int64)
        for j in range(k):  # walk the arm's shuffled pool, reshuffling when exhausted
            if cursor[a] >= len(order[a]):
                order[a] = rng.permutation(pools[a])
                cursor[a] = 0
            take[j] = order[a][cursor[a]]
            cursor[a] += 1
        p = oracle.ask(x[take], take)
        top2 = np.sort(p, axis=1)[:, -2:]
        certainty = float(np.mean(top2[:, 1] - top2[:, 0]))
        diversity = float(np.mean(np.clip(p - mean_out, 0.0, None).sum(axis=1)))
        reward = certainty + diversity
        pulls += 1
        baseline += (reward - baseline) / pulls
        # Gradient bandit (Sutton and Barto, 2nd ed., section 2.8).
        step = lr * (reward - baseline)
        pref -= step * pi
        pref[a] += step
        mean_out = 0.9 * mean_out + 0.1 * p.mean(axis=0)
        counts[a] += k
    ctx.extra["arm_queries"] = {str(int(c)): int(n) for c, n in zip(arms, counts, strict=True)}


def _jbda(oracle: _Oracle, rng: np.random.Generator, ctx: _Context) -> None:
    torch = _torch()
    seeds = _need(ctx.seeds)
    n_seed = min(int(ctx.opts["n_seed"]), len(seeds), oracle.remaining)
    chosen = np.sort(rng.choice(len(seeds), n_seed, replace=False)).astype(np.int64)
    s = seeds[chosen]
    p = oracle.ask(s, chosen)
    lam, tau = float(ctx.opts["lam"]), int(ctx.opts["tau"])
    model = ctx.new_model(s, seed_offset=0)
    rounds = 0
    while oracle.remaining:
        _fit(model, s, p, steps=ctx.steps(len(s)), seed=ctx.seed * 1009 + 10**9 + rounds)
        # Periodic step size: the sign flips every tau rounds (Papernot et al., 4.3).
        lam_r = lam * (-1.0) ** (rounds // tau)
        pick = np.arange(len(s))
        if len(s) > oracle.remaining:
            pick = np.sort(rng.choice(len(s), oracle.remaining, replace=False))
        labels = torch.from_numpy(p[pick].argmax(axis=1))
        grad_sign = _jacobian_sign(model, s[pick], labels)
        new = np.clip(s[pick] + np.float32(lam_r) * grad_sign, 0.0, 1.0).astype(np.float32)
        p_new = np.concatenate(
            [oracle.ask(new[i : i + _BATCH * 4]) for i in range(0, len(new), _BATCH * 4)]
        )
        s = np.concatenate([s, new])
        p = np.concatenate([p, p_new])
        rounds += 1
    ctx.extra["rounds"] = rounds


def _paced(oracle: _Oracle, rng: np.random.Generator, ctx: _Context) -> None:
    pool = ctx.natural[0] if ctx.natural is not None else _need(ctx.seeds)
    frac = float(ctx.opts["synthetic_fraction"])
    seen_x: list[npt.NDArray[np.float32]] = []
    seen_y: list[npt.NDArray[np.int64]] = []
    n_synth = 0
    for idx in _cycle(rng, np.arange(len(pool)), oracle.remaining, batch=16):
        x = pool[idx].copy()
        origin = idx.astype(np.int64)
        if seen_x:
            sx, sy = np.concatenate(seen_x), np.concatenate(seen_y)
            synth = np.flatnonzero(rng.random(len(idx)) < frac)
            for j in synth:
                x[j] = _boundary_probe(sx, sy, rng)
                origin[j] = -1
            n_synth += synth.size
        p = oracle.ask(x, origin)
        natural = origin >= 0
        seen_x.append(x[natural])
        seen_y.append(p[natural].argmax(axis=1))
    ctx.extra["synthetic_queries"] = n_synth


def _boundary_probe(
    x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """A point between two queried inputs, preferring a pair the victim labels apart."""
    i = int(rng.integers(len(x)))
    others = np.flatnonzero(y != y[i])
    j = int(rng.choice(others)) if others.size else int(rng.integers(len(x)))
    a = np.float32(rng.uniform(0.3, 0.7))
    return np.asarray((1 - a) * x[i] + a * x[j], dtype=np.float32)


_STRATEGIES: dict[str, Strategy] = {
    "random": _random,
    "jbda": _jbda,
    "knockoff": _knockoff,
    "knockoff-adaptive": _knockoff_adaptive,
    "paced": _paced,
}


# -- helpers ------------------------------------------------------------------------------


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "torch") from None
    return torch


@contextmanager
def _threads(torch: Any, threads: int | None) -> Iterator[None]:
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _need(value: Any) -> Any:
    if value is None:  # pragma: no cover - extract() checks the inputs of each kind
        raise RuntimeError("strategy input missing")
    return value


def _cycle(
    rng: np.random.Generator, items: npt.NDArray[np.int64], total: int, batch: int = _BATCH
) -> Iterator[npt.NDArray[np.int64]]:
    """Batches of ``items`` in shuffled passes until ``total`` have been yielded."""
    order = rng.permutation(items)
    pos = 0
    while total > 0:
        if pos >= len(order):
            order, pos = rng.permutation(items), 0
        k = min(batch, total, len(order) - pos)
        yield np.asarray(order[pos : pos + k], dtype=np.int64)
        pos += k
        total -= k


def _report_budgets(requested: Sequence[int] | None, budget: int) -> list[int]:
    out = {budget}
    for b in requested or ():
        if isinstance(b, bool) or not isinstance(b, int | np.integer) or not 1 <= b <= budget:
            raise InputError(
                f"budgets to report must be integers in 1..{budget}, got {b!r}",
                "budgets_to_report",
            )
        out.add(int(b))
    return sorted(out)


def _check_options(opts: dict[str, Any], budget: int) -> None:
    checks: list[tuple[str, Callable[[Any], bool], str]] = [
        ("n_seed", lambda v: int(v) >= 1, "at least 1"),
        ("lam", lambda v: float(v) > 0, "positive"),
        ("tau", lambda v: int(v) >= 1, "at least 1"),
        ("pull_size", lambda v: int(v) >= 1, "at least 1"),
        ("bandit_lr", lambda v: float(v) > 0, "positive"),
        ("synthetic_fraction", lambda v: 0.0 <= float(v) <= 1.0, "in [0, 1]"),
        ("max_request", lambda v: int(v) >= 1, "at least 1"),
        ("n_clients", lambda v: 1 <= int(v) <= budget, f"in 1..{budget} (the budget)"),
    ]
    for name, ok, what in checks:
        if name not in opts:
            continue
        try:
            good = ok(opts[name])
        except (TypeError, ValueError):
            good = False
        if not good:
            raise InputError(f"'{name}' must be {what}, got {opts[name]!r}", name)


def _arch_name(arch: str, shape: tuple[int, ...]) -> str:
    from tripwire.models.arch import ARCHITECTURES, auto_arch

    if arch == "auto":
        return auto_arch(shape)
    if arch not in ARCHITECTURES:
        raise InputError(
            f"unknown architecture (choose from auto, {', '.join(ARCHITECTURES)})", arch
        )
    return arch


def _natural_pool(
    ds: Dataset | None, shape: tuple[int, ...]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]] | None:
    if ds is None:
        return None
    return _fit_shape(ds.model_input(), shape, ds), np.asarray(ds.y, dtype=np.int64)


def _fit_shape(
    x: npt.NDArray[np.float32], shape: tuple[int, ...], ds: Dataset
) -> npt.NDArray[np.float32]:
    """Bring an attacker's images to the victim's input shape (channels, then size)."""
    if x.shape[1:] == shape:
        return x
    if len(shape) != 3 or x.ndim != 4:
        raise InputError(
            f"samples have shape {x.shape[1:]} and cannot be fitted to the victim's {shape}",
            ds.path,
        )
    c, h, w = shape
    if x.shape[1] != c:
        if c == 1:
            x = x.mean(axis=1, keepdims=True)
        elif x.shape[1] == 1:
            x = np.repeat(x, c, axis=1)
        else:
            raise InputError(f"cannot turn {x.shape[1]} channels into {c}", ds.path)
    if x.shape[2:] != (h, w):
        torch = _torch()
        t = torch.nn.functional.interpolate(
            torch.from_numpy(np.ascontiguousarray(x)),
            size=(h, w),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        x = t.clamp(0.0, 1.0).numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def _batched(fn: ProbaFn, x: npt.NDArray[np.float32], size: int = 256) -> npt.NDArray[np.float32]:
    parts = [np.asarray(fn(x[i : i + size]), dtype=np.float32) for i in range(0, len(x), size)]
    return np.concatenate(parts)


def _fit(
    model: ContractModule,
    x: npt.NDArray[np.float32],
    p: npt.NDArray[np.float32],
    *,
    steps: int,
    seed: int,
    lr: float = 2e-3,
) -> None:
    """Train on soft labels: cross-entropy against the victim's probabilities."""
    torch = _torch()
    gen = torch.Generator().manual_seed(seed)
    xt, pt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(p)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(x)
    bs = min(_BATCH, n)
    perm, pos = torch.randperm(n, generator=gen), 0
    model.train()
    for _ in range(steps):
        if pos + bs > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos : pos + bs]
        pos += bs
        logp = torch.log_softmax(model(xt[idx]), dim=1)
        loss = -(pt[idx] * logp).sum(dim=1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()


def _probabilities(
    model: ContractModule, x: npt.NDArray[np.float32], batch_size: int
) -> npt.NDArray[np.float32]:
    torch = _torch()
    model.eval()
    out: list[npt.NDArray[np.float32]] = []
    with torch.inference_mode():
        for s in range(0, len(x), batch_size):
            z = model(torch.from_numpy(np.ascontiguousarray(x[s : s + batch_size])))
            out.append(torch.softmax(z, dim=1).numpy())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.asarray(np.concatenate(out), dtype=np.float32)


def _jacobian_sign(
    model: ContractModule, x: npt.NDArray[np.float32], labels: torch.Tensor
) -> npt.NDArray[np.float32]:
    """sign of d softmax(model(x))[label] / dx, per input, in batches."""
    torch = _torch()
    model.eval()
    out: list[npt.NDArray[np.float32]] = []
    for s in range(0, len(x), 256):
        xb = torch.from_numpy(np.ascontiguousarray(x[s : s + 256])).requires_grad_(True)
        prob = torch.softmax(model(xb), dim=1)
        picked = prob.gather(1, labels[s : s + 256, None]).sum()
        (grad,) = torch.autograd.grad(picked, xb)
        out.append(torch.sign(grad).numpy().astype(np.float32))
    return np.concatenate(out)


__all__ = [
    "EXTRACTION_KINDS",
    "KIND_DEFAULTS",
    "ExtractionResult",
    "ProbaFn",
    "RoutedProbaFn",
    "Victim",
    "as_victim",
    "extract",
    "save_stolen",
    "substitute_probabilities",
    "train_substitute",
]
