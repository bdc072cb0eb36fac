"""Snakemake adapter: fit the monitor on one tile's history -> fitted state (forestwatch.monitor)."""

from forestwatch import steps
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
run_step(sm, steps.fit, cfg=sm.params.cfg, tile_id=sm.wildcards.tile,
         catalog=sm.input.catalog or None, mask_path=sm.input.mask, out=sm.output[0],
         threads=sm.threads)
