"""Parameter schemas: a small, deterministic subset of JSON Schema, checked everywhere.

An algorithm's parameters are described by a schema published in the on-ledger
catalogue. The same function checks a request in the notebook (early, for a helpful
message), in chaincode (the rule that counts) and on the data side, so the three can
never disagree. The subset: ``type`` (object, string, integer, number, boolean,
array), ``properties``, ``required``, ``additionalProperties: false``, ``enum``,
``minimum``/``maximum``, ``minLength``/``maxLength``, ``items``, ``minItems``/``maxItems``
and ``description``/``default`` (documentation only). Anything else in a schema is an
error, so a schema never seems to promise a check that is not made. Both functions
recurse, so a schema or value nested more than ``MAX_JSON_DEPTH`` levels is refused first.
"""

from __future__ import annotations

import difflib
from typing import Any

from flowblock.canonical import nested_deeper_than, too_deep
from flowblock.errors import InvalidArgument

TYPES = {
    "object": dict,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "array": list,
}
KEYWORDS = {
    "type", "properties", "required", "additionalProperties", "enum", "minimum", "maximum",
    "minLength", "maxLength", "items", "minItems", "maxItems", "description", "default", "title",
}  # fmt: skip
_ARTICLE = {"object": "an object", "integer": "an integer", "array": "an array"}


def check_schema(schema: Any, where: str = "the schema") -> None:
    """Raise InvalidArgument unless ``schema`` uses only the supported subset."""
    if nested_deeper_than(schema):
        raise too_deep(where)
    _check_schema(schema, where)


def _check_schema(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        raise InvalidArgument(where, "a JSON object")
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise InvalidArgument(where, "made of " + ", ".join(sorted(KEYWORDS)), sorted(unknown)[0])
    kind = schema.get("type")
    if kind is not None and kind not in TYPES:
        raise InvalidArgument(f"{where}'s type", "one of " + ", ".join(TYPES), kind)
    if schema.get("additionalProperties", False) not in (False, True):
        raise InvalidArgument(f"{where}'s additionalProperties", "true or false")
    for name, sub in schema.get("properties", {}).items():
        _check_schema(sub, f"property {name!r}")
    if "items" in schema:
        _check_schema(schema["items"], f"{where}'s items")


def validate(value: Any, schema: dict, where: str = "params") -> None:
    """Raise InvalidArgument naming the first place ``value`` breaks ``schema``."""
    for checked, named in ((value, where), (schema, f"the schema of {where}")):
        if nested_deeper_than(checked):
            raise too_deep(named)
    _validate(value, schema, where)


def _validate(value: Any, schema: dict, where: str) -> None:
    kind = schema.get("type")
    if kind is not None and not _is(value, kind):
        raise InvalidArgument(where, _ARTICLE.get(kind, f"a {kind}"), value)
    if "enum" in schema and value not in schema["enum"]:
        raise InvalidArgument(where, "one of " + ", ".join(map(repr, schema["enum"])), value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise InvalidArgument(where, f"at least {schema['minimum']}", value)
        if "maximum" in schema and value > schema["maximum"]:
            raise InvalidArgument(where, f"at most {schema['maximum']}", value)
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise InvalidArgument(where, f"at least {schema['minLength']} characters long")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise InvalidArgument(where, f"at most {schema['maxLength']} characters long")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise InvalidArgument(where, f"a list of at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise InvalidArgument(where, f"a list of at most {schema['maxItems']} items")
        for index, item in enumerate(value):
            _validate(item, schema.get("items", {}), f"{where}[{index}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        # An unknown name first: it is usually a misspelling of the one reported missing.
        if not schema.get("additionalProperties", False) and "properties" in schema:
            extra = sorted(set(value) - set(properties))
            if extra:
                raise InvalidArgument(
                    where, "made of " + (", ".join(sorted(properties)) or "nothing"), extra[0],
                    hint=_suggest(extra[0], properties),
                )  # fmt: skip
        for name in schema.get("required", []):
            if name not in value:
                raise InvalidArgument(f"{where}.{name}", "given")
        for name, item in value.items():
            if name in properties:
                _validate(item, properties[name], f"{where}.{name}")


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, TYPES[kind])


def _suggest(word: str, choices: dict) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {close[0]!r}?" if close else ""
