"""The strategy run (rule ``strategy``): every candidate on the same samples, ranked.

1. the test area's tiles (``strategy.tiles`` / ``strategy.bbox``, else every tile);
2. the samples and their pixels: reference samples, or a stratified sample of the
   synthetic truth (:mod:`.samples`), plus the forest pixels of a quicklook window;
3. the bands every candidate needs, read once per tile for those pixels only, or for the
   whole tile when a candidate has a regional screen (:mod:`.series`; the screen needs
   each pixel's neighbourhood, so such candidates are simulated on whole tiles and
   scored at the samples; keep the test area to a few tiles);
4. each candidate fitted and monitored on them (:mod:`.simulate`), in parallel over
   candidates (forked workers share the series), consensus candidates combined from
   their members;
5. scores and ranking (:mod:`.scores`), written by :mod:`.outputs`.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..alerts.ladder import AlertParams
from ..config import ConfigError
from ..grid import Tile, make_tiles
from ..stac import search_items
from .candidates import Candidate, Consensus, expand_candidates
from .samples import ScoringSamples, quicklook_pixels, truth_samples
from .scores import Scores, rank, sample_answers, score
from .series import PixelSeries, TilePixels, load_pixel_series, strategy_bands, whole_tile
from .simulate import Outcome, combine, simulate

log = logging.getLogger(__name__)


@dataclass
class StrategyResult:
    """What a strategy run found: candidates ranked best first, and the quicklooks'
    per-pixel outcomes (candidate name -> Outcome over ``window_pixels``)."""

    ranked: list[Scores]
    candidates: list[Candidate]
    consensus: list[Consensus]
    samples: ScoringSamples
    window_tile: Tile | None
    window: tuple[slice, slice] | None
    window_pixels: TilePixels | None
    quicklooks: dict[str, Outcome]
    seconds: dict[str, float]
    reads: int


def test_area(cfg: dict) -> list[Tile]:
    """The strategy's tiles: ``strategy.tiles``, else the tiles touching
    ``strategy.bbox``, else every tile. Unknown tile ids are a :class:`ConfigError`."""
    st = cfg["strategy"]
    tiles = make_tiles(cfg)
    if st["tiles"]:
        by_id = {t.id: t for t in tiles}
        unknown = [t for t in st["tiles"] if t not in by_id]
        if unknown:
            raise ConfigError(f"strategy.tiles: {unknown} are not tiles of this grid; tiles: "
                              f"{sorted(by_id)[:10]}{' ...' if len(by_id) > 10 else ''}.")
        return [by_id[t] for t in st["tiles"]]
    if st["bbox"]:
        x0, y0, x1, y1 = st["bbox"]
        chosen = [t for t in tiles if not (t.bbox_lonlat()[2] < x0 or t.bbox_lonlat()[0] > x1
                                           or t.bbox_lonlat()[3] < y0
                                           or t.bbox_lonlat()[1] > y1)]
        if not chosen:
            raise ConfigError(f"strategy.bbox {st['bbox']} touches no tile of the AOI.")
        return chosen
    return tiles


# forked workers read these (set before the pool starts; never pickled)
_JOB: dict = {}


def _simulate_task(task: int) -> tuple[int, Outcome, float]:
    t0 = time.perf_counter()
    candidate, series = _JOB["pairs"][task]
    out = simulate(candidate, series, _JOB["cfg"], _JOB["params"])
    return task, out, time.perf_counter() - t0


def _run_pairs(pairs: list[tuple[Candidate, PixelSeries]], cfg: dict, params: AlertParams,
               workers: int) -> list[Outcome]:
    """Simulate each (candidate, series) pair, in ``workers`` forked processes."""
    _JOB.update(pairs=pairs, cfg=cfg, params=params)
    out: list[Outcome | None] = [None] * len(pairs)
    try:
        if workers > 1 and len(pairs) > 1:
            with mp.get_context("fork").Pool(workers) as pool:
                for i, res, sec in pool.imap_unordered(_simulate_task, range(len(pairs))):
                    out[i] = res
                    log.info("candidate %s on tile %s: %.1f s", pairs[i][0].name,
                             pairs[i][1].pixels.tile_id, sec)
        else:
            for i in range(len(pairs)):
                out[i] = _simulate_task(i)[1]
    finally:
        _JOB.clear()
    return out  # type: ignore[return-value]


def _flat(pixels: TilePixels, shape: tuple[int, int]) -> np.ndarray:
    return pixels.rows * shape[1] + pixels.cols


def run_strategy(cfg: dict, *, catalog: str | None, masks: dict[str, np.ndarray],
                 truth_dir: str | Path | None, threads: int = 1) -> StrategyResult:
    """Evaluate every candidate of ``cfg['strategy']`` (module docstring).

    ``masks``: tile id -> forest mask (uint8, 1 = forest) of each test tile;
    ``truth_dir``: the synthetic truth, used when no reference file is configured.
    """
    st = cfg["strategy"]
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    candidates, consensus = expand_candidates(cfg)
    tiles = test_area(cfg)
    period = (str(cfg["history"]["end"]), str(cfg["fast_forward"]["until"]))
    pixel_area_ha = cfg["grid"]["resolution"] ** 2 / 10_000
    if st["reference"]["path"]:
        from .reference import read_reference, sample_pixels
        from .samples import reference_samples
        ref = read_reference(st["reference"], period=period)
        samples, pixels = reference_samples(ref, sample_pixels(ref, tiles), masks)
    else:
        if truth_dir is None:
            raise ConfigError(
                "strategy: no reference samples. Set strategy.reference.path to a file of "
                "samples (config/README.md, strategy.reference); only the synthetic source "
                "has a truth to score against.")
        samples, pixels = truth_samples(
            tiles, masks, truth_dir, period=period, min_lead_days=st["min_lead_days"],
            per_stratum=st["sample"]["per_stratum"], seed=st["sample"]["seed"],
            pixel_area_ha=pixel_area_ha)
    if not len(samples):
        raise ConfigError("strategy: no samples on the test area to score against.")
    by_tile = {p.tile_id: p for p in pixels}
    window_tile = next((t for t in tiles if t.id in by_tile), tiles[0])
    window_px, window = (quicklook_pixels(window_tile, masks[window_tile.id], max_px=200)
                         if st["quicklooks"] else (None, None))
    seconds["samples"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    bands = strategy_bands(sorted({c.index for c in candidates}),
                           with_ccdc_screening=any(c.monitor["class"] == "CCDC"
                                                   for c in candidates))
    # a regional screen needs each pixel's neighbourhood: then the test tiles are read
    # whole (every pixel, once) and the sample series are taken from them
    whole = any(c.screened for c in candidates)
    series: list[PixelSeries] = []
    tiles_whole: dict[str, PixelSeries] = {}
    window_series: PixelSeries | None = None
    reads = 0
    block = min(cfg["monitor"]["block_size"], 256)
    for tile in tiles:
        px = by_tile.get(tile.id)
        extra = window_px if (window_px is not None and tile.id == window_tile.id) else None
        if px is None and extra is None:
            continue
        items = search_items(cfg["stac"], tile.bbox_lonlat(), cfg["history"]["start"],
                             cfg["fast_forward"]["until"], catalog)
        reads += 1
        if whole:
            full = load_pixel_series(tile, items, whole_tile(tile, masks[tile.id]), bands,
                                     cfg["stac"], block=block, threads=threads,
                                     shape=tile.shape)
            tiles_whole[tile.id] = full
            if px is not None:
                series.append(full.gather(px))
            if extra is not None:
                window_series = full.gather(extra)
            continue
        both = _concat([p for p in (px, extra) if p is not None])
        loaded = load_pixel_series(tile, items, both, bands, cfg["stac"], block=block,
                                   threads=threads)
        n_s = len(px) if px is not None else 0
        if px is not None:
            series.append(_slice(loaded, px, slice(0, n_s)))
        if extra is not None:
            window_series = _slice(loaded, extra, slice(n_s, None))
    seconds["read"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    params = AlertParams.from_config(cfg.get("alerts"))
    workers = st["workers"] or threads
    pairs = [(c, tiles_whole[s.pixels.tile_id] if c.screened else s)
             for c in candidates for s in series]
    results = iter(_run_pairs(pairs, cfg, params, workers))
    per_candidate: dict[str, list[Outcome]] = {}
    whole_outcomes: dict[tuple[str, str], Outcome] = {}
    for c in candidates:
        outs = []
        for s in series:
            res = next(results)
            if c.screened:
                shape = tiles_whole[s.pixels.tile_id].shape
                whole_outcomes[(c.name, s.pixels.tile_id)] = res
                res = res.take(_flat(s.pixels, shape))
            outs.append(res)
        per_candidate[c.name] = outs
    for con in consensus:
        per_candidate[con.name] = [
            combine(con, [per_candidate[m][s] for m in con.members])
            for s in range(len(series))]
    scores = [score(name, samples, sample_answers(len(samples), [s.pixels for s in series],
                                                  outs))
              for name, outs in per_candidate.items()]
    ranked = rank(scores, by=st["rank_by"], max_false_alarm_share=st["max_false_alarm_share"])
    seconds["evaluate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    quicklooks: dict[str, Outcome] = {}
    if window_series is not None:
        top = [s.name for s in ranked[: st["quicklooks"]]]
        cons = {c.name: c for c in consensus}
        needed = sorted({m for n in top for m in (cons[n].members if n in cons else (n,))})
        by_name = {c.name: c for c in candidates}
        single: dict[str, Outcome] = {}
        for name in needed:  # screened candidates ran on the whole tile already
            key = (name, window_tile.id)
            if key in whole_outcomes:
                single[name] = whole_outcomes[key].take(_flat(window_px, window_tile.shape))
        rest = [n for n in needed if n not in single]
        for name, res in zip(rest, _run_pairs([(by_name[n], window_series) for n in rest],
                                              cfg, params, workers), strict=True):
            single[name] = res
        for name in top:
            quicklooks[name] = (combine(cons[name], [single[m] for m in cons[name].members])
                                if name in cons else single[name])
    seconds["quicklooks"] = time.perf_counter() - t0
    return StrategyResult(ranked=ranked, candidates=candidates, consensus=consensus,
                          samples=samples, window_tile=window_tile, window=window,
                          window_pixels=window_px, quicklooks=quicklooks, seconds=seconds,
                          reads=reads)


def _concat(parts: list[TilePixels]) -> TilePixels:
    return TilePixels(tile_id=parts[0].tile_id,
                      rows=np.concatenate([p.rows for p in parts]),
                      cols=np.concatenate([p.cols for p in parts]),
                      sample=np.concatenate([p.sample for p in parts]),
                      monitored=np.concatenate([p.monitored for p in parts]))


def _slice(series: PixelSeries, pixels: TilePixels, sel: slice) -> PixelSeries:
    return PixelSeries(pixels=pixels, days=series.days,
                       bands={b: np.ascontiguousarray(v[:, sel]) for b, v in series.bands.items()})


__all__ = ["run_strategy", "StrategyResult", "test_area"]
