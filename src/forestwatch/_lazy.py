"""Lazy public names for subpackages: ``__getattr__ = lazy_attributes(__name__, PUBLIC)``.

The Snakefile imports parts of several subpackages at every parse (every dry-run, every
cluster job); their heavy modules (nrt and numba, geopandas, onnxruntime) are imported
only when one of their names is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_attributes(package: str, public: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package`` that imports ``public[name]`` (a module of
    the package, relative: ``"._rule"`` or ``"ladder"``) when ``name`` is first asked for."""

    def __getattr__(name: str):
        try:
            module = public[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        relative = module if module.startswith(".") else f".{module}"
        return getattr(importlib.import_module(relative, package), name)

    return __getattr__


__all__ = ["lazy_attributes"]
