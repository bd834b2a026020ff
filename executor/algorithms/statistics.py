"""General statistics over a cohort's rows: count, sum, mean, standard deviation,
histogram, quantiles, crosstab.

Each takes the cohort filters and grouping (``where``, ``group_by``) and returns plain
aggregates; disclosure control is applied afterwards, by the executor, to every result.

Count, sum, mean, histogram and quantiles also run in differential-privacy mode when the
token carries ``epsilon`` > 0: OpenDP's transformations and mechanisms compute them
over the cohort (one record per patient, the first, so a patient changes at most one
record), calibrated so the whole query spends exactly that ε; the result says so under
``"dp"`` with each statistic's noise scale and its error bound at 95% confidence.
Values are clamped to the public ``bounds`` the researcher gives, never to the data's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from flowblock.executor.algorithms.base import Algorithm, AlgorithmError
from flowblock.executor.algorithms.filters import GROUP_BY_SCHEMA, WHERE_SCHEMA

COLUMN = {"type": "string", "minLength": 1, "description": "The numeric column."}
EPSILON = {
    "type": "number",
    "minimum": 0,
    "maximum": 10,
    "description": "Differential privacy: the ε this query may spend (0: none).",
}
BOUNDS = {
    "type": "array",
    "items": {"type": "number"},
    "minItems": 2,
    "maxItems": 2,
    "description": "Differential privacy: the [lower, upper] range values are clamped to.",
}
#: The column naming each row's patient (as ``flowblock.executor.ingest`` writes it; not
#: imported from there, as the sandbox that runs algorithms needs no ledger client).
PATIENT_COLUMN = "patient_id"
#: The confidence at which DP results state their error bound.
DP_CONFIDENCE = 0.95
#: Candidate values a DP quantile is chosen from, evenly spaced over the bounds.
DP_QUANTILE_CANDIDATES = 512


def _schema(properties: dict, required: list[str]) -> dict:
    return {
        "type": "object",
        "properties": {**properties, "where": WHERE_SCHEMA, "group_by": GROUP_BY_SCHEMA,
                       "epsilon": EPSILON},
        "required": required,
        "additionalProperties": False,
    }  # fmt: skip


def _groups(frame: pd.DataFrame, params: dict[str, Any]):
    keys = params.get("group_by") or []
    if not keys:
        yield {}, frame
        return
    for values, group in frame.groupby(keys, sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        yield dict(zip(keys, [_plain(v) for v in values], strict=True)), group


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns or not pd.api.types.is_numeric_dtype(frame[column]):
        raise AlgorithmError(f"the column {column!r} is not numeric.")
    return frame[column].dropna()


def _per_group(frame: pd.DataFrame, params: dict[str, Any], name: str, statistic) -> dict:
    """One statistic of ``params["column"]`` for each group, with each group's count."""
    column = params["column"]
    groups = []
    for key, group in _groups(frame, params):
        values = _numeric(group, column)
        groups.append({**key, "count": len(values), name: statistic(values)})
    return {"column": column, "groups": groups}


class Count(Algorithm):
    name = "count"
    description = "The number of records in the cohort (per group)."
    parameters = _schema({}, [])

    differentially_private = True

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        if _epsilon(params):
            return dp_count(frame, params)
        return {"groups": [{**key, "count": len(group)} for key, group in _groups(frame, params)]}


class Mean(Algorithm):
    name = "mean"
    description = "The mean of a numeric column over the cohort (per group)."
    parameters = _schema({"column": COLUMN, "bounds": BOUNDS}, ["column"])
    differentially_private = True

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        if _epsilon(params):
            return dp_mean(frame, params)
        return _per_group(frame, params, "mean", lambda v: float(v.mean()) if len(v) else None)


class Sum(Algorithm):
    name = "sum"
    description = "The total of a numeric column over the cohort (per group)."
    parameters = _schema({"column": COLUMN, "bounds": BOUNDS}, ["column"])
    differentially_private = True

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        if _epsilon(params):
            return dp_total(frame, params)
        return _per_group(frame, params, "sum", lambda v: float(v.sum()))


class Std(Algorithm):
    name = "std"
    description = "The standard deviation of a numeric column (per group)."
    parameters = _schema({"column": COLUMN}, ["column"])

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        return _per_group(
            frame, params, "std", lambda v: float(v.std(ddof=1)) if len(v) > 1 else None
        )


class Histogram(Algorithm):
    name = "histogram"
    description = "Counts of a numeric column in equal-width bins (per group)."
    parameters = _schema(
        {"column": COLUMN, "bins": {"type": "integer", "minimum": 1, "maximum": 100},
         "bounds": BOUNDS},
        ["column"],
    )  # fmt: skip
    output_kind = "table"
    differentially_private = True

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        if _epsilon(params):
            return dp_histogram(frame, params)
        column, bins = params["column"], params.get("bins", 10)
        values = _numeric(frame, column)
        if values.empty:
            raise AlgorithmError("the cohort has no values to bin.")
        edges = np.histogram_bin_edges(values, bins=bins)
        groups = []
        for key, group in _groups(frame, params):
            counts, _ = np.histogram(_numeric(group, column), bins=edges)
            groups.append({**key, "counts": [int(c) for c in counts]})
        return {"column": column, "edges": [float(e) for e in edges], "groups": groups}


class Quantiles(Algorithm):
    name = "quantiles"
    description = "Quantiles of a numeric column (per group), e.g. the median and quartiles."
    parameters = _schema(
        {
            "column": COLUMN,
            "q": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1},
                  "minItems": 1, "maxItems": 19},
            "bounds": BOUNDS,
        },
        ["column"],
    )  # fmt: skip
    disclosure_class = "extremes"
    differentially_private = True

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        if _epsilon(params):
            return dp_quantiles(frame, params)
        column, q = params["column"], params.get("q", [0.25, 0.5, 0.75])
        groups = []
        for key, group in _groups(frame, params):
            values = _numeric(group, column)
            found = values.quantile(q).tolist() if len(values) else [None] * len(q)
            groups.append(
                {
                    **key,
                    "count": len(values),
                    "quantiles": dict(zip(map(str, q), found, strict=True)),
                }
            )
        return {"column": column, "groups": groups}


class Crosstab(Algorithm):
    name = "crosstab"
    description = "Counts of records for each combination of two category columns."
    parameters = _schema(
        {"rows": {"type": "string", "minLength": 1}, "columns": {"type": "string", "minLength": 1}},
        ["rows", "columns"],
    )
    output_kind = "table"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        table = pd.crosstab(frame[params["rows"]], frame[params["columns"]])
        return {
            "rows": [_plain(v) for v in table.index],
            "columns": [_plain(v) for v in table.columns],
            "counts": table.astype(int).values.tolist(),
        }


# -- differential privacy (OpenDP) -------------------------------------------------------


def _epsilon(params: dict[str, Any]) -> float:
    return float(params.get("epsilon") or 0)


def _opendp():
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


def _dp_values(frame: pd.DataFrame, params: dict[str, Any], column: str | None) -> np.ndarray:
    """The cohort's values for a DP query: one record per patient, NaNs dropped."""
    if params.get("group_by"):
        raise AlgorithmError("group_by is not available in differential-privacy mode.")
    if PATIENT_COLUMN in frame.columns:
        frame = frame[~frame[PATIENT_COLUMN].duplicated()]
    if column is None:
        return np.zeros(len(frame))
    return _numeric(frame, column).to_numpy(dtype=float)


def _bounds(params: dict[str, Any]) -> tuple[float, float]:
    bounds = params.get("bounds")
    if not bounds or not bounds[0] < bounds[1]:
        raise AlgorithmError(
            "differential-privacy mode needs bounds [lower, upper] with lower < upper."
        )
    return float(bounds[0]), float(bounds[1])


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


def _dp_count(dp, values: np.ndarray, epsilon: float) -> tuple[int, float]:
    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False))
    count, scale = _laplace(dp, dp.t.make_count(domain, dp.symmetric_distance()), epsilon)
    # Negative counts are impossible; clamping them is post-processing, free of privacy loss.
    return max(0, int(count(values))), scale


def _dp_sum(dp, values: np.ndarray, bounds: tuple[float, float], epsilon: float):
    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False))
    clamped = dp.t.make_clamp(domain, dp.symmetric_distance(), bounds) >> dp.t.then_sum()
    total, scale = _laplace(dp, clamped, epsilon)
    return float(total(values)), scale


def _dp_note(epsilon: float, **statistics: dict) -> dict:
    return {"epsilon": epsilon, "confidence": DP_CONFIDENCE, "mechanism": "laplace",
            **statistics}  # fmt: skip


def dp_count(frame: pd.DataFrame, params: dict[str, Any]) -> dict:
    """The cohort's size, with discrete Laplace noise spending all of ε."""
    dp, epsilon = _opendp(), _epsilon(params)
    count, scale = _dp_count(dp, _dp_values(frame, params, None), epsilon)
    note = {"scale": scale, "accuracy": _accuracy(dp, scale, discrete=True)}
    return {"groups": [{"count": count}], "dp": _dp_note(epsilon, count=note)}


def dp_total(frame: pd.DataFrame, params: dict[str, Any]) -> dict:
    """The sum of values clamped to the public bounds, with Laplace noise spending all of ε."""
    dp, epsilon, column = _opendp(), _epsilon(params), params["column"]
    values, bounds = _dp_values(frame, params, column), _bounds(params)
    total, scale = _dp_sum(dp, values, bounds, epsilon)
    note = {"scale": scale, "accuracy": _accuracy(dp, scale, discrete=False)}
    return {"column": column, "groups": [{"sum": total}], "dp": _dp_note(epsilon, sum=note)}


def dp_mean(frame: pd.DataFrame, params: dict[str, Any]) -> dict:
    """A clamped sum and a count, each with half of ε; the mean is their ratio."""
    dp, epsilon, column = _opendp(), _epsilon(params), params["column"]
    values, bounds = _dp_values(frame, params, column), _bounds(params)
    count, count_scale = _dp_count(dp, values, epsilon / 2)
    total, sum_scale = _dp_sum(dp, values, bounds, epsilon / 2)
    mean = min(max(total / count, bounds[0]), bounds[1]) if count > 0 else None
    note = _dp_note(
        epsilon,
        count={"scale": count_scale, "accuracy": _accuracy(dp, count_scale, discrete=True)},
        sum={"scale": sum_scale, "accuracy": _accuracy(dp, sum_scale, discrete=False)},
    )
    group = {"count": count, "sum": total, "mean": mean}
    return {"column": column, "groups": [group], "dp": note}


def dp_histogram(frame: pd.DataFrame, params: dict[str, Any]) -> dict:
    """Counts in equal-width bins over the public bounds, each with discrete Laplace noise.

    A patient is in one bin, so the vector of counts has sensitivity 1 and all of ε
    serves every bin; values outside the bounds fall in the outermost bins.
    """
    dp, epsilon, column = _opendp(), _epsilon(params), params["column"]
    values, (low, high) = _dp_values(frame, params, column), _bounds(params)
    bins = params.get("bins", 10)
    edges = np.linspace(low, high, bins + 1)
    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False))
    binned = dp.t.make_find_bin(domain, dp.symmetric_distance(), edges=list(edges[1:-1]))
    counts = binned >> dp.t.then_count_by_categories(
        categories=list(range(bins - 1)), null_category=True
    )
    measurement, scale = _laplace(dp, counts, epsilon)
    noisy = measurement(values)
    note = {"scale": scale, "accuracy": _accuracy(dp, scale, discrete=True)}
    return {
        "column": column,
        "edges": [float(e) for e in edges],
        "groups": [{"counts": [max(0, int(c)) for c in noisy]}],
        "dp": _dp_note(epsilon, counts=note),
    }


def dp_quantiles(frame: pd.DataFrame, params: dict[str, Any]) -> dict:
    """Each quantile chosen among candidates over the bounds by OpenDP's noisy max on
    quantile scores, with ε split evenly between the quantiles asked for."""
    dp, epsilon, column = _opendp(), _epsilon(params), params["column"]
    values, (low, high) = _dp_values(frame, params, column), _bounds(params)
    q = params.get("q", [0.25, 0.5, 0.75])
    candidates = [float(c) for c in np.linspace(low, high, DP_QUANTILE_CANDIDATES)]
    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False))
    clamped = np.clip(values, low, high)
    found, scales = {}, {}
    for alpha in q:
        scores = dp.t.make_quantile_score_candidates(
            domain, dp.symmetric_distance(), candidates, alpha
        )

        def select(scale: float, scores=scores):  # the lowest score is the best candidate
            return scores >> dp.m.then_noisy_max(dp.max_divergence(), scale, negate=True)

        scale = dp.binary_search_param(select, d_in=1, d_out=epsilon / len(q), T=float)
        found[str(alpha)], scales[str(alpha)] = candidates[select(scale)(clamped)], scale
    note = _dp_note(epsilon, quantiles={"scales": scales, "candidates": len(candidates)})
    note["mechanism"] = "noisy max over quantile scores"
    return {"column": column, "groups": [{"quantiles": found}], "dp": note}
