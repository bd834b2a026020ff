"""Differential privacy: asked for where it is required, and judged by its noise.

The data organisation can answer a dataset or a disclosure class only with DP, on the
ledger (``dp_only`` in its rules) and on the data side (its policy): an attacker who
simply asks in exact mode is refused by both, each alone. A DP answer over one patient
is released, so it is judged by its noise: how much more likely it is under one value
of the target than under another (at most e^ε, over every answer the budget allows).
"""

from __future__ import annotations

import pytest

from flowblock.executor.disclosure import DisclosurePolicy
from flowblock.testing.attacks import REFUSED_AT_REQUEST, cohort_of, patients_table


def privacy_loss(note: dict, bounds: tuple[float, float] | None = None) -> float:
    """What one DP answer can tell of one patient (ε spent), from its stated noise scales:
    a count's sensitivity is 1, a clamped sum's the larger bound's size."""
    loss = 0.0
    if "count" in note:
        loss += 1 / note["count"]["scale"]
    if "sum" in note:
        loss += max(abs(b) for b in bounds) / note["sum"]["scale"]
    return loss


@pytest.fixture
def restore_rules(hospital):
    yield
    hospital.set_rules()


def test_an_exact_request_on_a_dataset_the_rules_make_dp_only(hospital, restore_rules):
    """The ledger's rules answer the dataset only with DP; the attacker asks exactly."""
    frame = patients_table(60, seed=50)
    data = hospital.dataset(frame)
    hospital.set_rules(dp_only={"datasets": [data]})
    exact = hospital.ask(data, "mean", {"column": "systolic", "where": [["enrolled", "==", 4]]})
    assert exact.status == REFUSED_AT_REQUEST and "differential privacy" in exact.message
    hospital.grant_budget(data, "alice", 1.0)
    private = hospital.ask(data, "count", {}, epsilon=0.5)
    assert private.released and "dp" in private.value and private.cohort_size is None


def test_an_exact_request_for_a_class_the_rules_make_dp_only(hospital, restore_rules):
    """Histograms are answered only with DP: an exact histogram is refused at request."""
    frame = patients_table(60, seed=51)
    data = hospital.dataset(frame)
    hospital.set_rules(dp_only={"classes": ["histogram"]})
    exact = hospital.ask(data, "histogram", {"column": "systolic", "bins": 50})
    assert exact.status == REFUSED_AT_REQUEST and not exact.released
    assert hospital.ask(data, "count", {}).released  # other classes stay exact


def test_an_exact_request_the_data_side_alone_makes_dp_only(hospital):
    """An exact mean on a dataset only the executor's policy (not the ledger) makes DP-only."""
    frame = patients_table(60, seed=52)
    data = hospital.dataset(frame)
    strict = hospital.new_executor(DisclosurePolicy(dp_only_datasets=[data]))
    exact = hospital.ask(data, "mean", {"column": "systolic", "where": [["enrolled", "==", 4]]},
                         executor=strict)  # fmt: skip
    assert exact.rule == "differential_privacy" and exact.value is None
    assert not hospital.store.list(f"outputs/{exact.token_id}/")  # nothing was computed


def test_an_exact_request_for_a_class_the_data_side_makes_dp_only(hospital):
    """Exact statistics when the executor's policy makes their class DP-only."""
    frame = patients_table(60, seed=53)
    data = hospital.dataset(frame)
    strict = hospital.new_executor(DisclosurePolicy(dp_only_classes=["statistics"]))
    for method, params in (("mean", {"column": "systolic"}), ("max-heart-rate", {}),
                           ("quantiles", {"column": "systolic", "q": [0.5]})):  # fmt: skip
        asked = hospital.ask(data, method, params, executor=strict)
        assert asked.rule == "differential_privacy", (method, asked.failure)
    assert hospital.ask(data, "count", {}, executor=strict).released


def test_a_dp_count_over_one_patient_at_small_epsilon(hospital):
    """The target's HIV status as a DP count (ε = 0.1) over a filter holding them alone."""
    frame = patients_table(60, seed=54)
    data = hospital.dataset(frame)
    hospital.grant_budget(data, "alice", 0.1)
    asked = hospital.ask(data, "count", {"where": [["enrolled", "==", 4], ["hiv", "==", True]]},
                         epsilon=0.1)  # fmt: skip
    assert asked.released and asked.cohort_size is None  # no exact size beside it
    assert privacy_loss(asked.value["dp"]) <= 0.1 + 1e-9


def test_repeating_a_dp_count_to_average_the_noise_away(hospital):
    """The same one-patient DP count again and again, to average its noise away."""
    frame = patients_table(60, seed=55)
    data = hospital.dataset(frame)
    hospital.grant_budget(data, "alice", 0.3)
    where = {"where": [["enrolled", "==", 4], ["hiv", "==", True]]}
    answers = [hospital.ask(data, "count", where, epsilon=0.1) for _ in range(3)]
    assert all(a.released for a in answers)
    more = hospital.ask(data, "count", where, epsilon=0.1)
    assert more.status == REFUSED_AT_REQUEST and more.failure["kind"] == "BudgetExhausted"
    assert sum(privacy_loss(a.value["dp"]) for a in answers) <= 0.3 + 1e-9


def test_a_dp_mean_of_one_patient(hospital):
    """The DP mean of a one-patient cohort, with bounds wide enough for any pressure."""
    frame = patients_table(60, seed=56)
    data = hospital.dataset(frame)
    hospital.grant_budget(data, "alice", 0.5)
    params = {"column": "systolic", "bounds": [0, 300], "where": [["enrolled", "==", 4]]}
    asked = hospital.ask(data, "mean", params, epsilon=0.5)
    assert asked.released
    assert privacy_loss(asked.value["dp"], (0, 300)) <= 0.5 + 1e-9


def test_a_dp_request_for_more_than_one_query_may_spend(hospital):
    """ε = 3 in one query, over the policy's limit of 2 (and within the budget)."""
    frame = patients_table(60, seed=57)
    data = hospital.dataset(frame)
    hospital.grant_budget(data, "alice", 5.0)
    asked = hospital.ask(data, "count", {"where": [["enrolled", "==", 4]]}, epsilon=3.0)
    assert asked.rule == "differential_privacy" and not asked.released
    assert hospital.researchers["alice"].budget(data)["spent"] == 0


def test_an_epsilon_on_a_method_without_a_dp_mode(hospital):
    """A crosstab with an ε: it has no DP mode, and must not be answered exactly instead."""
    frame = patients_table(60, seed=58)
    data = hospital.dataset(frame)
    hospital.grant_budget(data, "alice", 1.0)
    asked = hospital.ask(data, "crosstab", {"rows": "sex", "columns": "diagnosis"}, epsilon=0.5)
    assert asked.rule == "differential_privacy" and asked.value is None
    assert len(cohort_of(frame)) > 10  # a crosstab exact would have been released
