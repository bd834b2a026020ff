"""The disclosure policy's rules, each on a result whose risk is known, with no servers.

Results come from the real algorithms over small tables; the policy is the one the
executor applies. A rule's test fails if the rule is switched off or weakened.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog
from traitlets.config import Config

from flowblock.errors import DisclosureRefused
from flowblock.executor.algorithms import Algorithm, load_algorithms
from flowblock.executor.algorithms.base import AlgorithmError
from flowblock.executor.algorithms.flowblock_methods import (
    AverageBloodPressure,
    BarChart,
    ChartOfResult,
    MaxHeartRate,
)
from flowblock.executor.algorithms.regression import LinearRegression
from flowblock.executor.algorithms.statistics import (
    Count,
    Crosstab,
    Histogram,
    Mean,
    Quantiles,
    Std,
    Sum,
)
from flowblock.executor.disclosure import DisclosurePolicy, sdc, tables
from flowblock.executor.disclosure.classes import CLASSES
from flowblock.executor.disclosure.differencing import (
    PATIENT_HASH_COLUMN,
    CohortHistory,
    cohort_hashes,
    difference,
    patient_hashes,
)
from flowblock.executor.disclosure.release import Release
from flowblock.executor.settings import ExecutorSettings
from flowblock.testing.flowblock_ledger import LocalDriver, World
from flowblock.testing.study import MemoryStore
from flowblock.vocabulary import DISCLOSURE_CLASSES

POLICY = DisclosurePolicy()
TOKEN = {"token_id": "t1", "data_org": "Hospital", "requester": "alice@University",
         "dataset": "vitals", "params": {}, "epsilon": 0}  # fmt: skip


def table(n: int = 60, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "patient_id": [f"p{i:03d}" for i in range(n)],
            "age": np.arange(n) + 20,
            "sex": (["F", "M"] * n)[:n],
            "systolic": rng.normal(128, 12, n).round(1),
            "heart_rate": rng.normal(72, 9, n).round(),
            "cost": rng.uniform(100, 200, n).round(),
            "diagnosis": (["common"] * n + ["uncommon"] * 10 + ["rare"] * 3)[-n:],
            "smoker": [True] * 3 + [False] * (n - 3),
        }
    )


def protect(algorithm, params: dict, rows: pd.DataFrame, policy=POLICY, epsilon: float = 0):
    token = {**TOKEN, "params": {**params, "epsilon": epsilon}, "epsilon": epsilon}
    result = algorithm().run(rows, token["params"])
    patients = [f"{p}@Hospital" for p in rows["patient_id"].unique()]
    return policy.protect(token, algorithm, result, rows, patients)


def test_a_cohort_below_the_minimum_is_refused_and_the_minimum_is_configurable():
    rows = table(9)
    with pytest.raises(DisclosureRefused) as refused:
        protect(Mean, {"column": "systolic"}, rows)
    assert refused.value.rule == "min_cohort"
    assert "9" not in str(refused.value)  # says that a rule fired, not what the data holds
    lenient = DisclosurePolicy(min_cohort=5)
    released = protect(Mean, {"column": "systolic"}, rows, lenient).value["groups"][0]
    assert released["mean"] == pytest.approx(rows["systolic"].mean())
    assert released["count"] is None  # a count of 9 is still a small cell


def test_small_cells_are_suppressed_and_the_rest_rounded():
    released = protect(Count, {"group_by": ["diagnosis"]}, table()).value["groups"]
    counts = {g["diagnosis"]: g["count"] for g in released}
    assert counts["rare"] is None  # 3 patients
    # With the cohort's size public, one hidden cell would be its difference: a second
    # goes too, and the two together hold at least the threshold.
    assert counts["uncommon"] is None
    assert counts["common"] == 45  # 47, rounded to a multiple of 5


def test_a_histogram_bin_of_one_is_never_released():
    rows = table()
    rows.loc[0, "systolic"] = 400.0  # an outlier alone in the top bin
    released = protect(Histogram, {"column": "systolic", "bins": 10}, rows).value
    counts = released["groups"][0]["counts"]
    assert counts[-1] is None
    assert all(c is None or c >= 10 for c in counts)
    hidden = [i for i, c in enumerate(counts) if c is None]
    assert len(hidden) >= 2


def test_many_close_quantile_levels_do_not_list_the_records_values():
    levels = [round(0.05 * i, 2) for i in range(1, 20)]
    for n in (20, 60):
        rows = table(n)
        released = protect(Quantiles, {"column": "systolic", "q": levels}, rows).value
        shown = sorted(float(q) for q, v in released["groups"][0]["quantiles"].items() if v)
        ranks = [q * n for q in shown]
        assert shown and len(shown) <= n // 10  # one level per ten records at the most
        assert all(b - a >= 10 for a, b in itertools.pairwise(ranks))


def test_empty_and_small_bins_are_withheld_alike_so_narrow_bins_tell_no_values():
    rows = table()
    released = protect(Histogram, {"column": "age", "bins": 100}, rows).value  # ages 1 apart
    counts = released["groups"][0]["counts"]
    truth, _ = np.histogram(rows["age"], bins=100)
    assert 0 in truth and all(c is None for c, t in zip(counts, truth, strict=True) if t < 10)
    assert 0 not in counts  # no bin is shown empty: which bins hold somebody stays unsaid


def test_many_records_of_few_patients_are_still_few_patients():
    # One patient with twenty readings, all in a bin of their own; and a diagnosis that
    # only six patients have, with eighteen records between them.
    alone = pd.concat([table().head(1)] * 20).assign(patient_id="p900", systolic=400.0)
    rare = pd.concat([table(63).tail(3)] * 5)
    rows = pd.concat([table(), alone, rare], ignore_index=True)
    histogram = protect(Histogram, {"column": "systolic", "bins": 10}, rows).value
    assert histogram["groups"][0]["counts"][-1] is None  # 20 records, 1 patient
    counts = protect(Count, {"group_by": ["diagnosis"]}, rows).value["groups"]
    assert {g["diagnosis"]: g["count"] for g in counts}["rare"] is None  # 18 records, 6 patients
    with pytest.raises(DisclosureRefused) as refused:
        protect(Mean, {"column": "systolic"}, pd.concat([table().head(4)] * 5))  # 4 patients
    assert refused.value.rule == "min_cohort"


def _ranges(true: np.ndarray, released: np.ndarray) -> dict[tuple, tuple[float, float]]:
    """What an attacker who knows every row and column total can say of each hidden cell."""
    hidden = [tuple(i) for i in np.argwhere(np.isnan(released))]
    a_eq, b_eq = [], []
    for axis in (0, 1):
        for line in range(true.shape[axis]):
            cells = [c for c in hidden if c[axis] == line]
            if cells:
                a_eq.append([1.0 if c in cells else 0.0 for c in hidden])
                known = np.nansum(np.take(released, line, axis=axis))
                b_eq.append(np.take(true, line, axis=axis).sum() - known)
    found = {}
    for j, cell in enumerate(hidden):
        objective = np.eye(len(hidden))[j]
        low = linprog(objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None)).fun
        high = -linprog(-objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None)).fun
        found[cell] = (low, high)
    return found


def test_a_suppressed_cell_cannot_be_recovered_from_row_and_column_totals():
    rng = np.random.default_rng(7)
    rows = pd.DataFrame(
        {
            "patient_id": [f"p{i}" for i in range(400)],
            "region": rng.choice(["north", "south", "east", "west"], 400, p=[0.4, 0.3, 0.2, 0.1]),
            "grade": rng.choice(["a", "b", "c", "d", "e"], 400, p=[0.3, 0.3, 0.2, 0.15, 0.05]),
        }
    )
    plain = DisclosurePolicy(rounding=1)  # unrounded, so the attacker's sums are exact
    released = protect(Crosstab, {"rows": "region", "columns": "grade"}, rows, plain).value
    true = pd.crosstab(rows["region"], rows["grade"]).to_numpy().astype(float)
    shown = np.array([[np.nan if c is None else c for c in row] for row in released["counts"]])
    primary = (true > 0) & (true < 10)
    assert primary.any() and np.isnan(shown[primary]).all()
    for cell, (low, high) in _ranges(true, shown).items():
        if primary[cell]:  # never pinned: a range at least as wide as the threshold
            assert high - low >= 10, (cell, low, high)


def test_secondary_suppression_holds_in_one_dimension_against_the_grand_total():
    appetite = POLICY.appetite
    mask = tables.suppress(np.array([1, 40, 30, 12]), appetite)
    assert mask.tolist() == [True, False, False, True]  # 1 + 12 ≥ 10: the smallest that does
    assert not tables.suppress(np.array([10, 40]), appetite).any()
    assert tables.round_counts(np.array([12, 13, 10]), 5).tolist() == [10, 15, 10]


def test_a_dominated_mean_is_withheld_by_the_n_k_and_p_percent_rules():
    rows = table(30)
    rows.loc[0, "cost"] = 1_000_000.0  # one patient is nearly the whole total
    with pytest.raises(DisclosureRefused) as refused:
        protect(Mean, {"column": "cost"}, rows)
    assert refused.value.rule == "dominance"
    grouped = protect(Mean, {"column": "cost", "group_by": ["sex"]}, rows).value["groups"]
    by_sex = {g["sex"]: g for g in grouped}
    assert by_sex["F"]["mean"] is None and by_sex["F"]["suppressed"]  # patient 0 is F
    assert by_sex["M"]["mean"] == pytest.approx(rows[rows["sex"] == "M"]["cost"].mean())
    with pytest.raises(DisclosureRefused) as refused:  # a total, likewise
        protect(Sum, {"column": "cost"}, rows)
    assert refused.value.rule == "dominance"
    fair = protect(Sum, {"column": "cost"}, table(30)).value["groups"][0]
    assert fair["sum"] == pytest.approx(table(30)["cost"].sum())
    # Two large values of 20 together hold less than 90%, yet the rest is tiny beside
    # the largest: the second largest could estimate the first (p-percent).
    close = pd.DataFrame({"patient_id": [f"q{i}" for i in range(12)],
                          "cost": [1000.0, 900.0] + [10.0] * 10})  # fmt: skip
    assert sdc.dominated(close["cost"].to_numpy(), POLICY.appetite) == "NKCheck"
    spread = np.array([100.0, 95.0] + [0.5] * 18)
    assert sdc.dominated(spread, DisclosurePolicy(dominance_k=0.99).appetite) == "PPercentCheck"


@pytest.mark.parametrize("seed", range(20))
def test_the_cheap_dominance_bounds_agree_with_acro(seed):
    rng = np.random.default_rng(seed)
    values = rng.pareto(0.6 + seed / 10, 40) * 100
    appetite = POLICY.appetite
    found = sdc.dominated(values, appetite)
    top = np.sort(values)[::-1]
    nk = top[:2].sum() / values.sum() >= appetite.safe_nk_k
    p = (values.sum() - top[:2].sum()) / top[0] < appetite.safe_pratio_p
    assert found == ("NKCheck" if nk else "PPercentCheck" if p else None)


def test_extremes_of_a_small_group_are_withheld():
    rows = table(34)  # 17 F and 17 M: each over the minimum, under 20 records
    maxima = protect(MaxHeartRate, {"group_by": ["sex"]}, pd.concat([rows, table(20, 2)]))
    released = {g["sex"]: g["max"] for g in maxima.value["groups"]}
    assert all(v is not None for v in released.values())  # 27 of each: enough
    with pytest.raises(DisclosureRefused) as refused:
        protect(MaxHeartRate, {"group_by": ["sex"]}, rows)
    assert refused.value.rule == "extremes"
    q = {"column": "systolic", "q": [0.0, 0.5, 1.0]}
    with pytest.raises(DisclosureRefused) as refused:
        protect(Quantiles, q, table(15))
    assert refused.value.rule == "extremes"
    assert None not in protect(Quantiles, q, table(25)).value["groups"][0]["quantiles"].values()
    # Stricter on extremes: the median (12 records each side) stays, the ends go.
    strict = DisclosurePolicy(extremes_min_records=40)
    group = protect(Quantiles, q, table(25), strict).value["groups"][0]
    assert group["quantiles"]["0.5"] == pytest.approx(table(25)["systolic"].median())
    assert (group["quantiles"]["0.0"], group["quantiles"]["1.0"], group["suppressed"]) == (
        None, None, True
    )  # fmt: skip


def test_spreads_and_models_need_degrees_of_freedom():
    with pytest.raises(DisclosureRefused) as refused:
        protect(Std, {"column": "systolic"}, table(10))  # 9 degrees of freedom
    assert refused.value.rule == "degrees_of_freedom"
    assert protect(Std, {"column": "systolic"}, table(11)).value["groups"][0]["std"] > 0
    params = {"outcome": "systolic", "predictors": ["age", "heart_rate", "cost", "sex"]}
    with pytest.raises(DisclosureRefused) as refused:
        protect(LinearRegression, params, table(14))  # 14 - 5 = 9 residual
    assert refused.value.rule == "degrees_of_freedom"
    fitted = protect(LinearRegression, params, table(15)).value
    assert fitted["degrees_of_freedom"] == 10


def test_a_model_withholds_the_coefficients_of_levels_few_patients_hold():
    rows = table(60)  # diagnosis: 47 common, 10 uncommon, 3 rare; smokers: 3
    params = {"outcome": "systolic", "predictors": ["age", "diagnosis", "smoker"]}
    fitted = protect(LinearRegression, params, rows).value
    coefficients = fitted["coefficients"]
    # "common" is the baseline (the intercept's), held by many: shown, like the slope.
    assert coefficients["intercept"]["estimate"] is not None
    assert coefficients["age"]["estimate"] is not None
    assert coefficients["diagnosis_uncommon"]["estimate"] is not None  # 10 patients
    for rare in ("diagnosis_rare", "smoker"):  # 3 patients each: their own outcomes
        assert coefficients[rare]["estimate"] is None and coefficients[rare]["withheld"]
    assert (fitted["n"], fitted["degrees_of_freedom"]) == (60, 55)  # 60 and 56, rounded


# -- the rules an algorithm gets are those of the class it declares ---------------------


class Total(Algorithm):
    """A plugin as a hospital might install one: a statistic under a name of its own.
    Nothing in the policy names it: it declares what its result is, and gets that
    class's rules."""

    name = "test-total"
    disclosure_class = "statistics"

    def run(self, frame: pd.DataFrame, params: dict) -> dict:
        keys, column = params.get("group_by") or [], params["column"]
        parts = frame.groupby(keys, sort=True) if keys else [((), frame)]
        groups = []
        for values, part in parts:
            key = dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True))
            groups.append({**key, "count": len(part), "total": float(part[column].sum())})
        return {"column": column, "groups": groups}


def test_a_new_algorithm_declaring_statistics_gets_their_rules_with_no_change_to_the_policy():
    rows = table(60)  # 47 common, 10 uncommon, 3 rare
    params = {"column": "cost", "group_by": ["diagnosis"]}
    by = {g["diagnosis"]: g for g in protect(Total, params, rows).value["groups"]}
    assert by["rare"]["total"] is None and by["rare"]["suppressed"]  # under the minimum
    assert by["rare"]["count"] is None  # its counts are a count table
    # Naming no ACRO analysis, it gets every statistic's checks: 9 degrees of freedom.
    assert by["uncommon"]["total"] is None
    common = rows[rows["diagnosis"] == "common"]["cost"].sum()
    assert by["common"]["total"] == pytest.approx(common)
    dominated = table(30)
    dominated.loc[0, "cost"] = 1_000_000.0
    with pytest.raises(DisclosureRefused) as refused:
        protect(Total, {"column": "cost"}, dominated)
    assert refused.value.rule == "dominance"

    class NamedTotal(Total):  # naming its analysis, it gets a total's checks and no more
        sdc_analysis = "Sum"

    by = {g["diagnosis"]: g for g in protect(NamedTotal, params, rows).value["groups"]}
    assert by["uncommon"]["total"] == pytest.approx(rows["cost"][47:57].sum())
    with pytest.raises(DisclosureRefused) as refused:
        protect(NamedTotal, {"column": "cost"}, dominated)
    assert refused.value.rule == "dominance"


def test_an_unknown_class_and_a_result_not_of_its_class_are_refused():
    class Scores(Total):
        disclosure_class = "scores"

    class Aggregate(Total):  # the old catch-all, whose rules were guessed from the result
        disclosure_class = "aggregate"

    class Miscounted(Total):  # a total is not a count table, whatever it declares
        disclosure_class = "count_table"

    class Unnamed(Total):  # a statistic whose column the policy cannot find
        def run(self, frame: pd.DataFrame, params: dict) -> dict:
            return {"groups": [{"count": len(frame), "total": float(frame["cost"].sum())}]}

    class Listing(Total):  # values are not a statistic
        def run(self, frame: pd.DataFrame, params: dict) -> dict:
            return {"groups": [{"count": len(frame), "values": frame["cost"].tolist()}]}

    class Labelled(Total):  # nor is a label beside the statistics, unless it keys the groups
        def run(self, frame: pd.DataFrame, params: dict) -> dict:
            return {"groups": [{**group, "who": "p001"} for group in super().run(
                frame, params)["groups"]]}  # fmt: skip

    for algorithm, params in [
        (Scores, {"column": "cost"}),
        (Aggregate, {"column": "cost"}),
        (Miscounted, {"column": "cost"}),
        (Unnamed, {}),
        (Listing, {"column": "cost"}),
        (Labelled, {"column": "cost"}),
    ]:
        with pytest.raises(DisclosureRefused) as refused:
            protect(algorithm, params, table(60))
        assert refused.value.rule == "unchecked_output", algorithm.__name__
    with pytest.raises(DisclosureRefused, match="count_table"):  # extra fields of counts
        POLICY.protect(TOKEN, Count, {"groups": [{"count": 50, "mean": 1.5}]}, None, ["x"] * 50)


def test_what_a_method_summarises_or_groups_by_is_declared_by_the_method():
    # Average blood pressure names no column in its parameters: it declares the two it
    # summarises, and a dominant reading in either withholds the means.
    rows = table(30).assign(diastolic=80.0)
    rows.loc[0, "systolic"] = 1_000_000.0
    assert AverageBloodPressure.summarised_columns({}) == ["systolic", "diastolic"]
    with pytest.raises(DisclosureRefused) as refused:
        protect(AverageBloodPressure, {}, rows)
    assert refused.value.rule == "dominance"
    # A chart is keyed by the column it counts, whatever else its parameters say.
    bars = protect(BarChart, {"column": "diagnosis", "group_by": ["sex"]}, table(60)).value
    counts = {g["diagnosis"]: g["count"] for g in bars["groups"]}
    assert counts == {"common": 45, "uncommon": None, "rare": None}
    # A chart of an earlier result keeps what that result withheld.
    chart = ChartOfResult()
    chart.inputs = [{"groups": [{"diagnosis": d, "count": c} for d, c in counts.items()]}]
    params = {"label": "diagnosis"}
    token = {**TOKEN, "params": params}
    drawn = POLICY.protect(token, ChartOfResult, chart.run(pd.DataFrame(), params), None,
                           [f"{p}@Hospital" for p in table(60)["patient_id"]])  # fmt: skip
    assert {g["diagnosis"]: g["count"] for g in drawn.value["groups"]} == counts


def test_the_disclosure_classes_are_one_closed_set_everywhere():
    assert set(Release(POLICY, TOKEN, Count, None, []).rules()) == set(CLASSES)
    assert set(DISCLOSURE_CLASSES) == set(CLASSES)  # what the catalogue accepts
    for algorithm in load_algorithms().values():
        assert algorithm.disclosure_class in CLASSES, algorithm.name


def test_the_policy_hash_names_its_settings_and_organisations_set_them_in_config():
    config = Config()
    config.DisclosurePolicy.min_cohort = 25
    config.DisclosurePolicy.rounding = 10
    policy = ExecutorSettings(config=config).policy
    assert (policy.min_cohort, policy.rounding) == (25, 10)
    assert policy.hash != POLICY.hash
    assert DisclosurePolicy().hash == POLICY.hash  # the same rules, the same hash
    assert json.loads(json.dumps(policy.settings()))["min_cohort"] == 25
    assert "min_cohort" in DisclosurePolicy.class_get_help()


def test_differencing_refuses_add_one_remove_one_and_small_filters():
    store = MemoryStore()
    history = CohortHistory(store, "vitals", "University")
    base = [f"p{i}@Hospital" for i in range(50)]
    history.check_and_remember("t1", [cohort_hashes(base)], 10)
    history.check_and_remember("t2", [cohort_hashes(base)], 10)  # the same cohort: nothing new
    for token, cohort in [("t3", base[1:]), ("t4", [*base, "p99@Hospital"]), ("t5", base[:45])]:
        with pytest.raises(DisclosureRefused) as refused:
            history.check_and_remember(token, [cohort_hashes(cohort)], 10)
        assert refused.value.rule == "differencing"
        # It names the earlier token it is too close to, and the way that remains open.
        assert "token t1…" in str(refused.value) or "token t2…" in str(refused.value)
        assert "epsilon" in str(refused.value)
    # Ten fewer is allowed; and five from the refused base[:45] does not count, since a
    # refused cohort was never released.
    history.check_and_remember("t6", [cohort_hashes(base[:40])], 10)
    # Across the organisation, and separately per organisation.
    other = CohortHistory(store, "vitals", "Pharma")
    other.check_and_remember("t8", [cohort_hashes(base[1:])], 10)
    assert difference(cohort_hashes(base), cohort_hashes(base[5:])) == 5


def test_differencing_covers_released_groups_not_only_the_whole_cohort():
    store, rows = MemoryStore(), table(60)
    token = {**TOKEN, "token_id": "g1", "params": {"group_by": ["sex"]}}
    patients = [f"{p}@Hospital" for p in rows["patient_id"]]
    by_sex = POLICY.protect(token, Count, Count().run(rows, token["params"]), rows, patients)
    POLICY.record(token, by_sex, store)
    women_but_one = rows[(rows["sex"] == "F") & (rows["patient_id"] != "p000")]
    token2 = {**token, "token_id": "g2", "params": {}}
    alone = POLICY.protect(
        token2, Count, Count().run(women_but_one, {}), women_but_one,
        [f"{p}@Hospital" for p in women_but_one["patient_id"]],
    )  # fmt: skip
    with pytest.raises(DisclosureRefused) as refused:
        POLICY.record(token2, alone, store)
    assert refused.value.rule == "differencing"


def test_differencing_compares_cohorts_from_cached_hashes_and_from_ids_alike():
    """The executor keeps patients' hashes beside the rows it loads; a flow's result
    names only patients. Either way a cohort is the same set, so one near another is
    refused whichever way each came."""
    store, rows = MemoryStore(), table(60)
    ids = rows["patient_id"].to_numpy()
    assert np.array_equal(cohort_hashes(patient_hashes(ids)), cohort_hashes(ids))
    hashed = rows.assign(**{PATIENT_HASH_COLUMN: patient_hashes(ids)})
    patients = [f"{p}@Hospital" for p in ids]
    first = POLICY.protect({**TOKEN, "token_id": "h1"}, Count, Count().run(hashed, {}), hashed,
                           patients)  # fmt: skip
    POLICY.record({**TOKEN, "token_id": "h1"}, first, store)
    but_one = POLICY.protect({**TOKEN, "token_id": "h2"}, Count, {"groups": [{"count": 59}]},
                             None, patients[1:])  # fmt: skip
    with pytest.raises(DisclosureRefused, match="fewer than 10 patients"):
        POLICY.record({**TOKEN, "token_id": "h2"}, but_one, store)


def test_dp_mode_is_admitted_only_for_dp_methods_within_the_query_limit():
    token = {"epsilon": 0.5, "params": {"epsilon": 0.5}}
    POLICY.admit(token, Mean)
    with pytest.raises(DisclosureRefused, match="no differential-privacy mode"):
        POLICY.admit(token, Std)
    with pytest.raises(DisclosureRefused, match="at most"):
        POLICY.admit({"epsilon": 5.0}, Mean)
    with pytest.raises(DisclosureRefused) as refused:  # a DP token's result must be DP
        POLICY.protect({**token, "token_id": "x"}, Mean, {"groups": []}, None, [])
    assert refused.value.rule == "differential_privacy"
    # Under DP, exact rules give way to the noise: a tiny cohort is answered, noisily.
    small = protect(Count, {}, table(4), epsilon=1.0).value
    assert "dp" in small and POLICY.published_cohort_size({"epsilon": 1.0}, ["a"]) is None


def test_a_dataset_or_a_class_can_be_answered_only_with_dp():
    by_dataset = DisclosurePolicy(dp_only_datasets=["vitals"])
    by_class = DisclosurePolicy(dp_only_classes=["statistics"])
    exact, private = {"dataset": "vitals"}, {"dataset": "vitals", "epsilon": 0.5}
    for policy in (by_dataset, by_class):
        with pytest.raises(DisclosureRefused, match="only with differential privacy") as refused:
            policy.admit(exact, Mean)
        assert refused.value.rule == "differential_privacy"
        policy.admit(private, Mean)  # the same question with noise is answered
    by_dataset.admit({"dataset": "xray"}, Mean)  # another dataset: exact as before
    assert by_dataset.hash != POLICY.hash  # the setting is part of the policy's hash


def test_dp_counts_fall_within_their_stated_accuracy_as_often_as_stated():
    import opendp.prelude as dp

    rows, within = table(200), 0
    for _ in range(200):
        result = Count().run(rows, {"epsilon": 0.5})
        within += abs(result["groups"][0]["count"] - 200) <= result["dp"]["count"]["accuracy"]
    assert result["dp"]["confidence"] == 0.95
    # 95% expected: fewer than 85% would happen with probability well under one in a million.
    assert within >= 170
    scale = result["dp"]["count"]["scale"]
    assert scale == pytest.approx(2.0, rel=1e-3)  # sensitivity 1, ε = 0.5
    assert result["dp"]["count"]["accuracy"] == pytest.approx(
        dp.discrete_laplacian_scale_to_accuracy(scale, 0.05)
    )


def test_dp_mean_histogram_and_quantiles_are_close_to_the_truth():
    import opendp.prelude as dp

    rows = table(2000, 3)
    truth = rows["systolic"].clip(60, 200)
    mean = Mean().run(rows, {"column": "systolic", "bounds": [60, 200], "epsilon": 1.0})
    group, note = mean["groups"][0], mean["dp"]
    sure = 1e-6  # a confidence at which a failure would be a bug, not bad luck
    count_bound = dp.discrete_laplacian_scale_to_accuracy(note["count"]["scale"], sure)
    sum_bound = dp.laplacian_scale_to_accuracy(note["sum"]["scale"], sure)
    assert abs(group["count"] - 2000) <= count_bound
    assert abs(group["sum"] - truth.sum()) <= sum_bound
    histogram = Histogram().run(
        rows, {"column": "systolic", "bins": 7, "bounds": [60, 200], "epsilon": 1.0}
    )
    true_counts, _ = np.histogram(truth, bins=np.linspace(60, 200, 8))
    bound = dp.discrete_laplacian_scale_to_accuracy(histogram["dp"]["counts"]["scale"], sure)
    assert np.all(np.abs(np.array(histogram["groups"][0]["counts"]) - true_counts) <= bound)
    total = Sum().run(rows, {"column": "systolic", "bounds": [60, 200], "epsilon": 1.0})
    bound = dp.laplacian_scale_to_accuracy(total["dp"]["sum"]["scale"], sure)
    # One patient more or fewer moves the total by up to the larger bound: scale 200 / ε.
    assert total["dp"]["sum"]["scale"] == pytest.approx(200.0, rel=1e-3)
    assert abs(total["groups"][0]["sum"] - truth.sum()) <= bound
    median = Quantiles().run(
        rows, {"column": "systolic", "q": [0.5], "bounds": [60, 200], "epsilon": 1.0}
    )["groups"][0]["quantiles"]["0.5"]
    assert abs(median - truth.median()) < 5
    with pytest.raises(Exception, match="bounds"):
        Mean().run(rows, {"column": "systolic", "epsilon": 1.0})


def test_dp_counts_each_patient_once_however_the_patients_are_numbered():
    import opendp.prelude as dp

    patients = np.repeat(np.arange(300), 5)  # five readings of each of 300 patients
    shuffled = np.random.default_rng(2).permutation(patients)
    for numbering in (patients, shuffled, np.char.add("p", shuffled.astype(str))):
        rows = pd.DataFrame({"patient_id": numbering, "systolic": 120.0})
        result = Count().run(rows, {"epsilon": 1.0})
        bound = dp.discrete_laplacian_scale_to_accuracy(result["dp"]["count"]["scale"], 1e-6)
        assert abs(result["groups"][0]["count"] - 300) <= bound  # not 1,500


def test_dp_group_by_answers_every_public_category_each_with_the_whole_epsilon():
    import opendp.prelude as dp

    n = 3000
    rows = table(n).assign(
        sex=pd.Categorical((["F", "M", "F"] * n)[:n], categories=["F", "M", "X"]),
        smoker=np.arange(n) % 10 == 0,
    )
    params = {"column": "systolic", "bounds": [60, 200], "epsilon": 1.0}
    result = Mean().run(rows, {**params, "group_by": ["sex", "smoker"]})
    groups = {(g["sex"], g["smoker"]): g for g in result["groups"]}
    assert list(groups) == [(s, k) for s in "FMX" for k in (False, True)]  # X: none, answered
    note = result["dp"]
    assert note["groups"] == {"count": 6, "composition": "parallel"}
    assert note["count"]["scale"] == pytest.approx(2.0, rel=1e-3)  # ε/2 for each group's count
    bound = dp.discrete_laplacian_scale_to_accuracy(note["count"]["scale"], 1e-6)
    truth = rows.groupby(["sex", "smoker"], observed=False).size()
    for key, group in groups.items():
        assert abs(group["count"] - truth[key]) <= bound
    whole = Mean().run(rows, params)["groups"][0]
    assert whole["mean"] == pytest.approx(rows["systolic"].mean(), abs=1)
    with pytest.raises(AlgorithmError, match="'diagnosis' is neither"):  # values from the data
        Count().run(rows, {"epsilon": 1.0, "group_by": ["diagnosis"]})
    many = rows.assign(age=pd.Categorical(rows["age"]))
    with pytest.raises(AlgorithmError, match="at most 100 groups"):
        Count().run(many, {"epsilon": 1.0, "group_by": ["age"]})


def test_a_claim_after_the_budget_was_spent_is_refused_before_any_data_is_read(
    tmp_path, demo_world
):
    driver = LocalDriver(tmp_path)
    try:
        world = World(driver, demo_world)
        world.setup()
        world.submit(world.hospital_admin, "budget:Grant", world.dataset, "alice@University", 1.0)
        first = world.approved(params={"column": "age", "epsilon": 0.6})
        second = world.approved(params={"column": "age", "epsilon": 0.6})  # approved: 1.0 left
        world.submit(world.executor, "Claim", first["token_id"])
        world.submit(world.executor, "Complete", first["token_id"], world.result(epsilon=0.6))
        refusal = world.refused(402, "left on", world.executor, "Claim", second["token_id"])
        assert "ε=0.4 left" in refusal.message
        assert world.token(second["token_id"])["status"] == "APPROVED"
    finally:
        driver.close()
