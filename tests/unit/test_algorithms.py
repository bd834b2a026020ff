"""The built-in algorithms and the cohort filters, on tables whose answers are known."""

from __future__ import annotations

import hashlib
import importlib
import inspect

import numpy as np
import pandas as pd
import pytest

from flowblock.errors import InvalidArgument
from flowblock.executor.algorithms import load_algorithms
from flowblock.executor.algorithms.base import AlgorithmError
from flowblock.executor.algorithms.filters import apply_where, check_group_by, check_where
from flowblock.executor.algorithms.flowblock_methods import (
    AverageBloodPressure,
    BarChart,
    LongRunning,
    MaxHeartRate,
)
from flowblock.executor.algorithms.regression import LinearRegression, LogisticRegression
from flowblock.executor.algorithms.statistics import (
    Count,
    Crosstab,
    Histogram,
    Mean,
    Quantiles,
    Std,
    Sum,
)
from flowblock.executor.datasets import lean
from flowblock.schema import check_schema, validate
from flowblock.testing.flowblock_ledger import VITALS_SCHEMA

FRAME = pd.DataFrame(
    {
        "patient_id": [f"p{i}" for i in range(8)],
        "age": [30, 40, 50, 60, 70, 80, 35, 45],
        "sex": ["F", "M", "F", "M", "F", "M", "F", "M"],
        "systolic": [110, 120, 130, 140, 150, 160, 115, 125],
        "diastolic": [70, 75, 80, 85, 90, 95, 72, 78],
        "heart_rate": [60, 65, 70, 75, 80, 85, 62, 68],
        "bmi": [22.0, 24.0, 26.0, 28.0, 30.0, 32.0, 23.0, 25.0],
        "smoker": [False, True, False, True, False, True, False, False],
        "diagnosis": ["normal"] * 4 + ["hypertension"] * 4,
    }
)


def test_every_installed_algorithm_is_publishable():
    algorithms = load_algorithms()
    assert len(algorithms) >= 13
    for algorithm in algorithms.values():
        entry = algorithm.catalogue_entry()
        check_schema(entry["parameters"])
        assert len(entry["code_hash"]) == 64
        assert entry["input_kind"] in ("tabular", "images", "tokens")


def test_count_mean_std_with_groups():
    assert Count().run(FRAME, {})["groups"] == [{"count": 8}]
    grouped = Mean().run(FRAME, {"column": "systolic", "group_by": ["sex"]})["groups"]
    assert grouped == [
        {"sex": "F", "count": 4, "mean": 126.25},
        {"sex": "M", "count": 4, "mean": 136.25},
    ]
    std = Std().run(FRAME, {"column": "age"})["groups"][0]["std"]
    assert std == pytest.approx(FRAME["age"].std())


def test_histogram_quantiles_crosstab():
    histogram = Histogram().run(FRAME, {"column": "age", "bins": 5})
    assert sum(histogram["groups"][0]["counts"]) == 8
    assert histogram["edges"][0] == 30
    quantiles = Quantiles().run(FRAME, {"column": "systolic", "q": [0.5]})
    assert quantiles["groups"][0]["quantiles"]["0.5"] == pytest.approx(FRAME["systolic"].median())
    table = Crosstab().run(FRAME, {"rows": "sex", "columns": "diagnosis"})
    assert table == {"rows": ["F", "M"], "columns": ["hypertension", "normal"],
                     "counts": [[2, 2], [2, 2]]}  # fmt: skip
    with pytest.raises(AlgorithmError, match="not numeric"):
        Mean().run(FRAME, {"column": "sex"})


def test_regressions_recover_known_relationships():
    rng = np.random.default_rng(1)
    n = 400
    age = rng.uniform(20, 80, n)
    frame = pd.DataFrame({"age": age, "systolic": 100 + 0.5 * age + rng.normal(0, 1, n)})
    fit = LinearRegression().run(frame, {"outcome": "systolic", "predictors": ["age"]})
    assert fit["coefficients"]["age"]["estimate"] == pytest.approx(0.5, abs=0.02)
    assert fit["r_squared"] > 0.95
    frame["old"] = (frame["age"] + rng.normal(0, 10, n) > 50).astype(int)
    logit = LogisticRegression().run(frame, {"outcome": "old", "predictors": ["age"]})
    assert logit["coefficients"]["age"]["estimate"] > 0
    with pytest.raises(AlgorithmError, match="yes/no"):
        LogisticRegression().run(frame, {"outcome": "age", "predictors": ["systolic"]})


def test_flowblock_methods_and_charts():
    bp = AverageBloodPressure().run(FRAME, {})["groups"][0]
    assert (bp["systolic"], bp["diastolic"]) == (131.25, 80.625)
    assert MaxHeartRate().run(FRAME, {"group_by": ["smoker"]})["groups"] == [
        {"smoker": False, "count": 5, "max": 80.0},
        {"smoker": True, "count": 3, "max": 85.0},
    ]
    chart = BarChart().run(FRAME, {"column": "diagnosis"})
    assert chart["chart"] == "bar"
    assert chart["groups"] == [
        {"diagnosis": "hypertension", "count": 4},
        {"diagnosis": "normal", "count": 4},
    ]
    seen = []
    slow = LongRunning()
    slow.progress = seen.append
    assert slow.run(FRAME, {"seconds": 1})["groups"] == [{"count": 8}]
    assert seen[-1] == 1.0


def test_a_code_hash_covers_the_code_an_algorithm_relies_on_beyond_its_module():
    """A DP mean's mechanism and the X-ray model's pinned hash decide results as much as
    the algorithm's own module does: the catalogue must vouch for them too."""

    def source(*modules: str) -> str:
        digest = hashlib.sha256()
        for module in modules:
            digest.update(inspect.getsource(importlib.import_module(module)).encode())
        return digest.hexdigest()

    statistics, private = Mean.__module__, "flowblock.executor.algorithms.private"
    assert Mean.code_hash() == source(statistics, private)
    assert Std.code_hash() == source(statistics)  # no DP mode: its module alone, as before
    assert MaxHeartRate.code_hash() == source(MaxHeartRate.__module__, statistics)
    classify = load_algorithms()[("pneumonia-classify", "1.0")]
    assert classify.code_hash() == source(classify.__module__, "flowblock.executor.xray")


def test_filters_are_checked_against_the_schema_and_applied_as_data():
    where = check_where([["sex", "==", "F"], ["systolic", ">=", 120]], VITALS_SCHEMA)
    assert list(apply_where(FRAME, where)["patient_id"]) == ["p2", "p4"]
    either = check_where([["diagnosis", "in", ["normal"]], ["age", "<", 40]], VITALS_SCHEMA)
    assert list(apply_where(FRAME, either)["patient_id"]) == ["p0"]
    assert check_group_by(["sex"], VITALS_SCHEMA) == ["sex"]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ([["weight", "==", 1]], "the column 'weight' must be one of the dataset's"),
        ([["sex", ">", "F"]], "== or != for the category column 'sex'"),
        ([["age", "==", "old"]], "must be an integer value"),
        ([["age", "~", 1]], "op must be one of"),
        ([["age", "in", []]], "a non-empty list"),
        ([["age", "=="]], "a [column, op, value] triple"),
        ([["__import__('os')", "==", 1]], "the column"),
    ],
)
def test_bad_filters_are_refused_in_one_sentence(where, message):
    with pytest.raises(InvalidArgument) as caught:
        check_where(where, VITALS_SCHEMA)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "column",
    ["age", "patient_id", "diagnosis"],  # continuous, an identifier, values from the data
)
def test_groups_are_labelled_only_by_public_categories_in_every_mode(column):
    assert check_group_by(["sex", "smoker"], VITALS_SCHEMA) == ["sex", "smoker"]
    with pytest.raises(InvalidArgument) as refused:
        check_group_by([column], VITALS_SCHEMA)
    assert str(refused.value) == (
        f"group_by {column!r} must be a boolean column or a category column whose values "
        "the dataset's schema lists."
    )


def test_every_label_column_an_algorithm_names_is_checked_under_its_own_argument():
    from flowblock.executor.algorithms.filters import check_result_labels

    check_result_labels(["sex"], {"column": "sex"}, VITALS_SCHEMA)
    with pytest.raises(InvalidArgument, match=r"^column 'patient_id' must be a boolean"):
        check_result_labels(["patient_id"], {"column": "patient_id"}, VITALS_SCHEMA)
    with pytest.raises(InvalidArgument, match=r"^rows 'age' must be a boolean"):
        check_result_labels(["sex", "age"], {"columns": "sex", "rows": "age"}, VITALS_SCHEMA)


def test_the_sandbox_gets_a_category_column_with_the_schema_s_values_all_of_them():
    schema = {"columns": {**VITALS_SCHEMA["columns"],
                          "sex": {"type": "category", "values": ["F", "M", "X"]}}}  # fmt: skip
    given = lean(FRAME.assign(record_id=range(len(FRAME))), schema)
    assert list(given["sex"].cat.categories) == ["F", "M", "X"]
    assert "record_id" not in given and given["patient_id"].dtype.kind == "i"


def test_parameters_are_validated_by_the_published_schema():
    validate({"column": "age", "where": [["sex", "==", "F"]]}, Mean.parameters)
    with pytest.raises(InvalidArgument, match="did you mean 'column'"):
        validate({"colum": "age"}, Mean.parameters)


@pytest.mark.parametrize(
    ("algorithm", "params"),
    [
        (Mean, {"column": "systolc"}),
        (Mean, {"column": "systolc", "epsilon": 1.0, "bounds": [60, 200]}),
        (Histogram, {"column": "systolc", "group_by": ["sex"]}),
        (LinearRegression, {"outcome": "systolc", "predictors": ["age"]}),
        (Crosstab, {"rows": "sex", "columns": "systolc"}),
        (BarChart, {"column": "systolc"}),
    ],
    ids=["mean", "dp-mean", "grouped-histogram", "regression", "crosstab", "chart"],
)
def test_a_column_the_dataset_lacks_is_named_as_missing_not_as_not_numeric(algorithm, params):
    with pytest.raises(AlgorithmError) as refused:
        algorithm().run(FRAME.assign(patient_id=range(len(FRAME))), params)
    assert str(refused.value) == (
        "the column 'systolc' is not in the dataset; did you mean 'systolic'?"
    )


def test_a_missing_column_with_no_near_name_lists_the_dataset_s_columns():
    with pytest.raises(AlgorithmError) as refused:
        Mean().run(FRAME[["patient_id", "age", "bmi"]], {"column": "weight"})
    assert str(refused.value) == (
        "the column 'weight' is not in the dataset, whose columns are age, bmi, patient_id."
    )


def test_a_column_that_is_there_but_not_numeric_is_called_so():
    with pytest.raises(AlgorithmError, match=r"^the column 'sex' is not numeric\.$"):
        Mean().run(FRAME, {"column": "sex"})


DP_ROWS = FRAME.assign(patient_id=range(len(FRAME)))
DP_STATISTICS = [
    (Sum, {"column": "systolic"}),
    (Mean, {"column": "systolic"}),
    (Histogram, {"column": "systolic", "bins": 5}),
    (Quantiles, {"column": "systolic", "q": [0.5]}),
]
DP_IDS = ["sum", "mean", "histogram", "quantiles"]


@pytest.mark.parametrize("bounds", [[-1e308, 1e308], [0, 1e308], [0, float("inf")],
                                    [float("nan"), 1], [5, 5], ["0", "9"]])  # fmt: skip
@pytest.mark.parametrize(("algorithm", "params"), DP_STATISTICS, ids=DP_IDS)
def test_extreme_dp_bounds_are_refused_in_one_sentence_about_the_bounds(algorithm, params, bounds):
    with pytest.raises(AlgorithmError) as refused:
        algorithm().run(DP_ROWS, {**params, "bounds": bounds, "epsilon": 1.0})
    assert str(refused.value).startswith(
        "differential-privacy mode needs bounds [lower, upper] with -1e+15 <= lower < upper "
        "<= 1e+15"
    )
    assert str(refused.value).count(".") <= 1 + str(bounds).count(".")  # one sentence


@pytest.mark.parametrize(("algorithm", "params"), DP_STATISTICS[2:], ids=DP_IDS[2:])
def test_dp_bounds_too_close_to_split_are_refused_as_such(algorithm, params):
    upper = 1.0000000000000009  # four floats above 1: too few for 5 bins or 512 candidates
    with pytest.raises(AlgorithmError) as refused:
        algorithm().run(DP_ROWS, {**params, "bounds": [1.0, upper], "epsilon": 1.0})
    assert str(refused.value).startswith(
        "the bounds [1.0, 1.0000000000000009] are too close together to split into "
    )
    assert str(refused.value).endswith("; widen them.")


def test_an_epsilon_opendp_cannot_calibrate_is_refused_in_one_sentence():
    with pytest.raises(AlgorithmError) as refused:
        Quantiles().run(DP_ROWS, {"column": "systolic", "q": [0.5], "bounds": [60, 200],
                                  "epsilon": 1e-300})  # fmt: skip
    assert str(refused.value) == (
        "differential privacy cannot be calibrated for ε = 1e-300 with bounds [60, 200]; "
        "ask for a larger ε or other bounds."
    )


def test_a_filter_on_a_misspelt_column_suggests_the_right_one():
    with pytest.raises(InvalidArgument) as refused:
        check_where([["systolc", ">", 120]], VITALS_SCHEMA)
    assert str(refused.value).endswith("; did you mean 'systolic'?")
