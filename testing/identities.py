"""Demo organisations and people in a temporary data directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from flowblock.identity import CertificateAuthority, Identity, load_wallet, wallet_path
from flowblock.stack import demo


@dataclass(frozen=True)
class DemoWorld:
    """The demo's organisations and people, created under ``data_dir``."""

    data_dir: Path

    def authority(self, org: str) -> CertificateAuthority:
        return CertificateAuthority.load(self.data_dir, org)

    def wallet(self, name: str, org: str | None = None) -> Path:
        """The wallet path of a demo person or node (``org`` needed for node names)."""
        return wallet_path(self.data_dir, org or self.organisation_of(name), name)

    def identity(self, name: str, org: str | None = None) -> Identity:
        return load_wallet(self.wallet(name, org))

    @staticmethod
    def organisation_of(name: str) -> str:
        for org, person, _ in demo.PEOPLE:
            if person == name:
                return org
        raise KeyError(f"{name!r} is not a demo person; pass org= for a node identity")


def make_demo_world(data_dir: str | os.PathLike[str]) -> DemoWorld:
    """Create the demo organisations and people under ``data_dir`` (idempotent)."""
    demo.create_demo(data_dir)
    return DemoWorld(Path(data_dir))
