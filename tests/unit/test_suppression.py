"""Secondary suppression is sound and bounded: no hidden small cell can be narrowed, by
the exact linear programme an attacker would solve, below what the policy allows, and a
table too large to protect in time is refused rather than left running.

Soundness is checked on random tables (hypothesis) against the exact feasible ranges:
the fast hypercube method only claims widths that hold, whatever the table.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from flowblock.errors import DisclosureRefused
from flowblock.executor.algorithms.statistics import Crosstab
from flowblock.executor.disclosure import DisclosurePolicy, tables
from flowblock.testing.count_tables import realistic_counts as realistic

TOKEN = {"token_id": "t1", "data_org": "Hospital", "requester": "alice@University",
         "dataset": "vitals", "params": {}, "epsilon": 0}  # fmt: skip

#: Counts as small tables hold them: many below any threshold, some zero, a few large.
COUNT = st.one_of(st.integers(0, 9), st.integers(0, 9), st.integers(0, 80))
SHAPE = st.one_of(
    st.tuples(st.integers(2, 6), st.integers(2, 6)),
    st.tuples(st.integers(2, 3), st.integers(2, 4), st.integers(2, 4)),
)


@st.composite
def count_tables(draw) -> tuple[np.ndarray, int]:
    counts = draw(arrays(np.int64, draw(SHAPE), elements=COUNT, fill=st.nothing()))
    return counts.astype(float), draw(st.integers(3, 12))


def _widths(counts: np.ndarray, mask: np.ndarray) -> dict[tuple, float]:
    return {cell: high - low for cell, (low, high) in tables.feasible_ranges(counts, mask).items()}


def _primary(counts: np.ndarray, threshold: int) -> np.ndarray:
    return (counts > 0) & (counts < threshold)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(count_tables())
def test_every_hypercube_cell_is_as_wide_as_the_exact_programme_says(table):
    counts, threshold = table
    primary = _primary(counts, threshold)
    mask = tables.hypercube_suppress(counts, primary, threshold)
    if mask is None or not primary.any():
        return  # the method claims nothing: suppress() falls back (tested below)
    assert mask[primary].all()
    needed = tables.protection_needed(counts, threshold)
    widths = _widths(counts, mask)
    for cell in map(tuple, np.argwhere(primary)):
        assert widths[cell] >= needed[cell] - 1e-6, (cell, widths[cell], needed[cell])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(count_tables())
def test_suppress_never_releases_a_cell_narrower_than_allowed_or_than_hiding_all(table):
    counts, threshold = table
    appetite = DisclosurePolicy(cell_threshold=threshold).appetite
    mask = tables.suppress(counts, appetite)
    primary = _primary(counts, threshold)
    assert mask[primary].all()
    needed = tables.protection_needed(counts, threshold)
    widths = _widths(counts, mask)
    everything = _widths(counts, np.ones(counts.shape, dtype=bool)) if mask.all() else {}
    for cell in map(tuple, np.argwhere(primary)):
        best = min(needed[cell], everything.get(cell, np.inf))  # no table can do better
        assert widths[cell] >= best - 1e-6, (cell, widths[cell], needed[cell])


def test_the_hypercube_method_leaves_a_cell_nothing_to_hide_behind_to_the_fallback():
    # The 5s share one row: each can be told from the other, and column 1 has nothing.
    counts = np.array([[5.0, 5.0], [0.0, 100.0]])
    assert tables.hypercube_suppress(counts, _primary(counts, 10), 10) is None
    assert tables.suppress(counts, DisclosurePolicy().appetite).all()


def test_a_table_with_a_dimension_of_one_level_is_hidden_whole():
    # Each cell is then a marginal total of its own (its "column" of one cell).
    counts = np.array([[3.0, 40.0, 50.0]])
    assert tables.hypercube_suppress(counts, _primary(counts, 10), 10) is None
    assert tables.suppress(counts, DisclosurePolicy().appetite).all()
    assert not tables.suppress(np.array([[30.0, 40.0, 50.0]]), DisclosurePolicy().appetite).any()


@pytest.mark.parametrize("shape", [(100, 100), (25, 20, 20)])
def test_a_table_of_ten_thousand_cells_is_protected_within_the_budget(shape):
    counts = realistic(shape, 150_000)
    appetite = DisclosurePolicy(max_protect_seconds=5).appetite
    primary = _primary(counts, 10)
    started = time.process_time()
    mask = tables.suppress(counts, appetite)
    assert time.process_time() - started < 5
    assert primary.sum() > 4000 and mask[primary].all()
    assert not mask.all() and counts[mask & ~primary].sum() < 0.1 * counts.sum()


def test_a_table_over_the_cell_limit_is_refused_before_any_work():
    counts = realistic((40, 40), 5_000)
    with pytest.raises(DisclosureRefused) as refused:
        tables.suppress(counts, DisclosurePolicy(max_table_cells=1_000).appetite)
    assert refused.value.rule == "too_many_cells"
    assert "too many cells to protect" in str(refused.value)
    assert not tables.suppress(counts, DisclosurePolicy(max_table_cells=1_600).appetite).all()


def test_protection_past_its_time_is_refused_not_left_running():
    counts = realistic((300, 300), 400_000)  # 90,000 cells: seconds of work
    appetite = DisclosurePolicy(max_protect_seconds=0.05).appetite
    started = time.monotonic()
    with pytest.raises(DisclosureRefused) as refused:
        tables.suppress(counts, appetite)
    assert refused.value.rule == "too_many_cells"
    assert time.monotonic() - started < 1.5


def test_the_exact_programme_stops_at_the_deadline_too():
    counts = realistic((6, 6), 300)
    hidden = np.ones(counts.shape, dtype=bool)
    assert len(tables.feasible_ranges(counts, hidden, tables.Deadline(60))) == 36
    with pytest.raises(DisclosureRefused) as refused:
        tables.feasible_ranges(counts, hidden, tables.Deadline(0))
    assert refused.value.rule == "too_many_cells"


def test_a_release_over_the_limits_is_refused_with_a_sentence_that_points_to_dp():
    rng = np.random.default_rng(3)
    rows = pd.DataFrame(
        {
            "patient_id": [f"p{i}" for i in range(2000)],
            "region": rng.choice([f"r{i}" for i in range(40)], 2000),
            "grade": rng.choice([f"g{i}" for i in range(30)], 2000),
        }
    )
    params = {"rows": "region", "columns": "grade"}
    token = {**TOKEN, "params": params}
    result = Crosstab().run(rows, params)
    patients = [f"{p}@Hospital" for p in rows["patient_id"]]
    small = DisclosurePolicy(max_table_cells=500)
    with pytest.raises(DisclosureRefused) as refused:
        small.protect(token, Crosstab, result, rows, patients)
    assert refused.value.rule == "too_many_cells"
    assert "epsilon" in str(refused.value)
    assert DisclosurePolicy().protect(token, Crosstab, result, rows, patients).value["counts"]


def test_the_limits_are_settings_in_the_policy_hash_and_not_acro_s():
    policy = DisclosurePolicy(max_protect_seconds=3, max_table_cells=5000)
    assert (policy.appetite.max_protect_seconds, policy.appetite.max_table_cells) == (3, 5000)
    assert policy.hash != DisclosurePolicy().hash
    assert "max_table_cells" in DisclosurePolicy.class_get_help()
    assert policy.appetite.checker is DisclosurePolicy().appetite.checker  # ACRO's same
