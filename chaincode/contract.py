"""The contract API: classes of transaction functions, dispatched by name.

A chaincode is a set of contracts; a transaction names ``Contract:Function`` (or just
``Function`` for the default contract), as Fabric's contract APIs do. Arguments arrive
as strings and are converted by the function's annotations (``int``, ``float``,
``bool``, ``bytes``, ``dict``/``list`` as JSON); the return value becomes the response
payload (``bytes`` as is, ``str`` as UTF-8, anything else as canonical JSON).
"""

from __future__ import annotations

import inspect
import json
import logging
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fabric_protos.peer import proposal_response_pb2

from flowblock.canonical import canonical_json
from flowblock.chaincode.identity import ClientIdentity
from flowblock.chaincode.stub import ChaincodeError, ChaincodeStub
from flowblock.vocabulary import ChaincodeStatus

log = logging.getLogger(__name__)

METADATA_FUNCTION = "org.hyperledger.fabric:GetMetadata"
OK, BAD_REQUEST, INTERNAL_ERROR = (
    ChaincodeStatus.OK, ChaincodeStatus.BAD_REQUEST, ChaincodeStatus.INTERNAL_ERROR,
)  # fmt: skip


def transaction(function: Callable | None = None, *, submit: bool = True) -> Callable:
    """Mark a contract method as a transaction function (``submit=False``: query only)."""

    def mark(fn: Callable) -> Callable:
        fn.__fabric_transaction__ = "submit" if submit else "evaluate"  # type: ignore[attr-defined]
        return fn

    return mark(function) if function is not None else mark


@dataclass
class Context:
    """What a transaction function gets besides its arguments."""

    stub: ChaincodeStub
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def client_identity(self) -> ClientIdentity:
        return self.stub.client_identity


class Contract:
    """A named group of transaction functions; subclass and mark methods with @transaction."""

    name: ClassVar[str] = ""

    @classmethod
    def contract_name(cls) -> str:
        return cls.name or cls.__name__

    def before_transaction(self, ctx: Context) -> None:
        """Runs before every transaction function of this contract."""

    def transactions(self) -> dict[str, Callable]:
        return {
            name: getattr(self, name)
            for name, member in inspect.getmembers(type(self))
            if getattr(member, "__fabric_transaction__", None)
        }


class Chaincode:
    """The contracts served under one chaincode name, and the dispatch between them."""

    def __init__(self, contracts: list[Contract], default: str | None = None) -> None:
        if not contracts:
            raise ValueError("a chaincode needs at least one contract")
        self.contracts = {contract.contract_name(): contract for contract in contracts}
        self.default = default or contracts[0].contract_name()
        self._functions = {
            (name, fn_name): fn
            for name, contract in self.contracts.items()
            for fn_name, fn in contract.transactions().items()
        }

    def invoke(self, stub: ChaincodeStub) -> proposal_response_pb2.Response:
        """Run the transaction the stub names and turn its outcome into a Response."""
        qualified = stub.function
        if qualified == METADATA_FUNCTION:
            return _response(OK, canonical_json(self.metadata()))
        contract_name, _, function_name = qualified.rpartition(":")
        contract_name = contract_name or self.default
        function = self._functions.get((contract_name, function_name))
        if function is None:
            return _response(
                BAD_REQUEST, message=f"{qualified!r} is not a transaction of this chaincode"
            )
        ctx = Context(stub)
        try:
            arguments = convert_arguments(function, stub.parameters, qualified)
            self.contracts[contract_name].before_transaction(ctx)
            result = encode_result(function(ctx, *arguments))
            stub.finish_write_batch()
            return _response(OK, result)
        except ChaincodeError as error:
            return _response(error.status, message=one_line(error.message))
        except Exception:
            log.exception("transaction %s (%s) failed", qualified, stub.tx_id)
            return _response(INTERNAL_ERROR, message=f"{qualified} failed with an internal error")

    def metadata(self) -> dict:
        """The contract metadata Fabric's tools ask for with ``GetMetadata``."""
        contracts = {}
        for name, contract in self.contracts.items():
            contracts[name] = {
                "name": name,
                "transactions": [
                    {
                        "name": fn_name,
                        "tag": [fn.__fabric_transaction__],
                        "parameters": [
                            {"name": p.name, "schema": {"type": _schema_type(p.annotation)}}
                            for p in _parameters(fn)
                        ],
                    }
                    for fn_name, fn in sorted(contract.transactions().items())
                ],
            }
        return {
            "$schema": "https://hyperledger.github.io/fabric-chaincode-node/main/api/contract-schema.json",
            "contracts": contracts,
            "info": {"title": "flowblock", "version": "1"},
        }


def convert_arguments(function: Callable, values: list[str], qualified: str) -> list[Any]:
    """Convert string arguments to the types the function's annotations ask for."""
    parameters = _parameters(function)
    if len(values) != len(parameters):
        names = ", ".join(p.name for p in parameters) or "no arguments"
        raise ChaincodeError(
            f"{qualified} takes {len(parameters)} argument(s) ({names}), got {len(values)}",
            BAD_REQUEST,
        )
    return [_convert(p, value, qualified) for p, value in zip(parameters, values, strict=True)]


def encode_result(result: Any) -> bytes:
    if result is None:
        return b""
    if isinstance(result, bytes):
        return result
    if isinstance(result, str):
        return result.encode("utf-8")
    return canonical_json(result)


def _parameters(function: Callable) -> list[inspect.Parameter]:
    signature = inspect.signature(function)
    hints = typing.get_type_hints(function)
    parameters = list(signature.parameters.values())[1:]  # after ctx
    return [p.replace(annotation=hints.get(p.name, str)) for p in parameters]


def _convert(parameter: inspect.Parameter, value: str, qualified: str) -> Any:
    kind = typing.get_origin(parameter.annotation) or parameter.annotation
    try:
        if kind is str:
            return value
        if kind is bytes:
            return value.encode("utf-8")
        if kind is bool:
            if value not in ("true", "false"):
                raise ValueError
            return value == "true"
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
        if kind in (dict, list):
            decoded = json.loads(value)
            if not isinstance(decoded, kind):
                raise ValueError
            return decoded
    except (ValueError, RecursionError):  # JSON thousands deep overflows the parser
        raise ChaincodeError(
            f"argument {parameter.name!r} of {qualified} must be {_DESCRIBED[_schema_type(kind)]}, "
            f"got {value[:80]!r}",
            BAD_REQUEST,
        ) from None
    return value


_DESCRIBED = {
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a JSON object",
    "array": "a JSON array",
    "string": "a string",
}


def _schema_type(annotation: Any) -> str:
    kind = typing.get_origin(annotation) or annotation
    return {int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}.get(
        kind, "string"
    )


def one_line(message: str) -> str:
    """A refusal as one line, whatever the caller's text it quotes: line breaks and other
    control characters become visible escapes (a message is shown to people, logged,
    and must not forge a second line)."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in message)


def _response(
    status: int, payload: bytes = b"", message: str = ""
) -> proposal_response_pb2.Response:
    return proposal_response_pb2.Response(status=status, payload=payload, message=message)
