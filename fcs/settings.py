"""Settings declared once. A setting's default, check, help and group live in one :class:`Setting`; a
settings dataclass declares each field with :func:`setting`, and validation, the YAML loader and the
command-line flags are all derived from those declarations (:func:`settings_of`, :func:`add_flags`).

    @dataclass(frozen=True)
    class Job:
        actors: int = setting(1, "sampler actors", integer(1), group="compute")

A check returns None when a value is fine, else what was expected ("an integer >= 1"); the error names
the field: ``config field 'actors': got 0, expected an integer >= 1``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Check = Callable[[Any], "str | None"]
_MISSING = dataclasses.MISSING


@dataclass(frozen=True)
class Setting:
    """One setting: ``name``, ``default`` (None when required), ``check`` (value -> None or what was
    expected), ``help`` (one phrase; the default is appended where shown), ``group`` (a heading for
    ``--help`` and the docs), ``cli`` (extra ``argparse.add_argument`` keywords; None: no flag),
    ``normalize`` (applied before the check, e.g. a list -> a tuple)."""

    name: str
    default: Any
    help: str
    check: Check | None = None
    group: str | None = None
    cli: dict | None = field(default_factory=dict)
    normalize: Callable[[Any], Any] | None = None
    required: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def validate(self, value: Any, prefix: str = "") -> Any:
        """``value`` normalized, or ValueError naming ``<prefix><name>``."""
        value = self.normalize(value) if self.normalize else value
        expected = self.check(value) if self.check else None
        if expected:
            fail(prefix + self.name, value, expected)
        return value


def fail(name: str, value: Any, expected: str) -> None:
    """The one error of a bad setting: ``config field '<name>': got <value>, expected <expected>``."""
    raise ValueError(f"config field {name!r}: got {value!r}, expected {expected}")


def setting(default: Any = _MISSING, help: str = "", check: Check | None = None, *, group: str | None = None,
            cli: dict | None = None, normalize: Callable[[Any], Any] | None = None, factory: Callable | None = None):
    """A dataclass field declared with its :class:`Setting` (no ``default``: a required field).
    ``factory`` builds a mutable default; ``cli=None`` keeps the setting off the command line."""
    spec = Setting("", None if default is _MISSING else default, help, check, group,
                   {} if cli is None else cli, normalize, required=default is _MISSING and factory is None)
    if cli is False:
        spec = dataclasses.replace(spec, cli=None)
    meta = {"setting": spec}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(metadata=meta) if default is _MISSING else field(default=default, metadata=meta)


def declared(spec: Setting, default: Any = _MISSING):
    """A dataclass field for a :class:`Setting` declared elsewhere (one declaration shared by two
    settings classes); no ``default``: a required field."""
    spec = dataclasses.replace(spec, required=default is _MISSING)
    meta = {"setting": spec}
    return field(metadata=meta) if default is _MISSING else field(default=default, metadata=meta)


def settings_of(cls: type) -> tuple[Setting, ...]:
    """The declared settings of a dataclass, in field order, each named after its field."""
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("setting")
        if spec is not None:
            default = f.default_factory() if f.default_factory is not _MISSING else spec.default
            out.append(dataclasses.replace(spec, name=f.name, default=default))
    return tuple(out)


def validate_fields(obj: Any, prefix: str = "") -> None:
    """Check and normalize every declared field of a frozen dataclass instance in place."""
    for spec in settings_of(type(obj)):
        object.__setattr__(obj, spec.name, spec.validate(getattr(obj, spec.name), prefix))


def check_known(values: dict, allowed: Sequence[str], what: str) -> None:
    """Unknown keys fail with their names and the allowed ones."""
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {what} field(s): {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def add_flags(target: Any, specs: Sequence[Setting], *, dest_prefix: str = "", defaults: dict | None = None,
              group: str | None = None) -> None:
    """One ``--flag`` per setting with a ``cli`` (None default: unset flags leave the config alone);
    help = the setting's help and its default (from ``defaults`` when given, e.g. a task's own).
    ``target``: a parser, or a mapping of group headings to argument groups (each setting goes under
    ``group`` or its own)."""
    for spec in specs:
        if getattr(spec, "cli", None) is None:
            continue
        where = target.get(group or getattr(spec, "group", None), target[None]) if isinstance(target, dict) else target
        default = (defaults or {}).get(spec.name, spec.default)
        shown = " (required)" if getattr(spec, "required", False) else f" (default {_show(default)})"
        if default is None and "(none:" in spec.help:  # the help says what none means
            shown = ""
        keywords = dict(spec.cli)
        if keywords.get("action") is None and "choices" not in keywords:
            keywords.setdefault("metavar", spec.name.upper())
        if "action" not in keywords and "type" not in keywords and _flag_type(spec.default):
            keywords["type"] = _flag_type(spec.default)
        where.add_argument(spec.flag, dest=dest_prefix + spec.name, default=None, help=spec.help + shown, **keywords)


def given(args: argparse.Namespace, specs: Sequence[Setting], dest_prefix: str = "") -> dict:
    """The settings whose flags were given on the command line."""
    out = {}
    for spec in specs:
        value = getattr(args, dest_prefix + spec.name, None)
        if getattr(spec, "cli", None) is not None and value is not None:
            out[spec.name] = value
    return out


def _flag_type(default: Any) -> type | None:
    """int or float flags parse as such; strings stay strings; other kinds declare their own ``cli``."""
    return None if isinstance(default, bool) else type(default) if isinstance(default, (int, float)) else None


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) or "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


# -- checks: value -> None or what was expected ---------------------------------------------------------
def integer(low: int | None = None, values: Sequence[int] = ()) -> Check:
    """An int (not a bool) >= ``low`` and, when given, one of ``values``."""
    def check(value: Any) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok and (low is None or value >= low) and (not values or value in values)
        if ok:
            return None
        if values:
            return f"one of {', '.join(map(str, values))}"
        return "an integer" if low is None else f"an integer >= {low}"
    return check


def number(low: float | None = None, high: float | None = None, *, open_low: bool = False,
           open_high: bool = False) -> Check:
    """An int or float (not a bool) within the bounds (YAML 1.1 reads 5e-3 as a string: say so)."""
    def check(value: Any) -> str | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and low is not None:
            ok = value > low if open_low else value >= low
        if ok and high is not None:
            ok = value < high if open_high else value <= high
        if ok:
            return None
        if low is not None and high is not None:
            return f"a number in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        if low is not None:
            return f"a number {'>' if open_low else '>='} {low}"
        return "a number (in YAML write 5.0e-3, not 5e-3)"
    return check


def one_of(allowed: Sequence[Any], quote: bool = False) -> Check:
    shown = ", ".join(map(repr if quote else str, allowed))
    return lambda value: None if value in tuple(allowed) else f"one of {shown}"


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def text(value: Any) -> str | None:
    return None if isinstance(value, str) else "a string"


def nonempty(what: str) -> Check:
    return lambda value: None if isinstance(value, str) and value.strip() else f"a non-empty string ({what})"


def optional(check: Check, none: str = "null") -> Check:
    """``check``, or None allowed."""
    def inner(value: Any) -> str | None:
        expected = None if value is None else check(value)
        return f"{none} or {expected}" if expected else None
    return inner
