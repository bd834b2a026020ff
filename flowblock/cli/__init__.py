"""The ``flowblock`` command line: one traitlets Application per subcommand."""

from __future__ import annotations

import os
import sys

from traitlets import TraitError
from traitlets.config import ArgumentError

from flowblock.cli.base import PRIVATE_UMASK, FlowBlockApp
from flowblock.errors import FlowBlockError


class FlowBlockMain(FlowBlockApp):
    name = "flowblock"
    description = (
        "FlowBlock: compute on medical data you can never see. Every request, approval, "
        "consent and result is a transaction on a Hyperledger Fabric ledger."
    )
    examples = """
flowblock demo                      # the whole system with demo data, until Ctrl-C
flowblock status; flowblock down    # from another terminal
flowblock network init              # organisations, CAs and node identities
flowblock identity issue alice --org University --role researcher
flowblock identity list
flowblock network up --chaincode asset=127.0.0.1:9999
flowblock verify                    # the chain, its hashes and every signature
"""
    subcommands = {
        "up": ("flowblock.stack.cli.UpApp", "Run FlowBlock on this machine."),
        "demo": ("flowblock.stack.cli.DemoApp", "Run FlowBlock with the demo world and data."),
        "status": ("flowblock.stack.cli.StatusApp", "Say whether FlowBlock runs, part by part."),
        "down": ("flowblock.stack.cli.DownApp", "Stop the FlowBlock that runs."),
        "network": ("flowblock.network.cli.NetworkApp", "Organisations and the ledger network."),
        "identity": ("flowblock.cli.identity.IdentityApp", "Issue, show and list identities."),
        "chaincode": ("flowblock.chaincode.cli.ChaincodeApp", "Serve chaincode for the peers."),
        "data": ("flowblock.executor.cli.DataApp", "Import a steward's data."),
        "executor": ("flowblock.executor.cli.ExecutorApp", "Run an organisation's executor."),
        "algorithms": ("flowblock.executor.cli.AlgorithmsApp", "List and publish algorithms."),
        "verify": ("flowblock.network.cli.VerifyApp", "Check the ledger's chain and signatures."),
    }


def innermost(app: FlowBlockApp) -> FlowBlockApp:
    """The subcommand that is running (``flowblock identity issue`` rather than ``flowblock``)."""
    while app.subapp is not None:
        app = app.subapp
    return app


def main(argv: list[str] | None = None) -> int:
    """Run ``flowblock``; an error is one line on stderr, never a traceback.

    Everything the command and the servers it starts write (keys, ledger, records) is
    its user's alone, whatever umask it was started under; the caller's umask is given
    back at the end, so ``main`` can run inside another program.
    """
    app = FlowBlockMain.instance()
    callers_umask = os.umask(PRIVATE_UMASK)
    try:
        app.initialize(argv)
        app.start()
    except FlowBlockError as error:
        print(f"flowblock: {error}", file=sys.stderr)
        return 1
    except (TraitError, ArgumentError) as error:
        command = innermost(app)
        reason = str(error).rstrip(".")
        print(f"{command.name}: {reason}; see '{command.name} --help'.", file=sys.stderr)
        return 2
    except SystemExit as exit:
        # traitlets exits after --help and --version; keep main() callable from Python.
        return exit.code if isinstance(exit.code, int) else 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``flowblock identity list | head``): not an error of ours.
        sys.stderr.close()
        return 0
    finally:
        os.umask(callers_umask)
        # Applications are singletons; forget them so main() can run again in-process.
        command: FlowBlockApp | None = app
        while command is not None:
            type(command).clear_instance()
            command = command.subapp
    return 0
