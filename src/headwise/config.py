"""The one config-and-preset mechanism: every method's settings are a `Settings` dataclass.

A config class declares its fields with defaults, checks them in `validate` (one place), and may
carry `PRESETS`, named sets of field values kept as data next to the fields (`faithful`, `paper`).
`resolve` applies a preset and then the options a caller gave explicitly, so explicit options win:

    cfg = CLConfig.resolve("faithful", {"lr": 1e-3})

`to_dict` is what a run directory records; `from_dict` reads a record back, filling fields that an
older release did not record with their current defaults, so adding a field with a default never
breaks the resume of an older run directory (see `headwise.runs.Run`). A class whose recorded shape
changed says how in `upgrade`, the one place that reads an older record's names.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

from headwise.errors import HeadwiseError

S = TypeVar("S", bound="Settings")


class Settings:
    """Mixin for config dataclasses: validation on construction, records, presets."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse values that cannot work, with one sentence (HeadwiseError). Subclasses check their fields."""

    # ---- records ------------------------------------------------------------------------------------

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """The plain record of these settings (tuples as lists, nested settings as dicts), as runs store it."""
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def upgrade(cls, record: dict[str, Any]) -> dict[str, Any]:
        """A record written by an older release, in the current field names (a copy). The default changes
        nothing; a class whose recorded shape changed overrides this."""
        return dict(record)

    @classmethod
    def from_dict(cls: type[S], record: dict[str, Any]) -> S:
        """Read a record back: fields it lacks take their defaults; an unknown key is refused."""
        if not isinstance(record, dict):
            raise HeadwiseError(f"{cls.__name__} settings must be a mapping, got {type(record).__name__}.")
        record = cls.upgrade(record)
        cls._refuse_unknown(record)
        return cls(**{k: _restore(cls, k, v) for k, v in record.items()})

    @classmethod
    def _refuse_unknown(cls, values: dict[str, Any]) -> None:
        known = cls.field_names()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise HeadwiseError(f"unknown {cls.__name__} settings {unknown}; known: {', '.join(known)}.")

    # ---- presets ------------------------------------------------------------------------------------

    @classmethod
    def preset(cls, name: str) -> dict[str, Any]:
        """The field values of a preset; an unknown name is refused with the list of known ones."""
        if name not in cls.PRESETS:
            known = ", ".join(cls.PRESETS) or "none"
            raise HeadwiseError(f"unknown preset {name!r} for {cls.__name__}; presets: {known}.")
        return dict(cls.PRESETS[name])

    @classmethod
    def resolve(cls: type[S], preset: str | None = None, explicit: dict[str, Any] | None = None,
                base: dict[str, Any] | None = None) -> S:
        """Settings from `base` (e.g. a command's option values; the field defaults where it is silent), then the
        preset's values, then `explicit` (what the user set on purpose), each overriding the one before."""
        values = dict(base or {})
        if preset is not None:
            values.update(cls.preset(preset))
        values.update(explicit or {})
        cls._refuse_unknown(values)
        return cls(**values)


def presets_of(*classes: type[Settings]) -> list[str]:
    """Every preset name that at least one of these config classes defines, in order of first appearance."""
    names: list[str] = []
    for cls in classes:
        names += [n for n in cls.PRESETS if n not in names]
    return names


def check_preset(name: str | None, *classes: type[Settings]) -> str | None:
    """Refuse a preset that none of a command's config classes knows, naming the ones they do."""
    if name is not None and not any(name in cls.PRESETS for cls in classes):
        known = presets_of(*classes)
        raise HeadwiseError(f"unknown preset {name!r}; " + (f"choose one of {', '.join(known)}." if known else
                                                               "this command has no presets."))
    return name


def apply_preset(cls: type[S], preset: str | None, explicit: dict[str, Any], base: dict[str, Any]) -> S:
    """`cls.resolve` for a command with several config classes: a preset only applies to the classes that have it."""
    return cls.resolve(preset if preset in cls.PRESETS else None, explicit, base)


def plain(value: Any) -> Any:
    """A value as a record holds it: settings as dicts, tuples as lists, containers recursed."""
    if isinstance(value, Settings):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _restore(cls: type, name: str, value: Any) -> Any:
    """A recorded value in its field's Python form: lists back to tuples where the default is a tuple, and a
    record of nested settings back to their class."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        default = None
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(default, Settings) and isinstance(value, dict):
        return type(default).from_dict(value)
    return value
