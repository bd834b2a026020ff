"""``<data-dir>/stack.json``: where the parts of a FlowBlock running on one machine are.

The one-machine stack (``flowblock.stack``) writes it once every part answers and
removes it on a clean stop, so its presence means the stack is up. Clients, the CLI's
defaults, tests and dashboards read it. It never holds a secret: identities are named by
the paths of their wallets, keyed ``name@Organisation`` as grantees are on the ledger.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STACK_FILE = "stack.json"


def identity_key(name: str, organisation: str) -> str:
    """How stack.json names a person: ``alice@University`` (names repeat across organisations)."""
    return f"{name}@{organisation}"


def write_stack_file(data_dir: str | os.PathLike[str], stack: dict[str, Any]) -> Path:
    """Write ``stack.json`` atomically (readers never see half of it)."""
    path = Path(data_dir).expanduser() / STACK_FILE
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(stack, indent=2, sort_keys=True) + "\n")
    staging.replace(path)
    return path


def read_stack_file(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What the running stack says, or None when none runs for ``data_dir``."""
    path = Path(data_dir).expanduser() / STACK_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def remove_stack_file(data_dir: str | os.PathLike[str]) -> None:
    (Path(data_dir).expanduser() / STACK_FILE).unlink(missing_ok=True)
