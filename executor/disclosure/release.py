"""The rules of each disclosure class, applied to one result of one algorithm.

:class:`Release` is what :meth:`DisclosurePolicy.protect
<flowblock.executor.disclosure.DisclosurePolicy.protect>` builds for a result: it looks
up the class the algorithm declares (:mod:`~flowblock.executor.disclosure.classes`),
checks that the result has that class's form, and applies that class's rules, with
what the algorithm declares of itself (the columns keying its groups, the columns it
summarises, its ACRO analysis). Nothing here names an algorithm: a new one is protected
by the class it declares. Alongside, it notes which cohorts each released group or cell
describes, for the differencing check.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import pandas as pd

from flowblock.errors import DisclosureRefused
from flowblock.executor.disclosure import differencing, models, sdc, support, tables
from flowblock.executor.disclosure.classes import CLASSES

if TYPE_CHECKING:
    from flowblock.executor.disclosure.policy import DisclosurePolicy

PATIENT_COLUMN = "patient_id"
#: Fields of a statistic's group that are neither its key nor a statistic.
_BOOKKEEPING = ("count", "suppressed")


class Release:
    """The rules applied to one result of one algorithm over one cohort's rows."""

    def __init__(
        self,
        policy: DisclosurePolicy,
        token: dict,
        algorithm: type,
        rows: pd.DataFrame | None,
        patients: list[str],
    ) -> None:
        self.policy, self.token, self.algorithm, self.rows = policy, token, algorithm, rows
        self.params = token.get("params", {})
        self.appetite = policy.appetite
        self.checks: frozenset[str] = frozenset()  # ACRO's, for a statistic's analysis
        # One record per patient (the cohort's patients are as many as its rows): a cell's
        # records are as many as its patients, and need no counting of their own.
        self.one_record_each = rows is None or len(rows) == len(patients)
        self.sources: list[Callable[[], list[np.ndarray]]] = [
            self._whole if rows is not None and PATIENT_COLUMN in rows.columns
            else lambda: [_ids(patients, token["data_org"])]
        ]  # fmt: skip
        #: Whether its values are exact (statistics), not counts rounded and suppressed:
        #: only exact ones are linear releases for query auditing.
        self.exact = True

    def rules(self) -> dict[str, Callable[[Any], Any]]:
        """The method applying each disclosure class's rules, by the class's name."""
        return {
            "count_table": self.count_table,
            "histogram": self.histogram,
            "crosstab": self.crosstab,
            "statistics": self.statistics,
            "model": self.model,
            "chart": self.count_table,  # keyed by the column its parameters name
            "labels": self.labels,
        }

    def apply(self, result: Any) -> Any:
        """The result as its declared class's rules let it be released."""
        declared = getattr(self.algorithm, "disclosure_class", None)
        declared = declared if isinstance(declared, str) else ""
        kind, rule = CLASSES.get(declared), self.rules().get(declared)
        if kind is None or rule is None:
            raise DisclosureRefused(
                "unchecked_output", "the algorithm's disclosure class is not one the policy knows."
            )
        if not kind.holds(result):
            _refuse_form(kind.name)
        return rule(result)

    # -- the classes' rules --------------------------------------------------------------

    def labels(self, result: Any) -> Any:
        """Kept data-side for a flow and never released: no cohort is revealed."""
        self.sources.clear()
        return result

    def model(self, result: dict) -> dict:
        dof = result.get("degrees_of_freedom")
        if dof is not None and not _is_number(dof):
            _refuse_form("model")
        if dof is not None and sdc.too_few_degrees_of_freedom(dof, self.appetite):
            raise DisclosureRefused(
                "degrees_of_freedom",
                f"a model needs at least {self.policy.min_degrees_of_freedom} residual "
                "degrees of freedom.",
            )
        confusion = result.get("confusion_matrix")
        if confusion is not None:  # a classifier's: a count table of actual by predicted
            cells = self._counts({"groups": confusion}, ["actual", "predicted"], "model")
            result = {**result, "confusion_matrix": cells["groups"]}
        if self.rows is not None and isinstance(result.get("coefficients"), dict):
            predictors = [str(p) for p in self.params.get("predictors") or []]
            threshold = self.policy.cell_threshold
            result = models.withhold_rare_levels(result, self.rows, predictors, threshold)
        return models.rounded_sizes(result, self.policy.rounding)

    def count_table(self, result: dict) -> dict:
        kind = self.algorithm.disclosure_class
        groups = _groups(result, kind)
        if "column" in result and not isinstance(result["column"], str):
            _refuse_form(kind)
        if "chart" in result and not isinstance(result["chart"], str):
            _refuse_form(kind)
        return self._counts(result, self._keys(groups, kind), kind)

    def _counts(self, result: dict, keys: list[str], kind: str) -> dict:
        """A count table's groups, each ``count`` suppressed or rounded."""
        self.exact = False
        groups = _groups(result, kind)
        _require_fields(groups, keys, ("count", "suppressed"), kind)
        if not all(g.get("count") is None or _is_count(g["count"]) for g in groups):
            _refuse_form(kind)
        if any(g.get("count") is None for g in groups):
            if self.rows is not None:  # counted from rows here: every cell has its count
                _refuse_form(kind)
            return result  # a flow's input, already protected when it was released
        counts, cells = _dense(groups, keys, lambda g: g["count"])
        released = self._cut(counts, self._few_patients(keys, groups, cells, counts.shape))
        out = [{**g, "count": _cell(released, cell)} for g, cell in zip(groups, cells, strict=True)]
        self._remember_groups(keys, [g["count"] is not None for g in out], groups)
        return {**result, "groups": out}

    def histogram(self, result: dict) -> dict:
        self.exact = False
        groups = _groups(result, "histogram")
        column, edges = result.get("column"), result.get("edges", [])
        keys = self._keys(groups, "histogram", fields=("counts",))
        _require_fields(groups, keys, ("counts", "suppressed"), "histogram")
        if (
            (column is not None and not isinstance(column, str))
            or not (isinstance(edges, list) and all(_is_number(e) for e in edges))
            or not all(isinstance(g.get("counts"), list) for g in groups)
            or not all(_is_count(c) for g in groups for c in g["counts"])
        ):
            _refuse_form("histogram")
        total = sum(sum(g["counts"]) for g in groups)
        if total < self.policy.extremes_min_records:
            raise DisclosureRefused(
                "extremes",
                "a histogram's outer edges are a minimum and a maximum, released only over "
                f"at least {self.policy.extremes_min_records} records.",
            )
        bins = max(len(g["counts"]) for g in groups)
        counts, cells = _dense(groups, keys, lambda g: g["counts"], extra=bins)
        few = None
        binned = self.rows is not None and column in self.rows.columns and len(edges) > 1
        if binned:
            bins_of = _binner(column, np.asarray(edges, dtype=float))
            few = self._few_patients(keys, groups, cells, counts.shape, bins_of)
        # Empty bins are withheld like small ones: else the pattern of empty and shown
        # bins over many narrow bins gives every distinct value away.
        few = (counts == 0) | (few if few is not None else False)
        released = self._cut(counts, few)
        out = [{**g, "counts": [_cell(released, (*cell, b)) for b in range(len(g["counts"]))]}
               for g, cell in zip(groups, cells, strict=True)]  # fmt: skip
        if binned:
            self._remember_bins(keys, groups, out, column, np.asarray(edges, dtype=float))
        return {**result, "groups": out}

    def crosstab(self, result: dict) -> dict:
        self.exact = False
        rows, columns, table = result["rows"], result["columns"], result["counts"]
        if not (
            isinstance(rows, list) and isinstance(columns, list) and isinstance(table, list)
            and all(_is_key_value(v) for v in [*rows, *columns]) and len(table) == len(rows)
            and all(isinstance(line, list) and len(line) == len(columns) for line in table)
            and all(_is_count(c) for line in table for c in line)
        ):  # fmt: skip
            _refuse_form("crosstab")
        counts = np.asarray(table, dtype=float).reshape(len(rows), len(columns))
        if counts.size == 0:
            return result
        released = self._cut(counts)
        out = [[_cell(released, (r, c)) for c in range(counts.shape[1])]
               for r in range(counts.shape[0])]  # fmt: skip
        by = self.algorithm.group_columns(self.params)
        if self.rows is not None and len(by) == 2 and all(c in self.rows.columns for c in by):
            wanted = {
                (_plain(r), _plain(c))
                for i, r in enumerate(rows)
                for j, c in enumerate(columns)
                if out[i][j]
            }
            self._remember(by, wanted)
        return {**result, "counts": out}

    def statistics(self, result: dict) -> dict:
        groups = _groups(result, "statistics")
        keys = self._named_keys(groups, "statistics")
        _require_statistics(result, groups, keys)
        self.checks = self._statistic_checks()
        frames = self._frames(keys)
        out, rules = [], []
        for group in groups:
            rule, kept = self._statistic(group, keys, frames.get(_key(group, keys)))
            rules.append(rule)
            out.append(kept)
        if all(rules):
            first = next(r for r in rules if r)
            raise DisclosureRefused(first, _WITHHELD[first].format(policy=self.policy))
        counts, cells = _dense(groups, keys, lambda g: g["count"])
        released = self._cut(counts)
        for kept, cell in zip(out, cells, strict=True):
            kept["count"] = _cell(released, cell)
        self._remember_groups(keys, [not r for r in rules], groups)
        if "NKCheck" in self.checks and self.rows is not None:  # a sum: its support too
            wanted = {_key(g, keys) for g, rule in zip(groups, rules, strict=True) if not rule}
            column, minimum = _cohort_column(self.rows), self.policy.min_cohort
            self.sources.append(
                support.source(lambda: self._frames(keys), wanted, self._columns(), column, minimum)
            )
        return {**result, "groups": out}

    # -- a statistic's group -----------------------------------------------------------

    def _statistic_checks(self) -> frozenset[str]:
        """ACRO's checks for the algorithm's analysis; refused where they cannot be run."""
        try:
            checks = sdc.checks_of(self.algorithm)
        except KeyError:
            raise DisclosureRefused(
                "unchecked_output", "the algorithm names an analysis ACRO does not know."
            ) from None
        if "NKCheck" in checks and self.rows is not None and not self._columns():
            raise DisclosureRefused(
                "unchecked_output",
                "the algorithm names no column it summarises, so dominance cannot be checked.",
            )
        return checks

    def _statistic(self, group: dict, keys: list[str], frame: pd.DataFrame | None):
        """(the rule that withholds this group's statistics or None, the group to release)."""
        n = group["count"]
        fields = [k for k in group if k not in keys and k not in _BOOKKEEPING]
        rule = None
        patients = n if frame is None or self.one_record_each else _patients(frame)
        if min(n, patients) < self.policy.min_cohort:  # records, and whose they are
            rule = "min_cohort"
        elif "MinimumDoFCheck" in self.checks and sdc.too_few_degrees_of_freedom(
            n - 1, self.appetite
        ):
            rule = "degrees_of_freedom"
        elif "NKCheck" in self.checks and frame is not None:
            for column in self._columns():
                values = frame[column].to_numpy(dtype=float)
                failed = sdc.dominated(values, self.appetite, self._mean(group, column, keys))
                rule = rule or {"NKCheck": "dominance", "PPercentCheck": "p_ratio"}.get(
                    failed or ""
                )
        kept = dict(group)
        if rule is None:
            self._spaced_quantiles(kept, fields, n)
        if rule is None and any(f"barn:{b}" in self.checks for b in sdc.EXTREME_BARNS):
            withheld = self._extremes(kept, fields, n)
            if withheld == len(fields):
                rule = "extremes"
        if rule is not None:
            kept.update({f: None for f in fields}, suppressed=True)
        return rule, kept

    def _spaced_quantiles(self, group: dict, fields: list[str], n: int) -> None:
        """Withhold quantile levels that would pin few records: in a group under
        ``extremes_min_records``, a level whose rank is within ``min_cohort`` records of
        either end, and, in any group, one within ``min_cohort`` records of the level
        released before it (many close levels would list the records' values)."""
        gap = self.policy.min_cohort
        small = n < self.policy.extremes_min_records
        for name in fields:
            if not isinstance(group[name], dict):
                continue
            quantiles, last = dict(group[name]), None
            for q in sorted(quantiles, key=float):
                rank = float(q) * n
                near_an_end = small and min(rank, n - rank) < gap
                if near_an_end or (last is not None and rank - last < gap):
                    quantiles[q] = None
                    group["suppressed"] = True
                else:
                    last = rank
            group[name] = quantiles

    def _extremes(self, group: dict, fields: list[str], n: int) -> int:
        """Withhold the extreme statistics of a group with too few records; how many went."""
        enough = n >= self.policy.extremes_min_records
        withheld = 0
        for name in fields:
            if isinstance(group[name], dict):  # quantiles, by q
                quantiles = dict(group[name])
                for q in quantiles:
                    tail = min(float(q), 1 - float(q)) * n
                    if tail < self.policy.min_cohort and not enough:
                        quantiles[q] = None
                        group["suppressed"] = True
                group[name] = quantiles
                withheld += all(v is None for v in quantiles.values())
            elif not enough:  # a maximum or minimum
                group[name] = None
                withheld += 1
        return withheld

    def _mean(self, group: dict, column: str, keys: list[str]) -> float | None:
        """The group's mean of ``column`` when the result holds it (the ``mean`` of the one
        column a parameter names, or a field named after the column, as average blood
        pressure has), which spares summing the values again."""
        named = self.params.get("column") == column
        value = group.get("mean") if named else None if column in keys else group.get(column)
        return float(value) if _is_number(value) and self.checks >= {"NKCheck"} else None

    def _columns(self) -> list[str]:
        """The summarised columns whose values the rows hold."""
        found = self.algorithm.summarised_columns(self.params)
        return [c for c in found if self.rows is not None and c in self.rows.columns]

    # -- count tables ------------------------------------------------------------------

    def _few_patients(
        self,
        keys: list[str],
        groups: list[dict],
        cells: list[tuple],
        shape: tuple[int, ...],
        bins_of: Callable[[pd.DataFrame], tuple] | None = None,
    ) -> np.ndarray | None:
        """Cells whose records come from fewer patients than the threshold (None: unknown).

        A cell of fifty readings of one patient describes that patient alone. With
        ``bins_of`` (a histogram), each group's cell is one bin of a row's value.
        """
        if self.one_record_each or PATIENT_COLUMN not in self.rows.columns:
            return None
        if keys and not all(k in self.rows.columns for k in keys):
            return None
        threshold = self.appetite.safe_threshold
        few = np.zeros(shape, dtype=bool)
        frames = self._frames(keys)
        for group, cell in zip(groups, cells, strict=True):
            frame = frames.get(_key(group, keys))
            if frame is None:
                continue
            if bins_of is None:
                few[cell] = 0 < _patients(frame) < threshold
                continue
            index, valid = bins_of(frame)
            codes = pd.factorize(frame[PATIENT_COLUMN].to_numpy()[valid])[0]
            pairs = np.unique(index.astype(np.int64) * (codes.max(initial=0) + 1) + codes)
            per_bin = np.bincount(pairs // (codes.max(initial=0) + 1), minlength=shape[-1])
            few[cell] = (per_bin[: shape[-1]] > 0) & (per_bin[: shape[-1]] < threshold)
        return few

    def _cut(self, counts: np.ndarray, few_patients: np.ndarray | None = None) -> np.ndarray:
        """Counts with suppressed cells as NaN and the rest rounded."""
        mask = tables.suppress(counts, self.appetite, few_patients)
        released = tables.round_counts(counts, self.policy.rounding).astype(float)
        released[mask] = np.nan
        return released

    def _named_keys(self, groups: list[dict], kind: str) -> list[str]:
        """The columns the algorithm's parameters key its groups by; each group holds them."""
        keys = self.algorithm.group_columns(self.params)
        if not all(isinstance(k, str) for k in keys):
            _refuse_form(kind)
        if not all(k in g and _is_key_value(g[k]) for g in groups for k in keys):
            _refuse_form(kind)
        return keys

    def _keys(self, groups: list[dict], kind: str, fields: tuple[str, ...] = ("count",)):
        """The fields that name a count table's groups: the columns the algorithm's
        parameters name, or else every field of its groups that is not a number."""
        keys = self._named_keys(groups, kind)
        if keys:
            return keys
        first = groups[0]
        if set(first) - set(fields) - {"suppressed"} and not any(
            _is_number(v) or isinstance(v, dict) for k, v in first.items() if k not in fields
        ):
            return [k for k in first if k not in fields and k != "suppressed"]
        return []

    # -- the cohorts a release reveals something about ---------------------------------

    def _frames(self, keys: list[str]) -> dict[tuple, pd.DataFrame]:
        if self.rows is None:
            return {}
        if not keys:
            return {(): self.rows}
        if not all(k in self.rows.columns for k in keys):
            return {}
        grouped = self.rows.groupby(keys, dropna=False, sort=False)
        return {_key_of(values): frame for values, frame in grouped}

    def _remember_groups(self, keys: list[str], released: list[bool], groups: list[dict]):
        if keys and self.rows is not None and all(k in self.rows.columns for k in keys):
            self._remember(keys, {_key(g, keys) for g, r in zip(groups, released, strict=True)
                                  if r})  # fmt: skip

    def _whole(self) -> list[np.ndarray]:
        return [self.rows[_cohort_column(self.rows)].to_numpy()]

    def _remember(self, keys: list[str], wanted: set[tuple]) -> None:
        """Count the patients of each released group (by its key values) as a cohort."""

        def groups() -> list[np.ndarray]:
            grouped = self.rows.groupby(keys, dropna=False, sort=False)
            ids = grouped[_cohort_column(self.rows)]
            return [group.to_numpy() for values, group in ids if _key_of(values) in wanted]

        self.sources.append(groups)

    def _remember_bins(self, keys, groups, out, column: str, edges: np.ndarray) -> None:
        """Count the patients of each released bin of each group as a cohort."""

        def bins() -> list[np.ndarray]:
            found, frames = [], self._frames(keys)
            for group, released in zip(groups, out, strict=True):
                frame = frames.get(_key(group, keys))
                if frame is None:
                    continue
                index, valid = _binner(column, edges)(frame)
                order = np.argsort(index, kind="stable")
                ids = frame[_cohort_column(frame)].to_numpy()[valid][order]
                starts = np.searchsorted(index[order], np.arange(len(edges)))
                for b, count in enumerate(released["counts"]):
                    if count:
                        found.append(ids[starts[b] : starts[b + 1]])
            return found

        self.sources.append(bins)


_WITHHELD = {
    "min_cohort": "every group is smaller than the minimum of {policy.min_cohort}.",
    "degrees_of_freedom": "a spread needs at least {policy.min_degrees_of_freedom} degrees "
    "of freedom.",
    "dominance": "a few records dominate the total (the N-K rule).",
    "p_ratio": "the largest record could be estimated by the next (the p-percent rule).",
    "extremes": "an extreme is released only over enough records ({policy.extremes_min_records}).",
}


# -- the form of a result --------------------------------------------------------------


def _refuse_form(kind: str) -> NoReturn:
    raise DisclosureRefused(
        "unchecked_output", f"the result does not have the form of its disclosure class, {kind}."
    )


def _groups(result: dict, kind: str) -> list[dict]:
    groups = result.get("groups")
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) for g in groups):
        _refuse_form(kind)
    return groups


def _require_fields(
    groups: list[dict], keys: list[str], fields: tuple[str, ...] | None, kind: str
) -> None:
    """Refuse groups holding a field that is neither a key nor one of ``fields`` (None:
    any other field, each then checked as a statistic), a key that is not a value, or a
    ``suppressed`` mark that is not yes or no."""
    for group in groups:
        if fields is not None and set(group) - set(keys) - set(fields):
            _refuse_form(kind)
        if not all(_is_key_value(group.get(k)) for k in keys):
            _refuse_form(kind)
        if not isinstance(group.get("suppressed", False), bool | np.bool_):
            _refuse_form(kind)


def _require_statistics(result: dict, groups: list[dict], keys: list[str]) -> None:
    """Refuse statistics whose groups hold anything but their keys, their count and
    statistics (numbers, or numbers by quantile)."""
    _require_fields(groups, keys, None, "statistics")
    if "column" in result and not isinstance(result["column"], str):
        _refuse_form("statistics")
    for group in groups:
        fields = [f for f in group if f not in keys and f not in _BOOKKEEPING]
        if not _is_count(group.get("count")) or not all(_is_statistic(group[f]) for f in fields):
            _refuse_form("statistics")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


def _is_key_value(value: Any) -> bool:
    """A group's key: one value of a column (a category, a number, yes/no, missing)."""
    return value is None or isinstance(value, str | bool | np.bool_ | numbers.Real)


def _is_statistic(value: Any) -> bool:
    """A statistic: a number, withheld (None), or numbers by name (quantiles by q)."""
    if isinstance(value, dict):
        return all(_is_quantile(q) and (v is None or _is_number(v)) for q, v in value.items())
    return value is None or _is_number(value)


def _is_quantile(name: Any) -> bool:
    try:
        return 0 <= float(name) <= 1
    except (TypeError, ValueError):
        return False


# -- helpers -----------------------------------------------------------------------------


def _cohort_column(frame: pd.DataFrame) -> str:
    """The column naming the rows' patients for the differencing check: their hashes
    where the executor keeps them beside the rows, else their ids (repeats are dropped
    when hashed)."""
    if differencing.PATIENT_HASH_COLUMN in frame.columns:
        return differencing.PATIENT_HASH_COLUMN
    return PATIENT_COLUMN


def _ids(patients: list[str], organisation: str) -> np.ndarray:
    """Patient keys (``id@Organisation``) as the ids the data organisation's rows hold."""
    suffix = f"@{organisation}"
    return np.array([p.removesuffix(suffix) for p in patients], dtype=object)


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and math.isnan(value) else value


def _key_of(values: Any) -> tuple:
    return tuple(_plain(v) for v in (values if isinstance(values, tuple) else (values,)))


def _key(group: dict, keys: list[str]) -> tuple:
    return tuple(_plain(group.get(k)) for k in keys)


def _dense(groups: list[dict], keys: list[str], cells, extra: int | None = None):
    """The groups' counts as a dense table, one dimension per key (and one for bins)."""
    levels = [list(dict.fromkeys(_plain(g.get(k)) for g in groups)) for k in keys]
    shape = tuple(len(level) for level in levels) + ((extra,) if extra else ())
    table = np.zeros(shape or (1,), dtype=float)
    positions = []
    for group in groups:
        named = zip(levels, keys, strict=True)
        position = tuple(level.index(_plain(group.get(k))) for level, k in named)
        value = cells(group)
        if extra:
            table[position][: len(value)] = value
        else:
            table[position or (0,)] = value
        positions.append(position or ((0,) if not extra else ()))
    return table, positions


def _cell(released: np.ndarray, cell: tuple) -> int | None:
    value = released[cell]
    return None if np.isnan(value) else int(value)


def _patients(frame: pd.DataFrame) -> int:
    """How many distinct patients some rows are of (each row one, without the column)."""
    return frame[PATIENT_COLUMN].nunique() if PATIENT_COLUMN in frame.columns else len(frame)


def _binner(column: str, edges: np.ndarray) -> Callable[[pd.DataFrame], tuple]:
    """Each valid row's histogram bin (as the histogram counted it) and which rows are valid."""

    def bins_of(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        values = frame[column].to_numpy(dtype=float)
        valid = ~np.isnan(values)
        index = np.searchsorted(edges, values[valid], side="right") - 1
        return np.clip(index, 0, len(edges) - 2), valid

    return bins_of
