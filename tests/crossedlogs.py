"""Simulated crossed logs with known truth, for the resampling designs of the semantic analysis.

Importable from tests as ``from crossedlogs import crossed_log, coverage`` (pytest's ``pythonpath``
includes ``tests/``) and from ``bench/bench_semantic.py``. A log is what the bootstrap sees: per
pair its step, query, negative and an additive value; the designs resample them with
:func:`hardstat.analysis.stats.crossed_bootstrap_totals`.
"""

from __future__ import annotations

import numpy as np

from hardstat.analysis import stats


def crossed_log(
    rng: np.random.Generator,
    *,
    steps: int = 24,
    queries: int = 16,
    queue: int = 64,
    pool: int = 400,
    shift: int = 32,
    sd_step: float = 0.3,
    sd_query: float = 0.3,
    sd_neg: float = 0.3,
    sd_pair: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A simulated crossed log: ``steps`` logged steps, each with ``queries`` queries (nested
    in the step) that all see the same ``queue`` negatives, the ids ``s * shift + 0..queue-1``
    of a pool of ``pool`` negatives (modulo the pool): consecutive steps share negatives
    while ``shift < queue``, and the pool wraps around like epochs. A pair's value is
    ``step effect + query effect + negative effect + noise`` (normal, means 0), so the
    estimand, the mean value of a pair, is 0. Returns per pair (step, query, negative, value).
    """
    n = steps * queries * queue
    step = np.repeat(np.arange(steps), queries * queue)  # (n,)
    query = np.repeat(np.arange(steps * queries), queue)  # (n,) nested in the step
    queues = [(s * shift + np.arange(queue)) % pool for s in range(steps)]
    neg = np.concatenate([np.tile(q, queries) for q in queues])  # (n,)
    value = (
        rng.normal(0, sd_step, steps)[step]
        + rng.normal(0, sd_query, steps * queries)[query]
        + rng.normal(0, sd_neg, pool)[neg]
        + rng.normal(0, sd_pair, n)
    )
    return step, query, neg, value


def unit_sums(unit: np.ndarray, value: np.ndarray) -> np.ndarray:
    """(U, 2): pairs and sum of values per unit (units renumbered 0..U-1)."""
    _, inv = np.unique(unit, return_inverse=True)
    return np.stack([np.bincount(inv), np.bincount(inv, weights=value)], axis=1).astype(float)


DESIGNS = ("query", "step", "query x negative", "step x negative")


def coverage(n_logs: int, reps: int, seed: int, **log: float) -> dict[str, tuple[float, float]]:
    """Per resampling design: the coverage of the 95% percentile interval of the mean pair
    value (truth 0) over ``n_logs`` simulated crossed logs, and the interval's mean width."""
    rng = np.random.default_rng(seed)
    hits = dict.fromkeys(DESIGNS, 0)
    widths = dict.fromkeys(DESIGNS, 0.0)
    for _ in range(n_logs):
        step, query, neg, value = crossed_log(rng, **log)  # type: ignore[arg-type]
        q, s, n = unit_sums(query, value), unit_sums(step, value), unit_sums(neg, value)
        for design, factors in zip(DESIGNS, ([q], [s], [q, n], [s, n]), strict=True):
            draws = stats.crossed_bootstrap_totals(factors, reps, rng)
            lo, hi = stats.percentile_interval_columns(stats.ratio_draws(draws[:, 1], draws[:, 0]))
            hits[design] += int(lo <= 0 <= hi)
            widths[design] += float(hi - lo) / n_logs
    return {d: (hits[d] / n_logs, widths[d]) for d in DESIGNS}
