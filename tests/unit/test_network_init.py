"""``flowblock network init`` and ``flowblock demo``: idempotent, never replacing a key."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowblock import errors
from flowblock.identity import CertificateAuthority, load_wallet, wallet_path
from flowblock.identity.wallet import KEY_FILE
from flowblock.network.organisations import (
    ORDERER_ORG_IDENTITIES,
    ORDERER_ORGANISATION,
    PEER_ORG_IDENTITIES,
    initialise,
)
from flowblock.stack.demo import PEOPLE, create_demo


def all_keys(data_dir: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(data_dir.rglob("priv_sk"))}


def test_init_creates_each_organisation_with_its_nodes(data_dir):
    steps = initialise(data_dir, ["Hospital", "University"])
    assert all(step.created for step in steps)
    for org in ("Hospital", "University"):
        authority = CertificateAuthority.load(data_dir, org)
        for name, role in PEER_ORG_IDENTITIES.items():
            identity = authority.load_member(data_dir, name)
            assert (identity.role, identity.organisation) == (role, org)
    orderer = CertificateAuthority.load(data_dir, ORDERER_ORGANISATION)
    for name, role in ORDERER_ORG_IDENTITIES.items():
        assert orderer.load_member(data_dir, name).role == role


def test_init_twice_keeps_everything_and_creates_nothing(data_dir):
    initialise(data_dir, ["Hospital", "University"])
    before = all_keys(data_dir)
    again = initialise(data_dir, ["Hospital", "University"])
    assert not any(step.created for step in again)
    assert all_keys(data_dir) == before


def test_init_adds_a_new_organisation_without_touching_the_others(data_dir):
    initialise(data_dir, ["Hospital"])
    before = all_keys(data_dir)
    steps = initialise(data_dir, ["Hospital", "Pharma"])
    assert {s.what for s in steps if s.created} == {
        "CA of Pharma",
        "TLS certificate of peer0 of Pharma",
        "S3 credentials of Pharma",
        *(f"{role} {name} of Pharma" for name, role in PEER_ORG_IDENTITIES.items()),
    }
    after = all_keys(data_dir)
    assert {path: after[path] for path in before} == before


def test_init_refuses_to_go_on_over_a_damaged_wallet(data_dir):
    initialise(data_dir, ["Hospital"])
    peer = wallet_path(data_dir, "Hospital", "peer0")
    damaged = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    (peer / KEY_FILE).write_bytes(damaged)
    with pytest.raises(errors.WalletCorrupt):
        initialise(data_dir, ["Hospital"])
    assert (peer / KEY_FILE).read_bytes() == damaged


def test_init_validates_every_name_before_creating_anything(data_dir):
    with pytest.raises(errors.InvalidArgument, match="organisation name"):
        initialise(data_dir, ["Hospital", "not/an org"])
    assert list(data_dir.iterdir()) == []


def test_demo_creates_its_people_with_their_roles(data_dir):
    create_demo(data_dir)
    for org, name, role in PEOPLE:
        identity = load_wallet(wallet_path(data_dir, org, name))
        assert (identity.organisation, identity.role) == (org, role)
    assert not any(step.created for step in create_demo(data_dir))


def test_demo_world_fixture_matches_the_demo(demo_world):
    assert demo_world.identity("alice").role == "researcher"
    assert demo_world.identity("executor", org="Hospital").role == "executor"
