"""The disclosure classes: what kind of output an algorithm releases, which names its rules.

Every algorithm declares one as ``disclosure_class``, and the data organisation's
:class:`~flowblock.executor.disclosure.DisclosurePolicy` applies that class's rules and
no others (:mod:`~flowblock.executor.disclosure.release`). So a hospital that installs a
new algorithm protects its results without touching the policy: it declares what its
output is, and what the rules need to know of it (the columns keying its groups, the
columns it summarises, ACRO's name for its analysis; see
:class:`~flowblock.executor.algorithms.Algorithm`). A class the policy does not know is
refused, and so is a result whose form is not its class's: the class says what the
result may hold, and nothing else leaves.

The set is closed: its names are the core's ``flowblock.vocabulary.DISCLOSURE_CLASSES``,
the only ones the ledger's catalogue accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowblock.vocabulary import DISCLOSURE_CLASSES


@dataclass(frozen=True)
class DisclosureClass:
    """One kind of output: its rules in words, and the form its results take."""

    name: str
    #: What the policy applies to a result of this class.
    rules: str
    #: ACRO's analysis (its ontology's name) a result of this class is, unless the
    #: algorithm names its own as ``sdc_analysis``; None: every statistic's checks at once.
    analysis: str | None
    #: The top-level fields a result may hold (None: any, as a model's own metrics).
    fields: frozenset[str] | None = None
    #: The fields it must hold.
    required: frozenset[str] = frozenset()
    #: False: kept data-side for later steps of a flow and never released.
    released: bool = True

    def holds(self, result: Any) -> bool:
        """Whether a result has this class's form (its fields, not yet their values)."""
        if not self.released:
            return True
        if not isinstance(result, dict) or not self.required <= result.keys():
            return False
        return self.fields is None or result.keys() <= self.fields


COUNT_TABLE = DisclosureClass(
    "count_table",
    "Counts of records per group, ``{'groups': [{<key>: …, 'count': n}]}``, keyed by the "
    "columns the algorithm's parameters name (``group_columns``), else by the groups' "
    "fields that are not numbers. Cells under the threshold, or of too few patients, are "
    "suppressed, then as many more as it takes that none can be worked out from the rest "
    "and the totals; the rest are rounded.",
    "FrequencyTable",
    frozenset({"groups"}),
    frozenset({"groups"}),
)
HISTOGRAM = DisclosureClass(
    "histogram",
    "Counts of a column's values in bins, per group: ``{'column', 'edges', 'groups': "
    "[{<key>: …, 'counts': [...]}]}``. Released only over enough records (its outer edges "
    "are a minimum and a maximum); then its bins are a count table, a bin of too few "
    "patients suppressed like a small one.",
    "Histogram",
    frozenset({"column", "edges", "groups"}),
    frozenset({"groups"}),
)
CROSSTAB = DisclosureClass(
    "crosstab",
    "Counts for each pair of values of two columns: ``{'rows', 'columns', 'counts'}``, a "
    "two-dimensional count table (suppression, then rounding).",
    "Crosstabs",
    frozenset({"rows", "columns", "counts"}),
    frozenset({"rows", "columns", "counts"}),
)
STATISTICS = DisclosureClass(
    "statistics",
    "Statistics of numeric columns per group (means, sums, spreads, quantiles, maxima…) "
    "beside each group's ``count``. A group's statistics are withheld if it holds fewer "
    "than the minimum cohort, and, where ACRO's ontology asks it of the algorithm's "
    "analysis (every check where it names none), if its values fail the N-K or p-percent "
    "dominance rule, if a spread has too few degrees of freedom, or if an extreme (a "
    "minimum, a maximum, an outer quantile) is over too few records. Refused if every "
    "group is withheld; the counts are a count table.",
    None,
    frozenset({"column", "groups"}),
    frozenset({"groups"}),
)
MODEL = DisclosureClass(
    "model",
    "A fitted model's summary (coefficients, metrics): refused below the minimum residual "
    "``degrees_of_freedom``; a classifier's ``confusion_matrix`` (actual by predicted) is "
    "a count table.",
    "LinearRegressionCoefficients",
)
CHART = DisclosureClass(
    "chart",
    "A chart's data and kind, ``{'chart', 'column', 'groups'}``: a count table keyed by "
    "the column the algorithm's parameters name.",
    "PieChart",
    frozenset({"chart", "column", "groups"}),
    frozenset({"groups"}),
)
LABELS = DisclosureClass(
    "labels",
    "Per-record outputs (each image's predicted label) for later steps of a flow: kept "
    "data-side, never released; the researcher learns only that they were kept.",
    None,
    released=False,
)

_ALL = (COUNT_TABLE, HISTOGRAM, CROSSTAB, STATISTICS, MODEL, CHART, LABELS)
#: Every disclosure class, by name.
CLASSES: dict[str, DisclosureClass] = {kind.name: kind for kind in _ALL}
if tuple(CLASSES) != DISCLOSURE_CLASSES:  # one set, named in the core
    raise ImportError("the disclosure classes differ from flowblock.vocabulary's")
