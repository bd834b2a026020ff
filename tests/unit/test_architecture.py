"""The rooms of the house: the import contracts cover every core module, the rules hold,
and no part's docstring leaves out what it holds and may import."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _contracts() -> list[dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["importlinter"]["contracts"]


def _parts() -> tuple[str, ...]:
    for node in ast.walk(ast.parse((ROOT / "setup.py").read_text())):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "PARTS":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py names no PARTS")


def test_the_core_contract_lists_every_core_module():
    (core,) = [c for c in _contracts() if c["name"].startswith("The core imports no part")]
    on_disk = {
        f"flowblock.{path.stem}"
        for path in (ROOT / "flowblock").iterdir()
        if (path.suffix == ".py" and path.stem != "__init__")
        or (path.is_dir() and (path / "__init__.py").exists())
    }
    assert set(core["source_modules"]) == on_disk
    assert set(core["forbidden_modules"]) == {f"flowblock.{part}" for part in _parts()}


@pytest.mark.parametrize("part", _parts())
def test_each_part_says_what_it_holds_and_what_it_may_import(part):
    module = importlib.import_module(f"flowblock.{part}")
    doc = module.__doc__ or ""
    assert len(doc.split()) >= 15, f"flowblock.{part} says too little about itself"
    assert "import" in doc, f"flowblock.{part} does not say what it may import"


def test_the_import_contracts_hold():
    checked = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lint-imports")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout[-3000:]
    assert "BROKEN" not in checked.stdout


def test_git_holds_no_third_party_package():
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    vendored = [f for f in files if "node_modules/" in f or "site-packages/" in f]
    assert vendored == []


def test_no_module_is_over_600_lines():
    """Small modules with one job: one that grows past 600 lines is doing several."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "*.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    sizes = {f: len((ROOT / f).read_text().splitlines()) for f in files if (ROOT / f).exists()}
    assert {f: n for f, n in sizes.items() if n > 600} == {}
