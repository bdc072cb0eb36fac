"""The workflow's steps as plain functions of paths and config sections.

Each Snakemake script in ``scripts/`` is a thin adapter that calls one of these, so every
step can be run and tested without Snakemake. ``cfg`` holds the config sections the step
depends on (the rule's ``params.cfg``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

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


def _history_items(cfg: dict, tile, catalog: str | None):
    from .stac import search_items

    return search_items(cfg["stac"], tile.bbox_lonlat(), cfg["history"]["start"],
                        cfg["history"]["end"], catalog)


def forest_mask(cfg: dict, tile_id: str, catalog: str | None, tree_cover: str | None,
                out: str | Path, threads: int = 1) -> None:
    from .forest_mask import mask_from_rule, mask_from_tree_cover, write_mask

    tile = tile_by_id(cfg, tile_id)
    fm = cfg["forest_mask"]
    if fm["method"] == "file":
        mask = mask_from_tree_cover(tile, tree_cover, fm["file"]["threshold"],
                                    fm["file"]["resampling"])
        source = f"tree cover >= {fm['file']['threshold']} % from {Path(tree_cover).name}"
    else:
        items = _history_items(cfg, tile, catalog)
        mask = mask_from_rule(tile, items, fm["rule"], cfg["stac"], threads=threads)
        source = f"harmonic-intercept rule {json.dumps(fm['rule'], sort_keys=True)}"
    write_mask(mask, tile, out, source)
    log.info("tile %s: %d forest pixels of %d", tile_id, int(mask.sum()), mask.size)


def fit(cfg: dict, tile_id: str, catalog: str | None, mask_path: str | Path,
        out: str | Path, threads: int = 1) -> None:
    from .forest_mask import read_mask
    from .monitoring import fit_tile
    from .state import save_state

    tile = tile_by_id(cfg, tile_id)
    mask = read_mask(mask_path, tile)
    items = _history_items(cfg, tile, catalog)
    state = fit_tile(tile, items, mask, cfg, threads=threads)
    digest = save_state(state, out)
    log.info("tile %s: fitted %s on %d items, state %s (sha256 %s)", tile_id,
             cfg["monitor"]["class"], len(items), out, digest[:12])


def fast_forward(cfg: dict, tile_id: str, catalog: str | None, state_in: str | Path,
                 out: str | Path, threads: int = 1) -> None:
    from .monitoring import fast_forward as forward
    from .stac import search_items
    from .state import load_state, save_state

    tile = tile_by_id(cfg, tile_id)
    state = load_state(state_in)
    start = state.last_day or state.metadata["history"]["end"]
    items = search_items(cfg["stac"], tile.bbox_lonlat(), start, cfg["fast_forward"]["until"],
                         catalog)
    added = forward(state, items, tile, cfg, threads=threads)
    applied = [e for e in added if "skipped" not in e]
    if not applied:
        log.warning("tile %s: no new acquisition after %s up to %s; state unchanged",
                    tile_id, start, cfg["fast_forward"]["until"])
    digest = save_state(state, out)
    log.info("tile %s: monitored %d day(s) (%d with valid forest pixels); state %s (sha256 %s)",
             tile_id, len(applied), sum(1 for e in applied if e["valid_pixels"]), out, digest[:12])


def tile_report(state_in: str | Path, mask_out: str | Path, date_out: str | Path) -> None:
    from .reports import write_tile_reports
    from .state import load_state

    state = load_state(state_in)
    m = state.monitor
    write_tile_reports(m.mask, m.detection_date, state.crs, state.transform, mask_out, date_out)


def mosaic(mask_tiles: list[str], date_tiles: list[str], mask_vrt: str | Path,
           date_vrt: str | Path) -> None:
    from .reports import build_vrt

    build_vrt(mask_tiles, mask_vrt)
    build_vrt(date_tiles, date_vrt)
    log.info("mosaic of %d tiles", len(mask_tiles))


def accuracy(cfg: dict, mask_vrt: str | Path, date_vrt: str | Path, truth_dir: str | Path,
             json_out: str | Path, md_out: str | Path) -> dict:
    from .accuracy import assess, to_markdown
    from .io import atomic_path

    metrics = assess(mask_vrt, date_vrt, truth_dir, cfg["history"]["end"],
                     cfg["fast_forward"]["until"])
    write_json(json_out, metrics)
    with atomic_path(md_out) as tmp:
        tmp.write_text(to_markdown(metrics))
    log.info("accuracy: %s", json.dumps(metrics))
    return metrics


__all__ = ["synthetic_archive", "tiles", "forest_mask", "fit", "fast_forward", "tile_report",
           "mosaic", "accuracy"]
