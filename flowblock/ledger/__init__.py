"""The ledger client: Fabric's Gateway protocol, blocks and membership, in one place."""

from flowblock.ledger.gateway import (
    ChaincodeEvent,
    Contract,
    EventStream,
    Gateway,
    Network,
    Status,
    SubmittedTransaction,
)
from flowblock.ledger.paging import all_pages
from flowblock.ledger.pool import GatewayPool

__all__ = [
    "ChaincodeEvent",
    "Contract",
    "EventStream",
    "Gateway",
    "GatewayPool",
    "Network",
    "Status",
    "SubmittedTransaction",
    "all_pages",
]
