"""Which columns may label a released result: the public categories of a dataset's schema.

A group's label is released with its numbers. A label drawn from the data — an
identifier, a continuous value, a category whose values the schema does not list —
would name a patient or give their value away (each group of a ``group_by`` over an
identifier is a patient). So groups, cells and bars are keyed only by booleans and by
categories whose values the schema lists, in exact and DP mode alike: labels are
public or absent. The chaincode refuses other ``group_by`` columns at request; the data
side refuses every label column an algorithm names (``Algorithm.group_columns``).
"""

from __future__ import annotations

from collections.abc import Iterable

from flowblock.errors import InvalidArgument

__all__ = ["PUBLIC_LABEL", "category_values", "check_labels", "is_public_label"]

#: What a label column must be, in the words of a refusal.
PUBLIC_LABEL = "a boolean column or a category column whose values the dataset's schema lists"


def category_values(schema: dict, column: str) -> list | None:
    """The values the schema lists for a category column; None if it lists none."""
    spec = schema.get("columns", {}).get(column)
    if isinstance(spec, dict) and spec.get("type") == "category" and spec.get("values"):
        return list(spec["values"])
    return None


def is_public_label(schema: dict, column: str) -> bool:
    """Whether ``column`` may key a released result's groups."""
    spec = schema.get("columns", {}).get(column)
    if spec == "boolean" or (isinstance(spec, dict) and spec.get("type") == "boolean"):
        return True
    return category_values(schema, column) is not None


def check_labels(labels: Iterable[tuple[str, str]], schema: dict) -> None:
    """Refuse, naming the argument, the first (argument, column) whose column is no public
    label; a column the schema lacks is named as such."""
    columns = schema.get("columns", {})
    for argument, column in labels:
        if column not in columns:
            raise InvalidArgument(
                f"{argument} {column!r}",
                "one of the dataset's columns: " + ", ".join(sorted(columns)),
            )
        if not is_public_label(schema, column):
            raise InvalidArgument(f"{argument} {column!r}", PUBLIC_LABEL)
