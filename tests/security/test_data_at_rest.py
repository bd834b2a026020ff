"""Finding 2 of issue 17: FlowBlock's data at rest is its user's alone.

Another user of the machine must not read, change or even list what FlowBlock keeps in
its data directory: the organisations' keys and credentials, and the records in the
object store. Every folder is 0700 and every file 0600, whatever umask FlowBlock was
started under. (The devnet's block store and state database: test_data_at_rest_devnet.)
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flowblock.cli import main

#: Files SeaweedFS itself makes 0644 whatever the umask (it writes a volume's ``.vif``
#: through a temporary file and then chmods it); they describe a volume, hold no record,
#: and sit in a 0700 folder that no one else can enter.
SEAWEEDFS_FORCED_0644 = (".vif",)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run under ``mask``, as a user with a permissive login shell would."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def not_private(root: Path, exempt: tuple[str, ...] = ()) -> list[str]:
    """Every folder under ``root`` (and ``root``) that is not 0700, every file not 0600."""
    found = []
    for path in [root, *sorted(root.rglob("*"))]:
        if path.is_symlink():
            continue
        if path.is_dir():
            if mode(path) != 0o700:
                found.append(f"{path} {mode(path):04o}")
        elif path.is_socket():
            if mode(path) & 0o077:
                found.append(f"{path} {mode(path):04o}")
        elif mode(path) != 0o600 and path.suffix not in exempt:
            found.append(f"{path} {mode(path):04o}")
    return found


def open_to_others(root: Path) -> list[str]:
    """Every path under ``root`` another user could open: it grants group or others
    access, and every folder above it up to ``root`` lets them pass."""
    found = []
    for path in sorted(root.rglob("*")):
        above = [folder for folder in path.parents if folder == root or root in folder.parents]
        if all(mode(folder) & 0o011 for folder in above) and mode(path) & 0o077:
            found.append(f"{path} {mode(path):04o}")
    return found


# -- what the command line writes -----------------------------------------------------


@pytest.mark.unit
def test_network_init_under_a_permissive_umask_writes_only_private_files(tmp_path, capsys):
    data_dir = tmp_path / "flowblock"
    with umask(0o022):
        assert main(["network", "init", "--data-dir", str(data_dir)]) == 0
    capsys.readouterr()
    assert (data_dir / "organizations").is_dir()
    assert not_private(data_dir) == []


@pytest.mark.unit
def test_a_data_directory_left_open_is_made_private_when_a_command_uses_it(tmp_path, capsys):
    data_dir = tmp_path / "flowblock"
    with umask(0o077):
        assert main(["network", "init", "--data-dir", str(data_dir)]) == 0
    data_dir.chmod(0o755)
    assert main(["identity", "list", "--data-dir", str(data_dir)]) == 0
    capsys.readouterr()
    assert mode(data_dir) == 0o700


@pytest.mark.unit
def test_the_command_leaves_its_callers_umask_as_it_was(tmp_path, capsys):
    """``main`` runs in-process too (tests, notebooks): it restores the umask it found."""
    with umask(0o022):
        main(["network", "init", "--data-dir", str(tmp_path / "flowblock")])
        assert os.umask(0o022) == 0o022
    capsys.readouterr()


# -- what the object store writes -------------------------------------------------------


def test_the_object_stores_files_are_private_once_it_holds_records(s3_server, demo_world):
    from flowblock.executor.storage.objects import ObjectStore
    from flowblock.identity.s3 import load_credentials

    store = ObjectStore(s3_server.endpoint, load_credentials(demo_world.data_dir, "Hospital"))
    store.put("at-rest/record.parquet", b"a patient's record")
    directory = Path(s3_server.directory)
    assert any(directory.joinpath("data").rglob("*.dat")), "no volume written yet"
    assert not_private(directory, exempt=SEAWEEDFS_FORCED_0644) == []
    assert open_to_others(directory) == []


def test_a_store_left_readable_by_an_older_version_is_made_private_at_start(tmp_path, demo_world):
    from flowblock.executor.storage.objects import ObjectStore
    from flowblock.executor.storage.seaweedfs import SeaweedFS
    from flowblock.identity.s3 import load_credentials

    hospital = load_credentials(demo_world.data_dir, "Hospital")
    directory = tmp_path / "s3"
    with umask(0o022):
        server = SeaweedFS(directory, {"Hospital": hospital}).start()
        try:
            ObjectStore(server.endpoint, hospital).put("at-rest/a", b"a record")
        finally:
            server.stop(graceful=False)  # a clean stop takes SeaweedFS 15 s; the data is kept
        for path in [directory, *directory.rglob("*")]:
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)
        server = SeaweedFS(directory, {"Hospital": hospital}).start()
    try:
        assert ObjectStore(server.endpoint, hospital).get("at-rest/a") == b"a record"
        assert not_private(directory, exempt=SEAWEEDFS_FORCED_0644) == []
        assert open_to_others(directory) == []
    finally:
        server.stop(graceful=False)
