"""One error hierarchy for everything FlowBlock raises on purpose.

Every error's ``str()`` is one sentence a user can act on: what was wrong and what
was expected. Callers catch the precise subclass; front ends (the CLI, the magics,
the dashboards) catch :class:`FlowBlockError` and show its message, never a traceback.
Each subclass carries the fields a caller needs as attributes, like httpx's errors
and Fabric's gateway errors do.
"""

from __future__ import annotations


class FlowBlockError(Exception):
    """Root of every error FlowBlock raises on purpose."""


class InvalidArgument(FlowBlockError, ValueError):
    """An argument a user or a caller gave does not have the expected form."""

    def __init__(self, argument: str, expected: str, got: object = None, hint: str = "") -> None:
        self.argument = argument
        self.expected = expected
        self.got = got
        shown = "" if got is None else f", got {got!r}"
        super().__init__(f"{argument} must be {expected}{shown}" + (f"; {hint}" if hint else "."))


class ConfigError(FlowBlockError):
    """The configuration (a config file, an environment variable, a flag) is unusable."""


class PortTaken(ConfigError):
    """A server cannot listen on ``address``: another program holds the port."""

    def __init__(self, what: str, address: str) -> None:
        self.what = what
        self.address = address
        super().__init__(
            f"{what} cannot listen on {address}: the port is taken by another program, or "
            "the address is not one of this machine's; choose another (port 0 picks a free one)."
        )


# --- identities -------------------------------------------------------------------


class IdentityError(FlowBlockError):
    """A certificate, a key, a wallet or a certificate authority cannot be used."""


class OrganisationNotFound(IdentityError):
    """No certificate authority exists for the named organisation."""

    def __init__(self, org: str, data_dir: str) -> None:
        self.org = org
        self.data_dir = data_dir
        super().__init__(
            f"organisation {org!r} does not exist under {data_dir}; "
            "create it first with 'flowblock network init'."
        )


class AlreadyExists(IdentityError):
    """Creating it would overwrite a key that already exists; keys are never overwritten."""

    def __init__(self, what: str, path: str) -> None:
        self.what = what
        self.path = path
        super().__init__(f"{what} already exists at {path}; refusing to overwrite its key.")


class WalletError(IdentityError):
    """A wallet on disk cannot be loaded; ``path`` names it."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(message)


class WalletNotFound(WalletError):
    """There is no wallet (or a part of one is missing) at the path."""


class WalletCorrupt(WalletError):
    """A file of the wallet is not a readable certificate or key."""


class WalletInsecure(WalletError):
    """The private key file can be read by other users of the machine."""


class KeyMismatch(WalletError):
    """The wallet's private key does not belong to its certificate."""


class CertificateTampered(WalletError):
    """The certificate names its CA but the CA's signature over it does not verify."""


class UntrustedCertificate(WalletError):
    """The certificate was not issued by a certificate authority we trust."""


class CertificateExpired(WalletError):
    """The certificate is outside its validity period."""


class InvalidSignature(IdentityError):
    """A signature does not verify under the certificate it claims to come from."""


# --- the ledger ---------------------------------------------------------------------


class LedgerError(FlowBlockError):
    """A transaction failed; ``tx_id`` names it so it can be looked up on the ledger.

    ``status`` is the gateway's gRPC status name (``ABORTED``, ``PERMISSION_DENIED``…)
    and ``details`` what each peer said, as (MSP id, message) pairs, when it said so.
    """

    def __init__(
        self,
        message: str,
        tx_id: str | None = None,
        details: tuple[tuple[str, str], ...] = (),
        status: str = "",
    ) -> None:
        self.tx_id = tx_id
        self.details = details
        self.status = status
        super().__init__(message)


class EndorseError(LedgerError):
    """The peers refused to endorse the proposal (the chaincode said no, or policy failed)."""

    @property
    def chaincode_message(self) -> str:
        """What the chaincode said when it refused, without the peer's framing."""
        return self._chaincode_response()[1] or str(self)

    @property
    def chaincode_status(self) -> int | None:
        """The status the chaincode refused with (400 bad input, 403 forbidden…), if it did."""
        return self._chaincode_response()[0]

    def _chaincode_response(self) -> tuple[int | None, str]:
        prefix = "chaincode response "
        for _, message in self.details:
            status, _, text = message.partition(", ")
            if status.startswith(prefix) and status[len(prefix) :].isdigit():
                return int(status[len(prefix) :]), text
        return None, ""


class SubmitError(LedgerError):
    """The endorsed transaction could not be handed to the orderer."""


class CommitError(LedgerError):
    """The transaction was ordered but invalidated at commit; ``code`` is Fabric's reason."""

    def __init__(self, message: str, tx_id: str | None = None, code: str = "") -> None:
        self.code = code
        super().__init__(message, tx_id)


# --- rules of the data ----------------------------------------------------------------


class AccessDenied(FlowBlockError):
    """The caller's role or organisation does not allow this operation."""


class ConsentDenied(FlowBlockError):
    """No patient consent covers this use of their data."""


class ComputationFailed(FlowBlockError):
    """The data side could not or would not compute a token (or serve a read or write), or
    its organisation denied it; ``status`` is the token's, ``reason`` its words for people."""

    def __init__(self, token_id: str, status: str, reason: str) -> None:
        self.token_id = token_id
        self.status = status
        self.reason = reason
        super().__init__(f"computation {token_id[:12]}… was {status.lower()}: {reason}")


class DisclosureRefused(FlowBlockError):
    """A disclosure-control rule refused to release a result; ``rule`` names it."""

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        super().__init__(message)


class BudgetExhausted(FlowBlockError):
    """The differential-privacy budget left is smaller than the query asks for."""


class RequestRefused(FlowBlockError):
    """The ledger refused a request as malformed (400), unknown (404) or untimely (409)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)
