"""The executor's work as Celery tasks: the very code the in-process workers run.

Start workers with ``celery -A flowblock.executor.tasks worker`` and the executor's
settings in their environment: ``FLOWBLOCK_EXECUTOR_ORG``, ``FLOWBLOCK_BROKER``,
``FLOWBLOCK_EXECUTOR_GATEWAY``, ``FLOWBLOCK_EXECUTOR_S3``, and the wallet and credentials
(``FLOWBLOCK_EXECUTOR_WALLET``, ``FLOWBLOCK_EXECUTOR_S3_CREDENTIALS``, or
``FLOWBLOCK_DATA_DIR`` where ``flowblock network init`` put them). Tasks are
acknowledged only when done, so a worker killed mid-job leaves its task to be
delivered again, and the token is taken up where it was left (never completed twice:
the ledger lets its claimant complete it once).
"""

from __future__ import annotations

import functools
from pathlib import Path

from celery import Celery

from flowblock.config import config_from_environment
from flowblock.executor.settings import ExecutorSettings

_config = config_from_environment()
settings = ExecutorSettings(config=_config)
app = Celery("flowblock", broker=settings.broker_url or None, backend=settings.broker_url or None)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    broker_transport_options={
        "visibility_timeout": settings.redelivery_seconds,
        # Sweep for tasks of dead workers often enough that redelivery follows the timeout.
        "unacked_restore_interval": max(1, min(60, settings.redelivery_seconds // 2)),
        "unacked_restore_throttle": 1,
    },
    result_backend_transport_options={"visibility_timeout": settings.redelivery_seconds},
)


@functools.cache
def executor():
    """This worker process's executor, built once from its settings."""
    data_dir = Path(_config.FlowBlockApp.get("data_dir", "~/.flowblock")).expanduser()
    return settings.build(data_dir)


@app.task(name="flowblock.process_token", bind=True)
def process_token(task, token_id: str, resume: bool = False) -> str:
    redelivered = bool(task.request.delivery_info.get("redelivered"))
    return executor().process(token_id, resume=resume or redelivered)


@app.task(name="flowblock.process_read")
def process_read(access_id: str) -> str:
    from flowblock.executor.reads import process_read as serve

    return serve(executor(), access_id)


@app.task(name="flowblock.process_write")
def process_write(access_id: str) -> str:
    from flowblock.executor.writes import process_write as serve

    return serve(executor(), access_id)
