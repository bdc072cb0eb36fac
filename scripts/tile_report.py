"""Snakemake adapter: mask, detection-date and alert-layer COGs of one tile
(forestwatch.reports), and its alert pieces (forestwatch.alerts.polygons)."""

from forestwatch import steps
from forestwatch.alerts.layers import ALERT_REPORT_LAYERS
from forestwatch.layout import report_layer
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
folder = sm.output.layers
run_step(sm, steps.tile_report, cfg=sm.params.cfg, tile_id=sm.wildcards.tile,
         state_in=sm.input.state, mask_out=report_layer(folder, "mask"),
         date_out=report_layer(folder, "detection_date"),
         alert_out={name: report_layer(folder, name) for name in ALERT_REPORT_LAYERS},
         pieces_out=sm.output.pieces)
