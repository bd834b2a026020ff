"""The fault suite's randomness: seeded, printed, replayable.

Each test that crashes something at a random moment draws it from ``rng``, seeded from
``FLOWBLOCK_FAULT_SEED`` when set and at random otherwise; the seed is printed (pytest
shows it with a failure), so ``FLOWBLOCK_FAULT_SEED=<seed> scripts/test -m faults -k <test>``
replays the same moments.
"""

from __future__ import annotations

import os
import random
import secrets

import pytest


def _seeded(name: str) -> random.Random:
    seed = int(os.environ.get("FLOWBLOCK_FAULT_SEED") or secrets.randbelow(2**32))
    print(f"{name}: random seed {seed} (FLOWBLOCK_FAULT_SEED={seed} replays it)")
    return random.Random(seed)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A test's own generator."""
    return _seeded(request.node.name)


@pytest.fixture(scope="module")
def module_rng(request: pytest.FixtureRequest) -> random.Random:
    """The generator of a module's shared fixtures (its seed is printed with the first
    test that uses them)."""
    return _seeded(request.module.__name__)
