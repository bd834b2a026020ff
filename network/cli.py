"""``flowblock network`` and ``flowblock verify``: the ledger network of this machine."""

from __future__ import annotations

from pathlib import Path

from traitlets import List, Unicode

from flowblock.cli.base import FlowBlockApp, wait_for_termination
from flowblock.errors import LedgerError
from flowblock.network.devnet import Devnet
from flowblock.network.organisations import ORDERER_ORGANISATION, initialise


class NetworkInitApp(FlowBlockApp):
    name = "flowblock network init"
    description = (
        "Create the organisations under the data directory: a certificate authority for "
        f"each, its admin, peer and executor identities, and the {ORDERER_ORGANISATION} "
        "organisation with its orderer. Idempotent: what exists is kept, never overwritten."
    )
    examples = "flowblock network init --org Hospital --org University"

    organisations = List(
        Unicode(),
        default_value=["Hospital", "University"],
        help="Names of the peer organisations; each gets a CA, an admin, a peer and an executor.",
    ).tag(config=True)
    aliases = {**FlowBlockApp.aliases, "org": "NetworkInitApp.organisations"}

    def start(self) -> None:
        self.positional()
        for step in initialise(self.data_path, self.organisations):
            print(step)


class NetworkUpApp(FlowBlockApp):
    name = "flowblock network up"
    description = (
        "Run the devnet: a peer for each organisation, an orderer and the channel, serving "
        "the Fabric Gateway API, with chaincodes reached as services (CCaaS). Runs until "
        "SIGTERM or Ctrl-C; the ledger persists in the data directory."
    )
    examples = "flowblock network up --listen 127.0.0.1:7051 --chaincode asset=127.0.0.1:9999"
    aliases = {
        **FlowBlockApp.aliases,
        "listen": "Devnet.listen",
        "chaincode": "Devnet.chaincodes",
        "channel": "Devnet.channel",
        "batch-timeout": "Devnet.batch_timeout",
        "batch-size": "Devnet.batch_size",
    }
    flags = {
        **FlowBlockApp.flags,
        "tls": ({"Devnet": {"tls": True}}, "Serve the gateway over TLS."),
    }

    classes = [Devnet]

    def start(self) -> None:
        self.positional()
        devnet = Devnet(parent=self, data_dir=str(self.data_path)).start()
        members = ", ".join(sorted(devnet.peers))
        print(
            f"flowblock network: gateway on {devnet.address}{' (TLS)' if devnet.tls else ''}, "
            f"channel {devnet.channel} "
            f"at block {devnet.ledger.height}, peers of {members}",
            flush=True,
        )
        try:
            wait_for_termination()
        finally:
            devnet.stop()
            print("flowblock network: stopped", flush=True)


class NetworkApp(FlowBlockApp):
    name = "flowblock network"
    description = "The ledger network: organisations, identities, peers and orderer."
    subcommands = {
        "init": (NetworkInitApp, "Create the organisations and node identities."),
        "up": (NetworkUpApp, "Run the devnet, the embedded Fabric network."),
    }


class VerifyApp(FlowBlockApp):
    name = "flowblock verify"
    description = (
        "Check the ledger: every block's link to the one before, the hash of its "
        "transactions, the orderer's signature, and every valid transaction's creator "
        "signature and endorsements. Names the block where anything is wrong."
    )
    channel = Unicode("flowblock", help="The channel whose ledger to check.").tag(config=True)
    blocks = Unicode(
        "", help="A block file to check instead of the channel's in the data directory."
    ).tag(config=True)
    aliases = {
        **FlowBlockApp.aliases,
        "channel": "VerifyApp.channel",
        "blocks": "VerifyApp.blocks",
    }

    def start(self) -> None:
        from flowblock.network.verify import verify_chain

        self.positional()
        path = self.blocks or str(self.data_path / "devnet" / self.channel / "blocks.bin")
        if not Path(path).is_file():
            raise LedgerError(
                f"there is no ledger at {path}; start one with 'flowblock network up'."
            )
        report = verify_chain(path)
        for finding in report.findings:
            print(finding)
        if not report.ok:
            raise LedgerError(
                f"the ledger at {path} does not verify: {len(report.findings)} problem(s), "
                f"the first in block {report.first_bad_block}."
            )
        if report.torn_tail is not None:
            print(
                f"block {report.torn_tail} was being written when the devnet stopped and "
                "never committed; the devnet drops it when it starts."
            )
        print(
            f"ledger verified: {report.blocks} blocks, {report.transactions} transactions "
            f"({report.valid} valid); chain, hashes and signatures check."
        )
