"""The parts of FlowBlock running together on one machine, and ``stack.json``.

``<data-dir>/stack.json`` tells clients, tests and dashboards where everything is. It
is written only once every part answers, atomically, and removed on a clean stop, so
its presence means the stack is up. It never holds a secret: identities are named by
the paths of their wallets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STACK_FILE = "stack.json"


def write_stack_file(data_dir: str | os.PathLike[str], stack: dict[str, Any]) -> Path:
    """Write ``stack.json`` atomically (readers never see half of it)."""
    path = Path(data_dir).expanduser() / STACK_FILE
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(stack, indent=2, sort_keys=True) + "\n")
    staging.replace(path)
    return path


def read_stack_file(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    path = Path(data_dir).expanduser() / STACK_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def remove_stack_file(data_dir: str | os.PathLike[str]) -> None:
    (Path(data_dir).expanduser() / STACK_FILE).unlink(missing_ok=True)
