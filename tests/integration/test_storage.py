"""Records in a real S3 server: each organisation in its own bucket, every byte hashed."""

from __future__ import annotations

import hashlib
import stat

import pytest

from flowblock.executor.storage.objects import (
    ObjectStore,
    RecordTampered,
    StorageDenied,
    StorageError,
)
from flowblock.identity.s3 import (
    S3Credentials,
    credentials_path,
    ensure_credentials,
    load_credentials,
)


@pytest.fixture
def hospital(s3_server, demo_world) -> ObjectStore:
    return ObjectStore(s3_server.endpoint, load_credentials(demo_world.data_dir, "Hospital"))


def test_objects_round_trip_with_their_hash(hospital):
    digest = hospital.put("vitals/p1.json", b'{"systolic": 120}')
    assert digest == hashlib.sha256(b'{"systolic": 120}').hexdigest()
    assert hospital.get("vitals/p1.json") == b'{"systolic": 120}'
    assert hospital.get_verified("vitals/p1.json", digest) == b'{"systolic": 120}'
    assert "vitals/p1.json" in hospital.list("vitals/")
    many = hospital.get_many(["vitals/p1.json"])
    assert many == {"vitals/p1.json": b'{"systolic": 120}'}


def test_deleted_objects_are_gone_and_an_emptied_folder_lists_nothing(hospital):
    hospital.put("due/a", b"")
    hospital.put("due/b", b"")
    assert sorted(hospital.list("due/")) == ["due/a", "due/b"]
    for key in ("due/a", "due/b", "due/never-there"):
        hospital.delete(key)
    assert not hospital.exists("due/a")
    assert hospital.list("due/") == []


def test_a_changed_object_no_longer_verifies_and_the_error_names_it(hospital):
    digest = hospital.put("vitals/p2.json", b"original")
    hospital.put("vitals/p2.json", b"tampered")
    with pytest.raises(RecordTampered, match=r"vitals/p2\.json") as caught:
        hospital.get_verified("vitals/p2.json", digest)
    assert caught.value.expected == digest


def test_an_organisation_cannot_touch_another_ones_bucket(s3_server, demo_world, hospital):
    university = ObjectStore(
        s3_server.endpoint, load_credentials(demo_world.data_dir, "University")
    )
    university.put("notes/a.txt", b"university data")
    intruder = ObjectStore(
        s3_server.endpoint,
        S3Credentials(
            *(lambda c: (c.access_key, c.secret_key))(
                load_credentials(demo_world.data_dir, "Hospital")
            ),
            bucket=university.bucket,
        ),
    )
    with pytest.raises(StorageDenied, match="may not access"):
        intruder.get("notes/a.txt")
    with pytest.raises(StorageDenied):
        intruder.put("notes/b.txt", b"planted")
    assert not university.exists("notes/b.txt")


def test_a_wrong_secret_is_refused(s3_server, demo_world):
    real = load_credentials(demo_world.data_dir, "Hospital")
    forged = ObjectStore(s3_server.endpoint, S3Credentials(real.access_key, "not-it", real.bucket))
    with pytest.raises(StorageDenied):
        forged.get("vitals/p1.json")


def test_missing_objects_and_bad_keys_are_one_sentence(hospital):
    with pytest.raises(StorageError, match="there is no object 'nope'"):
        hospital.get("nope")
    with pytest.raises(StorageError, match="not a valid object key"):
        hospital.get("../etc/passwd")


def test_credentials_are_private_stable_and_never_printed(data_dir):
    from flowblock.identity import CertificateAuthority

    CertificateAuthority.create(data_dir, "Clinic")
    first, created = ensure_credentials(data_dir, "Clinic")
    again, created_again = ensure_credentials(data_dir, "Clinic")
    assert (created, created_again) == (True, False)
    assert again == first
    assert stat.S_IMODE(credentials_path(data_dir, "Clinic").stat().st_mode) == 0o600
    assert first.secret_key not in repr(first)
    assert first.bucket == "clinic-data"


def test_a_killed_stack_leaves_no_server_behind_and_starts_again(demo_world, tmp_path):
    """kill -9 of the process that ran SeaweedFS: the server dies with it (it kept its ports
    and its store locked, and the next start failed), and a new one starts on the store."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from flowblock.executor.storage.seaweedfs import SeaweedFS
    from flowblock.identity.s3 import load_credentials

    organisations = {"Hospital": load_credentials(demo_world.data_dir, "Hospital")}
    script = (
        "import json, sys, time\n"
        "from flowblock.executor.storage.seaweedfs import SeaweedFS\n"
        "from flowblock.identity.s3 import S3Credentials\n"
        "orgs = {k: S3Credentials(**v) for k, v in json.loads(sys.argv[2]).items()}\n"
        "server = SeaweedFS(sys.argv[1], orgs).start()\n"
        "print(server.process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    plain = {org: vars(c) for org, c in organisations.items()}
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "s3"), json.dumps(plain)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    weed = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(weed) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(weed), "SeaweedFS outlived the process that started it"
    again = SeaweedFS(tmp_path / "s3", organisations).start()
    try:
        assert again.process.poll() is None
    finally:
        again.stop(graceful=False)
    assert os.listdir(tmp_path / "s3").count("filer.sock") == 0


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has ended)."""
    from pathlib import Path

    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
