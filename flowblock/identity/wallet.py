"""Identities and the wallets that hold them on disk, in Fabric's MSP layout.

A wallet is one identity's MSP directory, readable by Fabric's own tools::

    WALLET/
      mspid               the organisation's MSP id (Fabric keeps it in core.yaml)
      signcerts/cert.pem  the enrolment certificate
      keystore/priv_sk    the private key, PKCS#8 PEM, mode 0600
      cacerts/ca.pem      the organisation's CA certificate
      config.yaml         NodeOUs, so Fabric classifies the identity by its OU

:func:`load_wallet` refuses anything it cannot trust, each with its own error.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flowblock.errors import (
    AlreadyExists,
    CertificateExpired,
    CertificateTampered,
    IdentityError,
    KeyMismatch,
    UntrustedCertificate,
    WalletCorrupt,
    WalletInsecure,
    WalletNotFound,
)
from flowblock.identity import signing
from flowblock.identity.certificates import (
    ChainProblem,
    check_issued_by,
    common_name,
    issuer_organisation,
    organisation_of,
    read_attributes,
    role_of,
    validity_problem,
)

CERT_FILE = Path("signcerts", "cert.pem")
KEY_FILE = Path("keystore", "priv_sk")
CA_DIR = Path("cacerts")
MSPID_FILE = Path("mspid")
PATIENT_FILE = Path("patient")
NODE_OUS_FILE = Path("config.yaml")

_NODE_OUS = """\
NodeOUs:
  Enable: true
  ClientOUIdentifier:
    Certificate: cacerts/{ca}
    OrganizationalUnitIdentifier: client
  PeerOUIdentifier:
    Certificate: cacerts/{ca}
    OrganizationalUnitIdentifier: peer
  AdminOUIdentifier:
    Certificate: cacerts/{ca}
    OrganizationalUnitIdentifier: admin
  OrdererOUIdentifier:
    Certificate: cacerts/{ca}
    OrganizationalUnitIdentifier: orderer
"""


def node_ous_yaml(ca_file: str) -> str:
    """The MSP's config.yaml that classifies identities by OU under the CA ``ca_file``."""
    return _NODE_OUS.format(ca=ca_file)


@dataclass(frozen=True)
class Identity:
    """Who someone is on the ledger: a certificate, its MSP, and (to sign) its key."""

    certificate: x509.Certificate
    msp_id: str
    private_key: ec.EllipticCurvePrivateKey | None = field(default=None, repr=False)
    ca_certificates: tuple[x509.Certificate, ...] = field(default=(), repr=False)
    #: A patient's own id at their organisation, which their certificate does not carry
    #: (its name is a pseudonym); kept in their wallet, known to its holder alone.
    patient: str = ""

    @property
    def name(self) -> str:
        return common_name(self.certificate)

    @property
    def organisation(self) -> str:
        return organisation_of(self.certificate)

    @property
    def role(self) -> str | None:
        return role_of(self.certificate)

    @property
    def key(self) -> str:
        """``name@Organisation``: how FlowBlock's chaincode names this identity."""
        return f"{self.name}@{self.msp_id.removesuffix('MSP')}"

    @property
    def attributes(self) -> dict[str, str]:
        return read_attributes(self.certificate)

    @property
    def expires(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, data: bytes) -> bytes:
        """A low-S ECDSA/SHA-256 signature over ``data``, as Fabric expects."""
        if self.private_key is None:
            raise IdentityError(f"the identity {self.name!r} has no private key to sign with.")
        return signing.sign(self.private_key, data)

    def verify(self, data: bytes, signature: bytes) -> None:
        """Raise :class:`~flowblock.errors.InvalidSignature` unless this identity signed it."""
        signing.verify(self.certificate.public_key(), data, signature)


def write_wallet(identity: Identity, path: str | os.PathLike[str]) -> Path:
    """Write ``identity`` as an MSP directory at ``path``; never overwrite an existing one.

    The files are written into a sibling temporary directory that is renamed into place,
    so a crash leaves either no wallet or a whole one.
    """
    if identity.private_key is None:
        raise ValueError("only an identity with its private key can be written as a wallet")
    target = Path(path).expanduser()
    if target.exists():
        raise AlreadyExists(f"the wallet of {identity.name!r}", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for sub in ("signcerts", "keystore", "cacerts"):
            (staging / sub).mkdir(mode=0o700)
        (staging / CERT_FILE).write_bytes(identity.certificate_pem())
        write_private(staging / KEY_FILE, signing.private_key_pem(identity.private_key))
        for index, ca in enumerate(identity.ca_certificates):
            ca_name = "ca.pem" if index == 0 else f"ca-{index}.pem"
            (staging / CA_DIR / ca_name).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        (staging / NODE_OUS_FILE).write_text(node_ous_yaml("ca.pem"))
        (staging / MSPID_FILE).write_text(identity.msp_id + "\n")
        if identity.patient:
            (staging / PATIENT_FILE).write_text(identity.patient + "\n")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start, so the key is never readable by others."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def load_wallet(
    path: str | os.PathLike[str],
    *,
    at: dt.datetime | None = None,
    trusted: list[x509.Certificate] | None = None,
) -> Identity:
    """Load and validate the identity in the wallet at ``path``.

    ``trusted`` replaces the wallet's own ``cacerts`` as the authorities the certificate
    must chain to (a network's MSP, say); ``at`` is the moment validity is judged at.
    """
    root = Path(path).expanduser()
    shown = str(root)
    for part in (CERT_FILE, KEY_FILE, MSPID_FILE):
        if not (root / part).is_file():
            raise WalletNotFound(
                shown,
                f"no wallet at {shown}: {part} is missing "
                "(a wallet is the directory 'flowblock identity issue' writes).",
            )
    key_mode = (root / KEY_FILE).stat().st_mode
    if key_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise WalletInsecure(
            shown,
            f"the private key {root / KEY_FILE} can be read by other users "
            f"(mode {stat.S_IMODE(key_mode):04o}); restrict it with 'chmod 600'.",
        )
    certificate = _read(root / CERT_FILE, x509.load_pem_x509_certificate, "certificate")
    private_key = _read(
        root / KEY_FILE, lambda data: serialization.load_pem_private_key(data, None), "private key"
    )
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
        private_key.curve, ec.SECP256R1
    ):
        raise WalletCorrupt(shown, f"the private key in {shown} is not an ECDSA P-256 key.")
    authorities = trusted
    if authorities is None:
        authorities = [
            _read(ca, x509.load_pem_x509_certificate, "CA certificate")
            for ca in sorted((root / CA_DIR).glob("*.pem"))
        ]
    msp_id = (root / MSPID_FILE).read_text().strip()

    if private_key.public_key() != certificate.public_key():
        raise KeyMismatch(shown, f"the private key in {shown} does not belong to its certificate.")
    problem = check_issued_by(certificate, authorities)
    if problem is ChainProblem.TAMPERED:
        raise CertificateTampered(
            shown, f"the certificate in {shown} was altered after its authority signed it."
        )
    if problem is ChainProblem.IMPOSTOR:
        raise UntrustedCertificate(
            shown,
            f"the certificate in {shown} was not issued by the certificate authority of "
            f"{issuer_organisation(certificate)!r} trusted here: another authority with the same "
            "name signed it.",
        )
    if problem is ChainProblem.UNTRUSTED:
        raise UntrustedCertificate(
            shown,
            f"the certificate in {shown} was not issued by a trusted certificate authority "
            f"(its issuer is {certificate.issuer.rfc4514_string()}).",
        )
    invalid = validity_problem(certificate, at)
    if invalid:
        raise CertificateExpired(shown, f"the certificate in {shown} {invalid}.")
    patient_file = root / PATIENT_FILE
    patient = patient_file.read_text().strip() if patient_file.is_file() else ""
    return Identity(certificate, msp_id, private_key, tuple(authorities), patient=patient)


def _read(path: Path, parse, what: str):
    try:
        return parse(path.read_bytes())
    except (ValueError, TypeError) as error:
        raise WalletCorrupt(str(path), f"{path} is not a readable PEM {what}.") from error
