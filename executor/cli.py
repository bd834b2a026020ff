"""``flowblock data``: a steward brings their organisation's data into FlowBlock."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from traitlets import Bool, Unicode

from flowblock.cli.base import FlowBlockApp
from flowblock.errors import ConfigError, InvalidArgument


def data_side_settings(app: FlowBlockApp, org: str = ""):
    """The organisation's data-side settings (``ExecutorSettings``), with the ledger's and
    the S3 server's addresses taken from the running stack's ``stack.json`` when the
    configuration does not give them."""
    from flowblock.executor.settings import ExecutorSettings
    from flowblock.stackfile import read_stack_file

    settings = ExecutorSettings(parent=app)
    settings.organisation = org or settings.organisation
    if settings.gateway and settings.s3_endpoint:
        return settings
    stack = read_stack_file(app.data_path)
    if stack is None:
        raise ConfigError(
            f"FlowBlock is not running for {app.data_path} and no --gateway and --s3-endpoint "
            "were given; start it with 'flowblock demo', or name the ledger and S3 server."
        )
    settings.gateway = settings.gateway or stack["gateway"]
    settings.s3_endpoint = settings.s3_endpoint or stack["s3"]["endpoint"]
    if not settings.tls_ca and stack.get("tls_ca"):
        settings.tls_ca = stack["tls_ca"]
    settings.channel = stack.get("channel", settings.channel)
    return settings


@contextlib.contextmanager
def _gateway(app: FlowBlockApp, org: str, person: str):
    """A gateway to the ledger as ``person`` of ``org``, and the data side's settings."""
    from flowblock.identity import wallet_path

    settings = data_side_settings(app, org)
    settings.wallet = str(wallet_path(app.data_path, org, person))
    with settings.connect(app.data_path) as gateway:
        yield gateway, settings


#: Where a data-side command's ledger and S3 server are, when no stack runs here.
DATA_SIDE_ALIASES = {
    "gateway": "ExecutorSettings.gateway",
    "tls-ca": "ExecutorSettings.tls_ca",
    "s3-endpoint": "ExecutorSettings.s3_endpoint",
}


def _data_side_classes(app: type) -> list:
    from flowblock.executor.disclosure import DisclosurePolicy
    from flowblock.executor.settings import ExecutorSettings

    return [app, ExecutorSettings, DisclosurePolicy]


class DataImportApp(FlowBlockApp):
    name = "flowblock data import"
    description = (
        "Import a table (CSV or Parquet, with a patient_id column) or a directory of images "
        "(with a manifest.csv of patient_id, file, label, ...) as a dataset: rows are stored "
        "as Parquet parts, images one object each, in the organisation's S3 bucket, and "
        "every record's hash is registered on the ledger. Each object is named by the hash "
        "of its bytes, so an import never replaces one, and nothing is stored before the "
        "ledger has accepted the records. A dataset that holds another file's records "
        "takes a second file only with --append. Needs the stack running ('flowblock "
        "demo' or 'flowblock up'). Run it again after a failure: it stores only what is "
        "missing and registers nothing twice."
    )
    examples = (
        "flowblock data import vitals.csv --dataset vitals\n"
        "flowblock data import more-vitals.csv --dataset vitals --append\n"
        "flowblock data import chest-xrays/ --dataset xray"
    )
    dataset = Unicode(help="Name of the dataset the rows belong to.").tag(config=True)
    append = Bool(
        False,
        help="Add the file's records to a dataset that holds another file's (without it, "
        "that import is refused and nothing is stored). A table without a record_id column "
        "then has its rows numbered apart from the first file's.",
    ).tag(config=True)
    steward = Unicode("steward", help="Name of the steward whose wallet signs.").tag(config=True)
    org = Unicode("Hospital", help="Organisation that holds the data.").tag(config=True)
    aliases = {
        **FlowBlockApp.aliases,
        **DATA_SIDE_ALIASES,
        "dataset": "DataImportApp.dataset",
        "as": "DataImportApp.steward",
        "org": "DataImportApp.org",
    }
    flags = {
        **FlowBlockApp.flags,
        "append": (
            {"DataImportApp": {"append": True}},
            "Add the file's records to a dataset that holds another file's.",
        ),
    }

    @property
    def classes(self):  # type: ignore[override]
        return _data_side_classes(type(self))

    def start(self) -> None:
        (path,) = self.positional("file")
        if not self.dataset:
            raise InvalidArgument("--dataset", "given: the name of the dataset")
        from flowblock.executor.images import import_images, read_manifest
        from flowblock.executor.ingest import import_table, read_table
        from flowblock.executor.storage.objects import ObjectStore
        from flowblock.identity.s3 import load_credentials

        is_directory = Path(path).is_dir()
        source = read_manifest(path) if is_directory else read_table(path)

        def progress(done: int, total: int) -> None:
            print(f"\rimported {done:,} of {total:,} records", end="", file=sys.stderr, flush=True)

        with _gateway(self, self.org, self.steward) as (gateway, settings):
            store = ObjectStore(settings.s3_endpoint, load_credentials(self.data_path, self.org))
            network = gateway.get_network(settings.channel)
            records = network.get_contract(settings.chaincode, "records")
            if is_directory:
                report = import_images(
                    path, self.dataset, records, store, progress, append=self.append
                )
            else:
                report = import_table(
                    source, self.dataset, records, store, progress, append=self.append
                )
        print(file=sys.stderr)
        deleted = f", {report.deleted:,} deleted earlier (kept deleted)" if report.deleted else ""
        print(
            f"{report.dataset}: {report.rows:,} records in {report.parts} part(s); "
            f"{report.registered:,} registered, {report.updated:,} updated, "
            f"{report.unchanged:,} unchanged{deleted}."
        )


class ExecutorApp(FlowBlockApp):
    name = "flowblock executor"
    description = (
        "Run an organisation's executor on its own (flowblock up runs one already): it "
        "follows the ledger, claims its organisation's approved tokens and read requests, "
        "and computes on its data. It needs the Fabric gateway of a peer of its "
        "organisation, its wallet and the S3 server of its bucket (ExecutorSettings); an "
        "address not given is taken from the FlowBlock running for the data directory."
    )
    examples = (
        "flowblock executor --org Hospital --workers 4\n"
        "flowblock executor --org Hospital --gateway peer0.hospital:7051 "
        "--tls-ca tls/ca.pem --s3-endpoint https://s3.hospital --wallet wallets/executor"
    )
    aliases = {
        **FlowBlockApp.aliases,
        **DATA_SIDE_ALIASES,
        "org": "ExecutorSettings.organisation",
        "workers": "ExecutorSettings.workers",
        "wallet": "ExecutorSettings.wallet",
        "s3-credentials": "ExecutorSettings.s3_credentials",
    }

    @property
    def classes(self):  # type: ignore[override]
        return _data_side_classes(type(self))

    def start(self) -> None:
        from flowblock.cli.base import wait_for_termination
        from flowblock.executor.service import ExecutorService

        self.positional()
        settings = data_side_settings(self)
        executor = settings.build(self.data_path)
        checkpoint = self.data_path / "executor" / settings.organisation / "checkpoint.json"
        service = ExecutorService(executor, checkpoint, settings.workers).start()
        print(f"flowblock executor: serving {settings.organisation}", flush=True)
        try:
            wait_for_termination()
        finally:
            service.stop()
            executor.contract.network.gateway.close()


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
        **DATA_SIDE_ALIASES,
        "as": "AlgorithmsPublishApp.admin",
        "org": "AlgorithmsPublishApp.org",
    }

    @property
    def classes(self):  # type: ignore[override]
        return _data_side_classes(type(self))

    def start(self) -> None:
        from flowblock.executor.algorithms import publish_algorithms

        self.positional()
        with _gateway(self, self.org, self.admin) as (gateway, settings):
            network = gateway.get_network(settings.channel)
            catalogue = network.get_contract(settings.chaincode, "catalogue")
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
