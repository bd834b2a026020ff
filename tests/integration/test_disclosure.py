"""Disclosure control played by an attacker, and by a researcher who wants useful answers.

Every attack goes through the public API a researcher has (``flowblock.Client`` against
the devnet, the real chaincode, the S3 server and the Hospital's executor) and would
succeed without the rule it names. The utility tests show the rules still leave
answers close to the truth, within the error the policy documents (counts within half
the rounding base; means exact) and, under differential privacy, within OpenDP's
accuracy bound.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from flowblock.client import ComputationFailed
from flowblock.errors import BudgetExhausted, DisclosureRefused
from flowblock.executor.disclosure import DisclosurePolicy
from flowblock.ledger import GatewayPool
from flowblock.stack.demo import synthetic_vitals
from flowblock.testing.study import Study, ages_apart, publish_and_allow

METHODS = ["count", "mean", "histogram", "quantiles", "crosstab", "max-heart-rate"]
POLICY = DisclosurePolicy()


@pytest.fixture(scope="module")
def pool(flowblock_devnet, demo_world):
    with GatewayPool(flowblock_devnet.address) as pool:
        rules = {"auto_approve": {"methods": METHODS, "purposes": ["research"],
                                  "organisations": ["University"], "max_epsilon": 0.5}}  # fmt: skip
        publish_and_allow(pool, demo_world, rules)
        yield pool


def patients(n: int, seed: int = 0) -> pd.DataFrame:
    """A small vitals table: ages 20… one apart, so filters on age move one patient."""
    return ages_apart(n, seed, (("rare", 3), ("uncommon", 12)))


@pytest.fixture(scope="module")
def study(pool, s3_server, demo_world) -> Study:
    """60 patients, 50 of whom consent; attacks share it, as a real attacker would."""
    return Study(pool, s3_server, demo_world, patients(60), consenting=50, prefix="sdc")


def refused(job) -> DisclosureRefused:
    with pytest.raises(DisclosureRefused) as caught:
        job.wait(timeout=60)
    return caught.value


# -- the attacker ------------------------------------------------------------------------


def test_a_cohort_below_the_minimum_is_refused(study):
    rule = refused(study.ask("mean", {"column": "systolic", "where": [["age", "<", 25]]})).rule
    assert rule == "min_cohort"


def test_a_histogram_bin_of_one_is_suppressed(pool, s3_server, demo_world):
    frame = patients(40, seed=1)
    frame.loc[0, "systolic"] = 260.0  # one patient alone at the top
    own = Study(pool, s3_server, demo_world, frame, consenting=40, prefix="sdc")
    result = own.ask("histogram", {"column": "systolic", "bins": 8}).wait(timeout=60)
    counts = result.value["groups"][0]["counts"]
    true, _ = np.histogram(own.cohort["systolic"], bins=result.value["edges"])
    assert true[-1] == 1 and counts[-1] is None
    assert all(c is None or c == 0 or c >= 10 for c in counts)
    assert result.provenance["result"]["policy_hash"] == POLICY.hash


def test_a_suppressed_cell_cannot_be_recovered_from_the_totals(study):
    by_diagnosis = study.ask("count", {"group_by": ["diagnosis"]}).wait(timeout=60)
    released = {g["diagnosis"]: g["count"] for g in by_diagnosis.value["groups"]}
    assert released["rare"] is None  # 3 patients
    # The attacker knows the cohort's size from the ledger and subtracts what was shown:
    # what is left is shared by at least two hidden cells and is too big to be the rare one.
    hidden = [name for name, count in released.items() if count is None]
    left = by_diagnosis.cohort_size - sum(c for c in released.values() if c is not None)
    assert len(hidden) >= 2
    true = study.cohort["diagnosis"].value_counts()
    assert sum(true[name] for name in hidden) >= 10 and left > true["rare"] + 2


def test_the_maximum_of_a_small_group_is_withheld(study):
    by_diagnosis = study.ask("max-heart-rate", {"group_by": ["diagnosis"]})
    maxima = {g["diagnosis"]: g["max"] for g in by_diagnosis.wait(timeout=60).value["groups"]}
    cohort = study.cohort
    assert maxima["common"] == cohort[cohort["diagnosis"] == "common"]["heart_rate"].max()
    assert maxima["uncommon"] is None  # 12 patients: over the minimum cohort, not for a maximum
    ends = study.ask("quantiles", {"column": "systolic", "q": [0.0, 1.0],
                                   "where": [["age", "<", 35]]})  # fmt: skip
    assert refused(ends).rule == "extremes"


def test_two_means_whose_cohorts_differ_by_one_patient(pool, s3_server, demo_world):
    own = Study(pool, s3_server, demo_world, patients(60, seed=2), consenting=60, prefix="sdc")
    first = own.ask("mean", {"column": "systolic", "where": [["age", ">=", 40]]})
    assert first.wait(timeout=60).cohort_size == 40
    add_one = own.ask("mean", {"column": "systolic", "where": [["age", ">=", 39]]})
    assert refused(add_one).rule == "differencing"
    remove_one = own.ask("mean", {"column": "systolic", "where": [["age", ">", 40]]})
    assert refused(remove_one).rule == "differencing"
    # Grouping does not help: the women over 40 are a group of an earlier result now,
    # so the women over 40 but one are as close to it as the mean was.
    own.ask("mean", {"column": "systolic", "where": [["age", ">=", 40]], "group_by": ["sex"]})
    women = own.ask("mean", {"column": "systolic",
                             "where": [["age", ">=", 42], ["sex", "==", "F"]]})  # fmt: skip
    assert refused(women).rule == "differencing"
    # The same cohort again tells nothing new, and one ten patients away is allowed.
    assert own.ask("count", {"where": [["age", ">=", 40]]}).wait(timeout=60).cohort_size == 40
    assert own.ask("count", {"where": [["age", ">=", 50]]}).wait(timeout=60).cohort_size == 30


def test_splitting_one_query_into_many_small_ones(pool, s3_server, demo_world):
    own = Study(pool, s3_server, demo_world, patients(60, seed=3), consenting=60, prefix="sdc")
    # Ask for the patients of each age band of five: each band is below the minimum.
    bands = [own.ask("count", {"where": [["age", ">=", a], ["age", "<", a + 5]]})
             for a in (20, 25, 30)]  # fmt: skip
    assert {refused(job).rule for job in bands} == {"min_cohort"}
    # Sweep a threshold one year at a time, hoping to difference neighbouring answers.
    released, reasons = [], set()
    for age in range(30, 45):
        job = own.ask("count", {"where": [["age", "<", age]]}).refresh()
        if job.status == "DONE":
            released.append(age)
        else:
            reasons.add((job.token["failure"]["kind"], job.token["failure"]["rule"]))
    assert reasons == {("disclosure_refused", "differencing")}
    # Any two answers given are at least ten patients apart: no one is isolated.
    assert released and all(b - a >= 10 for a, b in itertools.pairwise(released))
    assert len(released) < 15


def test_exhausting_epsilon_and_asking_again(pool, s3_server, demo_world):
    own = Study(pool, s3_server, demo_world, patients(30, seed=4), consenting=30, prefix="sdc")
    researcher = "alice@University"
    own.admin.submit("budget:Grant", own.dataset, researcher, 1.0)
    for _ in range(2):
        answer = own.ask("count", {}, epsilon=0.5).wait(timeout=60)
        assert "dp" in answer.value and answer.cohort_size is None  # no size under DP
    assert own.alice.budget(own.dataset)["left"] == 0
    # Asking again is refused at once, not left waiting; a grant lets the next one through.
    with pytest.raises(BudgetExhausted, match=r"less than the ε=0\.5 asked"):
        own.ask("count", {}, epsilon=0.5)
    own.admin.submit("budget:Grant", own.dataset, researcher, 0.5)
    assert "dp" in own.ask("count", {}, epsilon=0.5).wait(timeout=60).value
    # Two tokens approved while the budget covered each, then one spends it: the other
    # is refused when the executor claims it, before a byte of data is read.
    own.admin.submit("budget:Grant", own.dataset, researcher, 0.5)
    racing = [own.alice.compute("count", own.dataset, {}, "research", epsilon=0.5)
              for _ in range(2)]  # fmt: skip
    assert [job.status for job in racing] == ["APPROVED", "APPROVED"]
    outcomes = [own.executor.process(job.token_id) for job in racing]
    assert outcomes == ["DONE", "FAILED"]
    with pytest.raises(BudgetExhausted, match="left on"):
        racing[1].wait(timeout=60)
    assert not own.store.list(f"outputs/{racing[1].token_id}/")
    budget = own.alice.budget(own.dataset)
    assert (budget["spent"], budget["left"]) == (2.0, 0)


# -- the researcher ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(pool, s3_server, demo_world) -> Study:
    """The demo's vitals: 300 synthetic patients, 70% of whom consent."""
    frame = synthetic_vitals()
    return Study(pool, s3_server, demo_world, frame, consenting=210, prefix="sdcdemo")


def test_counts_and_means_stay_within_the_documented_error(demo):
    truth = demo.cohort
    counts = demo.ask("count", {"group_by": ["diagnosis"]}).wait(timeout=60).value["groups"]
    shown = 0
    for group in counts:
        exact = int((truth["diagnosis"] == group["diagnosis"]).sum())
        if group["count"] is None:
            assert exact < 10 or any(g["count"] is None and g is not group for g in counts)
        else:
            shown += 1
            assert abs(group["count"] - exact) <= POLICY.rounding // 2
    assert shown >= 3
    means = demo.ask("mean", {"column": "systolic", "group_by": ["smoker"]}).wait(timeout=60)
    for group in means.value["groups"]:
        exact = truth[truth["smoker"] == group["smoker"]]["systolic"].mean()
        assert group["mean"] == pytest.approx(exact)


def test_dp_results_are_within_opendp_accuracy_at_the_stated_confidence(demo):
    import opendp.prelude as dp

    demo.admin.submit("budget:Grant", demo.dataset, "alice@University", 2.0)
    truth = demo.cohort
    answer = demo.ask("count", {}, epsilon=0.5).wait(timeout=60).value
    note = answer["dp"]
    assert note["confidence"] == 0.95
    # At one in a million the bound must hold; at 95% it holds nineteen times in twenty.
    bound = dp.discrete_laplacian_scale_to_accuracy(note["count"]["scale"], 1e-6)
    assert abs(answer["groups"][0]["count"] - len(truth)) <= bound
    assert note["count"]["accuracy"] < bound
    params = {"column": "systolic", "bins": 6, "bounds": [80, 200]}
    histogram = demo.ask("histogram", params, epsilon=0.5).wait(timeout=60).value
    true_counts, _ = np.histogram(truth["systolic"].clip(80, 200), bins=histogram["edges"])
    bound = dp.discrete_laplacian_scale_to_accuracy(histogram["dp"]["counts"]["scale"], 1e-6)
    assert np.all(np.abs(np.array(histogram["groups"][0]["counts"]) - true_counts) <= bound)
    # Grouped by a boolean: both groups answered, each with the whole ε (parallel composition).
    by_smoker = demo.ask("count", {"group_by": ["smoker"]}, epsilon=0.5).wait(timeout=60).value
    assert [g["smoker"] for g in by_smoker["groups"]] == [False, True]
    bound = dp.discrete_laplacian_scale_to_accuracy(by_smoker["dp"]["count"]["scale"], 1e-6)
    for group in by_smoker["groups"]:
        exact = int((truth["smoker"] == group["smoker"]).sum())
        assert abs(group["count"] - exact) <= bound
    assert demo.alice.budget(demo.dataset)["spent"] == pytest.approx(1.5)
    with pytest.raises(ComputationFailed, match="bounds"):
        demo.ask("mean", {"column": "systolic"}, epsilon=0.5).wait(timeout=60)


def test_six_concurrent_dp_requests_within_budget_all_complete(pool, s3_server, demo_world):
    """Each result charges the one budget key: the ones that lose the race at commit are
    endorsed again, never failed with the ledger's conflict."""
    from concurrent.futures import ThreadPoolExecutor

    own = Study(pool, s3_server, demo_world, patients(30, seed=6), consenting=30, prefix="sdc")
    own.admin.submit("budget:Grant", own.dataset, "alice@University", 0.6)
    jobs = [own.alice.compute("count", own.dataset, {}, "research", epsilon=0.1)
            for _ in range(6)]  # fmt: skip
    assert {job.status for job in jobs} == {"APPROVED"}
    with ThreadPoolExecutor(6) as threads:
        outcomes = list(threads.map(own.executor.process, [job.token_id for job in jobs]))
    assert outcomes == ["DONE"] * 6
    budget = own.alice.budget(own.dataset)
    assert budget["spent"] == pytest.approx(0.6) and budget["left"] == pytest.approx(0)


def test_three_overlapping_exact_means_the_third_is_refused(pool, s3_server, demo_world):
    """A tracker: the means over ages 20 to 35, 35 to 49 and 20 to 49. Every two cohorts are at
    least 14 patients apart, so differencing lets each through; together the three give
    the value of the one patient aged 35, and auditing refuses the third."""
    own = Study(pool, s3_server, demo_world, patients(60, seed=5), consenting=60, prefix="sdc")

    def between(low: int, high: int) -> dict:
        return {"column": "systolic", "where": [["age", ">=", low], ["age", "<", high]]}

    first = own.ask("mean", between(20, 36)).wait(timeout=60).value["groups"][0]["mean"]
    second = own.ask("mean", between(35, 50)).wait(timeout=60).value["groups"][0]["mean"]
    third = refused(own.ask("mean", between(20, 50)))
    assert third.rule == "auditing" and "epsilon" in str(third)
    # What the refusal kept back: with the third mean, the patient's own value.
    truth = own.cohort.set_index("age")["systolic"]
    target = first * 16 + second * 15 - truth.loc[20:49].mean() * 30
    assert target == pytest.approx(truth.loc[35])
