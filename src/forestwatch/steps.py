"""The workflow's steps as plain functions of paths and config sections.

Each rule's ``run:`` block calls a thin adapter in :mod:`forestwatch.jobs` that calls one
of these, so every step can be run and tested without Snakemake. ``cfg`` holds the config
sections the step depends on (the rule's ``params.cfg``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .grid import make_tiles, tile_by_id, write_tiles
from .io import write_json

log = logging.getLogger(__name__)


def synthetic_archive(cfg: dict, items_path: str | Path) -> None:
    """Generate the synthetic archive into the folder holding ``items_path``."""
    from .synthetic import SyntheticSpec, generate_archive

    spec = SyntheticSpec.from_config(cfg)
    log.info("generating synthetic archive %s", spec)
    generate_archive(Path(items_path).parent, spec)


def tiles(cfg: dict, out: str | Path) -> None:
    tile_list = make_tiles(cfg)
    write_tiles(tile_list, out)
    log.info("%d tiles: %s", len(tile_list), ", ".join(t.id for t in tile_list))


def _history_items(cfg: dict, tile, catalog: str | None, search=None):
    """The items of the tile's history period: ``search(start, end)`` when given (the
    tile's :func:`tile_search`, maybe started ahead), otherwise a search of its own."""
    from .shared_search import search_tile

    start, end = cfg["history"]["start"], cfg["history"]["end"]
    if search is not None:
        return search(start, end)
    return search_tile(cfg["stac"], tile, start, end, catalog)


def forest_mask(cfg: dict, tile_id: str, catalog: str | None, tree_cover: str | None,
                out: str | Path, threads: int = 1, *, model: str | None = None,
                model_description: str | None = None) -> None:
    """The tile's forest mask alone (the workflow makes it in the fit, :func:`fit`;
    this is for benchmarks and tests). See :func:`_make_mask`."""
    tile = tile_by_id(cfg, tile_id)
    mask, source, provenance = _make_mask(cfg, tile, catalog, tree_cover, model,
                                          model_description, threads)
    _write_mask(mask, tile, out, source, provenance)


def _make_mask(cfg: dict, tile, catalog: str | None, tree_cover: str | None,
               model: str | None, model_description: str | None, threads: int):
    """(mask, source sentence, provenance tags) by ``forest_mask.method``: from the
    tree-cover raster ``tree_cover`` (``file``), the history rule (``rule``), or a
    tree-cover model (``model``: the ONNX file ``model`` and its description file
    ``model_description``, as :func:`forestwatch.forest_mask.model.model_files` resolves
    them; none for the xinfereo backend)."""
    from .forest_mask import mask_from_rule, mask_from_tree_cover

    fm = cfg["forest_mask"]
    if fm["method"] == "file":
        mask = mask_from_tree_cover(tile, tree_cover, fm["file"]["threshold"],
                                    fm["file"]["resampling"])
        return mask, *_file_mask_provenance(fm, tree_cover)
    if fm["method"] == "model":
        return _model_mask(cfg, tile, catalog, model, model_description, threads)
    items = _history_items(cfg, tile, catalog)
    mask = mask_from_rule(tile, items, fm["rule"], cfg["stac"], threads=threads)
    return mask, *_rule_mask_provenance(fm)


def _file_mask_provenance(fm: dict, tree_cover: str) -> tuple[str, dict]:
    return (f"tree cover >= {fm['file']['threshold']} % from {Path(tree_cover).name}",
            {"method": "file", "tree_cover": Path(tree_cover).name,
             "threshold": fm["file"]["threshold"]})


def _rule_mask_provenance(fm: dict) -> tuple[str, dict]:
    return (f"harmonic-intercept rule {json.dumps(fm['rule'], sort_keys=True)}",
            {"method": "rule"})


def _write_mask(mask, tile, out: str | Path, source: str, provenance: dict, *,
                made_from: str | None = None) -> None:
    """Write the mask with what made it in its tags."""
    from .forest_mask import write_mask

    write_mask(mask, tile, out, source, provenance=provenance, made_from=made_from)
    log.info("tile %s: %d forest pixels of %d", tile.id, int(mask.sum()), mask.size)


def _model_mask(cfg: dict, tile, catalog: str | None, model_path: str | None,
                description_path: str | None, threads: int):
    """(mask, source sentence, provenance tags) of ``forest_mask.method: model``."""
    from .forest_mask import mask_from_model
    from .forest_mask.model import load_model, model_period
    from .shared_search import search_tile

    mcfg = cfg["forest_mask"]["model"]
    model = load_model(mcfg, model_path=model_path, description_path=description_path,
                       stac_cfg=cfg["stac"], threads=threads)
    start, end = model_period(cfg)
    items = search_tile(cfg["stac"], tile, start, end, catalog)
    mask = mask_from_model(tile, items, model=model, threshold=mcfg["threshold"],
                           stac_cfg=cfg["stac"], block_size=mcfg["block_size"],
                           threads=threads)
    provenance = {"method": "model", **model.provenance(), "threshold": mcfg["threshold"],
                  "period": f"{start}/{end}"}
    source = (f"tree cover >= {mcfg['threshold']} % from model {provenance['model']} "
              f"({model.backend}) on {start}..{end}")
    return mask, source, provenance


def fit(cfg: dict, tile_id: str, catalog: str | None, *, mask_cfg: dict,
        mask_out: str | Path, out: str | Path, tree_cover: str | None = None,
        model: str | None = None, model_description: str | None = None,
        threads: int = 1, search=None) -> bool:
    """The tile's forest mask and fitted state (the first half of rule ``tile_state``).

    The mask file ``mask_out`` is kept when it was made from the same inputs
    (:func:`forestwatch.forest_mask.kept_mask`: ``mask_cfg``, the tile, the input files),
    so that a change of the monitor refits without making the mask again; otherwise it
    is made by ``forest_mask.method``. With the history rule, the mask is classified from
    the fit's own read of the history, block by block (one read for both). ``cfg`` holds
    the fit's config sections, ``mask_cfg`` the mask's (the rule's ``params``). What made
    the mask is copied into the state (``TileState.forest_mask``).

    The fitted state ``out`` is kept when it was made from the same fit config, tile,
    mask content, mask provenance and history items (:func:`forestwatch.monitor.fit_key`,
    recorded in its ledger): a rerun of the rule for the fast-forward's sake, or a forced
    one, costs a search and a key, not a fit. ``search(start, end)`` finds the history's
    items (default: a search of the tile's own, :func:`_history_items`). Returns whether
    it fitted."""
    from .forest_mask import (
        kept_mask,
        mask_key,
        no_history_error,
        read_mask_provenance,
        rule_classifier,
    )
    from .monitor import fit_key, fit_tile
    from .state import save_state

    tile = tile_by_id(cfg, tile_id)
    inputs = [p for p in (tree_cover, model, model_description) if p]
    key = mask_key(mask_cfg, tile_id, inputs)
    items = _history_items(cfg, tile, catalog, search)
    fm = mask_cfg["forest_mask"]
    kept = kept_mask(mask_out, tile, key)
    state = None  # fitted below, unless the rule mask is classified from the fit's read
    if kept is not None:
        mask, provenance = kept
        log.info("tile %s: forest mask kept (made from the same inputs): %s", tile_id,
                 mask_out)
    elif fm["method"] == "rule":
        if not items:
            raise no_history_error(tile)
        mask = np.zeros(tile.shape, dtype=np.uint8)
        state = fit_tile(tile, items, mask, cfg, threads=threads,
                         classify_mask=rule_classifier(fm["rule"], threads=threads))
        source, provenance = _rule_mask_provenance(fm)
        _write_mask(mask, tile, mask_out, source, provenance, made_from=key)
    else:
        mask, source, provenance = _make_mask({**cfg, **mask_cfg}, tile, catalog, tree_cover,
                                              model, model_description, threads)
        _write_mask(mask, tile, mask_out, source, provenance, made_from=key)
    # what made the mask, as its tags say (kept, or written just now)
    provenance = provenance if kept is not None else read_mask_provenance(mask_out)
    made_from = fit_key({**cfg, "forest_mask_provenance": provenance}, tile_id, mask, items)
    if state is None:
        if _fit_made_from(out) == made_from:
            log.info("tile %s: fitted state kept (made from the same config, forest mask and "
                     "%d history items): %s", tile_id, len(items), out)
            return False
        state = fit_tile(tile, items, mask, cfg, threads=threads)
    state.forest_mask = provenance
    state.ledger.fit.made_from = made_from
    digest = save_state(state, out)
    log.info("tile %s: fitted %s on %d items, state %s (sha256 %s)", tile_id,
             cfg["monitor"]["class"], len(items), out, digest[:12])
    return True


def _fit_made_from(path: str | Path) -> str | None:
    """The fit key recorded in the fitted state ``path`` (its ledger, read without the
    arrays); None when there is no such file or it cannot be read (then it is fitted)."""
    from .state import read_ledger

    if not Path(path).exists():
        return None
    try:
        ledger, _ = read_ledger(path)
    except Exception as err:  # netCDF4/HDF5 raise assorted errors on damaged files
        log.warning("fitted state %s cannot be read (%s); fitting again", path, err)
        return None
    return ledger.fit.made_from or None


def tile_state(*, fit_cfg: dict, forward_cfg: dict, mask_cfg: dict, tile_id: str,
               catalog: str | None, run_dir: str | Path, mask_out: str | Path,
               fitted_out: str | Path, current_out: str | Path,
               tree_cover: str | None = None, model: str | None = None,
               model_description: str | None = None, threads: int = 1) -> None:
    """Rule ``tile_state``: the tile's forest mask and fitted state (:func:`fit`, each
    kept when made from the same inputs), then its current state brought forward to
    ``fast_forward.until`` (:func:`fast_forward`, from where it is: never back). One job
    per tile instead of two: a third fewer jobs for Snakemake to plan (BENCHMARKS.md,
    the 10,000-tile dry-run). ``fit_cfg``, ``forward_cfg`` and ``mask_cfg`` are the
    rule's three config slices.

    Its searches are started first, side by side in threads: the history's, and for a
    tile without a current state the fast-forward's period (from the end of the history).
    While they wait on the STAC API, this thread imports and loads what the fit and the
    monitoring run (:func:`_prepare_monitoring`: ~2 s in a new process, BENCHMARKS.md),
    which it would otherwise do after them."""
    import datetime as dt
    from concurrent.futures import ThreadPoolExecutor

    tile = tile_by_id(forward_cfg, tile_id)
    history = (fit_cfg["history"]["start"], fit_cfg["history"]["end"])
    start = dt.date.fromisoformat(str(history[1]))
    until = dt.date.fromisoformat(str(forward_cfg["fast_forward"]["until"]))
    periods = [history]
    if not Path(current_out).exists() and start <= until:
        periods.append((start, until))
    with ThreadPoolExecutor(len(periods), thread_name_prefix="forestwatch-search-ahead") as pool:
        search = _SearchAhead(tile_search(forward_cfg, tile, catalog), periods, pool)
        _prepare_monitoring(fit_cfg)
        fit(fit_cfg, tile_id, catalog, mask_cfg=mask_cfg, mask_out=mask_out, out=fitted_out,
            tree_cover=tree_cover, model=model, model_description=model_description,
            threads=threads, search=search)
        fast_forward(forward_cfg, tile_id, catalog, run_dir, current_out, threads=threads,
                     search=search)


class _SearchAhead:
    """A tile's ``search(start, end)`` (:func:`tile_search`) whose ``periods`` (``(start,
    end)`` pairs) were started in ``pool`` at construction: a call for one of them takes
    its result (or its error), once; any other call searches."""

    def __init__(self, search, periods, pool) -> None:
        self._search = search
        self._ahead = {period: pool.submit(search, *period) for period in periods}

    def __call__(self, start, end):
        ahead = self._ahead.pop((start, end), None)
        if ahead is not None:
            return ahead.result()
        return self._search(start, end)


#: monitor configs whose modules and kernels this process has loaded
_PREPARED: set[str] = set()


def _prepare_monitoring(cfg: dict) -> None:
    """Import the fit's and the monitoring's modules (nrt, and scipy through it) and load
    their numba kernels and the reader's (:func:`forestwatch.monitor.warm_numba_cache`),
    once per process and monitor config (``cfg``: the fit's config slice). A process's
    first tile otherwise pays them on its way, after its searches. A failure here is
    only logged: the fit meets the same problem and says what it is."""
    key = json.dumps({k: cfg.get(k) for k in ("index", "monitor", "consensus")},
                     sort_keys=True, default=str)
    if key in _PREPARED:
        return
    from .monitor import warm_numba_cache

    try:
        seconds = warm_numba_cache(cfg)
    except Exception as err:  # noqa: BLE001 - the fit raises the same, with its context
        log.warning("loading the monitor's kernels ahead failed (%s); the fit loads them", err)
        return
    _PREPARED.add(key)
    log.debug("monitor kernels loaded in %.2f s", seconds)


def tile_store(cfg: dict, run_dir: str | Path, tile_id: str):
    """The tile's :class:`~forestwatch.state.TileStateStore` in the run folder ``run_dir``."""
    from .layout import RunLayout
    from .state import TileStateStore

    return TileStateStore(RunLayout(run_dir), tile_id, keep=cfg["operational"]["keep_states"])


def tile_search(cfg: dict, tile, catalog: str | None):
    """``search(start, end)`` over the tile's footprint, retried like the daily search
    (shared with the other tiles of its block in the workflow: :mod:`forestwatch.shared_search`)."""
    from .daily.discover import with_retries
    from .shared_search import search_tile

    def search(start, end):
        return with_retries(lambda: search_tile(cfg["stac"], tile, start, end, catalog),
                            cfg["operational"], f"tile {tile.id} search")

    return search


def fast_forward(cfg: dict, tile_id: str, catalog: str | None, run_dir: str | Path,
                 out: str | Path, threads: int = 1, search=None) -> None:
    """Bring the tile's current state forward to ``fast_forward.until`` (from its fitted
    state the first time; from where it is afterwards: never back). ``search(start,
    end)`` finds the tile's items (default: :func:`tile_search`)."""
    import datetime as dt

    from .monitor import UnreadablePolicy, advance_tile

    tile = tile_by_id(cfg, tile_id)
    store = tile_store(cfg, run_dir, tile_id)
    if store.current_path != Path(out):
        raise ValueError(f"rule output {out} is not the store's {store.current_path}")
    until = dt.date.fromisoformat(str(cfg["fast_forward"]["until"]))
    update = advance_tile(store, tile, cfg, run="fast_forward", until=until,
                          policy=UnreadablePolicy.from_stac(cfg["stac"]),
                          search=search or tile_search(cfg, tile, catalog), threads=threads)
    if update.last_day and update.last_day > str(until):
        log.warning("tile %s: the state is at %s, past fast_forward.until %s (daily runs "
                    "brought it further); it is kept as it is", tile_id, update.last_day, until)
    elif not update.applied_days:
        log.warning("tile %s: no new acquisition up to %s; state unchanged", tile_id, until)
    log.info("tile %s: monitored %d new day(s)%s; now at %s", tile_id,
             len(update.applied_days),
             f", {len(update.reapplied_days)} again" if update.reapplied_days else "",
             update.last_day)


def update_tile(cfg: dict, tile_id: str, run_dir: str | Path, run: str, catalog: str | None,
                out: str | Path, threads: int = 1) -> dict:
    """The daily run's update of one tile: the acquisitions discovery found for it, with
    the grace period for unreadable assets; writes the tile record ``out``."""
    import datetime as dt

    from .access import clear_gdal_http_cache_once
    from .daily.discover import Discovery, read_discovered_items
    from .layout import RunLayout
    from .monitor import UnreadablePolicy, advance_tile

    layout = RunLayout(run_dir)
    tile = tile_by_id(cfg, tile_id)
    store = tile_store(cfg, run_dir, tile_id)
    disc = Discovery.read(layout.discovery(run))
    today = dt.date.fromisoformat(disc.today)
    op = cfg["operational"]
    policy = UnreadablePolicy(
        mode="grace", register=store.read_register(), today=today,
        grace_days=op["unreadable_assets"]["grace_days"],
        grace_runs=op["unreadable_assets"]["grace_runs"],
        retries=op["retries"], retry_delay_s=op["retry_delay_s"])
    # a failure remembered from an earlier run is not a reading; this run's other tiles'
    # fetches are kept (each tile of a granule reads the day's files)
    clear_gdal_http_cache_once(run)
    update = advance_tile(store, tile, cfg, run=run, until=today, policy=policy,
                          search=tile_search(cfg, tile, catalog),
                          items=read_discovered_items(layout, disc, tile_id), threads=threads)
    record = update.to_dict()
    write_json(out, record)
    log.info("tile %s: %d new day(s), %d again, %d skipped item(s), %d asset(s) given up%s",
             tile_id, len(update.applied_days), len(update.reapplied_days),
             len(update.skipped), len(update.assets_skipped),
             f"; waiting since {update.waiting_since}" if update.waiting_since else "")
    return record


def tile_report(cfg: dict, tile_id: str, state_in: str | Path, mask_out: str | Path,
                date_out: str | Path, alert_out: dict[str, str | Path],
                pieces_out: str | Path) -> None:
    """nrt's mask and detection date (a consensus state's: its consensus breaks,
    :func:`forestwatch.alerts.consensus.break_layers`), and the alert layers, of one tile
    as COGs, and the tile's alert pieces (for the polygons and statistics)."""
    from .alerts.polygons import tile_pieces, write_pieces
    from .reports import alert_report_arrays, write_alert_reports, write_tile_reports
    from .state import read_layers

    state = read_layers(state_in, ("mask", "detection_date"))
    mask, date = state.layers["mask"], state.layers["detection_date"]
    if state.is_consensus:
        from .alerts.consensus import break_layers

        mask, date = break_layers(mask, state.alerts)
    write_tile_reports(mask, date, state.crs, state.transform, mask_out, date_out)
    arrays = alert_report_arrays(state.alerts,
                                 confidence_half=cfg["alerts"]["confidence_half"])
    write_alert_reports(arrays, state.crs, state.transform, alert_out)
    pieces = tile_pieces(arrays, transform=state.transform, crs=state.crs, tile_id=tile_id)
    write_pieces(pieces, pieces_out)
    log.info("tile %s: %d alert piece(s), %d open alert pixel(s)", tile_id, len(pieces),
             int(pieces["n_pixels"].sum()) if len(pieces) else 0)


def tile_reports_index(tiles: list[str], folders: list[str], pieces: list[str],
                       out: str | Path) -> None:
    """The index of the tiles' complete reports (:class:`forestwatch.reports.TileReportsIndex`):
    ``folders`` and ``pieces`` in the order of ``tiles``, every pieces file present."""
    from .reports import TileReportsIndex

    missing = [p for p in pieces if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} tile report(s) missing, e.g. {missing[0]}; "
                                "run `snakemake` to make them")
    index = TileReportsIndex(folders=dict(zip(tiles, folders, strict=True)),
                             pieces=dict(zip(tiles, pieces, strict=True)))
    index.write(out)
    log.info("index of %d tiles' reports: %s", len(tiles), out)


def alert_polygons(cfg: dict, pieces: list[str], out: str | Path) -> None:
    from .alerts.polygons import merge_alerts

    merge_alerts(pieces, out, min_mapping_unit_ha=cfg["alerts"]["min_mapping_unit_ha"],
                 pixel_size_m=cfg["grid"]["resolution"])


def alert_statistics(cfg: dict, pieces: list[str], by_tile_out: str | Path,
                     by_region_out: str | Path | None = None) -> None:
    from .alerts.statistics import write_statistics

    regions = cfg["alerts"]["regions"]
    table = write_statistics(pieces, pixel_size_m=cfg["grid"]["resolution"],
                             crs=cfg["grid"]["crs"], by_tile_out=by_tile_out,
                             regions_path=regions["path"], regions_field=regions["field"],
                             by_region_out=by_region_out)
    log.info("mapped alert area: %.2f ha in %d row(s)",
             float(table["area_ha"].sum()) if len(table) else 0.0, len(table))


def mosaic(tiles_by_layer: dict[str, list[str]], vrts: dict[str, str | Path]) -> None:
    """One VRT per layer over every tile's COG of that layer."""
    from .reports import build_vrt

    for layer, vrt in vrts.items():
        build_vrt(tiles_by_layer[layer], vrt)
    log.info("mosaic of %d tiles, layers %s", len(next(iter(tiles_by_layer.values()))),
             ", ".join(vrts))


def accuracy(cfg: dict, mask_vrt: str | Path, date_vrt: str | Path, truth_dir: str | Path,
             json_out: str | Path, md_out: str | Path, status_vrt: str | Path | None = None,
             first_vrt: str | Path | None = None) -> dict:
    from .accuracy import assess, to_markdown
    from .io import atomic_path

    metrics = assess(mask_vrt, date_vrt, truth_dir, cfg["history"]["end"],
                     cfg["fast_forward"]["until"], status_vrt=status_vrt, first_vrt=first_vrt)
    write_json(json_out, metrics)
    with atomic_path(md_out) as tmp:
        tmp.write_text(to_markdown(metrics))
    log.info("accuracy: %s", json.dumps(metrics))
    return metrics


def strategy(cfg: dict, *, catalog: str | None, masks: dict[str, str],
             truth_dir: str | None, outputs: dict[str, str], threads: int = 1) -> None:
    """Rank the strategy candidates on the test area (:mod:`forestwatch.strategy`).
    ``masks``: tile id -> forest mask file of each test tile; ``outputs``: name -> path of
    the rule's outputs (``RunLayout.strategy``)."""
    import numpy as np
    import rasterio

    from .strategy import outputs as out
    from .strategy.run import run_strategy

    arrays = {}
    for tile_id, path in masks.items():
        with rasterio.open(path) as src:
            arrays[tile_id] = src.read(1)
    st = cfg["strategy"]
    result = run_strategy(cfg, catalog=catalog, masks=arrays, truth_dir=truth_dir,
                          threads=threads)
    limit = st["max_false_alarm_share"]
    out.write_ranking(result, csv_out=outputs["ranking_csv"], md_out=outputs["ranking_md"],
                      limit=limit, rank_by=st["rank_by"])
    out.write_recommended(result, outputs["recommended"], limit=limit)
    out.plot_tradeoff(result, outputs["tradeoff"], limit=limit, rank_by=st["rank_by"])
    out.plot_lags(result, outputs["lags"])
    truth = None
    if truth_dir is not None and not st["reference"]["path"] and result.window is not None:
        from .strategy.samples import read_on_tile

        rows, cols = result.window
        truth = read_on_tile(Path(truth_dir) / "disturbance_type.tif", result.window_tile)
        truth = np.asarray(truth[rows, cols], dtype=np.int64)
    out.plot_quicklooks(result, outputs["quicklooks"], truth=truth)
    best = result.ranked[0]
    log.info("strategy: %d candidates in %s; best %s (%s)", len(result.ranked),
             ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()), best.name,
             json.dumps(best.metrics))


def _monitoring(cfg: dict):
    import datetime as dt

    return (dt.date.fromisoformat(str(cfg["history"]["end"])) + dt.timedelta(days=1),
            dt.date.fromisoformat(str(cfg["fast_forward"]["until"])))


def _published(layers: dict[str, str]):
    from .publish.layers import layer

    return [(layer(name), path) for name, path in layers.items()]


def wms_mapfile(cfg: dict, layers: dict[str, str], out: str | Path) -> None:
    """The run's MapServer mapfile over ``layers`` (layer name -> mosaic VRT, or the
    polygons' GeoPackage)."""
    from .publish.mapfile import write_mapfile

    names = write_mapfile(out=out, layers=_published(layers), crs=cfg["grid"]["crs"],
                          monitoring=_monitoring(cfg), name=f"forestwatch_{cfg['run_name']}",
                          title=f"forestwatch {cfg['run_name']}: forest disturbance monitoring")
    log.info("mapfile %s: layers %s", out, ", ".join(names))


def qgis_styles(cfg: dict, layers: dict[str, str], styles: dict[str, str]) -> None:
    """A QGIS style per layer (``styles``: layer name -> .qml beside its file)."""
    from .publish.layers import legend_entries, raster_classes
    from .publish.qml import write_qml

    published = _published(layers)
    classes_of = {e.name: raster_classes(p, e.classes, e.transparent) for e, p in published
                  if e.kind == "classes"}
    for entry, path in published:
        entries = legend_entries(entry, path=None if entry.kind == "polygons" else path,
                                 monitoring=_monitoring(cfg), classes_of=classes_of)
        write_qml(entry, entries, styles[entry.name])
        log.info("style %s: %d entries", styles[entry.name], len(entries))


def stac_catalog(cfg: dict, tiles: dict[str, dict[str, str]], states: dict[str, str],
                 mosaics: dict[str, str], extras: dict[str, str], collection: str | Path,
                 items: dict[str, str], source: str | None) -> None:
    """The STAC catalog of the run's outputs (forestwatch.publish.stac_catalog);
    ``items``: item id (tile, ``mosaic``) -> its file."""
    from .publish.stac_catalog import write_catalog

    write_catalog(cfg=cfg, tiles=tiles, states=states, mosaics=mosaics, extras=extras,
                  collection_path=collection, item_path=items.__getitem__, source=source)
    log.info("STAC catalog %s: %d tile item(s) and the mosaic item", collection, len(tiles))


def report_figures(cfg: dict, layers: dict[str, str], date_tiles: list[str],
                   records: list[str], quicklooks: dict[str, str], alerts_png: str | Path,
                   alerts_tsv: str | Path, history_png: str | Path,
                   polygons: str | None = None) -> None:
    """The report's pictures: a quicklook per mosaic, alerts per month, the daily runs."""
    from .publish.figures import alerts_per_month, quicklook, run_history
    from .publish.layers import legend_entries

    for entry, path in _published(layers):
        if entry.kind != "polygons":
            quicklook(entry, path, legend_entries(entry, path=path, monitoring=_monitoring(cfg)),
                      quicklooks[entry.name])
    rows = alerts_per_month(date_tiles, alerts_png, alerts_tsv, polygons=polygons)
    runs = run_history(records, history_png)
    log.info("figures: %d quicklook(s), %d month(s) with breaks, %d daily run(s)",
             len(quicklooks), len(rows), len(runs))


__all__ = ["synthetic_archive", "tiles", "forest_mask", "fit", "fast_forward", "tile_state",
           "update_tile", "tile_store", "tile_search", "tile_report", "tile_reports_index",
           "alert_polygons", "alert_statistics", "mosaic", "accuracy", "wms_mapfile",
           "qgis_styles", "stac_catalog", "report_figures"]
