"""The ``%flowblock`` command line: subcommands, their arguments and one-line errors.

Parsing is pure (no kernel, no ledger), so it is unit-tested alone; every mistake
becomes a ``UsageError`` of one sentence that names the argument and what it expects.
"""

from __future__ import annotations

import argparse
import difflib
import json
import shlex
from typing import Any, NoReturn

from IPython.core.error import UsageError

from flowblock.canonical import nested_deeper_than
from flowblock.vocabulary import MAX_JSON_DEPTH

COMMANDS = ("whoami", "methods", "compute", "status", "tokens", "result", "audit", "verify",
            "budget")  # fmt: skip
USAGE = "%flowblock " + " | ".join(COMMANDS) + " (add --help to one for its arguments)"


class HelpShown(Exception):
    """``--help`` printed the usage; there is nothing else to do."""


class _Parser(argparse.ArgumentParser):
    """argparse, with errors raised as one-line UsageErrors instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {_sentence(message)}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status:
            raise UsageError(f"{self.prog}: {_sentence(message or 'invalid arguments')}")
        raise HelpShown


def _sentence(message: str) -> str:
    """argparse's wording, turned into ours: 'argument --x: y' becomes '--x y'."""
    message = message.strip()
    if message.startswith("argument "):
        argument, _, rest = message[len("argument ") :].partition(": ")
        argument = argument.split("/")[0]
        message = f"{argument} {rest}"
    required = "the following arguments are required: "
    if message.startswith(required):
        names = ", ".join(name.split("/")[0] for name in message[len(required) :].split(", "))
        message = f"{names} {'is' if ',' not in names else 'are'} required"
    return message.rstrip(".") + "."


def parse_value(text: str) -> Any:
    """A parameter's value as typed: JSON (numbers, true, lists), a YAML list, or text;
    one nested deeper than the ledger accepts is refused here, in one sentence."""
    deep = f"must be nested at most {MAX_JSON_DEPTH} levels deep"
    try:
        value = _decoded(text)
    except RecursionError:  # the parsers recurse: a value thousands deep overflows them
        raise argparse.ArgumentTypeError(deep) from None
    if nested_deeper_than(value):
        raise argparse.ArgumentTypeError(deep)
    return value


def _decoded(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    if text.startswith(("[", "{")):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            pass
    return text


def _param(text: str) -> tuple[str, Any]:
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, got {text!r}")
    parsed = parse_value(value)
    if not _is_json(parsed):
        raise argparse.ArgumentTypeError(
            f"{key.strip()} must be text, a number, true/false, a list or a mapping; "
            "quote dates and times"
        )
    return key.strip(), parsed


def _is_json(value: Any) -> bool:
    """Whether a parameter can travel to the ledger (YAML also reads dates, sets, bytes)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _epsilon(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number at least 0, got {text!r}")
    return value


#: The longest wait a --timeout may ask for: a week.
LONGEST_WAIT = 7 * 24 * 3600.0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= LONGEST_WAIT:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds above 0 and at most a week, got {text!r}"
        )
    return value


def _parsers() -> dict[str, _Parser]:
    def parser(command: str, description: str) -> _Parser:
        return _Parser(prog=f"%flowblock {command}", description=description, allow_abbrev=False)

    whoami = parser("whoami", "Who you are on the ledger: name, organisation, role.")
    methods = parser("methods", "The catalogue of methods, or one method and how to call it.")
    methods.add_argument("name", nargs="?", help="a method's name, to show it alone")
    compute = parser("compute", "Ask for a computation and wait for its result.")
    compute.add_argument("method", help="the method, from %%flowblock methods")
    compute.add_argument("--dataset", "-d", required=True, help="the dataset to compute on")
    compute.add_argument(
        "--param", "-p", type=_param, action="append", default=[], metavar="KEY=VALUE",
        help="a parameter (repeat it); values are JSON, quoted when they hold spaces: "
        "-p bins=10 -p 'where=[[\"sex\", \"==\", \"F\"]]'",
    )  # fmt: skip
    compute.add_argument("--purpose", default="research", help="why (default: research)")
    compute.add_argument(
        "--dp-epsilon", type=_epsilon, default=None, metavar="E",
        help="differential privacy: the ε of your budget this result may spend",
    )  # fmt: skip
    compute.add_argument(
        "--input", action="append", default=[], metavar="TOKEN",
        help="an earlier token whose output this one takes (a flow; repeat it)",
    )  # fmt: skip
    compute.add_argument("--version", default="", help="a method version (default: newest)")
    compute.add_argument(
        "--no-wait", action="store_true", help="return the job at once instead of its result"
    )
    compute.add_argument(
        "--timeout", type=_seconds, default=3600.0, metavar="SECONDS",
        help="how long to wait for the result (default 3600)",
    )  # fmt: skip
    status = parser("status", "A token's status (default: your latest).")
    status.add_argument("token", nargs="?", help="a token id, or its first characters")
    tokens = parser("tokens", "Your computation tokens, as a table.")
    tokens.add_argument("--status", default="", help="only tokens of this status")
    result = parser("result", "A finished token's result.")
    audit = parser("audit", "A token's trail on the ledger: who, when, which code and policy.")
    verify = parser("verify", "Check a token's signatures, hashes and provenance.")
    for needs_token in (result, audit, verify):
        needs_token.add_argument("token", help="a token id, or its first characters")
    budget = parser("budget", "Your differential-privacy budget: ε granted, spent, left.")
    budget.add_argument("--dataset", "-d", help="one dataset (default: every dataset)")
    return {
        "whoami": whoami, "methods": methods, "compute": compute, "status": status,
        "tokens": tokens, "result": result, "audit": audit, "verify": verify, "budget": budget,
    }  # fmt: skip


_PARSERS: dict[str, _Parser] | None = None


def parse(line: str) -> tuple[str, argparse.Namespace]:
    """The subcommand and its arguments; a UsageError for anything malformed."""
    global _PARSERS
    try:
        words = shlex.split(line)
    except ValueError as error:
        raise UsageError(
            f"%flowblock: the line cannot be split into arguments ({error})."
        ) from None
    if not words:
        raise UsageError(f"%flowblock needs a command: {USAGE}.")
    if words[0] in ("-h", "--help", "help"):
        print(help_text(words[1] if len(words) > 1 else None))
        raise HelpShown
    command, rest = words[0], words[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = (
            f"; did you mean {close[0]!r}?"
            if close
            else f"; expected one of {', '.join(COMMANDS)}."
        )
        raise UsageError(f"%flowblock: there is no command {command!r}{hint}")
    if _PARSERS is None:
        _PARSERS = _parsers()
    return command, _PARSERS[command].parse_args(rest)


def help_text(command: str | None = None) -> str:
    """The usage of one subcommand, or of all."""
    global _PARSERS
    if _PARSERS is None:
        _PARSERS = _parsers()
    if command in _PARSERS:
        return _PARSERS[command].format_help()
    return (
        "usage: "
        + USAGE
        + "\n\n"
        + "\n".join(f"  {name:<8} {parser.description}" for name, parser in _PARSERS.items())
    )


def cell_params(body: str) -> dict[str, Any]:
    """The parameters a ``%%flowblock compute`` cell holds, as YAML or JSON."""
    import yaml

    if not body.strip():
        return {}
    try:
        params = yaml.safe_load(body)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise UsageError(
            f"%%flowblock compute: the cell must hold parameters as YAML or JSON{line}."
        ) from None
    if not isinstance(params, dict) or not all(isinstance(key, str) for key in params):
        raise UsageError(
            "%%flowblock compute: the cell must hold a mapping of parameter names to values, "
            f"got {type(params).__name__}."
        )
    for key, value in params.items():
        if not _is_json(value):
            raise UsageError(
                f"%%flowblock compute: {key} must be text, a number, true/false, a list or a "
                "mapping; quote dates and times."
            )
    return params
