"""``flowblock demo``: the demo organisations and people, and the ledger running for them."""

from __future__ import annotations

from traitlets import Bool

from flowblock.chaincode import ChaincodeServer
from flowblock.chaincode.contracts import CHAINCODE_NAME, flowblock_chaincode
from flowblock.cli.base import FlowBlockApp, wait_for_termination
from flowblock.cli.identity import describe
from flowblock.demo import PEOPLE, create_demo
from flowblock.identity import load_wallet, wallet_path
from flowblock.network.devnet import Devnet
from flowblock.stack import remove_stack_file, write_stack_file


class DemoApp(FlowBlockApp):
    name = "flowblock demo"
    description = (
        "Run FlowBlock's demo on this machine: the Hospital (holds the data) and the "
        "University (its researchers) with their certificate authorities, nodes and people, "
        "and the ledger (the devnet, serving the Fabric Gateway API) running FlowBlock's "
        "chaincode. Writes <data-dir>/stack.json once everything answers; "
        "runs until SIGTERM or Ctrl-C. Everything made before is kept."
    )
    examples = "flowblock demo --data-dir /tmp/flowblock-demo --listen 127.0.0.1:0"
    setup_only = Bool(False, help="Create the organisations and people, print them, and exit.").tag(
        config=True
    )
    aliases = {**FlowBlockApp.aliases, "listen": "Devnet.listen"}
    flags = {
        **FlowBlockApp.flags,
        "setup-only": ({"DemoApp": {"setup_only": True}}, "Only create the demo people."),
    }

    classes = [Devnet]

    def start(self) -> None:
        self.positional()
        steps = create_demo(self.data_path)
        created = sum(step.created for step in steps)
        print(
            f"FlowBlock demo in {self.data_path}: {created} created, {len(steps) - created} kept."
        )
        for step in steps:
            if step.kind == "identity":
                print("  " + describe(load_wallet(step.path), step.path))
        if not self.setup_only:
            self.run_ledger()

    def run_ledger(self) -> None:
        chaincode = ChaincodeServer(flowblock_chaincode(), CHAINCODE_NAME).start()
        devnet = Devnet(
            parent=self,
            data_dir=str(self.data_path),
            chaincodes={CHAINCODE_NAME: chaincode.address},
        )
        devnet.start()
        try:
            path = write_stack_file(
                self.data_path,
                {
                    "gateway": devnet.address,
                    "channel": devnet.channel,
                    "chaincodes": sorted(devnet.chaincodes),
                    "identities": {
                        name: {
                            "org": org,
                            "role": role,
                            "wallet": str(wallet_path(self.data_path, org, name)),
                        }
                        for org, name, role in PEOPLE
                    },
                    "datasets": [],
                },
            )
            print(
                f"Ledger up: Fabric Gateway on {devnet.address}, channel {devnet.channel}, "
                f"chaincode {CHAINCODE_NAME!r}; {path} says where everything is. "
                "Ctrl-C stops it.",
                flush=True,
            )
            wait_for_termination()
        finally:
            remove_stack_file(self.data_path)
            devnet.stop()
            chaincode.stop()
            print("FlowBlock demo stopped.", flush=True)
