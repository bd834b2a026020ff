"""Algorithms run in a limited child process: results come back, runaway code does not.

(The attacks an algorithm could make on the executor are in tests/security/test_sandbox.py.)
"""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np
import pandas as pd
import pytest

from flowblock.executor import sandbox
from flowblock.executor.algorithms.base import AlgorithmError
from flowblock.executor.algorithms.statistics import Mean
from flowblock.executor.sandbox import Limits, run_sandboxed, sandbox_environment
from flowblock.testing.algorithms import (
    Crashes,
    EatsMemory,
    ReadsEnvironment,
    ReturnsAFrame,
    Spins,
)

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


def test_numpy_values_come_back_as_plain_python_values():
    result = run_sandboxed(Mean, FRAME, {"column": "systolic"}, Limits(cpu_seconds=30))
    assert type(result["groups"][0]["mean"]) is float
    assert type(result["groups"][0]["count"]) is int


def test_a_result_that_is_not_plain_data_is_refused_in_one_sentence():
    with pytest.raises(AlgorithmError, match="holds a DataFrame, which cannot leave the sandbox"):
        run_sandboxed(ReturnsAFrame, FRAME, {}, Limits(cpu_seconds=30))


def test_a_run_has_a_private_home_and_temporary_folder_removed_after_it():
    seen = run_sandboxed(ReadsEnvironment, FRAME, {"names": ["HOME", "TMPDIR"]}, Limits())
    assert seen["HOME"] == seen["TMPDIR"]
    assert seen["HOME"].startswith(os.path.join(tempfile.gettempdir(), "flowblock-run-"))
    assert not os.path.exists(seen["HOME"])


def test_a_run_sees_only_the_harmless_part_of_the_executor_s_environment():
    environment = sandbox_environment(
        {"PATH": "/usr/bin", "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "2",
         "AWS_SECRET_ACCESS_KEY": "secret", "FLOWBLOCK_EXECUTOR_S3_CREDENTIALS": "/k.json",
         "HOME": "/root"},
        "/tmp/flowblock-run-x",
    )  # fmt: skip
    assert environment == {
        "PATH": "/usr/bin", "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "2",
        "HOME": "/tmp/flowblock-run-x", "TMPDIR": "/tmp/flowblock-run-x",
    }  # fmt: skip


@pytest.fixture
def isolation_decided_again():
    sandbox._runs_get_own_user.cache_clear()
    yield
    sandbox._runs_get_own_user.cache_clear()


def test_an_executor_that_is_not_root_says_once_what_protection_its_runs_lack(
    monkeypatch, caplog, isolation_decided_again
):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with caplog.at_level(logging.WARNING, logger="flowblock.executor.sandbox"):
        assert not sandbox._runs_get_own_user()
        assert not sandbox._runs_get_own_user()
    (warning,) = caplog.messages
    assert "not run as root" in warning and "can read whatever it can" in warning


def test_without_a_user_of_its_own_a_run_still_gets_its_limits_and_private_folder(monkeypatch):
    monkeypatch.setattr(sandbox, "_runs_get_own_user", lambda: False)
    seen = run_sandboxed(ReadsEnvironment, FRAME, {"names": ["HOME"]}, Limits(cpu_seconds=30))
    assert seen["HOME"].startswith(os.path.join(tempfile.gettempdir(), "flowblock-run-"))
    with pytest.raises(AlgorithmError, match="CPU time"):
        run_sandboxed(Spins, FRAME, {}, Limits(cpu_seconds=1))


def test_a_user_namespace_without_the_run_ids_is_named(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(sandbox, "_read_id_map", lambda name: [(0, 100000, 65536)])
    problem = sandbox.isolation_problem()
    assert problem is not None and "uid_map" in problem


def test_root_without_the_capabilities_to_change_user_is_named(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(sandbox, "_effective_capabilities", lambda: 0b1)  # CAP_CHOWN alone
    problem = sandbox.isolation_problem()
    assert problem is not None and "without CAP_SETGID, CAP_SETUID" in problem


def test_the_default_process_limit_is_finite():
    assert 0 < Limits().processes < 10_000


def test_the_process_limit_is_a_setting_of_the_executor():
    from traitlets.config import Config

    from flowblock.executor.settings import ExecutorSettings

    config = Config()
    config.ExecutorSettings.processes = 40
    assert ExecutorSettings(config=config).limits.processes == 40
    assert ExecutorSettings().limits.processes == Limits().processes  # 0: the default
