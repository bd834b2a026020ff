"""A server of ours holds its port alone: a second one on it is one sentence, never a
second ledger sharing the port (gRPC's SO_REUSEPORT default split connections)."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest

from flowblock.chaincode import Chaincode, ChaincodeServer
from flowblock.cli import main
from flowblock.errors import ConfigError
from flowblock.testing.asset_transfer import AssetTransfer


@pytest.fixture
def taken():
    """A chaincode server of ours listening on a port: the port that is taken."""
    server = ChaincodeServer(Chaincode([AssetTransfer()]), "asset").start()
    yield server.address
    server.stop(grace=None)


def test_a_second_chaincode_server_on_a_taken_port_is_refused(taken):
    with pytest.raises(ConfigError, match=r"cannot listen on .* the port is taken"):
        ChaincodeServer(Chaincode([AssetTransfer()]), "asset", taken)


def test_a_server_with_grpc_defaults_cannot_share_the_port_either(taken):
    other = grpc.server(futures.ThreadPoolExecutor(1))  # SO_REUSEPORT on, as gRPC defaults
    with pytest.raises(RuntimeError):
        other.add_insecure_port(taken)


def test_a_devnet_on_a_taken_port_is_one_sentence(capsys, data_dir, taken):
    assert main(["network", "init", "--data-dir", str(data_dir)]) == 0
    capsys.readouterr()
    code = main(["network", "up", "--data-dir", str(data_dir), "--listen", taken])
    err = capsys.readouterr().err
    assert code == 1
    assert f"the devnet's gateway cannot listen on {taken}: the port is taken" in err
    assert err.count("\n") == 1 and "Traceback" not in err
