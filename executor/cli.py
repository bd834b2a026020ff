"""``flowblock data``: a steward brings their organisation's data into FlowBlock."""

from __future__ import annotations

import sys

from traitlets import Unicode

from flowblock.cli.base import FlowBlockApp
from flowblock.errors import ConfigError, InvalidArgument


class DataImportApp(FlowBlockApp):
    name = "flowblock data import"
    description = (
        "Import a table (CSV or Parquet, with a patient_id column) as a dataset: its rows "
        "are stored as Parquet parts in the organisation's S3 bucket and every record's "
        "hash is registered on the ledger. Needs the stack running ('flowblock demo' or "
        "'flowblock up'). Run it again after a failure: nothing is registered twice."
    )
    examples = "flowblock data import vitals.csv --dataset vitals"
    dataset = Unicode(help="Name of the dataset the rows belong to.").tag(config=True)
    steward = Unicode("steward", help="Name of the steward whose wallet signs.").tag(config=True)
    org = Unicode("Hospital", help="Organisation that holds the data.").tag(config=True)
    aliases = {
        **FlowBlockApp.aliases,
        "dataset": "DataImportApp.dataset",
        "as": "DataImportApp.steward",
        "org": "DataImportApp.org",
    }

    def start(self) -> None:
        (path,) = self.positional("file")
        if not self.dataset:
            raise InvalidArgument("--dataset", "given: the name of the dataset")
        from flowblock.executor.ingest import import_table, read_table
        from flowblock.executor.storage.credentials import load_credentials
        from flowblock.executor.storage.objects import ObjectStore
        from flowblock.identity import load_wallet, wallet_path
        from flowblock.ledger import Gateway
        from flowblock.stack import read_stack_file

        stack = read_stack_file(self.data_path)
        if stack is None:
            raise ConfigError(
                f"FlowBlock is not running for {self.data_path}; start it with 'flowblock demo'."
            )
        frame = read_table(path)
        steward = load_wallet(wallet_path(self.data_path, self.org, self.steward))
        store = ObjectStore(stack["s3"]["endpoint"], load_credentials(self.data_path, self.org))

        def progress(done: int, total: int) -> None:
            print(f"\rimported {done:,} of {total:,} records", end="", file=sys.stderr, flush=True)

        with Gateway(stack["gateway"], steward) as gateway:
            records = gateway.get_network(stack["channel"]).get_contract("flowblock", "records")
            report = import_table(frame, self.dataset, records, store, progress)
        print(file=sys.stderr)
        print(
            f"{report.dataset}: {report.rows:,} records in {report.parts} part(s); "
            f"{report.registered:,} registered, {report.updated:,} updated, "
            f"{report.unchanged:,} unchanged."
        )


class ExecutorApp(FlowBlockApp):
    name = "flowblock executor"
    description = (
        "Run an organisation's executor on its own (flowblock up runs one already): it "
        "follows the ledger, claims its organisation's approved tokens and read requests, "
        "and computes on its data. Needs the stack's stack.json in the data directory."
    )
    examples = "flowblock executor --org Hospital --workers 4"
    aliases = {
        **FlowBlockApp.aliases,
        "org": "ExecutorSettings.organisation",
        "workers": "ExecutorSettings.workers",
    }

    @property
    def classes(self):  # type: ignore[override]
        from flowblock.executor.settings import ExecutorSettings

        return [type(self), ExecutorSettings]

    def start(self) -> None:
        from flowblock.cli.base import wait_for_termination
        from flowblock.executor.service import ExecutorService, build_executor
        from flowblock.executor.settings import ExecutorSettings

        self.positional()
        settings = ExecutorSettings(parent=self)
        executor = build_executor(self.data_path, settings)
        checkpoint = self.data_path / "executor" / settings.organisation / "checkpoint.json"
        service = ExecutorService(executor, checkpoint, settings.workers).start()
        print(f"flowblock executor: serving {settings.organisation}", flush=True)
        try:
            wait_for_termination()
        finally:
            service.stop()


class DataApp(FlowBlockApp):
    name = "flowblock data"
    description = "A steward's data: import tables into S3 with their hashes on the ledger."
    subcommands = {"import": (DataImportApp, "Import a CSV or Parquet table as a dataset.")}
