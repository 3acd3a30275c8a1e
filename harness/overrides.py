"""Settings from the command line: `--set VARIANT.FIELD=VALUE` read by each field's declared type, and a variant's
paper schedule in place of the shared one (`--protocol paper`)."""

from __future__ import annotations

import dataclasses
import types
import typing


def apply_overrides(config, overrides: dict[str, str]):
    """`{"lr": "1e-5"}` -> a new config; an unknown field lists the known ones. Values are read by the
    field's declared type (`int | None` takes 'none' or an integer, a tuple takes '0.9,0.99'), resolved with
    `typing.get_type_hints`, so a plugin's config reads alike with or without postponed annotations."""
    known = {f.name: f for f in dataclasses.fields(config)}
    types_of = typing.get_type_hints(type(config))
    values = {}
    for name, raw in overrides.items():
        if name not in known:
            raise ValueError(f"{type(config).__name__} has no field {name!r}; its fields: {', '.join(known)}")
        values[name] = _coerce(raw, types_of[name], name)
    return dataclasses.replace(config, **values)


def paper_schedule(config):
    """`config` with its variant's paper update schedule (`PAPER_SCHEDULE`) in place of the shared one."""
    return dataclasses.replace(config, **type(config).PAPER_SCHEDULE)


def _coerce(raw, declared, name: str):
    """`raw` (a command-line string) as a value of type `declared`; anything not a string passes through."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    options = typing.get_args(declared) if typing.get_origin(declared) in (typing.Union, types.UnionType) else ()
    if options:
        if text.lower() in ("none", "null") and type(None) in options:
            return None
        declared = next(option for option in options if option is not type(None))
    shown = getattr(declared, "__name__", str(declared))
    try:
        if declared is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if declared is int:
            number = float(text)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if declared is float:
            return float(text)
        if declared is tuple or typing.get_origin(declared) is tuple:
            return tuple(float(part) for part in text.strip("()").split(","))
    except ValueError:
        raise ValueError(f"cannot read {raw!r} as {shown} for {name}") from None
    return text
