"""How an organisation's executor runs: its organisation, its workers, its queue, its limits.

Set in ``flowblock_config.py``, by ``FLOWBLOCK_*`` variables (see flowblock.config), or
on the command line; the same settings serve the in-process workers and Celery's. The
organisation's disclosure rules are the ``DisclosurePolicy`` section of the same
configuration (``c.DisclosurePolicy.min_cohort = 20``).
"""

from __future__ import annotations

from traitlets import Int, Unicode
from traitlets.config import Configurable

from flowblock.executor.disclosure import DisclosurePolicy
from flowblock.executor.sandbox import Limits


class ExecutorSettings(Configurable):
    organisation = Unicode(
        "Hospital", help="The organisation whose data this executor serves."
    ).tag(config=True)
    identity = Unicode("executor", help="Name of the executor's wallet in its organisation.").tag(
        config=True
    )
    broker_url = Unicode(
        "",
        help="Redis URL of a Celery broker (redis://host:port/0). Empty: in-process workers.",
    ).tag(config=True)
    workers = Int(4, help="Computations run at once by in-process workers.").tag(config=True)
    redelivery_seconds = Int(
        3600,
        help="Celery: after how long a task whose worker died unacknowledged is delivered "
        "again (Redis's visibility timeout); keep it above the longest computation.",
    ).tag(config=True)
    cpu_seconds = Int(600, help="CPU seconds one algorithm run may use.").tag(config=True)
    memory_mb = Int(8192, help="Memory one algorithm run may use, in MiB.").tag(config=True)

    @property
    def limits(self) -> Limits:
        return Limits(cpu_seconds=self.cpu_seconds, memory_bytes=self.memory_mb * 1024**2)

    @property
    def policy(self) -> DisclosurePolicy:
        """The organisation's disclosure policy, read from the same configuration."""
        return DisclosurePolicy(parent=self)
