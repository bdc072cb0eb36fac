"""Mapped alert area per tile, month and status, and per region (rule
``alert_statistics``), from the tiles' alert pieces (:mod:`forestwatch.alerts.polygons`):
a piece is pixels of one status and one month of first detection, so the sums are pixel
counts times the pixel area, with no raster read again.

This is **mapped** area: the pixels the monitor flags, with its omissions and false
alarms. It is not an area estimate; an unbiased estimate with a confidence interval
needs a reference sample (stratified area estimation, Olofsson et al. 2014).

Files (one writer: rule ``alert_statistics``):

* ``area_by_tile.csv``: ``tile, month (YYYY-MM of first detection), status,
  status_name, pixels, area_ha``; every open alert pixel (statuses 1-3), whatever the
  minimum mapping unit of the polygons;
* ``area_by_region.csv`` (with ``alerts.regions.path``): ``region, month, status,
  status_name, area_ha`` from the pieces cut by the regions (a pixel on a region border
  counts in each region by the share of it inside).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from ..io import atomic_path
from .ladder import STATUS_CLASSES
from .polygons import read_pieces

BY_TILE_COLUMNS = ["tile", "month", "status", "status_name", "pixels", "area_ha"]
BY_REGION_COLUMNS = ["region", "month", "status", "status_name", "area_ha"]


class RegionsError(ValueError):
    """The regions file cannot be used."""


def _month_label(month_index: pd.Series) -> pd.Series:
    months = np.asarray(month_index, dtype=np.int64).astype("datetime64[M]")
    return pd.Series(np.datetime_as_string(months, unit="M"), index=month_index.index)


def area_by_tile(pieces: gpd.GeoDataFrame, pixel_size_m: float) -> pd.DataFrame:
    if not len(pieces):
        return pd.DataFrame(columns=BY_TILE_COLUMNS)
    g = (pieces.assign(month=_month_label(pieces["month"]))
         .groupby(["tile", "month", "status"], as_index=False)["n_pixels"].sum()
         .rename(columns={"n_pixels": "pixels"}))
    g["status_name"] = [STATUS_CLASSES[int(s)][0] for s in g["status"]]
    g["area_ha"] = g["pixels"] * pixel_size_m ** 2 / 1e4
    return g[BY_TILE_COLUMNS].sort_values(["tile", "month", "status"]).reset_index(drop=True)


def read_regions(path: str | Path, field: str, crs) -> gpd.GeoDataFrame:
    """The regions, in ``crs``; :class:`RegionsError` with what to fix."""
    try:
        regions = gpd.read_file(path)
    except Exception as err:
        raise RegionsError(f"alerts.regions.path {str(path)!r} cannot be read as a vector "
                           f"file ({err}); give a GeoPackage, GeoJSON or shapefile") from err
    if field not in regions.columns:
        raise RegionsError(f"alerts.regions.path {str(path)!r} has no attribute {field!r} "
                           f"(alerts.regions.field); it has: "
                           f"{', '.join(c for c in regions.columns if c != 'geometry')}")
    if regions.crs is None:
        raise RegionsError(f"alerts.regions.path {str(path)!r} has no CRS; set one")
    regions = regions[regions.geometry.notna() & ~regions.geometry.is_empty]
    if not len(regions) or not regions.geom_type.isin(["Polygon", "MultiPolygon"]).all():
        raise RegionsError(f"alerts.regions.path {str(path)!r} must hold (multi)polygons")
    return regions[[field, "geometry"]].rename(columns={field: "region"}).to_crs(crs)


def area_by_region(pieces: gpd.GeoDataFrame, regions: gpd.GeoDataFrame) -> pd.DataFrame:
    if not len(pieces):
        return pd.DataFrame(columns=BY_REGION_COLUMNS)
    cut = gpd.overlay(pieces[["month", "status", "geometry"]], regions, how="intersection",
                      keep_geom_type=True)
    cut["area_ha"] = cut.geometry.area / 1e4
    cut["month"] = _month_label(cut["month"])
    g = cut.groupby(["region", "month", "status"], as_index=False)["area_ha"].sum()
    g["status_name"] = [STATUS_CLASSES[int(s)][0] for s in g["status"]]
    return g[BY_REGION_COLUMNS].sort_values(["region", "month", "status"]).reset_index(
        drop=True)


def write_statistics(piece_files: Sequence[str | Path], *, pixel_size_m: float, crs: str,
                     by_tile_out: str | Path, regions_path: str | Path | None = None,
                     regions_field: str = "name", by_region_out: str | Path | None = None
                     ) -> pd.DataFrame:
    """Write ``area_by_tile.csv`` (and ``area_by_region.csv`` when regions are given);
    ``crs`` is the grid's."""
    regions = read_regions(regions_path, regions_field, crs) if regions_path else None
    pieces = read_pieces(piece_files)
    table = area_by_tile(pieces, pixel_size_m)
    with atomic_path(by_tile_out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    if regions is not None and by_region_out:
        by_region = area_by_region(pieces, regions)
        with atomic_path(by_region_out) as tmp:
            by_region.to_csv(tmp, index=False, float_format="%.4f")
    return table


__all__ = ["area_by_tile", "area_by_region", "read_regions", "write_statistics",
           "RegionsError"]
