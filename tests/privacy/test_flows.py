"""Flows: labels derived data-side, counted and charted by later steps.

A labelling step (here :class:`~flowblock.testing.attacks.RiskLabeller`, labelling each
record by its HIV status as ``pneumonia-classify`` labels X-rays) keeps its per-record
labels data-side; ``xray-case-count`` counts them. The attacker repeats inputs to weigh
patients more, labels cohorts one patient apart, and counts over several labellings
so that rounding no longer hides the last digit.
"""

from __future__ import annotations

from flowblock.testing.attacks import (
    REFUSED_AT_REQUEST,
    RiskLabeller,
    cohort_of,
    determined,
    patient,
    patients_table,
    tracker,
)

BOTH = ("University", "Hospital")
COUNT = "xray-case-count"


def label(hospital, data: str, where: list, who: str = "alice") -> str:
    """Label the cohort of ``where`` data-side; the token, for later steps."""
    asked = hospital.ask(data, RiskLabeller.name, {"column": "hiv", "where": where}, who=who)
    assert asked.released, asked.failure
    assert asked.value == {"kept_data_side": True}  # no label leaves the data side
    return asked.token_id


def positives(outcome) -> int | None:
    """The released count of records labelled positive (None: refused or suppressed)."""
    return outcome.group(prediction="pneumonia")["count"] if outcome.released else None


def in_list(enrolled: list[int]) -> list:
    return [["enrolled", "in", [int(e) for e in enrolled]]]


def test_one_input_token_given_twice(hospital):
    """Count one labelling given twice, doubling its patients' weight (parity)."""
    frame = patients_table(80, seed=30)
    data = hospital.dataset(frame)
    token = label(hospital, data, [["enrolled", "<", 60]])
    twice = hospital.ask(data, COUNT, inputs=[token, token])
    assert twice.status == REFUSED_AT_REQUEST and not twice.released


def test_labellings_of_cohorts_one_patient_apart(hospital):
    """Label a cohort and the same but the target, and count each's labels."""
    frame = patients_table(80, seed=31)
    data = hospital.dataset(frame)
    target = int(cohort_of(frame).query("hiv and enrolled < 60")["enrolled"].iloc[0])
    first = hospital.ask(data, COUNT, inputs=[label(hospital, data, [["enrolled", "<", 60]])])
    but_one = [["enrolled", "<", 60], ["enrolled", "!=", target]]
    second = hospital.ask(data, COUNT, inputs=[label(hospital, data, but_one)])
    shown = positives(first), positives(second)
    inferred = None if None in shown or shown[0] == shown[1] else 1.0
    assert not determined(inferred, float(patient(frame, target).hiv))
    assert second.rule == "differencing"


def test_five_labellings_of_one_cohort_count_exactly(hospital):
    """Five labellings of one cohort counted at once (five times the count: exact), differenced."""
    frame = patients_table(80, seed=32)
    data = hospital.dataset(frame, organisations=BOTH)
    target = int(cohort_of(frame).query("hiv and enrolled < 60")["enrolled"].iloc[0])
    # Each labelling is a token of its own, so none is given twice; counted together every
    # count is five times the true one, which rounding to 5 leaves exact. Differencing
    # compares one organisation's cohorts only, and counts are no exact release to audit.
    everyone = [["enrolled", "<", 60]]
    but_one = [*everyone, ["enrolled", "!=", target]]
    first = hospital.ask(
        data,
        COUNT,
        who="alice",
        inputs=[label(hospital, data, everyone, "alice") for _ in range(5)],
    )
    second = hospital.ask(
        data, COUNT, who="carol", inputs=[label(hospital, data, but_one, "carol") for _ in range(5)]
    )
    shown = positives(first), positives(second)
    inferred = None if None in shown else (shown[0] - shown[1]) / 5
    assert not determined(inferred, float(patient(frame, target).hiv))


def test_a_tracker_over_exact_flow_counts(hospital):
    """A tracker (A+t, B+t, A+B+t) over exact five-fold flow counts."""
    frame = patients_table(120, seed=33)
    data = hospital.dataset(frame)
    cohort = cohort_of(frame)
    target = int(cohort.query("hiv and 40 <= enrolled < 60")["enrolled"].iloc[0])
    a = [e for e in cohort["enrolled"] if e < 40]
    b = [e for e in cohort["enrolled"] if 60 <= e < 100]
    counts = []  # cohorts all far apart: differencing lets each through; counts are not audited
    for enrolled in tracker(a, b, target):
        tokens = [label(hospital, data, in_list(enrolled)) for _ in range(5)]
        counts.append(positives(hospital.ask(data, COUNT, inputs=tokens)))
    inferred = None if None in counts else (counts[0] + counts[1] - counts[2]) / 5
    assert not determined(inferred, float(patient(frame, target).hiv))


def test_labels_are_not_charted_or_listed(hospital):
    """Chart a labelling's predictions, or count another researcher's labelling."""
    frame = patients_table(80, seed=34)
    data = hospital.dataset(frame, organisations=BOTH)
    token = label(hospital, data, [["enrolled", "<", 60]])
    chart = hospital.ask(data, "chart-of-result", {"label": "predicted"}, inputs=[token])
    assert not chart.released
    theirs = hospital.ask(data, COUNT, inputs=[token], who="carol")
    assert theirs.status == REFUSED_AT_REQUEST


def test_a_chart_of_a_count_with_a_suppressed_cell(hospital):
    """Chart an earlier count by diagnosis, hoping to see its suppressed cell."""
    frame = patients_table(80, seed=35)
    data = hospital.dataset(frame)
    counts = hospital.ask(data, "count", {"group_by": ["diagnosis"]})
    chart = hospital.ask(data, "chart-of-result", {"label": "diagnosis"},
                         inputs=[counts.token_id])  # fmt: skip
    assert chart.released
    shown = {g["diagnosis"]: g["count"] for g in chart.value["groups"]}
    assert shown["rare"] is None and shown == {
        g["diagnosis"]: g["count"] for g in counts.value["groups"]
    }
