"""The example notebooks run, end to end, with nbval against ``flowblock demo``.

nbval runs each notebook in a fresh kernel that knows only the gateway and alice's
wallet; ``--nbval-lax`` checks that every cell runs (their ``assert``s hold) without
comparing outputs, which vary with the ledger's ids and times.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
RESEARCH = ["vitals-statistics.ipynb", "flow-chart.ipynb", "xray-classifier.ipynb"]


@pytest.mark.parametrize("notebook", RESEARCH)
def test_an_example_notebook_runs_against_the_demo(demo_stack, tmp_path, notebook):
    env = demo_stack.kernel_env("alice", tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(tmp_path), "-o", "addopts=", str(NOTEBOOKS / notebook)],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
