"""The statistics of hardstat's analyses, as small pure functions: NumPy and SciPy only (no torch,
no SQL, no DuckDB).

Everything here is tested against hand-computed values, analytic nulls or slow reference loops
(``tests/analysis/test_stats.py``). The analyses (:mod:`hardstat.analysis.consistency`,
:mod:`hardstat.analysis.semantic`, :mod:`hardstat.analysis.ablation`) count in SQL and call these.

Contents:

* overdispersion of binomial counts: :func:`pearson_dispersion`, :func:`dispersion_statistic`,
  :func:`chi2_upper_tail`, :func:`tarone_z`, :class:`Overdispersion`;
* exact binomial tests and multiplicity: :func:`binomial_tails`,
  :func:`two_sided_binomial_p`, :func:`benjamini_hochberg`, :func:`holm`;
* rank correlation: :func:`spearman_test`, :func:`midranks`, :func:`spearman_from_counts`,
  :func:`spearman_t_pvalue`;
* resampling: :func:`permutation_p` (the one permutation p-value, with the +1 correction),
  :func:`bootstrap_ratio_ci`; the crossed (two-way) bootstrap of the semantic analysis:
  :func:`crossed_bootstrap_totals`, :func:`percentile_interval_columns`, :func:`ratio_draws`;
* p-value display: :func:`log10_p` and :data:`P_FLOOR`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

_LN10 = math.log(10.0)


def pearson_dispersion(k: Any, expected: Any, variance: Any) -> float:
    """Pearson's ``sum (k - E)^2 / V`` over negatives (E, V: null mean and variance of k)."""
    k, e, v = (np.asarray(a, dtype=np.float64) for a in (k, expected, variance))
    if np.any(v <= 0):
        raise ValueError("null variances must be positive")
    return float(np.sum((k - e) ** 2 / v))


def dispersion_statistic(k: Any, m: Any, p: float) -> float:
    """``X2 = sum_i (k_i - m_i p)^2 / (m_i p (1 - p))``: k_i of m_i appearances in the band."""
    if not 0 < p < 1:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    m = np.asarray(m, dtype=np.float64)
    return pearson_dispersion(k, m * p, m * p * (1 - p))


def chi2_upper_tail(x: float, df: int) -> tuple[float, float]:
    """``P(chi2_df >= x)`` and its log10, finite even where the p-value underflows to 0.

    Where scipy's tail underflows, ``log Q(a, x/2)`` (a = df/2, Q the regularized upper
    incomplete gamma) comes from ``Q(a, y) = y^(a-1) e^-y / Gamma(a) * sum_j prod_{i<=j}
    (a - i) / y`` (y > a there; the terms shrink geometrically, vanish for integer a, and the
    sum stops at the smallest term otherwise).
    """
    from scipy.stats import chi2

    sf = float(chi2.sf(x, df))
    if sf > 1e-300:
        return sf, float(chi2.logsf(x, df)) / _LN10
    return sf, _log_chi2_sf_series(x, df) / _LN10


def _log_chi2_sf_series(x: float, df: int) -> float:
    """Natural log of the chi-square upper tail for ``x/2 > df/2`` (see chi2_upper_tail)."""
    a, y = df / 2.0, x / 2.0
    if y <= a:
        raise ValueError("the series needs x > df")
    n_terms = math.ceil(a) + 2
    terms = np.cumprod((a - np.arange(1, n_terms)) / y)
    stop = int(np.argmin(np.abs(terms))) + 1  # optimal truncation (the series is asymptotic)
    total = 1.0 + float(np.sum(terms[:stop]))
    return (a - 1) * math.log(y) - y - math.lgamma(a) + math.log(total)


def tarone_z(k: Any, m: Any, p: float) -> float:
    """Tarone's (1979) Z for binomial overdispersion with known p (upper tail ~ N(0, 1)).

    ``Z = S / sqrt(2 sum_i m_i (m_i - 1))`` with
    ``S = sum_i [(k_i - m_i p)^2 - k_i (1 - 2p) - m_i p^2] / (p (1 - p))``:
    the sum over pairs of distinct appearances of one negative of the products of centred
    indicators, whose null mean is 0 and variance ``2 sum m (m - 1)`` exactly.
    """
    k = np.asarray(k, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    s = np.sum((k - m * p) ** 2 - k * (1 - 2 * p) - m * p * p) / (p * (1 - p))
    pairs = 2.0 * np.sum(m * (m - 1))
    return float(s / math.sqrt(pairs)) if pairs > 0 else float("nan")


def binomial_tails(k: Any, m: Any, p: float) -> tuple[np.ndarray, np.ndarray]:
    """``P(X >= k)`` and ``P(X <= k)`` for ``X ~ Binomial(m, p)``, elementwise."""
    from scipy.stats import binom

    k = np.asarray(k, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    return binom.sf(k - 1, m, p), binom.cdf(k, m, p)


def two_sided_binomial_p(k: Any, m: Any, p: float) -> np.ndarray:
    """Two-sided exact binomial p-value by doubling the smaller tail, capped at 1."""
    upper, lower = binomial_tails(k, m, p)
    return np.minimum(1.0, 2.0 * np.minimum(upper, lower))


def benjamini_hochberg(p: Any) -> np.ndarray:
    """Benjamini-Hochberg (1995) adjusted p-values (q-values); reject where ``q <= fdr``."""
    p = np.asarray(p, dtype=np.float64)
    n = p.size
    if n == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * n / np.arange(1, n + 1)
    q_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(n)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


def spearman_test(
    x: Any, y: Any, permutations: int, seed: int
) -> tuple[float, float, float | None]:
    """Spearman's rho, its analytic two-sided p (scipy, t approximation) and a permutation p.

    The permutation p-value shuffles ``y`` against ``x`` ``permutations`` times (seeded,
    vectorised in chunks): ``(1 + #{|rho_perm| >= |rho|}) / (permutations + 1)``.
    """
    from scipy.stats import rankdata, spearmanr

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    rx = rankdata(x)
    ry = rankdata(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denom = math.sqrt(float(rx @ rx) * float(ry @ ry))
    if denom == 0:
        return float("nan"), float("nan"), None
    rho = float(rx @ ry) / denom
    p_analytic = float(spearmanr(x, y).pvalue)
    if permutations <= 0:
        return rho, p_analytic, None
    rng = np.random.default_rng(seed)
    n = x.size
    chunk = max(1, min(permutations, 4_000_000 // max(n, 1)))
    hits, done = 0, 0
    while done < permutations:
        b = min(chunk, permutations - done)
        shuffled = rng.permuted(np.tile(ry, (b, 1)), axis=1)
        rhos = shuffled @ rx / denom
        hits += int(np.count_nonzero(np.abs(rhos) >= abs(rho) - 1e-12))
        done += b
    return rho, p_analytic, (hits + 1) / (permutations + 1)


def midranks(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Midranks (1-based, ties averaged) of weighted values: ``(rank of each value, total n)``.

    ``weights[i]`` copies of ``values[i]``; the result gives, for each entry, the average rank
    of its value among all copies.
    """
    uniq, inverse = np.unique(values, return_inverse=True)
    totals = np.bincount(inverse, weights=weights, minlength=len(uniq))
    rank_of_value = np.cumsum(totals) - (totals - 1) / 2
    return rank_of_value[inverse], np.asarray(totals.sum())


def spearman_from_counts(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> float:
    """Spearman's rho (midranks for ties) of ``counts[i]`` copies of the pair ``(x[i], y[i])``:
    the same number scipy.stats.spearmanr gives on the expanded pairs."""
    w = np.asarray(counts, dtype=np.float64)
    keep = w > 0
    x, y, w = np.asarray(x)[keep], np.asarray(y)[keep], w[keep]
    if len(w) == 0:
        return float("nan")
    rx, _ = midranks(x, w)
    ry, _ = midranks(y, w)
    n = w.sum()
    mx, my = (w * rx).sum() / n, (w * ry).sum() / n
    cov = (w * (rx - mx) * (ry - my)).sum()
    var = (w * (rx - mx) ** 2).sum() * (w * (ry - my) ** 2).sum()
    return float(cov / math.sqrt(var)) if var > 0 else float("nan")


def spearman_t_pvalue(rho: float, n: int) -> float:
    """Two-sided analytic p of Spearman's rho over n pairs, as scipy.stats.spearmanr computes
    it (Student t with n - 2 degrees of freedom)."""
    from scipy import special  # scipy.stats takes over a second to import

    if not math.isfinite(rho) or n < 3:
        return float("nan")
    if abs(rho) >= 1:
        return 0.0
    t = rho * math.sqrt((n - 2) / ((1 - rho) * (1 + rho)))
    return float(2 * special.stdtr(n - 2, -abs(t)))


def permutation_pvalue(observed: float, perm: np.ndarray) -> float:
    """Two-sided permutation p: (1 + #{|T_perm| >= |T_obs|}) / (1 + permutations)."""
    if not math.isfinite(observed) or len(perm) == 0:
        return float("nan")
    hits = np.count_nonzero(np.abs(perm) >= abs(observed) * (1 - 1e-12))
    return float((1 + hits) / (1 + len(perm)))


def bootstrap_ratio_ci(
    numerators: Sequence[np.ndarray],
    denominator: np.ndarray,
    reps: int,
    rng: np.random.Generator,
    *,
    level: float = 0.95,
    chunk: int = 64,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Percentile-bootstrap CIs of ratios ``sum_u num[u, b] / sum_u den[u, b]`` per column b,
    resampling the rows u (units) with replacement. Returns ``[(lo, hi)]`` per numerator."""
    n_units, n_cols = denominator.shape
    if reps <= 0 or n_units == 0:
        nan = np.full(n_cols, np.nan)
        return [(nan, nan) for _ in numerators]
    stacked = np.concatenate([denominator, *numerators], axis=1).astype(np.float64)
    draws = np.empty((reps, stacked.shape[1]))
    for start in range(0, reps, chunk):
        c = min(chunk, reps - start)
        idx = rng.integers(0, n_units, size=(c, n_units))
        idx += np.arange(c)[:, None] * n_units
        weights = np.bincount(idx.ravel(), minlength=c * n_units).reshape(c, n_units)
        draws[start : start + c] = weights.astype(np.float64) @ stacked
    den = draws[:, :n_cols]
    alpha = (1 - level) / 2 * 100
    out = []
    for k in range(len(numerators)):
        num = draws[:, n_cols * (k + 1) : n_cols * (k + 2)]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
        lo, hi = np.full(n_cols, np.nan), np.full(n_cols, np.nan)
        for b in range(n_cols):
            col = ratio[:, b][np.isfinite(ratio[:, b])]
            if len(col):
                lo[b], hi[b] = np.percentile(col, [alpha, 100 - alpha])
        out.append((lo, hi))
    return out


# -- crossed bootstrap over two ways of grouping the pairs (semantic analysis) ---------------
# A logged pair (query, negative) belongs to one unit of each factor: e.g. its step (with the
# step's queries: they share one queue and one encoder state) and its negative (the image,
# seen by the queries of many steps). Resampling one factor alone treats the other as fixed;
# the two-way scheme weights every pair by ``W_step + V_negative - 1`` with independent
# Poisson(1) unit weights, so both sources of dependence enter. Because the weight is additive,
# the replicate totals need only the per-unit sums of each factor, never the pairs.


def crossed_bootstrap_totals(
    factors: Sequence[np.ndarray], reps: int, rng: np.random.Generator, *, chunk: int = 64
) -> np.ndarray:
    """Bootstrap replicates of the column totals of pair-level values, crossed over factors.

    ``factors[f]`` (U_f, M): per unit of factor f, the sums of M pair-level values over the
    unit's pairs; every pair lies in exactly one unit of each factor, so all factors have the
    same column totals T (M,). Each replicate draws independent unit weights ``W_f ~
    Poisson(1)`` (U_f,) for every factor, in factor order, and gives a pair in units
    ``(u_1, ..., u_F)`` the weight ``sum_f W_f[u_f] - (F - 1)`` (mean 1, variance F); its
    totals are ``sum_f W_f @ S_f - (F - 1) T``. With one factor this is the Poisson bootstrap
    of units. The replicate variance of a total is ``sum_f sum_u S_f[u]^2`` (of a ratio of
    totals, the same over the units' residual sums): the two-way cluster-robust variance
    (Cameron, Gelbach & Miller 2011) without subtracting its intersection term ``sum over
    (u, v) cells of S_uv^2``, so conservative by that term; the product-weight "pigeonhole"
    bootstrap (Owen 2007) adds it once more and needs the per-cell sums. Returns (reps, M).
    """
    mats = [np.asarray(f, dtype=np.float64) for f in factors]
    if not mats:
        raise ValueError("give at least one factor")
    total = mats[0].sum(axis=0)  # (M,)
    for m in mats[1:]:
        if m.shape[1:] != total.shape or not np.allclose(m.sum(axis=0), total, rtol=1e-9):
            raise ValueError("every factor must sum to the same column totals")
    out = np.empty((reps, total.size))
    for start in range(0, reps, chunk):
        c = min(chunk, reps - start)
        acc = np.broadcast_to(-(len(mats) - 1) * total, (c, total.size)).copy()  # (c, M)
        for m in mats:
            w = rng.poisson(1.0, size=(c, m.shape[0])).astype(np.float64)  # (c, U_f)
            acc += w @ m
        out[start : start + c] = acc
    return out


def percentile_interval_columns(
    draws: np.ndarray, level: float = 0.95, *, min_finite: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile intervals of bootstrap draws (reps, ...) along the first axis: ``(lo, hi)``,
    each of shape ``draws.shape[1:]``. Non-finite draws (a ratio whose replicate denominator
    is not positive) are dropped; where fewer than ``min_finite`` of the draws are finite the
    interval is NaN (the statistic is not defined often enough to bootstrap)."""
    d = np.asarray(draws, dtype=np.float64)
    flat = d.reshape(d.shape[0], -1)  # (reps, k)
    alpha = (1 - level) / 2 * 100
    lo, hi = np.full(flat.shape[1], np.nan), np.full(flat.shape[1], np.nan)
    for k in range(flat.shape[1]):
        col = flat[:, k][np.isfinite(flat[:, k])]
        if d.shape[0] and col.size >= min_finite * d.shape[0]:
            lo[k], hi[k] = np.percentile(col, [alpha, 100 - alpha])
    return lo.reshape(d.shape[1:]), hi.reshape(d.shape[1:])


def ratio_draws(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise, NaN where ``den <= 0`` (an empty or negatively weighted
    denominator in a bootstrap replicate)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _t_interval(x: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided ``level`` t-interval for the mean along the last axis, NaN for n < 2.

    Private stand-in for the public ``t_interval`` of the seed contrasts (same definition:
    ``mean -/+ t_{(1+level)/2, n-1} sd / sqrt(n)``); one of the two goes when both meet.
    """
    from scipy import special

    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    if n < 2:
        nan = np.full(x.shape[:-1], np.nan)
        return nan, nan.copy()
    mean = x.mean(axis=-1)
    half = special.stdtrit(n - 1, (1 + level) / 2) * x.std(axis=-1, ddof=1) / math.sqrt(n)
    return mean - half, mean + half
