"""``flowblock network``: the organisations and the ledger network of this machine."""

from __future__ import annotations

from traitlets import List, Unicode

from flowblock.cli.base import FlowBlockApp
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


class NetworkApp(FlowBlockApp):
    name = "flowblock network"
    description = "The ledger network: organisations, identities, peers and orderer."
    subcommands = {"init": (NetworkInitApp, "Create the organisations and node identities.")}
