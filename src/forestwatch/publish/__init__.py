"""Publishing a run's outputs: a WMS through MapServer (:mod:`.mapfile`, :mod:`.server`),
a STAC catalog of the products (:mod:`.stac_catalog`), QGIS styles (:mod:`.qml`) and the
report's figures (:mod:`.figures`). The layers and their colours are one table
(:mod:`.layers`), so every way of looking at the outputs shows the same colours.

Importing this package imports nothing heavy; each module imports what it needs.
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    "LAYERS": "layers", "Layer": "layers", "layer": "layers", "legend_entries": "layers",
    "write_mapfile": "mapfile", "serve": "server", "stop": "server",
    "find_mapserv": "server", "write_catalog": "stac_catalog", "write_qml": "qml",
    "quicklook": "figures", "alerts_per_month": "figures", "run_history": "figures",
}


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(name)


__all__ = sorted(_PUBLIC)
