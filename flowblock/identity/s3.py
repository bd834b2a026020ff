"""Each organisation's S3 credentials: generated once, kept beside its CA, never shown.

``flowblock network init`` makes them with the organisation's identities; only the
organisation's data side (its steward's imports and its executor) uses them, and a
researcher's notebook never has them. The secret is random, the file mode 0600, and
the access is scoped to the organisation's own bucket by the S3 server's config.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from flowblock.errors import ConfigError
from flowblock.identity import organisation_dir
from flowblock.identity.wallet import write_private


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str = ""
    bucket: str = ""

    def __repr__(self) -> str:  # never print a secret by accident
        return f"S3Credentials(access_key={self.access_key!r}, bucket={self.bucket!r})"


def bucket_name(org: str) -> str:
    """The bucket of an organisation's records: its name, lowercase, S3-legal (3-63)."""
    name = re.sub(r"[^a-z0-9-]", "-", org.lower()).strip("-")
    return (name + "-data")[:63]


def credentials_path(data_dir: str | os.PathLike[str], org: str) -> Path:
    return organisation_dir(data_dir, org) / "s3" / "credentials.json"


def ensure_credentials(data_dir: str | os.PathLike[str], org: str) -> tuple[S3Credentials, bool]:
    """The organisation's credentials, generated if missing; and whether they were."""
    path = credentials_path(data_dir, org)
    if path.exists():
        return load_credentials(data_dir, org), False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    credentials = S3Credentials(
        access_key="FB" + secrets.token_hex(9).upper(),
        secret_key=secrets.token_urlsafe(30),
        bucket=bucket_name(org),
    )
    write_private(
        path,
        json.dumps(
            {
                "access_key": credentials.access_key,
                "secret_key": credentials.secret_key,
                "bucket": credentials.bucket,
            }
        ).encode(),
    )
    return credentials, True


def load_credentials(data_dir: str | os.PathLike[str], org: str) -> S3Credentials:
    """The organisation's credentials where ``flowblock network init`` keeps them."""
    return read_credentials(credentials_path(data_dir, org), org)


def read_credentials(path: Path, org: str) -> S3Credentials:
    """Credentials from a JSON file of ``access_key``, ``secret_key`` and ``bucket``."""
    try:
        found = json.loads(path.read_text())
        return S3Credentials(found["access_key"], found["secret_key"], found["bucket"])
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(
            f"the S3 credentials of {org!r} at {path} are missing or unreadable; "
            "run 'flowblock network init'."
        ) from error
