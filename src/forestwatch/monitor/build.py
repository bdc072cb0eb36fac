"""Building an nrt monitor from config: the class, its parameters, the fit's arguments, the
bands it needs, and warming numba's cache of nrt's kernels."""

from __future__ import annotations

import datetime as dt
import os
import time

import numpy as np
import xarray as xr

from ..config import monitor_class
from ..stac import INDEX_BANDS


def member_configs(cfg: dict) -> list[dict]:
    """One config per monitor of a tile: ``cfg`` itself (``index`` + ``monitor``), then one
    per ``consensus.members`` entry, ``cfg`` with that member's index and monitor keys. The
    functions below take any of them. A config slice without ``consensus`` has one."""
    out = [cfg]
    for member in (cfg.get("consensus") or {}).get("members", []):
        out.append({**cfg, "index": member["index"],
                    "monitor": {**cfg.get("monitor", {}), **member["monitor"]}})
    return out


def consensus_k(cfg: dict) -> int:
    """How many members must agree (``consensus.k``, filled by the validation); 1 for one."""
    return int((cfg.get("consensus") or {}).get("k") or 1)


def screen_outliers(cfg: dict) -> str | None:
    """The fit's outlier screening: ``monitor.fit.screen_outliers``, else nrt's default."""
    mon = cfg["monitor"]
    if "screen_outliers" in mon["fit"]:
        return mon["fit"]["screen_outliers"]
    return {"EWMA": "Shewhart", "CCDC": "CCDC_RIRLS"}.get(mon["class"])


def needed_bands(cfg: dict) -> list[str]:
    """Logical bands the fit needs: the index's, plus green and swir16 for CCDC screening."""
    bands = list(INDEX_BANDS[cfg["index"]])
    if screen_outliers(cfg) == "CCDC_RIRLS":
        bands += [b for b in ("green", "swir16") if b not in bands]
    return bands


def build_monitor(mon_cfg: dict, mask: np.ndarray):
    """A fresh nrt monitor of the configured class for ``mask`` (uint8, 1 = monitor)."""
    cls = monitor_class(mon_cfg["class"])
    params = {k: (float(v) if isinstance(v, float) else v) for k, v in mon_cfg["params"].items()}
    return cls(mask=np.ascontiguousarray(mask, dtype=np.uint8), **params)


def fit_kwargs(cfg: dict, cube: xr.Dataset, threads: int) -> dict:
    """Keyword arguments of the monitor's ``fit()``: config, threads, CCDC's extra bands."""
    kwargs = dict(cfg["monitor"]["fit"])
    kwargs["n_threads"] = max(1, min(threads, os.cpu_count() or 1))
    if screen_outliers(cfg) == "CCDC_RIRLS":
        kwargs["green"] = cube["green"]
        kwargs["swir"] = cube["swir16"]
    if kwargs.get("method") == "ROC":
        kwargs.pop("n_threads")  # ROC is serial and refuses the argument in some versions
    return kwargs


def fit_monitor(monitor, cfg: dict, index: xr.DataArray, cube: xr.Dataset, threads: int) -> None:
    """Fit ``monitor`` (from :func:`build_monitor`) on ``index`` (time, y, x), in place, with
    ``cfg``'s fit (:func:`fit_kwargs`; ``cube`` holds CCDC's extra bands). IQR through
    :func:`forestwatch.monitor._iqr_fit.fit_iqr` (nrt's fit, its quantiles for the
    monitored pixels on ``threads`` threads: the same arrays), the others by nrt itself."""
    kwargs = fit_kwargs(cfg, cube, threads)
    if cfg["monitor"]["class"] == "IQR":
        from ._iqr_fit import fit_iqr  # numba: not imported by jobs that fit nothing

        fit_iqr(monitor, index, **kwargs)
    else:
        monitor.fit(index, **kwargs)


def warm_numba_cache(cfg: dict, threads: int = 1) -> float:
    """Warm the kernels of every member's monitor (:func:`_warm_one`), the asset
    reader's sampling kernels (:mod:`forestwatch._sampling`), the cube's
    (:mod:`forestwatch._cube`) and the regional screen's (:mod:`._window`); seconds
    taken."""
    from .._cube import warm as warm_cube
    from .._sampling import warm as warm_reader
    from ._window import warm as warm_screen

    t0 = time.perf_counter()
    warm_cube(len(needed_bands(cfg)))
    warm_screen()
    return (time.perf_counter() - t0 + warm_reader()
            + sum(_warm_one(member, threads) for member in member_configs(cfg)))


def _warm_one(cfg: dict, threads: int = 1) -> float:
    """Compile (or load from numba's on-disk cache) the nrt kernels the configured monitor
    uses, by fitting and monitoring a tiny synthetic series (8 x 8 px, 146 days). Returns
    the seconds it took (~30 s cold, ~1 s warm).

    nrt's kernels are ``numba.jit(cache=True)``: compiled on first use in a new
    environment, then loaded from ``NUMBA_CACHE_DIR`` (default: next to nrt's sources).
    Warming a cache on a shared filesystem once, before submitting, spares every cluster
    job that first compilation (and many jobs from compiling the same kernels at once).
    """
    import pandas as pd

    t0 = time.perf_counter()
    days = pd.date_range("2020-01-01", periods=146, freq="5D")
    rng = np.random.default_rng(0)
    season = 0.6 + 0.2 * np.sin(2 * np.pi * days.dayofyear.values / 365.25)
    values = (season[:, None, None] + rng.normal(0, 0.02, (len(days), 8, 8))).astype(np.float32)
    coords = {"time": days.values, "y": np.arange(8.0), "x": np.arange(8.0)}
    index = xr.DataArray(values, dims=("time", "y", "x"), coords=coords)
    # CCDC's outlier screening also reads green and swir16
    cube = xr.Dataset({"green": index * 0.1, "swir16": index * 0.2})
    monitor = build_monitor(cfg["monitor"], np.ones((8, 8), dtype=np.uint8))
    fit_monitor(monitor, cfg, index, cube, threads)
    monitor.monitor(array=np.ascontiguousarray(values[-1]), date=dt.datetime(2022, 1, 1))
    from .regional import seasonal_amplitude

    seasonal_amplitude(monitor)  # the regional screen's seasonality strata
    return time.perf_counter() - t0


__all__ = ["build_monitor", "needed_bands", "fit_kwargs", "fit_monitor", "screen_outliers", "warm_numba_cache",
           "member_configs", "consensus_k"]
