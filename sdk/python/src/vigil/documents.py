"""The documents that carry flags: flags files and the controller's snapshot."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, cast

import yaml

from vigil import gocompat
from vigil.flag import FieldError, Flag, ValidationError, as_list, as_object, read_flag, validate


class DocumentError(ValueError):
    """A document that could not be read at all, with where and why."""


class _Loader(yaml.SafeLoader):
    """YAML 1.2's core schema, as Go's yaml.v3 reads flags files: off, on,
    yes and no are strings (the variant names of most flags files), and
    duplicate keys are errors."""


_Loader.yaml_implicit_resolvers = {}
_IMPLICIT = [
    ("tag:yaml.org,2002:null", r"~|null|Null|NULL|", [*"~nN", ""]),
    ("tag:yaml.org,2002:bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    # Go's yaml.v3 keeps some YAML 1.1 readings that YAML 1.2 does not
    # (0777 is octal, 1_000 a number, 0b101 binary, 2026-01-01 a
    # timestamp): such scalars would mean different things to the SDKs, so
    # they are refused with a pointer to the fix, as the TypeScript SDK does.
    (
        "tag:vigil.dev,2026:go-ambiguous",
        r"[-+]?0+[1-7][0-7]+|[-+]?0[bB][01_]+|[-+]?0[xXoO][0-9a-fA-F_]*_[0-9a-fA-F_]*|[-+]?[0-9.][0-9._]*_[0-9._]*(?:[eE][-+]?[0-9_]+)?|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt ].*)?",
        list("-+0123456789."),
    ),
    ("tag:yaml.org,2002:int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        list("-+0123456789."),
    ),
]
for _tag, _pattern, _first in _IMPLICIT:
    _Loader.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"), _first)  # pyright: ignore[reportUnknownMemberType]


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int | float:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    # Go's YAML decoder reads -0 as the integer 0, unlike its JSON decoder.
    return gocompat.json_int(text.lstrip("+-") if int(text) == 0 else text)


def _construct_float(loader: _Loader, node: yaml.ScalarNode) -> float:
    text = str(loader.construct_scalar(node))
    low = text.lower()
    if low.endswith(".inf") or low == ".nan":
        raise yaml.constructor.ConstructorError(None, None, f"{text} is not a JSON number", node.start_mark)
    return float(text)


def _construct_ambiguous(loader: _Loader, node: yaml.ScalarNode) -> str:
    text = str(loader.construct_scalar(node))
    raise yaml.constructor.ConstructorError(
        None,
        None,
        f'the plain scalar {text} reads differently in Go\'s YAML parser: quote it, or write the number in decimal without "_"',
        node.start_mark,
    )


def _construct(loader: _Loader, node: yaml.Node) -> object:
    # PyYAML's stubs leave construct_object's result unknown.
    return cast(object, loader.construct_object(node, deep=True))  # pyright: ignore[reportUnknownMemberType]


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[str, Any]:
    loader.flatten_mapping(node)
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = _construct(loader, key_node)
        # Go's flag.Parse turns keys of other kinds into strings (fmt.Sprint).
        name = key if isinstance(key, str) else gocompat.sprint(key)
        if name in out:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark, f"key {name!r} is already defined", key_node.start_mark
            )
        out[name] = _construct(loader, value_node)
    return out


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_Loader.add_constructor("tag:vigil.dev,2026:go-ambiguous", _construct_ambiguous)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def _check_json(v: object, path: str) -> None:
    # What a flags file holds must survive a JSON round trip, as in Go.
    if isinstance(v, float) and not math.isfinite(v):
        raise DocumentError(f"{path}: {v} is not a JSON number")
    obj, items = as_object(v), as_list(v)
    if obj is not None:
        for k, e in obj.items():
            _check_json(e, f"{path}.{k}")
    elif items is not None:
        for i, e in enumerate(items):
            _check_json(e, f"{path}[{i}]")
    elif not isinstance(v, (str, int, float, bool, type(None))):
        raise DocumentError(f"{path}: a {type(v).__name__} is not a JSON value")


def parse_flags(text: str | bytes, name: str = "flags") -> list[Flag]:
    """Parses and validates a flags file, YAML or JSON, as Go's flag.Parse
    does: YAML 1.2, unknown fields are errors, and any problem rejects the
    whole file (DocumentError, or ValidationError naming every bad field)."""
    try:
        loaded: object = yaml.load(text, Loader=_Loader)  # a SafeLoader
    except yaml.YAMLError as e:
        raise DocumentError(f"parse {name}: {e}") from e
    if loaded is None:
        raise DocumentError(f"parse {name}: document is empty")
    doc = as_object(loaded)
    if doc is None:
        raise DocumentError(f"parse {name}: want an object with a flags list")
    for k in doc:
        if k != "flags":
            raise DocumentError(f"parse {name}: unknown field {gocompat.json_dumps(k)}")
    _check_json(doc, "flags")
    flags_value: object = doc.get("flags")
    raw = [] if flags_value is None else as_list(flags_value)
    if raw is None:
        raise DocumentError(f"parse {name}: flags: want a list")
    errors: list[FieldError] = []
    flags = [f for i, r in enumerate(raw) if (f := read_flag(r, i, True, errors)) is not None]
    errors.extend(validate(flags))
    if errors:
        raise ValidationError(errors)
    return flags


def load_flags_file(path: str) -> list[Flag]:
    """Reads and validates a flags file; errors name the file."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise DocumentError(f"load flags {path}: {e.strerror or e}") from e
    try:
        return parse_flags(data, path)
    except ValidationError as e:
        raise ValidationError([FieldError(x.flag, x.field, x.message + f" (in {path})") for x in e.errors]) from e


@dataclass(frozen=True)
class SnapshotDocument:
    """The controller's snapshot, read leniently: unknown fields are ignored
    and flags that cannot be read at all are listed in errors."""

    revision: int
    flags: list[Flag]
    errors: list[FieldError]


def read_snapshot_document(value: object) -> SnapshotDocument:
    """Reads a snapshot object already decoded from JSON (gocompat.json_loads)."""
    doc = as_object(value)
    if doc is None:
        raise DocumentError("snapshot: want a JSON object with revision and flags")
    revision: object = doc.get("revision") or 0
    if isinstance(revision, float) and revision.is_integer():
        revision = int(revision)
    if isinstance(revision, bool) or not isinstance(revision, int):
        raise DocumentError("snapshot: revision: want an integer")
    flags_value: object = doc.get("flags")
    raw = [] if flags_value is None else as_list(flags_value)
    if raw is None:
        raise DocumentError("snapshot: flags: want a list")
    errors: list[FieldError] = []
    flags = [f for i, r in enumerate(raw) if (f := read_flag(r, i, False, errors)) is not None]
    return SnapshotDocument(revision, flags, errors)
