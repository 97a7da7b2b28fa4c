"""The one name -> plug-in registry, and discovery of plug-ins that are files or folders of a package.

Standard library only: this package is copied to devices (see ``edgekd.runners.ssh``).
``edgekd.registry`` re-exports it with ``ConfigError`` as the error, so a misspelled name in a
config exits 2 with a did-you-mean suggestion.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil
from typing import Callable, Generic, Iterator, TypeVar, overload

T = TypeVar("T")


class Registry(Generic[T]):
    """Names to plug-ins. A name is registered once; ``plugins`` (if given) is called before the
    first lookup to import the modules that register themselves (see ``discover``)."""

    def __init__(self, kind: str, *, error: type[Exception] = ValueError, plugins: Callable[[], object] | None = None) -> None:
        self.kind, self.error = kind, error
        self._entries: dict[str, T] = {}
        self._plugins = plugins

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name, obj=None):
        """``@REGISTRY.register("name")`` on a class or function, or ``REGISTRY.register("name", obj)``."""

        def add(value: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice ({self._entries[name]!r} and {value!r})")
            self._entries[name] = value
            return value

        return add if obj is None else add(obj)

    def _load(self) -> dict[str, T]:
        plugins, self._plugins = self._plugins, None  # cleared first: plug-ins register while it runs
        if plugins is not None:
            plugins()
        return self._entries

    def get(self, name: str, *, key: str | None = None) -> T:
        """Look ``name`` up; ``key`` is the config key path named in the error."""
        entries = self._load()
        if name in entries:
            return entries[name]
        where = f"{key}: " if key else ""
        close = difflib.get_close_matches(str(name), list(entries), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        known = ", ".join(sorted(entries)) or "none"
        raise self.error(f"{where}unknown {self.kind} {name!r}{hint}; expected one of: {known}")

    def names(self) -> list[str]:
        return sorted(self._load())

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._load().items())

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._load())


def discover(package_name: str, submodule: str | None = None) -> list[str]:
    """Import every module and subpackage of ``package_name`` (or, with ``submodule``, that module of
    every subpackage that has one), so a plug-in registers itself by being there. Returns what it imported."""
    package = importlib.import_module(package_name)
    imported = []
    for info in pkgutil.iter_modules(package.__path__):
        name = f"{package_name}.{info.name}"
        if submodule is not None:
            if not info.ispkg or importlib.util.find_spec(f"{name}.{submodule}") is None:
                continue
            name = f"{name}.{submodule}"
        importlib.import_module(name)
        imported.append(name)
    return imported
