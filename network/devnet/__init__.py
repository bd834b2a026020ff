"""The devnet: a Fabric network in one process, speaking Fabric's own protocols.

Private data works as in Fabric, for the organisations' implicit collections
``_implicit_org_<MSP id>`` (details in ``private_data``):

- a peer simulates private writes into hashes (SHA-256 of key and value) in the public
  read/write set it signs, and plaintext in a private set that it keeps in the
  transient store (a table of the state database), never in a block; the proposal's
  transient map is dropped from the block's copy of the proposal;
- only the collection's organisation's peer reads values; every peer reads hashes
  (``GET_PRIVATE_DATA_HASH``); a private range query and a write cannot share a
  transaction;
- validation checks hashed reads for MVCC and asks for the owner's endorsement of a
  write to its collection, and the channel's policy for public writes (or none);
- commit stores the hashes for all and the values for the owner, in the SQLite
  transaction that commits the block and clears its transient entries, so a replay
  after a crash still finds them; a value that never arrived commits as a hash alone
  and reading it on the owner's peer is an error;
- the gateway evaluates and endorses first on the caller's own organisation's peer; a
  simulation that read private values is endorsed by the collection's members only.
"""

from flowblock.network.devnet.devnet import Devnet

__all__ = ["Devnet"]
