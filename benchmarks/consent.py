"""Consent and records at hospital scale: grants, registrations, who-may-compute listings.

Run: ``.venv/bin/python benchmarks/consent.py [--patients 100000] [--records 100000]``.

On a devnet serving FlowBlock's chaincode (each in its own process):
- one patient grants and revokes on a quiet ledger: latency p50/p99; then 50 patients
  at once grant and revoke: grants/s (and their latency under that load);
- a steward registers 100,000 records in batches: total time and records/s;
- the executor lists who may compute on a dataset of 100,000 consenting patients,
  page by page. Grants are one transaction per patient by design (only the patient can
  sign one), so the 100,000 consents the listing reads are seeded into the world state
  directly, exactly as those transactions would have left it, and stated as seeded.
Each figure is printed beside a baseline from the same run: latencies against the
orderer's batch timeout, rates against the protocol's floor (``floor.py``: the same gRPC
round trips with empty messages and no work; a Grant has a submit's shape, one read and
one write batch on the patient's organisation's peer; a listing page, an evaluation's).
Targets (issue 5): grant p50 ≤ 50 ms, ≥ 200 grants/s, 100,000 records in ≤ 60 s, the
100,000-patient listing in ≤ 5 s.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sqlite3
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from common import percentiles, rate, start_chaincode
from floor import EVALUATION, SUBMIT, Floor

from flowblock.canonical import canonical_json
from flowblock.consent import grant_transient
from flowblock.identity import CertificateAuthority
from flowblock.ledger import all_pages
from flowblock.testing import make_demo_world
from flowblock.testing.flowblock_ledger import VITALS_SCHEMA, GatewayDriver, records_for
from flowblock.testing.ledger import DevnetProcess
from flowblock.vocabulary import ENROL_FIELD, RECORDS_FIELD, SECRET_FIELD

#: The Hospital collection's secret in this benchmark (set up with it, so that the
#: seeded consents are where the chaincode looks for them).
SECRET = b"the consent benchmark's secret!!"

BATCH = 500  # records per registration transaction, about 150 KB


def seed_consents(data_dir: Path, dataset: str, patients: int) -> None:
    """Write the private consent entries ``patients`` Grant transactions would leave in
    the Hospital's collection (keys hidden with its secret, :data:`SECRET`)."""
    collection = "_implicit_org_HospitalMSP"
    hide = partial(hmac.new, SECRET, digestmod=hashlib.sha256)
    values, hashes = [], []
    for n in range(patients):
        patient = f"seed{n:06d}@Hospital"
        key = f"consents|{dataset}|{hide(patient.encode()).hexdigest()[:40]}".encode()
        entry = {"patient": patient, "grantee": "org:University", "purpose": "research",
                 "record_id": "", "rights": "C", "until": ""}  # fmt: skip
        value = canonical_json({"grants": {f"{n:064x}": entry}})
        key_hash, value_hash = hashlib.sha256(key).digest(), hashlib.sha256(value).digest()
        values.append(("HospitalMSP", "flowblock", collection, key, key_hash, value, 0, 0))
        hashes.append(("flowblock", collection, key_hash, value_hash, 0, 0))
    with sqlite3.connect(data_dir / "devnet" / "flowblock" / "state.sqlite") as db:
        db.executemany("INSERT OR REPLACE INTO private_values VALUES (?,?,?,?,?,?,?,?)", values)
        db.executemany("INSERT OR REPLACE INTO private_hashes VALUES (?,?,?,?,?,?)", hashes)


def grant(driver, patient, dataset: str) -> dict:
    """A patient's grant, as ``client.consent.grant`` sends it."""
    return driver.submit(
        patient, "consent:Grant", endorsing_organisations=["HospitalMSP"],
        transient=grant_transient(dataset, "org:University", "C", "research"),
    )  # fmt: skip


def enroll(driver, steward, patients) -> None:
    """Record whose each patient certificate is, as the Hospital does when it issues them."""
    batch = {patient.name: patient.patient for patient in patients}
    driver.submit(steward, "consent:Enrol", transient={ENROL_FIELD: json.dumps(batch)},
                  endorsing_organisations=["HospitalMSP"])  # fmt: skip


def revoke(driver, patient, grant_id: str) -> None:
    driver.submit(patient, "consent:RevokeGrant", grant_id, endorsing_organisations=["HospitalMSP"])


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--concurrent-patients", type=int, default=50)
    options.add_argument("--latency-samples", type=int, default=100)
    options.add_argument("--seconds", type=float, default=10.0, help="length of the grant run")
    options.add_argument("--records", type=int, default=100_000)
    options.add_argument("--patients", type=int, default=100_000, help="patients listed")
    options.add_argument("--page", type=int, default=10_000, help="patients per listing page")
    args = options.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="flowblock-consent-bench-"))
    world = make_demo_world(data_dir)
    hospital = CertificateAuthority.load(data_dir, "Hospital")
    steward, executor = world.identity("steward"), world.identity("executor", org="Hospital")
    chaincode, address = start_chaincode()
    devnet = DevnetProcess(data_dir, {"flowblock": address}).start()
    driver = GatewayDriver(devnet.address)
    try:
        driver.submit(executor, "consent:SetUpCollection", transient={SECRET_FIELD: SECRET},
                      endorsing_organisations=["HospitalMSP"])  # fmt: skip
        for dataset in ("vitals", "listed"):
            driver.submit(steward, "records:RegisterDataset", dataset, "tabular",
                          json.dumps(VITALS_SCHEMA))  # fmt: skip

        # 1. Grant and revoke latency on a quiet ledger, then many patients at once.
        alone = hospital.issue("bench-alone", "patient")
        enroll(driver, steward, [alone])
        quiet_grant: list[float] = []
        quiet_revoke: list[float] = []
        for _ in range(args.latency_samples):
            started = time.perf_counter()
            granted_now = grant(driver, alone, "vitals")
            granted = time.perf_counter()
            revoke(driver, alone, granted_now["grant_id"])
            quiet_grant.append((granted - started) * 1000)
            quiet_revoke.append((time.perf_counter() - granted) * 1000)
        patients = [
            hospital.issue(f"bench{n:03d}", "patient") for n in range(args.concurrent_patients)
        ]
        enroll(driver, steward, patients)
        grant_ms: list[float] = []
        revoke_ms: list[float] = []
        lock = threading.Lock()

        def grant_and_revoke(thread: int, n: int) -> None:
            started = time.perf_counter()
            granted_now = grant(driver, patients[thread], "vitals")
            granted = time.perf_counter()
            revoke(driver, patients[thread], granted_now["grant_id"])
            with lock:
                grant_ms.append((granted - started) * 1000)
                revoke_ms.append((time.perf_counter() - granted) * 1000)

        cycles = rate(args.concurrent_patients, args.seconds, grant_and_revoke)
        grants_per_second = cycles  # one grant (and one revocation) per cycle

        # 2. A steward registers records in batches, four transactions in flight.
        names = [f"patient{n % 1000:04d}" for n in range(args.records)]
        batches = [records_for(names[i : i + BATCH], "vitals", start=i)
                   for i in range(0, args.records, BATCH)]  # fmt: skip
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            done = list(pool.map(
                lambda batch: driver.submit(
                    steward, "records:RegisterRecords", "vitals",
                    transient={RECORDS_FIELD: json.dumps(batch)},
                    endorsing_organisations=["HospitalMSP"]), batches))  # fmt: skip
        registration_s = time.perf_counter() - started
        registered = sum(result["registered"] for result in done)

        # 3. Who may compute on a dataset of many consenting patients.
        devnet.stop()
        seed_consents(data_dir, "listed", args.patients)
        devnet.start()
        driver.close()
        driver = GatewayDriver(devnet.address)
        started = time.perf_counter()
        listed = len(all_pages(
            lambda bookmark: driver.evaluate(executor, "consent:WhoMayCompute", "listed",
                                             "alice@University", "study", args.page, bookmark),
            "patients",
        ))  # fmt: skip
        listing_s = time.perf_counter() - started
    finally:
        driver.close()
        devnet.stop()
        chaincode.terminate()
    with Floor() as floor:
        seconds = min(args.seconds, 5.0)
        submit_floor = floor.rate(args.concurrent_patients, seconds, **SUBMIT)
        evaluate_floor = floor.rate(1, seconds, **EVALUATION)

    grant_p50, grant_p99 = percentiles(quiet_grant)
    revoke_p50, revoke_p99 = percentiles(quiet_revoke)
    loaded_p50, loaded_p99 = percentiles(grant_ms)
    print("FlowBlock consent benchmark: devnet, FlowBlock chaincode, batch timeout 20 ms")
    print(
        f"  grant   p50 {grant_p50:6.1f} ms  p99 {grant_p99:6.1f} ms   "
        f"p50 = {grant_p50 / 20:.2f}x the batch timeout   (target p50 ≤ 50 ms)"
    )
    print(f"  revoke  p50 {revoke_p50:6.1f} ms  p99 {revoke_p99:6.1f} ms")
    print(
        f"  grants with {args.concurrent_patients} patients at once {grants_per_second:7.0f} /s "
        f"(and as many revocations) = {2 * grants_per_second / submit_floor:.2f}x the "
        f"protocol's floor of {submit_floor / 2:.0f} grant-and-revoke pairs/s with as many "
        f"clients (target ≥ 200/s)\n"
        f"          grant latency under that load: p50 {loaded_p50:.0f} ms, p99 {loaded_p99:.0f} ms"
    )
    print(
        f"  registered {registered:,} records in {registration_s:5.1f} s = "
        f"{registered / registration_s:7.0f} records/s = "
        f"{registered / registration_s / submit_floor:.1f} records per floor submit "
        f"(target {args.records:,} in ≤ 60 s)"
    )
    print(
        f"  listed {listed:,} patients who may compute (consents seeded) in {listing_s:5.2f} s = "
        f"{listed / listing_s:7.0f} patients/s = {listed / listing_s / evaluate_floor:.1f} "
        f"patients per floor evaluation from one client (target {args.patients:,} in ≤ 5 s)"
    )
    print(
        "  floor: the same gRPC round trips with empty messages and no work, this machine, "
        "this run (benchmarks/floor.py)"
    )


if __name__ == "__main__":
    main()
