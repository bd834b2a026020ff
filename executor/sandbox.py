"""Algorithms run in a confined child process: a user and a network of its own, limits on
CPU time, memory and processes, and nothing of its making outlives it.

An algorithm is code a catalogue vouched for, not code we trust with the executor's
keys or its memory: it runs in a process of its own, forked from a clean forkserver
(not from the executor, whose gRPC threads do not survive a fork). It gets the cohort's
rows and its parameters and returns a result; the only things that cross back are the
result (plain data: dicts, lists, strings, numbers) or one sentence.

How the child is confined, before any of the algorithm's code runs (``_confine``):

- **A user of its own.** The executor runs as root (FlowBlock's stack and CI do); each
  run becomes uid and gid ``RUN_ID_BASE`` + its pid, with no supplementary groups, no
  capabilities and no way back (``PR_SET_NO_NEW_PRIVS``). The organisation's wallets and
  S3 credentials (mode 0600 in 0700 folders), the executor's environment and memory
  (``/proc/<pid>/environ``, ``/mem``) are closed to it, and so is every other run. A
  user per run rather than one shared ``nobody``: RLIMIT_NPROC counts a user's
  processes, so it is then exactly this run's limit, and runs cannot signal each other.
  No user needs creating: an id need not have a name.
- **A network of its own.** Still root, it enters a network namespace of its own
  (:mod:`.network_namespace`): no interface but a loopback that is down, so neither the
  machine's services (S3, Redis, the gateway, the hub) nor anything beyond answer it.
- **Limits.** RLIMIT_CPU, RLIMIT_AS and RLIMIT_NPROC (``Limits.processes``, threads
  included), and no core dumps, which would be the cohort's rows on disk.
- **Killed whole.** It leads a session and process group of its own. When its result is
  in, or the wall clock runs out, the executor kills the group, then every process of
  the run's user (one that left the group with ``setsid`` too); it dies with the
  forkserver (``PR_SET_PDEATHSIG``), which exits when the executor does, and a run that
  finds processes of its user left by a killed executor kills them first.
- **Nothing else of the executor's.** A private home and temporary folder, removed after
  it; only harmless environment variables (``sandbox_environment``); no descriptor but
  its result's pipe (the forkserver's resource tracker runs as root); a fresh authkey.
- **Data back, never code.** The executor reads the child's messages with an unpickler
  that may construct nothing but plain data: an algorithm that writes its own pickle
  into the pipe would otherwise run code in the executor.
- **Python still importable.** Where Python is installed out of the run's user's reach
  (pyenv under /root), the folders it imports from are opened while still root and
  imported from through ``/proc/self/fd`` (``link_python_paths``).

When the executor is not root (or its user namespace lacks the ids), runs keep its user:
they get the limits on CPU and memory, the group kill, the private folder and the
trimmed environment, but they can read what the executor can and no process limit
applies (RLIMIT_NPROC would count all of its user's processes). The executor says so
once, as a warning, when it first runs an algorithm. So does one whose runs cannot have
a network namespace (no CAP_SYS_ADMIN, a seccomp filter): they keep every other limit.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import itertools
import logging
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import pickle
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from flowblock.executor.algorithms.base import Algorithm, AlgorithmError
from flowblock.executor.network_namespace import enter_network_namespace, network_namespace_problem

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["flowblock.executor.algorithms.preload"])
#: glibc backs the forkserver's and so the children's large allocations with transparent
#: huge pages: a child is a fresh process paying a page fault for every 4 KiB it first
#: touches (~3 µs each on a VM), and a million-row cohort is tens of MiB of them.
_HUGE_PAGES = "glibc.malloc.hugetlb=1"
_STARTING = threading.Lock()
_started_by: int | None = None  # the process that started the forkserver


def _ensure_forkserver() -> None:
    """Start the forkserver once per process, with glibc's huge-page tunable in its
    environment (read when a process starts; other C libraries ignore it).

    The environment is changed for that moment only, and only once: other threads may
    read it meanwhile. A forkserver that dies is started again by multiprocessing
    itself, without the tunable: slower children, nothing worse.
    """
    global _started_by
    with _STARTING:
        if _started_by == os.getpid():
            return
        before = os.environ.get("GLIBC_TUNABLES")
        tunables = [t for t in (before or "").split(":") if t]
        os.environ["GLIBC_TUNABLES"] = ":".join([*tunables, _HUGE_PAGES])
        try:
            multiprocessing.forkserver.ensure_running()
        finally:
            if before is None:
                del os.environ["GLIBC_TUNABLES"]
            else:
                os.environ["GLIBC_TUNABLES"] = before
        _started_by = os.getpid()


def _default_processes() -> int:
    # TensorFlow starts a pool of threads per core, and every thread counts.
    return max(128, 4 * (os.cpu_count() or 1))


@dataclass(frozen=True)
class Limits:
    """What one algorithm run may use."""

    cpu_seconds: int = 600
    memory_bytes: int = 8 * 1024**3
    #: Processes and threads at once, the run's first included.
    processes: int = field(default_factory=_default_processes)

    @property
    def wall_seconds(self) -> float:
        # CPU time bounds work; this bounds waiting (sleep, I/O) too.
        return self.cpu_seconds * 2 + 10


#: A run's user and group: this plus the pid of its child, so no two live runs share one.
#: Above the ids systemd gives containers (524288-1879048191), below 2**31 (that some
#: tools read as negative); room for Linux's largest pid_max (2**22).
RUN_ID_BASE = 0x7000_0000


def _read_id_map(name: str) -> list[tuple[int, ...]]:
    try:
        lines = Path(f"/proc/self/{name}").read_text().splitlines()
    except OSError:  # not Linux: no user namespaces, every id is there
        return [(0, 0, 2**32 - 1)]
    return [tuple(map(int, line.split())) for line in lines if line.strip()]


def _pid_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return 2**22


#: What making a run's user takes: CAP_CHOWN (its home), CAP_SETGID, CAP_SETUID.
_CAPABILITIES = {"CAP_CHOWN": 0, "CAP_SETGID": 6, "CAP_SETUID": 7}


def _effective_capabilities() -> int:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return ~0
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return ~0


def isolation_problem() -> str | None:
    """Why runs cannot each get a user of their own here; None when they can."""
    if os.geteuid() != 0:
        return (
            "the executor does not run as root, so algorithms run as its own user: they can "
            "read whatever it can (its wallet, its S3 credentials) and no process limit "
            "applies; run the executor as root and each run gets a user of its own"
        )
    capabilities = _effective_capabilities()
    lacking = [name for name, bit in _CAPABILITIES.items() if not capabilities >> bit & 1]
    if lacking:
        return (
            f"the executor runs as root without {', '.join(lacking)}, so algorithms run as "
            "its own user and can read whatever it can; give it those capabilities"
        )
    first, last = RUN_ID_BASE, RUN_ID_BASE + _pid_max()
    for name in ("uid_map", "gid_map"):
        if not any(
            inside <= first and last <= inside + count for inside, _, count in _read_id_map(name)
        ):
            return (
                f"this user namespace maps no ids {first}-{last} ({name}), so algorithms run "
                "as the executor's own user and can read whatever it can; run the executor "
                "where all of root's ids are mapped (a container without a user namespace)"
            )
    return None


@functools.cache
def _runs_get_own_user() -> bool:
    """Whether runs get a user of their own; said once per process when they do not."""
    problem = isolation_problem()
    if problem:
        logging.getLogger(__name__).warning("The algorithms' sandbox is weaker here: %s.", problem)
    return problem is None


@functools.cache
def _runs_get_own_network() -> bool:
    """Whether runs get a network of their own; said once per process when they do not."""
    problem = network_namespace_problem(_CONTEXT)
    if problem:
        logging.getLogger(__name__).warning("The algorithms' sandbox is weaker here: %s.", problem)
    return problem is None


# -- the Python a run's user imports from ------------------------------------------------
#
# Python may be installed where a run's user cannot reach it (pyenv under /root, 0700).
# What the forkserver imported is in memory already, but an algorithm imports more as it
# runs (TensorFlow imports hundreds of modules). So such a folder is opened while still
# root, and imported from through /proc/self/fd/N: a descriptor's link is followed
# without the search permission of the folders above it, and leads nowhere else.

_LINKS: dict[str, str] = {}  # a folder the run's user cannot reach -> /proc/self/fd/N
_LINK_FDS: list[int] = []
_MODES: dict[str, int] = {}
_SEEN: dict[str, str] = {}  # each folder met, as the run's user imports from it
_PROC_FD = "/proc/self/fd/"


def _mode(path: str) -> int:
    if path not in _MODES:
        _MODES[path] = os.stat(path).st_mode
    return _MODES[path]


def _reachable(folder: str) -> bool:
    """Whether a user of no group may list ``folder``: others may search every folder on
    its way and read it."""
    parts = Path(os.path.realpath(folder)).parts
    try:
        modes = [_mode(os.path.join(*parts[: i + 1])) for i in range(len(parts))]
    except OSError:
        return True  # not there: nothing to link
    return all(m & stat.S_IXOTH for m in modes) and bool(modes[-1] & stat.S_IROTH)


def _linked(folder: Any) -> Any:
    """``folder``, or a path to it through a descriptor when the run's user cannot reach it."""
    if not isinstance(folder, str) or not os.path.isabs(folder) or folder.startswith(_PROC_FD):
        return folder
    if folder not in _SEEN:
        _SEEN[folder] = _link(folder)
    return _SEEN[folder]


def _link(folder: str) -> str:
    for anchor, link in _LINKS.items():
        if folder == anchor or folder.startswith(anchor + os.sep):
            return link + folder[len(anchor) :]
    if not os.path.isdir(folder) or _reachable(folder):
        return folder
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    _LINK_FDS.append(descriptor)
    _LINKS[folder] = f"{_PROC_FD}{descriptor}"
    return _LINKS[folder]


def link_python_paths() -> None:
    """Make every folder Python imports from one a run's user can follow, where runs get
    users of their own (the forkserver's preload calls this, as root, once)."""
    if isolation_problem() is None:
        _link_python_paths()


def _link_python_paths() -> None:
    """Link what Python imports from: the forkserver does it once, so runs find their
    links made; a run does it again for what it imported since, and for ``sys.path``,
    which multiprocessing sets again in every child. Search paths come first: they
    anchor the packages below them, one descriptor for the whole standard library.
    """
    sys.path[:] = [_linked(entry) for entry in sys.path]
    for module in list(sys.modules.values()):
        try:
            path = getattr(module, "__dict__", {}).get("__path__")  # no module's __getattr__
            entries = list(path or ())
            for index, entry in enumerate(entries):
                if _linked(entry) != entry:
                    path[index] = _linked(entry)
        except (OSError, TypeError, AttributeError):  # an odd importer's path: left as it is
            continue


# -- the child -------------------------------------------------------------------------

#: The executor's environment variables a run sees: locale, time zone, the C library's
#: and the numeric libraries' tuning. Anything else (a secret an operator exported)
#: stays with the executor.
#: (Not every ``TF_``: Terraform keeps its tokens in ``TF_TOKEN_*``.)
_ENVIRONMENT = (
    "PATH", "LANG", "LANGUAGE", "TZ", "GLIBC_TUNABLES", "CUDA_VISIBLE_DEVICES",
    "TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS",
    "TF_FORCE_GPU_ALLOW_GROWTH",
)  # fmt: skip
_ENVIRONMENT_PREFIXES = ("LC_", "OMP_", "MKL_", "OPENBLAS_", "TF_CPP_")
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_NO_NEW_PRIVS = 1, 4, 38


def sandbox_environment(environ: Mapping[str, str], home: str) -> dict[str, str]:
    """The environment of a run: the harmless part of ``environ``, and ``home`` as its
    home and temporary folder."""
    kept = {
        name: value for name, value in environ.items()
        if name in _ENVIRONMENT or name.startswith(_ENVIRONMENT_PREFIXES)
    }  # fmt: skip
    return {**kept, "HOME": home, "TMPDIR": home}


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}, {value}) failed")


def _close_inherited(keep: list[int]) -> None:
    """Close every descriptor the forkserver passed on but ``keep`` (the result's pipe,
    the links, standard streams): the resource tracker's pipe, run as root, among them."""
    bounds = [-1, *sorted({0, 1, 2, *keep}), resource.getrlimit(resource.RLIMIT_NOFILE)[0]]
    for low, high in itertools.pairwise(bounds):
        if low + 1 < high:  # never an empty range: Python 3.11 closes every descriptor then
            os.closerange(low + 1, high)
    tracker = multiprocessing.resource_tracker._resource_tracker
    tracker._fd = tracker._pid = None  # an algorithm that needs one starts its own


def _confine(limits: Limits, home: str, own_user: bool, own_network: bool, connection) -> None:
    """Make this child a run of its own, before any of the algorithm's code runs.

    A session and process group of its own (killed whole), its limits, no core dumps
    (they would be the cohort's rows on disk), a private home and temporary folder, a
    trimmed environment and a fresh authkey; a network of its own while still root; then,
    as its own user with no groups and no way back to privileges, a process limit, and
    death with the forkserver.
    """
    parent = os.getppid()
    os.setsid()
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    environment = sandbox_environment(os.environ, home)
    os.environ.clear()
    os.environ.update(environment)
    tempfile.tempdir = home
    os.chdir(home)
    multiprocessing.current_process().authkey = os.urandom(32)
    if own_network:  # an error refuses the run: it was expected to be offline
        enter_network_namespace()
    if own_user:
        run_id = RUN_ID_BASE + os.getpid()
        _link_python_paths()
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
        os.chown(home, run_id, run_id)
        os.setgroups([])
        os.setresgid(run_id, run_id, run_id)
        os.setresuid(run_id, run_id, run_id)
        _prctl(_PR_SET_DUMPABLE, 1)  # /proc/self is its own again (the links go through it)
        with contextlib.suppress(ProcessLookupError):  # what an earlier run of this pid left
            os.kill(-1, signal.SIGKILL)
    _close_inherited([connection.fileno(), *_LINK_FDS])
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)  # no setuid program gives root back
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # after the change of user, which clears it
    if os.getppid() != parent:  # the forkserver died before that
        os._exit(1)


def _plain(value: Any) -> Any:
    """A result as plain data (numpy's scalars and arrays as Python's values), the only
    thing the executor reads back; AlgorithmError for anything else."""
    if type(value) in (str, int, float, bool, bytes, type(None)):
        return value
    if isinstance(value, np.generic | np.ndarray):
        return _plain(value.tolist())
    if type(value) in (list, tuple):
        return type(value)(_plain(item) for item in value)
    if type(value) is dict:
        return {_plain(key): _plain(item) for key, item in value.items()}
    raise AlgorithmError(
        f"the algorithm's result holds a {type(value).__name__}, which cannot leave the "
        "sandbox; a result is made of dicts, lists, strings and numbers."
    )


def _child(
    connection, algorithm: type[Algorithm], frame, params, limits: Limits, inputs: list,
    home: str, own_user: bool, own_network: bool,
) -> None:  # fmt: skip
    try:
        _confine(limits, home, own_user, own_network, connection)
    except OSError as error:
        connection.send(("refused", f"the sandbox could not confine the algorithm's process "
                                    f"({error}), so none of the algorithm ran."))  # fmt: skip
        connection.close()
        return
    instance = algorithm()
    instance.inputs = inputs
    instance.progress = lambda fraction: connection.send(("progress", float(fraction)))
    try:
        result = _plain(instance.run(frame, params))
        if instance.artifact is not None:
            connection.send(("artifact", bytes(instance.artifact)))
        connection.send(("ok", result))
    except AlgorithmError as error:
        connection.send(("refused", str(error)))
    except MemoryError:
        connection.send(("refused", "the algorithm ran out of its memory limit."))
    except Exception as error:  # the message of an unexpected error stays data-side
        connection.send(("failed", type(error).__name__))
    finally:
        connection.close()


# -- the executor's side ---------------------------------------------------------------


class _NotData(Exception):
    """A message from the child that is not one of the sandbox's, made of plain data."""


class _DataOnly(pickle.Unpickler):
    """Unpickles plain data and nothing else.

    A pickle may name any function to call as it is read (``posix.system``): a child
    that writes its own bytes into the pipe would run code in the executor. The child's
    messages need no function but the constructors of sets and bytearrays.
    """

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"),
    }  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise _NotData(f"a call of {module}.{name}")


#: Each kind of message the child sends, and the type of its value.
_MESSAGES = {
    "progress": (int, float), "artifact": (bytes,), "ok": (object,),
    "refused": (str,), "failed": (str,),
}  # fmt: skip


def _receive(receiver, limits: Limits) -> tuple[str, Any]:
    """The child's next message, read as data; _NotData if it is not one."""
    try:
        data = receiver.recv_bytes(limits.memory_bytes)
    except OSError as error:  # larger than the child could have made
        raise _NotData("a message larger than its memory limit") from error
    try:
        message = _DataOnly(io.BytesIO(data)).load()
    except _NotData:
        raise
    except Exception as error:
        raise _NotData("a malformed message") from error
    if not (type(message) is tuple and len(message) == 2 and message[0] in _MESSAGES):
        raise _NotData("a message of no kind it may send")
    kind, value = message
    if not isinstance(value, _MESSAGES[kind]) or (kind == "progress" and type(value) is bool):
        raise _NotData(f"a {kind} message holding a {type(value).__name__}")
    return kind, value


@functools.cache
def _setpriv() -> str | None:
    return shutil.which("setpriv")


def _kill_user(run_id: int) -> None:
    """Kill every process of a run's user: one that left its process group (a session
    of its own) too. ``kill(-1)`` from that user reaches exactly those, and only a
    process of that user may send it: a shell run as it, for an instant.

    util-linux's ``setpriv`` (essential in Debian) changes the user after the executor
    forks, so the fork is a vfork: changing it in Python copies the executor's page
    tables first, ten times as long.
    """
    shell = ["/bin/sh", "-c", "kill -s KILL -- -1"]
    as_user: dict[str, Any] = {"user": run_id, "group": run_id, "extra_groups": []}
    if setpriv := _setpriv():
        shell = [setpriv, f"--reuid={run_id}", f"--regid={run_id}", "--clear-groups", *shell]
        as_user = {}
    try:
        subprocess.run(  # noqa: S603 - a fixed command
            shell, env={}, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, timeout=10, check=False, **as_user,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as error:
        logging.getLogger(__name__).warning(
            "Could not kill what is left of sandbox user %d: %s.", run_id, error
        )


def _end_run(child, own_user: bool) -> None:
    """Kill whatever is left of a run: its process group while its child is not yet
    reaped (so the group's number cannot be another's), then its user's processes."""
    if child.pid is None:  # never started
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    child.join(timeout=5)
    if child.is_alive():  # killed before it made its own group
        child.kill()
        child.join(timeout=5)
    if own_user:
        _kill_user(RUN_ID_BASE + child.pid)


def run_sandboxed(
    algorithm: type[Algorithm],
    frame: pd.DataFrame,
    params: dict[str, Any],
    limits: Limits,
    on_progress: Callable[[float], None] | None = None,
    inputs: list | None = None,
    artifacts: list[bytes] | None = None,
) -> Any:
    """``algorithm().run(frame, params)`` in a confined child; raises AlgorithmError on failure.

    Progress the algorithm reports reaches ``on_progress`` as it comes; an artifact it
    leaves (a trained model's bytes) is appended to ``artifacts``. Whatever the run
    started is killed before this returns.
    """
    _ensure_forkserver()
    own_user, own_network = _runs_get_own_user(), _runs_get_own_network()
    home = tempfile.mkdtemp(prefix="flowblock-run-")
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    child = _CONTEXT.Process(
        target=_child,
        args=(sender, algorithm, frame, params, limits, inputs or [], home, own_user, own_network),
        daemon=True,
    )
    deadline = time.monotonic() + limits.wall_seconds
    outcome, value = "died", None
    try:
        child.start()
        sender.close()
        while True:
            ready = wait([receiver, child.sentinel], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AlgorithmError(
                    f"the algorithm did not finish within {limits.wall_seconds:g} s."
                )
            if receiver not in ready and not receiver.poll(0):
                break  # the child is gone and said nothing
            try:
                outcome, value = _receive(receiver, limits)
            except EOFError:
                break
            except _NotData as error:
                raise AlgorithmError(
                    f"the algorithm sent back {error}, which cannot leave the sandbox: only "
                    "plain data (dicts, lists, strings, numbers) can."
                ) from None
            if outcome == "artifact":
                if artifacts is not None:
                    artifacts.append(value)
            elif outcome == "progress":
                if on_progress is not None:
                    on_progress(float(value))
            else:
                break
    finally:
        _end_run(child, own_user)
        receiver.close()
        shutil.rmtree(home, ignore_errors=True)
    if outcome == "ok":
        return value
    if outcome == "refused":
        raise AlgorithmError(value)
    if outcome == "died" and child.exitcode == -signal.SIGXCPU:
        raise AlgorithmError(f"the algorithm used up its {limits.cpu_seconds} s of CPU time.")
    if outcome == "died":
        raise AlgorithmError("the algorithm's process died (killed or out of memory).")
    raise AlgorithmError(f"the algorithm failed ({value}).")
