"""Certificates, roles, signatures and wallets: what every ledger identity rests on."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from flowblock import errors
from flowblock.identity import (
    USER_ROLES,
    CertificateAuthority,
    is_low_s,
    load_wallet,
    read_attributes,
    role_of,
    sign,
    verify,
    write_wallet,
)
from flowblock.identity.certificates import ATTRIBUTES_OID
from flowblock.identity.signing import P256_ORDER
from flowblock.identity.wallet import CERT_FILE, KEY_FILE


@pytest.fixture
def hospital(data_dir: Path) -> CertificateAuthority:
    return CertificateAuthority.create(data_dir, "Hospital")


@pytest.fixture
def university(data_dir: Path) -> CertificateAuthority:
    return CertificateAuthority.create(data_dir, "University")


def test_certificate_verifies_under_its_ca_and_not_under_another(hospital, university):
    alice = university.issue("alice", "researcher")
    university.verify(alice.certificate)
    with pytest.raises(errors.UntrustedCertificate, match="University"):
        hospital.verify(alice.certificate)


def test_a_second_ca_of_the_same_name_does_not_trust_the_first_ones_certificates(tmp_path):
    real = CertificateAuthority.create(tmp_path / "real", "Hospital")
    impostor = CertificateAuthority.create(tmp_path / "impostor", "Hospital")
    forged = impostor.issue("mallory", "admin")
    with pytest.raises(errors.UntrustedCertificate):
        real.verify(forged.certificate)


@pytest.mark.parametrize("role", USER_ROLES)
def test_role_round_trips_as_a_fabric_ca_attribute(hospital, role):
    identity = hospital.issue("someone", role)
    assert role_of(identity.certificate) == role
    reloaded = x509.load_pem_x509_certificate(identity.certificate_pem())
    assert role_of(reloaded) == role


def test_attributes_are_encoded_as_fabric_ca_does(hospital):
    identity = hospital.issue("steward", "steward", attributes={"department": "cardiology"})
    raw = identity.certificate.extensions.get_extension_for_oid(ATTRIBUTES_OID).value.value
    assert json.loads(raw) == {
        "attrs": {
            "department": "cardiology",
            "hf.Affiliation": "",
            "hf.EnrollmentID": "steward",
            "hf.Type": "client",
            "role": "steward",
        }
    }
    assert read_attributes(identity.certificate)["department"] == "cardiology"


def test_a_caller_cannot_override_the_role_through_attributes(hospital):
    identity = hospital.issue("eve", "patient", attributes={"role": "admin"})
    assert identity.role == "patient"


def test_node_ou_classifies_admins_peers_and_clients(hospital):
    ou = x509.oid.NameOID.ORGANIZATIONAL_UNIT_NAME
    units = {
        role: hospital.issue(f"n-{role}", role)
        .certificate.subject.get_attributes_for_oid(ou)[0]
        .value
        for role in ("admin", "peer", "orderer", "researcher", "patient")
    }
    assert units == {
        "admin": "admin",
        "peer": "peer",
        "orderer": "orderer",
        "researcher": "client",
        "patient": "client",
    }


def test_identity_fields_read_from_the_certificate(hospital):
    identity = hospital.issue("alice", "researcher")
    assert (identity.name, identity.organisation, identity.role, identity.msp_id) == (
        "alice",
        "Hospital",
        "researcher",
        "HospitalMSP",
    )


def test_a_patients_certificate_names_a_pseudonym_only_the_wallet_knows_the_patient(
    hospital, tmp_path
):
    identity = hospital.issue("patient1", "patient")
    assert identity.name == hospital.pseudonym("patient1") != "patient1"
    assert identity.name.startswith("p-") and identity.patient == "patient1"
    der = identity.certificate.public_bytes(serialization.Encoding.DER)
    assert b"patient1" not in der  # nor in its attributes (hf.EnrollmentID)
    # The same patient, issued again, keeps their pseudonym; another gets another.
    assert hospital.issue("patient1", "patient").name == identity.name
    assert hospital.issue("patient2", "patient").name != identity.name
    # Another organisation's CA gives the same id another pseudonym.
    other = CertificateAuthority.create(tmp_path / "other", "Clinic")
    assert other.pseudonym("patient1") != identity.name
    # The wallet remembers whose it is.
    loaded = load_wallet(write_wallet(identity, tmp_path / "wallet"))
    assert (loaded.name, loaded.patient) == (identity.name, "patient1")


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"name": "../../etc", "role": "patient"}, "identity name"),
        ({"name": "", "role": "patient"}, "identity name"),
        ({"name": "bob", "role": "wizard"}, "role"),
    ],
)
def test_bad_names_and_roles_are_refused_in_one_sentence(hospital, kwargs, argument):
    with pytest.raises(errors.InvalidArgument, match=argument) as caught:
        hospital.issue(**kwargs)
    assert str(caught.value).count(".") >= 1 and "\n" not in str(caught.value)


# --- signatures ----------------------------------------------------------------------


def test_wallet_signatures_verify_and_are_always_low_s(hospital, data_dir):
    identity = load_wallet(hospital.issue_wallet(data_dir, "executor", "executor"))
    for index in range(64):
        message = f"proposal {index}".encode()
        signature = identity.sign(message)
        assert is_low_s(signature)
        identity.verify(message, signature)
    with pytest.raises(errors.InvalidSignature):
        identity.verify(b"another message", identity.sign(b"proposal 0"))


def test_the_high_s_twin_of_a_valid_signature_is_refused(hospital):
    identity = hospital.issue("alice", "researcher")
    signature = sign(identity.private_key, b"payload")
    r, s = decode_dss_signature(signature)
    twin = encode_dss_signature(r, P256_ORDER - s)
    # The twin is mathematically valid ECDSA, which is exactly why Fabric refuses it.
    identity.certificate.public_key().verify(twin, b"payload", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(errors.InvalidSignature, match="high S"):
        verify(identity.certificate.public_key(), b"payload", twin)


def test_a_signature_by_someone_else_does_not_verify(hospital):
    alice, bob = hospital.issue("alice", "researcher"), hospital.issue("bob", "researcher")
    with pytest.raises(errors.InvalidSignature):
        bob.verify(b"data", alice.sign(b"data"))


def test_garbage_is_not_a_signature(hospital):
    with pytest.raises(errors.InvalidSignature, match="DER"):
        hospital.issue("alice", "researcher").verify(b"data", b"not a signature")


# --- wallets ----------------------------------------------------------------------------


def test_wallet_is_written_in_msp_layout_with_a_private_key_file(hospital, data_dir):
    path = hospital.issue_wallet(data_dir, "alice", "researcher")
    assert (path / "signcerts" / "cert.pem").is_file()
    assert (path / "cacerts" / "ca.pem").is_file()
    assert "NodeOUs" in (path / "config.yaml").read_text()
    assert (path / "mspid").read_text().strip() == "HospitalMSP"
    assert (path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert load_wallet(path).name == "alice"


def test_an_existing_wallet_is_never_overwritten(hospital, data_dir):
    path = hospital.issue_wallet(data_dir, "alice", "researcher")
    key_before = (path / KEY_FILE).read_bytes()
    with pytest.raises(errors.AlreadyExists, match="refusing to overwrite"):
        hospital.issue_wallet(data_dir, "alice", "researcher")
    with pytest.raises(errors.AlreadyExists):
        write_wallet(hospital.issue("alice", "researcher"), path)
    assert (path / KEY_FILE).read_bytes() == key_before


def test_a_certificate_authority_is_never_recreated(hospital, data_dir):
    with pytest.raises(errors.AlreadyExists):
        CertificateAuthority.create(data_dir, "Hospital")
    assert CertificateAuthority.load(data_dir, "Hospital").certificate == hospital.certificate


def test_tampered_certificate_is_refused(hospital, data_dir):
    path = hospital.issue_wallet(data_dir, "mallory", "researcher")
    der = bytearray(load_wallet(path).certificate.public_bytes(serialization.Encoding.DER))
    # Turn the common name "mallory" into "mallorz": still a well-formed certificate.
    at = der.find(b"mallory")
    der[at + 6] = ord("z")
    forged = x509.load_der_x509_certificate(bytes(der))
    assert forged.subject != load_wallet(path).certificate.subject
    (path / CERT_FILE).write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(errors.CertificateTampered, match="altered"):
        load_wallet(path)


def test_expired_and_not_yet_valid_certificates_are_refused(hospital, data_dir):
    now = dt.datetime.now(dt.UTC)
    old = hospital.issue(
        "old",
        "researcher",
        not_before=now - dt.timedelta(days=400),
        not_after=now - dt.timedelta(days=35),
    )
    early = hospital.issue("early", "researcher", not_before=now + dt.timedelta(days=1))
    with pytest.raises(errors.CertificateExpired, match="expired on"):
        load_wallet(write_wallet(old, data_dir / "old"))
    with pytest.raises(errors.CertificateExpired, match="not valid before"):
        load_wallet(write_wallet(early, data_dir / "early"))
    # Judged at a moment inside its validity, the old certificate is fine.
    assert load_wallet(data_dir / "old", at=now - dt.timedelta(days=100)).name == "old"


def test_key_that_does_not_match_the_certificate_is_refused(hospital, data_dir):
    alice = hospital.issue_wallet(data_dir, "alice", "researcher")
    bob = hospital.issue_wallet(data_dir, "bob", "researcher")
    (alice / KEY_FILE).unlink()
    shutil.copy2(bob / KEY_FILE, alice / KEY_FILE)
    with pytest.raises(errors.KeyMismatch, match="does not belong"):
        load_wallet(alice)


def test_wallet_from_another_ca_is_untrusted_by_that_network(hospital, university, data_dir):
    path = university.issue_wallet(data_dir, "alice", "researcher")
    assert load_wallet(path).organisation == "University"
    with pytest.raises(errors.UntrustedCertificate, match="trusted certificate authority"):
        load_wallet(path, trusted=[hospital.certificate])


def test_a_wallet_from_an_impostor_ca_of_the_same_name_is_untrusted_not_tampered(tmp_path):
    """An attacker's CA named like ours issues a wallet: it was never ours, so it is
    UntrustedCertificate saying so; 'altered after its authority signed it' would send
    an operator looking for a corrupted file instead of a foreign authority."""
    real = CertificateAuthority.create(tmp_path / "real", "Hospital")
    impostor = CertificateAuthority.create(tmp_path / "impostor", "Hospital")
    assert impostor.certificate.subject == real.certificate.subject
    path = impostor.issue_wallet(tmp_path / "impostor", "mallory", "admin")
    with pytest.raises(errors.UntrustedCertificate) as caught:
        load_wallet(path, trusted=[real.certificate])
    assert not isinstance(caught.value, errors.CertificateTampered)
    message = str(caught.value)
    assert "not issued by the certificate authority of 'Hospital'" in message
    assert "altered" not in message
    assert message.endswith(".") and ". " not in message  # one sentence


def test_a_tampered_certificate_of_our_own_ca_is_still_called_altered(tmp_path):
    """The same issuer key (named by the certificate's authority key identifier) with a
    signature that does not verify is an alteration, even beside an impostor's CA."""
    real = CertificateAuthority.create(tmp_path / "real", "Hospital")
    impostor = CertificateAuthority.create(tmp_path / "impostor", "Hospital")
    path = real.issue_wallet(tmp_path / "real", "mallory", "researcher")
    der = bytearray(load_wallet(path).certificate.public_bytes(serialization.Encoding.DER))
    der[der.find(b"mallory") + 6] = ord("z")
    (path / CERT_FILE).write_bytes(
        x509.load_der_x509_certificate(bytes(der)).public_bytes(serialization.Encoding.PEM)
    )
    with pytest.raises(errors.CertificateTampered, match="altered"):
        load_wallet(path, trusted=[impostor.certificate, real.certificate])


def test_readable_key_is_refused(hospital, data_dir):
    path = hospital.issue_wallet(data_dir, "alice", "researcher")
    os.chmod(path / KEY_FILE, 0o644)
    with pytest.raises(errors.WalletInsecure, match="chmod 600"):
        load_wallet(path)


def test_unreadable_files_and_missing_wallets_say_which(hospital, data_dir):
    with pytest.raises(errors.WalletNotFound, match="no wallet at"):
        load_wallet(data_dir / "nobody")
    path = hospital.issue_wallet(data_dir, "alice", "researcher")
    (path / CERT_FILE).write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(errors.WalletCorrupt, match=r"cert\.pem"):
        load_wallet(path)


def test_every_wallet_error_is_one_sentence(hospital, data_dir):
    path = hospital.issue_wallet(data_dir, "alice", "researcher")
    os.chmod(path / KEY_FILE, 0o640)
    with pytest.raises(errors.WalletError) as caught:
        load_wallet(path)
    message = str(caught.value)
    assert message.endswith(".") and "\n" not in message and "Traceback" not in message
    assert caught.value.path == str(path)
