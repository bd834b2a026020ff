"""The red-team privacy suite: a determined researcher against the data side's disclosure
control, each attack judged against the truth of data the test made.

Every module shares one in-process ledger, the Hospital's real executor and a real S3
bucket (:class:`flowblock.testing.attacks.Hospital`); each attack imports tables of its
own, so the disclosure history one attack builds (differencing, auditing, refusals) is
not another's.
"""

from __future__ import annotations

import pytest

from flowblock.testing.attacks import Hospital


@pytest.fixture(scope="session")
def hospital(tmp_path_factory, demo_world, s3_server) -> Hospital:
    from flowblock.executor.storage.objects import ObjectStore
    from flowblock.identity.s3 import load_credentials
    from flowblock.testing.flowblock_ledger import LocalDriver, World

    driver = LocalDriver(tmp_path_factory.mktemp("privacy-ledger"))
    store = ObjectStore(s3_server.endpoint, load_credentials(demo_world.data_dir, "Hospital"))
    try:
        yield Hospital(World(driver, demo_world), store)
    finally:
        driver.close()
