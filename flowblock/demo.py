"""The demo world: a hospital that holds the data and a university whose researchers ask.

Shared by ``flowblock demo``, the tests and the example notebooks, so they all talk
about the same people.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from flowblock.identity import CertificateAuthority
from flowblock.network.organisations import Step, ensure_identity, initialise

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
