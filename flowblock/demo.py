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
