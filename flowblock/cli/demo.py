"""``flowblock demo``: the demo organisations and people on this machine."""

from __future__ import annotations

from flowblock.cli.base import FlowBlockApp
from flowblock.cli.identity import describe
from flowblock.demo import create_demo
from flowblock.identity import load_wallet


class DemoApp(FlowBlockApp):
    name = "flowblock demo"
    description = (
        "Set up the demo on this machine: the Hospital (holds the data) and the University "
        "(its researchers), their certificate authorities, nodes and people, under the data "
        "directory. Idempotent: run it again and everything made before is kept."
    )
    examples = "flowblock demo --data-dir /tmp/flowblock-demo"

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
