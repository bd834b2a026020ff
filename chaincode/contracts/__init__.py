"""FlowBlock's chaincode: records, consent, the catalogue, computation tokens, budgets,
and reads of a patient's records under their consent.

One chaincode, ``flowblock``, of six contracts. Every rule of the system that can be
decided on the ledger is decided here, endorsed by every organisation's peer.
"""

from flowblock.chaincode.contract import Chaincode
from flowblock.chaincode.contracts.access import AccessContract
from flowblock.chaincode.contracts.budget import BudgetContract
from flowblock.chaincode.contracts.catalogue import CatalogueContract
from flowblock.chaincode.contracts.consent import ConsentContract
from flowblock.chaincode.contracts.records import RecordsContract
from flowblock.chaincode.contracts.tokens import ComputationContract

CHAINCODE_NAME = "flowblock"
CONTRACTS = (
    ComputationContract,
    ConsentContract,
    RecordsContract,
    CatalogueContract,
    BudgetContract,
    AccessContract,
)


def flowblock_chaincode() -> Chaincode:
    """The FlowBlock chaincode, ready to serve; the computation contract is the default."""
    return Chaincode([contract() for contract in CONTRACTS])
