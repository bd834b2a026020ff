"""``flowblock demo``: ``flowblock up`` with the demo world, its data and its consents."""

from __future__ import annotations

from traitlets import Bool

from flowblock.cli.identity import describe
from flowblock.cli.stack import UpApp
from flowblock.demo import DATASETS, create_demo, populate
from flowblock.identity import load_wallet
from flowblock.stack import Stack


class DemoApp(UpApp):
    name = "flowblock demo"
    description = (
        "Run FlowBlock's demo on this machine: the Hospital (holds the data) and the "
        "University (its researchers) with their certificate authorities, nodes and people; "
        "the ledger (the devnet) running FlowBlock's chaincode; the S3 server; the executor; "
        "the dataset 'vitals' of 300 synthetic patients, 70% of whom consent to research; "
        "and the algorithms published. Writes <data-dir>/stack.json once everything "
        "answers; runs until SIGTERM, Ctrl-C or 'flowblock down'. Everything made before is kept."
    )
    examples = "flowblock demo --data-dir /tmp/flowblock-demo --listen 127.0.0.1:0"
    setup_only = Bool(False, help="Create the organisations and people, print them, and exit.").tag(
        config=True
    )
    flags = {
        **UpApp.flags,
        "setup-only": ({"DemoApp": {"setup_only": True}}, "Only create the demo people."),
    }

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

    def populate(self, stack: Stack) -> list[str]:
        return populate(self.data_path, stack)

    def datasets(self) -> list[str]:
        return list(DATASETS)
