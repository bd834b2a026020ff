"""ACRO's statistical disclosure checks, asked with FlowBlock's risk appetite.

ACRO (the SACRO project's engine, used by UK trusted research environments) knows from
its ontology which risks each kind of analysis carries and which checks answer them: a
mean risks dominance and low counts, a maximum class disclosure and low counts, a
regression low degrees of freedom. FlowBlock asks it, and runs ACRO's own threshold,
N-K dominance, p-percent and degrees-of-freedom checks on evidence computed here. ACRO
works on whole tables from raw rows; FlowBlock's algorithms return aggregates, so the
evidence (counts, sums, largest contributions) is gathered from the cohort's rows once,
with numpy, and only cells that cheap exact bounds cannot clear reach ACRO.

ACRO is imported lazily (it costs seconds, and configures logging on import, which is
undone here).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from flowblock.executor.disclosure.classes import CLASSES

#: What a statistic that names no analysis is checked as: all of these at once (its
#: dominance, its degrees of freedom, whether it is an extreme), the strictest reading.
ANY_STATISTIC = ("Mean", "StandardDeviation", "Maximum", "Quartiles")
#: ACRO's statistical barns whose results are extremes (an individual's own value).
EXTREME_BARNS = ("Endpoints", "Position")


@functools.cache
def _acro() -> Any:
    """ACRO's sdcchecks module, imported once, leaving the root logger as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from acro import sdcchecks

    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    return sdcchecks


@functools.cache
def _checker(appetite: tuple[tuple[str, Any], ...]) -> Any:
    return _acro().SDCChecks(dict(appetite))


#: The appetite's limits on the work of protecting a table: FlowBlock's, not ACRO's.
_LIMITS = ("max_protect_seconds", "max_table_cells")


@dataclass(frozen=True)
class RiskAppetite:
    """The policy's thresholds, in ACRO's words (its ``default.yaml`` keys), and how much
    work protecting one table may take before it is refused (not ACRO's: unbounded
    suppression of a large table would hold the executor)."""

    safe_threshold: int
    safe_dof_threshold: int
    safe_nk_n: int
    safe_nk_k: float
    safe_pratio_p: float
    zeros_are_disclosive: bool
    max_protect_seconds: float = 10.0
    max_table_cells: int = 1_000_000

    @property
    def checker(self) -> Any:
        items = {k: v for k, v in self.__dict__.items() if k not in _LIMITS}
        items["check_missing_values"] = False
        return _checker(tuple(sorted(items.items())))


def analysis_of(algorithm: type) -> str | None:
    """The ACRO analysis an algorithm's result is, for the ontology's lookup: the one it
    names (``sdc_analysis``), else its disclosure class's (None: a statistic unnamed)."""
    kind = CLASSES.get(getattr(algorithm, "disclosure_class", None))
    return getattr(algorithm, "sdc_analysis", None) or (kind.analysis if kind else None)


def checks_of(algorithm: type) -> frozenset[str]:
    """The checks ACRO's ontology names for an algorithm's analysis; for a statistic that
    names none, those of every statistic. KeyError: an analysis ACRO does not know."""
    analysis = analysis_of(algorithm)
    if analysis is None:
        return frozenset().union(*map(checks_for, ANY_STATISTIC))
    return checks_for(analysis)


@functools.cache
def checks_for(analysis: str) -> frozenset[str]:
    """The checks ACRO's ontology names for an analysis (plus its statistical barn)."""
    checker = _checker((("check_missing_values", False),))
    if analysis not in checker.analyses:
        raise KeyError(analysis)
    tokens = checker.get_sdctokens_for_analysis(analysis)
    return frozenset([*tokens["checks_needed"], f"barn:{tokens['statbarn']}"])


def below_threshold(counts: np.ndarray, appetite: RiskAppetite) -> np.ndarray:
    """ACRO's minimum-threshold check over a count table: True where a cell fails.

    A table whose every cell reaches the threshold passes without asking ACRO.
    """
    if np.all(np.asarray(counts) >= appetite.safe_threshold):
        return np.zeros(np.shape(counts), dtype=bool)
    table = pd.DataFrame(np.asarray(counts).reshape(len(counts), -1))
    evidence = _acro().SDCEvidence(interim_tables={"count_table": table})
    _, _, mask = appetite.checker.check_min_threshold(
        "FrequencyTable", evidence, SimpleNamespace(model_type="table")
    )
    failed = mask.to_numpy(dtype=bool).reshape(np.shape(counts))
    if not appetite.zeros_are_disclosive:  # ACRO's threshold catches zeros too
        failed &= np.asarray(counts) > 0
    return failed


def too_few_degrees_of_freedom(dof: int, appetite: RiskAppetite) -> bool:
    """ACRO's minimum degrees-of-freedom check for a model or a spread."""
    evidence = _acro().SDCEvidence(dof=int(dof))
    status, _, _ = appetite.checker.check_model_dof("model", evidence, None)
    return status == "fail"


@dataclass(frozen=True)
class Magnitudes:
    """What the dominance checks need of one group's values: ACRO's evidence."""

    total: float
    largest: float
    top_n: float  # the sum of the n largest contributions
    top_2: float

    @classmethod
    def of(cls, values: np.ndarray, total: float) -> Magnitudes:
        """The bounds' evidence for one group (its values' sizes: no NaNs, no signs)."""
        if values.size == 0:
            return cls(0.0, 0.0, 0.0, 0.0)
        return cls(total, float(values.max()), float("nan"), float("nan"))

    def with_top(self, values: np.ndarray, n: int) -> Magnitudes:
        values = np.abs(values)
        k = min(max(n, 2), values.size)
        top = np.sort(np.partition(values, values.size - k)[values.size - k :])[::-1]
        return Magnitudes(self.total, self.largest, float(top[:n].sum()), float(top[:2].sum()))


def dominated(values: np.ndarray, appetite: RiskAppetite, mean: float | None = None) -> str | None:
    """Which of ACRO's dominance checks (``"NKCheck"``, ``"PPercentCheck"``) one group's
    values fail, or None.

    The n largest sum to at most n times the largest, and the rest to at least the total
    less twice the largest: when those bounds clear both rules, ACRO would pass the cell
    too, and the values need no sorting. ``mean``, the values' mean when the result
    already holds it, spares summing them again.
    """
    values = np.asarray(values, dtype=float)
    low = float(values.min()) if values.size else 0.0
    if np.isnan(low):  # a missing value is no one's contribution
        values, mean = values[~np.isnan(values)], None
        low = float(values.min()) if values.size else 0.0
    if low < 0:  # dominance is over contributions' sizes
        values, mean = np.abs(values), None
    total = float(mean) * values.size if mean is not None else float(values.sum())
    evidence = Magnitudes.of(values, total)
    if evidence.total <= 0:
        return None
    nk_clear = appetite.safe_nk_n * evidence.largest < appetite.safe_nk_k * evidence.total
    p_clear = evidence.total - 2 * evidence.largest >= appetite.safe_pratio_p * evidence.largest
    if nk_clear and p_clear:
        return None
    evidence = evidence.with_top(values, appetite.safe_nk_n)
    cell = functools.partial(pd.DataFrame, index=[0], columns=[0])
    tables = {
        "sum": cell(evidence.total),
        "max": cell(evidence.largest),
        "top_n_sum": cell(evidence.top_n),
        "top_2_sum": cell(evidence.top_2),
        "num_negative": cell(0),
    }
    acro_evidence = _acro().SDCEvidence(interim_tables=tables)
    for check in ("NKCheck", "PPercentCheck"):
        method = appetite.checker.check_to_method[check]
        status, _, _ = method("Mean", acro_evidence, None)
        if status == "fail":
            return check
    return None
