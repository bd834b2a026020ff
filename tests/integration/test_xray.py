"""Chest X-rays end to end: images imported, classified, counted, a classifier trained.

Real images (the 16 of pneumonia-model-package, augmented), a real S3 server, the
devnet, the executor with TensorFlow in its sandboxed child, and the researcher's
Client: only aggregates and metrics come back, the labels and models stay data-side.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from flowblock.client import Client, ComputationFailed, Job
from flowblock.consent import enrol
from flowblock.errors import InvalidArgument
from flowblock.executor.algorithms import publish_algorithms
from flowblock.executor.images import MANIFEST, import_images
from flowblock.executor.ingest import import_table
from flowblock.executor.storage.objects import ObjectStore, sha256_hex
from flowblock.executor.worker import Executor
from flowblock.executor.xray import write_xray_dataset
from flowblock.identity.s3 import load_credentials
from flowblock.ledger import GatewayPool

PURPOSE = "pneumonia study"
IMAGES, CONSENTING = 60, 50


class XrayStudy:
    """An X-ray dataset of its own, most of whose patients consent, and its executor."""

    def __init__(self, pool: GatewayPool, store: ObjectStore, demo_world, folder, name: str):
        self.pool, self.store, self.dataset = pool, store, name
        # Patients of their own: the session's devnet is shared with other tests.
        self.folder = write_xray_dataset(folder, IMAGES, patient_prefix=f"{name}-patient")
        self.manifest = pd.read_csv(self.folder / MANIFEST)
        self.report = import_images(
            self.folder, name, pool(demo_world.identity("steward"), "records"), store
        )
        self.consenting = list(self.manifest["patient_id"][:CONSENTING])
        hospital = demo_world.authority("Hospital")
        patients = {
            patient: hospital.issue(patient, "patient") for patient in self.manifest["patient_id"]
        }
        enrol(pool(demo_world.identity("steward")), patients.values())
        self.patients = patients
        for patient in self.consenting:
            Client(pool.gateway(patients[patient])).consent.grant(
                name, "org:University", "C", "research"
            )
        self.executor = Executor(
            pool(demo_world.identity("executor", org="Hospital")), store, "Hospital"
        )
        self.alice = Client(pool.gateway(demo_world.identity("alice")))
        self.admin = pool(demo_world.identity("admin", org="Hospital"))

    def compute(self, method: str, params: dict | None = None, inputs=()) -> Job:
        """Request, approve and run one token; its job."""
        job = self.alice.compute(method, self.dataset, params or {}, PURPOSE, inputs=inputs)
        self.admin.submit("Approve", job.token_id)
        self.executor.process(job.token_id)
        return job


@pytest.fixture(scope="module")
def xray(flowblock_devnet, s3_server, demo_world, tmp_path_factory):
    with GatewayPool(flowblock_devnet.address) as pool:
        publish_algorithms(pool(demo_world.identity("admin", org="Hospital"), "catalogue"))
        store = ObjectStore(s3_server.endpoint, load_credentials(demo_world.data_dir, "Hospital"))
        yield XrayStudy(pool, store, demo_world, tmp_path_factory.mktemp("xray"), "xray-study")


def test_images_are_stored_one_object_each_with_their_hash_on_the_ledger(xray, demo_world):
    assert (xray.report.rows, xray.report.registered) == (IMAGES, IMAGES)
    steward = xray.pool(demo_world.identity("steward"), "records")
    first = xray.manifest.iloc[0]
    record = json.loads(steward.evaluate("GetRecord", xray.dataset, first["file"].split(".")[0]))
    assert record["sha256"] == sha256_hex((xray.folder / first["file"]).read_bytes())
    assert xray.store.get(record["object_key"]) == (xray.folder / first["file"]).read_bytes()
    dataset = json.loads(steward.evaluate("GetDataset", xray.dataset))
    assert dataset["kind"] == "images"
    assert dataset["schema"]["columns"]["label"]["values"] == ["normal", "pneumonia"]
    # A rerun after a crash registers nothing twice.
    again = import_images(xray.folder, xray.dataset, steward, xray.store)
    assert (again.registered, again.unchanged) == (0, IMAGES)


def test_a_directory_without_a_manifest_is_one_sentence(xray, tmp_path, demo_world):
    (tmp_path / "scan.jpeg").write_bytes(b"not really")
    steward = xray.pool(demo_world.identity("steward"), "records")
    with pytest.raises(InvalidArgument, match=r"manifest\.csv with columns patient_id, file"):
        import_images(tmp_path, "xray-none", steward, xray.store)


def test_a_table_and_a_directory_of_images_never_share_a_dataset(xray, demo_world):
    steward = xray.pool(demo_world.identity("steward"), "records")
    table = pd.DataFrame({"patient_id": ["p1"], "age": [40]})
    with pytest.raises(InvalidArgument) as refused:
        import_table(table, xray.dataset, steward, xray.store)
    assert str(refused.value) == (
        f"the dataset {xray.dataset!r} must be a tabular dataset, got 'images'."
    )
    import_table(table.assign(patient_id=["xray-tabular-p1"]), "xray-tabular", steward, xray.store)
    with pytest.raises(InvalidArgument, match="must be an images dataset, got 'tabular'"):
        import_images(xray.folder, "xray-tabular", steward, xray.store)


def test_classification_stays_data_side_and_a_flow_counts_and_charts_the_cases(xray):
    classified = xray.compute("pneumonia-classify")
    result = classified.wait(timeout=120)
    assert result.value == {"kept_data_side": True}
    assert result.cohort_size == CONSENTING
    counts = xray.compute("xray-case-count", inputs=[classified.token_id]).wait(timeout=60)
    groups = {group["prediction"]: group["count"] for group in counts.value["groups"]}
    assert set(groups) == {"normal", "pneumonia"}
    assert sum(groups.values()) == CONSENTING
    chart = xray.compute("chart-of-result", {"label": "prediction"}, inputs=[counts.token_id]).wait(
        timeout=60
    )
    assert chart.value["groups"] == counts.value["groups"]


def test_a_classifier_trains_data_side_and_later_tokens_classify_with_it(xray):
    trained = xray.compute("xray-train-classifier", {"epochs": 2, "image_size": 48})
    result = trained.wait(timeout=300).value
    assert result["training_records"] + result["holdout_records"] == CONSENTING
    assert 0 <= result["metrics"]["accuracy"] <= 1 and 0 <= result["metrics"]["auc"] <= 1
    # The confusion matrix is a count table: small cells are suppressed, the rest rounded.
    cells = [cell["count"] for cell in result["confusion_matrix"]]
    assert len(cells) == 4 and None in cells  # 13 held-out X-rays: every cell is small
    released = [count for count in cells if count is not None]
    assert all(count == 0 or (count >= 10 and count % 5 == 0) for count in released)
    model = result["model"]
    assert sha256_hex(xray.store.get(model["object_key"])) == model["sha256"]
    # The model is used by its token id, never handed out.
    classified = xray.compute("pneumonia-classify", inputs=[trained.token_id])
    assert classified.wait(timeout=120).value == {"kept_data_side": True}
    (kept_key,) = xray.store.list(f"outputs/{classified.token_id}/")
    kept = json.loads(xray.store.get(kept_key))["value"]
    assert kept["model"] == "trained"
    assert len(kept["predictions"]) == CONSENTING
    # A model changed behind the ledger's back is refused.
    xray.store.put(model["object_key"], b"a different model")
    refused = xray.compute("pneumonia-classify", inputs=[trained.token_id])
    with pytest.raises(ComputationFailed, match="does not match its registered hash"):
        refused.wait(timeout=60)


def test_a_reader_with_read_consent_gets_the_patients_image(xray, demo_world):
    import base64

    from flowblock.executor.reads import process_read
    from flowblock.testing.access import served

    first = xray.manifest.iloc[0]
    patient = xray.patients[first["patient_id"]]
    Client(xray.pool.gateway(patient)).consent.grant(
        xray.dataset, "user:bob@University", "R", "care"
    )
    bob = Client(xray.pool.gateway(demo_world.identity("bob")))
    _, rows = served(
        xray.pool(patient, "access"),
        lambda: bob.records.read(first["patient_id"], xray.dataset),
        lambda entry: process_read(xray.executor, entry["access_id"]),
    )
    (row,) = rows
    assert row["label"] == first["label"]
    assert base64.b64decode(row["image_base64"]) == (xray.folder / first["file"]).read_bytes()


def test_a_tampered_image_fails_the_token_naming_the_record(xray, demo_world):
    victim = xray.manifest.iloc[3]
    record_id = victim["file"].split(".")[0]
    steward = xray.pool(demo_world.identity("steward"), "records")
    key = json.loads(steward.evaluate("GetRecord", xray.dataset, record_id))["object_key"]
    xray.store.put(key, b"\xff\xd8 another image")
    job = xray.compute("pneumonia-classify")
    with pytest.raises(ComputationFailed, match=rf"record {record_id}"):
        job.wait(timeout=60)
