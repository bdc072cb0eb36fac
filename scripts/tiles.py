"""Snakemake adapter: AOI + grid -> tiles.gpkg (forestwatch.grid)."""

from forestwatch import steps
from forestwatch.workflow import run_step

run_step(snakemake, steps.tiles, cfg=snakemake.params.cfg, out=snakemake.output[0])  # noqa: F821
