"""The flag model, its validation, and in-memory evaluation.

The same model and evaluation order as Go's sdk/flag (docs/bucketing.md):
disabled, targets, rules, rollout, default. A Snapshot is immutable and
compiled: every answer a flag can give is built when it is compiled, so
evaluating returns a finished Detail and never raises.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from vigil import gocompat, semver
from vigil.bucket import bucket_of, hash_unit
from vigil.re2 import InvalidPatternError, UnsupportedPatternError, compile_re2

Reason = Literal["disabled", "targeting_match", "split", "default", "error", "pinned"]
"""Why an evaluation returned its variant: the values of OpenTelemetry's
feature_flag.result.reason, and "pinned" for a variant pinned upstream."""

ErrorType = Literal["flag_not_found", "targeting_key_missing", "type_mismatch", "provider_not_ready", "general"]
"""What went wrong when the reason is "error": OpenFeature's error codes in
lower case, as OpenTelemetry's error.type writes them."""

OPS: Final = (
    "in",
    "not_in",
    "starts_with",
    "ends_with",
    "contains",
    "matches",
    "lt",
    "lte",
    "gt",
    "gte",
    "semver_lt",
    "semver_gte",
)

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)


@dataclass(frozen=True)
class EvalContext:
    """What a flag is evaluated for: the unit (targeting key: a user, account
    or device id) and attributes that rules test (strings, booleans, numbers;
    lists and objects are compared in Go's fmt.Sprint spelling)."""

    key: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict[str, Any])


@dataclass(frozen=True)
class Target:
    """Serves variant to the listed units, before any rule or rollout."""

    variant: str
    units: tuple[str, ...]


@dataclass(frozen=True)
class Clause:
    """Compares one attribute of the context with values (kept as strings,
    read by the operator)."""

    attribute: str
    op: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    """Serves variant when every clause of when matches."""

    variant: str
    when: tuple[Clause, ...]


@dataclass(frozen=True)
class Rollout:
    """The treatment share, 0 to 100 with up to 3 decimals, of the units no
    target or rule decided. plan is the controller's; SDKs carry it."""

    percent: float
    plan: Any = None


@dataclass(frozen=True)
class Flag:
    """One feature flag as written in a flags file and delivered to SDKs.
    variants maps a variant name to its value, any JSON value."""

    key: str
    variants: Mapping[str, Any]
    control: str
    enabled: bool = False
    treatment: str = ""
    salt: str = ""
    description: str = ""
    targets: tuple[Target, ...] = ()
    rules: tuple[Rule, ...] = ()
    rollout: Rollout | None = None
    version: int = 0
    tracked: bool = False


@dataclass(frozen=True, slots=True)
class Detail:
    """The full result of one evaluation. value is the variant's value (or
    the caller's default when variant is ""); it is shared: do not modify."""

    key: str
    value: Any
    variant: str
    reason: Reason
    error_type: ErrorType | None = None
    version: int = 0
    tracked: bool = False


class FieldError(ValueError):
    """One invalid field of one flag."""

    def __init__(self, flag: str, field: str, message: str) -> None:
        super().__init__(f"flag {flag}: {field}: {message}")
        self.flag = flag
        self.field = field
        self.message = message


class ValidationError(ValueError):
    """Every problem found in a set of flags, one FieldError a line."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = list(errors)


def not_found(key: str) -> Detail:
    """The detail of a flag the snapshot does not hold: the caller's default."""
    return Detail(key, None, "", "error", "flag_not_found")


def millipercent(p: float) -> int:
    """A percentage with at most three decimals in thousandths of a percent,
    the unit in which bucketing compares; ValueError when out of range."""
    if math.isnan(p) or p < 0 or p > 100:
        raise ValueError(f"{gocompat.format_float_g(p)} is out of range 0 to 100")
    m = math.floor(p * 1000 + 0.5)
    if abs(p * 1000 - m) > 1e-6:
        raise ValueError(f"{gocompat.format_float_g(p)} has more than 3 decimals")
    return m


# Reading untyped documents (decoded JSON or YAML) into flags.

_FLAG_FIELDS = frozenset(
    "key description variants control treatment enabled salt targets rules rollout version tracked".split()
)
_TARGET_FIELDS = frozenset(("variant", "units"))
_RULE_FIELDS = frozenset(("variant", "when"))
_CLAUSE_FIELDS = frozenset(("attribute", "op", "values"))
_ROLLOUT_FIELDS = frozenset(("percent", "plan"))


def _show(v: Any) -> str:
    try:
        return gocompat.json_dumps(v)
    except TypeError:
        return repr(v)


def clause_value(v: Any) -> str | None:
    """A clause value written as a string, number or boolean, as the string
    the Go reference keeps; None for any other kind."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float) and math.isfinite(v):
        return gocompat.json_float(v)
    return None


def as_object(v: object) -> Mapping[str, Any] | None:
    """v as a JSON object, or None when it is not one."""
    return cast("Mapping[str, Any]", v) if isinstance(v, Mapping) else None


def as_list(v: object) -> list[Any] | None:
    """v as a JSON list, or None when it is not one."""
    return cast("list[Any]", v) if isinstance(v, list) else None


def read_flag(raw: object, index: int, strict: bool, errors: list[FieldError]) -> Flag | None:
    """Reads an untyped flag into a Flag. With strict, unknown fields are
    errors, as in flags files; on the wire they are ignored, so that an
    older SDK keeps working with a newer controller. Problems are appended
    to errors, and None returned when there were any."""
    obj = as_object(raw)
    key = obj.get("key") if obj is not None else None
    name = key if isinstance(key, str) and key else f"#{index}"
    before = len(errors)

    def add(path: str, msg: str) -> None:
        errors.append(FieldError(name, path, msg))

    if obj is None:
        add("", "a flag must be an object")
        return None

    def unknown(o: Mapping[str, Any], known: frozenset[str], path: str) -> None:
        if strict:
            for k in o:
                if k not in known:
                    add(f"{path}.{k}" if path else str(k), "unknown field")

    def string(v: object, path: str) -> str:
        if v is None:
            return ""
        if not isinstance(v, str):
            add(path, f"want a string, got {_show(v)}")
            return ""
        return v

    def boolean(v: object, path: str) -> bool:
        if v is None:
            return False
        if not isinstance(v, bool):
            add(path, f"want true or false, got {_show(v)}")
            return False
        return v

    def objects(v: object, path: str) -> list[tuple[str, Mapping[str, Any]]]:
        if v is None:
            return []
        items = as_list(v)
        if items is None:
            add(path, "want a list")
            return []
        out: list[tuple[str, Mapping[str, Any]]] = []
        for i, e in enumerate(items):
            o = as_object(e)
            if o is not None:
                out.append((f"{path}[{i}]", o))
            else:
                add(f"{path}[{i}]", "want an object")
        return out

    unknown(obj, _FLAG_FIELDS, "")
    variants: Mapping[str, Any] = {}
    if obj.get("variants") is not None:
        vs = as_object(obj["variants"])
        if vs is not None:
            variants = dict(vs)
        else:
            add("variants", "want an object of variant names to values")
    raw_version: object = obj.get("version")
    version = 0
    if isinstance(raw_version, float) and raw_version.is_integer():
        version = int(raw_version)
    elif isinstance(raw_version, int) and not isinstance(raw_version, bool):
        version = raw_version
    elif raw_version is not None:
        add("version", "want an integer")
    targets: list[Target] = []
    for path, t in objects(obj.get("targets"), "targets"):
        unknown(t, _TARGET_FIELDS, path)
        units: list[str] = []
        if t.get("units") is not None:
            us = as_list(t["units"])
            if us is None:
                add(f"{path}.units", "want a list of strings")
            else:
                for j, u in enumerate(us):
                    if isinstance(u, str):
                        units.append(u)
                    else:
                        add(f"{path}.units[{j}]", f"want a string, got {_show(u)}")
        targets.append(Target(string(t.get("variant"), f"{path}.variant"), tuple(units)))
    rules: list[Rule] = []
    for path, r in objects(obj.get("rules"), "rules"):
        unknown(r, _RULE_FIELDS, path)
        when: list[Clause] = []
        for cpath, c in objects(r.get("when"), f"{path}.when"):
            unknown(c, _CLAUSE_FIELDS, cpath)
            values: list[str] = []
            if c.get("values") is not None:
                vals = as_list(c["values"])
                if vals is None:
                    add(f"{cpath}.values", "values must be a list")
                else:
                    for k, v in enumerate(vals):
                        s = clause_value(v)
                        if s is None:
                            add(f"{cpath}.values[{k}]", f"want a string, number or boolean, got {_show(v)}")
                        else:
                            values.append(s)
            attribute = string(c.get("attribute"), f"{cpath}.attribute")
            when.append(Clause(attribute, string(c.get("op"), f"{cpath}.op"), tuple(values)))
        rules.append(Rule(string(r.get("variant"), f"{path}.variant"), tuple(when)))
    rollout = None
    if obj.get("rollout") is not None:
        ro = as_object(obj["rollout"])
        if ro is None:
            add("rollout", "want an object")
        else:
            unknown(ro, _ROLLOUT_FIELDS, "rollout")
            p: object = ro.get("percent")
            percent = 0.0
            if isinstance(p, (int, float)) and not isinstance(p, bool):
                percent = float(p)
            elif p is not None:
                add("rollout.percent", f"want a number, got {_show(p)}")
            rollout = Rollout(percent, ro.get("plan"))
    f = Flag(
        key=string(obj.get("key"), "key"),
        description=string(obj.get("description"), "description"),
        variants=variants,
        control=string(obj.get("control"), "control"),
        treatment=string(obj.get("treatment"), "treatment"),
        enabled=boolean(obj.get("enabled"), "enabled"),
        salt=string(obj.get("salt"), "salt"),
        targets=tuple(targets),
        rules=tuple(rules),
        rollout=rollout,
        version=version,
        tracked=boolean(obj.get("tracked"), "tracked"),
    )
    return f if len(errors) == before else None


def flag_to_dict(f: Flag) -> dict[str, Any]:
    """The flag as the protocol's JSON object, as the controller sends it."""
    out: dict[str, Any] = {"key": f.key}
    if f.description:
        out["description"] = f.description
    out["variants"] = dict(f.variants)
    out["control"] = f.control
    if f.treatment:
        out["treatment"] = f.treatment
    out["enabled"] = f.enabled
    if f.salt:
        out["salt"] = f.salt
    if f.targets:
        out["targets"] = [{"variant": t.variant, "units": list(t.units)} for t in f.targets]
    if f.rules:
        out["rules"] = [
            {
                "variant": r.variant,
                "when": [{"attribute": c.attribute, "op": c.op, "values": list(c.values)} for c in r.when],
            }
            for r in f.rules
        ]
    if f.rollout is not None:
        out["rollout"] = {"percent": f.rollout.percent}
        if f.rollout.plan is not None:
            out["rollout"]["plan"] = f.rollout.plan
    if f.version:
        out["version"] = f.version
    if f.tracked:
        out["tracked"] = True
    return out


def validate(flags: Sequence[Flag]) -> list[FieldError]:
    """Checks a set of flags as a unit and returns every problem found."""
    errors: list[FieldError] = []
    seen: dict[str, int] = {}
    for i, f in enumerate(flags):
        name = f.key or f"#{i}"
        if f.key and f.key in seen:
            errors.append(FieldError(name, "key", f"duplicate key, also used by flag #{seen[f.key]}"))
        seen[f.key] = i
        for path, msg in _check_flag(f):
            errors.append(FieldError(name, path, msg))
    return errors


def _check_flag(f: Flag) -> list[tuple[str, str]]:
    errs: list[tuple[str, str]] = []
    if not _KEY.fullmatch(f.key):
        errs.append(
            (
                "key",
                f"{gocompat.json_dumps(f.key)} must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit",
            )
        )
    if not f.variants:
        errs.append(("variants", "at least one variant is required"))
    if "" in f.variants:
        errs.append(("variants", "a variant name is empty"))

    def variant(path: str, name: str) -> None:
        if not name:
            errs.append((path, "is required"))
        elif name not in f.variants:
            errs.append((path, f"unknown variant {gocompat.json_dumps(name)}"))

    variant("control", f.control)
    if f.treatment or f.rollout is not None:
        variant("treatment", f.treatment)
    for i, t in enumerate(f.targets):
        variant(f"targets[{i}].variant", t.variant)
        if not t.units:
            errs.append((f"targets[{i}].units", "at least one unit is required"))
    for i, r in enumerate(f.rules):
        variant(f"rules[{i}].variant", r.variant)
        for j, c in enumerate(r.when):
            try:
                _compile_clause(c)
            except ValueError as e:
                errs.append((f"rules[{i}].when[{j}]", str(e)))
    if f.rollout is not None:
        try:
            millipercent(f.rollout.percent)
        except ValueError as e:
            errs.append(("rollout.percent", str(e)))
    return errs


# Compiling and evaluating.


class _Undecidable(Exception):
    """A matches clause with a pattern this SDK cannot run did not match
    with the patterns it can: the answer is unknown."""


@dataclass(frozen=True, slots=True)
class _Clause:
    attr: str
    op: str
    strs: tuple[str, ...]
    set: frozenset[str]
    nums: tuple[float, ...]
    res: tuple[re.Pattern[str], ...]
    vers: tuple[semver.Version, ...]
    unsupported: str | None

    def matches(self, v: Any) -> bool:
        op = self.op
        if op in ("in", "not_in"):
            return (attr_string(v) in self.set) == (op == "in")
        if op == "starts_with":
            s = attr_string(v)
            return any(s.startswith(w) for w in self.strs)
        if op == "ends_with":
            s = attr_string(v)
            return any(s.endswith(w) for w in self.strs)
        if op == "contains":
            s = attr_string(v)
            return any(w in s for w in self.strs)
        if op == "matches":
            s = attr_string(v)
            if any(r.search(s) for r in self.res):
                return True
            if self.unsupported is not None:
                raise _Undecidable
            return False
        if op in ("lt", "lte", "gt", "gte"):
            n = attr_number(v)
            if n is None:
                return False
            if op == "lt":
                return any(n < w for w in self.nums)
            if op == "lte":
                return any(n <= w for w in self.nums)
            if op == "gt":
                return any(n > w for w in self.nums)
            return any(n >= w for w in self.nums)
        if not isinstance(v, str):
            return False
        sv = semver.parse_version(v)
        if sv is None:
            return False
        if op == "semver_lt":
            return any(semver.compare(sv, w) < 0 for w in self.vers)
        return any(semver.compare(sv, w) >= 0 for w in self.vers)


def _compile_clause(c: Clause) -> _Clause:
    if not c.attribute:
        raise ValueError("attribute is required")
    if not c.values:
        raise ValueError("values: at least one value is required")
    nums: list[float] = []
    res: list[re.Pattern[str]] = []
    vers: list[semver.Version] = []
    unsupported = None
    if c.op == "matches":
        for i, v in enumerate(c.values):
            try:
                res.append(compile_re2(v))
            except InvalidPatternError as e:
                raise ValueError(f"values[{i}]: bad regular expression: {e}") from e
            except UnsupportedPatternError as e:
                unsupported = (
                    unsupported
                    or f"values[{i}]: pattern {gocompat.json_dumps(v)} is outside the RE2 subset this SDK runs: {e}"
                )
    elif c.op in ("lt", "lte", "gt", "gte"):
        for i, v in enumerate(c.values):
            n = gocompat.parse_float(v)
            if n is None or math.isnan(n):
                raise ValueError(f"values[{i}]: {gocompat.json_dumps(v)} is not a number")
            nums.append(n)
    elif c.op in ("semver_lt", "semver_gte"):
        for i, v in enumerate(c.values):
            sv = semver.parse_version(v)
            if sv is None:
                raise ValueError(f"values[{i}]: {gocompat.json_dumps(v)} is not a semantic version")
            vers.append(sv)
    elif c.op == "":
        raise ValueError("op is required")
    elif c.op not in OPS:
        raise ValueError(
            f"unknown op {gocompat.json_dumps(c.op)} (want in, not_in, starts_with, ends_with, contains, matches, lt, lte, gt, gte, semver_lt or semver_gte)"
        )
    return _Clause(c.attribute, c.op, c.values, frozenset(c.values), tuple(nums), tuple(res), tuple(vers), unsupported)


def attr_string(v: Any) -> str:
    """Renders an attribute for the string operators as Go does: strings as
    they are, booleans and numbers in their JSON spelling (1e21 is
    "1000000000000000000000"), lists and objects as fmt.Sprint would."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        n = attr_number(v)
        return gocompat.format_float_f(n) if n is not None else str(v)
    return gocompat.sprint(v)


def attr_number(v: Any) -> float | None:
    """Reads an attribute as a number; strings are parsed as Go's ParseFloat
    does after strings.TrimSpace."""
    if isinstance(v, bool):
        return None
    if isinstance(v, float):
        return v
    if isinstance(v, int):
        try:
            return float(v)
        except OverflowError:  # an int beyond float64, which Go cannot hold
            return math.inf if v > 0 else -math.inf
    if isinstance(v, str):
        return gocompat.parse_float(gocompat.trim_space(v))
    return None


class CompiledFlag:
    """One flag of a Snapshot, ready to evaluate: every answer it can give
    is built once, here."""

    __slots__ = (
        "by_default",
        "definition",
        "disabled",
        "general",
        "key_missing",
        "rollout",
        "rules",
        "salt",
        "split_control",
        "split_treatment",
        "targets",
        "threshold",
        "warnings",
    )

    def __init__(self, f: Flag) -> None:
        errs = _check_flag(f)
        if errs:
            raise ValidationError([FieldError(f.key or "#0", p, m) for p, m in errs])
        self.definition = f

        def answer(variant: str, reason: Reason, error: ErrorType | None = None) -> Detail:
            return Detail(f.key, f.variants.get(variant), variant, reason, error, f.version, f.tracked)

        self.salt = f.salt or f.key
        self.targets: dict[str, Detail] = {}
        for t in f.targets:
            for u in t.units:
                self.targets.setdefault(u, answer(t.variant, "targeting_match"))
        self.rules: tuple[tuple[Detail, tuple[_Clause, ...]], ...] = tuple(
            (answer(r.variant, "targeting_match"), tuple(_compile_clause(c) for c in r.when)) for r in f.rules
        )
        self.warnings = tuple(
            f"flag {f.key}: rules[{i}].when[{j}]: {c.unsupported}"
            for i, (_, cs) in enumerate(self.rules)
            for j, c in enumerate(cs)
            if c.unsupported is not None
        )
        self.rollout = f.rollout is not None
        self.threshold = millipercent(f.rollout.percent) if f.rollout is not None else 0
        self.disabled = answer(f.control, "disabled")
        self.by_default = answer(f.control, "default")
        self.key_missing = answer(f.control, "error", "targeting_key_missing")
        self.split_treatment = answer(f.treatment, "split")
        self.split_control = answer(f.control, "split")
        self.general = Detail(f.key, None, "", "error", "general", f.version, f.tracked)

    def evaluate(self, unit: str, attributes: Mapping[str, Any] | None) -> Detail:
        """The answer for a unit and its attributes, in the documented order:
        disabled, targets, rules, rollout, default."""
        if not self.definition.enabled:
            return self.disabled
        if unit and self.targets:
            t = self.targets.get(unit)
            if t is not None:
                return t
        if self.rules:
            for answer, clauses in self.rules:
                try:
                    for c in clauses:
                        v = attributes.get(c.attr) if attributes is not None else None
                        if v is None or not c.matches(v):
                            break
                    else:
                        return answer
                except _Undecidable:
                    # A pattern this SDK cannot run might have matched: say
                    # so rather than guess.
                    return self.general
        if not self.rollout:
            return self.by_default
        if not unit:
            return self.key_missing
        if bucket_of(hash_unit(self.salt, unit)) < self.threshold:
            return self.split_treatment
        return self.split_control


class Snapshot:
    """An immutable, compiled set of flags. Evaluating takes no lock and
    does no I/O; updates build a new Snapshot."""

    __slots__ = ("_flags", "revision")

    def __init__(self, revision: int, flags: Mapping[str, CompiledFlag]) -> None:
        self.revision = revision
        self._flags = dict(flags)

    @classmethod
    def of(cls, revision: int, flags: Sequence[Flag]) -> Snapshot:
        """Validates and compiles flags as a unit: any problem raises a
        ValidationError naming every bad field, as Go's flag.NewSnapshot."""
        errs = validate(flags)
        if errs:
            raise ValidationError(errs)
        return cls(revision, {f.key: CompiledFlag(f) for f in flags})

    @classmethod
    def salvage(cls, revision: int, flags: Sequence[Flag], prev: Snapshot | None) -> tuple[Snapshot, list[FieldError]]:
        """Builds a snapshot flag by flag: a flag that does not validate keeps
        its definition in prev, if any, so that one bad flag does not discard
        the whole update. Every such flag's problems are returned."""
        out: dict[str, CompiledFlag] = {}
        errors: list[FieldError] = []
        for f in flags:
            try:
                out[f.key] = CompiledFlag(f)
            except ValidationError as e:
                errors.extend(e.errors)
                old = prev.lookup(f.key) if prev is not None else None
                if old is not None:
                    out[f.key] = old
        return cls(revision, out), errors

    def __len__(self) -> int:
        return len(self._flags)

    def lookup(self, key: str) -> CompiledFlag | None:
        """The compiled flag of key, None when the snapshot has none."""
        return self._flags.get(key)

    def flag(self, key: str) -> Flag | None:
        """The definition of key."""
        c = self._flags.get(key)
        return c.definition if c is not None else None

    def flags(self) -> list[Flag]:
        """Every definition, sorted by key."""
        return [self._flags[k].definition for k in sorted(self._flags)]

    def warnings(self) -> list[str]:
        """Patterns this SDK cannot run, one line per clause."""
        return [w for c in self._flags.values() for w in c.warnings]

    def put(self, f: Flag) -> Snapshot:
        """A copy with f added or replaced, at the larger of the two
        revisions; raises ValidationError and changes nothing on a bad flag."""
        return self.update(f.version, {f.key: CompiledFlag(f)}, ())

    def delete(self, key: str, version: int) -> Snapshot:
        """A copy without key, at revision max(self, version)."""
        return self.update(version, {}, (key,))

    def update(self, revision: int, puts: Mapping[str, CompiledFlag], deletes: Iterable[str]) -> Snapshot:
        """A copy with deletes removed and puts added or replaced, at revision
        max(self, revision): a batch of changes costs one copy of the flags,
        not one per change. A key in both is put."""
        flags = dict(self._flags)
        for key in deletes:
            flags.pop(key, None)
        flags.update(puts)
        snap = Snapshot.__new__(Snapshot)
        snap.revision = max(self.revision, revision)
        snap._flags = flags  # already a copy: __init__ would copy it again
        return snap

    def evaluate(self, key: str, ctx: EvalContext) -> Detail:
        """Evaluates key for ctx. An unknown flag yields reason "error" with
        "flag_not_found" and no value: the caller serves its default."""
        c = self._flags.get(key)
        if c is None:
            return not_found(key)
        return c.evaluate(ctx.key, ctx.attributes)
