"""The organisations of a network and the identities each one's nodes need.

``flowblock network init`` creates, under a data directory, one certificate authority
per organisation and the identities Fabric and FlowBlock run with: an admin, a peer
(with its TLS certificate) and an executor per organisation, S3 credentials for each
organisation's own bucket, and an orderer organisation with its orderer. Running it
again keeps everything that exists and adds what is missing; no key is ever replaced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from flowblock.identity import CertificateAuthority, organisation_dir, wallet_path
from flowblock.identity.certificates import check_organisation
from flowblock.identity.s3 import credentials_path, ensure_credentials

#: The organisation that runs the ordering service, as in Fabric's test network.
ORDERER_ORGANISATION: Final = "Orderer"
#: Identities every peer organisation gets: name -> role.
PEER_ORG_IDENTITIES: Final = {"admin": "admin", "peer0": "peer", "executor": "executor"}
#: Names a peer's TLS certificate is valid for, on one machine.
LOCAL_HOSTS: Final = ["localhost", "127.0.0.1"]
#: Identities of the orderer organisation: name -> role.
ORDERER_ORG_IDENTITIES: Final = {"admin": "admin", "orderer0": "orderer"}


@dataclass(frozen=True)
class Step:
    """One thing ``init`` looked at: what it is, where, and whether it was created."""

    what: str
    path: Path
    created: bool
    kind: str = "identity"  # or "ca", "tls"

    def __str__(self) -> str:
        return f"{'created' if self.created else 'kept   '}  {self.what:<34} {self.path}"


def ensure_authority(data_dir: Path, org: str) -> tuple[CertificateAuthority, Step]:
    """The CA of ``org``, created if the organisation does not exist yet."""
    path = organisation_dir(data_dir, org) / "ca"
    if path.exists():
        return CertificateAuthority.load(data_dir, org), Step(f"CA of {org}", path, False, "ca")
    return CertificateAuthority.create(data_dir, org), Step(f"CA of {org}", path, True, "ca")


def ensure_identity(data_dir: Path, authority: CertificateAuthority, name: str, role: str) -> Step:
    """The wallet of ``name``, issued if missing, checked against its CA if present."""
    path = wallet_path(data_dir, authority.organisation, name)
    what = f"{role} {name} of {authority.organisation}"
    if path.exists():
        authority.load_member(data_dir, name)
        return Step(what, path, False)
    authority.issue_wallet(data_dir, name, role)
    return Step(what, path, True)


def ensure_tls(data_dir: Path, authority: CertificateAuthority, name: str) -> Step:
    """The TLS server certificate of node ``name``, issued if missing."""
    path = wallet_path(data_dir, authority.organisation, name) / "tls"
    what = f"TLS certificate of {name} of {authority.organisation}"
    if (path / "server.key").exists():
        return Step(what, path, False, "tls")
    authority.issue_tls(path, LOCAL_HOSTS)
    return Step(what, path, True, "tls")


def ensure_s3(data_dir: Path, org: str) -> Step:
    """The organisation's S3 credentials for its own bucket, generated if missing."""
    _, created = ensure_credentials(data_dir, org)
    return Step(f"S3 credentials of {org}", credentials_path(data_dir, org), created, "s3")


def initialise(
    data_dir: str | os.PathLike[str], organisations: list[str] | tuple[str, ...]
) -> list[Step]:
    """Create (or complete) the organisations and node identities under ``data_dir``."""
    data_dir = Path(data_dir).expanduser()
    for org in organisations:
        check_organisation(org)
    plan = [(org, PEER_ORG_IDENTITIES) for org in dict.fromkeys(organisations)]
    plan.append((ORDERER_ORGANISATION, ORDERER_ORG_IDENTITIES))
    steps: list[Step] = []
    for org, identities in plan:
        authority, step = ensure_authority(data_dir, org)
        steps.append(step)
        steps.extend(
            ensure_identity(data_dir, authority, name, role) for name, role in identities.items()
        )
        if org != ORDERER_ORGANISATION:
            steps.append(ensure_tls(data_dir, authority, "peer0"))
            steps.append(ensure_s3(data_dir, org))
    return steps
