"""The HTML report's figures (rule ``report_figures``; matplotlib, headless):

* :func:`quicklook`: a mosaic at most ``max_px`` pixels a side, in the WMS's colours (the
  entries of :func:`forestwatch.publish.layers.legend_entries`), with a legend of the
  class names or a colour bar of the date bins;
* :func:`alerts_per_month`: new confirmed breaks per month, as patches (8-connected
  pixels of one tile confirmed in the same month) and area in hectares, read tile by tile
  (memory of one tile), with the same numbers as a TSV table;
* :func:`run_history`: the daily runs (their ``record.json``): acquisitions applied, tiles
  updated, failed and waiting tiles per run.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._plot import framed_axes, save_png, subplots
from ..io import atomic_path
from .layers import Layer, LegendEntry


def quicklook(entry: Layer, path: str | Path, entries: Sequence[LegendEntry], out: str | Path,
              *, max_px: int = 1000) -> None:
    """PNG quicklook of the raster ``path`` (a mosaic) drawn as ``entries``."""
    import rasterio
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        scale = max(1.0, max(src.width, src.height) / max_px)
        shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        resampling = Resampling.mode if entry.kind == "classes" else Resampling.nearest
        data = src.read(1, out_shape=shape, resampling=resampling).astype("float64")
        bounds, crs, nodata = src.bounds, src.crs, src.nodata
    drawn = [e for e in entries if e.rgba[3] > 0]
    # 8-bit colours, as the legend's: matplotlib resamples them faster than float64 ones,
    # to the same pixels (BENCHMARKS.md, "the run's tail")
    rgba = np.zeros(data.shape + (4,), dtype=np.uint8)
    for e in drawn:
        hit = (data >= e.lo) & ((data <= e.hi) if e.hi is not None else True)
        if nodata is not None:
            hit &= data != nodata
        rgba[hit] = e.rgba
    # the map, with room beside it for the legend or colour bar
    fig, ax = framed_axes(width=5.8125, height=5.005, left=1.5, bottom=1.0, right=4.0,
                          top=0.6)
    ax.set_facecolor("#f4f4f4")
    extent = (bounds.left, bounds.right, bounds.bottom, bounds.top)
    ax.imshow(rgba, extent=extent, interpolation="nearest")
    ax.set_title(f"{entry.title} ({entry.name})")
    ax.set_xlabel(f"x (m, {crs.to_string()})")
    ax.set_ylabel("y (m)")
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(axis="x", labelrotation=30)
    if entry.kind == "classes":
        counts = {e.name: int(((data == e.lo)).sum()) for e in drawn}
        handles = [Patch(facecolor=np.array(e.rgba) / 255, edgecolor="#444",
                         label=f"{e.lo:g} {e.name} ({counts[e.name]:,} px)") for e in drawn]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False,
                  title="class (pixels in this quicklook)")
    else:
        cmap = ListedColormap([np.array(e.rgba) / 255 for e in drawn])
        edges = list(range(len(drawn) + 1))
        mappable = ScalarMappable(norm=BoundaryNorm(edges, cmap.N), cmap=cmap)
        bar = fig.colorbar(mappable, ax=ax, ticks=[k + 0.5 for k in range(len(drawn))],
                           fraction=0.05, pad=0.03, shrink=0.8)
        bar.ax.set_yticklabels([e.name for e in drawn], fontsize=8)
        bar.set_label(entry.units or entry.name)
    save_png(fig, out, dpi=110, tight=True)


def _month(days_since_epoch: np.ndarray) -> np.ndarray:
    d = days_since_epoch.astype("datetime64[D]")
    return d.astype("datetime64[M]")


def monthly_alerts(date_tiles: Sequence[str | Path]) -> list[dict]:
    """Per month of confirmation: ``month`` (YYYY-MM), ``patches`` (8-connected groups of
    pixels of one tile confirmed that month), ``pixels``, ``area_ha``. Read tile by tile (the fallback without alert polygons)."""
    import rasterio
    from scipy import ndimage

    by_month: dict[str, dict] = defaultdict(lambda: {"patches": 0, "pixels": 0, "area_ha": 0.0})
    for path in date_tiles:
        with rasterio.open(path) as src:
            dates = src.read(1)
            nodata = src.nodata if src.nodata is not None else 0
            px_ha = abs(src.transform.a * src.transform.e) / 1e4
        valid = dates != nodata
        if not valid.any():
            continue
        months = np.full(dates.shape, np.datetime64("NaT", "M"))
        months[valid] = _month(dates[valid])
        for month in np.unique(months[valid]):
            hit = months == month
            _, n = ndimage.label(hit, structure=np.ones((3, 3)))
            row = by_month[str(month)]
            row["patches"] += int(n)
            row["pixels"] += int(hit.sum())
            row["area_ha"] += float(hit.sum() * px_ha)
    if by_month:  # every month from the first to the last, months without a break as 0
        months = np.arange(np.datetime64(min(by_month), "M"), np.datetime64(max(by_month), "M") + 1)
        for month in months:
            by_month[str(month)]  # noqa: B018 - defaultdict: adds the month with zeros
    return [{"month": m, **v, "area_ha": round(v["area_ha"], 2)} for m, v in sorted(by_month.items())]


def monthly_polygon_alerts(polygons: str | Path) -> list[dict]:
    """Per month, from the alert polygons (layer ``alerts``): ``new`` alerts (by month of
    ``first_date``) and their ``new_area_ha``; ``confirmed`` alerts (by month of
    ``confirmed_date``) and their ``confirmed_area_ha``; every month in between."""
    import pandas as pd
    import pyogrio

    df = pyogrio.read_dataframe(polygons, layer="alerts", read_geometry=False)
    rows: dict[str, dict] = defaultdict(lambda: {"new": 0, "new_area_ha": 0.0, "confirmed": 0,
                                                 "confirmed_area_ha": 0.0})
    for col, key in (("first_date", "new"), ("confirmed_date", "confirmed")):
        dates = pd.to_datetime(df[col], errors="coerce")
        for month, part in df[dates.notna()].groupby(dates[dates.notna()].dt.strftime("%Y-%m")):
            rows[month][key] += len(part)
            rows[month][f"{key}_area_ha"] += float(part["area_ha"].sum())
    if rows:
        for month in np.arange(np.datetime64(min(rows), "M"), np.datetime64(max(rows), "M") + 1):
            rows[str(month)]  # noqa: B018 - defaultdict: adds the month with zeros
    return [{"month": m, **{k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}}
            for m, r in sorted(rows.items())]


def alerts_per_month(date_tiles: Sequence[str | Path], out_png: str | Path,
                     out_tsv: str | Path, *, polygons: str | Path | None = None) -> list[dict]:
    """New alerts and their area per month, as a figure and a TSV: from the alert
    polygons when the workflow makes them (new alerts by first detection, confirmed ones
    by confirmation), else from the detection-date tiles (confirmed breaks as patches)."""
    if polygons:
        rows = monthly_polygon_alerts(polygons)
        series = [("new", "new_area_ha", "#fdae61", "new alerts (first detection)"),
                  ("confirmed", "confirmed_area_ha", "#d7191c", "confirmed alerts")]
    else:
        rows = monthly_alerts(date_tiles)
        series = [("patches", "area_ha", "#d7191c", "confirmed breaks (patches)")]
    cols = ["month"] + [c for s in series for c in s[:2]] + ([] if polygons else ["pixels"])
    with atomic_path(out_tsv) as tmp:
        tmp.write_text("\t".join(cols) + "\n" + "".join(
            "\t".join(str(r[c]) for c in cols) + "\n" for r in rows))
    # the plot, with room below it for the month labels and the legend
    fig, ax = framed_axes(width=6.5875, height=3.234, left=1.3, bottom=1.6, right=1.2,
                          top=0.6)
    if rows:
        x = np.arange(len(rows))
        width = 0.8 / len(series)
        ax2 = ax.twinx()
        for k, (count, area, colour, label) in enumerate(series):
            offset = (k - (len(series) - 1) / 2) * width
            ax.bar(x + offset, [r[count] for r in rows], width, color=colour, label=label)
            ax2.plot(x, [r[area] for r in rows], "o-", color=colour, markeredgecolor="#333",
                     label=f"area of {label.split(' (')[0]}")
        ax.set_xticks(x, [r["month"] for r in rows], rotation=45, ha="right")
        from matplotlib.ticker import MaxNLocator

        ax.set_ylabel("count")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, max(max(r[s[0]] for s in series) for r in rows) * 1.15 + 0.5)
        ax2.set_ylabel("area (ha)")
        ax2.set_ylim(bottom=0)
        # its lower edge 1.05 inches below the plot, centred under it
        plot = ax.get_position()
        fig.legend(loc="lower center", ncol=2, fontsize=8, frameon=False,
                   bbox_to_anchor=((plot.x0 + plot.x1) / 2,
                                   plot.y0 - 1.05 / fig.get_figheight()))
    else:
        ax.text(0.5, 0.5, "no alert yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
    ax.set_title("New alerts and their area per month")
    save_png(fig, out_png, dpi=110, tight=True)
    return rows


def run_history(records: Sequence[str | Path], out: str | Path) -> list[dict]:
    """Bar chart of the daily runs' ``record.json``: items applied and tiles updated per
    run (by the run's day), failed and waiting tiles marked."""
    rows = []
    for path in sorted(records):
        rec = json.loads(Path(path).read_text())
        rows.append({"run": rec["run"], "today": rec["today"],
                     "items_applied": rec.get("items_applied", 0),
                     "tiles_updated": len(rec.get("tiles_updated", [])),
                     "failed": len(rec.get("failed_tiles", {})),
                     "waiting": len(rec.get("waiting_tiles", {})),
                     "exit_status": rec.get("exit_status", 0)})
    fig, ax = subplots(figsize=(8, 4))
    if rows:
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["items_applied"] for r in rows], 0.4, color="#2b83ba",
               label="items applied")
        ax.bar(x + 0.2, [r["tiles_updated"] for r in rows], 0.4, color="#abdda4",
               label="tiles updated")
        for k, r in enumerate(rows):
            if r["failed"] or r["waiting"]:
                top = max(r["items_applied"], r["tiles_updated"])
                ax.annotate(f"{r['failed']} failed, {r['waiting']} waiting", (k, top),
                            xytext=(0, 4), textcoords="offset points", ha="center",
                            color="#d7191c", fontsize=8)
                ax.axvspan(k - 0.5, k + 0.5, color="#d7191c", alpha=0.08)
        labels = [f"{r['today']}\n#{k + 1}" for k, r in enumerate(rows)]
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylim(0, max(max(r["items_applied"], r["tiles_updated"]) for r in rows) * 1.25 + 1)
        ax.legend(loc="upper left")
        ax.set_ylabel("count")
    else:
        # drawn during a run too: the first daily run's own record comes after its figures
        ax.text(0.5, 0.5, "no daily run recorded yet (forestwatch daily)\n"
                "a run shows from the next redraw after it: its record is written as it ends",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])  # no count to read: an empty axis, not one from 0 to 1
    ax.set_title("Daily runs: acquisitions applied, tiles updated, failures (red)")
    save_png(fig, out, dpi=110, tight=True)
    return rows


__all__ = ["quicklook", "alerts_per_month", "monthly_alerts", "run_history"]
