"""X.509 certificates the way Fabric CA issues them.

Roles are certificate attributes, encoded as Fabric CA encodes them: a non-critical
extension with OID 1.2.3.4.5.6.7.8.1 whose value is the JSON ``{"attrs": {...}}``.
Chaincode reads them with the same rules as Fabric's client-identity library, so a
certificate from a real Fabric CA and one from FlowBlock's own CA look alike.
The certificate's OU is the Fabric node OU (client, admin, peer, orderer) that the
organisation's MSP uses to classify identities.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import json
import re
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flowblock.errors import InvalidArgument

#: Fabric CA's OID for the attribute extension.
ATTRIBUTES_OID: Final = x509.ObjectIdentifier("1.2.3.4.5.6.7.8.1")
#: The attribute that holds a FlowBlock role.
ROLE_ATTRIBUTE: Final = "role"

#: Roles a person or a service holds; each is a certificate attribute.
USER_ROLES: Final = ("patient", "researcher", "admin", "steward", "auditor", "executor")
#: Roles of the network's own nodes.
NODE_ROLES: Final = ("peer", "orderer")
ROLES: Final = USER_ROLES + NODE_ROLES

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_ORG = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,31}$")


def check_name(name: str) -> str:
    """Return ``name`` if it can name an identity (and a directory), else raise."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(
            "the identity name",
            "1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit",
            name,
        )
    return name


def check_organisation(org: str) -> str:
    """Return ``org`` if it can name an organisation (and its MSP), else raise."""
    if not isinstance(org, str) or not _ORG.match(org):
        raise InvalidArgument(
            "the organisation name", "1 to 32 letters, digits or '-', starting with a letter", org
        )
    return org


def check_role(role: str) -> str:
    """Return ``role`` if FlowBlock knows it, else raise naming the roles it knows."""
    if role not in ROLES:
        raise InvalidArgument("the role", "one of " + ", ".join(ROLES), role)
    return role


def msp_id(org: str) -> str:
    """The MSP id of an organisation, as Fabric configuration names it."""
    return f"{org}MSP"


def node_ou(role: str) -> str:
    """The Fabric node OU that classifies an identity of this role in its MSP."""
    return role if role in ("admin", "peer", "orderer") else "client"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def key_usage(*, certificate_authority: bool) -> x509.KeyUsage:
    """Signing for everyone; signing certificates and CRLs for an authority only."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certificate_authority,
        crl_sign=certificate_authority,
        encipher_only=False,
        decipher_only=False,
    )


def build_ca_certificate(
    org: str, key: ec.EllipticCurvePrivateKey, *, valid_days: int = 3650
) -> x509.Certificate:
    """A self-signed root certificate for an organisation's certificate authority."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, f"ca.{org.lower()}"),
        ]
    )
    now = utcnow()
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage(certificate_authority=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def build_certificate(
    *,
    name: str,
    role: str,
    public_key: ec.EllipticCurvePublicKey,
    ca_certificate: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    attributes: dict[str, str] | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    """An enrolment certificate for ``name`` with its role as a Fabric CA attribute."""
    check_name(name)
    check_role(role)
    org = organisation_of(ca_certificate)
    not_before = not_before or utcnow() - dt.timedelta(minutes=5)
    not_after = not_after or not_before + dt.timedelta(days=365)
    attrs = {
        "hf.Affiliation": "",
        "hf.EnrollmentID": name,
        "hf.Type": node_ou(role),
        **(attributes or {}),
        ROLE_ATTRIBUTE: role,
    }
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, node_ou(role)),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    ca_ski = ca_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(certificate_authority=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .add_extension(
            x509.UnrecognizedExtension(ATTRIBUTES_OID, encode_attributes(attrs)), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def build_tls_certificate(
    *,
    hosts: list[str],
    public_key: ec.EllipticCurvePublicKey,
    ca_certificate: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    valid_days: int = 365,
) -> x509.Certificate:
    """A TLS server certificate for ``hosts`` (DNS names or IP addresses)."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = utcnow()
    ca_ski = ca_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation_of(ca_certificate)),
                    x509.NameAttribute(NameOID.COMMON_NAME, hosts[0]),
                ]
            )
        )
        .issuer_name(ca_certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def encode_attributes(attributes: dict[str, str]) -> bytes:
    """Fabric CA's encoding: ``{"attrs": {...}}`` as compact, key-sorted JSON."""
    return json.dumps({"attrs": attributes}, sort_keys=True, separators=(",", ":")).encode()


def read_attributes(certificate: x509.Certificate) -> dict[str, str]:
    """The Fabric CA attributes of a certificate; empty when it has none."""
    try:
        extension = certificate.extensions.get_extension_for_oid(ATTRIBUTES_OID)
    except x509.ExtensionNotFound:
        return {}
    try:
        attrs = json.loads(extension.value.value)["attrs"]
    except (ValueError, KeyError, TypeError):
        return {}
    return {str(k): str(v) for k, v in attrs.items()} if isinstance(attrs, dict) else {}


def role_of(certificate: x509.Certificate) -> str | None:
    """The FlowBlock role a certificate carries, or None for a certificate without one."""
    return read_attributes(certificate).get(ROLE_ATTRIBUTE)


def common_name(certificate: x509.Certificate) -> str:
    values = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def organisation_of(certificate: x509.Certificate) -> str:
    values = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(values[0].value) if values else ""


def issuer_organisation(certificate: x509.Certificate) -> str:
    """The organisation the certificate says issued it (a claim until its signature checks)."""
    values = certificate.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(values[0].value) if values else certificate.issuer.rfc4514_string()


class ChainProblem(enum.Enum):
    """Why a certificate failed :func:`check_issued_by`."""

    UNTRUSTED = "not issued by a trusted certificate authority"
    IMPOSTOR = "issued by another certificate authority with a trusted one's name"
    TAMPERED = "altered after its authority signed it"


def check_issued_by(
    certificate: x509.Certificate, authorities: list[x509.Certificate]
) -> ChainProblem | None:
    """None if one of ``authorities`` signed ``certificate``, else a :class:`ChainProblem`.

    A name is no proof: anyone can make a CA called like ours. So a certificate whose
    signature does not verify is *tampered* only if it names, by its authority key
    identifier, the key of the trusted authority it claims; one that names another key
    (or none) came from an *impostor* with the same name; one whose issuer is named like
    none of them is simply not ours (*untrusted*).
    """
    named = [ca for ca in authorities if ca.subject == certificate.issuer]
    for ca in named:
        try:
            certificate.verify_directly_issued_by(ca)
        except (ValueError, TypeError, _CryptoInvalidSignature):
            continue
        return None
    if not named:
        return ChainProblem.UNTRUSTED
    signer = authority_key_identifier(certificate)
    if signer is not None and signer in {subject_key_identifier(ca) for ca in named}:
        return ChainProblem.TAMPERED
    return ChainProblem.IMPOSTOR


def authority_key_identifier(certificate: x509.Certificate) -> bytes | None:
    """The key identifier of the authority that claims to have signed ``certificate``."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except (x509.ExtensionNotFound, ValueError):
        return None
    return extension.value.key_identifier


def subject_key_identifier(certificate: x509.Certificate) -> bytes:
    """The key identifier of ``certificate``'s own key: its extension's, else computed as
    RFC 5280 method 1 does (how FlowBlock's and Fabric's CAs make it)."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except (x509.ExtensionNotFound, ValueError):
        return x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest
    return extension.value.digest


def validity_problem(certificate: x509.Certificate, at: dt.datetime | None = None) -> str | None:
    """None if the certificate is valid at ``at`` (default now), else why not."""
    at = at or utcnow()
    if at < certificate.not_valid_before_utc:
        return f"is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    if at > certificate.not_valid_after_utc:
        return f"expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    return None
