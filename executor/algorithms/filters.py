"""Cohort filters and grouping: data, never code.

``where`` is a list of ``[column, op, value]`` triples, ANDed, with ``op`` one of
``== != < <= > >= in not-in``; ``group_by`` a list of columns. Every column is checked
against the dataset's schema and every value against its column's type before any row
is touched; nothing is ever evaluated as an expression.
"""

from __future__ import annotations

import difflib
import operator
from typing import Any

import pandas as pd

from flowblock.errors import InvalidArgument
from flowblock.labels import check_labels

OPERATORS = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
SET_OPERATORS = ("in", "not-in")
ORDERED = ("integer", "number")

#: The schema fragments algorithms use for these parameters.
WHERE_SCHEMA = {
    "type": "array",
    "maxItems": 20,
    "items": {"type": "array", "minItems": 3, "maxItems": 3},
    "description": "Cohort filters: [column, op, value] triples, all of which must hold.",
}
GROUP_BY_SCHEMA = {
    "type": "array",
    "maxItems": 3,
    "items": {"type": "string"},
    "description": "Columns to group the result by.",
}


def column_type(schema: dict, column: str) -> str:
    columns = schema.get("columns", {})
    if column not in columns:
        close = difflib.get_close_matches(column, list(columns), n=1)
        raise InvalidArgument(
            f"the column {column!r}", "one of the dataset's: " + ", ".join(sorted(columns)),
            hint=f"did you mean {close[0]!r}?" if close else "",
        )  # fmt: skip
    spec = columns[column]
    return spec["type"] if isinstance(spec, dict) else spec


def check_where(where: list, schema: dict) -> list[tuple[str, str, Any]]:
    """The filters, each checked against the schema; raises InvalidArgument otherwise."""
    checked = []
    for index, triple in enumerate(where or []):
        if not isinstance(triple, list | tuple) or len(triple) != 3:
            raise InvalidArgument(f"where[{index}]", "a [column, op, value] triple")
        column, op, value = triple
        kind = column_type(schema, str(column))
        if op in SET_OPERATORS:
            if not isinstance(value, list) or not value:
                raise InvalidArgument(f"where[{index}] value", f"a non-empty list for {op!r}")
            for item in value:
                _check_value(item, kind, f"where[{index}] value")
        elif op in OPERATORS:
            if op not in ("==", "!=") and kind not in ORDERED:
                raise InvalidArgument(
                    f"where[{index}] op", f"== or != for the {kind} column {column!r}", op
                )
            _check_value(value, kind, f"where[{index}] value")
        else:
            raise InvalidArgument(
                f"where[{index}] op", "one of " + ", ".join([*OPERATORS, *SET_OPERATORS]), op
            )
        checked.append((str(column), op, value))
    return checked


def check_group_by(group_by: list, schema: dict) -> list[str]:
    """The grouping columns, checked: only public labels (``flowblock.labels``), in exact
    and DP mode alike."""
    columns = [str(column) for column in (group_by or [])]
    check_labels((("group_by", column) for column in columns), schema)
    return columns


def check_result_labels(group_columns: list[str], params: dict, schema: dict) -> None:
    """Every column an algorithm keys its result by (``Algorithm.group_columns``) is a
    public label, named by the parameter that chose it (``group_by``, ``column``, …)."""

    def argument(column: str) -> str:
        if column in (params.get("group_by") or []):
            return "group_by"
        return next((name for name, value in params.items() if value == column), "a label")

    check_labels(((argument(column), column) for column in group_columns), schema)


def apply_where(frame: pd.DataFrame, where: list[tuple[str, str, Any]]) -> pd.DataFrame:
    mask = pd.Series(True, index=frame.index)
    for column, op, value in where:
        series = frame[column]
        if op == "in":
            mask &= series.isin(value)
        elif op == "not-in":
            mask &= ~series.isin(value)
        else:
            mask &= OPERATORS[op](series, value)
    return frame[mask]


def _check_value(value: Any, kind: str, where: str) -> None:
    expected = {
        "integer": (int,), "number": (int, float), "boolean": (bool,),
        "string": (str,), "category": (str,),
    }[kind]  # fmt: skip
    if (isinstance(value, bool) and kind != "boolean") or not isinstance(value, expected):
        article = "an" if kind[0] in "aeiou" else "a"
        raise InvalidArgument(where, f"{article} {kind} value", value)
