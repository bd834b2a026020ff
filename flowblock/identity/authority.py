"""An organisation's certificate authority, kept on disk beside its members' wallets.

Layout under a data directory (one folder per organisation)::

    organizations/<Org>/ca/ca-cert.pem    the CA's self-signed certificate
    organizations/<Org>/ca/priv_sk        its private key, mode 0600
    organizations/<Org>/msp/              the organisation's MSP: what peers trust
    organizations/<Org>/identities/<name> each member's wallet

Keys are never overwritten: creating what exists is refused, so a slip cannot lock an
organisation out of identities it already issued.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flowblock.errors import (
    AlreadyExists,
    OrganisationNotFound,
    UntrustedCertificate,
    WalletCorrupt,
)
from flowblock.identity import signing
from flowblock.identity.certificates import (
    build_ca_certificate,
    build_certificate,
    build_tls_certificate,
    check_issued_by,
    check_name,
    check_organisation,
    msp_id,
    organisation_of,
)
from flowblock.identity.wallet import (
    CA_DIR,
    MSPID_FILE,
    NODE_OUS_FILE,
    Identity,
    load_wallet,
    node_ous_yaml,
    write_private,
    write_wallet,
)

ORGANISATIONS_DIR = "organizations"


def organisation_dir(data_dir: str | os.PathLike[str], org: str) -> Path:
    return Path(data_dir).expanduser() / ORGANISATIONS_DIR / check_organisation(org)


def wallet_path(data_dir: str | os.PathLike[str], org: str, name: str) -> Path:
    """Where the wallet of ``name`` of ``org`` lives under a data directory."""
    return organisation_dir(data_dir, org) / "identities" / check_name(name)


def list_organisations(data_dir: str | os.PathLike[str]) -> list[str]:
    root = Path(data_dir).expanduser() / ORGANISATIONS_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "ca" / "ca-cert.pem").is_file())


class CertificateAuthority:
    """Issues and checks the certificates of one organisation."""

    def __init__(
        self, certificate: x509.Certificate, private_key: ec.EllipticCurvePrivateKey
    ) -> None:
        self.certificate = certificate
        self.private_key = private_key

    @property
    def organisation(self) -> str:
        return organisation_of(self.certificate)

    @property
    def msp_id(self) -> str:
        return msp_id(self.organisation)

    # -- on disk ------------------------------------------------------------------

    @classmethod
    def create(cls, data_dir: str | os.PathLike[str], org: str) -> CertificateAuthority:
        """Make a new CA for ``org`` under ``data_dir``; refused if one exists."""
        root = organisation_dir(data_dir, org)
        ca_dir = root / "ca"
        if ca_dir.exists():
            raise AlreadyExists(f"the certificate authority of {org!r}", str(ca_dir))
        key = signing.generate_key()
        authority = cls(build_ca_certificate(org, key), key)
        ca_dir.mkdir(parents=True, mode=0o700)
        write_private(ca_dir / "priv_sk", signing.private_key_pem(key))
        (ca_dir / "ca-cert.pem").write_bytes(authority.certificate_pem())
        authority.write_msp(root / "msp")
        return authority

    @classmethod
    def load(cls, data_dir: str | os.PathLike[str], org: str) -> CertificateAuthority:
        """The CA of ``org`` under ``data_dir``, its key checked against its certificate."""
        ca_dir = organisation_dir(data_dir, org) / "ca"
        if not (ca_dir / "ca-cert.pem").is_file():
            raise OrganisationNotFound(org, str(Path(data_dir).expanduser()))
        try:
            certificate = x509.load_pem_x509_certificate((ca_dir / "ca-cert.pem").read_bytes())
            key = serialization.load_pem_private_key((ca_dir / "priv_sk").read_bytes(), None)
        except (OSError, ValueError, TypeError) as error:
            raise WalletCorrupt(
                str(ca_dir), f"the certificate authority of {org!r} in {ca_dir} is unreadable."
            ) from error
        if not isinstance(key, ec.EllipticCurvePrivateKey) or (
            key.public_key() != certificate.public_key()
        ):
            raise WalletCorrupt(
                str(ca_dir), f"the CA key in {ca_dir} does not belong to its certificate."
            )
        return cls(certificate, key)

    def write_msp(self, path: Path) -> None:
        """The organisation's verifying MSP: CA certificate, NodeOUs and MSP id, no keys."""
        (path / CA_DIR).mkdir(parents=True, exist_ok=True)
        (path / CA_DIR / "ca.pem").write_bytes(self.certificate_pem())
        (path / NODE_OUS_FILE).write_text(node_ous_yaml("ca.pem"))
        (path / MSPID_FILE).write_text(self.msp_id + "\n")

    # -- issuing and checking -----------------------------------------------------------

    def issue(
        self,
        name: str,
        role: str,
        *,
        attributes: dict[str, str] | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> Identity:
        """A new key and a certificate for ``name`` in ``role``, signed by this CA.

        A patient's certificate does not name them: its subject is their pseudonym
        (:meth:`pseudonym`), since every organisation reads the certificates that sign
        transactions. The identity knows its patient id (``patient``); the ledger learns
        it only from the organisation's enrolment, in its private collection
        (``flowblock.consent.enrol``)."""
        key = signing.generate_key()
        patient = check_name(name) if role == "patient" else ""
        certificate = build_certificate(
            name=self.pseudonym(name) if patient else name,
            role=role,
            public_key=key.public_key(),
            ca_certificate=self.certificate,
            ca_key=self.private_key,
            attributes=attributes,
            not_before=not_before,
            not_after=not_after,
        )
        return Identity(certificate, self.msp_id, key, (self.certificate,), patient=patient)

    def pseudonym(self, patient: str) -> str:
        """The name a patient's certificate carries: the same for the same patient (a
        wallet issued again keeps their grants), and nothing anyone without this CA's
        key can link to their id."""
        secret = hashlib.sha256(b"flowblock patient pseudonyms\x00" + signing.private_key_pem(
            self.private_key)).digest()  # fmt: skip
        digest = hmac.new(secret, patient.encode(), hashlib.sha256).digest()
        return "p-" + base64.b32encode(digest[:15]).decode().lower()

    def issue_wallet(
        self, data_dir: str | os.PathLike[str], name: str, role: str, **options
    ) -> Path:
        """Issue ``name`` and write its wallet under ``data_dir``; refused if it exists."""
        path = wallet_path(data_dir, self.organisation, name)
        if path.exists():
            raise AlreadyExists(f"the identity {name!r} of {self.organisation!r}", str(path))
        return write_wallet(self.issue(name, role, **options), path)

    def issue_tls(self, directory: str | os.PathLike[str], hosts: list[str]) -> Path:
        """Write a TLS server key and certificate for ``hosts`` into ``directory``.

        Files as Fabric names them: ``server.crt``, ``server.key`` (mode 0600) and
        ``ca.crt``, the root clients must trust. Refused if a key is already there.
        """
        path = Path(directory).expanduser()
        if (path / "server.key").exists():
            raise AlreadyExists("a TLS key", str(path / "server.key"))
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = signing.generate_key()
        certificate = build_tls_certificate(
            hosts=hosts,
            public_key=key.public_key(),
            ca_certificate=self.certificate,
            ca_key=self.private_key,
        )
        write_private(path / "server.key", signing.private_key_pem(key))
        (path / "server.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        (path / "ca.crt").write_bytes(self.certificate_pem())
        return path

    def load_member(self, data_dir: str | os.PathLike[str], name: str) -> Identity:
        """The wallet of a member, checked against this CA rather than its own cacerts."""
        return load_wallet(
            wallet_path(data_dir, self.organisation, name), trusted=[self.certificate]
        )

    def verify(self, certificate: x509.Certificate) -> None:
        """Raise :class:`UntrustedCertificate` unless this CA issued ``certificate``."""
        if check_issued_by(certificate, [self.certificate]) is not None:
            raise UntrustedCertificate(
                "",
                f"the certificate of {certificate.subject.rfc4514_string()} was not issued "
                f"by the certificate authority of {self.organisation!r}.",
            )

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)
