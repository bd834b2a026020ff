"""The one place where ``FLOWBLOCK_*`` environment variables become configuration.

Every knob is a traitlets trait on a Configurable (``--help-all`` lists them). A
spawned notebook server or a container gets its settings through the environment;
this table says which variable sets which trait, so nothing else reads ``os.environ``.
Precedence, lowest first: defaults, ``flowblock_config.py``, environment, command line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from traitlets.config import Config
from traitlets.config.loader import DeferredConfigString

#: Environment variable -> ``Class.trait`` it sets.
ENVIRONMENT: Final[dict[str, str]] = {
    "FLOWBLOCK_DATA_DIR": "FlowBlockApp.data_dir",
    "FLOWBLOCK_CONFIG": "FlowBlockApp.config_file",
    "FLOWBLOCK_LOG_LEVEL": "Application.log_level",
    "FLOWBLOCK_EXECUTOR_ORG": "ExecutorSettings.organisation",
    "FLOWBLOCK_BROKER": "ExecutorSettings.broker_url",
    "FLOWBLOCK_REDELIVERY_SECONDS": "ExecutorSettings.redelivery_seconds",
    "FLOWBLOCK_EXECUTOR_GATEWAY": "ExecutorSettings.gateway",
    "FLOWBLOCK_EXECUTOR_TLS_CA": "ExecutorSettings.tls_ca",
    "FLOWBLOCK_EXECUTOR_WALLET": "ExecutorSettings.wallet",
    "FLOWBLOCK_EXECUTOR_S3": "ExecutorSettings.s3_endpoint",
    "FLOWBLOCK_EXECUTOR_S3_CREDENTIALS": "ExecutorSettings.s3_credentials",
    # What a spawner tells a notebook server: where the gateway is, whose wallet to use.
    "FLOWBLOCK_GATEWAY": "ClientSettings.gateway",
    "FLOWBLOCK_WALLET": "ClientSettings.wallet",
    "FLOWBLOCK_TLS_CA": "ClientSettings.tls_ca",
}


def config_from_environment(environ: Mapping[str, str] | None = None) -> Config:
    """The configuration that ``FLOWBLOCK_*`` variables in ``environ`` ask for.

    Values stay strings until the trait they set parses them, exactly as a command-line
    value would be, so ``FLOWBLOCK_LOG_LEVEL=DEBUG`` and ``--log-level=DEBUG`` agree.
    """
    environ = os.environ if environ is None else environ
    config = Config()
    for variable, target in ENVIRONMENT.items():
        value = environ.get(variable)
        if value:
            section, trait = target.split(".")
            config[section][trait] = DeferredConfigString(value)
    return config
