"""The alert report layers: one single-band COG per tile and layer (rule ``tile_report``),
mosaicked into one VRT per layer (rule ``mosaic``). Standard library only: the Snakefile
reads the names at parse time.

Values are taken from the tile state's :class:`~forestwatch.alerts.ladder.AlertLayers`
by :func:`forestwatch.reports.alert_report_arrays`. Pixels that are not monitored (status
255) are nodata in every layer. Types are wide enough never to overflow: dates are int32
days since 1970-01-01 (nrt's own uint16 lasts until 2149, the uint8 of nrt's deploy
example wraps every 256 days).
"""

from __future__ import annotations

from dataclasses import dataclass

DATE_UNITS = "days since 1970-01-01"


@dataclass(frozen=True)
class ReportLayer:
    name: str
    dtype: str
    nodata: int | float
    description: str
    units: str = ""


ALERT_REPORT_LAYERS: dict[str, ReportLayer] = {layer.name: layer for layer in (
    ReportLayer("alert_status", "uint8", 255,
                "alert status: 0 no alert, 1 first detection, 2 provisional, 3 confirmed, "
                "4 returned to normal; 255 not monitored"),
    ReportLayer("first_detection_date", "int32", 0,
                "first anomalous observation of the open alert (statuses 1-3; of a "
                "confirmed one, of the run of anomalies that was confirmed); 0 none",
                DATE_UNITS),
    ReportLayer("confirmation_date", "int32", 0,
                "date the monitor confirmed the break (status 3); 0 none", DATE_UNITS),
    ReportLayer("last_observation_date", "int32", 0,
                "latest clear observation the monitor took; 0 none", DATE_UNITS),
    ReportLayer("anomaly_count", "uint16", 65535,
                "anomalous observations of the alert episode (statuses 1-4)"),
    ReportLayer("max_loss", "float32", -9999.0,
                "largest drop of the index below its prediction in the alert episode "
                "(statuses 1-4), index units", "index units"),
    ReportLayer("confidence", "uint8", 255,
                "confidence 0-100 of the open alert (statuses 1-3; formula in "
                "forestwatch.alerts.ladder); 0 otherwise"),
)}

__all__ = ["ReportLayer", "ALERT_REPORT_LAYERS", "DATE_UNITS"]
