"""One organisation's admin cannot make its code run on another organisation's data.

Found from outside (issue 17, finding 7): any organisation's admin could publish a newer
version of any method name, which then resolved as the default on the Hospital's data,
was approved by the Hospital's rules and failed on its executor; and the Hospital's
admin could not disable it. Each organisation's versions are now its own, and what runs
on a dataset is what its organisation published. Each rule is proven in-process and on
a devnet (the ``world`` fixture's two drivers).
"""

from __future__ import annotations

import hashlib
import json

import pytest

from flowblock.testing.flowblock_ledger import method_spec

PARAMS = json.dumps({"column": "age"})


def foreign(world, version: str) -> dict:
    """The University's admin publishes code of its own under the Hospital's method name."""
    spec = method_spec(
        world.method, version, code_hash=hashlib.sha256(b"the university's code").hexdigest()
    )
    return world.submit(world.university_admin, "catalogue:Publish", json.dumps(spec))


def test_a_newer_version_from_another_organisation_never_runs_on_the_hospitals_data(world):
    world.setup(rules={"auto_approve": {"methods": [world.method], "purposes": ["research"],
                                        "organisations": ["University"]}})  # fmt: skip
    assert foreign(world, "99.0")["publisher"] == "University"
    # A request without a version takes the Hospital's own, approved by its rules as before.
    token = world.request(purpose="research")
    assert (token["version"], token["code_hash"]) == ("1.0", method_spec(world.method)["code_hash"])
    assert token["status"] == "APPROVED"
    # Asked for by name, the University's version is refused on the Hospital's data.
    world.refused(
        404, f"Hospital has published no method {world.method}@99.0", world.alice, "Request",
        world.method, "99.0", world.dataset, PARAMS, "research", "[]",
    )  # fmt: skip
    # The Hospital's admin still disables its own version; the University's admin cannot.
    world.refused(
        403, "for Hospital's admin", world.university_admin, "catalogue:SetEnabled",
        world.method, "1.0", False,
    )  # fmt: skip
    world.submit(world.hospital_admin, "catalogue:SetEnabled", world.method, "1.0", False)
    world.refused(
        404, f"Hospital has published no enabled method {world.method!r}", world.alice,
        "Request", world.method, "", world.dataset, PARAMS, "research", "[]",
    )  # fmt: skip
    # A token approved before the disable is not claimed after it.
    world.refused(409, "has been disabled", world.executor, "Claim", token["token_id"])


def test_a_version_taken_first_by_another_organisation_does_not_block_its_owner(world):
    world.setup()
    foreign(world, "2.0")
    ours = world.submit(
        world.hospital_admin, "catalogue:Publish", json.dumps(method_spec(world.method, "2.0"))
    )
    assert ours["publisher"] == "Hospital"
    token = world.request()
    assert token["code_hash"] == method_spec(world.method, "2.0")["code_hash"]
    # Each admin enables and disables its own organisation's 2.0 alone.
    world.submit(world.university_admin, "catalogue:SetEnabled", world.method, "2.0", False)
    assert world.request()["code_hash"] == ours["code_hash"]
    listed = [
        (m["version"], m["publisher"], m["enabled"])
        for m in world.evaluate(world.alice, "catalogue:ListMethods")
        if m["name"] == world.method
    ]
    assert listed == [("1.0", "Hospital", True), ("2.0", "Hospital", True),
                      ("2.0", "University", False)]  # fmt: skip


@pytest.mark.unit
def test_the_hospital_publishes_its_algorithms_whoever_took_their_names_first(tmp_path, demo_world):
    """``flowblock algorithms publish`` skipped any name and version another organisation
    had published, so the University taking ``mean@1.0`` first kept the Hospital's out."""
    from flowblock.chaincode.contracts import CHAINCODE_NAME, flowblock_chaincode
    from flowblock.executor.algorithms import load_algorithms, publish_algorithms
    from flowblock.testing.chaincode import LocalGateway, LocalLedger

    ledger = LocalLedger(flowblock_chaincode(), tmp_path, name=CHAINCODE_NAME)
    try:

        def catalogue(admin):
            return (
                LocalGateway(ledger, admin)
                .get_network("flowblock")
                .get_contract(CHAINCODE_NAME, "catalogue")
            )

        university = catalogue(demo_world.identity("admin", org="University"))
        mean = load_algorithms()[("mean", "1.0")]
        university.submit("Publish", json.dumps(mean.catalogue_entry()))
        published = publish_algorithms(catalogue(demo_world.identity("admin", org="Hospital")))
        assert mean in published
        listed = json.loads(university.evaluate("ListMethods"))
        owners = {m["publisher"] for m in listed if (m["name"], m["version"]) == ("mean", "1.0")}
        assert owners == {"Hospital", "University"}
    finally:
        ledger.close()
