"""Which identities a channel trusts: its organisations' MSPs, as in the channel config.

A creator or endorser is a ``SerializedIdentity`` (MSP id and PEM certificate); it is
valid when the named MSP exists, its CA issued the certificate and the certificate is
within its validity period. Results are cached by the serialized bytes, since the same
few identities sign thousands of transactions.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass

from cryptography import x509
from fabric_protos.msp import identities_pb2, msp_config_pb2
from google.protobuf.message import DecodeError

from flowblock.errors import IdentityError
from flowblock.identity import Identity
from flowblock.identity.certificates import check_issued_by, node_ou, validity_problem
from flowblock.identity.signing import verify


@dataclass(frozen=True)
class Organisation:
    """One MSP of the channel: its id, its name and the root certificates it trusts."""

    msp_id: str
    name: str
    root_certificates: tuple[x509.Certificate, ...]


class MembershipService:
    """Deserialises and validates the identities of a channel's organisations."""

    def __init__(self, organisations: list[Organisation]) -> None:
        self.organisations = {org.msp_id: org for org in organisations}
        self._cache: dict[bytes, Identity] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_msp_configs(cls, configs: list[msp_config_pb2.FabricMSPConfig]) -> MembershipService:
        return cls(
            [
                Organisation(
                    msp_id=config.name,
                    name=config.name.removesuffix("MSP"),
                    root_certificates=tuple(
                        x509.load_pem_x509_certificate(pem) for pem in config.root_certs
                    ),
                )
                for config in configs
            ]
        )

    def identity(
        self, serialized: bytes, at: dt.datetime | None = None, *, check_expiry: bool = True
    ) -> Identity:
        """The validated identity behind ``serialized``; raises IdentityError if invalid.

        ``check_expiry=False`` judges the certificate as when it was issued (for blocks
        already ordered); otherwise it must be valid ``at`` (default now).
        """
        with self._lock:
            cached = self._cache.get(serialized)
        if cached is None:
            cached = self._validate(serialized)
            with self._lock:
                self._cache[serialized] = cached
        problem = validity_problem(cached.certificate, at) if check_expiry else None
        if problem:
            raise IdentityError(f"the certificate of {cached.name!r} {problem}.")
        return cached

    def _validate(self, serialized: bytes) -> Identity:
        try:
            parsed = identities_pb2.SerializedIdentity.FromString(serialized)
            certificate = x509.load_pem_x509_certificate(parsed.id_bytes)
        except (DecodeError, ValueError) as error:
            raise IdentityError("the identity is not a serialized X.509 identity.") from error
        organisation = self.organisations.get(parsed.mspid)
        if organisation is None:
            raise IdentityError(f"the MSP {parsed.mspid!r} is not a member of this channel.")
        if check_issued_by(certificate, list(organisation.root_certificates)) is not None:
            raise IdentityError(
                f"the certificate of {certificate.subject.rfc4514_string()} was not issued "
                f"by a certificate authority of {parsed.mspid}."
            )
        return Identity(certificate, parsed.mspid)

    def check_signature(
        self, serialized: bytes, data: bytes, signature: bytes, *, check_expiry: bool = True
    ) -> Identity:
        """The identity, once its certificate and its signature over ``data`` both check."""
        identity = self.identity(serialized, check_expiry=check_expiry)
        verify(identity.certificate.public_key(), data, signature)
        return identity

    @staticmethod
    def is_peer(identity: Identity) -> bool:
        """Whether the identity is classified as a peer by its NodeOU."""
        return identity.role is not None and node_ou(identity.role) == "peer"
