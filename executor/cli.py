"""``flowblock data``: a steward brings their organisation's data into FlowBlock."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from traitlets import Unicode

from flowblock.cli.base import FlowBlockApp
from flowblock.errors import ConfigError, InvalidArgument


class DataImportApp(FlowBlockApp):
    name = "flowblock data import"
    description = (
        "Import a table (CSV or Parquet, with a patient_id column) or a directory of images "
        "(with a manifest.csv of patient_id, file, label, ...) as a dataset: rows are stored "
        "as Parquet parts, images one object each, in the organisation's S3 bucket, and "
        "every record's hash is registered on the ledger. Needs the stack running "
        "('flowblock demo' or 'flowblock up'). Run it again after a failure: nothing is "
        "registered twice."
    )
    examples = (
        "flowblock data import vitals.csv --dataset vitals\n"
        "flowblock data import chest-xrays/ --dataset xray"
    )
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
        from flowblock.executor.images import import_images, read_manifest
        from flowblock.executor.ingest import import_table, read_table
        from flowblock.executor.storage.credentials import load_credentials
        from flowblock.executor.storage.objects import ObjectStore

        is_directory = Path(path).is_dir()
        source = read_manifest(path) if is_directory else read_table(path)

        def progress(done: int, total: int) -> None:
            print(f"\rimported {done:,} of {total:,} records", end="", file=sys.stderr, flush=True)

        with _gateway(self, self.org, self.steward) as (gateway, channel, stack):
            store = ObjectStore(stack["s3"]["endpoint"], load_credentials(self.data_path, self.org))
            records = gateway.get_network(channel).get_contract("flowblock", "records")
            if is_directory:
                report = import_images(path, self.dataset, records, store, progress)
            else:
                report = import_table(source, self.dataset, records, store, progress)
        print(file=sys.stderr)
        deleted = f", {report.deleted:,} deleted earlier (kept deleted)" if report.deleted else ""
        print(
            f"{report.dataset}: {report.rows:,} records in {report.parts} part(s); "
            f"{report.registered:,} registered, {report.updated:,} updated, "
            f"{report.unchanged:,} unchanged{deleted}."
        )


@contextlib.contextmanager
def _gateway(app: FlowBlockApp, org: str, person: str):
    """A gateway to the running stack as ``person`` of ``org``, its channel and stack.json."""
    from flowblock.identity import load_wallet, wallet_path
    from flowblock.ledger import Gateway
    from flowblock.stack import read_stack_file

    stack = read_stack_file(app.data_path)
    if stack is None:
        raise ConfigError(
            f"FlowBlock is not running for {app.data_path}; start it with 'flowblock demo'."
        )
    with Gateway(stack["gateway"], load_wallet(wallet_path(app.data_path, org, person))) as gateway:
        yield gateway, stack["channel"], stack


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
        from flowblock.executor.disclosure import DisclosurePolicy
        from flowblock.executor.settings import ExecutorSettings

        return [type(self), ExecutorSettings, DisclosurePolicy]

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
    subcommands = {
        "import": (DataImportApp, "Import a table or a directory of images as a dataset.")
    }


class AlgorithmsPublishApp(FlowBlockApp):
    name = "flowblock algorithms publish"
    description = (
        "Publish every installed algorithm (the flowblock.algorithms entry points) that the "
        "catalogue lacks, with its code hash, signed by an admin of the data organisation. "
        "The executor runs only code whose hash the catalogue holds."
    )
    examples = "flowblock algorithms publish --org Hospital"
    admin = Unicode("admin", help="Name of the admin whose wallet signs.").tag(config=True)
    org = Unicode("Hospital", help="The data organisation publishing.").tag(config=True)
    aliases = {
        **FlowBlockApp.aliases,
        "as": "AlgorithmsPublishApp.admin",
        "org": "AlgorithmsPublishApp.org",
    }

    def start(self) -> None:
        from flowblock.executor.algorithms import publish_algorithms

        self.positional()
        with _gateway(self, self.org, self.admin) as (gateway, channel, _):
            catalogue = gateway.get_network(channel).get_contract("flowblock", "catalogue")
            published = publish_algorithms(catalogue)
        for algorithm in published:
            print(f"published {algorithm.name}@{algorithm.version} ({algorithm.code_hash()[:12]}…)")
        print(f"{len(published)} algorithm(s) published; the others were in the catalogue.")


class AlgorithmsListApp(FlowBlockApp):
    name = "flowblock algorithms list"
    description = "List the algorithms installed here: name, version, input kind, description."

    def start(self) -> None:
        from flowblock.executor.algorithms import load_algorithms

        self.positional()
        for (name, version), algorithm in sorted(load_algorithms().items()):
            print(f"{name}@{version}  [{algorithm.input_kind}]  {algorithm.description}")


class AlgorithmsApp(FlowBlockApp):
    name = "flowblock algorithms"
    description = "The algorithms installed on the data side, and their place in the catalogue."
    subcommands = {
        "publish": (AlgorithmsPublishApp, "Publish installed algorithms in the catalogue."),
        "list": (AlgorithmsListApp, "List the installed algorithms."),
    }
