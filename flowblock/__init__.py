"""FlowBlock: compute on medical data you can never see.

Researchers ask for computations from Jupyter; the request travels as a token on a
Hyperledger Fabric ledger endorsed by several organisations; the data side runs the
algorithm on the patients' records and releases only a disclosure-controlled aggregate.
This package is the core every part shares: configuration, errors and the vocabulary
both sides of the ledger use, identities, the Fabric Gateway client, the client, the CLI.
The parts are its subpackages, each a top-level directory (``flowblock.chaincode``,
``flowblock.executor``, ``flowblock.extension``, ``flowblock.hub``, ``flowblock.network``,
``flowblock.spawner``, ``flowblock.stack``, ``flowblock.testing``). The core imports no
part: the CLI names its subcommands' modules as text, loaded when run, and
``%load_ext flowblock`` loads the extension when called (pyproject.toml's import contracts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__version__ = "0.1.0"

__all__ = ["Client", "__version__"]


def __getattr__(name: str):
    # ``from flowblock import Client`` without importing gRPC for every ``import flowblock``.
    if name == "Client":
        from flowblock.client import Client

        return Client
    raise AttributeError(f"module 'flowblock' has no attribute {name!r}")


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext flowblock``: the magics live in ``flowblock.extension``, loaded only now."""
    from flowblock.extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    from flowblock.extension import unload_ipython_extension as unload

    unload(ipython)
