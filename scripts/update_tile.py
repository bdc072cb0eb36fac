"""Snakemake adapter: the daily run's update of one tile -> its tile record (forestwatch.daily)."""

from forestwatch import steps
from forestwatch.layout import run_root
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
run_step(sm, steps.update_tile, cfg=sm.params.cfg, tile_id=sm.wildcards.tile,
         run_dir=run_root(sm.params.cfg["run_name"]), run=sm.wildcards.run, catalog=sm.input.catalog or None,
         out=sm.output[0], threads=sm.threads)
