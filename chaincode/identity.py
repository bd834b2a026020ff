"""Who called the chaincode, read the way Fabric's client-identity library reads it."""

from __future__ import annotations

import base64
from functools import cached_property

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fabric_protos.msp import identities_pb2

from flowblock.identity.certificates import ROLE_ATTRIBUTE, read_attributes


class ClientIdentity:
    """The creator of the transaction: MSP id, certificate and its attributes.

    The peer has already checked the creator's certificate against the channel's MSPs
    and its signature over the proposal before the chaincode runs.
    """

    def __init__(self, creator: bytes) -> None:
        serialized = identities_pb2.SerializedIdentity.FromString(creator)
        self.msp_id: str = serialized.mspid
        self.certificate = x509.load_pem_x509_certificate(serialized.id_bytes)

    @cached_property
    def id(self) -> str:
        """Fabric's ``GetID()``: base64 of ``x509::<subject>::<issuer>``."""
        subject = _distinguished_name(self.certificate.subject)
        issuer = _distinguished_name(self.certificate.issuer)
        return base64.b64encode(f"x509::{subject}::{issuer}".encode()).decode()

    @cached_property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @cached_property
    def attributes(self) -> dict[str, str]:
        return read_attributes(self.certificate)

    def get_attribute(self, name: str) -> str | None:
        return self.attributes.get(name)

    @property
    def name(self) -> str:
        """The enrolment id (the certificate's common name)."""
        return self.attributes.get("hf.EnrollmentID") or self.certificate.subject.rfc4514_string()

    @property
    def role(self) -> str | None:
        return self.attributes.get(ROLE_ATTRIBUTE)


def _distinguished_name(name: x509.Name) -> str:
    # Go's pkix.Name.String() order: most significant first, as RFC 4514 reversed back.
    return ",".join(reversed(name.rfc4514_string().split(",")))
