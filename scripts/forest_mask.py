"""Snakemake adapter: forest mask of one tile (forestwatch.forest_mask)."""

from forestwatch import steps
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
run_step(sm, steps.forest_mask, cfg=sm.params.cfg, tile_id=sm.wildcards.tile,
         catalog=sm.input.catalog or None, tree_cover=sm.input.tree_cover or None,
         out=sm.output[0], threads=sm.threads, model=sm.input.model or None,
         model_description=sm.input.model_description or None)
