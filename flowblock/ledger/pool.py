"""Many people on one ledger at once: a gateway each, all closed together.

Setting up a world (the demo's population, a test's study) acts as several people in
turn; each needs their own signed connection, and none should be left open.
"""

from __future__ import annotations

from flowblock.identity import Identity
from flowblock.ledger.gateway import Contract, Gateway

CHAINCODE = "flowblock"


class GatewayPool:
    """``pool(identity, "records")`` is that person's contract; ``pool.close()`` ends all."""

    def __init__(self, address: str, channel: str = "flowblock", timeout: float = 60.0) -> None:
        self.address, self.channel, self.timeout = address, channel, timeout
        self._gateways: dict[str, Gateway] = {}

    def gateway(self, identity: Identity) -> Gateway:
        key = identity.certificate_pem()
        if key not in self._gateways:
            self._gateways[key] = Gateway(self.address, identity, timeout=self.timeout)
        return self._gateways[key]

    def __call__(self, identity: Identity, contract: str = "") -> Contract:
        network = self.gateway(identity).get_network(self.channel)
        return network.get_contract(CHAINCODE, contract)

    def close(self) -> None:
        for gateway in self._gateways.values():
            gateway.close()
        self._gateways.clear()

    def __enter__(self) -> GatewayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
