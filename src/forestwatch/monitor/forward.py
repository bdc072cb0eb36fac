"""Feed solar days to a tile's monitors, in date order, recording each in the ledger.

This is the one place where ``monitor()`` is called after the fit
(:func:`take_observation`), and where the alert ladder (:mod:`forestwatch.alerts.ladder`)
takes each observation. Days are loaded in batches sized to a memory budget
(:data:`FF_BATCH_BUDGET`), one read of the bands for every monitor of the state (the
members of a consensus: one load, several indices), and applied one at a time; after
them, a consensus state's alert layers are made anew from its members'
(:meth:`TileState.refresh_alerts`).

An asset that cannot be read (a 404, a corrupt file, a server that keeps failing) is
handled by an :class:`UnreadablePolicy`:

* ``skip``: the day is applied without it (its pixels count as not observed) and the
  asset is recorded in the day's ledger entry;
* ``fail``: :class:`~forestwatch.stac.AssetReadError` before any day of the batch is
  applied (a caller that commits nothing on error leaves the state as it was);
* ``grace`` (the daily run): the day is read again up to ``retries`` times in this run;
  if the asset still fails, the tile stops *before* that day (earlier days are kept) and
  the asset goes into the tile's unreadable-asset register; once it has failed in at
  least ``grace_runs`` runs over at least ``grace_days`` days, it is given up on and
  the day is applied as with ``skip``. So an outage is waited out and a permanently
  broken item stops nothing for longer than the grace period.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pystac
import xarray as xr

from ..access import clear_gdal_http_cache
from ..acquisitions import acquisition_key, version_label
from ..alerts.anomaly import anomaly_strength
from ..alerts.ladder import AlertLayers, AlertParams, observe
from ..grid import Tile
from ..stac import INDEX_BANDS, AssetReadError, load_reflectance, spectral_index
from ..state import AppliedDay, MonitorMember, TileState
from .build import member_configs
from .fit import collect_unreadable
from .regional import RegionalScreen
from .regressors import predict

log = logging.getLogger(__name__)

EPOCH = dt.date(1970, 1, 1)

#: bytes of float32 input per pixel-date and band allowed in one batch of days
FF_BATCH_BUDGET = 256 * 1024**2


@dataclass
class UnreadablePolicy:
    """What to do with an asset that cannot be read; see the module docstring."""

    mode: str  # "skip" | "fail" | "grace"
    #: grace: the register of assets failing so far (``TileStateStore.read_register``)
    register: dict[str, dict] = field(default_factory=dict)
    today: dt.date | None = None
    grace_days: int = 0
    grace_runs: int = 0
    retries: int = 0
    retry_delay_s: float = 0.0
    #: grace: ``item|asset`` keys given up on before (in the state a replay replaces):
    #: applied without them at once, without a new grace period
    given_up: set[str] = field(default_factory=set)

    @classmethod
    def from_stac(cls, stac_cfg: dict) -> UnreadablePolicy:
        """The workflow's policy: ``stac.on_unreadable_asset`` (skip or fail)."""
        return cls(mode=stac_cfg["on_unreadable_asset"])

    def give_up(self, records: list[dict]) -> bool:
        """Register one more failed run for each of ``records``; True when every one of
        them is past the grace period (then they are taken out of the register)."""
        assert self.today is not None
        past = []
        for rec in records:
            key = f"{rec['item']}|{rec['asset']}"
            if key in self.given_up:
                past.append(True)
                continue
            entry = self.register.setdefault(key, {
                "item": rec["item"], "asset": rec["asset"], "first_failed": str(self.today),
                "runs": 0})
            entry["runs"] += 1
            entry["reason"] = rec["reason"]
            waited = (self.today - dt.date.fromisoformat(entry["first_failed"])).days
            past.append(entry["runs"] >= self.grace_runs and waited >= self.grace_days)
        if all(past):
            for rec in records:
                entry = self.register.pop(f"{rec['item']}|{rec['asset']}", None)
                if entry is None:
                    rec["reason"] = f"{rec['reason']} (given up in an earlier run)"
                    continue
                rec["reason"] = (f"{rec['reason']} (unreadable since {entry['first_failed']}, "
                                 f"{entry['runs']} run(s): given up)")
            return True
        return False

    def resolved(self, item_ids: set[str]) -> None:
        """These items were read after all: forget their failures."""
        for key in [k for k, v in self.register.items() if v["item"] in item_ids]:
            del self.register[key]


@dataclass
class Forwarded:
    """What :func:`monitor_days` did."""

    applied: list[AppliedDay] = field(default_factory=list)
    #: assets given up on (applied as not observed): ``{"item", "asset", "reason", "day"}``
    assets_skipped: list[dict] = field(default_factory=list)
    #: grace: the day the tile stopped before, and the assets it waits for
    waiting_since: str | None = None
    waiting_for: list[dict] = field(default_factory=list)


def monitor_days(
    state: TileState,
    by_day: dict[dt.date, list[pystac.Item]],
    tile: Tile,
    cfg: dict,
    *,
    run: str,
    policy: UnreadablePolicy,
    loader: Callable[..., xr.Dataset] = load_reflectance,
    threads: int = 1,
    read_ahead: ReadAhead | None = None,
) -> Forwarded:
    """Monitor each day of ``by_day`` (all after the state's last day, in order) and record
    it in ``state.ledger`` as applied by ``run``; ``state`` is updated in place. A batch
    of days that ``read_ahead`` read already (the same days, items and bands) is taken from
    it instead of being read again."""
    days = list(by_day)
    if days and days[0] <= state.ledger.last_day:
        raise ValueError(f"tile {tile.id}: day {days[0]} is not after the last monitored day "
                         f"{state.ledger.last_day}")
    out = Forwarded()
    members = _paired_members(state, cfg, tile.id)
    indices = list(dict.fromkeys(m.index for m, _ in members))
    bands = _bands_of(indices)
    batch = _batch_length(tile, bands, indices)
    stac_cfg = _reading_config(cfg)

    def load(day_list):
        """One read of every member's bands: ``{index name: (days, y, x) array}``."""
        cube = None if read_ahead is None else read_ahead.take(
            _batch_key(day_list, by_day, bands))
        if cube is None:
            cube = loader([it for d in day_list for it in by_day[d]], tile.geobox, bands,
                          stac_cfg, threads=threads)
        found: list[dict] = []
        collect_unreadable(found, cube)
        return {i: spectral_index(cube, i).values for i in indices}, found

    params = AlertParams.from_config(cfg.get("alerts"))
    for start in range(0, len(days), batch):
        chunk = days[start : start + batch]
        index, unreadable = load(chunk)
        if unreadable and policy.mode == "fail":  # before any day of the batch is applied
            raise AssetReadError(
                f"tile {tile.id}: unreadable asset(s) "
                + "; ".join(f"{r['asset']} of {r['item']}: {r['reason']}" for r in unreadable)
                + ". With stac.on_unreadable_asset: skip the day is applied without them "
                "and they are recorded.")
        for i, d in enumerate(chunk):
            day_ids = {it.id for it in by_day[d]}
            failed = [dict(r) for r in unreadable if r["item"] in day_ids]
            arrays = {name: values[i] for name, values in index.items()}
            if failed and policy.mode == "grace":
                arrays, failed = _read_again(load, d, arrays, failed, policy, tile.id)
                if failed and not policy.give_up(failed):
                    out.waiting_since, out.waiting_for = str(d), failed
                    log.warning("tile %s: stopping before %s, waiting for unreadable asset(s) "
                                "%s (operational.unreadable_assets grace period)", tile.id, d,
                                ", ".join(f"{r['asset']} of {r['item']}" for r in failed))
                    _finish(state, tile)
                    return out
            if policy.mode == "grace":
                policy.resolved(day_ids - {r["item"] for r in failed})
            arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
            seen = np.zeros(tile.shape, dtype=bool)
            for member, screen in members:
                array = arrays[member.index]
                taken = (member.monitor.mask == 1) & np.isfinite(array)
                if taken.any():
                    take_observation(member.monitor, member.alerts, array, d, params, screen)
                seen |= taken
            valid = int(seen.sum())
            entry = AppliedDay(
                day=str(d), items=[it.id for it in by_day[d]],
                acquisitions=[acquisition_key(it) for it in by_day[d]], valid_pixels=valid,
                unreadable=failed, run=run, versions=[version_label(it) for it in by_day[d]])
            state.ledger.record_day(entry)
            out.applied.append(entry)
            out.assets_skipped += [dict(r, day=str(d)) for r in failed]
            for r in failed:
                log.warning("tile %s, %s: applied without unreadable asset %s of %s: %s",
                            tile.id, d, r["asset"], r["item"], r["reason"])
        log.info("tile %s: monitored %d day(s) up to %s", tile.id, len(chunk), chunk[-1])
    _finish(state, tile)
    return out


def _bands_of(indices: list[str]) -> list[str]:
    return list(dict.fromkeys(b for i in indices for b in INDEX_BANDS[i]))


def _batch_length(tile: Tile, bands: list[str], indices: list[str]) -> int:
    """Days per read: :data:`FF_BATCH_BUDGET` of float32 bands and indices."""
    pixels = tile.shape[0] * tile.shape[1]
    return max(1, FF_BATCH_BUDGET // (pixels * (len(bands) + len(indices)) * 4))


def _reading_config(cfg: dict) -> dict:
    """The ``stac`` config of a day's read: every read skips what it cannot read and
    reports it; the :class:`UnreadablePolicy` decides what then."""
    return {**cfg["stac"], "on_unreadable_asset": "skip"}


def _batch_key(day_list: list[dt.date], by_day: dict[dt.date, list[pystac.Item]],
               bands: list[str]) -> tuple:
    """What a read of ``day_list`` is: its days, their items, the bands."""
    return (tuple((d, tuple(it.id for it in by_day[d])) for d in day_list), tuple(bands))


class ReadAhead:
    """The first batch of days :func:`monitor_days` will read, read in a thread before it
    is asked for.

    :func:`forestwatch.monitor.advance_tile` starts one before it loads the tile's state:
    the day's files are fetched, decoded and sampled (GDAL and the sampling kernels
    release the GIL) while the state file is decompressed and verified (netCDF4 and
    hashlib release it too), so a one-acquisition daily update waits for the longer of
    the two instead of their sum (BENCHMARKS.md, "The daily update: its read beside the
    state's load").
    It is planned from the state's ledger read from the file's attributes alone (not
    verified), so :func:`monitor_days` takes it only for exactly the same days, items and
    bands: a state found corrupt, a replay or a changed config read as without it.
    :meth:`close` waits for the read and drops what was not taken.
    """

    def __init__(self, by_day: dict[dt.date, list[pystac.Item]], tile: Tile, cfg: dict, *,
                 loader: Callable[..., xr.Dataset], threads: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        indices = list(dict.fromkeys(c["index"] for c in member_configs(cfg)))
        bands = _bands_of(indices)
        days = list(by_day)[:_batch_length(tile, bands, indices)]
        self.key = _batch_key(days, by_day, bands)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="forestwatch-read-ahead")
        self._read = self._pool.submit(
            loader, [it for d in days for it in by_day[d]], tile.geobox, bands,
            _reading_config(cfg), threads=threads)

    def take(self, key: tuple) -> xr.Dataset | None:
        """The read, if it is the read of ``key`` (:func:`_batch_key`) and was not taken
        yet; its error, if it failed."""
        if self._read is None or key != self.key:
            return None
        read, self._read = self._read, None
        return read.result()

    def close(self) -> None:
        self._read = None
        self._pool.shutdown(wait=True)


def take_observation(monitor, alerts: AlertLayers, array: np.ndarray, day: dt.date,
                     params: AlertParams, screen: RegionalScreen | None = None) -> None:
    """Give one day's index ``array`` (float, NaN = not observed, the monitor's shape) to
    an nrt ``monitor`` and take it into ``alerts``; both are updated in place. The
    workflow (:func:`monitor_days`, for each monitor of a state) and the strategy run (on sample pixels, or on
    whole tiles with a regional screen) both call this, so that a candidate is scored
    on what the workflow would compute.

    The residuals and the pixels the monitor takes are those of nrt's own ``monitor()``
    (its prediction, its mask, its screening of extreme outliers): nrt keeps neither, so
    they are computed here, and nrt's ``monitor()`` is handed the same prediction instead
    of computing it a second time (a third of the cost of a day on 1000 x 1000 px).

    With a ``screen`` (:mod:`forestwatch.monitor.regional`), regional anomalies are
    withheld from nrt (NaN in the array it gets) and still taken by the ladder.
    """
    date = dt.datetime(day.year, day.month, day.day)
    predicted = predict(monitor, date)  # nrt's own predict(date), without its pandas calls
    residuals = array - predicted
    observed = (monitor.mask == 1) & np.isfinite(array)
    observed = monitor._detect_extreme_outliers(residuals=residuals, is_valid=observed)
    given = array
    strength = None
    if screen is not None:
        # the screened classes' tests (IQR, CCDC) read only the fitted bands, which the
        # observation does not change: this strength is also the ladder's
        strength = anomaly_strength(monitor, residuals, process_fraction=params.process_fraction)
        anomalous = observed & (np.nan_to_num(strength) >= 1.0)
        held = screen.regional(observed=observed, anomalous=anomalous, alerts=alerts,
                               today=(day - EPOCH).days, strata=screen.strata_of(monitor))
        if held.any():
            given = np.where(held, np.nan, array).astype(array.dtype)
    monitor.predict = lambda _date: predicted  # for this one call; the method is restored
    try:
        monitor.monitor(array=given, date=date)
    finally:
        del monitor.predict
    if strength is None:
        strength = anomaly_strength(monitor, residuals,
                                    process_fraction=params.process_fraction)
    observe(alerts, observed=observed, strength=strength, residuals=residuals,
            confirmed=observed & (monitor.mask == 3), day=day, params=params)


def _read_again(load, day: dt.date, arrays: dict[str, np.ndarray], failed: list[dict],
                policy: UnreadablePolicy, tile_id: str
                ) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Read one day again up to ``policy.retries`` times, with back-off; returns the
    day's index arrays (by index name) and what still failed."""
    delay = policy.retry_delay_s
    for attempt in range(1, policy.retries + 1):
        log.warning("tile %s, %s: unreadable asset(s) %s; reading again in %.1f s "
                    "(attempt %d/%d)", tile_id, day,
                    ", ".join(f"{r['asset']} of {r['item']}" for r in failed), delay, attempt,
                    policy.retries)
        time.sleep(delay)
        clear_gdal_http_cache()  # else GDAL answers with the failure it remembers
        index, unreadable = load([day])
        arrays = {name: values[0] for name, values in index.items()}
        failed = [dict(r) for r in unreadable]
        if not failed:
            break
        delay *= 2
    return arrays, failed


def _paired_members(state: TileState, cfg: dict, tile_id: str
                    ) -> list[tuple[MonitorMember, RegionalScreen | None]]:
    """The state's monitors, each with its regional screen from the config (the screen is
    not part of the fit). Raises when the state's monitors are not the config's: the fit
    rule refits when they change, so this is a state fitted under another config."""
    configs = member_configs(cfg)
    have = [(m.index, m.monitor_config["class"]) for m in state.members]
    want = [(c["index"], c["monitor"].get("class", have[0][1])) for c in configs]
    if have != want:
        raise RuntimeError(
            f"tile {tile_id}: the state watches {have} (index, monitor class) but the config "
            f"asks for {want} (index + monitor, then consensus.members). Run `snakemake` to "
            "refit the tiles with the new configuration before the daily run, or restore the "
            "configuration the states were fitted with.")
    return [(member, RegionalScreen.from_config({"grid": cfg["grid"], "monitor": {
        "class": member.monitor_config["class"],
        "regional_screening": conf["monitor"]["regional_screening"]}}))
        for member, conf in zip(state.members, configs, strict=True)]


def _finish(state: TileState, tile: Tile) -> None:
    for member in state.members:
        if member.monitor.detection_date is None:
            member.monitor.detection_date = np.zeros(tile.shape, dtype=np.uint16)
    state.refresh_alerts()


__all__ = ["monitor_days", "take_observation", "UnreadablePolicy", "Forwarded", "ReadAhead",
           "FF_BATCH_BUDGET"]
