"""Query auditing against trackers: each attack is refused, honest sequences are not.

Each release goes through :meth:`DisclosurePolicy.record` as the executor makes it, over
an in-memory bucket; an attack's test states the total it would have given away.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from flowblock.errors import DisclosureRefused
from flowblock.executor.algorithms.statistics import Count, Histogram, Mean
from flowblock.executor.disclosure import DisclosurePolicy, Protected
from flowblock.executor.disclosure.auditing import Auditor, Releases
from flowblock.executor.disclosure.differencing import CohortHistory, cohort_hashes
from flowblock.testing.study import MemoryStore

AUDITING_ONLY = DisclosurePolicy(differencing=False)
BOTH = DisclosurePolicy()
A = [f"a{i:02d}" for i in range(20)]
B = [f"b{i:02d}" for i in range(20)]
P = ["target"]


def release(store, token_id: str, patients: list[str], policy=BOTH, requester="alice@University"):
    """An exact mean over ``patients`` (an ungrouped result: its cohort is its release)."""
    token = {"token_id": token_id, "dataset": "vitals", "requester": requester}
    protected = Protected({"groups": [{"mean": 1.0}]}, [lambda: [np.array(patients, object)]])
    return policy.record(token, protected, store)


def refused(store, token_id: str, patients: list[str], **kwargs) -> DisclosureRefused:
    with pytest.raises(DisclosureRefused) as caught:
        release(store, token_id, patients, **kwargs)
    return caught.value


def test_a_sum_over_a_and_one_patient_then_a_and_b_then_b_is_refused_at_the_third():
    store = MemoryStore()
    release(store, "t1", A + P)
    release(store, "t2", A + B)
    # sum(A+p) - sum(A+B) + sum(B) = the target's value; each pair is 20 patients apart.
    rule = refused(store, "t3", B)
    assert rule.rule == "auditing" and "epsilon" in str(rule)
    assert "target" not in str(rule)  # a refusal names no patient


def test_three_overlapping_intervals_are_refused_though_each_pair_is_far_apart():
    store, ages = MemoryStore(), [f"age{n}" for n in range(20, 50)]
    release(store, "t1", ages[:16])  # 20…35
    release(store, "t2", ages[15:])  # 35…49
    assert refused(store, "t3", ages).rule == "auditing"  # 20…49: (t1 + t2 - t3) is age 35


def test_two_organisations_pooling_their_results_are_refused():
    store, base = MemoryStore(), [f"p{i}" for i in range(50)]
    release(store, "u1", base, requester="alice@University")
    # Differencing is per organisation; auditing sees every organisation's releases.
    caught = refused(store, "f1", base[1:], requester="bob@Pharma")
    assert caught.rule == "auditing"


def test_add_one_and_remove_one_are_refused_by_auditing_alone_and_named_differencing_first():
    store, base = MemoryStore(), [f"p{i}" for i in range(50)]
    release(store, "t1", base, AUDITING_ONLY)
    release(store, "t2", base, AUDITING_ONLY)  # the same cohort again tells nothing new
    for token, cohort in [("t3", base[1:]), ("t4", [*base, "p99"]), ("t5", base[:45])]:
        assert refused(store, token, cohort, policy=AUDITING_ONLY).rule == "auditing"
        assert refused(store, f"{token}d", cohort).rule == "differencing"
    release(store, "t6", base[:40], AUDITING_ONLY)  # ten apart: a total over ten is allowed


def test_a_pair_of_small_atoms_whose_sum_is_determined_is_refused():
    store, x, y = MemoryStore(), ["x1", "x2", "x3"], ["y1", "y2", "y3"]
    release(store, "t1", A + x)
    release(store, "t2", B + y)
    # (A+x) + (B+y) - (A+B) is the total of six patients, though neither x's nor y's is.
    assert refused(store, "t3", A + B).rule == "auditing"


def vitals(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "patient_id": [f"v{i:03d}" for i in range(n)],
            "age": np.arange(n) // (n // 20) * 5 + 20,  # 20 bands of 20 patients
            "sex": rng.choice(["F", "M"], n),
            "systolic": rng.normal(128, 12, n).round(1),
            "diagnosis": rng.permutation(["rare"] * 3 + ["uncommon"] * 12 + ["common"] * (n - 15)),
        }
    )


def run(store, token_id: str, algorithm, params: dict, rows: pd.DataFrame) -> dict:
    token = {"token_id": token_id, "dataset": "vitals", "requester": "alice@University",
             "data_org": "Hospital", "params": params, "epsilon": 0}  # fmt: skip
    patients = [f"{p}@Hospital" for p in rows["patient_id"]]
    protected = BOTH.protect(token, algorithm, algorithm().run(rows, params), rows, patients)
    return BOTH.record(token, protected, store)


def test_counts_by_sex_then_by_diagnosis_then_means_of_twenty_age_bands_are_all_released():
    store, rows = MemoryStore(), vitals()
    run(store, "sex", Count, {"group_by": ["sex"]}, rows)
    by_diagnosis = run(store, "diagnosis", Count, {"group_by": ["diagnosis"]}, rows)
    assert {g["diagnosis"] for g in by_diagnosis["groups"] if g["count"] is None} == {
        "rare", "uncommon"
    }  # fmt: skip
    for band in sorted(rows["age"].unique()):
        mean = run(store, f"band{band}", Mean, {"column": "systolic"}, rows[rows["age"] == band])
        assert mean["groups"][0]["mean"] is not None
    run(store, "again", Count, {"group_by": ["sex"]}, rows)  # asked twice: nothing new
    run(store, "whole", Count, {}, rows)  # rounded counts are no exact (linear) release
    # Exact statistics are: the whole cohort's mean (the bands' too) less the common
    # patients' gives the 15 others' total; then a mean of the 12 "uncommon" would give
    # the 3 rare patients' total.
    run(store, "common", Mean, {"column": "systolic"}, rows[rows["diagnosis"] == "common"])
    uncommon = rows[rows["diagnosis"] == "uncommon"]
    with pytest.raises(DisclosureRefused) as caught:
        run(store, "uncommon", Mean, {"column": "systolic"}, uncommon)
    assert caught.value.rule == "auditing"


def test_rounded_counts_are_no_linear_release_for_auditing():
    """A mean of everyone and a histogram of the same patients: the bins' counts are
    rounded, so they give no total of the few patients outside the released bins."""
    store, rows = MemoryStore(), vitals(30)
    run(store, "mean", Mean, {"column": "systolic"}, rows)
    bins = run(store, "bins", Histogram, {"column": "systolic", "bins": 3}, rows)
    assert any(c is not None for c in bins["groups"][0]["counts"])


def test_a_refused_release_is_withdrawn_and_the_history_survives_a_restart():
    store = MemoryStore()
    release(store, "t1", A + P)
    release(store, "t2", A + B)
    assert refused(store, "t3", B).rule == "auditing"
    assert store.objects["private/disclosure/cohorts/vitals/University/t3.npz"] == b""
    restarted = MemoryStore()  # a new executor over the same bucket: nothing in memory
    restarted.objects = dict(store.objects)
    assert refused(restarted, "t4", B).rule == "auditing"
    # t3 was never released: a release that is safe without it stays allowed.
    release(restarted, "t5", A + B + [f"c{i}" for i in range(20)])


def test_a_record_being_checked_at_the_same_time_is_seen_and_checked_itself():
    store = MemoryStore()
    release(store, "t1", A + P)
    history = CohortHistory(store, "vitals", "University")
    second, third = [cohort_hashes(A + B)], [cohort_hashes(B)]
    k2, k3 = history.remember("t2", second), history.remember("t3", third)
    auditor = Auditor(store, "vitals")
    with pytest.raises(DisclosureRefused):  # sees t3, written but not yet checked
        auditor.check(k2, second, 10, 5.0)
    history.withdraw(k2)
    auditor.check(k3, third, 10, 5.0)  # t2 was withdrawn: B with A+p alone is safe


def test_auditing_that_cannot_finish_in_time_refuses_pointing_to_dp():
    store = MemoryStore()
    release(store, "t1", A)
    hasty = DisclosurePolicy(auditing_seconds=0.0)
    caught = refused(store, "t2", A + B, policy=hasty)
    assert caught.rule == "auditing" and "time limit" in str(caught) and "epsilon" in str(caught)
    # It tells nothing of the cohorts, so it is not counted against the organisation.
    assert not [key for key in store.objects if key.startswith("private/disclosure/refusals")]


def test_past_the_refusal_limit_every_exact_result_is_refused_alike():
    store, strict = MemoryStore(), DisclosurePolicy(auditing_max_refusals=2)
    release(store, "t1", A + P, strict)
    release(store, "t2", A + B, strict)
    for n in range(2):
        assert "would determine" in str(refused(store, f"r{n}", B, policy=strict))
    # Now a harmless release (the same cohort again) gets the same answer as an attack.
    for cohort in (A + B, B):
        caught = refused(store, "later", cohort, policy=strict)
        assert caught.rule == "auditing" and "only with differential privacy" in str(caught)
    release(MemoryStore(), "elsewhere", A + B, strict)  # counted per dataset and organisation


def test_totals_are_decided_exactly_over_atoms_not_patients():
    state = Releases(2_147_483_629, minimum=10)
    cohorts = [cohort_hashes(c) for c in (A + B, A, A + P)]
    state.include(cohorts)
    for cohort in cohorts:
        state.split(state.place(cohort))
        state.add(state.vector(state.place(cohort)))
    assert sorted(state.sizes[1:].tolist()) == [1, 20, 20]  # the target, A and B
    target = int(np.flatnonzero(state.sizes == 1)[0])
    assert state.lightest(deadline=float("inf")) == frozenset({target})
    assert not state.add(state.vector(state.place(cohort_hashes(A + B + P))))  # already determined


def test_a_suppressed_count_spread_over_several_atoms_is_found():
    """Women + men - common - uncommon is the three rare patients, each an atom of their
    own (an age band parts the two women): no atom's total, nor a pair's, is determined."""
    a1, a2, b1, b2 = ([f"{g}{i}" for i in range(15)] for g in ("a1", "a2", "b1", "b2"))
    r1, r2, r3 = ["r1"], ["r2"], ["r3"]
    releases = (a1 + a2 + r1 + r2, b1 + b2 + r3, a1 + r1, a1 + b1, a2 + b2)
    state = Releases(2_147_483_629, minimum=10)
    cohorts = [cohort_hashes(c) for c in releases]
    state.include(cohorts)
    found = []
    for cohort in cohorts:
        state.split(state.place(cohort))
        state.add(state.vector(state.place(cohort)))
        found.append(state.lightest(deadline=float("inf")))
    assert found[:4] == [None] * 4
    assert sorted(state.sizes[list(found[4])].tolist()) == [1, 1, 1]


def _determined_small_total(cohorts: list[set[str]], minimum: int) -> bool:
    """By brute force over patients: is there a set of atoms of fewer than ``minimum``
    patients over which some nonzero combination of the releases lives? (It does iff
    leaving those atoms out lowers the releases' rank.)"""
    patients = sorted(set().union(*cohorts))
    classes: dict[tuple, list[str]] = {}
    for p in patients:
        classes.setdefault(tuple(p in c for c in cohorts), []).append(p)
    atoms = list(classes.values())
    matrix = np.array([[float(a[0] in c) for a in atoms] for c in cohorts])
    rank = np.linalg.matrix_rank(matrix)
    small = [j for j, a in enumerate(atoms) if len(a) < minimum]
    for size in range(1, len(small) + 1):
        for cut in itertools.combinations(small, size):
            if sum(len(atoms[j]) for j in cut) >= minimum:
                continue
            rest = [j for j in range(len(atoms)) if j not in cut]
            if (np.linalg.matrix_rank(matrix[:, rest]) if rest else 0) < rank:
                return True
    return False


def test_the_search_agrees_with_brute_force_on_random_releases():
    rng, agreed, found = np.random.default_rng(7), 0, 0
    for _ in range(120):
        n, minimum = int(rng.integers(12, 25)), int(rng.integers(3, 6))
        ids = [f"x{i}" for i in range(n)]
        state, cohorts = Releases(2_147_483_629, minimum), []
        for _ in range(int(rng.integers(1, 7))):
            low, high = sorted(rng.integers(0, n, 2))
            members = ids[low : high + 1] if rng.random() < 0.5 else list(
                np.array(ids)[rng.random(n) < 0.5]
            )  # fmt: skip
            if not members:
                continue
            cohort = cohort_hashes(members)
            state.include([cohort])
            state.split(state.place(cohort))
            state.add(state.vector(state.place(cohort)))
            cohorts.append(set(members))
            truth = _determined_small_total(cohorts, minimum)
            assert (state.lightest(float("inf")) is not None) == truth
            agreed, found = agreed + 1, found + truth
    assert agreed > 300 and found > 60  # both answers were put to the test
