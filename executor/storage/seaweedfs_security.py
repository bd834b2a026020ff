"""The keys that shut SeaweedFS's own ports to everyone but the server itself.

SeaweedFS serves its master, volume server and filer on HTTP and gRPC ports of
127.0.0.1 besides the S3 gateway, and any user of the machine can connect to them. Only
the S3 gateway checks an organisation's credentials; the rest trust whoever connects
unless SeaweedFS's ``security.toml`` gives them keys:

- JWT signing keys for the volume server (writes and reads) and the filer's HTTP API
  (writes and reads): a request without a token signed by the server is refused;
- mutual TLS on every gRPC port, against a certificate authority made here for this
  server alone, so a caller needs a certificate from its private directory;
- the volume and filer UIs off, and the filer's directory listings off.

(The master's and the filer's HTTP APIs are switched off by ``-disableHttp`` where the
server starts. No setting closes the master's status page or the volume server's
``/status``: they name volumes and their sizes, never an object, a file id or a token.)

Everything is made once per server directory, in ``<dir>/security`` (mode 0700, files
0600), and reused at every start; nothing else reads it. SeaweedFS is pointed at it
with ``-config_dir``, the first place it looks for ``security.toml``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flowblock.identity import signing
from flowblock.identity.certificates import key_usage
from flowblock.identity.wallet import write_private

#: The parts that serve gRPC, plus ``client``: the certificate each part shows when it
#: calls another (SeaweedFS's ``[grpc.client]``).
COMPONENTS: Final = ("master", "volume", "filer", "s3", "client")
#: The JWT keys, by the ``security.toml`` section that holds each.
SIGNING_KEYS: Final = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing",
                       "jwt.filer_signing.read")  # fmt: skip
#: How long a token the server signs for itself stays valid; its parts use it at once.
TOKEN_SECONDS: Final = 10
#: The server's private CA and certificates outlive any store they guard.
VALID_DAYS: Final = 3650
_LOOPBACK: Final = ipaddress.ip_address("127.0.0.1")


class SeaweedSecurity:
    """The private CA, certificates, JWT keys and ``security.toml`` of one SeaweedFS."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @property
    def ca_certificate(self) -> Path:
        return self.directory / "ca.crt"

    def certificate(self, component: str) -> Path:
        return self.directory / f"{component}.crt"

    def key(self, component: str) -> Path:
        return self.directory / f"{component}.key"

    @property
    def config(self) -> Path:
        return self.directory / "security.toml"

    @property
    def signing_keys(self) -> dict[str, str]:
        """The JWT keys by section, made on first use."""
        path = self.directory / "jwt-keys.json"
        try:
            keys = json.loads(path.read_text())
            if set(keys) == set(SIGNING_KEYS):
                return keys
        except (OSError, ValueError):
            pass  # none yet, or damaged: the tokens live seconds, so new keys lose nothing
        self._make_directory()
        keys = {section: secrets.token_urlsafe(32) for section in SIGNING_KEYS}
        path.unlink(missing_ok=True)
        write_private(path, json.dumps(keys).encode())
        return keys

    def ensure(self) -> Path:
        """Make whatever is missing and (re)write ``security.toml``; the directory to give
        SeaweedFS as ``-config_dir``."""
        self._make_directory()
        made = [self.ca_certificate]
        made += [path for name in COMPONENTS for path in (self.certificate(name), self.key(name))]
        if not all(path.exists() for path in made) or self._expiring():
            self._issue_certificates()
        self.config.unlink(missing_ok=True)
        write_private(self.config, self.toml().encode())
        return self.directory

    def toml(self) -> str:
        """``security.toml``: every key and certificate above, every UI off."""
        keys = self.signing_keys
        lines = []
        for section in SIGNING_KEYS:
            lines += [f"[{section}]", f"key = {_quoted(keys[section])}",
                      f"expires_after_seconds = {TOKEN_SECONDS}", ""]  # fmt: skip
        lines += [
            "[access]", "ui = false", "",
            "[filer.expose_directory_metadata]", "enabled = false", "",
            "[grpc]", f"ca = {_quoted(self.ca_certificate)}", "",
        ]  # fmt: skip
        for name in COMPONENTS:
            lines += [f"[grpc.{name}]", f"cert = {_quoted(self.certificate(name))}",
                      f"key = {_quoted(self.key(name))}", ""]  # fmt: skip
        return "\n".join(lines)

    def _expiring(self) -> bool:
        """Whether the CA is unreadable or ends within a month (then all are made anew)."""
        try:
            ca = x509.load_pem_x509_certificate(self.ca_certificate.read_bytes())
        except (OSError, ValueError):
            return True
        return ca.not_valid_after_utc < dt.datetime.now(dt.UTC) + dt.timedelta(days=30)

    def _make_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory.chmod(0o700)

    def _issue_certificates(self) -> None:
        """A new CA and a certificate for each part, replacing any half-made set."""
        for path in self.directory.glob("*.crt"):
            path.unlink()
        for path in self.directory.glob("*.key"):
            path.unlink()
        ca_key = signing.generate_key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flowblock-seaweedfs-ca")])
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        ca = (
            _builder(ca_name, ca_name, ca_key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(key_usage(certificate_authority=True), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        # The CA's key signs these five and is never written down: nothing can issue
        # another certificate this server trusts.
        for name in COMPONENTS:
            key = signing.generate_key()
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"seaweedfs-{name}")])
            certificate = (
                _builder(subject, ca_name, key.public_key(), now)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(key_usage(certificate_authority=False), critical=True)
                .add_extension(
                    x509.ExtendedKeyUsage(
                        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                    ),
                    critical=False,
                )
                .add_extension(
                    x509.SubjectAlternativeName(
                        [x509.DNSName("localhost"), x509.IPAddress(_LOOPBACK)]
                    ),
                    critical=False,
                )
                .sign(ca_key, hashes.SHA256())
            )
            write_private(self.key(name), signing.private_key_pem(key))
            write_private(self.certificate(name), _pem(certificate))
        write_private(self.ca_certificate, _pem(ca))


def _builder(subject: x509.Name, issuer: x509.Name, public_key, now: dt.datetime):
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
    )


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _quoted(value: object) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(str(value))
