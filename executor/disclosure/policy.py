"""The data organisation's disclosure policy: what a result may reveal, and how it is cut.

One :class:`DisclosurePolicy` per data organisation, set like any FlowBlock setting
(``c.DisclosurePolicy.min_cohort = 20`` in ``flowblock_config.py``) and hashed, with the
code of its rules, into every result's provenance on the ledger. Which rules a result
gets is decided by the disclosure class its algorithm declares
(:mod:`~flowblock.executor.disclosure.classes`), never by the algorithm's name or by
guessing from the result's shape; a class the policy does not know, or a result not of
its class's form, is refused. For each result the executor computes, before anything
leaves the data side:

- the cohort must hold at least ``min_cohort`` patients;
- count tables (counts, grouped counts, histograms, crosstabs, charts) lose the cells
  below ``cell_threshold`` and then as many more as it takes so that no suppressed cell
  can be worked out from the rest and the totals; released counts are rounded;
- a statistic of a group (mean, standard deviation, quantile, maximum…) is withheld if
  the group is under ``min_cohort``, if its values fail the N-K dominance or p-percent
  rule (means and sums), if it is an extreme (a minimum, maximum or outer quantile)
  over fewer than ``extremes_min_records``, or if a spread has too few degrees of freedom;
- a model's outputs are refused below ``min_degrees_of_freedom`` residual degrees of freedom;
- per-record labels are kept data-side for a flow and never released;
- the released cohorts must not differ from earlier ones by only a few patients
  (:mod:`~flowblock.executor.disclosure.differencing`), nor, with every exact release
  made to anyone on the dataset, determine a total over a few patients
  (:mod:`~flowblock.executor.disclosure.auditing`);
- in differential-privacy mode (a token with ε > 0) the result must come from the
  algorithm's OpenDP mode, and none of the exact rules above apply to it: the noise
  protects every patient, and the ε budget on the ledger bounds what all queries reveal.

Each class's rules are applied by :mod:`~flowblock.executor.disclosure.release`; which of
ACRO's checks a statistic needs comes from ACRO's ontology, for the analysis its
algorithm names (:mod:`~flowblock.executor.disclosure.sdc`). A refusal is :class:`DisclosureRefused`
naming its rule, in words that say nothing about the data.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from traitlets import Bool, Float, Int, List, Unicode
from traitlets.config import Configurable

from flowblock.canonical import canonical_json
from flowblock.errors import DisclosureRefused
from flowblock.executor.disclosure import (
    auditing,
    classes,
    differencing,
    models,
    release,
    sdc,
    support,
    tables,
)
from flowblock.executor.storage.objects import ObjectStore, sha256_hex


@dataclass
class Protected:
    """A result as it may be released, and the cohorts it reveals something about.

    The cohorts (arrays of patient ids) are worked out only when asked for, by
    :meth:`DisclosurePolicy.record`, so the rules themselves cost little. The first
    source is the whole cohort's, the others those of the released groups, cells or bins.
    """

    value: Any
    sources: list[Callable[[], list[np.ndarray]]] = field(default_factory=list)
    #: Whether the values are exact statistics; rounded counts are no linear release.
    exact: bool = True

    def cohorts(self) -> list[np.ndarray]:
        return [cohort for source in self.sources for cohort in source()]

    def hashed(self) -> tuple[list[np.ndarray], list[bool]]:
        """Each distinct cohort as sorted patient hashes, and whether it is an exact
        linear release (a sum, mean or count over it is given): each released group's,
        or the whole cohort's when the result has no groups. A grouped result gives the
        whole cohort only as its rounded size."""
        found: dict[bytes, list] = {}
        grouped = len(self.sources) > 1
        for n, source in enumerate(self.sources):
            for cohort in map(differencing.cohort_hashes, source()):
                entry = found.setdefault(cohort.tobytes(), [cohort, False])
                entry[1] = self.exact and (entry[1] or n > 0 or not grouped)
        return [c for c, _ in found.values()], [linear for _, linear in found.values()]


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
    auditing = Bool(
        True,
        help="Refuse a result whose exact releases, with every earlier one on the dataset "
        "(to any organisation), determine a total over fewer than min_cohort patients "
        "(query auditing against trackers; docs/disclosure-auditing.md).",
    ).tag(config=True)
    auditing_seconds = Float(
        10.0,
        help="Longest the auditing of one result may take; one not decided by then is "
        "refused, pointing to differential privacy (what was read of the history by then "
        "is kept: after a restart the next check goes on from there).",
    ).tag(config=True)
    auditing_max_refusals = Int(
        20,
        help="Refusals for what a result would reveal with earlier ones (differencing and "
        "auditing) an organisation may get on a dataset; past them its exact results there "
        "are all refused alike, so refusals stop telling anything (0: no limit).",
    ).tag(config=True)
    max_protect_seconds = Float(
        10.0,
        help="Longest the suppression of one count table may run; a table not protected "
        "by then is refused (too many cells to protect) rather than holding the executor.",
    ).tag(config=True)
    max_table_cells = Int(
        1_000_000,
        help="Most cells a count table may have to be protected (the memory its "
        "suppression takes grows with them); a larger one is refused before any work.",
    ).tag(config=True)
    max_query_epsilon = Float(
        2.0, help="The most ε one differentially private query may spend."
    ).tag(config=True)
    dp_only_datasets = List(
        Unicode(),
        help="Datasets answered only with differential privacy: an exact request is refused "
        "before any data is read (the chaincode refuses it at request too, by the rules' "
        "dp_only).",
    ).tag(config=True)
    dp_only_classes = List(
        Unicode(),
        help="Disclosure classes (flowblock.vocabulary.DISCLOSURE_CLASSES) answered only with "
        "differential privacy.",
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
            max_protect_seconds=self.max_protect_seconds,
            max_table_cells=self.max_table_cells,
        )

    # -- before any data is read -----------------------------------------------------

    def admit(self, token: dict, algorithm: type) -> None:
        """Refuse, before any data is read, a token no result of which could be released."""
        epsilon = _epsilon(token)
        if not epsilon:
            dp_only = token.get("dataset") in self.dp_only_datasets or (
                algorithm.disclosure_class in self.dp_only_classes
            )
            if dp_only:
                raise DisclosureRefused(
                    "differential_privacy",
                    f"{algorithm.name} on {token.get('dataset')!r} is answered only with "
                    "differential privacy here: ask with an epsilon.",
                )
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
        rules = release.Release(self, token, algorithm, rows, patients)
        return Protected(rules.apply(result), rules.sources, rules.exact)

    def record(self, token: dict, protected: Protected, store: ObjectStore) -> Any:
        """Refuse the result if its cohorts difference earlier ones, or with every earlier
        exact release on the dataset determine a few patients' total; else remember them.

        The record is written before it is checked, so two tokens checked at once see
        each other; a refused one is withdrawn (nothing of it was released)."""
        if not (protected.sources and (self.differencing or self.auditing)):
            return protected.value
        dataset, organisation = token["dataset"], token["requester"].rsplit("@", 1)[1]
        refusals = auditing.Refusals(store, dataset, organisation)
        refusals.require_fewer_than(self.auditing_max_refusals)
        cohorts, linear = protected.hashed()
        history = differencing.CohortHistory(store, dataset, organisation)
        key = history.remember(token["token_id"], cohorts, linear)
        try:
            if self.differencing:
                history.check(key, cohorts, self.min_cohort)
            if self.auditing:
                exact = [c for c, is_linear in zip(cohorts, linear, strict=True) if is_linear]
                auditor = auditing.Auditor(store, dataset)
                auditor.check(key, exact, self.min_cohort, self.auditing_seconds)
        except BaseException as error:
            history.withdraw(key)
            auditing.withdrawn(store, dataset, key)
            if isinstance(error, DisclosureRefused) and not isinstance(error, auditing.Undecided):
                refusals.note(token["token_id"])  # one bit told about the cohorts
            raise
        return protected.value

    def published_cohort_size(self, token: dict, patients: list[str]) -> int | None:
        """The cohort size a result states (on the ledger and in its provenance): rounded
        like every released count, and none at all under differential privacy, whose
        noisy answer is all it may release."""
        if _epsilon(token):
            return None
        return int(tables.round_counts([len(patients)], self.rounding)[0])

    def require_cohort(self, token: dict, size: int) -> None:
        """An exact result needs ``min_cohort`` patients, refused in the same sentence
        for every smaller size, zero included; a DP one answers any cohort with noise."""
        if not _epsilon(token):
            self._require_cohort(size)

    def _require_cohort(self, size: int) -> None:
        if size < self.min_cohort:
            raise DisclosureRefused(
                "min_cohort", f"the cohort is smaller than the minimum of {self.min_cohort}."
            )


def _epsilon(token: dict) -> float:
    return float(token.get("epsilon") or 0)


@functools.cache
def _rules_hash() -> str:
    """The code of the rules, so a result's policy hash changes when the rules do."""
    from importlib.metadata import version

    modules = (
        auditing, classes, differencing, models, release, sdc, support, tables,
        sys.modules[__name__],
    )  # fmt: skip
    sources = [inspect.getsource(module) for module in modules]
    return sha256_hex(canonical_json({"sources": sources, "acro": version("acro")}))
