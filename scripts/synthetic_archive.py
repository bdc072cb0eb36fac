"""Snakemake adapter: generate the synthetic Sentinel-2 L2A archive (forestwatch.synthetic)."""

from forestwatch import steps
from forestwatch.workflow import run_step

run_step(snakemake, steps.synthetic_archive,  # noqa: F821
         cfg=snakemake.params.cfg, items_path=snakemake.output.catalog)  # noqa: F821
