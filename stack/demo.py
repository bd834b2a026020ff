"""The demo world: a hospital that holds the data and a university whose researchers ask.

Shared by ``flowblock demo``, the tests and the example notebooks, so they all talk
about the same people.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Final

from flowblock.identity import CertificateAuthority
from flowblock.network.organisations import Step, ensure_identity, initialise

if TYPE_CHECKING:
    from flowblock.ledger import GatewayPool

DATA_ORGANISATION: Final = "Hospital"
RESEARCH_ORGANISATION: Final = "University"
ORGANISATIONS: Final = (DATA_ORGANISATION, RESEARCH_ORGANISATION)

#: The demo's people: (organisation, name, role).
PEOPLE: Final = (
    (DATA_ORGANISATION, "steward", "steward"),
    (DATA_ORGANISATION, "auditor", "auditor"),
    (DATA_ORGANISATION, "patient1", "patient"),
    (DATA_ORGANISATION, "patient2", "patient"),
    (DATA_ORGANISATION, "patient3", "patient"),
    (RESEARCH_ORGANISATION, "alice", "researcher"),
    (RESEARCH_ORGANISATION, "bob", "researcher"),
)


def create_demo(data_dir: str | os.PathLike[str]) -> list[Step]:
    """The demo organisations, their nodes and their people, created where missing."""
    data_dir = Path(data_dir).expanduser()
    steps = initialise(data_dir, ORGANISATIONS)
    authorities = {org: CertificateAuthority.load(data_dir, org) for org in ORGANISATIONS}
    steps += [ensure_identity(data_dir, authorities[org], name, role) for org, name, role in PEOPLE]
    return steps


#: The demo's tabular dataset: vitals of a few hundred synthetic patients.
VITALS: Final = "vitals"
DIAGNOSES: Final = ("normal", "hypertension", "diabetes", "asthma", "copd")


def synthetic_vitals(patients: int = 300, seed: int = 2026):  # -> pandas.DataFrame
    """One row of vitals per synthetic patient, plausible and reproducible.

    Patients are ``patient1`` … so the demo patients with wallets own rows. Blood
    pressure rises with age, smoking and BMI, as a researcher would expect to find.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, patients)
    smoker = rng.random(patients) < 0.22
    bmi = rng.normal(26.5, 4.5, patients).clip(16, 48).round(1)
    systolic = 100 + 0.45 * age + 6 * smoker + 0.6 * (bmi - 25) + rng.normal(0, 9, patients)
    diastolic = 0.55 * systolic + rng.normal(8, 6, patients)
    diagnosis = np.where(
        systolic > 150,
        "hypertension",
        rng.choice(DIAGNOSES, patients, p=[0.6, 0.1, 0.12, 0.1, 0.08]),
    )
    return pd.DataFrame(
        {
            "patient_id": [f"patient{n}" for n in range(1, patients + 1)],
            "age": age,
            "sex": rng.choice(["F", "M"], patients),
            "systolic": systolic.round().astype(int),
            "diastolic": diastolic.round().astype(int),
            "heart_rate": rng.normal(74, 11, patients).clip(45, 140).round().astype(int),
            "bmi": bmi,
            "smoker": smoker,
            "diagnosis": diagnosis,
        }
    )


#: The demo's images dataset: chest X-rays labelled normal / pneumonia, one per patient.
XRAY: Final = "xray"
XRAY_IMAGES: Final = 160
DATASETS: Final = (VITALS, XRAY)

#: The purpose the demo's patients consent to and its rules approve at once.
DEMO_PURPOSE: Final = "research"
#: Share of the synthetic patients who consent to research computations.
CONSENTING: Final = 0.7
#: The ε each demo researcher may spend on ``vitals`` in differential-privacy mode, and
#: the most one request may spend and still be approved at once.
DEMO_BUDGET: Final = 5.0
DEMO_MAX_QUERY_EPSILON: Final = 1.0


def xray_consenting() -> set[str]:
    """The demo patients who let researchers use their X-ray: three in four."""
    return {f"patient{n}" for n in range(1, XRAY_IMAGES + 1) if n % 4}


def demo_rules() -> dict:
    """The Hospital's auto-approval rules in the demo."""
    return {
        "auto_approve": {
            "methods": [
                "count",
                "sum",
                "mean",
                "std",
                "histogram",
                "quantiles",
                "pneumonia-classify",
                "xray-case-count",
                "xray-train-classifier",
                "chart-of-result",
            ],
            "purposes": [DEMO_PURPOSE],
            "organisations": [RESEARCH_ORGANISATION],
            "max_epsilon": DEMO_MAX_QUERY_EPSILON,
        }
    }


def populate(data_dir: Path, stack) -> list[str]:  # stack: flowblock.stack.Stack
    """Give a running demo its data, algorithms, rules and consents; idempotent.

    Returns a line for each thing done, for the person watching.
    """
    from flowblock.ledger import GatewayPool

    gateways = GatewayPool(stack.devnet.address, stack.devnet.channel)
    try:
        return [
            _import_vitals(data_dir, stack, gateways),
            _import_xray(data_dir, stack, gateways),
            _publish_algorithms(data_dir, gateways),
            _record_consents(data_dir, gateways),
            _grant_budgets(data_dir, gateways),
        ]
    finally:
        gateways.close()


def _wallet(data_dir: Path, name: str, org: str = DATA_ORGANISATION):
    from flowblock.identity import load_wallet, wallet_path

    return load_wallet(wallet_path(data_dir, org, name))


def _import_vitals(data_dir: Path, stack, gateways: GatewayPool) -> str:
    from flowblock.executor.ingest import import_table

    records = gateways(_wallet(data_dir, "steward"), "records")
    report = import_table(synthetic_vitals(), VITALS, records, _store(data_dir, stack))
    return (
        f"Dataset {VITALS!r}: {report.rows} records in {report.parts} part(s), "
        f"{report.registered} newly registered."
    )


def _import_xray(data_dir: Path, stack, gateways: GatewayPool) -> str:
    from flowblock.executor.images import import_images
    from flowblock.executor.xray import write_xray_dataset

    folder = write_xray_dataset(data_dir / "demo-data" / XRAY, XRAY_IMAGES)
    records = gateways(_wallet(data_dir, "steward"), "records")
    report = import_images(folder, XRAY, records, _store(data_dir, stack))
    return (
        f"Dataset {XRAY!r}: {report.rows} chest X-rays (16 real, the rest augmented), "
        f"{report.registered} newly registered."
    )


def _store(data_dir: Path, stack):
    from flowblock.executor.storage.objects import ObjectStore
    from flowblock.identity.s3 import load_credentials

    return ObjectStore(stack.s3.endpoint, load_credentials(data_dir, DATA_ORGANISATION))


def _publish_algorithms(data_dir: Path, gateways: GatewayPool) -> str:
    from flowblock.executor.algorithms import publish_algorithms

    admin = _wallet(data_dir, "admin")
    new = publish_algorithms(gateways(admin, "catalogue"))
    gateways(admin).submit("SetRules", json.dumps(demo_rules()))
    return f"{len(new)} algorithm(s) published; the Hospital approves research requests at once."


def _grant_budgets(data_dir: Path, gateways: GatewayPool) -> str:
    """Each researcher's ε on ``vitals``, granted once (grants add up)."""
    admin = gateways(_wallet(data_dir, "admin"), "budget")
    researchers = [f"{name}@{org}" for org, name, role in PEOPLE if role == "researcher"]
    for researcher in researchers:
        if not json.loads(admin.evaluate("Get", VITALS, researcher))["granted"]:
            admin.submit("Grant", VITALS, researcher, DEMO_BUDGET)
    return (
        f"Researchers may spend ε={DEMO_BUDGET:g} each on {VITALS!r} in differential-privacy "
        f"mode, up to ε={DEMO_MAX_QUERY_EPSILON:g} a request."
    )


def _record_consents(data_dir: Path, gateways: GatewayPool) -> str:
    from flowblock.client import Client
    from flowblock.consent import enrol
    from flowblock.identity import wallet_path

    executor = gateways(_wallet(data_dir, "executor"), "consent")
    asked = executor.evaluate("WhoMayCompute", VITALS, "alice@University", DEMO_PURPOSE, 10_000, "")
    if json.loads(asked)["patients"]:
        return "Consents were recorded by an earlier run."
    hospital = CertificateAuthority.load(data_dir, DATA_ORGANISATION)
    patients = list(synthetic_vitals()["patient_id"])
    consenting = set(patients[: int(len(patients) * CONSENTING)])
    with_xray = xray_consenting()

    def identity_of(patient: str):
        own = wallet_path(data_dir, DATA_ORGANISATION, patient)
        return _wallet(data_dir, patient) if own.exists() else hospital.issue(patient, "patient")

    people = [name for org, name, role in PEOPLE if role == "patient"]
    identities = {p: identity_of(p) for p in sorted(consenting | with_xray | set(people))}
    # Their certificates carry pseudonyms: the Hospital records whose each one is.
    enrol(gateways(_wallet(data_dir, "steward")), identities.values())

    def grant(patient: str) -> None:
        consent = Client(gateways.gateway(identities[patient])).consent  # the pool's gateway
        for dataset in (VITALS,) * (patient in consenting) + (XRAY,) * (patient in with_xray):
            consent.grant(dataset, f"org:{RESEARCH_ORGANISATION}", "C", DEMO_PURPOSE)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(grant, sorted(consenting | with_xray)))
    return (
        f"{len(consenting)} patients consented to research on {VITALS!r}, "
        f"{len(with_xray)} on {XRAY!r}."
    )
