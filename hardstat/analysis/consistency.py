"""Is a negative's hardness a property of the image, beyond its class? Persistence across keys.

The paper's claim C6 is that some negatives are consistently hard (or easy) more often than
chance. A negative appears in a query's queue as a *key*: one augmented view of one image,
encoded by the momentum encoder at one step. Every query of the steps the key spends in the
queue sees the same key, so a key that happens to sit in a dense region of embedding space is
hard for many queries at once: that is a property of the view and the encoder state, not of
the image. The question is whether hardness persists from one key of an image to *another*
key of the same image, beyond what the image's class explains.

Units and estimands (names as in the log):

* pair: a logged (query, key) with ``rank`` r among K negatives; its hardness is
  ``h = (K - r) / (K - 1)`` (1 = hardest of the query's queue, 0 = easiest, mean 1/2 for every
  query) and its in-band indicator ``b = [rank in the hard band]``;
* key: ``(run, neg_id, key_step)``; its score is the mean h over the queries that saw it
  (logs without ``key_step``, schema 1-2, use ``(run, neg_id, step)``: exact when each key is
  logged at one step, i.e. ``log.every >= K / batch``);
* stratum: ``(run, logged step, class of the negative)`` (a key logged at several steps
  belongs to the first): its keys sat in the queue together, were seen by the same queries and
  are of one class, and since the data order is random, which image holds which of its slots
  is random. A key's *centred* score is its score minus what its class and its key step (its
  age) predict within the logged step (an additive fit): that removes class-level hardness,
  the classes of the queries, the key's age and the encoder's drift; what is left is the
  key's own hardness;
* negative (image): ``neg_id``; self-negatives (``neg_id = query_id``: the query image's own key
  from an earlier epoch) are excluded and counted.

Effect sizes, with intervals from a bootstrap over negatives (images, the unit that carries a
persistent effect; all keys of an image move together):

* ``icc_within_key``: the correlation of two queries' hardness of one key (per-key hubs);
* ``icc_between_key``: of two queries' hardness of two different keys of one image: the
  persistent part. Both are variance components of pair-level hardness beyond the strata
  (:func:`hardstat.analysis.stats.nested_icc`), so they do not depend on the logging cadence;
  also for the in-band indicator.

The primary test (C6): ``persistence``, the correlation of centred key scores between different
keys of one image, over all such pairs of keys (:func:`hardstat.analysis.stats.pair_correlation`).
Null: the negatives' identities moved within strata by random rotations (a subgroup of the
permutations within strata, :class:`hardstat.analysis.stats.StrataRotation`), exact under
"given the stratum, a key's hardness says nothing about which image it came from". One-sided
Monte Carlo p with the +1 correction. Across runs (seeds) and between epochs the same
correlation is taken between keys of one image in two runs (two epochs), the identities
rotated within strata; with three or more runs, the mean over pairs of runs with a jackknife
interval over runs.

Per-negative calls: each key's centred score becomes a van der Waerden score within its
stratum (exchangeable under the null, exact variance), summed over the image's keys (at least
``min_keys``) into a Stouffer z; two-sided normal p (conservative: the scores are bounded),
Benjamini-Hochberg at ``fdr``; hard and easy calls have the same power. Calls are ranked by an
empirical-Bayes estimate of the image's persistent effect (its mean centred key score shrunk
by ``n tau2 / (n tau2 + sigma2)``), in percentile points.

Diagnostics ("any structure / calibration", not tests of C6): the per-negative binomial
overdispersion of in-band counts against exchangeable ranks (Pearson X2 / df, Tarone's Z), the
number of per-key hubs (keys in the band for more of their queries than chance, BH), and the
same overdispersion on ranks shuffled within each logged query (should be ~1).

Counting is one streaming DuckDB aggregation per key (named parameters); everything after it
is NumPy on one row per key. No torch.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl

from hardstat import display
from hardstat.analysis import keycount, stats
from hardstat.bands import Band, parse_band
from hardstat.errors import ConfigError, LogError, RunError

DEFAULT_BAND = "0-5"
DEFAULT_FDR = 0.05
DEFAULT_PERMUTATIONS = 1000
DEFAULT_BOOTSTRAP = 200
DEFAULT_MIN_KEYS = 3
STRATA = "run x logged step x negative class"
PERSISTENCE_NULL = f"negative identities rotated at random within strata ({STRATA})"


# -- the key table ---------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyTable:
    """One row per key, sorted by stratum (run, first logged step, negative class).

    ``neg`` indexes ``neg_ids`` (the images); ``h_sum`` and ``h_sq`` are sums of hardness
    ``(K - rank) / (K - 1)`` and its square over the key's ``m`` pairs, ``k`` its pairs in the
    hard band. ``fitted_h`` and ``fitted_b`` are what a key's mean hardness (in-band rate) is
    expected to be from its stratum alone: within its (run, logged step), the additive fit of
    its class and its key step (:func:`hardstat.analysis.stats.additive_fit`), which used
    ``n_params`` means.
    """

    runs: tuple[str, ...]
    queue_size: int
    neg_ids: np.ndarray  # (J,) sample_id of each image
    run: np.ndarray  # (n,) index into runs
    neg: np.ndarray  # (n,) index into neg_ids
    key_step: np.ndarray  # (n,)
    epoch: np.ndarray  # (n,) epoch the key was first logged in
    step: np.ndarray  # (n,) step the key was first logged at
    label: np.ndarray  # (n,) class of the negative, -1 if unknown
    m: np.ndarray  # (n,) pairs
    h_sum: np.ndarray  # (n,)
    h_sq: np.ndarray  # (n,)
    k: np.ndarray  # (n,) pairs in the hard band
    stratum: np.ndarray  # (n,) sorted stratum codes
    fitted_h: np.ndarray  # (n,) expected mean hardness from the stratum and key step
    fitted_b: np.ndarray  # (n,) expected in-band rate from the stratum and key step
    n_params: int  # cell means the fits used
    n_self: int  # self-negative pairs left out
    legacy_runs: tuple[str, ...]  # runs whose log has no key_step

    @property
    def n_keys(self) -> int:
        return int(self.m.size)

    @cached_property
    def n_strata(self) -> int:
        st = self.stratum  # sorted: count the changes
        return int(np.count_nonzero(st[1:] != st[:-1])) + 1 if st.size else 0

    def centred_scores(self) -> np.ndarray:
        """Each key's mean hardness minus what its stratum and key step predict."""
        return self.h_sum / self.m - self.fitted_h

    def params_of(self, mask: np.ndarray) -> int:
        """Cell means of the fits among the keys of ``mask`` (a run, an epoch)."""
        block = self.run[mask] * (1 << 32) + self.step[mask]
        ab = np.unique(block * 4096 + self.label[mask] + 1).size
        ac = np.unique(block * (1 << 24) + (self.step[mask] - self.key_step[mask])).size
        return int(ab + ac - np.unique(block).size)

    def subset(self, mask: np.ndarray) -> KeyTable:
        arrays = {
            name: getattr(self, name)[mask]
            for name in (
                "run",
                "neg",
                "key_step",
                "epoch",
                "step",
                "label",
                "m",
                "h_sum",
                "h_sq",
                "k",
                "stratum",
                "fitted_h",
                "fitted_b",
            )
        }
        return KeyTable(
            self.runs,
            self.queue_size,
            self.neg_ids,
            n_params=self.params_of(mask),
            n_self=self.n_self,
            legacy_runs=self.legacy_runs,
            **arrays,
        )


_COUNT_SQL = """
SELECT neg_id, {key} AS key_step, min(step) AS step, count(*) AS m, sum(rank)::DOUBLE AS r1,
       sum(rank::BIGINT * rank)::DOUBLE AS r2, sum(({band})::INTEGER) AS k
FROM pairs
WHERE neg_id IS NOT NULL AND neg_id <> query_id{where}
GROUP BY neg_id, {key}
"""
"""Per key of one run: pairs m, rank sums, pairs in the hard band, first logged step.
Self-negatives are left out here and counted by :data:`_SELF_SQL`; a log without key_step
(schema 1-2) groups by (neg_id, step)."""

_SELF_SQL = """
SELECT count(*) AS n FROM pairs
WHERE neg_id = query_id AND list_contains($runs, run){epochs}
"""

_EPOCH_SQL = """
SELECT step, min(epoch) AS epoch FROM {table} WHERE run = $run GROUP BY step
"""


def count_keys(
    con: Any,
    runs: Sequence[str],
    queue_size: int,
    band: Band,
    *,
    epochs: Sequence[int] | None = None,
    filter_runs: bool = True,
    legacy_runs: Sequence[str] = (),
    method: str = "files",
) -> KeyTable:
    """One row per key of ``runs``: pairs, rank sums, pairs in the band, the fitted strata.

    ``band`` (a range band) defines the in-band indicator; ``epochs`` keeps only pairs logged
    in those epochs; ``legacy_runs`` are runs without key_step (grouped by the logged step).
    ``method="files"`` (the default) streams each run's Parquet files through
    :func:`hardstat.analysis.keycount.count_run`, with as many threads as the connection's
    DuckDB; ``method="sql"`` runs the reference aggregation :data:`_COUNT_SQL` on the
    connection's ``pairs`` view (``filter_runs=False`` skips its run filter when ``runs`` is
    the one run on the connection), parameters bound by name (``$run``, ``$epochs``, ``$lo0``,
    ``$hi0``...). Both give the same table, keys in the same order.
    """
    if method not in ("files", "sql"):
        raise ValueError(f"method must be 'files' or 'sql', not {method!r}")
    intervals = band.rank_intervals(queue_size)
    parts: dict[str, list[np.ndarray]] = {
        c: [] for c in ("run", "neg", "ks", "step", "m", "r1", "r2", "k")
    }
    n_self = 0
    from hardstat.analysis import logs

    # DuckDB's threads, at most 8: each holds a row group and its work arrays (~20 MB at K=4096)
    threads = min(8, int(con.execute("SELECT current_setting('threads')").fetchall()[0][0]))
    for r, name in enumerate(runs):
        if method == "files":
            got = keycount.count_run(
                logs.connected_files(con, name, "pairs"),
                intervals,
                epochs=epochs,
                legacy=name in legacy_runs,
                check_stop=_check_stop,
                threads=threads,
            )
        else:
            got = _count_sql(
                con,
                name,
                intervals,
                epochs,
                single=not filter_runs and len(runs) == 1,
                legacy=name in legacy_runs,
            )
        n_self += got.n_self
        parts["run"].append(np.full(got.n_keys, r, np.int64))
        for c, a in (("neg", got.neg), ("ks", got.key_step), ("step", got.step)):
            parts[c].append(a)
        for c in ("m", "r1", "r2", "k"):
            parts[c].append(getattr(got, c))
    col = {  # one run: its arrays as they are
        c: (v[0] if len(v) == 1 else np.concatenate(v)) if v else np.zeros(0, np.int64)
        for c, v in parts.items()
    }
    del parts
    neg_ids, neg = stats.factorize(col.pop("neg"))
    label_of = _labels(con, runs, neg_ids)  # (J,) class of each negative, -1 if unknown
    steps, step_id = stats.factorize(col.pop("step"))
    ks_values, ks_id = stats.factorize(col.pop("ks"))
    # strata (run, first logged step, class): dense cell ids in that order
    low = min(int(label_of.min()), -1) if label_of.size else -1
    n_labels = int(label_of.max()) - low + 1 if label_of.size else 1  # label - low < n_labels
    cell = (col.pop("run") * max(steps.size, 1) + step_id) * n_labels + (label_of[neg] - low)
    del step_id
    cells, stratum = stats.factorize(cell)
    del cell
    # one sort: (stratum, negative, key step), every key once
    order = _key_order(stratum, neg, ks_id, (cells.size, neg_ids.size, ks_values.size))
    kk = float(queue_size)
    with ThreadPoolExecutor(1, thread_name_prefix="hardstat-keys") as helper:
        # the key sums move on one thread while this one moves the codes (gathers of large
        # arrays release the GIL), then the fit runs there while DuckDB (here: the
        # connection stays on its thread) looks up the epochs
        def sums(col: dict[str, np.ndarray], order: np.ndarray) -> tuple[np.ndarray, ...]:
            m, r1, r2, k = (col[c][order] for c in ("m", "r1", "r2", "k"))
            h_sum = (kk * m - r1) / (kk - 1)  # (n,) sum of hardness (K - rank) / (K - 1)
            h_sq = (kk * kk * m - 2 * kk * r1 + r2) / (kk - 1) ** 2  # (n,) ... of its square
            return m, h_sum, h_sq, k

        moved = helper.submit(sums, col, order)
        stratum, neg, key_step = stratum[order], neg[order], ks_values[ks_id[order]]
        del ks_id
        block, label = cells[stratum] // n_labels, label_of[neg]  # (run, step) dense
        run, step = block // max(steps.size, 1), steps[block % max(steps.size, 1)]
        m, h_sum, h_sq, k = moved.result()
        del col, order

        def fitted() -> tuple[stats.AdditiveFit, np.ndarray, np.ndarray]:
            fit = stats.AdditiveFit(m, block, label, key_step)
            return fit, fit.fitted(h_sum / m), fit.fitted(k / m)

        fits = helper.submit(fitted)
        epoch = _epochs_of(con, runs, run, step)
        fit, fitted_h, fitted_b = fits.result()
        return KeyTable(
            runs=tuple(runs),
            queue_size=queue_size,
            neg_ids=neg_ids,
            run=run,
            neg=neg,
            key_step=key_step,
            epoch=epoch,
            step=step,
            label=label,
            m=m,
            h_sum=h_sum,
            h_sq=h_sq,
            k=k,
            stratum=stratum,
            fitted_h=fitted_h,
            fitted_b=fitted_b,
            n_params=fit.n_params,
            n_self=n_self,
            legacy_runs=tuple(legacy_runs),
        )


def _key_order(
    stratum: np.ndarray, neg: np.ndarray, ks: np.ndarray, sizes: tuple[int, int, int]
) -> np.ndarray:
    """The order of keys by (stratum, negative, key step), all dense codes below ``sizes``:
    one int64 code sorted by polars (a multi-threaded sort) where the bits fit, else
    ``np.lexsort``."""
    bits = [max(int(s) - 1, 1).bit_length() for s in sizes]
    if sum(bits) > 62:
        return np.lexsort((ks, neg, stratum))
    code = (stratum << (bits[1] + bits[2])) | (neg << bits[2]) | ks
    return pl.Series(code).arg_sort().to_numpy().astype(np.int64, copy=False)


def _check_stop() -> None:
    """Raise the CLI's one-line error once Ctrl-C or a time limit has stopped the command."""
    from hardstat import interrupts
    from hardstat.analysis.logs import translate_error

    if interrupts.stop_reason() is not None:
        raise translate_error(RuntimeError("stopped"))


def _count_sql(
    con: Any,
    name: str,
    intervals: Sequence[tuple[int, int]],
    epochs: Sequence[int] | None,
    *,
    single: bool,
    legacy: bool,
) -> keycount.KeyCounts:
    """The reference: :data:`_COUNT_SQL` and :data:`_SELF_SQL` for one run, keys sorted by
    (neg_id, key_step) like :func:`keycount.count_run`."""
    band_sql = " OR ".join(f"(rank > $lo{i} AND rank <= $hi{i})" for i in range(len(intervals)))
    params: dict[str, Any] = {}
    for i, (lo, hi) in enumerate(intervals):
        params[f"lo{i}"], params[f"hi{i}"] = lo, hi
    epoch_sql = " AND list_contains($epochs, epoch)" if epochs is not None else ""
    if epochs is not None:
        params["epochs"] = [int(e) for e in epochs]
    where = ("" if single else " AND run = $run") + epoch_sql
    sql = _COUNT_SQL.format(
        key="step" if legacy else "coalesce(key_step, -1)", band=band_sql, where=where
    )
    cols = _numpy(con, sql, {**params, **({} if single else {"run": name})})
    epoch_params = {"epochs": params["epochs"]} if epochs is not None else {}
    n_self = int(
        _fetch_named(con, _SELF_SQL.format(epochs=epoch_sql), {"runs": [name], **epoch_params})[
            "n"
        ][0]
    )
    neg, ks = cols["neg_id"].astype(np.int64), cols["key_step"].astype(np.int64)
    order = np.lexsort((ks, neg))
    m, r1, r2, k = (cols[c].astype(np.float64)[order] for c in ("m", "r1", "r2", "k"))
    step = cols["step"].astype(np.int64)[order]
    return keycount.KeyCounts(neg[order], ks[order], step, m, r1, r2, k, n_self)


def _epochs_of(con: Any, runs: Sequence[str], run: np.ndarray, step: np.ndarray) -> np.ndarray:
    """The epoch of each (run, step), read from the small ``queries`` table (from ``pairs``
    for steps it lacks)."""
    out = np.full(step.size, -1, np.int64)
    for r, name in enumerate(runs):
        sel = np.flatnonzero(run == r)
        if not sel.size:
            continue
        wanted, inverse = stats.factorize(step[sel])  # the run's distinct steps
        for table in ("queries", "pairs"):
            got = _fetch_named(con, _EPOCH_SQL.format(table=table), {"run": name})
            steps, epochs = got["step"].astype(np.int64), got["epoch"].astype(np.int64)
            order = np.argsort(steps)
            steps, epochs = steps[order], epochs[order]
            pos = np.clip(np.searchsorted(steps, wanted), 0, max(steps.size - 1, 0))
            if steps.size and np.all(steps[pos] == wanted):
                out[sel] = epochs[pos][inverse]
                break
    return out


def _fetch_named(con: Any, sql: str, params: dict[str, Any]) -> dict[str, np.ndarray]:
    arrow = _arrow(con, sql, params)
    return {name: arrow.column(name).to_numpy(zero_copy_only=False) for name in arrow.column_names}


def _numpy(con: Any, sql: str, params: dict[str, Any]) -> dict[str, np.ndarray]:
    """A query's columns as NumPy arrays (DuckDB's fetchnumpy: no Arrow chunks to join)."""
    import duckdb

    from hardstat.analysis.logs import translate_error

    try:
        return {k: np.asarray(v) for k, v in con.sql(sql, params=params).fetchnumpy().items()}
    except duckdb.Error as e:
        raise translate_error(e) from e


def _arrow(con: Any, sql: str, params: dict[str, Any] | list[Any]) -> Any:
    import duckdb

    from hardstat.analysis.logs import translate_error

    try:
        table = con.sql(sql, params=params).to_arrow_table()
    except duckdb.Error as e:
        raise translate_error(e) from e
    import pyarrow.compute as pc

    if "run" in table.column_names and str(table.schema.field("run").type).startswith("dict"):
        table = table.set_column(
            table.column_names.index("run"), "run", pc.cast(table.column("run"), "string")
        )
    return table


def _fetch(con: Any, sql: str, params: Sequence[Any]) -> dict[str, np.ndarray]:
    arrow = _arrow(con, sql, list(params))
    return {name: arrow.column(name).to_numpy(zero_copy_only=False) for name in arrow.column_names}


def _labels(con: Any, runs: Sequence[str], neg_ids: np.ndarray) -> np.ndarray:
    """Class label of each image (-1 where unknown)."""
    lab = _fetch(
        con,
        "SELECT sample_id, min(label) AS label FROM samples "
        "WHERE split = 'train' AND list_contains(?, run) GROUP BY sample_id ORDER BY sample_id",
        [list(runs)],
    )
    out = np.full(neg_ids.size, -1, np.int64)
    if lab["sample_id"].size == 0 or neg_ids.size == 0:
        return out
    ids = lab["sample_id"].astype(np.int64)
    pos = np.clip(np.searchsorted(ids, neg_ids), 0, ids.size - 1)
    found = ids[pos] == neg_ids
    out[found] = lab["label"].astype(np.int64)[pos[found]]
    return out


# -- results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """A number with its 95% interval."""

    value: float
    ci: tuple[float, float]

    def text(self, fmt: str = ".4f") -> str:
        return display.estimate(self.value, self.ci[0], self.ci[1], fmt)


@dataclass(frozen=True)
class Persistence:
    """Correlation of centred key scores between different keys of one image (see module)."""

    statistic: float
    ci: tuple[float, float]
    p_value: float
    permutations: int
    null: str
    n_key_pairs: int  # unordered pairs of different keys of one image
    n_negatives: int  # images with at least two keys
    per_run: tuple[tuple[str, float, int], ...] = ()  # (run, statistic, key pairs)

    def to_dict(self) -> dict[str, Any]:
        return display.json_value(
            {
                "statistic": self.statistic,
                "ci": self.ci,
                "p_value": self.p_value,
                "permutations": self.permutations,
                "null": self.null,
                "n_key_pairs": self.n_key_pairs,
                "n_negatives": self.n_negatives,
                "per_run": [
                    {"run": r, "statistic": s, "n_key_pairs": n} for r, s, n in self.per_run
                ],
            }
        )


@dataclass(frozen=True)
class RunPair:
    first: str
    second: str
    statistic: float
    ci: tuple[float, float]
    p_value: float
    n_negatives: int


@dataclass(frozen=True)
class AcrossRuns:
    """Persistence between runs (seeds) or epochs: keys of one image in two parts."""

    mode: str  # 'runs' or 'epochs'
    statistic: float  # mean over pairs of parts
    ci: tuple[float, float]
    interval: str  # how the interval was made
    p_value: float
    permutations: int
    n_negatives: int  # images seen in at least two parts
    pairs: tuple[RunPair, ...]

    def to_dict(self) -> dict[str, Any]:
        return display.json_value(
            {
                "mode": self.mode,
                "statistic": self.statistic,
                "ci": self.ci,
                "interval": self.interval,
                "p_value": self.p_value,
                "permutations": self.permutations,
                "n_negatives": self.n_negatives,
                "pairs": [
                    {
                        "first": p.first,
                        "second": p.second,
                        "statistic": p.statistic,
                        "ci": p.ci,
                        "p_value": p.p_value,
                        "n_negatives": p.n_negatives,
                    }
                    for p in self.pairs
                ],
            }
        )


@dataclass(frozen=True)
class Diagnostics:
    """Any structure / calibration: exchangeable-rank overdispersion, per-key hubs, shuffle."""

    dispersion_ratio: float
    dispersion_statistic: float
    dispersion_df: int
    dispersion_p: float
    dispersion_log10_p: float
    tarone_z: float
    tarone_log10_p: float
    n_hub_keys_hard: int
    n_hub_keys_easy: int
    shuffled_dispersion_ratio: float | None  # ranks shuffled within each logged query
    shuffled_log10_p: float | None

    def to_dict(self) -> dict[str, Any]:
        return display.json_value({k: getattr(self, k) for k in self.__dataclass_fields__})


@dataclass(frozen=True)
class ConsistencyResult:
    """Persistence of hardness across keys of one image (see the module docstring)."""

    runs: tuple[str, ...]
    band: str
    queue_size: int
    kept: int
    kept_fraction: float
    key_unit: str
    n_pairs: int
    n_keys: int
    n_strata: int
    n_negatives: int
    n_self_negatives_excluded: int
    icc_within_key: Estimate
    icc_between_key: Estimate
    icc_in_band_within_key: Estimate
    icc_in_band_between_key: Estimate
    persistence: Persistence
    across_runs: AcrossRuns | None
    fdr: float
    min_keys: int
    n_testable: int
    n_consistently_hard: int
    n_consistently_easy: int
    hard_ids: tuple[int, ...]
    easy_ids: tuple[int, ...]
    diagnostics: Diagnostics
    bootstrap: int
    epochs: tuple[int, ...] | None
    null_draws: np.ndarray = field(repr=False)
    per_negative: pl.DataFrame = field(repr=False)
    notes: tuple[str, ...] = ()

    @property
    def p_value(self) -> float:
        """The primary test's p: persistence across keys beyond class."""
        return self.persistence.p_value

    def summary_rows(self, *, ids: bool = False) -> list[tuple[str, str]]:
        """(name, value) lines, effect sizes first, for the CLI table and the report."""
        p = self.persistence
        rows = [
            ("runs", ", ".join(self.runs)),
            (
                "units",
                f"{self.n_pairs:,} pairs, {self.n_keys:,} keys {self.key_unit} of "
                f"{self.n_negatives:,} negatives, {self.n_strata:,} strata ({STRATA}); "
                f"{self.n_self_negatives_excluded:,} self-negative pairs left out",
            ),
            (
                "ICC within key",
                f"{self.icc_within_key.text()} (hardness); "
                f"{self.icc_in_band_within_key.text()} (in band {self.band})",
            ),
            (
                "ICC between keys",
                f"{self.icc_between_key.text()} (hardness); "
                f"{self.icc_in_band_between_key.text()} (in band {self.band})",
            ),
            (
                "persistence (C6)",
                f"{display.estimate(p.statistic, p.ci[0], p.ci[1], '.4f')} over "
                f"{p.n_key_pairs:,} pairs of keys of {p.n_negatives:,} negatives; "
                f"{display.p_text(p.p_value, permutations=p.permutations)} (one-sided)",
            ),
        ]
        if len(p.per_run) > 1:
            rows.append(
                (
                    "  per run",
                    "; ".join(f"{r} {display.number(s, '.4f')}" for r, s, _ in p.per_run),
                )
            )
        if self.across_runs is not None:
            a = self.across_runs
            rows.append(
                (
                    f"across {a.mode}",
                    f"{display.estimate(a.statistic, a.ci[0], a.ci[1], '.4f')} ({a.interval}) "
                    f"over {a.n_negatives:,} negatives; "
                    f"{display.p_text(a.p_value, permutations=a.permutations)}",
                )
            )
            if len(a.pairs) > 1:
                rows.append(
                    (
                        "  pairs",
                        "; ".join(
                            f"{x.first}~{x.second} {display.number(x.statistic, '.4f')}"
                            for x in a.pairs
                        ),
                    )
                )
        rows.append(
            (
                f"per negative (BH {self.fdr:g})",
                f"{self.n_consistently_hard:,} consistently hard, "
                f"{self.n_consistently_easy:,} consistently easy, of {self.n_testable:,} "
                f"negatives with >= {self.min_keys} keys",
            )
        )
        if ids:
            rows += [("hardest", _id_list(self.hard_ids)), ("easiest", _id_list(self.easy_ids))]
        d = self.diagnostics
        rows.append(
            (
                "diagnostics",
                f"dispersion ratio {d.dispersion_ratio:.3f} vs exchangeable ranks "
                f"({display.p_text(d.dispersion_p, log10=d.dispersion_log10_p)}; Tarone Z "
                f"{d.tarone_z:,.1f}); {d.n_hub_keys_hard:,} hard and {d.n_hub_keys_easy:,} easy "
                "per-key hubs. Any structure, not evidence of C6",
            )
        )
        if d.shuffled_dispersion_ratio is not None:
            rows.append(
                (
                    "calibration",
                    f"ranks shuffled within each query: dispersion ratio "
                    f"{d.shuffled_dispersion_ratio:.3f} (should be ~1)",
                )
            )
        return rows

    def chart_tables(self, z_bins: int = 40) -> dict[str, pl.DataFrame]:
        """The tables :func:`hardstat.charts.consistency.consistency_chart` draws: ``icc``
        (kind, measure, value, lo, hi), ``null`` (a histogram of the permutation null of the
        persistence statistic), ``observed`` (statistic, its interval, p, label) and ``z``
        (per-negative z histogram, observed and expected under N(0, 1))."""
        from scipy.special import ndtr

        icc = pl.DataFrame(
            [
                {"kind": kind, "measure": measure, "value": e.value, "lo": e.ci[0], "hi": e.ci[1]}
                for kind, measure, e in (
                    ("within a key", "hardness", self.icc_within_key),
                    ("within a key", f"in band {self.band}", self.icc_in_band_within_key),
                    ("between keys of one image", "hardness", self.icc_between_key),
                    (
                        "between keys of one image",
                        f"in band {self.band}",
                        self.icc_in_band_between_key,
                    ),
                )
            ]
        )
        icc = icc.with_columns(pl.col("value", "lo", "hi").fill_nan(None))
        p = self.persistence
        draws = self.null_draws[np.isfinite(self.null_draws)]
        if draws.size:
            span = [float(draws.min()), float(draws.max())]
            edges = np.histogram_bin_edges(draws, bins=30, range=(span[0], span[1]))
            counts = np.histogram(draws, bins=edges)[0]
            null = pl.DataFrame({"lo": edges[:-1], "hi": edges[1:], "permutations": counts})
        else:
            null = pl.DataFrame(
                schema={"lo": pl.Float64, "hi": pl.Float64, "permutations": pl.Int64}
            )
        observed = pl.DataFrame(
            {
                "statistic": [p.statistic],
                "lo": [p.ci[0] if math.isfinite(p.ci[0]) else p.statistic],
                "hi": [p.ci[1] if math.isfinite(p.ci[1]) else p.statistic],
                "p": [p.p_value],
                "label": [
                    f"observed {display.estimate(p.statistic, p.ci[0], p.ci[1], '.4f')} (line, "
                    f"band); {display.p_text(p.p_value, permutations=p.permutations)}"
                ],
            }
        )
        z = self.per_negative.filter(pl.col("p").is_not_null())["z"].to_numpy()
        lim = max(4.0, float(np.nanmax(np.abs(z))) if z.size else 4.0)
        edges = np.linspace(-lim, lim, z_bins + 1)
        expected = z.size * np.diff(ndtr(edges))
        z_table = pl.DataFrame(
            {
                "lo": edges[:-1],
                "hi": edges[1:],
                "observed": np.histogram(z, bins=edges)[0].astype(np.float64),
                "null": expected,
            }
        )
        return {"icc": icc, "null": null, "observed": observed, "z": z_table}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (per_negative and the null draws left out)."""
        d = self.diagnostics
        out: dict[str, Any] = {
            "runs": list(self.runs),
            "band": self.band,
            "queue_size": self.queue_size,
            "kept": self.kept,
            "kept_fraction": self.kept_fraction,
            "key_unit": self.key_unit,
            "strata": STRATA,
            "epochs": list(self.epochs) if self.epochs is not None else None,
            "n_pairs": self.n_pairs,
            "n_keys": self.n_keys,
            "n_strata": self.n_strata,
            "n_negatives": self.n_negatives,
            "n_self_negatives_excluded": self.n_self_negatives_excluded,
            "p_value": self.p_value,
            "icc_within_key": self.icc_within_key.value,
            "icc_within_key_ci": list(self.icc_within_key.ci),
            "icc_between_key": self.icc_between_key.value,
            "icc_between_key_ci": list(self.icc_between_key.ci),
            "icc_in_band_within_key": self.icc_in_band_within_key.value,
            "icc_in_band_within_key_ci": list(self.icc_in_band_within_key.ci),
            "icc_in_band_between_key": self.icc_in_band_between_key.value,
            "icc_in_band_between_key_ci": list(self.icc_in_band_between_key.ci),
            "bootstrap": self.bootstrap,
            "persistence": self.persistence.to_dict(),
            "across_runs": self.across_runs.to_dict() if self.across_runs else None,
            "fdr": self.fdr,
            "min_keys": self.min_keys,
            "n_testable": self.n_testable,
            "n_consistently_hard": self.n_consistently_hard,
            "n_consistently_easy": self.n_consistently_easy,
            "hard_ids": list(self.hard_ids),
            "easy_ids": list(self.easy_ids),
            "dispersion_ratio": d.dispersion_ratio,
            "diagnostics": d.to_dict(),
            "notes": list(self.notes),
        }
        return display.json_value(out)


def _id_list(ids: tuple[int, ...], limit: int = 10) -> str:
    if not ids:
        return display.DASH
    more = f", ... ({len(ids) - limit} more)" if len(ids) > limit else ""
    return ", ".join(map(str, ids[:limit])) + more


# -- the statistics on the key table ---------------------------------------------------------
class _PersistenceNull:
    """The persistence numerator ``sum_g S_g^2 - sum c^2`` (``S_g``: the sum of group g's
    centred scores) for identities rotated within strata
    (:class:`hardstat.analysis.stats.StrataRotation`), with everything else fixed."""

    def __init__(
        self,
        c: np.ndarray,
        group: np.ndarray,
        n_groups: int,
        stratum: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        self.rotation = stats.StrataRotation(stratum, rng)
        self.c = c[self.rotation.arranged]
        self.group, self.n_groups = group, n_groups
        self.sq = float(c @ c)

    def draws(self, permutations: int, rng: np.random.Generator) -> np.ndarray:
        rotated = self.rotation.permuter(self.group)
        out = np.empty(permutations)
        for i in range(permutations):
            s = np.bincount(rotated(rng), weights=self.c, minlength=self.n_groups)
            out[i] = float(s @ s) - self.sq
        return out


def _icc(
    keys: KeyTable,
    total: np.ndarray,
    total_sq: np.ndarray,
    fitted: np.ndarray,
    reps: int,
    rng: np.random.Generator,
) -> tuple[Estimate, Estimate]:
    """Within- and between-key ICCs of a pair-level score; intervals from a bootstrap over
    images. Keys of one image in different runs are different groups for the between-key
    covariance (runs are separate trainings) but one cluster in the bootstrap."""
    j = keys.neg_ids.size
    group = keys.run * j + keys.neg
    sums = stats.icc_sums(keys.m, total, total_sq, fitted, group, len(keys.runs) * j)
    point = stats.icc_from_sums(sums.sum(axis=0), keys.n_params)
    per_image = np.zeros((j, sums.shape[1]))
    np.add.at(per_image, np.arange(sums.shape[0]) % j, sums)
    within = np.full(reps, np.nan)
    between = np.full(reps, np.nan)
    if reps > 0:
        draws = stats.bootstrap_sums(per_image, reps, rng)
        for i in range(reps):
            r = stats.icc_from_sums(draws[i], keys.n_params)
            within[i], between[i] = r.within_key, r.between_key
    return (
        Estimate(point.within_key, stats.bootstrap_normal_interval(point.within_key, within)),
        Estimate(point.between_key, stats.bootstrap_normal_interval(point.between_key, between)),
    )


def _persistence_sums(c: np.ndarray, group: np.ndarray, cluster: np.ndarray, n_clusters: int):
    """Per cluster (image): [cross products, ordered key pairs, sum c^2, keys] for the within
    statistic with groups ``group`` (image within run)."""
    n_groups = int(group.max()) + 1 if group.size else 0
    s = np.bincount(group, weights=c, minlength=n_groups)
    n = np.bincount(group, minlength=n_groups).astype(np.float64)
    g_cluster = np.zeros(n_groups, np.int64)
    g_cluster[group] = cluster
    cq = np.bincount(group, weights=c * c, minlength=n_groups)
    cols = np.stack([s * s - cq, n * (n - 1), cq, n], axis=1)
    out = np.zeros((n_clusters, 4))
    np.add.at(out, g_cluster, cols)
    return out


def _ratio_of_sums(sums: np.ndarray, n_params: int) -> float:
    cross, pairs, sq, n = sums
    if pairs <= 0 or n <= n_params or sq <= 0:
        return float("nan")
    return float((cross / pairs) / (sq / (n - n_params)))


def _within_persistence(
    keys: KeyTable,
    c: np.ndarray,
    permutations: int,
    reps: int,
    rng: np.random.Generator,
) -> tuple[Persistence, np.ndarray]:
    j = keys.neg_ids.size
    group = keys.run * j + keys.neg  # an image within a run
    n_groups = len(keys.runs) * j
    pc = stats.pair_correlation(c, group, n_groups, ddof=keys.n_params)
    null = _PersistenceNull(c, group, n_groups, keys.stratum, rng)
    draws = null.draws(permutations, rng) if permutations > 0 else np.zeros(0)
    scale = pc.n_pairs * pc.variance
    null_stats = draws / scale if scale > 0 else draws * np.nan
    p = stats.permutation_p(pc.statistic, null_stats, "greater")
    sums = _persistence_sums(c, group, keys.neg, j)
    boot = np.full(reps, np.nan)
    if reps > 0:
        for i, row in enumerate(stats.bootstrap_sums(sums, reps, rng)):
            boot[i] = _ratio_of_sums(row, keys.n_params)
    counts = np.bincount(group, minlength=n_groups)
    per_run = []
    for r, name in enumerate(keys.runs):
        sel = keys.run == r
        if not np.any(sel):
            continue
        pr = stats.pair_correlation(c[sel], group[sel], n_groups, ddof=keys.params_of(sel))
        per_run.append((name, pr.statistic, pr.n_pairs // 2))
    result = Persistence(
        statistic=pc.statistic,
        ci=stats.bootstrap_normal_interval(pc.statistic, boot),
        p_value=p,
        permutations=permutations,
        null=PERSISTENCE_NULL,
        n_key_pairs=pc.n_pairs // 2,
        n_negatives=int(np.count_nonzero(counts >= 2)),
        per_run=tuple(per_run),
    )
    return result, null_stats


def _cross(
    keys: KeyTable,
    c: np.ndarray,
    part: np.ndarray,
    names: Sequence[str],
    mode: str,
    permutations: int,
    reps: int,
    rng: np.random.Generator,
) -> AcrossRuns:
    """Persistence between parts (runs or epochs): for each pair of parts (a, b), the
    correlation of centred scores between keys of one image in a and in b; identities permuted
    within strata (of all parts at once); bootstrap over images per pair; with three or more
    parts the mean over pairs, with a jackknife interval over parts."""
    j = keys.neg_ids.size
    n_parts = len(names)
    var = np.array(
        [
            float(c[part == a] @ c[part == a])
            / max(int(np.count_nonzero(part == a)) - keys.params_of(part == a), 1)
            for a in range(n_parts)
        ]
    )
    pairs = [(a, b) for a in range(n_parts) for b in range(a + 1, n_parts)]

    def sums_by_part(neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.zeros((n_parts, j))
        n = np.zeros((n_parts, j))
        for a in range(n_parts):
            sel = part == a
            s[a] = np.bincount(neg[sel], weights=c[sel], minlength=j)
            n[a] = np.bincount(neg[sel], minlength=j)
        return s, n

    s, n = sums_by_part(keys.neg)

    def pair_stats(s: np.ndarray) -> np.ndarray:
        return np.array(
            [
                float(s[a] @ s[b]) / float(n[a] @ n[b]) / math.sqrt(var[a] * var[b])
                if float(n[a] @ n[b]) > 0
                else np.nan
                for a, b in pairs
            ]
        )

    observed = pair_stats(s)
    rotation = stats.StrataRotation(keys.stratum, rng)
    rotated = rotation.permuter(keys.neg)
    c_arr, part_arr = c[rotation.arranged], part[rotation.arranged]
    sels = [part_arr == a for a in range(n_parts)]
    null = np.full((permutations, len(pairs)), np.nan)
    for i in range(permutations):
        neg_r = rotated(rng)
        s_r = np.stack([np.bincount(neg_r[sel], weights=c_arr[sel], minlength=j) for sel in sels])
        null[i] = pair_stats(s_r)
    run_pairs = []
    boot_all = np.full((reps, len(pairs)), np.nan)
    for idx, (a, b) in enumerate(pairs):
        cols = np.stack([s[a] * s[b], n[a] * n[b]], axis=1)
        if reps > 0:
            draws = stats.bootstrap_sums(cols, reps, rng)
            with np.errstate(invalid="ignore", divide="ignore"):
                boot_all[:, idx] = draws[:, 0] / draws[:, 1] / math.sqrt(var[a] * var[b])
        run_pairs.append(
            RunPair(
                names[a],
                names[b],
                float(observed[idx]),
                stats.bootstrap_normal_interval(float(observed[idx]), boot_all[:, idx]),
                stats.permutation_p(float(observed[idx]), null[:, idx], "greater"),
                int(np.count_nonzero((n[a] > 0) & (n[b] > 0))),
            )
        )
    mean = float(np.nanmean(observed)) if observed.size else float("nan")
    null_mean = np.nanmean(null, axis=1) if permutations else np.zeros(0)
    if n_parts >= 3:
        loo = [
            float(np.nanmean([observed[i] for i, (a, b) in enumerate(pairs) if r not in (a, b)]))
            for r in range(n_parts)
        ]
        _, lo, hi = stats.jackknife_interval(mean, loo)
        ci, how = (lo, hi), f"jackknife over {n_parts} {mode}, t with {n_parts - 1} df"
    else:
        ci, how = run_pairs[0].ci, "bootstrap over negatives"
    return AcrossRuns(
        mode=mode,
        statistic=mean,
        ci=ci,
        interval=how,
        p_value=stats.permutation_p(mean, null_mean, "greater"),
        permutations=permutations,
        n_negatives=int(np.count_nonzero((n > 0).sum(axis=0) >= 2)),
        pairs=tuple(run_pairs),
    )


def _calls(
    keys: KeyTable, c: np.ndarray, min_keys: int, fdr: float, cov: float
) -> tuple[pl.DataFrame, int]:
    """Per image: Stouffer z of within-stratum van der Waerden scores over its keys (all runs),
    BH over the images with at least ``min_keys`` keys, and the empirical-Bayes effect."""
    from scipy.special import ndtr

    j = keys.neg_ids.size
    g, var = stats.stratum_normal_scores(c, keys.stratum)
    n = np.bincount(keys.neg, minlength=j)
    zsum = np.bincount(keys.neg, weights=g, minlength=j)
    vsum = np.bincount(keys.neg, weights=var, minlength=j)
    csum = np.bincount(keys.neg, weights=c, minlength=j)
    testable = (n >= min_keys) & (vsum > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(vsum > 0, zsum / np.sqrt(vsum), np.nan)
        mean_c = np.where(n > 0, csum / np.maximum(n, 1), np.nan)
    p = np.full(j, np.nan)
    p[testable] = 2 * ndtr(-np.abs(z[testable]))
    q = np.full(j, np.nan)
    q[testable] = stats.benjamini_hochberg(p[testable])
    var_c = float(c @ c) / max(c.size - keys.n_params, 1)
    tau2 = max(cov, 0.0)
    sigma2 = max(var_c - tau2, 1e-12)
    shrink = n * tau2 / (n * tau2 + sigma2)
    effect = 100 * shrink * mean_c  # percentile points of hardness
    hard = testable & (q <= fdr) & (z > 0)
    easy = testable & (q <= fdr) & (z < 0)
    call = [("hard" if h else "easy" if e else None) for h, e in zip(hard, easy, strict=True)]
    labels = np.full(j, -1, np.int64)
    labels[keys.neg] = keys.label
    frame = pl.DataFrame(
        {
            "neg_id": keys.neg_ids,
            "label": pl.Series("label", labels, dtype=pl.Int64),
            "n_keys": n.astype(np.int64),
            "mean_centred": mean_c,
            "effect": effect,
            "z": z,
            "p": p,
            "q": q,
            "call": pl.Series("call", call, dtype=pl.String),
        }
    ).with_columns(
        pl.when(pl.col("label") >= 0).then(pl.col("label")).alias("label"),
        pl.col("p").fill_nan(None),
        pl.col("q").fill_nan(None),
        pl.col("z").fill_nan(None),
    )
    return frame, int(np.count_nonzero(testable))


def _diagnostics(
    keys: KeyTable, p: float, fdr: float, shuffled: tuple[np.ndarray, np.ndarray] | None
) -> Diagnostics:
    """Exchangeable-rank overdispersion per image, Tarone's Z, per-key hubs, shuffle check."""
    from scipy.stats import norm

    j = keys.neg_ids.size
    m_img = np.bincount(keys.neg, weights=keys.m, minlength=j)
    k_img = np.bincount(keys.neg, weights=keys.k, minlength=j)
    seen = m_img > 0
    x2 = stats.dispersion_statistic(k_img[seen], m_img[seen], p)
    df = int(np.count_nonzero(seen))
    pv, lp = stats.chi2_upper_tail(x2, df)
    tz = stats.tarone_z(k_img[seen], m_img[seen], p)
    t_lp = float(norm.logsf(tz)) / math.log(10) if math.isfinite(tz) else float("nan")
    q_key = stats.benjamini_hochberg(stats.two_sided_binomial_p(keys.k, keys.m, p))
    expected = keys.m * p
    shuffled_ratio = shuffled_lp = None
    if shuffled is not None:
        ms, ks = shuffled
        sx2 = stats.dispersion_statistic(ks, ms, p)
        shuffled_ratio = sx2 / ms.size
        shuffled_lp = stats.chi2_upper_tail(sx2, ms.size)[1]
    return Diagnostics(
        dispersion_ratio=x2 / df,
        dispersion_statistic=x2,
        dispersion_df=df,
        dispersion_p=pv,
        dispersion_log10_p=lp,
        tarone_z=tz,
        tarone_log10_p=t_lp,
        n_hub_keys_hard=int(np.count_nonzero((q_key <= fdr) & (keys.k > expected))),
        n_hub_keys_easy=int(np.count_nonzero((q_key <= fdr) & (keys.k < expected))),
        shuffled_dispersion_ratio=shuffled_ratio,
        shuffled_log10_p=shuffled_lp,
    )


# -- resolving runs --------------------------------------------------------------------------
def _resolve_runs(
    con: Any, runs: Sequence[str] | None, against: str | None
) -> tuple[list[str], int, dict[str, int], list[str]]:
    table = _fetch(con, "SELECT run, queue_size, dataset, config FROM runs ORDER BY run", [])
    names = [str(r) for r in table["run"]]
    sizes = {str(r): int(k) for r, k in zip(table["run"], table["queue_size"], strict=True)}
    datasets = {str(r): d for r, d in zip(table["run"], table["dataset"], strict=True)}
    if against is not None and against not in sizes:
        raise RunError(f"run {against!r} (--against) is not among the runs ({', '.join(names)})")
    if runs is None:
        chosen = [r for r in names if r != against]
    else:
        chosen = list(dict.fromkeys(runs))
        missing = [r for r in chosen if r not in sizes]
        if missing:
            raise RunError(
                f"run {missing[0]!r} is not among the connected runs ({', '.join(names)})"
            )
    if not chosen:
        raise RunError("no runs to analyse besides the --against run; give at least one run")
    if against in chosen:
        raise RunError(f"run {against!r} is both analysed and the --against run; pick another")
    everything = [*chosen, *([against] if against else [])]
    ks = sorted({sizes[r] for r in everything})
    if len(ks) > 1:
        raise RunError(
            f"the runs have different queue sizes ({', '.join(map(str, ks))}); analyse runs of "
            "one queue size together"
        )
    ds = sorted({str(datasets[r]) for r in everything})
    if len(ds) > 1:
        raise RunError(
            f"the runs use different datasets ({', '.join(ds)}), so their sample_ids are not the "
            "same images; analyse runs of one dataset together"
        )
    return everything, ks[0], sizes, names


def _legacy_runs(con: Any, runs: Sequence[str]) -> list[str]:
    """Runs whose logs carry no key_step (schema 1-2): their keys are (neg_id, step)."""
    res = _fetch(
        con,
        "SELECT run FROM pairs WHERE neg_id IS NOT NULL AND list_contains(?, run) "
        "GROUP BY run HAVING count(key_step) = 0",
        [list(runs)],
    )
    return sorted(str(r) for r in res["run"])


def _finite(x: Any) -> bool:
    return x is not None and isinstance(x, int | float | np.number) and math.isfinite(float(x))


def _cadence_note(con: Any, legacy: Sequence[str], queue_size: int, notes: list[str]) -> None:
    if not legacy:
        return
    cfg = _fetch(
        con,
        "SELECT run, json_extract(config, '$.log.every')::INTEGER AS every, "
        "json_extract(config, '$.optim.batch_size')::INTEGER AS batch FROM runs "
        "WHERE list_contains(?, run)",
        [list(legacy)],
    )
    loose = [
        str(r)
        for r, e, b in zip(cfg["run"], cfg["every"], cfg["batch"], strict=True)
        if _finite(e) and _finite(b) and int(e) * int(b) < queue_size
    ]
    text = (
        f"{', '.join(legacy)}: logs of schema version 1-2 have no key_step; a key is taken to be "
        "(neg_id, step), exact when log.every x batch >= K (each key logged at one step), and "
        "scores are centred for class only, not for the key's age"
    )
    if loose:
        text += (
            f"; NOT the case for {', '.join(loose)}: a key logged at several steps counts as "
            "several keys, which inflates persistence; retrain with hardstat >= 0.2 to log "
            "key_step"
        )
    notes.append(text)


# -- the analysis ----------------------------------------------------------------------------
def check_options(
    band: str = DEFAULT_BAND,
    fdr: float = DEFAULT_FDR,
    permutations: int = DEFAULT_PERMUTATIONS,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    min_keys: int = DEFAULT_MIN_KEYS,
    epochs: tuple[int, int] | None = None,
    against: str | None = None,
) -> Band:
    """Validate the analysis options (one-line ConfigErrors); returns the parsed hard band."""
    if not 0 < fdr < 1:
        raise ConfigError(f"--fdr {fdr} must lie strictly between 0 and 1, e.g. 0.05")
    if permutations < 0 or 0 < permutations < 99:
        raise ConfigError(
            f"--permutations {permutations}: give 0 (no p-value) or at least 99, e.g. 1000"
        )
    if bootstrap < 0 or 0 < bootstrap < 50:
        raise ConfigError(
            f"--bootstrap {bootstrap}: give 0 (no intervals) or at least 50, e.g. 200"
        )
    if min_keys < 2:
        raise ConfigError(f"--min-keys {min_keys}: a call needs at least 2 keys, e.g. 3")
    if epochs is not None:
        if against is not None:
            raise ConfigError("give either --epochs or --against, not both")
        if epochs[0] == epochs[1]:
            raise ConfigError(
                f"--epochs {epochs[0]},{epochs[1]} names one epoch twice; give two different epochs"
            )
    b = parse_band(band)
    if b.is_random:
        raise ConfigError(
            f"band {b.spec} keeps random negatives; consistency needs ranks, e.g. --band 0-5"
        )
    return b


def consistency(
    con: Any,
    band: str = DEFAULT_BAND,
    runs: Sequence[str] | None = None,
    fdr: float = DEFAULT_FDR,
    seed: int = 0,
    permutations: int = DEFAULT_PERMUTATIONS,
    *,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    min_keys: int = DEFAULT_MIN_KEYS,
    epochs: tuple[int, int] | None = None,
    against: str | None = None,
    shuffle_check: bool = True,
    progress: Callable[[str], None] | None = None,
) -> ConsistencyResult:
    """Does a negative's hardness persist across its keys, beyond its class?

    ``con`` is a connection from :func:`hardstat.analysis.logs.connect`; ``runs`` the run names
    to analyse (default every run on it but ``against``). With several runs (or ``against``)
    persistence is also measured between runs; with ``epochs = (a, b)`` the analysis keeps the
    keys logged in epochs a and b and measures persistence between them. ``band`` is the hard
    band of the in-band ICCs and the diagnostics. ``seed`` seeds the permutations, the
    bootstrap and the rank shuffle.
    """
    say = progress or (lambda _msg: None)
    b = check_options(band, fdr, permutations, bootstrap, min_keys, epochs, against)
    everything, k_size, _sizes, on_connection = _resolve_runs(con, runs, against)
    b.check(k_size)
    kept = b.kept_count(k_size)
    if kept >= k_size:
        raise ConfigError(
            f"band {b.spec} keeps every negative of the queue; pick a narrower band, e.g. 0-5"
        )
    p = kept / k_size
    notes: list[str] = []
    legacy = _legacy_runs(con, everything)
    _cadence_note(con, legacy, k_size, notes)
    say(f"counting keys in {', '.join(everything)} (hard band {b.spec}) ...")
    keys = count_keys(
        con,
        everything,
        k_size,
        b,
        epochs=list(epochs) if epochs else None,
        filter_runs=len(everything) < len(on_connection),
        legacy_runs=legacy,
    )
    if keys.n_keys == 0:
        raise LogError(
            f"the logs of {', '.join(everything)} hold no pairs with a negative's sample_id"
            + (f" in epochs {epochs[0]} and {epochs[1]}" if epochs else "")
            + "; train with rank logging on past the first K/batch steps"
        )
    for r, name in enumerate(everything):
        if np.unique(keys.step[keys.run == r]).size < 2:
            raise LogError(
                f"run {name} has one logged step with negatives"
                + (f" in epochs {epochs[0]} and {epochs[1]}" if epochs else "")
                + "; persistence compares keys of one image logged at different steps: log "
                "more steps (log.every) or train longer"
            )
    if np.all(keys.label < 0):
        notes.append(
            "no class labels (samples table): strata are (run, key step) only, so persistence "
            "is not shown to be beyond class"
        )
    rng = np.random.default_rng([seed, 20101306])
    c = keys.centred_scores()

    # Effect sizes.
    say(f"intraclass correlations ({bootstrap} bootstrap draws over negatives) ...")
    icc_w, icc_b = _icc(keys, keys.h_sum, keys.h_sq, keys.fitted_h, bootstrap, rng)
    icc_bw, icc_bb = _icc(keys, keys.k, keys.k, keys.fitted_b, bootstrap, rng)

    # The primary test.
    is_main = np.isin(keys.run, [everything.index(r) for r in everything if r != against])
    main = keys if against is None else keys.subset(is_main)
    c_main = c if against is None else c[is_main]
    counts = np.bincount(main.run * main.neg_ids.size + main.neg)
    if not np.any(counts >= 2):
        raise LogError(
            "no negative has two keys in the chosen logs, so persistence across keys cannot be "
            "measured: log more steps or epochs (each epoch gives every image a new key)"
        )
    say(f"persistence across keys: {permutations} permutations within strata ...")
    persistence, null_draws = _within_persistence(main, c_main, permutations, bootstrap, rng)

    # Across runs or epochs.
    across: AcrossRuns | None = None
    if epochs is not None:
        part = np.where(keys.epoch == epochs[0], 0, 1)
        say(f"persistence between epochs {epochs[0]} and {epochs[1]} ...")
        across = _cross(
            keys, c, part, [f"epoch {e}" for e in epochs], "epochs", permutations, bootstrap, rng
        )
    elif len(everything) >= 2:
        say(f"persistence across {len(everything)} runs ...")
        across = _cross(keys, c, keys.run, everything, "runs", permutations, bootstrap, rng)

    # Per-negative calls.
    n_keys_img = np.bincount(keys.neg, minlength=keys.neg_ids.size)
    if not np.any(n_keys_img >= min_keys):
        raise LogError(
            f"no negative has {min_keys} keys in the chosen logs (the most any has is "
            f"{int(n_keys_img.max())}), so no per-negative call can rest on evidence across "
            "keys: log more steps or epochs, or lower --min-keys (2 at least)"
        )
    j = main.neg_ids.size
    cov = stats.pair_correlation(c_main, main.run * j + main.neg, len(main.runs) * j)
    tau2 = cov.numerator / cov.n_pairs if cov.n_pairs else 0.0
    per_negative, n_testable = _calls(keys, c, min_keys, fdr, tau2)
    hard = per_negative.filter(pl.col("call") == "hard").sort("effect", descending=True)
    easy = per_negative.filter(pl.col("call") == "easy").sort("effect")

    # Diagnostics.
    shuffled = None
    if shuffle_check:
        say("calibration: ranks shuffled within each logged query ...")
        shuffled = _shuffled_image_counts(con, b, k_size, everything, seed, epochs)
    diag = _diagnostics(keys, p, fdr, shuffled)
    key_unit = "(run, neg_id, key_step)" if not legacy else "(run, neg_id, key_step or step)"
    return ConsistencyResult(
        runs=tuple(everything),
        band=b.spec,
        queue_size=k_size,
        kept=kept,
        kept_fraction=p,
        key_unit=key_unit,
        n_pairs=int(keys.m.sum()),
        n_keys=keys.n_keys,
        n_strata=keys.n_strata,
        n_negatives=int(np.count_nonzero(n_keys_img)),
        n_self_negatives_excluded=keys.n_self,
        icc_within_key=icc_w,
        icc_between_key=icc_b,
        icc_in_band_within_key=icc_bw,
        icc_in_band_between_key=icc_bb,
        persistence=persistence,
        across_runs=across,
        fdr=fdr,
        min_keys=min_keys,
        n_testable=n_testable,
        n_consistently_hard=hard.height,
        n_consistently_easy=easy.height,
        hard_ids=tuple(int(x) for x in hard["neg_id"]),
        easy_ids=tuple(int(x) for x in easy["neg_id"]),
        diagnostics=diag,
        bootstrap=bootstrap,
        epochs=tuple(epochs) if epochs else None,
        null_draws=null_draws,
        per_negative=per_negative,
        notes=tuple(notes),
    )


# -- calibration: ranks shuffled within each logged query ------------------------------------
def query_permutation(seed: int, run: str, step: int, query_id: int, queue_size: int) -> np.ndarray:
    """The seeded random permutation of ranks 1..K of one logged query (0-based, length K).

    Seeded by ``(seed, crc32(run), step, query_id)``, so a query's shuffle depends on nothing
    else: not on which other runs are analysed, nor on the order rows are read in.
    """
    key = [seed, zlib.crc32(run.encode()), step, query_id]
    return np.random.default_rng(key).permutation(queue_size)


def _shuffled_image_counts(
    con: Any,
    band: Band,
    queue_size: int,
    runs: Sequence[str],
    seed: int,
    epochs: tuple[int, int] | None,
) -> tuple[np.ndarray, np.ndarray]:
    _ids, m, k = shuffled_counts(con, band, queue_size, runs, seed, epochs=epochs)
    return m, k


def shuffled_counts(
    con: Any,
    band: Band,
    queue_size: int,
    runs: Sequence[str],
    seed: int,
    *,
    epochs: Sequence[int] | None = None,
    batch_rows: int = 1 << 20,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-negative (neg_id, m, k) after shuffling the ranks within each logged query.

    Each logged (run, step, query_id) gets its own seeded uniformly random permutation of its
    ranks (:func:`query_permutation`); a pair is in the band when its permuted rank is. So every
    query keeps exactly ``kept_count`` negatives, a uniformly random subset, independently of
    the other queries: hardness is exchangeable by construction. Null slots and self-negatives
    take part in the shuffle (they hold ranks) and are left out of the counts.

    Streams (run, step, query_id, rank, neg_id) from DuckDB in Arrow batches of ``batch_rows``
    and counts with NumPy: memory stays bounded by the batch, whatever the log's size. The
    trainer stores the rows of a query contiguously, so a batch holds few query segments; the
    permutations are drawn per segment.
    """
    import duckdb
    import pyarrow.compute as pc

    from hardstat.analysis.logs import translate_error

    in_band_rank = np.zeros(queue_size, bool)  # in_band_rank[r - 1]: is rank r in the band
    for lo, hi in band.rank_intervals(queue_size):
        in_band_rank[lo:hi] = True
    names = list(runs)
    sql = (
        "SELECT list_position($runs, run) - 1 AS run_index, step, query_id, rank, neg_id "
        "FROM pairs WHERE list_contains($runs, run)"
    )
    params: dict[str, Any] = {"runs": names}
    if epochs is not None:
        sql += " AND list_contains($epochs, epoch)"
        params["epochs"] = [int(e) for e in epochs]
    try:
        reader = con.sql(sql, params=params).to_arrow_reader(batch_rows)
    except duckdb.Error as e:
        raise translate_error(e) from e
    m = np.zeros(0, np.int64)
    k = np.zeros(0, np.int64)
    cache: dict[tuple[int, int, int], np.ndarray] = {}
    for batch in reader:
        n = batch.num_rows
        if n == 0:
            continue
        run_i, step, qid, rank = (batch.column(i).to_numpy(zero_copy_only=False) for i in range(4))
        neg_col = batch.column(4)
        valid = pc.is_valid(neg_col).to_numpy(zero_copy_only=False)
        neg = pc.fill_null(neg_col, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        valid &= neg != qid
        if rank.min() < 1 or rank.max() > queue_size:
            raise LogError(
                f"a logged rank lies outside 1..{queue_size} (the queue size); the log is "
                "corrupt or of another run"
            )
        change = (run_i[1:] != run_i[:-1]) | (step[1:] != step[:-1]) | (qid[1:] != qid[:-1])
        starts = np.concatenate([[0], np.flatnonzero(change) + 1])
        index: dict[tuple[int, int, int], int] = {}
        rows: list[np.ndarray] = []
        seg_row = np.empty(starts.size, np.int64)
        for j, key in enumerate(
            zip(run_i[starts].tolist(), step[starts].tolist(), qid[starts].tolist(), strict=True)
        ):
            u = index.get(key)
            if u is None:
                mask = cache.get(key)
                if mask is None:
                    if len(cache) >= 4096:
                        cache.clear()
                    perm = query_permutation(seed, names[key[0]], key[1], key[2], queue_size)
                    mask = cache[key] = in_band_rank[perm]
                u = index[key] = len(rows)
                rows.append(mask)
            seg_row[j] = u
        masks = np.stack(rows)
        segment = np.repeat(seg_row, np.diff(np.append(starts, n)))
        hit = masks[segment, rank - 1] & valid
        top = int(neg.max()) + 1
        if top > m.size:
            m = np.pad(m, (0, top - m.size))
            k = np.pad(k, (0, top - k.size))
        m += np.bincount(neg[valid], minlength=m.size)
        k += np.bincount(neg[hit], minlength=k.size)
    ids = np.flatnonzero(m)
    return ids.astype(np.int64), m[ids], k[ids]
