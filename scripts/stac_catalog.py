"""Snakemake adapter: the STAC catalog of the run's outputs (forestwatch.publish.stac_catalog)."""

from pathlib import Path

from forestwatch import steps
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
reports = sm.params.reports  # layer -> every tile's file, in the order of params.tiles
tiles = {t: {layer: reports[layer][k] for layer in sm.params.layers}
         for k, t in enumerate(sm.params.tiles)}
extras = {Path(p).name.replace(".", "_"): p for key in ("styles", "accuracy", "polygons", "statistics")
          if key in sm.input.keys() for p in ([sm.input[key]] if isinstance(sm.input[key], str)
                                                else sm.input[key])}
run_step(sm, steps.stac_catalog, cfg=sm.params.cfg, tiles=tiles,
         states=dict(zip(sm.params.tiles, sm.input.states, strict=True)),
         mosaics=dict(zip(sm.params.rasters, sm.input.mosaics, strict=True)), extras=extras,
         collection=sm.output.collection,
         items=dict(zip(sm.params.item_ids, sm.output.tile_items, strict=True)),
         source=sm.params.source)
