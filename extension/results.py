"""Results as the objects researchers work with: DataFrames, figures, metrics.

Each keeps the token it answers and its provenance (``.token_id``, ``.provenance``,
``.cohort_size``), so a value in a notebook can always be traced back to the ledger.
The conversion is a plain function: a script gets the same objects as the magics.
"""

from __future__ import annotations

import html
import io
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from flowblock.client import Result


class _Traced:
    """What every result object carries: the token it answers and the ledger's record."""

    token_id: str
    provenance: dict

    @property
    def cohort_size(self) -> int | None:
        """How many patients' records the result was computed from, rounded like every
        released count; None under differential privacy (only the noisy count is released)."""
        return self.provenance["result"]["cohort_size"]

    def _trace(self, result: Result) -> None:
        self.token_id = result.token_id
        self.provenance = result.provenance


class ResultFrame(_Traced, pd.DataFrame):
    """A table or grouped result: a pandas DataFrame that remembers its token."""

    _metadata = ["token_id", "provenance"]

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        # Frames derived from it are plain: the provenance is the released table's only.
        return pd.DataFrame


class ResultMetrics(_Traced, dict):
    """A model's metrics (or another result with no table in it): a dict, traced."""

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(key))}</th>"
            f"<td style='text-align:left'>{_html_value(value)}</td></tr>"
            for key, value in self.items()
        )
        return f"<table>{rows}</table>"


def _html_value(value: Any) -> str:
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return pd.DataFrame(value).T.to_html()
    return html.escape(repr(value))


def _figure_class() -> type[Figure]:
    """ResultFigure, made on first use so that tables never import matplotlib."""
    global ResultFigure
    if ResultFigure is None:
        from matplotlib.figure import Figure

        class _ResultFigure(_Traced, Figure):
            """A chart: a matplotlib Figure (outside pyplot, so shown once) that remembers
            its token."""

            def _repr_png_(self) -> bytes:
                buffer = io.BytesIO()
                self.savefig(buffer, format="png", bbox_inches="tight")
                return buffer.getvalue()

        _ResultFigure.__name__ = _ResultFigure.__qualname__ = "ResultFigure"
        ResultFigure = _ResultFigure
    return ResultFigure


#: The figure class, once a chart has been drawn (``isinstance`` checks need it made).
ResultFigure: Any = None


def rich(result: Result, output_kind: str = "") -> ResultFrame | ResultMetrics | Figure:
    """The object for a result: a figure for charts, a dict for metrics, else a table."""
    value = result.value
    params = result.provenance.get("params", {})
    if output_kind == "figure" or (isinstance(value, dict) and "chart" in value):
        shown: Any = chart(value)
    elif (
        output_kind not in ("metrics", "model", "labels")
        and (frame := table(value, params)) is not None
    ):
        shown = ResultFrame(frame)
    else:
        shown = ResultMetrics(value if isinstance(value, dict) else {"value": value})
    shown._trace(result)
    return shown


def table(value: Any, params: dict) -> pd.DataFrame | None:
    """A released value as a table, or None when it is not tabular."""
    if not isinstance(value, dict):
        return None
    if {"rows", "columns", "counts"} <= value.keys():  # a crosstab
        frame = pd.DataFrame(value["counts"], index=value["rows"], columns=value["columns"])
        frame.index.name = params.get("rows")
        frame.columns.name = params.get("columns")
        return frame
    groups = value.get("groups")
    if not isinstance(groups, list):
        return None
    if "edges" in value:  # a histogram: one row per bin (and group)
        edges = value["edges"]
        rows = [
            {**_keys(group), "bin_start": edges[n], "bin_end": edges[n + 1], "count": count}
            for group in groups
            for n, count in enumerate(group.get("counts", []))
        ]
        return pd.DataFrame(rows)
    rows = []
    for group in groups:
        row = {}
        for key, cell in group.items():
            if isinstance(cell, dict):  # quantiles: one column for each
                row.update({f"{key} {k}": v for k, v in cell.items()})
            else:
                row[key] = cell
        rows.append(row)
    return pd.DataFrame(rows)


def _keys(group: dict) -> dict:
    return {k: v for k, v in group.items() if not isinstance(v, list | dict)}


def chart(value: dict) -> Figure:
    """A chart result (its kind, its label column, counts per category) drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = _figure_class()(figsize=(6, 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    column = value.get("column", "")
    groups = value.get("groups", [])
    labels = [str(group.get(column)) for group in groups]
    counts = [group.get("count") or 0 for group in groups]  # a withheld cell draws as 0
    if value.get("chart") == "donut":
        axes.pie(counts, labels=labels, wedgeprops={"width": 0.4}, autopct="%1.0f%%")
        axes.set_aspect("equal")
    else:
        axes.bar(labels, counts, color="#4c72b0")
        axes.set_xlabel(column)
        axes.set_ylabel("records")
    axes.set_title(f"{column}: records per category")
    return figure
