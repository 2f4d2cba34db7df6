"""The statistics of hardstat's analyses, as small pure functions: NumPy and SciPy only (no torch,
no SQL, no DuckDB).

Everything here is tested against hand-computed values, analytic nulls or slow reference loops
(``tests/analysis/test_stats.py``). The analyses (:mod:`hardstat.analysis.consistency`,
:mod:`hardstat.analysis.semantic`, :mod:`hardstat.analysis.ablation`) count in SQL and call these.

Contents:

* overdispersion of binomial counts: :func:`pearson_dispersion`, :func:`dispersion_statistic`,
  :func:`chi2_upper_tail`, :func:`tarone_z`;
* exact binomial tests and multiplicity: :func:`binomial_tails`,
  :func:`two_sided_binomial_p`, :func:`benjamini_hochberg`, :func:`holm`;
* rank correlation: :func:`midranks`, :func:`spearman_from_counts`, :func:`spearman_t_pvalue`;
* permutations: :func:`permutation_p` (the one permutation p-value, with the +1 correction),
  :class:`StrataShuffle` (uniform permutations within strata);
* integer codes: :func:`factorize` (``np.unique`` with the inverse, without a sort where the
  codes allow);
* persistence and intraclass correlations (the consistency analysis): :func:`centre_within`,
  :func:`cell_means`, :func:`additive_fit`, :func:`pair_correlation`,
  :func:`cross_pair_correlation`, :func:`icc_sums`, :func:`icc_from_sums`, :func:`nested_icc`,
  :func:`stratum_normal_scores`;
* resampling: :func:`bootstrap_ratio_ci`, :func:`bootstrap_sums`, :func:`percentile_interval`,
  :func:`jackknife_interval`; the crossed (two-way) bootstrap of the semantic analysis:
  :func:`crossed_bootstrap_totals`, :func:`percentile_interval_columns`, :func:`ratio_draws`;
* paired contrasts over seeds (the band ablation): :func:`mean_and_se`, :func:`t_quantile`,
  :func:`t_interval`, :func:`t_test_p`, :func:`tost`, :func:`holm`.

p-values are displayed through :mod:`hardstat.display` (``P_FLOOR``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


# -- permutation p-values --------------------------------------------------------------------
def permutation_p(observed: float, null: Any, alternative: str = "greater") -> float:
    """Monte Carlo permutation p-value with the +1 correction (Phipson & Smyth 2010):
    ``(1 + #{T_null >= T_obs}) / (1 + B)`` for ``alternative='greater'`` (``<=`` for 'less',
    ``|T_null| >= |T_obs|`` for 'two-sided'), so it is never 0 and is exact-or-conservative.
    A relative tolerance of 1e-12 counts ties that differ only by rounding as hits."""
    null = np.asarray(null, dtype=np.float64)
    if not math.isfinite(observed) or null.size == 0:
        return float("nan")
    tol = 1e-12 * max(abs(observed), 1e-300)
    if alternative == "greater":
        hits = np.count_nonzero(null >= observed - tol)
    elif alternative == "less":
        hits = np.count_nonzero(null <= observed + tol)
    elif alternative == "two-sided":
        hits = np.count_nonzero(np.abs(null) >= abs(observed) - tol)
    else:
        raise ValueError(
            f"alternative must be 'greater', 'less' or 'two-sided', not {alternative!r}"
        )
    return float((1 + hits) / (1 + null.size))


class StrataShuffle:
    """Uniform random permutations within strata, drawn fast for many strata at once.

    ``stratum`` is an integer array sorted so that each stratum is one contiguous block.
    :meth:`draw` returns an index array ``idx`` (a permutation of ``0..n-1``) that maps every
    position to a position of the same stratum, uniformly among the ``n_s!`` arrangements of
    each block and independently across blocks. Blocks of similar size are stacked into
    matrices padded with -1 and shuffled row by row with ``Generator.permuted`` (Fisher-Yates
    in C); dropping the padding from a uniformly shuffled row leaves a uniformly shuffled block.
    """

    def __init__(self, stratum: Any, bucket: int = 8192) -> None:
        stratum = np.asarray(stratum)
        if stratum.ndim != 1:
            raise ValueError("stratum must be one-dimensional")
        if stratum.size and np.any(stratum[1:] < stratum[:-1]):
            raise ValueError("stratum must be sorted (each stratum one contiguous block)")
        self.n = int(stratum.size)
        change = np.r_[True, stratum[1:] != stratum[:-1]] if self.n else np.zeros(0, bool)
        starts = np.flatnonzero(change)
        sizes = np.diff(np.r_[starts, self.n])
        by_size = np.argsort(sizes, kind="stable")
        self._groups: list[tuple[np.ndarray, np.ndarray]] = []
        for b0 in range(0, by_size.size, bucket):
            sel = by_size[b0 : b0 + bucket]
            width = int(sizes[sel].max())
            col = np.arange(width)
            valid = col[None, :] < sizes[sel][:, None]  # (rows, width)
            positions = starts[sel][:, None] + col[None, :]
            table = np.where(valid, positions, -1).astype(np.int64)  # (rows, width)
            self._groups.append((table, positions[valid]))

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        idx = np.empty(self.n, np.int64)
        for table, dest in self._groups:
            shuffled = rng.permuted(table, axis=1)
            idx[dest] = shuffled[shuffled >= 0]
        return idx

    def permuter(self, values: Any) -> Callable[[np.random.Generator], np.ndarray]:
        """A function that returns ``values`` (non-negative integers, one per position)
        permuted within strata, ``values[draw(rng)]`` in distribution, without the index
        array: the padded tables hold the values themselves."""
        values = np.asarray(values)
        if values.shape != (self.n,) or (values.size and values.min() < 0):
            raise ValueError("values must be one non-negative integer per position")
        tables = [
            (np.where(table >= 0, values[np.maximum(table, 0)], -1), dest)
            for table, dest in self._groups
        ]

        def draw(rng: np.random.Generator) -> np.ndarray:
            out = np.empty(self.n, values.dtype)
            for table, dest in tables:
                shuffled = rng.permuted(table, axis=1)
                out[dest] = shuffled[shuffled >= 0]
            return out

        return draw


class StrataRotation:
    """Random rotations within strata: the randomization group of the consistency test.

    ``stratum`` is sorted (each stratum one contiguous block). At construction each stratum's
    positions are put in one random order (``arranged``, drawn from ``rng`` with
    :class:`StrataShuffle`); :meth:`permuter` then returns a function that rotates the values
    of every stratum, in that order, by an independent uniformly random offset. Rotations form
    a subgroup of the permutations within strata, so a Monte Carlo test over them is exact
    whenever the null makes the values exchangeable within strata (Hemerik & Goeman 2018), and
    one draw costs a few vector operations instead of a shuffle of every stratum (about 4x
    faster at a million keys). Values come back in arranged order: pair them with
    ``x[arranged]`` for any other per-position array ``x``.
    """

    def __init__(self, stratum: Any, rng: np.random.Generator) -> None:
        stratum = np.asarray(stratum)
        self.arranged = StrataShuffle(stratum).draw(rng)  # positions, each stratum shuffled
        self.n = int(stratum.size)
        change = np.r_[True, stratum[1:] != stratum[:-1]] if self.n else np.zeros(0, bool)
        starts = np.flatnonzero(change)
        self.sizes = np.diff(np.r_[starts, self.n]).astype(np.int64)
        self.block = np.repeat(np.arange(starts.size), self.sizes)
        self.start_of = np.repeat(starts, self.sizes).astype(np.int64)
        self.size_of = np.repeat(self.sizes, self.sizes)
        self.local = np.arange(self.n) - self.start_of

    def rotation(self, rng: np.random.Generator) -> np.ndarray:
        """Slot j (arranged order) takes the value of slot ``rotation[j]``."""
        shift = (rng.random(self.sizes.size) * self.sizes).astype(np.int64)
        idx = self.local + shift[self.block]
        idx -= self.size_of * (idx >= self.size_of)
        return idx + self.start_of

    def permuter(self, values: Any) -> Callable[[np.random.Generator], np.ndarray]:
        """A function returning ``values`` rotated within strata, in arranged order."""
        arranged = np.asarray(values)[self.arranged]
        return lambda rng: arranged[self.rotation(rng)]


# -- integer codes ----------------------------------------------------------------------------
def factorize(codes: Any) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(codes, return_inverse=True)`` for integer codes, without a sort where it can:
    sorted codes in one pass, codes in a range at most about twice their number through a
    presence table; others by ``np.unique``. Returns ``(uniq, inverse)``: the distinct codes in
    increasing order and each code's index into them (int64)."""
    c = np.asarray(codes).ravel()
    if c.dtype.kind not in "iu":
        raise TypeError(f"factorize takes integer codes, not {c.dtype}")
    c = c.astype(np.int64, copy=False)
    if c.size < 2:
        return c.copy(), np.zeros(c.size, np.int64)
    step_up = c[1:] >= c[:-1]
    if step_up.all():  # sorted: a new code wherever the value changes
        new = np.empty(c.size, bool)
        new[0] = True
        np.not_equal(c[1:], c[:-1], out=new[1:])
        return c[new], np.cumsum(new, dtype=np.int64) - 1
    lo, hi = int(c.min()), int(c.max())
    if hi - lo < 2 * c.size + (1 << 20):  # a dense range: mark the codes present
        shifted = c - lo
        present = np.zeros(hi - lo + 1, bool)
        present[shifted] = True
        index = np.cumsum(present, dtype=np.int64) - 1
        return np.flatnonzero(present) + lo, index[shifted]
    uniq, inverse = np.unique(c, return_inverse=True)
    return uniq, inverse.astype(np.int64, copy=False).ravel()


# -- persistence: correlation between different items of one group ---------------------------
def centre_within(values: Any, stratum: Any) -> np.ndarray:
    """``values`` minus the mean of their stratum (``stratum``: integer codes, any order)."""
    values = np.asarray(values, dtype=np.float64)
    codes, inverse = np.unique(np.asarray(stratum), return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=codes.size)
    counts = np.bincount(inverse, minlength=codes.size)
    return values - (sums / counts)[inverse]


@dataclass(frozen=True)
class PairCorrelation:
    """The correlation of centred scores over pairs of distinct items of the same group.

    ``statistic = (numerator / n_pairs) / variance``: the mean product over ordered pairs of
    different items that share a group, over the variance of one item. With two item sets
    (``x`` and ``y``, e.g. two runs) the pairs are (an item of x, an item of y) of one group
    and the variance is ``sqrt(var_x var_y)``.
    """

    statistic: float
    numerator: float
    n_pairs: int
    variance: float


def pair_correlation(c: Any, group: Any, n_groups: int, *, ddof: int = 0) -> PairCorrelation:
    """Correlation of centred scores ``c`` (n,) between different items of one group.

    ``sum_g sum_{a != b in g} c_a c_b = sum_g S_g^2 - sum_a c_a^2`` with ``S_g = sum_{a in g}
    c_a``; pairs ``sum_g n_g (n_g - 1)``; variance ``sum c^2 / (n - ddof)`` (``ddof`` = the
    number of stratum means removed from ``c``).
    """
    c = np.asarray(c, dtype=np.float64)
    group = np.asarray(group, dtype=np.int64)
    s = np.bincount(group, weights=c, minlength=n_groups)
    n = np.bincount(group, minlength=n_groups).astype(np.float64)
    sq = float(c @ c)
    numerator = float(s @ s) - sq
    pairs = round(float(n @ n) - float(n.sum()))
    variance = sq / max(c.size - ddof, 1)
    stat = numerator / pairs / variance if pairs > 0 and variance > 0 else float("nan")
    return PairCorrelation(stat, numerator, pairs, variance)


def cross_pair_correlation(
    cx: Any, gx: Any, cy: Any, gy: Any, n_groups: int, *, ddof_x: int = 0, ddof_y: int = 0
) -> PairCorrelation:
    """Correlation of centred scores between items of two sets that share a group:
    ``sum_g S^x_g S^y_g / sum_g n^x_g n^y_g / sqrt(var_x var_y)``."""
    cx, cy = np.asarray(cx, dtype=np.float64), np.asarray(cy, dtype=np.float64)
    sx = np.bincount(np.asarray(gx, dtype=np.int64), weights=cx, minlength=n_groups)
    sy = np.bincount(np.asarray(gy, dtype=np.int64), weights=cy, minlength=n_groups)
    nx = np.bincount(np.asarray(gx, dtype=np.int64), minlength=n_groups).astype(np.float64)
    ny = np.bincount(np.asarray(gy, dtype=np.int64), minlength=n_groups).astype(np.float64)
    numerator = float(sx @ sy)
    pairs = round(float(nx @ ny))
    vx = float(cx @ cx) / max(cx.size - ddof_x, 1)
    vy = float(cy @ cy) / max(cy.size - ddof_y, 1)
    variance = math.sqrt(vx * vy)
    stat = numerator / pairs / variance if pairs > 0 and variance > 0 else float("nan")
    return PairCorrelation(stat, numerator, pairs, variance)


# -- intraclass correlations of hardness -----------------------------------------------------
ICC_SUM_COLUMNS = (
    "pairs",  # sum m: pair-level observations
    "ss",  # sum x^2 over pairs
    "within_products",  # sum over keys of sum_{q != q'} x_q x_q'
    "within_pairs",  # sum over keys of m (m - 1)
    "between_products",  # sum over groups of sum_{a != b} X_a X_b  (X = sum of x over a key)
    "between_pairs",  # sum over groups of sum_{a != b} m_a m_b
)
"""Columns of :func:`icc_sums`: additive over groups, so a bootstrap over groups (negatives)
resamples rows and recomputes the ICCs with :func:`icc_from_sums`."""


@dataclass(frozen=True)
class NestedICC:
    """Intraclass correlations of a pair-level score (see :func:`nested_icc`)."""

    within_key: float
    between_key: float
    variance: float  # pair-level variance beyond the strata
    cov_within_key: float  # covariance of two queries' scores of one key
    cov_between_keys: float  # ... of two different keys of one group


def cell_means(values: Any, weights: Any, cell: Any) -> np.ndarray:
    """The weighted mean of ``values`` over each item's cell, per item."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    codes, inverse = np.unique(np.asarray(cell), return_inverse=True)
    num = np.bincount(inverse, weights=weights * values, minlength=codes.size)
    den = np.bincount(inverse, weights=weights, minlength=codes.size)
    return (num / den)[inverse]


class AdditiveFit:
    """Two-way additive centring within blocks: for each item, ``mean[block, first] +
    mean[block, second] - mean[block]`` (weighted cell means, one sweep).

    hardstat uses it with block = (run, logged step), first = the negative's class, second =
    the key step: it removes what all keys of a class share at a step and what all keys of an
    age share, without cells as small as (key step x class). The cells are found once; then
    :meth:`fitted` centres any number of value arrays. ``n_params`` is the number of cell
    means it uses (``#(block, first) + #(block, second) - #block``, the degrees of freedom it
    takes).
    """

    def __init__(self, weights: Any, block: Any, first: Any, second: Any) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        blocks, block = factorize(np.asarray(block, dtype=np.int64))  # dense block ids
        first = np.asarray(first, dtype=np.int64)
        second = np.asarray(second, dtype=np.int64)
        cells = []
        for other in (first, second):
            uniq, inverse = factorize(_pair_code(block, other))
            cells.append((inverse, uniq.size))
        cells.append((block, blocks.size))
        self._cells = cells
        self._totals = [  # the weight of each cell, shared by every fitted()
            np.bincount(inverse, weights=self.weights, minlength=n) for inverse, n in cells
        ]
        self.n_params = cells[0][1] + cells[1][1] - cells[2][1] if block.size else 0

    def fitted(self, values: Any) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        out = np.zeros(v.size)
        weighted = self.weights * v
        for (inverse, n), den, sign in zip(
            self._cells, self._totals, (1.0, 1.0, -1.0), strict=True
        ):
            num = np.bincount(inverse, weights=weighted, minlength=n)
            out += sign * (num / den)[inverse]
        return out


def _pair_code(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One int64 code per (a, b) pair of integers: b shifted to start at 0, a scaled past b's
    range (a and b must be small enough for the product to fit in 64 bits)."""
    b0 = b - b.min() if b.size else b
    return a * (int(b0.max()) + 1 if b.size else 1) + b0


def additive_fit(
    values: Any, weights: Any, block: Any, first: Any, second: Any
) -> tuple[np.ndarray, int]:
    """:class:`AdditiveFit` of one value array: ``(fitted, n_params)``."""
    fit = AdditiveFit(weights, block, first, second)
    return fit.fitted(values), fit.n_params


def icc_sums(
    m: Any, total: Any, total_sq: Any, fitted: Any, group: Any, n_groups: int
) -> np.ndarray:
    """Per group (negative), the additive sums :data:`ICC_SUM_COLUMNS`: (n_groups, 6).

    Inputs per key: ``m`` pairs, ``total`` and ``total_sq`` (sums of the score and of its square
    over the key's pairs), ``fitted`` (the score a pair of this key has on average beyond the
    key itself: its stratum's mean, or an additive fit) and its group code. Pair scores are
    centred, ``x = h - fitted``, so per key ``X = total - m fitted`` and ``sum x^2 = total_sq
    - 2 fitted total + m fitted^2``.
    """
    m = np.asarray(m, dtype=np.float64)
    t = np.asarray(total, dtype=np.float64)
    tt = np.asarray(total_sq, dtype=np.float64)
    mu = np.asarray(fitted, dtype=np.float64)
    group = np.asarray(group, dtype=np.int64)
    x_sum = t - m * mu  # (n,) X_a
    x_sq = tt - 2 * mu * t + m * mu * mu  # (n,) sum of x^2 over the key's pairs
    out = np.zeros((n_groups, len(ICC_SUM_COLUMNS)))
    out[:, 0] = np.bincount(group, weights=m, minlength=n_groups)
    out[:, 1] = np.bincount(group, weights=x_sq, minlength=n_groups)
    out[:, 2] = np.bincount(group, weights=x_sum * x_sum - x_sq, minlength=n_groups)
    out[:, 3] = np.bincount(group, weights=m * (m - 1), minlength=n_groups)
    sx = np.bincount(group, weights=x_sum, minlength=n_groups)
    out[:, 4] = sx * sx - np.bincount(group, weights=x_sum * x_sum, minlength=n_groups)
    out[:, 5] = out[:, 0] ** 2 - np.bincount(group, weights=m * m, minlength=n_groups)
    return out


def icc_from_sums(sums: Any, n_params: int) -> NestedICC:
    """The ICCs from column totals of :func:`icc_sums` (see :func:`nested_icc`); ``n_params``
    is the number of means the centring estimated (the strata)."""
    pairs, ss, w_prod, w_pairs, b_prod, b_pairs = (float(v) for v in np.asarray(sums))
    nan = float("nan")
    variance = ss / (pairs - n_params) if pairs > n_params else nan
    cov_w = w_prod / w_pairs if w_pairs > 0 else nan
    cov_b = b_prod / b_pairs if b_pairs > 0 else nan
    if not variance > 0:
        return NestedICC(nan, nan, variance, cov_w, cov_b)
    return NestedICC(cov_w / variance, cov_b / variance, variance, cov_w, cov_b)


def nested_icc(
    m: Any, total: Any, total_sq: Any, stratum: Any, group: Any, n_groups: int
) -> NestedICC:
    """Within-key and between-key intraclass correlations of a pair-level score ``h``.

    Inputs are per key a: ``m`` pairs (queries that saw it), ``total = sum h`` and
    ``total_sq = sum h^2`` over those pairs, its stratum (keys that share a stratum are
    exchangeable apart from their identity) and its group (the negative, i.e. the image). With
    ``x = h - mu_stratum`` (the stratum's mean over its pairs):

    * ``variance = sum x^2 / (N - n_strata)``, the pair-level variance beyond the strata;
    * ``within_key``: the mean of ``x_q x_q'`` over ordered pairs of different queries that saw
      one key, over ``variance``: the correlation of two queries' hardness of one key;
    * ``between_key``: the mean of ``x x'`` over pairs of pairs that involve two different keys
      of one group, over ``variance``: the correlation of two queries' hardness of two
      different keys of one image, the part of hardness that persists beyond the key.

    Pairwise (Fisher) intraclass correlations: averages over pairs, so neither depends on how
    many queries saw each key (the logging cadence), unlike the correlation of key means.
    """
    n_strata = int(np.unique(np.asarray(stratum)).size)
    fitted = cell_means(np.asarray(total) / np.asarray(m), m, stratum)
    sums = icc_sums(m, total, total_sq, fitted, group, n_groups).sum(axis=0)
    return icc_from_sums(sums, n_strata)


# -- per-group tests from within-stratum ranks -------------------------------------------------
def stratum_normal_scores(values: Any, stratum: Any) -> tuple[np.ndarray, np.ndarray]:
    """Van der Waerden scores within strata and their exact null variances.

    For item a in a stratum of n items, ``g_a = Phi^-1((r_a - 1/2) / n)`` with ``r_a`` its
    rank among the stratum's values (ties averaged); ``var_a`` is the mean of ``g^2`` over the
    stratum's n grid points: the exact variance of ``g_a`` when the stratum's values are
    exchangeable (slightly below 1; 0 for a stratum of one). Returns ``(g, var)``.
    """
    from scipy.special import ndtri

    values = np.asarray(values, dtype=np.float64)
    stratum = np.asarray(stratum)
    n = values.size
    order = np.lexsort((values, stratum))  # by stratum, then value
    s_sorted, v_sorted = stratum[order], values[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    sizes = np.diff(np.r_[starts, n])
    # tie groups: runs of equal (stratum, value); their average 1-based rank in the block
    new = np.r_[True, (s_sorted[1:] != s_sorted[:-1]) | (v_sorted[1:] != v_sorted[:-1])]
    tie_start = np.flatnonzero(new)
    tie_len = np.diff(np.r_[tie_start, n])
    pos_in_block = np.arange(n) - np.repeat(starts, sizes)
    avg_rank = pos_in_block[tie_start] + (tie_len + 1) / 2.0
    ranks = np.empty(n)
    ranks[order] = np.repeat(avg_rank, tie_len)
    size_of = np.empty(n)
    size_of[order] = np.repeat(sizes, sizes)
    g = ndtri((ranks - 0.5) / size_of)
    var = np.empty(n)
    for size in np.unique(sizes).tolist():
        grid = ndtri((np.arange(1, size + 1) - 0.5) / size)
        var[size_of == size] = float(np.mean(grid * grid))
    return g, var


def bootstrap_sums(
    columns: Any, reps: int, rng: np.random.Generator, *, chunk: int = 32
) -> np.ndarray:
    """Nonparametric bootstrap of column sums over independent units (rows).

    ``columns`` (J, p): per-unit additive statistics. Each replicate draws J units with
    replacement (multinomial counts) and returns the p column sums: (reps, p). Any statistic
    that is a function of sums over units (a ratio, a correlation) is then computed per row.
    """
    x = np.asarray(columns, dtype=np.float64)
    n_units = x.shape[0]
    out = np.empty((reps, x.shape[1]))
    for start in range(0, reps, chunk):
        c = min(chunk, reps - start)
        idx = rng.integers(0, n_units, size=(c, n_units)) + np.arange(c)[:, None] * n_units
        counts = np.bincount(idx.ravel(), minlength=c * n_units).reshape(c, n_units)
        out[start : start + c] = counts.astype(np.float64) @ x
    return out


def percentile_interval(draws: Any, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap draws (non-finite draws dropped)."""
    d = np.asarray(draws, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2 * 100
    lo, hi = np.percentile(d, [alpha, 100 - alpha])
    return float(lo), float(hi)


def bootstrap_normal_interval(
    estimate: float, draws: Any, level: float = 0.95
) -> tuple[float, float]:
    """``estimate -/+ z * sd(draws)``: the normal interval with a bootstrap standard error
    (Efron & Tibshirani 1993, ch. 13). For smooth statistics of many independent units it
    needs far fewer draws than the percentile interval, whose tail quantiles rest on a
    handful of draws (non-finite draws dropped; NaN with fewer than 2)."""
    from scipy.special import ndtri

    d = np.asarray(draws, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size < 2 or not math.isfinite(estimate):
        return float("nan"), float("nan")
    half = float(ndtri(0.5 + level / 2)) * float(d.std(ddof=1))
    return estimate - half, estimate + half


def jackknife_interval(
    estimate: float, leave_one_out: Any, level: float = 0.95
) -> tuple[float, float, float]:
    """Jackknife standard error and t-interval: ``(se, lo, hi)`` from the n leave-one-out
    estimates, ``se^2 = (n - 1) / n * sum (theta_i - mean theta)^2``, t with n - 1 df."""
    from scipy.stats import t as student_t

    loo = np.asarray(leave_one_out, dtype=np.float64)
    n = loo.size
    if n < 2 or not np.all(np.isfinite(loo)):
        return float("nan"), float("nan"), float("nan")
    se = math.sqrt((n - 1) / n * float(np.sum((loo - loo.mean()) ** 2)))
    q = float(student_t.ppf(0.5 + level / 2, n - 1))
    return se, estimate - q * se, estimate + q * se


# -- paired contrasts over seeds -----------------------------------------------------------------
# The unit of replication is the seed: x holds one paired difference per seed (band minus
# reference, the same seed's runs). Every function works along the last axis, so an (S, n) array
# of S simulated experiments of n seeds gives S answers at once.


def mean_and_se(x: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean, standard error ``sd / sqrt(n)`` (sd with ddof = 1) and n along the last axis.

    x: (..., n). The standard error is NaN for n < 2.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    mean = x.mean(axis=-1) if n else np.full(x.shape[:-1], np.nan)
    if n < 2:
        return mean, np.full(x.shape[:-1], np.nan), n
    return mean, x.std(axis=-1, ddof=1) / math.sqrt(n), n


def t_quantile(q: float, df: int) -> float:
    """The q-quantile of Student's t with ``df`` degrees of freedom."""
    from scipy import special

    return float(special.stdtrit(df, q))


def t_interval(x: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided ``level`` t-interval for the mean: ``mean -/+ t_{(1+level)/2, n-1} * se``.

    x: (..., n). Returns (lo, hi), each (...); NaN for n < 2 (no interval exists).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    mean, se, n = mean_and_se(x)
    if n < 2:
        return mean * np.nan, mean * np.nan
    half = t_quantile((1 + level) / 2, n - 1) * se
    return mean - half, mean + half


def _t_sf(mean: np.ndarray, se: np.ndarray, mu: float, df: int) -> np.ndarray:
    """P(T_df >= (mean - mu) / se); with se = 0 the t is +-infinite (0 when mean == mu)."""
    from scipy import special

    with np.errstate(divide="ignore", invalid="ignore"):
        infinite = np.where(mean == mu, 0.0, np.sign(mean - mu) * np.inf)
        t = np.where(se > 0, (mean - mu) / np.where(se > 0, se, 1.0), infinite)
    return np.asarray(special.stdtr(df, -t))


def t_test_p(x: Any, mu: float = 0.0) -> np.ndarray:
    """Two-sided one-sample t-test p of ``mean == mu`` along the last axis (NaN for n < 2).

    With zero spread the p is 0 when the mean differs from ``mu`` and 1 when it equals it.
    """
    mean, se, n = mean_and_se(x)
    if n < 2:
        return mean * np.nan
    upper = _t_sf(mean, se, mu, n - 1)
    return np.minimum(1.0, 2 * np.minimum(upper, 1 - upper))


@dataclass(frozen=True)
class Tost:
    """Two one-sided t tests of equivalence within ``(-margin, margin)`` (Schuirmann 1987).

    ``p_lower`` tests H0: mean <= -margin, ``p_upper`` H0: mean >= margin; ``p`` is the larger
    (the TOST p-value); ``equivalent`` is ``p < alpha``, which is the same as the
    ``1 - 2 alpha`` t-interval lying inside ``(-margin, margin)``.
    """

    p: np.ndarray
    p_lower: np.ndarray
    p_upper: np.ndarray
    equivalent: np.ndarray


def tost(x: Any, margin: float, alpha: float = 0.05) -> Tost:
    """TOST along the last axis of x (..., n); NaN p-values and no equivalence for n < 2."""
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be > 0, got {margin}")
    mean, se, n = mean_and_se(x)
    if n < 2:
        nan = mean * np.nan
        return Tost(nan, nan, nan, np.zeros(np.shape(mean), dtype=bool))
    p_lower = _t_sf(mean, se, -margin, n - 1)  # large mean: reject mean <= -margin
    p_upper = 1 - _t_sf(mean, se, margin, n - 1)  # small mean: reject mean >= margin
    p = np.maximum(p_lower, p_upper)
    return Tost(p, p_lower, p_upper, p < alpha)


def holm(p: Any) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; reject where ``adjusted < alpha`` (family-wise
    error at most alpha under any dependence). NaN entries are not in the family and stay NaN.

    With the m finite p sorted ascending, ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``.
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
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
