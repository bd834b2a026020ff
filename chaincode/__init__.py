"""The FlowBlock chaincode and the chaincode-as-a-service runtime that serves it.

Write a contract with :class:`Contract` and :func:`transaction`, group contracts in a
:class:`Chaincode`, and serve it with :class:`ChaincodeServer` (``flowblock chaincode
serve``); peers connect to it over Fabric's chaincode protocol. It may import the core
alone (the vocabulary it shares with the data side among it), never another part, and it
does no I/O but the peer's: it runs unchanged on any Fabric peer.
"""

from flowblock.chaincode.contract import Chaincode, Context, Contract, transaction
from flowblock.chaincode.identity import ClientIdentity
from flowblock.chaincode.server import ChaincodeServer
from flowblock.chaincode.stub import (
    ChaincodeError,
    ChaincodeStub,
    create_composite_key,
    implicit_collection,
    split_composite_key,
)

__all__ = [
    "Chaincode",
    "ChaincodeError",
    "ChaincodeServer",
    "ChaincodeStub",
    "ClientIdentity",
    "Context",
    "Contract",
    "create_composite_key",
    "implicit_collection",
    "split_composite_key",
    "transaction",
]
