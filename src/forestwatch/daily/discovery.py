"""What a daily run's discovery found: the type of ``runs/<run>/discovery.json``.

Written by :func:`forestwatch.daily.discover.write_discovery`; read by the run's
``update_tile`` jobs and by ``rules/common.smk`` at every parse (which tiles a daily run
updates), so this module imports nothing heavier than the standard library.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Discovery:
    """What a daily run's discovery found (``runs/<run>/discovery.json``)."""

    run: str
    today: str
    window: list[str]
    items_found: int
    #: older versions left out: ``{"item", "superseded_by", "reason"}``
    duplicates_dropped: list[dict] = field(default_factory=list)
    #: tile id -> ``{"items": [ids of its acquisitions in the window], "unknown": n,
    #: "state": "current" | "missing" | "unreadable"}``, for the tiles with work only
    tiles: dict[str, dict] = field(default_factory=dict)
    #: tiles whose state has seen everything found
    up_to_date: list[str] = field(default_factory=list)
    #: the second search: ``[acquired from, acquired to, published since]``, or ``None``
    published_window: list[str] | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def read(cls, path: str | Path) -> Discovery:
        return cls(**json.loads(Path(path).read_text()))


__all__ = ["Discovery"]
