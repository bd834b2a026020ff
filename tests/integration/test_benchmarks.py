"""The benchmarks still run: each is started with tiny sizes and must print its figures.

These assert no speed (benchmarks measure that, with same-run baselines); they keep the
benchmark scripts from rotting as the code they drive changes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.parametrize(
    ("script", "arguments", "expected"),
    [
        ("ledger.py", ["--seconds", "0.3", "--latency-samples", "5"],
         ["submit→commit latency", "committed, waiting each", "committed, 16 in flight",
          "evaluations", "the protocol's floor of", "floor: the same gRPC round trips"]),
        ("consent.py", ["--seconds", "0.5", "--records", "1000", "--patients", "2000",
                        "--page", "500", "--latency-samples", "3", "--concurrent-patients", "4"],
         ["grant   p50", "registered 1,000 records", "listed 2,000 patients",
          "floor of", "floor: the same gRPC round trips"]),
        ("compute.py", ["--records", "2000", "--patients", "30", "--repeats", "1",
                        "--epochs", "1"],
         ["mean      request→decrypted result", "histogram request→decrypted result",
          "peak memory", "X-ray classifier training (1 epochs) through FlowBlock"]),
    ],
)  # fmt: skip
def test_benchmark_runs_and_reports(script, arguments, expected):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *arguments],
        capture_output=True, text=True, timeout=240, cwd=BENCHMARKS,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for line in expected:
        assert line in done.stdout


def test_the_magics_benchmark_runs_and_reports():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "magics.py"), "--records", "500", "--patients", "20",
         "--repeats", "2"],
        capture_output=True, text=True, timeout=240, cwd=BENCHMARKS,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    expected = ["%flowblock compute mean → displayed result", "Client.compute(...).wait()",
                "the magics' own time over the Client's", "the Client against itself"]  # fmt: skip
    for line in expected:
        assert line in done.stdout


def test_disclosure_benchmark_runs_and_reports():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "disclosure.py"), "--records", "5000", "--repeats", "1"],
        capture_output=True, text=True, timeout=240, cwd=BENCHMARKS,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for line in ("mean policy", "mean DP", "histogram policy", "histogram DP", "differencing",
                 "auditing, first check", "auditing "):  # fmt: skip
        assert line in done.stdout


def test_suppression_benchmark_runs_and_reports():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "suppression.py"), "--patients", "20000",
         "--repeats", "1"],
        capture_output=True, text=True, timeout=240, cwd=BENCHMARKS,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for line in ("suppression 100x100", "suppression 25x20x20", "vs threshold check"):
        assert line in done.stdout
