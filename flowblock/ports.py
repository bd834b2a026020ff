"""Ports for the servers FlowBlock starts: free ones on the loopback interface, and a
gRPC server's port held by that server alone."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Final

from flowblock.errors import PortTaken

if TYPE_CHECKING:
    import grpc

#: gRPC's servers set SO_REUSEPORT by default: a second server on a port already taken
#: binds anyway and the kernel splits the connections between the two. Ours refuse.
EXCLUSIVE_PORT: Final = ("grpc.so_reuseport", 0)


def free_ports(count: int = 1) -> list[int]:
    """``count`` distinct ports nothing listens on now (held together so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def bind(
    server: grpc.Server,
    address: str,
    what: str,
    credentials: grpc.ServerCredentials | None = None,
) -> int:
    """Bind ``server`` (made with :data:`EXCLUSIVE_PORT`) to ``address``; the port it got.

    A port that is taken, or an address that is not this machine's, is PortTaken: one
    sentence naming ``what`` could not listen.
    """
    if not _bindable(address):  # asked first: gRPC's own refusal logs to stderr
        raise PortTaken(what, address)
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpcio raises where older versions returned 0 (taken meanwhile)
        port = 0
    if port == 0:
        raise PortTaken(what, address)
    return port


def _bindable(address: str) -> bool:
    """Whether a listener could bind ``host:port`` now, as gRPC would (SO_REUSEADDR, so
    connections lingering in TIME_WAIT do not count; a listener does)."""
    host, _, port = address.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return True  # any free port, or a form gRPC itself will judge
    try:
        found = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, kind, _, _, where in found:
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(where)
            except OSError:
                return False
    return True
