"""Child processes that die with the process that started them.

A server FlowBlock starts (SeaweedFS, a Redis for the tests) runs in a session of its own
so that Ctrl-C in a terminal reaches FlowBlock, which stops it cleanly. But if FlowBlock
itself is killed (kill -9, the OOM killer) nothing stops the child: it keeps its ports
and locks its store, and the next start fails. So each child is started through
util-linux's ``setpriv --pdeathsig``: the kernel sends it SIGKILL the moment its parent
dies (Linux's PR_SET_PDEATHSIG, set after fork and kept across exec).

The signal follows the *thread* that started the child: start children from a thread
that lives as long as they should (the main thread, or a service's own).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence


def dying_with_parent(argv: Sequence[str]) -> list[str]:
    """``argv`` run so that the child is killed when this process dies.

    Where ``setpriv`` is missing (not Linux), the child is started as it is.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return list(argv)
    return [setpriv, "--pdeathsig", "KILL", "--", *argv]
