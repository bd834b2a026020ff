"""``flowblock demo``: the demo world and the system running for it on this machine."""

from __future__ import annotations

import sys

from traitlets import Bool

from flowblock.cli.base import FlowBlockApp, wait_for_termination
from flowblock.cli.identity import describe
from flowblock.demo import DATA_ORGANISATION, PEOPLE, VITALS, create_demo, synthetic_vitals
from flowblock.identity import load_wallet, wallet_path
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
            self.import_demo_data(stack)
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

    def import_demo_data(self, stack: Stack) -> None:
        from flowblock.executor.ingest import import_table
        from flowblock.executor.storage.credentials import load_credentials
        from flowblock.executor.storage.objects import ObjectStore
        from flowblock.ledger import Gateway

        steward = load_wallet(wallet_path(self.data_path, DATA_ORGANISATION, "steward"))
        store = ObjectStore(stack.s3.endpoint, load_credentials(self.data_path, DATA_ORGANISATION))
        with Gateway(stack.devnet.address, steward) as gateway:
            records = gateway.get_network(stack.devnet.channel).get_contract("flowblock", "records")
            report = import_table(synthetic_vitals(), VITALS, records, store)
        print(
            f"Dataset {VITALS!r}: {report.rows} records in {report.parts} part(s), "
            f"{report.registered} newly registered.",
            file=sys.stderr,
        )
