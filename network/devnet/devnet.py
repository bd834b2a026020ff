"""The embedded ledger for one machine: two organisations' peers, an orderer, a channel.

It serves the Fabric Gateway API on a local port, runs chaincode over the chaincode
protocol like a peer (each chaincode is a service at an address, as with Fabric's
CCaaS), endorses by simulation, orders into hash-chained blocks, validates and commits
to a persistent ledger, and survives being killed at any moment.
"""

from __future__ import annotations

import logging
from concurrent import futures
from pathlib import Path

import grpc
from fabric_protos.common import policies_pb2
from fabric_protos.gateway import gateway_pb2_grpc
from traitlets import Bool, Dict, Enum, Float, Int, Unicode
from traitlets.config import LoggingConfigurable

from flowblock.errors import ConfigError
from flowblock.identity import CertificateAuthority, list_organisations, load_wallet, wallet_path
from flowblock.identity.certificates import msp_id
from flowblock.ledger.channel import genesis_block, msp_config
from flowblock.ledger.gateway import message_size_options
from flowblock.network.devnet.chaincode_client import ChaincodeConnection
from flowblock.network.devnet.gateway_service import GatewayService
from flowblock.network.devnet.ledger import BLOCKS_FILE, ChannelLedger
from flowblock.network.devnet.orderer import Orderer, sign_block
from flowblock.network.devnet.peer import Peer
from flowblock.network.devnet.private import private_directory
from flowblock.network.organisations import ORDERER_ORGANISATION
from flowblock.ports import EXCLUSIVE_PORT, bind

log = logging.getLogger(__name__)
PEER_NAME, ORDERER_NAME = "peer0", "orderer0"


#: The ledger's format, kept beside its blocks: 2 keeps cohorts in private data; the
#: ledgers before it (no file) held usage receipts in clear in every block.
LEDGER_FORMAT, FORMAT_FILE = "2", "FORMAT"


def check_ledger_format(ledger_dir: Path, data_dir: Path) -> None:
    """Refuse a ledger of an earlier format (never read its receipts); mark a new one."""
    marker = ledger_dir / FORMAT_FILE
    if not (ledger_dir / BLOCKS_FILE).exists():
        private_directory(ledger_dir)
        marker.write_text(LEDGER_FORMAT + "\n")  # before the first block: never unmarked
        return
    found = marker.read_text().strip() if marker.exists() else "1"
    if found != LEDGER_FORMAT:
        raise ConfigError(
            f"the ledger in {ledger_dir} was written by an earlier FlowBlock (format "
            f"{found}), which kept usage receipts in clear in every block; it is not "
            f"opened. Recreate the data directory: move {data_dir} away and run "
            "'scripts/demo' (or 'flowblock demo') again."
        )


class Devnet(LoggingConfigurable):
    """A Fabric network in one process, for one machine."""

    data_dir = Unicode(help="Data directory holding the organisations (from 'network init').")
    listen = Unicode(
        "127.0.0.1:7051", help="Address the Fabric Gateway service listens on (port 0: any free)."
    ).tag(config=True)
    channel = Unicode("flowblock", help="Name of the channel.").tag(config=True)
    batch_timeout = Float(
        0.02, help="Seconds the orderer waits after a block's first transaction before cutting it."
    ).tag(config=True)
    batch_size = Int(100, help="Most transactions in one block.").tag(config=True)
    preferred_max_bytes = Int(
        2 * 1024 * 1024,
        help="A block is cut before a transaction would take it past this size (a bigger "
        "transaction gets a block of its own), as Fabric's PreferredMaxBytes.",
    ).tag(config=True)
    chaincodes = Dict(
        value_trait=Unicode(),
        help="Chaincodes on the channel: name -> address of its chaincode-as-a-service server.",
    ).tag(config=True)
    endorsement_rule = Enum(
        ["MAJORITY", "ALL", "ANY"],
        "MAJORITY",
        help="How many organisations must endorse a transaction (fixed when the channel is made).",
    ).tag(config=True)
    gateway_organisation = Unicode(
        "", help="Organisation whose peer evaluates by default; default: the first."
    ).tag(config=True)
    max_workers = Int(
        256,
        help="Threads serving gateway requests. Each open event stream and each waiting "
        "commit-status call holds one; calls beyond this are refused (RESOURCE_EXHAUSTED) "
        "rather than left to hang.",
    ).tag(config=True)
    max_clock_skew = Float(
        300.0,
        help="Seconds a proposal's time may differ from the devnet's clock; chaincode takes "
        "its time from the proposal (expiries, audit times), so a skewed one is refused.",
    ).tag(config=True)
    tls = Bool(
        False,
        help="Serve the gateway over TLS with the gateway organisation's peer certificate "
        "(peer0/tls/server.crt from 'network init'); clients trust its tls/ca.crt.",
    ).tag(config=True)

    @property
    def ledger_dir(self) -> Path:
        return Path(self.data_dir).expanduser() / "devnet" / self.channel

    def start(self) -> Devnet:
        data_dir = Path(self.data_dir).expanduser()
        orderer_identity = load_wallet(wallet_path(data_dir, ORDERER_ORGANISATION, ORDERER_NAME))
        private_directory(self.ledger_dir.parent)  # every channel's ledger, the owner's alone
        check_ledger_format(self.ledger_dir, data_dir)
        self.ledger = ChannelLedger(self.ledger_dir, self._genesis(data_dir, orderer_identity))
        self.peers: dict[str, Peer] = {}
        for member in self.ledger.config.application:
            org = member.name.removesuffix("MSP")
            identity = load_wallet(wallet_path(data_dir, org, PEER_NAME))
            connections = {
                name: ChaincodeConnection(name, address)
                for name, address in self.chaincodes.items()
            }
            self.peers[identity.msp_id] = Peer(
                identity, self.ledger.state, connections, self.channel, self.ledger.config.writers
            )
        local = msp_id(self.gateway_organisation) if self.gateway_organisation else min(self.peers)
        self.orderer = Orderer(
            orderer_identity,
            self.ledger.membership,
            self.channel,
            self.ledger.commit,
            self.ledger.height,
            self.ledger.last_header_hash(),
            writers=self.ledger.config.writers,
            batch_size=self.batch_size,
            batch_timeout=self.batch_timeout,
            preferred_max_bytes=self.preferred_max_bytes,
        )
        self._server = grpc.server(
            futures.ThreadPoolExecutor(self.max_workers, "gateway"),
            maximum_concurrent_rpcs=self.max_workers,
            options=[EXCLUSIVE_PORT, *message_size_options()],
        )
        credentials = None
        if self.tls:
            tls_dir = (
                wallet_path(data_dir, self.peers[local].identity.organisation, PEER_NAME) / "tls"
            )
            credentials = grpc.ssl_server_credentials(
                [((tls_dir / "server.key").read_bytes(), (tls_dir / "server.crt").read_bytes())]
            )
        try:
            port = bind(self._server, self.listen, "the devnet's gateway", credentials)
        except ConfigError:
            self._close_ledger()
            raise
        self.orderer.start()
        self.address = f"{self.listen.rsplit(':', 1)[0]}:{port}"
        gateway_pb2_grpc.add_GatewayServicer_to_server(
            GatewayService(
                self.address,
                self.channel,
                self.peers,
                local,
                self.orderer,
                self.ledger,
                max_clock_skew=self.max_clock_skew,
            ),
            self._server,
        )
        self._server.start()
        return self

    def _genesis(self, data_dir: Path, orderer):
        """Block 0 for a new channel, from the organisations under the data directory."""
        if (self.ledger_dir / BLOCKS_FILE).exists():
            return None
        peer_orgs = [
            org
            for org in list_organisations(data_dir)
            if org != ORDERER_ORGANISATION and wallet_path(data_dir, org, PEER_NAME).exists()
        ]
        if not peer_orgs:
            raise ConfigError(
                f"no organisation with a peer under {data_dir}; run 'flowblock network init' first."
            )

        def config(org: str):
            return msp_config(
                msp_id(org), [CertificateAuthority.load(data_dir, org).certificate_pem()]
            )

        block = genesis_block(
            self.channel,
            [config(org) for org in peer_orgs],
            [config(ORDERER_ORGANISATION)],
            orderer,
            rule=policies_pb2.ImplicitMetaPolicy.Rule.Value(self.endorsement_rule),
        )
        sign_block(block, orderer)
        return block

    def stop(self, grace: float = 1.0) -> None:
        """Stop taking requests, order and commit what was accepted, close the ledger."""
        self._server.stop(grace).wait()
        self.orderer.stop()
        self._close_ledger()

    def _close_ledger(self) -> None:
        for peer in self.peers.values():
            for connection in peer.chaincodes.values():
                connection.close()
        self.ledger.close()
