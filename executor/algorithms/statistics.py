"""General statistics over a cohort's rows: count, sum, mean, standard deviation,
histogram, quantiles, crosstab.

Each takes the cohort filters and grouping (``where``, ``group_by``) and returns plain
aggregates; disclosure control is applied afterwards, by the executor, to every result.

Count, sum, mean, histogram and quantiles also run in differential-privacy mode when the
token carries ``epsilon`` > 0; see :mod:`flowblock.executor.algorithms.private`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from flowblock.executor.algorithms import private
from flowblock.executor.algorithms.base import Algorithm, AlgorithmError, check_columns, plain
from flowblock.executor.algorithms.filters import GROUP_BY_SCHEMA, WHERE_SCHEMA
from flowblock.executor.algorithms.private import (
    dp_count,
    dp_histogram,
    dp_mean,
    dp_quantiles,
    dp_total,
    epsilon_of,
)

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
    check_columns(frame, keys)
    for values, group in frame.groupby(keys, sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        yield dict(zip(keys, [plain(v) for v in values], strict=True)), group


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    check_columns(frame, [column])
    if not pd.api.types.is_numeric_dtype(frame[column]):
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
    disclosure_class = "count_table"
    differentially_private = True
    code_modules = (private.__name__,)  # its DP mode

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        if epsilon_of(params):
            return dp_count(frame, params)
        return {"groups": [{**key, "count": len(group)} for key, group in _groups(frame, params)]}


class Mean(Algorithm):
    name = "mean"
    description = "The mean of a numeric column over the cohort (per group)."
    parameters = _schema({"column": COLUMN, "bounds": BOUNDS}, ["column"])
    disclosure_class, sdc_analysis = "statistics", "Mean"
    differentially_private = True
    code_modules = (private.__name__,)  # its DP mode

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        if epsilon_of(params):
            return dp_mean(frame, params)
        return _per_group(frame, params, "mean", lambda v: float(v.mean()) if len(v) else None)


class Sum(Algorithm):
    name = "sum"
    description = "The total of a numeric column over the cohort (per group)."
    parameters = _schema({"column": COLUMN, "bounds": BOUNDS}, ["column"])
    disclosure_class, sdc_analysis = "statistics", "Sum"
    differentially_private = True
    code_modules = (private.__name__,)  # its DP mode

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        if epsilon_of(params):
            return dp_total(frame, params)
        return _per_group(frame, params, "sum", lambda v: float(v.sum()))


class Std(Algorithm):
    name = "std"
    description = "The standard deviation of a numeric column (per group)."
    parameters = _schema({"column": COLUMN}, ["column"])
    disclosure_class, sdc_analysis = "statistics", "StandardDeviation"

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
    disclosure_class = "histogram"
    differentially_private = True
    code_modules = (private.__name__,)  # its DP mode

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        if epsilon_of(params):
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
    disclosure_class, sdc_analysis = "statistics", "Quartiles"  # the outer ones are extremes
    differentially_private = True
    code_modules = (private.__name__,)  # its DP mode

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        if epsilon_of(params):
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
    disclosure_class = "crosstab"

    @classmethod
    def group_columns(cls, params: dict[str, Any]) -> list[str]:
        """Its cells are keyed by the values of its two columns."""
        return [params[name] for name in ("rows", "columns") if name in params]

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        check_columns(frame, [params["rows"], params["columns"]])
        table = pd.crosstab(frame[params["rows"]], frame[params["columns"]])
        return {
            "rows": [plain(v) for v in table.index],
            "columns": [plain(v) for v in table.columns],
            "counts": table.astype(int).values.tolist(),
        }
