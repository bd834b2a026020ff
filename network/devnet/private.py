"""Folders and files only their owner may read: the ledger holds every transaction's
arguments and results, so its files are 0600 in 0700 folders whatever the umask, and
a ledger from before this rule is brought under it when it is opened."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

FOLDER_MODE, FILE_MODE = 0o700, 0o600


def private_directory(path: Path) -> None:
    """Create ``path`` (and its parents) if need be, and make it the owner's alone."""
    path.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    path.chmod(FOLDER_MODE)  # mkdir's mode is cut by the umask, and an old folder keeps its own


def private_file(path: Path) -> None:
    """Create ``path`` if need be, readable and writable by the owner alone."""
    with suppress(FileExistsError):  # 0600 from its first byte, never briefly readable
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    path.chmod(FILE_MODE)
