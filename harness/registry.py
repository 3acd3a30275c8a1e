"""Named registries that built-ins fill with a decorator and plugins fill through entry points.

A built-in and a third-party plugin go through the same door, so neither is a special case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Name -> item. `validate(name, item)` raises on a plugin that is incomplete (a missing attribute, a
    config field without documentation); such a plugin, or one whose import fails, is kept in `broken` with the
    reason and never breaks the others: `names()` leaves it out, `get()` on it names the reason."""

    def __init__(self, kind: str, entry_point_group: str | None = None,
                 builtins_module: str | tuple[str, ...] | None = None,
                 validate: Callable[[str, T], None] | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        # The module(s) whose import registers the built-ins (kept lazy to avoid import cycles).
        self.builtins_module = (builtins_module,) if isinstance(builtins_module, str) else builtins_module or ()
        self.validate = validate
        self._items: dict[str, T] = {}
        self.broken: dict[str, str] = {}  # plugin name -> why it cannot be used
        self._plugins_loaded = False

    def register(self, name: str, item: T | None = None):
        """`registry.register("x", obj)` or `@registry.register("x")` on a function or class."""
        if item is not None:
            self._add(name, item)
            return item

        def decorator(obj):
            self._add(name, obj)
            return obj

        return decorator

    def _add(self, name: str, item: T) -> None:
        if name in self._items and self._items[name] is not item:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item

    def _load_plugins(self) -> None:
        # Entry points are read lazily and once: importing them at start-up would slow every command.
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for module in self.builtins_module:
            import_module(module)
        if self.entry_point_group is None:
            return
        for ep in entry_points(group=self.entry_point_group):
            if ep.name in self._items:
                continue
            try:  # a third party's code: any failure is its own, reported, and must not stop the others
                item = ep.load()
                if self.validate is not None:
                    self.validate(ep.name, item)
            except Exception as error:
                self.broken[ep.name] = f"{type(error).__name__}: {error} (entry point {ep.value})"
                continue
            self._items[ep.name] = item

    def get(self, name: str) -> T:
        self._load_plugins()
        if name in self.broken:
            raise UnknownNameError(f"{self.kind} {name!r} is installed but broken: {self.broken[name]}; fix or "
                                   "uninstall the package that provides it")
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}")
        return self._items[name]

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(name, self.get(name)) for name in self.names()]


def parse_name_list(text: str, registry: Registry, *, all_word: str = "all") -> list[str]:
    """'a,b' -> ['a', 'b'], checking each against the registry before any work starts."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if names == [all_word]:
        return registry.names()
    for name in names:
        registry.get(name)
    return names


Factory = Callable[..., T]
