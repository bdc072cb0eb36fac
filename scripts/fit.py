"""Snakemake adapter: one tile's forest mask and fitted state (forestwatch.steps.fit)."""

from forestwatch import steps
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
run_step(sm, steps.fit, cfg=sm.params.cfg, tile_id=sm.wildcards.tile,
         catalog=sm.input.catalog or None, mask_cfg=sm.params.mask_cfg,
         mask_out=sm.output.mask, out=sm.output.state,
         tree_cover=sm.input.tree_cover or None, model=sm.input.model or None,
         model_description=sm.input.model_description or None, threads=sm.threads)
