"""What an algorithm is: a named, versioned computation the catalogue can vouch for.

Algorithms are plugins under the entry-point group ``flowblock.algorithms``, as
JupyterHub finds its spawners; a hospital adds one by installing a package. Each has a
parameter schema (checked in chaincode and again here), the kinds of data it takes
and returns, and a disclosure class, which alone decides the rules the data
organisation's disclosure policy applies to its results (see
:mod:`flowblock.executor.disclosure.classes`); its code hash (SHA-256 of the module that
defines it) is published in the catalogue, and the executor runs it only if the
installed code still has that hash.
"""

from __future__ import annotations

import abc
import difflib
import functools
import hashlib
import importlib
import inspect
import json
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from flowblock.errors import FlowBlockError

if TYPE_CHECKING:  # the sandbox imports this module; it needs no gRPC
    from flowblock.ledger import Contract

GROUP = "flowblock.algorithms"


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (anything else as it is), for results
    that must travel as JSON."""
    return value.item() if hasattr(value, "item") else value


def plain_records(frame: pd.DataFrame) -> list[dict]:
    """A frame's rows as dicts of plain Python values, missing values as None."""
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [{column: plain(value) for column, value in row.items()} for row in records]


class AlgorithmError(FlowBlockError):
    """An algorithm could not run on this input; the message says why, without data."""


def check_columns(frame: pd.DataFrame, columns: Iterable[str]) -> None:
    """Refuse a column the rows lack, by name: the nearest the dataset has, or all of them.

    A misspelt column would otherwise surface as whatever the first use of it breaks
    ("not numeric", a KeyError); column names are the dataset's public schema.
    """
    for column in columns:
        if column not in frame.columns:
            names = sorted(str(name) for name in frame.columns)
            close = difflib.get_close_matches(str(column), names, n=1)
            if close:
                raise AlgorithmError(
                    f"the column {column!r} is not in the dataset; did you mean {close[0]!r}?"
                )
            raise AlgorithmError(
                f"the column {column!r} is not in the dataset, whose columns are "
                f"{', '.join(names)}."
            )


class Algorithm(abc.ABC):
    """Subclass, set the class attributes, implement :meth:`run`."""

    name: ClassVar[str]
    version: ClassVar[str] = "1.0"
    description: ClassVar[str] = ""
    parameters: ClassVar[dict] = {"type": "object", "properties": {}, "additionalProperties": False}
    input_kind: ClassVar[str] = "tabular"
    output_kind: ClassVar[str] = "value"
    #: What its result is, which names the disclosure rules it gets: one of
    #: ``count_table``, ``histogram``, ``crosstab``, ``statistics``, ``model``, ``chart``,
    #: ``labels`` (:mod:`flowblock.executor.disclosure.classes`). A result not of its
    #: class's form is refused: the default, a count table, releases counts alone.
    disclosure_class: ClassVar[str] = "count_table"
    #: ACRO's name for its analysis ("Mean", "Maximum", "StandardDeviation"…, from ACRO's
    #: ontology), which picks the checks of its class that apply (a mean's dominance, a
    #: maximum's records); None: its class's, which for statistics is every check.
    sdc_analysis: ClassVar[str | None] = None
    #: Columns its statistics summarise that no parameter names (average blood pressure:
    #: systolic and diastolic), for :meth:`summarised_columns`.
    statistic_columns: ClassVar[tuple[str, ...]] = ()
    #: Other modules whose code decides this algorithm's results (a shared mechanism, a
    #: pinned model hash): hashed with its own module into its code hash.
    code_modules: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def run(self, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
        """The result over the cohort's rows: a dict, a DataFrame or a figure spec."""

    #: For algorithms whose input kind is "tokens": the outputs of the input tokens, in order;
    #: for image algorithms given a model token: ``[{"model": bytes}]``.
    inputs: list[Any] = []
    #: What a training algorithm leaves behind (a model's bytes): kept data-side, hashed.
    artifact: bytes | None = None

    def progress(self, fraction: float) -> None:  # noqa: B027 - optional, a no-op by default
        """Report how far a long computation has come (0..1); the executor posts it."""

    @classmethod
    def code_hash(cls) -> str:
        """SHA-256 of the source of the module that defines the algorithm, and of its
        ``code_modules`` after it, as loaded.

        Computed once per process, so it names the code that runs here even if the file
        changes on disk afterwards.
        """
        return _modules_hash((cls.__module__, *cls.code_modules))

    @classmethod
    def group_columns(cls, params: dict[str, Any]) -> list[str]:
        """The columns whose values key its result's groups (or cells), as its parameters
        name them: ``group_by`` by default. The disclosure rules find each group's rows,
        and its patients, by these."""
        return list(params.get("group_by") or [])

    @classmethod
    def summarised_columns(cls, params: dict[str, Any]) -> list[str]:
        """The numeric columns its statistics summarise, whose values the dominance rules
        look at: the one its ``column`` parameter names, else :attr:`statistic_columns`."""
        column = params.get("column")
        return [column] if isinstance(column, str) and column else list(cls.statistic_columns)

    @classmethod
    def catalogue_entry(cls) -> dict:
        """What the catalogue publishes about this algorithm."""
        return {
            "name": cls.name,
            "version": cls.version,
            "description": cls.description,
            "parameters": cls.parameters,
            "input_kind": cls.input_kind,
            "output_kind": cls.output_kind,
            "disclosure_class": cls.disclosure_class,
            "code_hash": cls.code_hash(),
        }


@functools.cache
def _modules_hash(modules: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for module in modules:
        digest.update(inspect.getsource(importlib.import_module(module)).encode())
    return digest.hexdigest()


def load_algorithms() -> dict[tuple[str, str], type[Algorithm]]:
    """Every installed algorithm, by (name, version)."""
    found: dict[tuple[str, str], type[Algorithm]] = {}
    for entry in entry_points(group=GROUP):
        algorithm = entry.load()
        if isinstance(algorithm, type) and issubclass(algorithm, Algorithm):
            found[(algorithm.name, algorithm.version)] = algorithm
    return found


def publish_algorithms(catalogue: Contract) -> list[type[Algorithm]]:
    """Put every installed algorithm the catalogue lacks into it; those it published.

    ``catalogue`` is the ``catalogue`` contract as an admin of the data organisation.
    An algorithm its organisation already listed at its version is left alone: a changed
    one needs a new version, so a token's code hash always names the code it was approved
    for. Another organisation's entry of the same name and version is not its own: the
    catalogue keeps each organisation's versions apart.
    """
    organisation = catalogue.network.gateway.identity.organisation
    listed = json.loads(catalogue.evaluate("ListMethods"))
    published = {
        (method["name"], method["version"])
        for method in listed
        if method["publisher"] == organisation
    }
    new = [a for key, a in sorted(load_algorithms().items()) if key not in published]
    for algorithm in new:
        catalogue.submit("Publish", json.dumps(algorithm.catalogue_entry()))
    return new
