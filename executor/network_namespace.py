"""A network of its own for each algorithm run: no interface but a loopback that is down.

A run's own user keeps it out of the executor's files, but not off the network: the
executor's S3 server, Redis, the devnet's gateway, the chaincode server and the hub all
listen on 127.0.0.1, and each would have to refuse it by credentials alone. In a network
namespace of its own (``unshare(CLONE_NEWNET)``) a run has no route to any of them, nor
beyond the machine; abstract Unix sockets are per namespace too. Sockets named by a path
are files: their modes keep a run's user out.

Making one takes CAP_SYS_ADMIN, so the sandbox does it while the run is still root,
before it becomes its own user. Python 3.11 has no ``os.unshare`` (3.12 does): libc's
is called through ctypes. Imports only the standard library.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import multiprocessing.context
import os
import sys

#: From <sched.h>.
CLONE_NEWNET = 0x4000_0000
#: How long the probe may take before it counts as a failure.
_PROBE_SECONDS = 10


def enter_network_namespace() -> None:
    """Move this process into a new network namespace; OSError if it may not (EPERM
    without CAP_SYS_ADMIN, or where a seccomp filter refuses ``unshare``)."""
    unshare = getattr(ctypes.CDLL(None, use_errno=True), "unshare", None)
    if unshare is None:  # not Linux
        raise OSError(errno.ENOSYS, "unshare(CLONE_NEWNET): no such call here")
    if unshare(CLONE_NEWNET) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"unshare(CLONE_NEWNET): {os.strerror(number)}")


def _try_entering() -> None:
    """The probe's child: exits with 0, or with the error number that stopped it."""
    try:
        enter_network_namespace()
    except OSError as error:
        sys.exit(error.errno or errno.EPERM)


def network_namespace_problem(context: multiprocessing.context.BaseContext) -> str | None:
    """Why a child of ``context`` (the sandbox's forkserver) cannot have a network of its
    own here; None when it can.

    Tried for real, in a child, rather than read from the capabilities: a container's
    seccomp filter may refuse ``unshare`` even to root with CAP_SYS_ADMIN.
    """
    probe = context.Process(target=_try_entering, daemon=True)
    probe.start()
    probe.join(_PROBE_SECONDS)
    if probe.exitcode == 0:
        return None
    if probe.exitcode is None:
        with contextlib.suppress(OSError):
            probe.kill()
        probe.join()
        reason = f"it did not answer within {_PROBE_SECONDS} s"
    elif probe.exitcode > 0:
        reason = os.strerror(probe.exitcode)
    else:
        reason = f"the probe was killed by signal {-probe.exitcode}"
    return (
        f"runs cannot have a network namespace of their own here (unshare(CLONE_NEWNET): "
        f"{reason}), so an algorithm can connect to the machine's services (S3, Redis, the "
        "gateway) and beyond; run the executor as root with CAP_SYS_ADMIN"
    )
