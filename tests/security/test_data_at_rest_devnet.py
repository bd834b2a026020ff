"""Finding 2 of issue 17, the devnet's half: its block store and state database are
readable by their owner alone (0600 files in 0700 folders), whatever the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flowblock.network.devnet.ledger import ChannelLedger

CHANNEL = "flowblock"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _assert_private(ledger_dir: Path, *folders: Path) -> None:
    for folder in (*folders, ledger_dir):
        assert _mode(folder) == 0o700, f"{folder} is {_mode(folder):04o}"
    files = sorted(ledger_dir.iterdir())
    assert {path.name for path in files} >= {"blocks.bin", "state.sqlite"}
    for path in files:
        assert _mode(path) == 0o600, f"{path} is {_mode(path):04o}"


def test_a_running_devnets_ledger_is_its_owners_alone(devnet, demo_world):
    contract = devnet.gateway(demo_world.identity("alice")).get_network(CHANNEL)
    contract.get_contract("asset").submit("Create", "at-rest", "alice", 1)
    devnet_dir = devnet.data_dir / "devnet"
    _assert_private(devnet_dir / CHANNEL, devnet_dir)  # the WAL files too, while open


@pytest.mark.unit
def test_the_ledger_files_are_private_under_a_permissive_umask(tmp_path, demo_world):
    from flowblock.network.devnet import Devnet

    previous = os.umask(0o000)
    try:
        devnet = Devnet(data_dir=str(demo_world.data_dir), channel="at-rest")
        ledger_dir = tmp_path / "devnet" / "at-rest"
        ChannelLedger(
            ledger_dir, devnet._genesis(demo_world.data_dir, _orderer(demo_world))
        ).close()
    finally:
        os.umask(previous)
    _assert_private(ledger_dir)


@pytest.mark.unit
def test_an_existing_ledger_left_readable_is_made_private_again(tmp_path, demo_world):
    from flowblock.network.devnet import Devnet

    devnet = Devnet(data_dir=str(demo_world.data_dir), channel="again")
    ledger_dir = tmp_path / "devnet" / "again"
    ChannelLedger(ledger_dir, devnet._genesis(demo_world.data_dir, _orderer(demo_world))).close()
    for path in (ledger_dir.parent, ledger_dir, *ledger_dir.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    ChannelLedger(ledger_dir).close()
    _assert_private(ledger_dir)


def _orderer(demo_world):
    from flowblock.identity import load_wallet, wallet_path
    from flowblock.network.devnet.devnet import ORDERER_NAME
    from flowblock.network.organisations import ORDERER_ORGANISATION

    return load_wallet(wallet_path(demo_world.data_dir, ORDERER_ORGANISATION, ORDERER_NAME))
