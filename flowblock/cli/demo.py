"""``flowblock demo``: the demo world and the system running for it on this machine."""

from __future__ import annotations

import sys

from traitlets import Bool

from flowblock.cli.base import FlowBlockApp, wait_for_termination
from flowblock.cli.identity import describe
from flowblock.demo import PEOPLE, VITALS, create_demo, populate
from flowblock.identity import load_wallet
from flowblock.network.devnet import Devnet
from flowblock.stack import Stack, remove_stack_file, write_stack_file


class DemoApp(FlowBlockApp):
    name = "flowblock demo"
    description = (
        "Run FlowBlock's demo on this machine: the Hospital (holds the data) and the "
        "University (its researchers) with their certificate authorities, nodes and people; "
        "the ledger (the devnet, serving the Fabric Gateway API) running FlowBlock's "
        "chaincode; the S3 server (SeaweedFS) holding the Hospital's records; and the demo "
        "dataset 'vitals' imported. Writes <data-dir>/stack.json once everything answers; "
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
        kept = len(steps) - created
        print(f"FlowBlock demo in {self.data_path}: {created} created, {kept} kept.")
        for step in steps:
            if step.kind == "identity":
                print("  " + describe(load_wallet(step.path), step.path))
        if not self.setup_only:
            self.run()

    def run(self) -> None:
        stack = Stack(self.data_path, parent=self).start()
        try:
            for line in populate(self.data_path, stack):
                print(line, file=sys.stderr)
            path = write_stack_file(self.data_path, stack.describe(list(PEOPLE), [VITALS]))
            print(
                f"FlowBlock up: Fabric Gateway on {stack.devnet.address}, S3 on "
                f"{stack.s3.endpoint}; {path} says where everything is. Ctrl-C stops it.",
                flush=True,
            )
            wait_for_termination()
        finally:
            remove_stack_file(self.data_path)
            stack.stop()
            print("FlowBlock demo stopped.", flush=True)
