"""The devnet's disk fills up under load: it refuses, in a sentence, rather than corrupt
its ledger; once there is room again it starts on it, nothing committed lost, and
``flowblock verify`` passes.

The disk is a small tmpfs mounted for the test (a real ENOSPC, not a simulation), which
takes root; this machine's tests and CI run as root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flowblock.errors import FlowBlockError
from flowblock.ledger import Gateway
from flowblock.testing.ledger import DevnetProcess


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount's size=) at ``path``, unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for a full disk takes root")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """A file taking all of ``disk``'s free space but ``leave`` bytes."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with filler.open("wb") as out:
        out.write(b"\0" * max(0, free - leave))
    return filler


def verify(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowblock", "verify", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def load_until_refused(contract, committed: list[str], workers: int = 3) -> list[str]:
    """Create assets from ``workers`` threads until the devnet refuses; the refusals
    (those of transactions in the block that failed, and those after)."""
    refusals: list[str] = []

    def load(worker: int) -> None:
        for n in range(100_000):
            asset = f"full{worker}-{n}"
            try:
                if contract.submit_async("Create", asset, "alice", n).status().successful:
                    committed.append(asset)
            except FlowBlockError as refused:  # in the block that failed, or refused after
                refusals.append(str(refused))
                if len(refusals) > 2 * workers:
                    return

    threads = [threading.Thread(target=load, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return refusals


def test_a_full_disk_is_refused_not_corruption_and_the_ledger_verifies_after(
    demo_world, asset_chaincode, tmp_path, rng
):
    alice = demo_world.identity("alice")
    with small_disk(tmp_path / "disk", "8m") as disk:
        data_dir = disk / "data"
        shutil.copytree(demo_world.data_dir, data_dir)
        committed: list[str] = []
        with DevnetProcess(data_dir, {"asset": asset_chaincode.address}) as devnet:
            with Gateway(devnet.address, alice, timeout=10) as gateway:
                contract = gateway.get_network("flowblock").get_contract("asset")
                for n in range(5):
                    contract.submit("Create", f"roomy{n}", "alice", n)
                    committed.append(f"roomy{n}")
                filler = fill(disk, leave=rng.randrange(16_000, 200_000))
                refusals = load_until_refused(contract, committed)
                # Refused, each in one line, and refused from then on (not a ledger
                # that goes on with a block missing).
                assert refusals, "nothing was refused on a full disk"
                assert all("\n" not in message for message in refusals), refusals
                with pytest.raises(FlowBlockError, match="could not be committed"):
                    contract.submit("Create", "still-full", "alice", 1)
            assert devnet.stop() == 0, "".join(devnet.output[-20:])
        filler.unlink()  # room again: the ledger as the full disk left it verifies
        checked = verify(data_dir)
        assert checked.returncode == 0, checked.stdout + checked.stderr

        # On the same files: it starts, holds every asset a client was told committed,
        # takes new transactions, and the ledger verifies.
        with DevnetProcess(data_dir, {"asset": asset_chaincode.address}) as devnet:
            with Gateway(devnet.address, alice, timeout=30) as gateway:
                contract = gateway.get_network("flowblock").get_contract("asset")
                assets = {asset["id"] for asset in json.loads(contract.evaluate("All"))}
                assert set(committed) <= assets
                contract.submit("Create", "after-the-disk-was-full", "alice", 1)
            assert devnet.stop() == 0
        checked = verify(data_dir)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        print(f"{len(committed)} committed; refused with: {sorted(set(refusals))}")


def test_a_full_disk_under_the_state_database_is_refused_saying_the_disk_is_full(
    demo_world, asset_chaincode, tmp_path, rng
):
    alice = demo_world.identity("alice")
    with small_disk(tmp_path / "disk", "8m") as disk:
        data_dir = disk / "data"
        shutil.copytree(demo_world.data_dir, data_dir)
        with DevnetProcess(data_dir, {"asset": asset_chaincode.address}) as devnet:
            devnet.gateway(alice).get_network("flowblock").get_contract("asset").submit(
                "Create", "roomy", "alice", 1
            )
            assert devnet.stop() == 0
        # The block store moves to a disk with room (a link the devnet follows), so that
        # it is the state database that meets the full disk.
        blocks = data_dir / "devnet" / "flowblock" / "blocks.bin"
        roomy = shutil.move(blocks, tmp_path / "blocks.bin")
        blocks.symlink_to(roomy)
        with (
            DevnetProcess(data_dir, {"asset": asset_chaincode.address}) as devnet,
            Gateway(devnet.address, alice, timeout=10) as gateway,
        ):
            contract = gateway.get_network("flowblock").get_contract("asset")
            fill(disk, leave=rng.randrange(16_000, 200_000))
            refusals = load_until_refused(contract, [])
        assert any("disk is full" in message for message in refusals), refusals
