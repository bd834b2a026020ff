"""The embedded S3 server from another local user's seat: only S3 with credentials opens it.

SeaweedFS runs a master, a volume server, a filer and the S3 gateway in one process,
each with an HTTP and a gRPC port on 127.0.0.1. Every user of the machine can connect to
those ports, so each must refuse whoever lacks the server's own keys: the HTTP APIs want
a JWT signed with a key in the server's private directory, the gRPC ports a client
certificate from its private CA. Each test writes a record through S3 with the
Hospital's credentials and tries to reach it another way.
"""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

from flowblock.executor.storage.objects import ObjectStore
from flowblock.identity.s3 import load_credentials

#: A cheap read-only call on each gRPC port (package.Service/Method in SeaweedFS's protos).
GRPC_PROBES = {
    "master.port.grpc": "/master_pb.Seaweed/GetMasterConfiguration",
    "volume.port.grpc": "/volume_server_pb.VolumeServer/VolumeServerStatus",
    "filer.port.grpc": "/filer_pb.SeaweedFiler/GetFilerConfiguration",
    "s3.port.grpc": "/messaging_pb.SeaweedS3IamCache/ListPolicies",
}


@pytest.fixture(scope="module")
def record(s3_server, demo_world) -> tuple[str, bytes]:
    """A record of the Hospital's, stored through S3: (its key, its bytes)."""
    store = ObjectStore(s3_server.endpoint, load_credentials(demo_world.data_dir, "Hospital"))
    # Random bytes: nothing compresses them, so they sit in the volume as written.
    data = b"PATIENT-RECORD:" + secrets.token_bytes(2048)
    store.put("attack/secret.parquet", data)
    assert store.get("attack/secret.parquet") == data
    return "attack/secret.parquet", data


def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _port(s3_server, name: str) -> int:
    return s3_server.ports[name]


def test_a_plain_get_on_the_filer_port_does_not_return_the_record(s3_server, record):
    key, data = record
    bucket = load_bucket(s3_server)
    for path in (f"/buckets/{bucket}/{key}", f"/buckets/{bucket}/{key}?metadata=true",
                 f"/buckets/{bucket}/", "/buckets/"):  # fmt: skip
        status, body = _http("GET", f"http://127.0.0.1:{_port(s3_server, 'filer.port')}{path}")
        assert status >= 400, f"the filer answered GET {path} with {status}"
        assert data[:64] not in body and bucket.encode() not in body


def test_a_plain_put_on_the_filer_port_writes_nothing_into_the_bucket(
    s3_server, record, demo_world
):
    bucket = load_bucket(s3_server)
    url = f"http://127.0.0.1:{_port(s3_server, 'filer.port')}/buckets/{bucket}/attack/planted.txt"
    status, _ = _http("PUT", url, b"planted by another user")
    assert status >= 400, f"the filer accepted a PUT without a token ({status})"
    store = ObjectStore(s3_server.endpoint, load_credentials(demo_world.data_dir, "Hospital"))
    assert not store.exists("attack/planted.txt")


def test_the_volume_port_refuses_a_read_of_a_stored_chunk(s3_server, record):
    _, data = record
    fids = stored_file_ids(Path(s3_server.directory, "data"))
    assert fids, "found no stored needle to read: the volume layout is not the one expected"
    port = _port(s3_server, "volume.port")
    for fid in fids:
        status, body = _http("GET", f"http://127.0.0.1:{port}/{fid}")
        assert status >= 400, f"the volume server served {fid} without a token ({status})"
        assert data[:64] not in body


def test_the_volume_port_refuses_a_write(s3_server, record):
    fid = stored_file_ids(Path(s3_server.directory, "data"))[0]
    port = _port(s3_server, "volume.port")
    status, _ = _http("PUT", f"http://127.0.0.1:{port}/{fid}", b"overwritten")
    assert status >= 400, f"the volume server accepted a write to {fid} without a token"


def test_the_master_hands_out_no_tokens_and_assigns_nothing(s3_server, record):
    """The master signs the JWTs a volume server accepts: asking it must not get one."""
    fid = stored_file_ids(Path(s3_server.directory, "data"))[0]
    port = _port(s3_server, "master.port")
    for path in ("/dir/assign", f"/dir/lookup?fileId={fid}&read=yes", "/vol/status",
                 "/dir/status", "/col/delete?collection=x"):  # fmt: skip
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, token = response.status, response.headers.get("Authorization")
        except urllib.error.HTTPError as error:
            status, token = error.code, error.headers.get("Authorization")
        assert status >= 400, f"the master answered {path} with {status}"
        assert not token, f"the master handed out a token on {path}"


@pytest.mark.parametrize("port_name", sorted(GRPC_PROBES))
def test_grpc_without_a_client_certificate_is_refused(s3_server, record, port_name):
    address = f"127.0.0.1:{_port(s3_server, port_name)}"
    method = GRPC_PROBES[port_name]
    plain = grpc.insecure_channel(address)
    assert _grpc_call(plain, method) == grpc.StatusCode.UNAVAILABLE, "plaintext gRPC got in"
    # TLS that trusts the server's CA but shows no certificate of its own.
    ca = s3_server.security.ca_certificate.read_bytes()
    anonymous = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=ca))
    assert _grpc_call(anonymous, method) == grpc.StatusCode.UNAVAILABLE, "TLS without a cert"
    # The control: with the server's own client certificate the call gets through TLS,
    # so the refusals above are the port's, not a wrong address. (The S3 gateway's IAM
    # service then also wants a token signed with the filer's key: UNAUTHENTICATED.)
    own = grpc.secure_channel(
        address,
        grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=s3_server.security.key("client").read_bytes(),
            certificate_chain=s3_server.security.certificate("client").read_bytes(),
        ),
        options=[("grpc.ssl_target_name_override", "localhost")],
    )
    assert _grpc_call(own, method) in {grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED}


def test_grpc_on_the_local_sockets_wants_a_certificate_too(s3_server, record):
    """SeaweedFS also serves each gRPC API on a Unix socket at a fixed path in /tmp."""
    sockets = {
        Path(f"/tmp/seaweedfs-{name.split('.')[0]}-grpc-{_port(s3_server, name)}.sock"): method
        for name, method in GRPC_PROBES.items()
    }
    assert [socket for socket in sockets if socket.exists()], "SeaweedFS made no gRPC socket"
    for socket, method in sockets.items():
        if not socket.exists():  # the S3 gateway's, in versions that do not make one
            continue
        assert socket.stat().st_mode & 0o077 == 0, f"{socket} is open to other users"
        channel = grpc.insecure_channel(f"unix:{socket}")
        assert _grpc_call(channel, method) == grpc.StatusCode.UNAVAILABLE, f"{socket} let in"


def test_what_still_answers_without_credentials_names_no_record(s3_server, record):
    """SeaweedFS has no switch for the master's status page and the volume server's
    /status (volume ids, sizes, the bucket's name as a collection): they still answer,
    but name no object, no file id and no byte of a record."""
    key, data = record
    fids = stored_file_ids(Path(s3_server.directory, "data"))
    for port_name, path in (("master.port", "/"), ("master.port", "/cluster/status"),
                            ("volume.port", "/status"), ("s3.port", "/status")):  # fmt: skip
        _, body = _http("GET", f"http://127.0.0.1:{_port(s3_server, port_name)}{path}")
        assert data[:64] not in body and key.encode() not in body
        assert not [fid for fid in fids if fid.encode() in body], f"{path} names a file id"


def test_s3_with_the_organisations_credentials_still_reads_and_writes(
    s3_server, record, demo_world
):
    key, data = record
    store = ObjectStore(s3_server.endpoint, load_credentials(demo_world.data_dir, "Hospital"))
    assert store.get(key) == data
    store.put("attack/after.txt", b"still works")
    assert store.get("attack/after.txt") == b"still works"


def test_the_servers_keys_and_certificates_are_private(s3_server, record):
    security = s3_server.security.directory
    assert security.stat().st_mode & 0o077 == 0
    for path in security.iterdir():
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by other users"


# -- helpers ---------------------------------------------------------------------------------


def load_bucket(s3_server) -> str:
    return s3_server.organisations["Hospital"].bucket


def _grpc_call(channel: grpc.Channel, method: str) -> grpc.StatusCode:
    """The status of calling ``method`` with an empty request (every field left default)."""
    call = channel.unary_unary(method)
    try:
        call(b"", timeout=5)
    except grpc.RpcError as error:
        return error.code()
    finally:
        channel.close()
    return grpc.StatusCode.OK


def stored_file_ids(data_dir: Path) -> list[str]:
    """The file ids (``volume,needle-and-cookie``) of every needle in the volumes under
    ``data_dir``, read from the store's own files as only its owner can.

    An ``.idx`` entry is a needle id (8 bytes), its offset in 8-byte units (4 bytes, or
    5 in the large-disk builds) and its size (4); the needle in the ``.dat`` starts with
    its cookie (4) and id (8). The entry size is the one whose needles check out.
    """
    fids: list[str] = []
    for index in sorted(data_dir.rglob("*.idx")):
        volume = index.stem.rsplit("_", 1)[-1]
        entries = index.read_bytes()
        blob = index.with_suffix(".dat").read_bytes()
        for size in (17, 16):
            found = _needles(entries, blob, size)
            if found is not None:
                fids.extend(f"{volume},{needle}" for needle in found)
                break
    return fids


def _needles(entries: bytes, blob: bytes, entry_size: int) -> list[str] | None:
    if not entries or len(entries) % entry_size:
        return None
    found = []
    for at in range(0, len(entries), entry_size):
        entry = entries[at : at + entry_size]
        needle_id = int.from_bytes(entry[:8], "big")
        units = int.from_bytes(entry[8:12], "big")
        if entry_size == 17:
            units |= entry[12] << 32
        start = units * 8
        if start == 0:  # deleted
            continue
        cookie, stored_id = blob[start : start + 4], int.from_bytes(blob[start + 4 : start + 12])
        if stored_id != needle_id:
            return None
        key_and_cookie = needle_id.to_bytes(8, "big") + cookie
        found.append(key_and_cookie.lstrip(b"\0").hex())
    return found
