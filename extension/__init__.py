"""The IPython kernel extension researchers load with ``%load_ext flowblock``: magics, rich
results, a live status line.

It connects from the environment a spawned server gets (``FLOWBLOCK_GATEWAY``,
``FLOWBLOCK_WALLET``, ``FLOWBLOCK_TLS_CA``) on first use, so loading it never fails.
It may import the core (``flowblock.Client``) alone: never the data side, the network,
the chaincode, the stack or the fakes, as a researcher's kernel has none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Register ``%flowblock`` and ``%%flowblock`` in the shell."""
    from flowblock.extension.magics import FlowBlockMagics

    ipython.register_magics(FlowBlockMagics(ipython))


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """Close the connection; the magics stay registered, as IPython cannot remove them."""
    magics = ipython.magics_manager.registry.get("FlowBlockMagics")
    if magics is not None and magics._client is not None:
        magics._client.close()
        magics.client = None
