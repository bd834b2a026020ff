"""Misbehaving (and prying) algorithms, for testing that the sandbox holds them."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from flowblock.executor.algorithms.base import Algorithm


class Spins(Algorithm):
    name = "test-spins"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        while True:
            pass


class EatsMemory(Algorithm):
    name = "test-eats-memory"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        hoard = []
        while True:
            hoard.append(bytearray(64 * 1024**2))


class Crashes(Algorithm):
    name = "test-crashes"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        return {"leak": frame.to_dict()["patient_id"]["missing-key"]}


class ReadsEnvironment(Algorithm):
    name = "test-reads-environment"

    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        return {name: os.environ.get(name) for name in params["names"]}
