"""pytest fixtures: ``pytest_plugins = ["flowblock.testing.fixtures"]`` in a conftest."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowblock.testing.identities import DemoWorld, make_demo_world


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory: pytest.TempPathFactory) -> DemoWorld:
    """The demo organisations and people, made once per test session. Treat as read-only."""
    return make_demo_world(tmp_path_factory.mktemp("demo-world"))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty FlowBlock data directory of the test's own."""
    path = tmp_path / "flowblock-data"
    path.mkdir()
    return path
