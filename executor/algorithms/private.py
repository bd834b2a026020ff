"""Differential-privacy mode of the statistics: count, sum, mean, histogram, quantiles.

OpenDP's transformations and mechanisms compute each statistic over the cohort, one
record per patient (the first, so adding or removing a patient changes at most one
record), calibrated by OpenDP's own privacy maps so the whole query spends exactly the
token's ε. Values are clamped to the public ``bounds`` the researcher gives, never to
the data's. Each result says so under ``"dp"``: every statistic's noise scale and its
error bound at :data:`DP_CONFIDENCE`.

``group_by`` works over columns whose categories the dataset's schema fixes (the
sandbox gets them as pandas categories): every combination of categories is answered,
empty or not, so which groups exist reveals nothing; each patient falls in one group,
so by parallel composition each group's mechanism may spend the whole ε.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from flowblock.executor.algorithms.base import AlgorithmError, check_columns, plain

#: The column naming each row's patient (as ``flowblock.executor.ingest`` writes it; not
#: imported from there, as the sandbox that runs algorithms needs no ledger client).
PATIENT_COLUMN = "patient_id"
#: The confidence at which DP results state their error bound.
DP_CONFIDENCE = 0.95
#: Candidate values a DP quantile is chosen from, evenly spaced over the bounds.
DP_QUANTILE_CANDIDATES = 512
#: The most groups (combinations of categories) one DP query may answer.
DP_MAX_GROUPS = 100
#: The widest public bounds a DP query may clamp to: far beyond any measurement, and
#: within reach of OpenDP's sensitivity arithmetic (a bound near 1e308 overflows it).
DP_MAX_BOUND = 1e15


def epsilon_of(params: dict[str, Any]) -> float:
    """The ε a query asks to spend; 0 when it asks for exact, policy-protected results."""
    return float(params.get("epsilon") or 0)


def _opendp():
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


class _Partitions:
    """The values each group's mechanism sees: one record per patient, NaNs dropped,
    split by the ``group_by`` columns' categories (one partition when there are none).

    A million rows are the common case, and the sandboxed child that runs this pays for
    every page of memory it first touches: nothing is copied that need not be.
    """

    def __init__(self, frame: pd.DataFrame, params: dict[str, Any], column: str | None):
        keys = list(params.get("group_by") or [])
        groups = _Groups(frame, keys) if keys else None
        self.keys = groups.keys if groups else [{}]
        values = np.zeros(len(frame)) if column is None else _numeric(frame, column)
        group = groups.index if groups else None
        kept = _first_records(frame[PATIENT_COLUMN]) if PATIENT_COLUMN in frame else None
        for dropped in (np.isnan(values), None if group is None else group < 0):
            if dropped is not None and dropped.any():
                kept = ~dropped if kept is None else kept & ~dropped
        if kept is not None:
            values = values[kept]
            group = None if group is None else group[kept]
        self.values, self.group = values, group

    def __iter__(self):
        """(group key, values) for every group, in the order of the categories."""
        if self.group is None:
            yield self.keys[0], self.values
            return
        order = np.argsort(self.group, kind="stable")
        starts = np.searchsorted(self.group[order], np.arange(len(self.keys) + 1))
        for index, key in enumerate(self.keys):
            yield key, self.values[order[starts[index] : starts[index + 1]]]


def _first_records(patients: pd.Series) -> np.ndarray | None:
    """True for each patient's first record; None when every record is a patient's only.

    The sandbox numbers patients in order of appearance (``datasets.lean``): then each
    patient's records are found by a linear scan rather than by hashing every patient.
    Any other numbering is hashed.
    """
    codes = patients.to_numpy()
    if codes.dtype.kind in "iu" and len(codes) > 1:
        if np.all(codes[1:] > codes[:-1]):
            return None
        before = np.empty_like(codes)  # the largest number seen before each record, plus one
        before[0] = 0
        np.maximum.accumulate(codes[:-1], out=before[1:])
        before[1:] += 1
        if np.all(codes <= before):  # never skips a number: in order of appearance
            return codes == before
    return ~patients.duplicated().to_numpy()


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    check_columns(frame, [column])
    if not pd.api.types.is_numeric_dtype(frame[column]):
        raise AlgorithmError(f"the column {column!r} is not numeric.")
    series = frame[column]
    if isinstance(series.dtype, np.dtype):  # a view where the column is float already
        return np.asarray(series, dtype=float)
    return series.to_numpy(dtype=float, na_value=np.nan)


def _categorical(frame: pd.DataFrame, key: str) -> pd.Categorical:
    """A group_by column with its public categories: a boolean's two values, or the
    values the schema lists for a category column (``datasets.lean`` sets them)."""
    check_columns(frame, [key])
    column = frame[key]
    if column is not None and pd.api.types.is_bool_dtype(column.dtype):
        return pd.Categorical(column, categories=[False, True])
    if not isinstance(column.dtype, pd.CategoricalDtype):
        raise AlgorithmError(
            f"group_by in differential-privacy mode needs boolean columns or categories "
            f"the dataset's schema lists; {key!r} is neither."
        )
    return column.array


class _Groups:
    """Each row's group as one small number (-1: a missing category; numpy sorts small
    integers by radix), row-major over the keys, and the key of every group."""

    def __init__(self, frame: pd.DataFrame, keys: list[str]):
        columns = [_categorical(frame, key) for key in keys]
        sizes = [len(column.categories) for column in columns]
        if int(np.prod(sizes)) > DP_MAX_GROUPS:
            raise AlgorithmError(
                f"group_by in differential-privacy mode may make at most {DP_MAX_GROUPS} groups."
            )
        index, missing = np.zeros(len(frame), dtype=np.int16), np.zeros(len(frame), dtype=bool)
        for column, size in zip(columns, sizes, strict=True):
            missing |= column.codes < 0
            index = index * size + column.codes
        index[missing] = -1
        self.index = index
        combinations = pd.MultiIndex.from_product([column.categories for column in columns])
        self.keys = [dict(zip(keys, map(plain, combo), strict=True)) for combo in combinations]


def _bounds(params: dict[str, Any]) -> tuple[float, float]:
    bounds = params.get("bounds")
    numbers = (
        isinstance(bounds, list | tuple) and len(bounds) == 2
        and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
    )  # fmt: skip
    if not numbers or not -DP_MAX_BOUND <= bounds[0] < bounds[1] <= DP_MAX_BOUND:
        got = "" if bounds is None else f"; got {bounds!r}"
        raise AlgorithmError(
            f"differential-privacy mode needs bounds [lower, upper] with -{DP_MAX_BOUND:g} "
            f"<= lower < upper <= {DP_MAX_BOUND:g}{got}."
        )
    return float(bounds[0]), float(bounds[1])


def _spaced(bounds: tuple[float, float], count: int, what: str) -> np.ndarray:
    """``count`` values evenly spaced over the bounds, each distinct (OpenDP needs them so)."""
    values = np.linspace(*bounds, count)
    if not np.all(np.diff(values) > 0):
        raise AlgorithmError(
            f"the bounds [{bounds[0]!r}, {bounds[1]!r}] are too close together to split "
            f"into {what}; widen them."
        )
    return values


def _calibrated(statistic: Callable[[pd.DataFrame, dict[str, Any]], dict]):
    """``statistic``, refusing in one sentence what OpenDP cannot calibrate (an ε so
    small that its noise scale overflows), instead of failing as an OpenDPException."""

    @functools.wraps(statistic)
    def calibrated(frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        from opendp.mod import OpenDPException

        try:
            return statistic(frame, params)
        except OpenDPException:  # its text may hold values; the parameters are the user's
            bounds = params.get("bounds")
            shown = "" if bounds is None else f" with bounds {bounds!r}"
            raise AlgorithmError(
                f"differential privacy cannot be calibrated for ε = {epsilon_of(params):g}"
                f"{shown}; ask for a larger ε or other bounds."
            ) from None

    return calibrated


def _accuracy(dp, scale: float, discrete: bool) -> float:
    alpha = 1 - DP_CONFIDENCE
    if discrete:
        return float(dp.discrete_laplacian_scale_to_accuracy(scale, alpha))
    return float(dp.laplacian_scale_to_accuracy(scale, alpha))


def _laplace(dp, transformation, epsilon: float):
    """``transformation`` then Laplace noise scaled to its sensitivity, so that one
    patient's privacy loss is ``epsilon`` (checked by OpenDP's own privacy map)."""
    scale = float(transformation.map(1)) / epsilon
    while True:
        measurement = transformation >> dp.m.then_laplace(scale=scale)
        if measurement.map(1) <= epsilon:
            return measurement, scale
        scale *= 1 + 1e-9  # float rounding in the map: a hair more noise


def _vectors(dp, bounds: tuple[float, float] | None = None):
    """Vectors of floats without NaN (they are dropped before), within ``bounds`` if given."""
    atom = (
        dp.atom_domain(T=float, nan=False) if bounds is None else dp.atom_domain(bounds, nan=False)
    )
    return dp.vector_domain(atom), dp.symmetric_distance()


def _count_mechanism(dp, epsilon: float, bounds: tuple[float, float] | None = None):
    return _laplace(dp, dp.t.make_count(*_vectors(dp, bounds)), epsilon)


def _sum_mechanism(dp, bounds: tuple[float, float], epsilon: float):
    """Noisy sum of values within ``bounds``, which its sensitivity follows from.

    The caller clamps the values (:func:`_clamped`): OpenDP's own clamp would copy a
    million values once more, in a child that pays for every page it touches.
    """
    return _laplace(dp, dp.t.make_sum(*_vectors(dp, bounds)), epsilon)


def _clamped(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    return np.clip(values, *bounds)


def _count_of(noisy: Any) -> int:
    # Negative counts are impossible; clamping them is post-processing, free of privacy loss.
    return max(0, int(noisy))


def _note(dp, epsilon: float, partitions: _Partitions, **scales: tuple[float, bool]) -> dict:
    note: dict[str, Any] = {"epsilon": epsilon, "confidence": DP_CONFIDENCE,
                            "mechanism": "laplace"}  # fmt: skip
    for name, (scale, discrete) in scales.items():
        note[name] = {"scale": scale, "accuracy": _accuracy(dp, scale, discrete)}
    if len(partitions.keys) > 1:
        note["groups"] = {"count": len(partitions.keys), "composition": "parallel"}
    return note


def _answer(partitions: _Partitions, **statistics: Callable[[np.ndarray], Any]) -> list[dict]:
    return [
        {**key, **{name: statistic(values) for name, statistic in statistics.items()}}
        for key, values in partitions
    ]


@_calibrated
def dp_count(frame: pd.DataFrame, params: dict[str, Any]) -> dict:
    """The number of patients (per group), with discrete Laplace noise spending all of ε."""
    dp, epsilon = _opendp(), epsilon_of(params)
    partitions = _Partitions(frame, params, None)
    count, scale = _count_mechanism(dp, epsilon)
    note = _note(dp, epsilon, partitions, count=(scale, True))
    return {"groups": _answer(partitions, count=lambda v: _count_of(count(v))), "dp": note}


@_calibrated
def dp_total(frame: pd.DataFrame, params: dict[str, Any]) -> dict:
    """The sum of values clamped to the public bounds, with Laplace noise spending all of ε."""
    dp, epsilon, column = _opendp(), epsilon_of(params), params["column"]
    partitions, bounds = _Partitions(frame, params, column), _bounds(params)
    total, scale = _sum_mechanism(dp, bounds, epsilon)
    note = _note(dp, epsilon, partitions, sum=(scale, False))
    groups = _answer(partitions, sum=lambda v: float(total(_clamped(v, bounds))))
    return {"column": column, "groups": groups, "dp": note}


@_calibrated
def dp_mean(frame: pd.DataFrame, params: dict[str, Any]) -> dict:
    """A clamped sum and a count, each with half of ε, composed into one OpenDP
    measurement (one pass over the values); the mean is their ratio."""
    dp, epsilon, column = _opendp(), epsilon_of(params), params["column"]
    partitions, bounds = _Partitions(frame, params, column), _bounds(params)
    count, count_scale = _count_mechanism(dp, epsilon / 2, bounds)
    total, sum_scale = _sum_mechanism(dp, bounds, epsilon / 2)
    both = dp.c.make_composition([count, total])
    if both.map(1) > epsilon:
        raise AlgorithmError("the mean's two halves would spend more than its ε.")
    groups = []
    for key, values in partitions:
        noisy_count, noisy_sum = both(_clamped(values, bounds))
        n, total_value = _count_of(noisy_count), float(noisy_sum)
        ratio = total_value / n if n > 0 else None  # post-processing, kept within bounds
        mean = None if ratio is None else min(max(ratio, bounds[0]), bounds[1])
        groups.append({**key, "count": n, "sum": total_value, "mean": mean})
    note = _note(dp, epsilon, partitions, count=(count_scale, True), sum=(sum_scale, False))
    return {"column": column, "groups": groups, "dp": note}


@_calibrated
def dp_histogram(frame: pd.DataFrame, params: dict[str, Any]) -> dict:
    """Counts in equal-width bins over the public bounds, each with discrete Laplace noise.

    A patient is in one bin, so the vector of counts has sensitivity 1 and all of ε
    serves every bin; values outside the bounds fall in the outermost bins.
    """
    dp, epsilon, column = _opendp(), epsilon_of(params), params["column"]
    partitions, (low, high) = _Partitions(frame, params, column), _bounds(params)
    bins = params.get("bins", 10)
    edges = _spaced((low, high), bins + 1, f"{bins} bins")
    binned = dp.t.make_find_bin(*_vectors(dp), edges=list(edges[1:-1]))
    counts = binned >> dp.t.then_count_by_categories(
        categories=list(range(bins - 1)), null_category=True
    )
    measurement, scale = _laplace(dp, counts, epsilon)
    note = _note(dp, epsilon, partitions, counts=(scale, True))
    groups = _answer(partitions, counts=lambda v: [max(0, int(c)) for c in measurement(v)])
    return {"column": column, "edges": [float(e) for e in edges], "groups": groups, "dp": note}


@_calibrated
def dp_quantiles(frame: pd.DataFrame, params: dict[str, Any]) -> dict:
    """Each quantile chosen among candidates over the bounds by OpenDP's noisy max on
    quantile scores, with ε split evenly between the quantiles asked for."""
    dp, epsilon, column = _opendp(), epsilon_of(params), params["column"]
    partitions, (low, high) = _Partitions(frame, params, column), _bounds(params)
    q = params.get("q", [0.25, 0.5, 0.75])
    spaced = _spaced((low, high), DP_QUANTILE_CANDIDATES, f"{DP_QUANTILE_CANDIDATES} candidates")
    candidates = [float(c) for c in spaced]
    selections, scales = {}, {}
    for alpha in q:
        scores = dp.t.make_quantile_score_candidates(*_vectors(dp), candidates, alpha)

        def select(scale: float, scores=scores):  # the lowest score is the best candidate
            return scores >> dp.m.then_noisy_max(dp.max_divergence(), scale, negate=True)

        scale = dp.binary_search_param(select, d_in=1, d_out=epsilon / len(q), T=float)
        selections[str(alpha)], scales[str(alpha)] = select(scale), scale

    def quantiles(values: np.ndarray) -> dict:
        clamped = np.clip(values, low, high)
        return {alpha: candidates[chosen(clamped)] for alpha, chosen in selections.items()}

    note = _note(dp, epsilon, partitions)
    note.update(mechanism="noisy max over quantile scores",
                quantiles={"scales": scales, "candidates": len(candidates)})  # fmt: skip
    return {"column": column, "groups": _answer(partitions, quantiles=quantiles), "dp": note}


def warm_up() -> None:
    """Run every mechanism once on a few values.

    OpenDP resolves its library's functions and types on first use (~80 ms); the
    sandbox's forkserver calls this so its children, forked warm, do not pay it per run.
    """
    few = pd.DataFrame({PATIENT_COLUMN: [0, 1, 1], "value": [1.0, 2.0, 3.0]})
    params = {"column": "value", "bounds": [0, 4], "epsilon": 1.0, "bins": 2, "q": [0.5]}
    for statistic in (dp_count, dp_total, dp_mean, dp_histogram, dp_quantiles):
        statistic(few, params)
