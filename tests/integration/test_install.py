"""The distribution as users get it: a wheel, installed into a fresh environment."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("hub", "extension", "chaincode", "network", "spawner", "executor")


def sh(*argv: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with only the built wheel (and its core dependencies)."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to build the wheel; the README's set-up installs it")
    work = tmp_path_factory.mktemp("wheel")
    # An sdist first, then the wheel built from it: what a release does, and it proves
    # the sdist carries every part.
    sh(uv, "build", "--out-dir", work / "dist", ROOT, cwd=work)
    (wheel,) = (work / "dist").glob("flowblock-*.whl")
    sh(uv, "venv", "--python", sys.executable, work / "venv", cwd=work)
    sh(uv, "pip", "install", "--python", work / "venv" / "bin" / "python", wheel, cwd=work)
    return work


def test_every_part_imports_from_the_installed_wheel(installed):
    python = installed / "venv" / "bin" / "python"
    modules = ", ".join(f"flowblock.{part}" for part in PARTS)
    out = sh(
        python,
        "-c",
        f"import {modules}; import flowblock; print(flowblock.__file__)",
        cwd=installed,
    )
    # Imported from site-packages, not from a source tree.
    assert "site-packages" in out and str(ROOT) not in out


def test_the_installed_command_runs(installed):
    flowblock = installed / "venv" / "bin" / "flowblock"
    out = sh(flowblock, "--help", cwd=installed)
    assert "identity" in out and "network" in out
    data = installed / "data"
    sh(flowblock, "demo", "--setup-only", "--data-dir", data, cwd=installed)
    assert "alice" in sh(flowblock, "identity", "list", "--data-dir", data, cwd=installed)
