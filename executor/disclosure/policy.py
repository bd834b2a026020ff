"""The data organisation's disclosure policy: what a result may reveal, and how it is cut.

One :class:`DisclosurePolicy` per data organisation, set like any FlowBlock setting
(``c.DisclosurePolicy.min_cohort = 20`` in ``flowblock_config.py``) and hashed, with the
code of its rules, into every result's provenance on the ledger. For each result the
executor computes, before anything leaves the data side:

- the cohort must hold at least ``min_cohort`` patients;
- count tables (counts, grouped counts, histograms, crosstabs, charts) lose the cells
  below ``cell_threshold`` and then as many more as it takes so that no suppressed cell
  can be worked out from the rest and the totals; released counts are rounded;
- a statistic of a group (mean, standard deviation, quantile, maximum…) is withheld if
  the group is under ``min_cohort``, if its values fail the N-K dominance or p-percent
  rule (means and sums), if it is an extreme (a minimum, maximum or outer quantile)
  over fewer than ``extremes_min_records``, or if a spread has too few degrees of freedom;
- a model's outputs are refused below ``min_degrees_of_freedom`` residual degrees of freedom;
- the released cohorts must not differ from earlier ones by only a few patients
  (:mod:`~flowblock.executor.disclosure.differencing`);
- in differential-privacy mode (a token with ε > 0) the result must come from the
  algorithm's OpenDP mode, and none of the exact rules above apply to it: the noise
  protects every patient, and the ε budget on the ledger bounds what all queries reveal.

Which of ACRO's checks each kind of analysis needs comes from ACRO's ontology
(:mod:`~flowblock.executor.disclosure.sdc`). A refusal is :class:`DisclosureRefused`
naming its rule, in words that say nothing about the data.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from traitlets import Bool, Float, Int
from traitlets.config import Configurable

from flowblock.canonical import canonical_json
from flowblock.errors import DisclosureRefused
from flowblock.executor.disclosure import differencing, sdc, tables
from flowblock.executor.storage.objects import ObjectStore, sha256_hex

PATIENT_COLUMN = "patient_id"
#: Columns a built-in method summarises without naming them in its parameters.
STATISTIC_COLUMNS = {"average-blood-pressure": ("systolic", "diastolic")}
#: Fields of a group that are neither its key nor a statistic.
_BOOKKEEPING = ("count", "counts", "suppressed")


@dataclass
class Protected:
    """A result as it may be released, and the cohorts it reveals something about.

    The cohorts (arrays of patient ids) are worked out only when asked for, by
    :meth:`DisclosurePolicy.record`, so the rules themselves cost little.
    """

    value: Any
    sources: list[Callable[[], list[np.ndarray]]] = field(default_factory=list)

    def cohorts(self) -> list[np.ndarray]:
        return [cohort for source in self.sources for cohort in source()]


class DisclosurePolicy(Configurable):
    """The organisation's rules on what a result may reveal (see the module's docstring)."""

    min_cohort = Int(
        10,
        help="Fewest patients a result (and each group of a statistic) may describe; also "
        "how many patients two released cohorts must differ by (differencing).",
    ).tag(config=True)
    cell_threshold = Int(
        10, help="Counts in a table below this are suppressed (ACRO's safe_threshold)."
    ).tag(config=True)
    zeros_are_disclosive = Bool(
        False,
        help="Suppress zero counts too (class disclosure: 'none of them has X'). ACRO's "
        "default is yes; off here so histograms keep their empty bins.",
    ).tag(config=True)
    rounding = Int(
        5, help="Released counts are rounded to a multiple of this (1: not rounded)."
    ).tag(config=True)
    dominance_n = Int(
        2, help="N of the N-K dominance rule: how many largest contributions are summed."
    ).tag(config=True)
    dominance_k = Float(
        0.9, help="K of the N-K rule: a mean or sum whose N largest values make up this "
        "share of its total or more is withheld."
    ).tag(config=True)  # fmt: skip
    p_ratio = Float(
        0.1,
        help="The p-percent rule: withheld if all but the two largest values sum to less "
        "than this share of the largest (the second could estimate the first).",
    ).tag(config=True)
    extremes_min_records = Int(
        20,
        help="Fewest records a minimum, a maximum, an outer quantile or a histogram's outer "
        "edges may be taken over (each is one patient's own value).",
    ).tag(config=True)
    min_degrees_of_freedom = Int(
        10, help="Fewest residual degrees of freedom a model or a spread is released with."
    ).tag(config=True)
    differencing = Bool(
        True,
        help="Refuse a result whose cohort differs from one released earlier to the same "
        "organisation on the dataset by fewer than min_cohort patients.",
    ).tag(config=True)
    max_query_epsilon = Float(
        2.0, help="The most ε one differentially private query may spend."
    ).tag(config=True)

    # -- what the policy is ----------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """Every setting, by name (what the hash covers, with the rules' code)."""
        return {name: getattr(self, name) for name in sorted(self.trait_names(config=True))}

    @property
    def hash(self) -> str:
        """SHA-256 of the settings and of the code that applies them."""
        return sha256_hex(canonical_json({"settings": self.settings(), "rules": _rules_hash()}))

    @property
    def appetite(self) -> sdc.RiskAppetite:
        return sdc.RiskAppetite(
            safe_threshold=self.cell_threshold,
            safe_dof_threshold=self.min_degrees_of_freedom,
            safe_nk_n=self.dominance_n,
            safe_nk_k=self.dominance_k,
            safe_pratio_p=self.p_ratio,
            zeros_are_disclosive=self.zeros_are_disclosive,
        )

    # -- before any data is read -----------------------------------------------------

    def admit(self, token: dict, algorithm: type) -> None:
        """Refuse, before any data is read, a token no result of which could be released."""
        epsilon = _epsilon(token)
        if not epsilon:
            return
        if not getattr(algorithm, "differentially_private", False):
            raise DisclosureRefused(
                "differential_privacy", f"{algorithm.name} has no differential-privacy mode."
            )
        if epsilon > self.max_query_epsilon:
            raise DisclosureRefused(
                "differential_privacy",
                f"one query may spend at most ε={self.max_query_epsilon:g} here.",
            )

    # -- one result ------------------------------------------------------------------

    def check(self, cohort_size: int, result: Any) -> None:
        """The minimum-cohort rule alone, over the cohort and each group's count."""
        self._require_cohort(cohort_size)
        for group in result.get("groups", []) if isinstance(result, dict) else []:
            if isinstance(group.get("count"), int) and group["count"] < self.min_cohort:
                raise DisclosureRefused(
                    "min_cohort", f"a group is smaller than the minimum of {self.min_cohort}."
                )

    def protect(
        self,
        token: dict,
        algorithm: type,
        result: Any,
        rows: pd.DataFrame | None,
        patients: list[str],
    ) -> Protected:
        """The result as it may be released; DisclosureRefused if nothing of it may be."""
        if _epsilon(token):
            if not (isinstance(result, dict) and "dp" in result):
                raise DisclosureRefused(
                    "differential_privacy", "the result did not come from a DP mechanism."
                )
            return Protected(result)
        self._require_cohort(len(patients))
        if algorithm.disclosure_class == "labels":  # kept data-side, never released
            return Protected(result)
        release = _Release(self, token, algorithm, rows, patients)
        return Protected(release.apply(result), release.sources)

    def record(self, token: dict, protected: Protected, store: ObjectStore) -> Any:
        """Refuse the result if its cohorts difference earlier ones; else remember them."""
        if self.differencing and protected.sources:
            organisation = token["requester"].rsplit("@", 1)[1]
            history = differencing.CohortHistory(store, token["dataset"], organisation)
            hashed = map(differencing.cohort_hashes, protected.cohorts())
            cohorts = {c.tobytes(): c for c in hashed}
            history.check_and_remember(token["token_id"], list(cohorts.values()), self.min_cohort)
        return protected.value

    def published_cohort_size(self, token: dict, patients: list[str]) -> int:
        """The cohort size for the ledger: exact, but never under differential privacy."""
        return 0 if _epsilon(token) else len(patients)

    def _require_cohort(self, size: int) -> None:
        if size < self.min_cohort:
            raise DisclosureRefused(
                "min_cohort", f"the cohort is smaller than the minimum of {self.min_cohort}."
            )


class _Release:
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
        self.checks = sdc.checks_for(sdc.analysis_of(algorithm))
        # One record per patient (the cohort's patients are as many as its rows): a cell's
        # records are as many as its patients, and need no counting of their own.
        self.one_record_each = rows is None or len(rows) == len(patients)
        self.sources: list[Callable[[], list[np.ndarray]]] = [
            self._whole if rows is not None and PATIENT_COLUMN in rows.columns
            else lambda: [_ids(patients, token["data_org"])]
        ]  # fmt: skip

    def apply(self, result: Any) -> Any:
        if not isinstance(result, dict):
            raise DisclosureRefused("unchecked_output", "the result is not of a form it can check.")
        if "degrees_of_freedom" in result or self.algorithm.disclosure_class == "model":
            return self.model(result)
        if "counts" in result and "rows" in result:
            return self.crosstab(result)
        groups = result.get("groups")
        if not isinstance(groups, list) or not groups:
            raise DisclosureRefused("unchecked_output", "the result is not of a form it can check.")
        if all(isinstance(g.get("counts"), list) for g in groups):
            return self.histogram(result)
        if all("count" in g for g in groups):
            keys = self._keys(groups)
            if any(set(g) - set(keys) - set(_BOOKKEEPING) for g in groups):
                return self.statistics(result, keys)
            return self.count_table(result, keys)
        raise DisclosureRefused("unchecked_output", "the result is not of a form it can check.")

    # -- kinds of result ---------------------------------------------------------------

    def model(self, result: dict) -> dict:
        dof = result.get("degrees_of_freedom")
        if dof is not None and sdc.too_few_degrees_of_freedom(dof, self.appetite):
            raise DisclosureRefused(
                "degrees_of_freedom",
                f"a model needs at least {self.policy.min_degrees_of_freedom} residual "
                "degrees of freedom.",
            )
        confusion = result.get("confusion_matrix")
        if isinstance(confusion, list) and confusion:  # a classifier's: a count table
            cells = self.count_table({"groups": confusion}, ["actual", "predicted"])
            result = {**result, "confusion_matrix": cells["groups"]}
        return result

    def count_table(self, result: dict, keys: list[str]) -> dict:
        groups = result["groups"]
        if any(g["count"] is None for g in groups):  # already protected (a flow's input)
            return result
        counts, cells = _dense(groups, keys, lambda g: g["count"])
        released = self._cut(counts, self._few_patients(keys, groups, cells, counts.shape))
        out = [{**g, "count": _cell(released, cell)} for g, cell in zip(groups, cells, strict=True)]
        self._remember_groups(keys, [g["count"] is not None for g in out], groups)
        return {**result, "groups": out}

    def histogram(self, result: dict) -> dict:
        groups, column, edges = result["groups"], result.get("column"), result.get("edges", [])
        total = sum(sum(g["counts"]) for g in groups)
        if total < self.policy.extremes_min_records:
            raise DisclosureRefused(
                "extremes",
                "a histogram's outer edges are a minimum and a maximum, released only over "
                f"at least {self.policy.extremes_min_records} records.",
            )
        keys = self._keys(groups, fields=("counts",))
        bins = max(len(g["counts"]) for g in groups)
        counts, cells = _dense(groups, keys, lambda g: g["counts"], extra=bins)
        few = None
        if self.rows is not None and column in self.rows.columns and len(edges) > 1:
            bins_of = _binner(column, np.asarray(edges, dtype=float))
            few = self._few_patients(keys, groups, cells, counts.shape, bins_of)
        released = self._cut(counts, few)
        out = [{**g, "counts": [_cell(released, (*cell, b)) for b in range(len(g["counts"]))]}
               for g, cell in zip(groups, cells, strict=True)]  # fmt: skip
        if self.rows is not None and column in self.rows.columns and len(edges) > 1:
            self._remember_bins(keys, groups, out, column, np.asarray(edges, dtype=float))
        return {**result, "groups": out}

    def crosstab(self, result: dict) -> dict:
        counts = np.asarray(result["counts"], dtype=float)
        if counts.size == 0:
            return result
        released = self._cut(counts)
        out = [[_cell(released, (r, c)) for c in range(counts.shape[1])]
               for r in range(counts.shape[0])]  # fmt: skip
        if self.rows is not None:
            by = [self.params.get("rows"), self.params.get("columns")]
            if all(column in self.rows.columns for column in by):
                wanted = {
                    (_plain(r), _plain(c))
                    for i, r in enumerate(result["rows"])
                    for j, c in enumerate(result["columns"])
                    if out[i][j]
                }
                self._remember(by, wanted)
        return {**result, "counts": out}

    def statistics(self, result: dict, keys: list[str]) -> dict:
        groups = result["groups"]
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
        return {**result, "groups": out}

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
                if column in frame.columns:
                    values = frame[column].to_numpy(dtype=float)
                    failed = sdc.dominated(values, self.appetite, self._mean(group, column))
                    rule = rule or {"NKCheck": "dominance", "PPercentCheck": "p_ratio"}.get(
                        failed or ""
                    )
        kept = dict(group)
        if rule is None and any(f"barn:{b}" in self.checks for b in sdc.EXTREME_BARNS):
            withheld = self._extremes(kept, fields, n)
            if withheld == len(fields):
                rule = "extremes"
        if rule is not None:
            kept.update({f: None for f in fields}, suppressed=True)
        return rule, kept

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

    # -- helpers -----------------------------------------------------------------------

    def _few_patients(
        self,
        keys: list[str],
        groups: list[dict],
        cells: list[tuple],
        shape: tuple[int, ...],
        bins_of: Callable[[pd.DataFrame], np.ndarray] | None = None,
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

    def _keys(self, groups: list[dict], fields: tuple[str, ...] = ("count",)) -> list[str]:
        """The fields that name a group: its group_by columns, a chart's column or label,
        or else every field of a count table's groups that is not a number."""
        keys = list(self.params.get("group_by") or [])
        if keys:
            return keys
        if self.algorithm.disclosure_class == "chart":
            named = self.params.get("column") or self.params.get("label")
            if named and all(named in g for g in groups):
                return [named]
        first = groups[0]
        if set(first) - set(fields) - {"suppressed"} and not any(
            isinstance(v, int | float | dict) and not isinstance(v, bool)
            for k, v in first.items() if k not in fields
        ):  # fmt: skip
            return [k for k in first if k not in fields and k != "suppressed"]
        return []

    def _mean(self, group: dict, column: str) -> float | None:
        """The group's mean of ``column`` when the result holds it (a mean's own field,
        or a field named after the column, as average blood pressure has)."""
        value = group.get("mean") if column == self.params.get("column") else group.get(column)
        plain = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if plain and self.checks >= {"NKCheck"} else None

    def _columns(self) -> list[str]:
        if self.params.get("column"):
            return [self.params["column"]]
        named = getattr(self.algorithm, "statistic_columns", None)
        return list(named or STATISTIC_COLUMNS.get(self.algorithm.name, ()))

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


def _epsilon(token: dict) -> float:
    return float(token.get("epsilon") or 0)


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


@functools.cache
def _rules_hash() -> str:
    """The code of the rules, so a result's policy hash changes when the rules do."""
    from importlib.metadata import version

    modules = (differencing, sdc, tables, sys.modules[__name__])
    sources = [inspect.getsource(module) for module in modules]
    return sha256_hex(canonical_json({"sources": sources, "acro": version("acro")}))


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
