"""Rule ids of the extraction detectors (``TW3xx``, model extraction)."""

from __future__ import annotations

from tripwire.reports.findings import Rule, Severity, register_rule

#: Extract AI Model, through the AI model inference API.
ATLAS_EXTRACT = ("AML.T0024.002", "AML.T0040")

PRADA = register_rule(
    Rule(
        id="TW301",
        name="prada-distance-distribution",
        short_description="The client's query distances are not normally distributed (PRADA).",
        help=(
            "PRADA (Juuti et al., EuroS&P 2019): the minimum distance of each new query to the "
            "client's earlier queries of the same predicted class deviates from a normal "
            "distribution (Shapiro-Wilk W below delta), as synthetic extraction queries do. "
            "Explanation tools and repeated queries trip it too; read it with the other "
            "detectors' evidence."
        ),
        default_severity=Severity.MEDIUM,
        atlas=ATLAS_EXTRACT,
    )
)
OOD = register_rule(
    Rule(
        id="TW302",
        name="queries-off-distribution",
        short_description=(
            "More of the client's queries lie off the training distribution than chance allows."
        ),
        help=(
            "The share of queries farther from the reference data than the calibrated "
            "threshold exceeds its false-positive rate significantly (binomial test). Knockoff "
            "Nets and noise queries do this; so can a benign client whose data has drifted."
        ),
        default_severity=Severity.LOW,
        atlas=ATLAS_EXTRACT,
    )
)
COVERAGE = register_rule(
    Rule(
        id="TW303",
        name="query-coverage",
        short_description=(
            "The client covers the input space or the classes unlike natural traffic."
        ),
        help=(
            "Coverage of the reference's principal-component cells and of the predicted "
            "classes, against what the same number of natural inputs covers."
        ),
        default_severity=Severity.LOW,
        atlas=ATLAS_EXTRACT,
    )
)
CONFIDENCE = register_rule(
    Rule(
        id="TW304",
        name="boundary-hugging-queries",
        short_description=(
            "The client's queries receive low-margin answers more often than natural data."
        ),
        help=(
            "The share of answers whose top-1 minus top-2 probability falls below the "
            "reference's 10% quantile is significantly above 10%: queries near decision "
            "boundaries, where extraction learns the most."
        ),
        default_severity=Severity.LOW,
        atlas=ATLAS_EXTRACT,
    )
)
CHAINS = register_rule(
    Rule(
        id="TW305",
        name="near-duplicate-chains",
        short_description="The client sends near-duplicates of its own earlier queries.",
        help=(
            "Queries closer to one of the client's earlier queries than 99% of natural "
            "neighbours are (Blacklight-style similarity on quantised inputs): perturbation "
            "chains such as Jacobian-based augmentation, or explanation tools."
        ),
        default_severity=Severity.LOW,
        atlas=ATLAS_EXTRACT,
    )
)
STREAM = register_rule(
    Rule(
        id="TW306",
        name="extraction-stream",
        short_description="The client's query stream looks like model extraction.",
        help=(
            "A stream classifier over the detectors' features (distribution, coverage, "
            "confidence, duplicates, PRADA) scores the client above the threshold calibrated "
            "on benign workloads. Consider degrading its outputs, throttling or blocking it."
        ),
        default_severity=Severity.MEDIUM,
        atlas=ATLAS_EXTRACT,
    )
)
SYBIL = register_rule(
    Rule(
        id="TW307",
        name="split-budget-extraction",
        short_description="Several clients' combined queries look like one extraction.",
        help=(
            "The pooled state of clients that are each below the alert threshold scores as "
            "extraction (stream classifier), or several of them send more off-distribution "
            "new inputs than chance explains and their pooled inputs pass TW311's grouped "
            "tests: a budget split over several identities (sybil attack)."
        ),
        default_severity=Severity.MEDIUM,
        atlas=ATLAS_EXTRACT,
    )
)
DRIFT = register_rule(
    Rule(
        id="TW308",
        name="population-drift",
        short_description="All traffic together has drifted from the reference distribution.",
        help="Population-level drift of inputs, predicted classes or confidences.",
        default_severity=Severity.INFO,
        atlas=("AML.T0040",),
    )
)
TIMING = register_rule(
    Rule(
        id="TW309",
        name="query-timing",
        short_description="The client's request timing (rate, regularity): context only.",
        help=(
            "Request rate and regularity. Never an alert on its own: benign heavy users run "
            "at attackers' rates."
        ),
        default_severity=Severity.INFO,
        atlas=("AML.T0040",),
    )
)
NOISE = register_rule(
    Rule(
        id="TW310",
        name="noise-like-queries",
        short_description="Many of the client's queries carry pixel noise no natural input has.",
        help=(
            "The median difference between neighbouring pixels of a query is well above "
            "that of the roughest reference data (1.5x its 0.1% level), for a large share "
            "of the client's queries (binomial test). Natural images are locally smooth; random "
            "noise and gradient-sign perturbations (Jacobian-based augmentation) are not, "
            "on any image data, colour included, where pooled-input distances miss them."
        ),
        default_severity=Severity.MEDIUM,
        atlas=ATLAS_EXTRACT,
    )
)
OFF_DISTRIBUTION = register_rule(
    Rule(
        id="TW311",
        name="off-distribution-image-statistics",
        short_description=(
            "The client's new inputs are, across many inputs and answers, unlike the "
            "training images (another image domain)."
        ),
        help=(
            "Each query's global image statistics (per-channel mean and spread, edge "
            "strength, texture density, colourfulness) are compared with the reference's "
            "(Mahalanobis distance, threshold at the reference's 10% tail). Queries close to "
            "one of the client's earlier queries are left out (explanation tools perturb one "
            "input many times). The share of off-distribution queries must be at least twice "
            "the 10% expected, significantly so with the queries grouped by input-space cell "
            "(t-test over cells) and not explained by a few predicted classes (t-test over "
            "classes): natural images of another domain, as Knockoff Nets sends, on colour "
            "victims where pooled-pixel distances cannot tell the domains apart. A client "
            "whose legitimate data comes from another camera or domain trips it too."
        ),
        default_severity=Severity.MEDIUM,
        atlas=ATLAS_EXTRACT,
    )
)
