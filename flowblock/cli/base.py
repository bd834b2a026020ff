"""The base of every ``flowblock`` command: configuration, data directory, errors.

Commands are traitlets Applications, as ``jupyter`` and ``jupyterhub`` are, so every
trait can be set in ``flowblock_config.py``, by a ``FLOWBLOCK_*`` variable or on the
command line, and ``--help-all`` documents them.
"""

from __future__ import annotations

import difflib
import os
import signal
import stat
import threading
from pathlib import Path

from traitlets import Unicode, default
from traitlets.config import Application
from traitlets.config.loader import ArgumentError, KVArgParseConfigLoader

from flowblock import __version__
from flowblock.config import config_from_environment
from flowblock.errors import ConfigError, InvalidArgument

CONFIG_FILE = "flowblock_config.py"
#: The umask ``flowblock`` runs under: what it creates, no other user can read or list.
PRIVATE_UMASK = 0o077


class StrictLoader(KVArgParseConfigLoader):
    """Command-line parsing that refuses unknown options instead of warning and going on.

    A mistyped option must change nothing, so it is an error, raised (not printed and
    exited) so the ``flowblock`` entry point can say it in one line.
    """

    def _create_parser(self) -> None:
        super()._create_parser()

        def refuse(message: str) -> None:
            raise ArgumentError(message)

        self.parser.error = refuse  # type: ignore[method-assign]

    def _handle_unrecognized_alias(self, arg: str) -> None:
        raise ArgumentError(f"--{arg} is not an option of this command")


class FlowBlockApp(Application):
    """A ``flowblock`` command or subcommand."""

    version = __version__

    data_dir = Unicode(
        help="Directory holding all of this machine's FlowBlock state: organisations, "
        "their certificate authorities and wallets, the ledger, the object store. "
        "Default: ~/.flowblock; also set by FLOWBLOCK_DATA_DIR.",
    ).tag(config=True)

    config_file = Unicode(
        help=f"Python configuration file to load; default: {CONFIG_FILE} in the data "
        "directory, if it exists. Also set by FLOWBLOCK_CONFIG.",
    ).tag(config=True)

    aliases = {
        "data-dir": "FlowBlockApp.data_dir",
        "config": "FlowBlockApp.config_file",
        "log-level": "Application.log_level",
    }

    # traitlets wraps these in ``catch_config_error``, which logs and exits; FlowBlock lets
    # the error rise so the entry point reports it as one sentence naming the command.
    parse_command_line = Application.parse_command_line.__wrapped__  # type: ignore[attr-defined]
    initialize_subcommand = Application.initialize_subcommand.__wrapped__  # type: ignore[attr-defined]

    def _create_loader(self, argv, aliases, flags, classes) -> KVArgParseConfigLoader:  # type: ignore[no-untyped-def]
        return StrictLoader(
            argv, aliases, flags, classes=classes, log=self.log, subcommands=self.subcommands
        )

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return str(Path("~/.flowblock").expanduser())

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    def initialize(self, argv: list[str] | None = None) -> None:
        self.parse_command_line(argv)
        if self.subapp is not None:
            return
        command_line, environment = self.cli_config, config_from_environment()
        # The environment and the command line say where the config file is; once it
        # is loaded they are applied again so that they win over it.
        self.update_config(environment)
        self.update_config(command_line)
        self.load_configuration_file()
        self.update_config(environment)
        self.update_config(command_line)
        self.make_data_dir_private()

    def make_data_dir_private(self) -> None:
        """Close the data directory to other users (0700) if it exists and is open, as a
        version that ran under the user's umask may have left it; a command that creates
        it does so under :data:`PRIVATE_UMASK`."""
        path = self.data_path
        try:
            found = path.stat()
        except OSError:
            return  # not made yet, or not ours to look at: whoever makes it makes it private
        if stat.S_ISDIR(found.st_mode) and found.st_uid == os.getuid() and found.st_mode & 0o077:
            path.chmod(0o700)
            self.log.info("made the data directory %s private to its user (0700)", path)

    def load_configuration_file(self) -> None:
        if self.config_file:
            path = Path(self.config_file).expanduser()
            if not path.is_file():
                raise ConfigError(f"the configuration file {path} does not exist.")
        else:
            path = self.data_path / CONFIG_FILE
            if not path.is_file():
                return
        self.load_config_file(path.name, path=str(path.parent))

    def start(self) -> None:
        if self.subapp is not None:
            self.subapp.start()
            return
        if self.extra_args:
            self.unknown_command(self.extra_args[0])
        self.print_help()

    def unknown_command(self, word: str) -> None:
        """Refuse a word that names no subcommand, suggesting the closest one."""
        choices = sorted(self.subcommands)
        close = difflib.get_close_matches(word, choices, n=1)
        raise InvalidArgument(
            f"the command after '{self.name}'",
            "one of " + ", ".join(choices),
            word,
            hint=f"did you mean {close[0]!r}?" if close else "",
        )

    def positional(self, *names: str) -> list[str]:
        """Exactly the positional arguments ``names``, or a one-sentence error."""
        if len(self.extra_args) != len(names):
            raise InvalidArgument(
                f"'{self.name}'",
                "given " + (" ".join(n.upper() for n in names) or "no positional argument"),
                " ".join(self.extra_args) or None,
            )
        return list(self.extra_args)


def wait_for_termination() -> None:
    """Block until SIGTERM or SIGINT, so a service can then stop cleanly."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
