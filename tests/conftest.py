"""Test layers follow the directories: tests/unit, tests/integration, tests/e2e.

Each test gets the marker of its layer, so ``pytest -m unit`` runs one layer alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["flowblock.testing.fixtures"]

LAYERS = ("unit", "integration", "e2e")
TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        layer = Path(item.path).relative_to(TESTS).parts[0]
        if layer in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))
