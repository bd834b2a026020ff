"""A study of one's own for data-side tests: a table imported, consent given, an executor.

``Study`` imports a DataFrame as a new tabular dataset of the ``Hospital`` (through the
real records contract and the real S3 server), has its first ``consenting`` patients
grant compute consent to the ``University``, and gives the executor that runs its
tokens and a :class:`flowblock.Client` for ``alice``; ``ages_apart`` makes a table for
it. ``MemoryStore`` is an in-memory
stand-in for :class:`flowblock.executor.storage.objects.ObjectStore`, for unit tests.
"""

from __future__ import annotations

import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from flowblock.ledger import Gateway, GatewayPool

_datasets = itertools.count()


def ages_apart(n: int, seed: int = 0, diagnoses: tuple[tuple[str, int], ...] = ()) -> pd.DataFrame:
    """A small vitals table whose ages are 20… one apart, so a filter on age moves exactly
    one patient; the first patients get ``diagnoses`` ((name, how many), …), the rest
    ``common``."""
    rng = np.random.default_rng(seed)
    labels = [name for name, count in diagnoses for _ in range(count)] + ["common"] * n
    return pd.DataFrame(
        {
            "patient_id": [f"p{i:03d}" for i in range(n)],
            "age": np.arange(20, 20 + n),
            "sex": (["F", "M"] * n)[:n],
            "systolic": rng.normal(130, 12, n).round(1),
            "heart_rate": rng.normal(72, 9, n).round(1),
            "diagnosis": labels[:n],
        }
    )


class MemoryStore:
    """The object store's interface over a dict: put, get, get_many, exists, list."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, data: bytes) -> str:
        from flowblock.executor.storage.objects import sha256_hex

        self.objects[key] = bytes(data)
        return sha256_hex(data)

    def get(self, key: str) -> bytes:
        return self.objects[key]

    def get_many(self, keys) -> dict[str, bytes]:
        return {key: self.objects[key] for key in keys}

    def exists(self, key: str) -> bool:
        return key in self.objects

    def list(self, prefix: str = "") -> list[str]:
        return sorted(key for key in self.objects if key.startswith(prefix))


def publish_and_allow(pool: GatewayPool, demo_world, rules: dict) -> None:
    """Publish every installed algorithm and set the Hospital's auto-approval rules."""
    from flowblock.executor.algorithms import publish_algorithms

    admin = demo_world.identity("admin", org="Hospital")
    publish_algorithms(pool(admin, "catalogue"))
    pool(admin).submit("SetRules", json.dumps(rules))


class Study:
    """``frame`` (with a ``patient_id`` column) as a dataset of its own, its executor and
    alice's client; the first ``consenting`` patients consent to ``research``."""

    def __init__(
        self,
        pool: GatewayPool,
        s3_server: Any,
        demo_world: Any,
        frame: pd.DataFrame,
        consenting: int,
        policy: Any = None,
        prefix: str = "study",
    ) -> None:
        from flowblock.client import Client
        from flowblock.consent import enrol
        from flowblock.executor.ingest import import_table
        from flowblock.executor.storage.objects import ObjectStore
        from flowblock.executor.worker import Executor
        from flowblock.identity.s3 import load_credentials

        n = next(_datasets)
        self.dataset = f"{prefix}{n}"
        self.frame = frame.assign(patient_id=[f"{self.dataset}-{p}" for p in frame["patient_id"]])
        self.pool = pool
        self.store = ObjectStore(
            s3_server.endpoint, load_credentials(demo_world.data_dir, "Hospital")
        )
        import_table(self.frame, self.dataset, pool(demo_world.identity("steward"), "records"),
                     self.store)  # fmt: skip
        hospital = demo_world.authority("Hospital")
        #: Each patient's identity, to act as them (revoke, read their receipts).
        self.patients = {p: hospital.issue(p, "patient") for p in self.frame["patient_id"]}
        enrol(pool(demo_world.identity("steward")), self.patients.values())
        self.consenting = list(self.frame["patient_id"][:consenting])

        def grant(patient: str) -> None:  # each patient's own gateway, closed when done
            with Gateway(pool.address, self.patients[patient], timeout=60) as gate:
                Client(gate).consent.grant(self.dataset, "org:University", "C", "research")

        with ThreadPoolExecutor(8) as threads:
            list(threads.map(grant, self.consenting))
        self.executor = Executor(
            pool(demo_world.identity("executor", org="Hospital")),
            self.store,
            "Hospital",
            policy=policy,
        )
        self.admin = pool(demo_world.identity("admin", org="Hospital"))
        self.alice = Client(pool.gateway(demo_world.identity("alice")))

    @property
    def cohort(self) -> pd.DataFrame:
        """The consenting patients' rows: what every computation sees."""
        return self.frame[self.frame["patient_id"].isin(self.consenting)]

    def consent(self, patient) -> Any:  # flowblock.consent.Consent
        """A patient's (their id or identity) ``client.consent``, on the study's pool."""
        from flowblock.client import Client

        identity = self.patients[patient] if isinstance(patient, str) else patient
        return Client(self.pool.gateway(identity)).consent

    def current_rows(self) -> pd.DataFrame:
        """Every patient's rows as the data side reads them now: each record's current
        version, deleted records left out (the executor's cached parts included)."""
        everyone = dict.fromkeys(self.frame["patient_id"])
        return self.executor.datasets.cohort_rows(self.dataset, everyone).frame

    def expected_mean(self, patients: list[str], column: str = "systolic") -> float:
        """The exact mean of ``column`` over these patients' rows."""
        return float(self.frame[self.frame["patient_id"].isin(patients)][column].mean())

    def ask(self, method: str, params: dict | None = None, epsilon: float | None = None):
        """alice asks (for research), the executor runs it if approved; her job."""
        job = self.alice.compute(method, self.dataset, params or {}, "research", epsilon=epsilon)
        if job.status == "APPROVED":
            self.executor.process(job.token_id)
        return job
