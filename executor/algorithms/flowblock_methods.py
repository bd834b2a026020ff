"""FlowBlock's own methods, kept from the thesis prototype and made safe.

Average blood pressure, maximum heart rate, a long-running method that reports its
progress, and bar and donut charts. Charts are built only from counts that disclosure
control checks like any other; what is released is the chart's data and kind, which
the notebook draws.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from flowblock.executor.algorithms import statistics
from flowblock.executor.algorithms.base import Algorithm, AlgorithmError, check_columns, plain
from flowblock.executor.algorithms.filters import GROUP_BY_SCHEMA, WHERE_SCHEMA
from flowblock.executor.algorithms.statistics import _groups, _numeric


def _schema(properties: dict, required: list[str]) -> dict:
    return {
        "type": "object",
        "properties": {**properties, "where": WHERE_SCHEMA, "group_by": GROUP_BY_SCHEMA},
        "required": required,
        "additionalProperties": False,
    }


class AverageBloodPressure(Algorithm):
    name = "average-blood-pressure"
    description = "Mean systolic and diastolic blood pressure (per group)."
    parameters = _schema({}, [])
    disclosure_class, sdc_analysis = "statistics", "Mean"
    statistic_columns = ("systolic", "diastolic")  # named by no parameter: its dominance
    code_modules = (statistics.__name__,)  # its grouping and numeric columns

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        groups = []
        for key, group in _groups(frame, params):
            systolic, diastolic = _numeric(group, "systolic"), _numeric(group, "diastolic")
            groups.append(
                {**key, "count": len(group),
                 "systolic": float(systolic.mean()) if len(systolic) else None,
                 "diastolic": float(diastolic.mean()) if len(diastolic) else None}
            )  # fmt: skip
        return {"groups": groups}


class MaxHeartRate(Algorithm):
    name = "max-heart-rate"
    description = "The highest heart rate in the cohort (per group)."
    parameters = _schema({}, [])
    disclosure_class, sdc_analysis = "statistics", "Maximum"  # an extreme
    statistic_columns = ("heart_rate",)
    code_modules = (statistics.__name__,)  # its grouping and numeric columns

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        groups = []
        for key, group in _groups(frame, params):
            values = _numeric(group, "heart_rate")
            groups.append(
                {**key, "count": len(values), "max": float(values.max()) if len(values) else None}
            )
        return {"groups": groups}


class LongRunning(Algorithm):
    name = "long-running"
    description = "Counts the cohort slowly, reporting its progress: for trying out the queue."
    parameters = _schema({"seconds": {"type": "integer", "minimum": 1, "maximum": 600}}, [])
    disclosure_class = "count_table"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        seconds = params.get("seconds", 5)
        steps = 10
        for step in range(steps):
            time.sleep(seconds / steps)
            self.progress((step + 1) / steps)
        return {"groups": [{"count": len(frame)}]}


class _Chart(Algorithm):
    parameters = _schema({"column": {"type": "string", "minLength": 1}}, ["column"])
    output_kind = "figure"
    disclosure_class, sdc_analysis = "chart", "FrequencyTable"
    kind = "bar"

    @classmethod
    def group_columns(cls, params: dict[str, Any]) -> list[str]:
        """Its bars are keyed by the values of the column it counts."""
        return [params["column"]] if params.get("column") else []

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        column = params["column"]
        check_columns(frame, [column])
        counts = frame[column].value_counts(sort=False).sort_index()
        groups = [{column: plain(value), "count": int(n)} for value, n in counts.items()]
        return {"chart": self.kind, "column": column, "groups": groups}


class BarChart(_Chart):
    name = "bar-chart"
    description = "A bar chart of the number of records in each category of a column."


class DonutChart(_Chart):
    name = "donut-chart"
    description = "A donut chart of the share of records in each category of a column."
    sdc_analysis = "PieChart"
    kind = "donut"


class ChartOfResult(Algorithm):
    """A flow's last step: a chart drawn from an earlier token's grouped counts.

    It never sees a row: its input is the earlier output, already disclosure-checked.
    """

    name = "chart-of-result"
    description = "A bar or donut chart of an earlier computation's grouped counts (a flow)."
    parameters = {
        "type": "object",
        "properties": {
            "kind": {"type": "string", "enum": ["bar", "donut"]},
            "label": {"type": "string", "minLength": 1,
                      "description": "The group column of the earlier result to label by."},
        },
        "required": ["label"],
        "additionalProperties": False,
    }  # fmt: skip
    input_kind = "tokens"
    output_kind = "figure"
    disclosure_class = "chart"

    @classmethod
    def group_columns(cls, params: dict[str, Any]) -> list[str]:
        """Its slices are keyed by the earlier result's group column it labels by."""
        return [params["label"]] if params.get("label") else []

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> dict:
        label = params["label"]
        groups = (self.inputs[0] or {}).get("groups", []) if self.inputs else []
        if not groups or any(label not in g or "count" not in g for g in groups):
            raise AlgorithmError(f"the earlier result has no counts grouped by {label!r}.")
        return {
            "chart": params.get("kind", "bar"),
            "column": label,
            "groups": [{label: g[label], "count": g["count"]} for g in groups],
        }
