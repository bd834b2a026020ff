"""A computation end to end: ledger, consent, S3, executor, sealed result, requester."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pandas as pd
import pytest

from flowblock.client import Client, ComputationFailed
from flowblock.errors import DisclosureRefused
from flowblock.executor.algorithms import load_algorithms
from flowblock.ledger import GatewayPool
from flowblock.sealing import SealError, open_sealed
from flowblock.testing.access import served as serve_request
from flowblock.testing.study import Study, publish_and_allow
from flowblock.testing.waiting import wait_until
from flowblock.vocabulary import ACCESS_FIELD, RECORDS_FIELD

PURPOSE = "blood pressure study"


@pytest.fixture(scope="module")
def ledger(flowblock_devnet, demo_world):
    """Gateways by person, the catalogue published and the Hospital's rules set, once."""
    with GatewayPool(flowblock_devnet.address) as pool:
        allowed = {"methods": ["mean", "count", "histogram"], "purposes": [PURPOSE],
                   "organisations": ["University"]}  # fmt: skip
        rules = {"auto_approve": allowed}
        publish_and_allow(pool, demo_world, rules)
        yield pool


def vitals(patients: int = 40) -> pd.DataFrame:
    """A small table of blood pressures, one record per patient."""
    rng = np.random.default_rng(patients)
    return pd.DataFrame(
        {
            "patient_id": [f"p{i:03d}" for i in range(patients)],
            "age": rng.integers(20, 90, patients),
            "sex": ["F", "M"] * (patients // 2),
            "systolic": rng.normal(130, 12, patients).round(1),
        }
    )


def worker_of(devnet, broker: str, s3_server) -> tuple:
    """A Celery worker's settings for the Hospital's executor on these tests' servers:
    its own settings only, with no stack.json anywhere."""
    assert not (devnet.data_dir / "stack.json").exists()
    return devnet.data_dir, broker, "Hospital", devnet.address, s3_server.endpoint


@pytest.fixture(scope="module")
def celery_runner(flowblock_devnet, s3_server, tmp_path_factory):
    """Run tokens through Celery: a real Redis, a real worker process, the same task code."""
    from celery import Celery

    from flowblock.testing.queue import celery_worker, redis_server

    with (
        redis_server(tmp_path_factory.mktemp("redis")) as broker,
        celery_worker(*worker_of(flowblock_devnet, broker, s3_server)),
    ):
        client = Celery(broker=broker, backend=broker)

        def run(task: str, identifier: str) -> str:
            return client.send_task(task, args=[identifier]).get(timeout=120)

        yield run


@pytest.fixture(params=["in-process", "celery"])
def study(request, ledger, s3_server, demo_world) -> Study:
    """A study whose tokens run on in-process workers, or on Celery workers."""
    from flowblock.executor.reads import process_read
    from flowblock.executor.writes import process_write

    study = Study(ledger, s3_server, demo_world, vitals(), consenting=30, prefix="bp")
    study.executor.publish_certificate()
    if request.param == "celery":
        celery = request.getfixturevalue("celery_runner")
        study.run = lambda token_id: celery("flowblock.process_token", token_id)
        study.run_read = lambda access_id: celery("flowblock.process_read", access_id)
        study.run_write = lambda access_id: celery("flowblock.process_write", access_id)
    else:
        study.run = study.executor.process
        study.run_read = lambda access_id: process_read(study.executor, access_id)
        study.run_write = lambda access_id: process_write(study.executor, access_id)
    return study


def test_a_mean_is_computed_on_consenting_patients_and_sealed_to_the_requester(study, demo_world):
    job = study.alice.compute("mean", study.dataset, {"column": "systolic"}, purpose=PURPOSE)
    assert job.status == "APPROVED"  # by the Hospital's rules
    assert study.run(job.token_id) == "DONE"
    result = job.wait(timeout=30)
    (group,) = result.value["groups"]
    assert group["count"] == 30
    assert group["mean"] == pytest.approx(study.expected_mean(study.consenting))
    assert result.cohort_size == 30
    assert (
        result.provenance["result"]["code_hash"] == load_algorithms()[("mean", "1.0")].code_hash()
    )
    # Nobody else can open it, even holding the sealed bytes.
    sealed = job.token["result"]["encrypted"]
    with pytest.raises(SealError):
        open_sealed(sealed, demo_world.identity("bob"), job.token_id)
    # The patients whose data was used can see so.
    first = study.consenting[0]
    receipts = study.pool(study.patients[first], "consent").evaluate("MyReceipts", 10, "")
    assert job.token_id in receipts.decode()


def test_a_result_is_shown_only_when_the_data_organisations_peer_endorses_it(
    ledger, s3_server, demo_world
):
    from flowblock.errors import FlowBlockError

    study = Study(ledger, s3_server, demo_world, vitals(), consenting=30, prefix="bp")
    job = study.alice.compute("count", study.dataset, {}, purpose=PURPOSE)
    assert study.executor.process(job.token_id) == "DONE"
    assert job.wait(timeout=30).value["groups"][0]["count"] == 30
    # A gateway that answers with its own organisation's endorsement alone (it could have
    # made the token up) gets no result shown.
    contract = study.alice._contract
    endorse = contract.endorse
    contract.endorse = lambda *args, **kw: endorse(*args, endorsing_organisations=["UniversityMSP"])
    with pytest.raises(FlowBlockError, match="no valid signature of the data organisation's peer"):
        study.alice.job(job.token_id).result()
    assert not study.alice.verify(job.token_id).ok


def test_a_revocation_while_queued_is_honoured(study):
    job = study.alice.compute("mean", study.dataset, {"column": "systolic"}, purpose=PURPOSE)
    leaver = study.consenting[0]
    study.consent(leaver).revoke(study.dataset, "org:University", "C")
    study.run(job.token_id)
    result = job.wait(timeout=30)
    assert len(study.executor.load_output(job.token_id)["patients"]) == 29
    assert result.cohort_size == 30  # released rounded, like every count
    assert result.value["groups"][0]["mean"] == pytest.approx(
        study.expected_mean(study.consenting[1:])
    )


def test_a_revocation_while_running_is_honoured(study, demo_world):
    job = study.alice.compute("long-running", study.dataset, {"seconds": 2}, purpose=PURPOSE)
    study.pool(demo_world.identity("admin", org="Hospital")).submit("Approve", job.token_id)
    running = threading.Thread(target=study.run, args=(job.token_id,))
    running.start()
    wait_until(  # the algorithm is under way on the cohort of 30
        lambda: job.refresh().status == "RUNNING" and job.token["progress"],
        what="the computation to be under way",
    )
    leaver = study.consenting[0]
    study.consent(leaver).revoke(study.dataset, "org:University", "C")
    running.join(timeout=60)
    assert job.wait(timeout=30).cohort_size == 30  # released rounded
    # Computed again without the patient who left.
    assert len(study.executor.load_output(job.token_id)["patients"]) == 29
    first = study.pool(study.patients[leaver], "consent").evaluate("MyReceipts", 10, "")
    assert job.token_id not in first.decode()


def test_a_tampered_object_fails_the_token_naming_the_record(study):
    key = study.store.list(f"{study.dataset}/parts/")[0]
    changed = pd.read_parquet(io.BytesIO(study.store.get(key)))
    changed.loc[5, "systolic"] = 999.0
    buffer = io.BytesIO()
    changed.to_parquet(buffer, index=False)
    study.store.put(key, buffer.getvalue())
    job = study.alice.compute("mean", study.dataset, {"column": "systolic"}, purpose=PURPOSE)
    assert study.run(job.token_id) == "FAILED"
    with pytest.raises(ComputationFailed, match=rf"record {changed.loc[5, 'record_id']}"):
        job.wait(timeout=30)


def test_two_executors_racing_give_one_result(study):
    job = study.alice.compute("count", study.dataset, {}, purpose=PURPOSE)
    outcomes: list[str] = []
    racers = [
        threading.Thread(target=lambda: outcomes.append(study.run(job.token_id))) for _ in range(2)
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sorted(outcomes) in (["DONE", "DONE"], ["DONE", "RUNNING"])
    history = study.alice._evaluate("TokenHistory", job.token_id)
    assert [entry["token"]["status"] for entry in history].count("DONE") == 1
    assert job.wait(timeout=30).value["groups"][0]["count"] == 30


def test_a_token_taken_up_twice_at_once_ends_once_and_both_runs_say_so(
    ledger, s3_server, demo_world
):
    # A task delivered again while its first delivery still runs (a computation longer
    # than the broker's redelivery time): both runs resume the same claimed token.
    study = Study(ledger, s3_server, demo_world, vitals(), consenting=30, prefix="bp")
    job = study.alice.compute("long-running", study.dataset, {"seconds": 1}, purpose=PURPOSE)
    study.pool(demo_world.identity("admin", org="Hospital")).submit("Approve", job.token_id)
    study.executor.contract.submit("Claim", job.token_id)
    outcomes: list[str] = []
    runs = [
        threading.Thread(
            target=lambda: outcomes.append(study.executor.process(job.token_id, resume=True))
        )
        for _ in range(2)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert outcomes == ["DONE", "DONE"]
    history = study.alice._evaluate("TokenHistory", job.token_id)
    assert [entry["token"]["status"] for entry in history].count("DONE") == 1
    assert "FAILED" not in [entry["token"]["status"] for entry in history]
    # The output kept data-side is the one whose hash the ledger recorded.
    assert study.executor.load_output(job.token_id)["value"]["groups"] == [{"count": 30}]


def test_a_deleted_record_is_never_computed_on_again(ledger, s3_server, demo_world):
    from flowblock.executor.ingest import PATIENT_COLUMN, RECORD_COLUMN

    study = Study(ledger, s3_server, demo_world, vitals(), consenting=30, prefix="bp")
    frame = study.current_rows()  # cached parts must not bring it back
    gone = study.consenting[0]
    (record_id,) = frame.loc[frame[PATIENT_COLUMN] == gone, RECORD_COLUMN]
    steward = study.pool(demo_world.identity("steward"), "records")
    steward.submit(
        "DeleteRecord", study.dataset, endorsing_organisations=["HospitalMSP"],
        transient={RECORDS_FIELD: json.dumps({"record_id": record_id, "reason": "in error"})},
    )  # fmt: skip
    job = study.alice.compute("mean", study.dataset, {"column": "systolic"}, purpose=PURPOSE)
    assert study.executor.process(job.token_id) == "DONE"
    (group,) = job.wait(timeout=30).value["groups"]
    assert group["mean"] == pytest.approx(study.expected_mean(study.consenting[1:]))
    assert record_id not in set(study.current_rows()[RECORD_COLUMN])


def test_of_several_versions_of_a_record_the_ledgers_current_one_is_used(
    ledger, s3_server, demo_world
):
    from flowblock.executor.ingest import PATIENT_COLUMN, RECORD_COLUMN, part_bytes, row_hashes

    study = Study(ledger, s3_server, demo_world, vitals(), consenting=30, prefix="bp")
    steward = study.pool(demo_world.identity("steward"), "records")
    frame = study.current_rows()
    row = frame[frame[PATIENT_COLUMN] == study.consenting[0]]
    record_id = row[RECORD_COLUMN].iloc[0]

    def correct(object_key: str, systolic: float) -> None:
        part = row.assign(systolic=systolic)
        digest = study.store.put(object_key, part_bytes(part))
        steward.submit("RegisterPartition", study.dataset, object_key, digest, 1)
        (row_hash,) = row_hashes(part)
        entry = {"record_id": record_id, "patient": study.consenting[0],
                 "object_key": object_key, "sha256": row_hash}  # fmt: skip
        steward.submit(
            "RegisterRecords", study.dataset, endorsing_organisations=["HospitalMSP"],
            transient={RECORDS_FIELD: json.dumps([entry])},
        )  # fmt: skip

    # Two corrections registered in the opposite order to their parts' names (two writes
    # finishing out of order): the ledger's latest is the one computed on.
    correct(f"{study.dataset}/writes/2-later-name.parquet", 111.0)
    correct(f"{study.dataset}/writes/1-earlier-name.parquet", 222.0)
    loaded = study.current_rows()
    assert list(loaded.loc[loaded[RECORD_COLUMN] == record_id, "systolic"]) == [222.0]
    assert len(loaded) == len(frame)


def test_a_cohort_below_the_minimum_is_refused_with_the_rule(study):
    tiny = [["age", "<", 25]]
    job = study.alice.compute(
        "mean", study.dataset, {"column": "systolic", "where": tiny}, purpose=PURPOSE
    )
    study.run(job.token_id)
    with pytest.raises(DisclosureRefused) as refused:
        job.wait(timeout=30)
    assert refused.value.rule == "min_cohort"


def test_the_service_follows_the_ledger_and_takes_up_what_it_had_claimed(
    ledger, s3_server, demo_world, tmp_path
):
    from flowblock.executor.service import ExecutorService

    study = Study(ledger, s3_server, demo_world, vitals(), consenting=30, prefix="bp")
    # A worker claimed this token and was killed before finishing it.
    interrupted = study.alice.compute("count", study.dataset, {}, purpose=PURPOSE)
    study.executor.contract.submit("Claim", interrupted.token_id)
    assert interrupted.refresh().status == "RUNNING"
    service = ExecutorService(study.executor, tmp_path / "checkpoint.json", workers=2).start()
    try:
        assert interrupted.wait(timeout=60).value["groups"][0]["count"] == 30
        fresh = study.alice.compute("mean", study.dataset, {"column": "age"}, purpose=PURPOSE)
        assert fresh.wait(timeout=60).cohort_size == 30
    finally:
        service.stop()
    assert json.loads((tmp_path / "checkpoint.json").read_text())["block"] > 0


def served(study: Study, patient, request) -> tuple[dict, object]:
    """``request`` (a read or a write) as the data side of ``study`` serves it."""

    def serve(entry: dict) -> None:
        (study.run_write if entry["kind"] == "write" else study.run_read)(entry["access_id"])

    return serve_request(study.pool(patient, "access"), request, serve)


def test_receipts_a_stop_interrupted_are_recorded_when_the_executor_starts_again(
    ledger, s3_server, demo_world, tmp_path
):
    from flowblock.executor.service import ExecutorService
    from flowblock.executor.worker import RECEIPTS_DUE

    class Stopped(BaseException):
        """The executor's process ending between completing a token and its receipts."""

    study = Study(ledger, s3_server, demo_world, vitals(), consenting=30, prefix="bp")
    executor = study.executor
    answer = executor.ledger

    def stops_at_receipts(function, *args, **kwargs):
        if function == "consent:RecordUsage":
            raise Stopped
        return answer(function, *args, **kwargs)

    executor.ledger = stops_at_receipts
    job = study.alice.compute("count", study.dataset, {}, purpose=PURPOSE)
    with pytest.raises(Stopped):
        executor.process(job.token_id)
    assert job.refresh().status == "DONE"
    patient = study.pool(study.patients[study.consenting[0]], "consent")
    assert job.token_id not in patient.evaluate("MyReceipts", 10, "").decode()
    assert study.store.exists(f"{RECEIPTS_DUE}/{job.token_id}")

    executor.ledger = answer  # started again
    service = ExecutorService(executor, tmp_path / "checkpoint.json", workers=2).start()
    try:
        for _ in range(300):
            if not study.store.exists(f"{RECEIPTS_DUE}/{job.token_id}"):
                break
            threading.Event().wait(0.1)
    finally:
        service.stop()
    for consenting in study.consenting:
        receipts = study.pool(study.patients[consenting], "consent").evaluate("MyReceipts", 10, "")
        assert job.token_id in receipts.decode()
    assert not study.store.exists(f"{RECEIPTS_DUE}/{job.token_id}")


def test_reads_need_read_consent_and_are_logged_for_the_patient(study, demo_world):
    from flowblock.errors import AccessDenied

    patient_id = study.consenting[0]
    patient = study.patients[patient_id]
    study.consent(patient).grant(study.dataset, "user:bob@University", "R", "care")
    bob = Client(study.pool.gateway(demo_world.identity("bob")))
    access, rows = served(study, patient, lambda: bob.records.read(patient_id, study.dataset))
    expected = study.frame[study.frame["patient_id"] == patient_id]
    assert [row["systolic"] for row in rows] == list(expected["systolic"])
    assert access["reader"] == "bob@University"
    # Alice's organisation holds compute consent only: she never receives a row.
    with pytest.raises(AccessDenied, match="no read consent"):
        study.alice.records.read(patient_id, study.dataset)
    # Once revoked, the read consent no longer serves.
    study.consent(patient).revoke(study.dataset, "user:bob@University", "R")
    with pytest.raises(AccessDenied):
        bob.records.read(patient_id, study.dataset, timeout=5)


def test_a_read_claimed_before_a_stop_is_served_when_it_comes_again(ledger, s3_server, demo_world):
    from flowblock.executor.reads import process_read

    study = Study(ledger, s3_server, demo_world, vitals(), consenting=30, prefix="bp")
    patient_id = study.consenting[0]
    patient = study.patients[patient_id]
    study.consent(patient).grant(study.dataset, "user:bob@University", "R", "care")
    outcomes = []

    def claimed_then_stopped_then_delivered_again(entry: dict) -> None:
        study.executor.private("access:ClaimRead", entry["access_id"])
        outcomes.append(process_read(study.executor, entry["access_id"]))
        outcomes.append(process_read(study.executor, entry["access_id"]))  # and once more

    bob = Client(study.pool.gateway(demo_world.identity("bob")))
    _, rows = serve_request(
        study.pool(patient, "access"),
        lambda: bob.records.read(patient_id, study.dataset),
        claimed_then_stopped_then_delivered_again,
    )
    expected = study.frame[study.frame["patient_id"] == patient_id]
    assert [row["systolic"] for row in rows] == list(expected["systolic"])
    assert outcomes == ["DONE", "DONE"]


def test_a_read_the_service_had_not_served_when_it_stopped_is_served_when_it_starts(
    ledger, s3_server, demo_world, tmp_path
):
    from flowblock.executor.service import ExecutorService

    study = Study(ledger, s3_server, demo_world, vitals(), consenting=30, prefix="bp")
    patient = study.patients[study.consenting[0]]
    study.consent(patient).grant(study.dataset, "user:bob@University", "R", "care")
    bob = study.pool(demo_world.identity("bob"), "access")
    read = {"dataset": study.dataset, "patient": study.consenting[0], "purpose": "care"}
    asked = bob.submit_async(
        "RequestRead", transient={ACCESS_FIELD: json.dumps(read)},
        endorsing_organisations=["HospitalMSP"],
    )  # fmt: skip
    committed = asked.status()
    # The service had seen the request's event (its checkpoint is past it) and stopped
    # before serving it.
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(json.dumps({"block": committed.block_number, "tx_id": asked.tx_id}))
    service = ExecutorService(study.executor, checkpoint, workers=2).start()
    try:
        for _ in range(300):
            asked_now = bob.evaluate(
                "GetAccess", "Hospital", asked.tx_id, target_organisations=["HospitalMSP"]
            )
            status = json.loads(asked_now)["status"]
            if status in ("DONE", "FAILED"):
                break
            threading.Event().wait(0.1)
    finally:
        service.stop()
    assert status == "DONE"


def test_writes_need_write_consent_correct_records_and_keep_their_history(study, demo_world):
    from flowblock.errors import AccessDenied

    patient_id, other_id = study.consenting[1], study.consenting[2]
    patient = study.patients[patient_id]
    study.consent(patient).grant(study.dataset, "user:bob@University", "W", "care")
    bob = Client(study.pool.gateway(demo_world.identity("bob")))
    corrected = f"{study.dataset}-{1:08d}"  # the patient's imported record
    rows = [{"record_id": corrected, "age": 50, "sex": "F", "systolic": 180.0},
            {"age": 61, "sex": "M", "systolic": 120}]  # fmt: skip
    entry, result = served(
        study, patient, lambda: bob.records.write(patient_id, study.dataset, rows)
    )
    assert entry["kind"] == "write" and entry["reader"] == "bob@University"
    assert (result["registered"], result["updated"]) == (1, 1)
    # Computations now see the corrected record and the new one, once each.
    job = study.alice.compute("mean", study.dataset, {"column": "systolic"}, purpose=PURPOSE)
    study.run(job.token_id)
    (group,) = job.wait(timeout=30).value["groups"]
    values = dict(zip(study.frame["patient_id"], study.frame["systolic"], strict=True))
    values[patient_id] = 180.0
    expected = [values[p] for p in study.consenting] + [120.0]
    assert job.wait(timeout=30).cohort_size == 30
    assert group["mean"] == pytest.approx(sum(expected) / len(expected))
    steward = study.pool(demo_world.identity("steward"), "records")
    history = json.loads(steward.evaluate("RecordHistory", study.dataset, corrected))
    assert [change["record"]["version"] for change in history] == [1, 2]  # oldest first
    assert history[-1]["record"]["registered_by"] == "bob@University"
    # A row of the wrong type, or another patient's record, changes nothing.
    with pytest.raises(ComputationFailed, match=r"rows\[0\]\.age must be a whole number"):
        served(study, patient, lambda: bob.records.write(patient_id, study.dataset, [{"age": "x"}]))
    theirs = f"{study.dataset}-{2:08d}"
    parts_before = study.store.list(f"{study.dataset}/writes/")
    with pytest.raises(ComputationFailed, match="another patient"):
        served(
            study, patient,
            lambda: bob.records.write(patient_id, study.dataset, [{"record_id": theirs, "age": 1}]),
        )  # fmt: skip
    assert json.loads(steward.evaluate("GetRecord", study.dataset, theirs))["version"] == 1
    assert study.store.list(f"{study.dataset}/writes/") == parts_before  # no stray rows
    # Compute-only consent never writes; nor does anyone without consent.
    with pytest.raises(AccessDenied, match="no write consent"):
        study.alice.records.write(other_id, study.dataset, rows[1:])


def test_long_work_reports_its_progress_on_the_ledger(study, demo_world):
    job = study.alice.compute("long-running", study.dataset, {"seconds": 2}, purpose=PURPOSE)
    assert job.status == "PENDING"  # not on the Hospital's allow-list: its admin decides
    admin = study.pool(demo_world.identity("admin", org="Hospital"))
    admin.submit("Approve", job.token_id)
    assert study.run(job.token_id) == "DONE"
    assert job.wait(timeout=30).value["groups"] == [{"count": 30}]
    history = study.alice._evaluate("TokenHistory", job.token_id)
    progress = [entry["token"]["progress"] for entry in reversed(history)]
    assert 0 < max(p for p in progress if p < 100) < 100
    assert progress[-1] == 100


def test_a_flow_uses_earlier_outputs_kept_data_side(study, demo_world):
    counts = study.alice.compute("count", study.dataset, {"group_by": ["sex"]}, purpose=PURPOSE)
    assert study.run(counts.token_id) == "DONE"
    by_sex = counts.wait(timeout=30).value["groups"]
    chart = study.alice.compute(
        "chart-of-result", study.dataset, {"kind": "donut", "label": "sex"},
        purpose=PURPOSE, inputs=[counts.token_id],
    )  # fmt: skip
    admin = study.pool(demo_world.identity("admin", org="Hospital"))
    admin.submit("Approve", chart.token_id)
    assert study.run(chart.token_id) == "DONE"
    figure = chart.wait(timeout=30)
    expected = [{"sex": group["sex"], "count": group["count"]} for group in by_sex]
    assert figure.value == {"chart": "donut", "column": "sex", "groups": expected}
    # An output changed behind the ledger's back fails the flow that reads it.
    (kept,) = study.store.list(f"outputs/{counts.token_id}/")
    study.store.put(kept, b'{"value": {}, "patients": []}')
    again = study.alice.compute(
        "chart-of-result", study.dataset, {"label": "sex"}, purpose=PURPOSE,
        inputs=[counts.token_id],
    )  # fmt: skip
    admin.submit("Approve", again.token_id)
    assert study.run(again.token_id) == "FAILED"
    with pytest.raises(ComputationFailed, match="does not match its registered hash"):
        again.wait(timeout=30)


def test_a_misspelt_parameter_is_one_sentence_with_a_suggestion(study):
    from flowblock.errors import RequestRefused

    with pytest.raises(RequestRefused) as refused:
        study.alice.compute("mean", study.dataset, {"colum": "systolic"}, purpose=PURPOSE)
    assert str(refused.value).endswith("did you mean 'column'?")
    assert refused.value.status == 400


def test_a_celery_worker_killed_mid_job_leaves_one_result(
    ledger, s3_server, demo_world, flowblock_devnet, tmp_path
):
    import signal

    from celery import Celery

    from flowblock.testing.queue import celery_worker, redis_server

    study = Study(ledger, s3_server, demo_world, vitals(), consenting=30, prefix="bp")
    job = study.alice.compute("long-running", study.dataset, {"seconds": 6}, purpose=PURPOSE)
    study.pool(demo_world.identity("admin", org="Hospital")).submit("Approve", job.token_id)
    with redis_server(tmp_path) as broker:
        client = Celery(broker=broker, backend=broker)
        with celery_worker(*worker_of(flowblock_devnet, broker, s3_server)) as doomed:
            pending = client.send_task("flowblock.process_token", args=[job.token_id])
            for _ in range(200):  # until the worker has claimed it and is computing
                if job.refresh().status == "RUNNING":
                    break
                threading.Event().wait(0.1)
            assert job.status == "RUNNING"
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
        with celery_worker(*worker_of(flowblock_devnet, broker, s3_server)):
            assert pending.get(timeout=120) == "DONE"
    assert job.wait(timeout=30).value["groups"] == [{"count": 30}]
    history = study.alice._evaluate("TokenHistory", job.token_id)
    assert [entry["token"]["status"] for entry in history].count("DONE") == 1
