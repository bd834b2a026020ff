"""The algorithm catalogue: which methods exist, what they take, and the hash of their code.

An organisation's admin publishes a method (name, version, parameter schema, input and
output kinds, disclosure class, SHA-256 of its code); a published version never
changes, so a result's provenance names exactly which code produced it. Admins of the
publishing organisation enable or disable it; researchers list what is available.

Each organisation's versions are its own: what runs on a dataset is what the dataset's
organisation published and left enabled, since its executor is what runs it. Another
organisation may publish a method of the same name, even of the same version, and it
never becomes the default on data it does not hold, nor can it be asked for there.
"""

from __future__ import annotations

import difflib
import json
import re

from flowblock.chaincode import Context, transaction
from flowblock.chaincode.contracts.base import (
    Conflict,
    FlowBlockContract,
    Invalid,
    NotFound,
    Refused,
    emit,
    json_argument,
    key,
    name,
    now,
    read,
    require,
    sha256_hex,
    text,
    timestamp,
    write,
)
from flowblock.errors import InvalidArgument
from flowblock.schema import check_schema
from flowblock.vocabulary import DISCLOSURE_CLASSES, Event

METHOD = "method"
INPUT_KINDS = ("tabular", "images", "tokens")
OUTPUT_KINDS = ("value", "table", "figure", "metrics", "model", "labels")
_VERSION = re.compile(r"^\d+(\.\d+){0,2}$")


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def method_key(method: str, organisation: str, version: str) -> str:
    return key(METHOD, method, organisation, version)


def get_method(ctx: Context, method: str, version: str = "", organisation: str = "") -> dict:
    """A method by name and version, ``organisation``'s (any organisation's without one);
    without a version, the newest enabled one."""
    versions = [
        json.loads(kv.value)
        for kv in ctx.stub.get_state_by_partial_composite_key(
            METHOD, [method, organisation] if organisation else [method]
        )
    ]
    if version:
        found = [m for m in versions if m["version"] == version]
        if not found:
            raise NotFound(f"there is no method {method}@{version} in the catalogue")
        return found[0]  # of an organisation, the one; of any, the first publisher's
    enabled = [m for m in versions if m["enabled"]]
    if not enabled:
        known = sorted(
            {
                json.loads(kv.value)["name"]
                for kv in ctx.stub.get_state_by_partial_composite_key(METHOD, [])
            }
        )
        hint = _closest(method, known)
        raise NotFound(f"there is no method {method!r} in the catalogue" + hint)
    return max(enabled, key=lambda m: (version_key(m["version"]), m["publisher"]))


def method_for(ctx: Context, method: str, version: str, organisation: str) -> dict:
    """The method that runs on ``organisation``'s data: one it published, the newest it
    left enabled without a version. A method only another organisation published is not
    found, and said so."""
    try:
        return get_method(ctx, method, version, organisation)
    except NotFound:
        get_method(ctx, method, version)  # nobody's at all: the catalogue's own refusal
        asked = f"{method}@{version}" if version else repr(method)
        raise NotFound(
            f"{organisation} has published no {'enabled ' if not version else ''}method "
            f"{asked}, and only its own methods run on its data"
        ) from None


def _closest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class CatalogueContract(FlowBlockContract):
    name = "catalogue"

    @transaction
    def Publish(self, ctx: Context, method: str) -> dict:  # noqa: N802
        """An admin publishes a method version; published versions are immutable."""
        admin = require(ctx, "admin")
        spec = json_argument(method, "method")
        method_name = name(str(spec.get("name", "")), "method.name")
        version = str(spec.get("version", ""))
        if not _VERSION.match(version):
            raise Invalid(f"method.version must look like 1, 1.2 or 1.2.3, got {version!r}")
        if read(ctx, method_key(method_name, admin.organisation, version)) is not None:
            raise Conflict(f"{method_name}@{version} is already published; publish a new version")
        parameters = spec.get("parameters", {"type": "object", "properties": {}})
        try:
            check_schema(parameters, "method.parameters")
        except InvalidArgument as error:
            raise Invalid(str(error).rstrip(".")) from None
        for field, allowed in (
            ("input_kind", INPUT_KINDS),
            ("output_kind", OUTPUT_KINDS),
            ("disclosure_class", DISCLOSURE_CLASSES),
        ):
            if spec.get(field) not in allowed:
                raise Invalid(f"method.{field} must be one of {', '.join(allowed)}")
        value = {
            "name": method_name,
            "version": version,
            "description": text(str(spec.get("description", "")), "method.description", 2000),
            "parameters": parameters,
            "input_kind": spec["input_kind"],
            "output_kind": spec["output_kind"],
            "disclosure_class": spec["disclosure_class"],
            "code_hash": sha256_hex(spec.get("code_hash", ""), "method.code_hash"),
            "publisher": admin.organisation,
            "enabled": True,
            "published_at": timestamp(now(ctx)),
        }
        write(ctx, method_key(method_name, admin.organisation, version), value)
        emit(ctx, Event.METHOD_PUBLISHED, {"method": method_name, "version": version})
        return value

    @transaction
    def SetEnabled(self, ctx: Context, method: str, version: str, enabled: bool) -> dict:  # noqa: N802
        """An admin enables or disables a version their organisation published (without a
        version: its newest enabled one)."""
        admin = require(ctx, "admin")
        try:
            found = get_method(ctx, method, version, admin.organisation)
        except NotFound:
            theirs = get_method(ctx, method, version)  # nobody's at all: not found
            raise Refused(
                f"{method}@{theirs['version']} is for {theirs['publisher']}'s admin to enable "
                f"or disable, not {admin.key}"
            ) from None
        found["enabled"] = enabled
        write(ctx, method_key(method, admin.organisation, found["version"]), found)
        emit(ctx, Event.METHOD_CHANGED,
             {"method": method, "version": found["version"], "enabled": enabled})  # fmt: skip
        return found

    @transaction(submit=False)
    def GetMethod(self, ctx: Context, method: str, version: str) -> dict:  # noqa: N802
        """A method version, or the newest enabled one, of whichever organisation published
        it (a request on a dataset takes the dataset's organisation's)."""
        return get_method(ctx, method, version)

    @transaction(submit=False)
    def ListAvailableMethods(self, ctx: Context) -> list:  # noqa: N802
        """Every enabled method version, by name then version (FlowBlock's own name)."""
        return [m for m in self._all(ctx) if m["enabled"]]

    @transaction(submit=False)
    def ListMethods(self, ctx: Context) -> list:  # noqa: N802
        """Every published method version, enabled or not."""
        return self._all(ctx)

    @staticmethod
    def _all(ctx: Context) -> list[dict]:
        methods = [
            json.loads(kv.value) for kv in ctx.stub.get_state_by_partial_composite_key(METHOD, [])
        ]
        return sorted(methods, key=lambda m: (m["name"], version_key(m["version"]), m["publisher"]))
