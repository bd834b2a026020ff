"""Misbehaving (and prying) algorithms, for testing that the sandbox holds them.

Each declares itself a count table, as any algorithm declares its disclosure class;
nothing they return has a count table's form, so the disclosure policy would release
none of it.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from flowblock.executor.algorithms.base import Algorithm


class Spins(Algorithm):
    name = "test-spins"
    disclosure_class = "count_table"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        while True:
            pass


class EatsMemory(Algorithm):
    name = "test-eats-memory"
    disclosure_class = "count_table"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        hoard = []
        while True:
            hoard.append(bytearray(64 * 1024**2))


class Crashes(Algorithm):
    name = "test-crashes"
    disclosure_class = "count_table"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        return {"leak": frame.to_dict()["patient_id"]["missing-key"]}


class ReadsEnvironment(Algorithm):
    name = "test-reads-environment"
    disclosure_class = "count_table"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        return {name: os.environ.get(name) for name in params["names"]}
