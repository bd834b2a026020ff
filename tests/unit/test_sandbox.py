"""Algorithms run in a limited child process: results come back, runaway code does not."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from flowblock.executor.algorithms.base import AlgorithmError
from flowblock.executor.algorithms.statistics import Mean
from flowblock.executor.sandbox import Limits, run_sandboxed
from flowblock.testing.algorithms import Crashes, EatsMemory, ReadsEnvironment, Spins

FRAME = pd.DataFrame({"patient_id": ["a", "b", "c"], "systolic": [120.0, 130.0, 140.0]})


def test_a_result_comes_back_from_the_child():
    result = run_sandboxed(Mean, FRAME, {"column": "systolic"}, Limits(cpu_seconds=30))
    assert result["groups"][0]["mean"] == 130.0


def test_children_allocate_on_huge_pages_and_the_executor_s_environment_is_untouched():
    before = os.environ.get("GLIBC_TUNABLES")
    seen = run_sandboxed(ReadsEnvironment, FRAME, {"names": ["GLIBC_TUNABLES"]}, Limits())
    assert "glibc.malloc.hugetlb=1" in seen["GLIBC_TUNABLES"].split(":")
    assert os.environ.get("GLIBC_TUNABLES") == before


def test_runaway_cpu_is_stopped_at_its_limit():
    with pytest.raises(AlgorithmError, match="CPU time"):
        run_sandboxed(Spins, FRAME, {}, Limits(cpu_seconds=1))


def test_runaway_memory_is_stopped_at_its_limit():
    with pytest.raises(AlgorithmError, match="memory"):
        run_sandboxed(EatsMemory, FRAME, {}, Limits(cpu_seconds=30, memory_bytes=1024**3))


def test_an_unexpected_error_says_only_its_kind():
    with pytest.raises(AlgorithmError, match=r"failed \(KeyError\)") as caught:
        run_sandboxed(Crashes, FRAME, {}, Limits(cpu_seconds=30))
    assert "patient" not in str(caught.value)


def test_refusals_from_the_algorithm_keep_their_words():
    empty = FRAME.assign(systolic=np.nan)
    from flowblock.executor.algorithms.statistics import Histogram

    with pytest.raises(AlgorithmError, match="no values to bin"):
        run_sandboxed(Histogram, empty, {"column": "systolic"}, Limits(cpu_seconds=30))
