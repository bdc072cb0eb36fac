"""The candidates of a strategy run, from the ``strategy`` config section.

A :class:`Candidate` is one index and one nrt monitor (class, constructor parameters,
fit arguments): what the workflow's ``index`` and ``monitor`` keys say. A
:class:`Consensus` combines candidates: an alert where at least ``k`` of its members
agree. Candidates come from an explicit list, from grids (the product of their lists),
and, unless ``include_configured`` is false, the workflow's own configuration.
"""

from __future__ import annotations

import copy
import functools
import itertools
from dataclasses import dataclass

from ..config import MONITOR_DEFAULTS, ConfigError, complete_monitor_with_screen, load_schema


@dataclass(frozen=True)
class Candidate:
    """One index and one monitor configuration."""

    name: str
    #: spectral index: NDVI, NBR or NDMI
    index: str
    #: the ``monitor`` section of this candidate: ``{"class", "params", "fit",
    #: "regional_screening"}``
    monitor: dict

    def config(self, cfg: dict) -> dict:
        """The workflow config ``cfg`` with this candidate's index and monitor."""
        out = copy.deepcopy(cfg)
        out["index"] = self.index
        out["monitor"] = {**out["monitor"], **copy.deepcopy(self.monitor)}
        return out

    @property
    def screened(self) -> bool:
        """Whether the regional screen applies (it needs whole tiles to evaluate)."""
        from ..monitor.regional import SCREENED_CLASSES

        rs = self.monitor.get("regional_screening") or {}
        return rs.get("window_m") is not None and self.monitor["class"] in SCREENED_CLASSES

    def config_block(self) -> dict:
        """The keys to paste into a config file to run the workflow with this candidate."""
        return {"index": self.index, "monitor": copy.deepcopy(self.monitor)}


@dataclass(frozen=True)
class Consensus:
    """An alert where at least ``k`` of ``members`` (candidate names) have one."""

    name: str
    members: tuple[str, ...]
    k: int


def describe(index: str, monitor: dict) -> str:
    """A short readable name: the index, the class, and the parameters and fit arguments
    that differ from the class's measured defaults (``NBR IQR sensitivity=2.5``)."""
    default = MONITOR_DEFAULTS[monitor["class"]]
    parts = [index, monitor["class"]]
    parts += [f"{k}={v}" for k, v in sorted(monitor["params"].items())
              if default["params"].get(k, object()) != v]
    parts += [f"{k}={v}" for k, v in sorted(monitor["fit"].items())
              if default["fit"].get(k, object()) != v]
    rs = monitor.get("regional_screening")
    if rs is not None and rs != screen_defaults():
        parts.append("screen=off" if rs["window_m"] is None else
                     f"screen={rs['window_m']:g}m/{rs['max_share']:g}/{rs['hold_days']}d"
                     + ("/seasonal" if rs.get("by_seasonality") else "/all-forest"))
    return " ".join(parts)


@functools.cache
def screen_defaults() -> dict:
    """The schema's defaults of ``monitor.regional_screening`` (a name shows what differs)."""
    props = load_schema()["properties"]["monitor"]["properties"]["regional_screening"]
    return {k: v["default"] for k, v in props["properties"].items()}


def expand_candidates(cfg: dict) -> tuple[list[Candidate], list[Consensus]]:
    """The candidates and consensus combinations of the (validated) config ``cfg``.

    Raises :class:`ConfigError` for a bad monitor configuration (naming the candidate),
    duplicate names, a consensus member that is no candidate or a ``k`` larger than the
    members, and for fewer than one candidate.
    """
    st = cfg["strategy"]
    out: list[Candidate] = []
    if st["include_configured"]:
        mon = {k: copy.deepcopy(cfg["monitor"][k])
               for k in ("class", "params", "fit", "regional_screening")}
        out.append(Candidate(f"{describe(cfg['index'], mon)} (configured)", cfg["index"], mon))
    for i, entry in enumerate(st["candidates"]):
        where = f"strategy.candidates[{i}] ({entry['name']!r})"
        m = entry.get("monitor", {})
        cls = m.get("class", cfg["monitor"]["class"])
        mon = complete_monitor_with_screen(
            cls, m.get("params"), m.get("fit"), m.get("regional_screening", "inherit"),
            base_screen=cfg["monitor"]["regional_screening"], where=where)
        out.append(Candidate(entry["name"], entry.get("index", cfg["index"]), mon))
    for g, grid in enumerate(st["grid"]):
        where = f"strategy.grid[{g}]"
        names = sorted(grid.get("params", {}))
        for index, cls, fit, screen in itertools.product(
                grid.get("index", [cfg["index"]]), grid.get("class", [cfg["monitor"]["class"]]),
                grid.get("fit", [None]), grid.get("regional_screening", ["inherit"])):
            for values in itertools.product(*(grid["params"][n] for n in names)):
                params = {**MONITOR_DEFAULTS[cls]["params"],
                          **dict(zip(names, values, strict=True))}
                mon = complete_monitor_with_screen(
                    cls, params, fit, screen,
                    base_screen=cfg["monitor"]["regional_screening"], where=where)
                out.append(Candidate(describe(index, mon), index, mon))
    seen: dict[tuple, str] = {}
    unique: list[Candidate] = []
    for cand in out:  # a grid may repeat the configured candidate: keep the first
        key = (cand.index, repr(sorted(cand.monitor["params"].items())),
               cand.monitor["class"], repr(sorted(cand.monitor["fit"].items())),
               repr(sorted(cand.monitor["regional_screening"].items())))
        if key in seen:
            continue
        seen[key] = cand.name
        unique.append(cand)
    names = [c.name for c in unique]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"strategy: candidate names must be unique; repeated: {dupes}.")
    if not unique:
        raise ConfigError("strategy: no candidate. Add strategy.candidates or strategy.grid, "
                          "or set strategy.include_configured: true.")
    consensus = []
    for i, entry in enumerate(st["consensus"]):
        where = f"strategy.consensus[{i}] ({entry['name']!r})"
        unknown = [m for m in entry["members"] if m not in names]
        if unknown:
            raise ConfigError(f"{where}: members {unknown} are not candidates; candidates: "
                              f"{names}.")
        k = entry.get("k", len(entry["members"]))
        if k > len(entry["members"]):
            raise ConfigError(f"{where}: k = {k} is more than its {len(entry['members'])} "
                              "members.")
        if entry["name"] in names:
            raise ConfigError(f"{where}: the name is already a candidate's.")
        consensus.append(Consensus(entry["name"], tuple(entry["members"]), k))
    return unique, consensus


__all__ = ["Candidate", "Consensus", "expand_candidates", "describe"]
