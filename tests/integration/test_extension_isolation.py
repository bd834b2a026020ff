"""A notebook that goes around the magics gets nothing: the ledger is the only channel.

The kernel gets what a spawned server gets: the gateway's address and a copy of alice's
wallet, nothing else. On one machine the S3 server is reachable (the spawner's overlay
network removes that route in production), so here the notebook even knows its address
and bucket and still reads nothing, for want of credentials; the executor has no
address at all, and the ledger refuses alice whatever executor call she makes.
"""

from __future__ import annotations

import shutil
import textwrap

import nbformat
import s3fs
from nbclient import NotebookClient

from flowblock.identity.s3 import load_credentials

ATTEMPTS = [
    # Nothing of the data side is in the kernel's environment.
    """
    import os
    flowblock = sorted(k for k in os.environ if k.startswith("FLOWBLOCK_"))
    assert flowblock == ["FLOWBLOCK_GATEWAY", "FLOWBLOCK_WALLET"], flowblock
    assert not [k for k in os.environ if k.startswith(("AWS_", "S3_"))]
    """,
    # Anonymous S3 requests are refused: the bucket, an object, the list of buckets.
    """
    import urllib.error, urllib.request
    for path in ("", f"{BUCKET}/", f"{BUCKET}/{OBJECT}"):
        try:
            urllib.request.urlopen(f"{S3}/{path}", timeout=10)
        except urllib.error.HTTPError as refused:
            assert refused.code == 403, (path, refused.code)
        else:
            raise AssertionError(f"S3 answered {path!r} without credentials")
    """,
    # Credentials made up from what the notebook knows are refused too.
    """
    import s3fs
    for key, secret in (("alice", "alice"), ("University", "University"), ("Hospital", "")):
        fs = s3fs.S3FileSystem(key=key, secret=secret or "x", client_kwargs={"endpoint_url": S3})
        try:
            fs.cat(f"{BUCKET}/{OBJECT}")
        except PermissionError:
            pass
        else:
            raise AssertionError(f"S3 listed the bucket for {key!r}")
    """,
    # The executor is reached only through the ledger, which refuses alice its calls.
    """
    from flowblock import Client
    from flowblock.errors import EndorseError, FlowBlockError
    from flowblock.ledger import Gateway

    client = Client.from_env()
    job = client.compute("count", "vitals")
    job.wait(60)
    with Gateway.connect(os.environ["FLOWBLOCK_GATEWAY"], os.environ["FLOWBLOCK_WALLET"]) as g:
        ledger = g.get_network("flowblock").get_contract("flowblock")
        for call in (("Claim", job.token_id), ("Fail", job.token_id, "x"),
                     ("consent:WhoMayCompute", "vitals", "alice@University", "research", 10, "")):
            try:
                ledger.submit(*call)
            except EndorseError as refused:
                assert refused.chaincode_status == 403, (call[0], str(refused))
            else:
                raise AssertionError(f"the ledger let alice call {call[0]}")
    try:
        client.records.read(patient="patient1", dataset="vitals", timeout=30)
    except FlowBlockError:
        pass
    else:
        raise AssertionError("alice read a patient's rows without read consent")
    """,
]


def test_a_notebook_cannot_reach_the_data_around_the_ledger(demo_stack, tmp_path):
    home = tmp_path / "home"
    wallet = home / ".flowblock" / "wallet"
    shutil.copytree(demo_stack.wallet("alice"), wallet)
    env = {**demo_stack.kernel_env("alice", home), "FLOWBLOCK_WALLET": str(wallet)}
    notebook = nbformat.v4.new_notebook()
    # The worst case: the notebook knows where a real object of the Hospital's lies.
    credentials = load_credentials(demo_stack.data_dir, "Hospital")
    endpoint = demo_stack.description["s3"]["endpoint"]
    hospital = s3fs.S3FileSystem(
        key=credentials.access_key,
        secret=credentials.secret_key,
        client_kwargs={"endpoint_url": endpoint},
    )
    objects = hospital.find(credentials.bucket)
    assert objects, "the Hospital's bucket holds the demo's records"
    bucket, obj = objects[0].split("/", 1)
    notebook.cells = [
        nbformat.v4.new_code_cell(f"S3, BUCKET, OBJECT = {endpoint!r}, {bucket!r}, {obj!r}")
    ]
    notebook.cells += [nbformat.v4.new_code_cell(textwrap.dedent(code)) for code in ATTEMPTS]
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(home)}}
    )
    client.execute(env=env)  # a failed assertion in any cell fails the test, naming it
    assert all(cell.outputs == [] for cell in notebook.cells[1:]), [
        c.outputs for c in notebook.cells
    ]
