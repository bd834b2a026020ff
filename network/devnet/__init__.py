"""The devnet: a Fabric network in one process, speaking Fabric's own protocols."""

from flowblock.network.devnet.devnet import Devnet

__all__ = ["Devnet"]
