"""A deterministic synthetic Sentinel-2 L2A archive with known truth.

It follows the real product's conventions closely enough to exercise every code path of
the workflow:

* two overlapping granules in neighbouring UTM zones (or the same zone), one datatake
  per acquisition date with the granules seconds apart (``groupby="solar_day"`` fuses them);
* Cloud-optimised GeoTIFFs: B03/B04 at 10 m, B8A/B11/B12/SCL at 20 m, uint16 DN, nodata 0,
  processing baseline 03.01 (DN = reflectance * 1e4) before 2022-01-25 and 04.00 after
  (DN = reflectance * 1e4 + 1000), with matching ``raster:bands`` scale/offset;
* SCL classes 0 (no data), 3 (cloud shadow), 4 (vegetation), 5 (not vegetated), 6 (water),
  8/9 (cloud medium/high), 10 (thin cirrus); clouds and shadows are smooth blobs, and a
  one-pixel ring around each cloud is left unflagged but hazy (residual cloud, as in L2A);
* nodata wedges at the swath edge on some dates;
* STAC Items with eo, proj and raster extensions and ``eo:cloud_cover`` from SCL.

Known truth, on the processing grid: ``truth/forest.tif`` (uint8, 1 = forest),
``truth/disturbance_date.tif`` (int32 days since 1970-01-01, 0 = undisturbed),
``truth/disturbance_type.tif`` (uint8: 0 none, 1 clear-cut, 2 partial dieback, 3 thinning,
4 storm damage), ``truth/canopy_loss.tif`` (uint8 percent of the canopy lost at the
disturbance), ``truth/truth.json`` (pixel counts, ``pixels_by_type``, the scenario), and a
tree-cover-density raster ``truth/tree_cover.tif`` (uint8 percent) in EPSG:4326, which
stands in for an existing tree-cover product (``forest_mask.method: file``).

Two scenarios (``synthetic.scenario``):

* ``demo`` (the default): clear-cuts and partial dieback under a smooth seasonal cycle and
  the clouds above. Its random draws are frozen, so the demo's accuracy numbers stay
  comparable from release to release.
* ``hard``: data on which index and monitor choices show their difference, so defaults can
  be chosen by measurement. The same landscape (land cover, tree cover) as the demo for a
  seed, plus, each from a random stream of its own (the demo's draws never see them):

  - disturbances as linear mixtures of the remaining canopy with what the loss exposes:
    clear-cuts (90-100 % loss, soil and slash, ground vegetation back within a year or
    two), partial dieback (as in the demo), thinning (25-45 % loss per stand, exposing
    understory and slash) and storm damage (2-3 storms in the winter half-year, each
    throwing irregular patches clustered along its track, conifers more than broadleaves,
    30-100 % loss, dead wood and root plates). SWIR rises with the loss, so NBR and NDMI
    respond more than NDVI to thinning;
  - snow on winter dates (November-March): bright in the visible and NIR, dark in SWIR,
    seen through leafless crowns and in gaps more than under conifers; SCL 11 mostly, but
    a patchy edge and some missed areas stay labelled 4/5;
  - thin cirrus on some dates (SCL 10 above an optical thickness of 0.03, unflagged
    below), unflagged aerosol haze, and unflagged cloud edges 2-3 pixels beyond the
    demo's one-pixel ring (and darkened shadow edges), all labelled clear (SCL 4/5);
  - deciduous phenology as a double logistic whose start and end of season move by up to
    three weeks from year to year (a few days from pixel to pixel), and, in the last year
    whose September is in the archive, an early leaf fall (25-45 days) on 40 % of the
    deciduous forest, a drought response that is *not* a disturbance in the truth;
  - a geolocation error per granule and date (3 m per axis, at most 10 m): the whole
    granule is sampled from shifted positions, so edges move by a fraction of a pixel.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.warp import reproject
from scipy import ndimage

from .io import atomic_path, write_json

log = logging.getLogger(__name__)

COLLECTION_ID = "sentinel-2-l2a"
EPOCH = dt.date(1970, 1, 1)
BASELINE_04_START = dt.date(2022, 1, 25)

#: asset key -> (common name, resolution in metres)
BANDS = {
    "B03": ("green", 10),
    "B04": ("red", 10),
    "B8A": ("nir08", 20),
    "B11": ("swir16", 20),
    "B12": ("swir22", 20),
}
REFLECTANCE_ORDER = ("green", "red", "nir", "swir16", "swir22")
ASSET_OF = {"green": "B03", "red": "B04", "nir": "B8A", "swir16": "B11", "swir22": "B12"}

# land-cover codes of the synthetic landscape
WATER, CROP, DECIDUOUS, CONIFER = 0, 1, 2, 3
# disturbance-type codes of truth/disturbance_type.tif, and their names in truth.json
CLEAR_CUT, PARTIAL, THINNING, STORM = 1, 2, 3, 4
DISTURBANCE_TYPES = {CLEAR_CUT: "clear_cut", PARTIAL: "partial", THINNING: "thinning",
                     STORM: "storm"}
TYPE_LABELS = {CLEAR_CUT: "clear-cut", PARTIAL: "partial dieback", THINNING: "thinning",
               STORM: "storm damage"}
SCENARIOS = ("demo", "hard")


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. Bounds are in the grid CRS (metres) and cover the tiles."""

    bounds: tuple[float, float, float, float]
    grid_crs: str = "EPSG:3035"
    resolution: float = 20.0
    start: str = "2021-10-01"
    end: str = "2024-09-30"
    revisit_days: int = 5
    disturbance_start: str = "2023-10-15"
    seed: int = 20240601
    scenario: str = "demo"

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"synthetic.scenario must be one of {', '.join(SCENARIOS)}, "
                             f"not {self.scenario!r}")

    @classmethod
    def from_config(cls, cfg: dict) -> SyntheticSpec:
        from .grid import make_tiles

        tiles = make_tiles(cfg)
        bounds = (
            min(t.bounds[0] for t in tiles),
            min(t.bounds[1] for t in tiles),
            max(t.bounds[2] for t in tiles),
            max(t.bounds[3] for t in tiles),
        )
        syn = cfg["synthetic"]
        return cls(
            bounds=bounds,
            grid_crs=cfg["grid"]["crs"],
            resolution=float(cfg["grid"]["resolution"]),
            start=str(syn["start"]),
            end=str(syn["end"]),
            revisit_days=int(syn["revisit_days"]),
            disturbance_start=str(syn["disturbance_start"]),
            seed=int(syn["seed"]),
            scenario=str(syn.get("scenario", "demo")),
        )


@dataclass(frozen=True)
class Granule:
    """One UTM granule: its MGRS-like name, CRS and 20 m grid (10 m is twice as fine)."""

    name: str
    crs: str
    transform20: Affine
    shape20: tuple[int, int]

    def grid(self, res: int) -> tuple[Affine, tuple[int, int]]:
        f = 20 // res
        t = self.transform20
        return Affine(res, 0, t.c, 0, -res, t.f), (self.shape20[0] * f, self.shape20[1] * f)


def utm_epsg(lon: float, lat: float) -> int:
    zone = int(math.floor((lon + 180) / 6)) + 1
    return (32600 if lat >= 0 else 32700) + zone


def _granules(spec: SyntheticSpec, margin: float = 600.0) -> list[Granule]:
    """Two overlapping granules: a western one in the UTM zone of the west edge and an
    eastern one in the zone of the east edge; they overlap over the middle third."""
    to_ll = Transformer.from_crs(spec.grid_crs, 4326, always_xy=True)
    xmin, ymin, xmax, ymax = spec.bounds
    xs = np.linspace(xmin, xmax, 9)
    ys = np.linspace(ymin, ymax, 9)
    gx, gy = np.meshgrid(xs, ys)
    lon, lat = to_ll.transform(gx.ravel(), gy.ravel())
    lon_min, lon_max = float(np.min(lon)), float(np.max(lon))
    lat_min, lat_max = float(np.min(lat)), float(np.max(lat))
    lat_c = (lat_min + lat_max) / 2
    third = (lon_max - lon_min) / 3
    parts = [("W", lon_min, lon_max - third), ("E", lon_min + third, lon_max)]
    granules = []
    for suffix, lo, hi in parts:
        epsg = utm_epsg(lo if suffix == "W" else hi, lat_c)
        to_utm = Transformer.from_crs(4326, epsg, always_xy=True)
        plon, plat = np.meshgrid(np.linspace(lo, hi, 9), np.linspace(lat_min, lat_max, 9))
        ux, uy = to_utm.transform(plon.ravel(), plat.ravel())
        # snap outward to 60 m like real granules, so 10 m and 20 m grids align
        x0 = math.floor((np.min(ux) - margin) / 60) * 60
        y1 = math.ceil((np.max(uy) + margin) / 60) * 60
        x1 = math.ceil((np.max(ux) + margin) / 60) * 60
        y0 = math.floor((np.min(uy) - margin) / 60) * 60
        zone = epsg % 100
        band = "U" if lat_c >= 48 else "T"
        name = f"{zone:02d}{band}{'QB' if suffix == 'W' else 'UR'}"
        granules.append(
            Granule(
                name=name,
                crs=f"EPSG:{epsg}",
                transform20=Affine(20, 0, x0, 0, -20, y1),
                shape20=((y1 - y0) // 20, (x1 - x0) // 20),
            )
        )
    return granules


def _truth_grid(spec: SyntheticSpec, granules: list[Granule]) -> tuple[Affine, tuple[int, int]]:
    """A grid in the processing CRS, aligned with the tiles, covering every granule."""
    res = spec.resolution
    xs, ys = [], []
    for g in granules:
        t, (h, w) = g.grid(20)
        to_grid = Transformer.from_crs(g.crs, spec.grid_crs, always_xy=True)
        cx = np.array([0, w, 0, w]) * t.a + t.c
        cy = np.array([0, 0, h, h]) * t.e + t.f
        gx, gy = to_grid.transform(cx, cy)
        xs += list(gx)
        ys += list(gy)
    x0 = spec.bounds[0] + math.floor((min(xs) - spec.bounds[0]) / res) * res
    y1 = spec.bounds[3] + math.ceil((max(ys) - spec.bounds[3]) / res) * res
    x1 = spec.bounds[0] + math.ceil((max(xs) - spec.bounds[0]) / res) * res
    y0 = spec.bounds[3] + math.floor((min(ys) - spec.bounds[3]) / res) * res
    return Affine(res, 0, x0, 0, -res, y1), (round((y1 - y0) / res), round((x1 - x0) / res))


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to zero mean and unit variance (float32)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return ((field - field.mean()) / (field.std() + 1e-12)).astype(np.float32)


@dataclass
class Landscape:
    """The static truth, on the truth grid: land cover, tree cover, disturbances."""

    cover: np.ndarray  # uint8 land-cover code
    tree_cover: np.ndarray  # uint8 percent
    dist_day: np.ndarray  # int32 days since 1970, 0 = undisturbed
    dist_type: np.ndarray  # uint8 0 / CLEAR_CUT / PARTIAL
    crop_phase: np.ndarray  # float32 days, per-field shift of the crop calendar
    amp: np.ndarray  # float32 per-pixel phenology amplitude factor
    loss: np.ndarray | None = None  # float32 canopy loss 0..1 at the disturbance
    hard: HardFields | None = None  # the hard scenario's extra fields; None in the demo


@dataclass
class HardFields:
    """What the hard scenario adds to the landscape (drawn from its own random stream)."""

    pheno_shift: np.ndarray  # float32 days, static per-pixel shift of the deciduous season
    drought_days: np.ndarray  # float32 days the leaf fall comes early in the drought year
    drought_year: int
    storm_days: list[int]


def _landscape(spec: SyntheticSpec, shape: tuple[int, int], rng: np.random.Generator) -> Landscape:
    forest_field = _smooth_field(rng, shape, sigma=9)
    forest = forest_field > np.quantile(forest_field, 0.42)
    conifer = _smooth_field(rng, shape, sigma=12) > 0.2
    water_field = _smooth_field(rng, shape, sigma=7)
    water = (~forest) & (water_field > np.quantile(water_field, 0.975))
    cover = np.full(shape, CROP, dtype=np.uint8)
    cover[forest & conifer] = CONIFER
    cover[forest & ~conifer] = DECIDUOUS
    cover[water] = WATER

    tcd = np.where(
        forest,
        70 + 20 * np.clip(forest_field, 0, 1) + rng.normal(0, 5, shape),
        np.clip(5 + rng.normal(0, 4, shape), 0, 25),
    )
    tree_cover = np.clip(tcd, 0, 100).astype(np.uint8)

    # disturbances: rectangles (clear-cuts) and blobs (partial dieback) inside forest,
    # dated uniformly between disturbance_start and 60 days before the archive ends
    d0 = (dt.date.fromisoformat(spec.disturbance_start) - EPOCH).days
    d1 = (dt.date.fromisoformat(spec.end) - EPOCH).days - 60
    if d1 <= d0:
        raise ValueError(
            f"synthetic.disturbance_start ({spec.disturbance_start}) must be at least 60 days "
            f"before synthetic.end ({spec.end}) so that disturbances can be detected."
        )
    if spec.scenario == "hard":
        # the hard scenario draws its disturbances and extra fields from a stream of its
        # own; the demo's draws below (and after) never see it
        return _hard_landscape(spec, shape, rng, cover, tree_cover, forest, d0, d1)
    dist_day = np.zeros(shape, dtype=np.int32)
    dist_type = np.zeros(shape, dtype=np.uint8)
    forest_px = int(forest.sum())
    target = 0.09 * forest_px
    disturbed = 0
    attempts = 0
    while disturbed < target and attempts < 5000:
        attempts += 1
        h, w = int(rng.integers(4, 15)), int(rng.integers(4, 15))
        r, c = int(rng.integers(0, shape[0] - h)), int(rng.integers(0, shape[1] - w))
        window = (slice(r, r + h), slice(c, c + w))
        patch = forest[window] & (dist_day[window] == 0)
        if patch.mean() < 0.8:
            continue
        kind = CLEAR_CUT if rng.random() < 0.75 else PARTIAL
        if kind == PARTIAL:  # irregular: keep an ellipse inside the rectangle
            yy, xx = np.mgrid[0:h, 0:w]
            patch &= ((yy - h / 2 + 0.5) / (h / 2)) ** 2 + ((xx - w / 2 + 0.5) / (w / 2)) ** 2 <= 1
        dist_day[window][patch] = int(rng.integers(d0, d1))
        dist_type[window][patch] = kind
        disturbed += int(patch.sum())

    crop_phase = (_smooth_field(rng, shape, sigma=5) * 20).astype(np.float32)
    amp = (1 + 0.08 * _smooth_field(rng, shape, sigma=3)).astype(np.float32)
    loss = np.select([dist_type == CLEAR_CUT, dist_type == PARTIAL], [1.0, 0.35], 0.0)
    return Landscape(cover, tree_cover, dist_day, dist_type, crop_phase, amp,
                     loss=loss.astype(np.float32))


def _reflectance(land: Landscape, day: int, rng: np.random.Generator, seed: int) -> np.ndarray:
    """Surface reflectance (5, y, x) float32, bands in REFLECTANCE_ORDER, cloud-free."""
    date = EPOCH + dt.timedelta(days=day)
    doy = date.timetuple().tm_yday
    # inter-annual variability: each year's season is a little stronger/weaker and earlier/later
    year_rng = np.random.default_rng([seed, 1_000_000 + date.year])
    year_amp, year_shift = 1 + 0.1 * year_rng.standard_normal(), 8 * year_rng.standard_normal()
    # forest phenology: 0 in winter, 1 at the mid-July peak
    p = year_amp * (0.5 - 0.5 * math.cos(2 * math.pi * (doy - 15 - year_shift) / 365.25))
    shape = land.cover.shape
    out = np.empty((5,) + shape, dtype=np.float32)
    # columns: green, red, nir, swir16, swir22 as (base, seasonal slope)
    coeff = {
        DECIDUOUS: ((0.055, -0.010), (0.060, -0.035), (0.20, 0.17), (0.20, -0.06), (0.11, -0.05)),
        CONIFER: ((0.040, -0.005), (0.035, -0.010), (0.22, 0.06), (0.13, -0.02), (0.060, -0.015)),
        WATER: ((0.050, 0.0), (0.030, 0.0), (0.020, 0.0), (0.010, 0.0), (0.008, 0.0)),
    }
    for code, bands in coeff.items():
        sel = land.cover == code
        amp = land.amp[sel]
        for i, (base, slope) in enumerate(bands):
            out[i][sel] = base + slope * p * amp
    # crops: green-up in spring, harvest in July, bare until autumn sowing
    sel = land.cover == CROP
    cdoy = doy + land.crop_phase[sel]
    pc = np.clip(np.sin(np.pi * (cdoy - 80) / 110), 0, None) ** 1.5
    pc = np.where((cdoy > 80) & (cdoy < 190), pc, 0.05).astype(np.float32)
    for i, (bare, veg) in enumerate(((0.09, 0.06), (0.13, 0.04), (0.24, 0.42), (0.30, 0.18), (0.22, 0.09))):
        out[i][sel] = bare + (veg - bare) * pc

    # disturbance: blend towards slash/bare soil, recovering over years
    since = day - land.dist_day
    hit = (land.dist_day > 0) & (since >= 0)
    if hit.any():
        strength = np.where(land.dist_type[hit] == CLEAR_CUT, 1.0, 0.35)
        m = (strength * np.exp(-since[hit] / 1100.0)).astype(np.float32)
        for i, bare in enumerate((0.08, 0.10, 0.20, 0.28, 0.19)):
            out[i][hit] = (1 - m) * out[i][hit] + m * bare
    # scene-wide atmospheric residual and per-pixel sensor noise
    out += rng.normal(0, 0.003, (5, 1, 1)).astype(np.float32)
    out += rng.normal(0, 0.006, out.shape).astype(np.float32) * (0.5 + out)
    return np.clip(out, 0.0005, 1.0)


def _clouds(shape: tuple[int, int], rng: np.random.Generator):
    """Per-date clouds: returns (cloud, thin, shadow, haze_ring) boolean arrays."""
    u = rng.random()
    cover = rng.uniform(0, 0.03) if u < 0.35 else rng.uniform(0.05, 0.6) if u < 0.7 else rng.uniform(0.6, 1.0)
    field = _smooth_field(rng, shape, sigma=rng.uniform(4, 10))
    if cover <= 0.0:
        cloud = np.zeros(shape, bool)
    else:
        cloud = field > np.quantile(field, 1 - cover)
    thin = cloud & (field < np.quantile(field, 1 - cover * 0.6)) if cover > 0 else cloud
    dy, dx = int(rng.integers(4, 9)), int(rng.integers(3, 8))
    shadow = np.zeros(shape, bool)
    shadow[dy:, dx:] = cloud[:-dy, :-dx]
    shadow &= ~cloud
    ring = ndimage.binary_dilation(cloud, iterations=1) & ~cloud & ~shadow
    return cloud, thin, shadow, ring


def _sample_coords(granule: Granule, res: int, grid_crs: str,
                   truth_transform: Affine) -> tuple[np.ndarray, np.ndarray]:
    """For each granule pixel centre at ``res``: its fractional truth-grid (row, col)."""
    t, (h, w) = granule.grid(res)
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    ux = t.c + cols * t.a
    uy = t.f + rows * t.e
    to_grid = Transformer.from_crs(granule.crs, grid_crs, always_xy=True)
    gx, gy = to_grid.transform(ux.ravel(), uy.ravel())
    inv = ~truth_transform
    tc, tr = inv * (np.asarray(gx), np.asarray(gy))
    return np.asarray(tr).reshape(h, w), np.asarray(tc).reshape(h, w)


def _nearest(tr: np.ndarray, tc: np.ndarray,
             truth_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The truth-grid pixel holding each fractional (row, col), clipped, and validity."""
    tr = np.floor(tr).astype(np.int64)
    tc = np.floor(tc).astype(np.int64)
    ok = (tr >= 0) & (tr < truth_shape[0]) & (tc >= 0) & (tc < truth_shape[1])
    return np.clip(tr, 0, truth_shape[0] - 1), np.clip(tc, 0, truth_shape[1] - 1), ok


def _sample_index(granule: Granule, res: int, grid_crs: str, truth_transform: Affine,
                  truth_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each granule pixel at ``res``: the nearest truth-grid (row, col), and validity."""
    return _nearest(*_sample_coords(granule, res, grid_crs, truth_transform), truth_shape)


COG_PROFILE = dict(driver="COG", compress="DEFLATE", level=1, predictor=2, blocksize=512,
                   overviews="AUTO")


def _write_cog(path: Path, data: np.ndarray, crs: str, transform: Affine, resampling: str) -> None:
    profile = dict(
        COG_PROFILE, height=data.shape[0], width=data.shape[1], count=1, dtype=data.dtype,
        crs=crs, transform=transform, nodata=0, overview_resampling=resampling,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def _dates(spec: SyntheticSpec) -> list[dt.date]:
    d, end = dt.date.fromisoformat(spec.start), dt.date.fromisoformat(spec.end)
    out = []
    while d <= end:
        out.append(d)
        d += dt.timedelta(days=spec.revisit_days)
    return out


def _footprint_lonlat(granule: Granule) -> list[list[float]]:
    t, (h, w) = granule.grid(20)
    to_ll = Transformer.from_crs(granule.crs, 4326, always_xy=True)
    xs = [t.c, t.c + w * t.a, t.c + w * t.a, t.c, t.c]
    ys = [t.f, t.f, t.f + h * t.e, t.f + h * t.e, t.f]
    lon, lat = to_ll.transform(xs, ys)
    return [[round(a, 7), round(b, 7)] for a, b in zip(lon, lat, strict=True)]


def _item(granule: Granule, date: dt.date, seconds: int, baseline: str, cloud_cover: float,
          data_cover: float, orbit: int, platform: str, hrefs: dict[str, str]) -> dict:
    when = dt.datetime.combine(date, dt.time(10, 20, seconds), tzinfo=dt.UTC)
    stamp = when.strftime("%Y%m%dT%H%M%S")
    item_id = f"S2{platform[-1].upper()}_MSIL2A_{stamp}_N{baseline.replace('.', '')}_R{orbit:03d}_T{granule.name}"
    new_baseline = baseline >= "04.00"
    footprint = _footprint_lonlat(granule)
    lons = [p[0] for p in footprint]
    lats = [p[1] for p in footprint]
    assets = {}
    for key, (common, res) in BANDS.items():
        t, (h, w) = granule.grid(res)
        assets[key] = {
            "href": hrefs[key],
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data", "reflectance"],
            "title": f"{key} ({common}) {res} m",
            "eo:bands": [{"name": key, "common_name": common}],
            "gsd": res,
            "proj:shape": [h, w],
            "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "raster:bands": [{
                "nodata": 0, "data_type": "uint16", "spatial_resolution": res,
                "scale": 0.0001, "offset": -0.1 if new_baseline else 0.0,
            }],
        }
    t, (h, w) = granule.grid(20)
    assets["SCL"] = {
        "href": hrefs["SCL"],
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "roles": ["data"],
        "title": "Scene classification map (SCL) 20 m",
        "gsd": 20,
        "proj:shape": [h, w],
        "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
        "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}],
    }
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        ],
        "id": item_id,
        "collection": COLLECTION_ID,
        "geometry": {"type": "Polygon", "coordinates": [footprint]},
        "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "properties": {
            "datetime": when.isoformat().replace("+00:00", "Z"),
            "platform": platform,
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "eo:cloud_cover": round(cloud_cover, 2),
            "s2:nodata_pixel_percentage": round(100 * (1 - data_cover), 2),
            "s2:processing_baseline": baseline,
            "s2:mgrs_tile": granule.name,
            "sat:relative_orbit": orbit,
            "proj:code": granule.crs,
            "synthetic": True,
        },
        "links": [],
        "assets": assets,
    }


def _collection(spec: SyntheticSpec, items_bbox: list[float]) -> dict:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": COLLECTION_ID,
        "title": "Synthetic Sentinel-2 L2A (forestwatch demo archive)",
        "description": "Deterministic synthetic Sentinel-2 L2A archive with known disturbance truth.",
        "license": "CC0-1.0",
        "extent": {
            "spatial": {"bbox": [items_bbox]},
            "temporal": {"interval": [[f"{spec.start}T00:00:00Z", f"{spec.end}T23:59:59Z"]]},
        },
        "summaries": {"platform": ["sentinel-2a", "sentinel-2b"]},
        "item_assets": {
            key: {"eo:bands": [{"name": key, "common_name": common}], "roles": ["data"],
                  "raster:bands": [{"nodata": 0, "data_type": "uint16"}]}
            for key, (common, _) in BANDS.items()
        } | {"SCL": {"roles": ["data"], "raster:bands": [{"nodata": 0, "data_type": "uint8"}]}},
        "links": [],
    }


def generate_archive(folder: str | Path, spec: SyntheticSpec, workers: int | None = None) -> Path:
    """Generate the archive under ``folder``; return the path of ``items.json``.

    ``items.json`` (a STAC ItemCollection with asset hrefs relative to it) is written last
    and atomically, so its presence means the archive is complete.
    """
    folder = Path(folder)
    rng = np.random.default_rng(spec.seed)
    granules = _granules(spec)
    truth_transform, truth_shape = _truth_grid(spec, granules)
    land = _landscape(spec, truth_shape, rng)
    _write_truth(folder / "truth", spec, land, truth_transform)

    samplers = {
        (g.name, res): _sample_index(g, res, spec.grid_crs, truth_transform, truth_shape)
        for g in granules
        for res in (10, 20)
    }
    # the hard scenario shifts every granule a little on each date: it samples from the
    # fractional coordinates
    coords = None if land.hard is None else {
        (g.name, res): _sample_coords(g, res, spec.grid_crs, truth_transform)
        for g in granules
        for res in (10, 20)
    }
    dates = _dates(spec)
    context = (folder, spec, granules, land, truth_shape, samplers, coords)
    workers = max(1, min(workers or os.cpu_count() or 1, 8))
    if workers == 1:
        _init_worker(context)
        per_date = [_generate_date(n, d) for n, d in enumerate(dates)]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"),
                                 initializer=_init_worker, initargs=(context,)) as pool:
            per_date = list(pool.map(_generate_date, range(len(dates)), dates, chunksize=4))
    items = [item for date_items in per_date for item in date_items]
    bbox = [
        min(i["bbox"][0] for i in items), min(i["bbox"][1] for i in items),
        max(i["bbox"][2] for i in items), max(i["bbox"][3] for i in items),
    ]
    write_json(folder / "collection.json", _collection(spec, bbox))
    write_json(folder / "archive.json", {"spec": asdict(spec), "items": len(items),
                                         "dates": len(dates),
                                         "granules": [g.name for g in granules]})
    out = folder / "items.json"
    write_json(out, {"type": "FeatureCollection", "features": items})
    return out


_CONTEXT: tuple = ()


def _init_worker(context: tuple) -> None:
    global _CONTEXT
    _CONTEXT = context


def _generate_date(n: int, date: dt.date) -> list[dict]:
    """Write one acquisition date (every granule); its randomness depends only on the seed
    and the date, so the archive is identical whatever the number of workers."""
    folder, spec, granules, land, truth_shape, samplers, coords = _CONTEXT
    day = (date - EPOCH).days
    rng = np.random.default_rng([spec.seed, day])
    if land.hard is None:
        refl = _reflectance(land, day, rng, spec.seed)
    else:
        refl = _reflectance_hard(land, day, rng, spec.seed)
    cloud, thin, shadow, ring = _clouds(truth_shape, rng)
    if land.hard is not None:
        # the hard scenario's own per-date stream: the demo's draws from rng stay as they are
        hrng = np.random.default_rng([spec.seed, day, 2])
        refl, extra = _hard_surface_and_air(refl, land, date, cloud, shadow, ring, hrng)
    refl, scl = _apply_atmosphere(refl, land, cloud, thin, shadow, ring, rng)
    if land.hard is not None:
        scl = _hard_scl(scl, extra, cloud, shadow)
        samplers = _shifted_samplers(coords, truth_shape, spec.resolution, granules, hrng)
    baseline = "04.00" if date >= BASELINE_04_START else "03.01"
    platform = "sentinel-2a" if n % 2 == 0 else "sentinel-2b"
    wedge_date = rng.random() < 0.15
    return [
        _write_granule(folder, granule, date, refl, scl, samplers, baseline,
                       wedge=wedge_date and gi == 0, seconds=21 + 9 * gi, orbit=65,
                       platform=platform)
        for gi, granule in enumerate(granules)
    ]


def _apply_atmosphere(refl, land, cloud, thin, shadow, ring, rng):
    """Add clouds, shadows and residual haze; return (reflectance, SCL) on the truth grid."""
    refl = refl.copy()
    brightness = rng.uniform(0.25, 0.55)
    thick = cloud & ~thin
    for i in range(5):
        refl[i][thick] = brightness + rng.normal(0, 0.02, int(thick.sum()))
        refl[i][thin] = 0.5 * refl[i][thin] + 0.5 * (brightness * 0.6)
        refl[i][shadow] *= 0.45
    # residual haze around clouds, unflagged in SCL: brightens visible more than NIR
    refl[0][ring] += 0.06
    refl[1][ring] += 0.06
    refl[2][ring] += 0.02
    ndvi = (refl[2] - refl[1]) / (refl[2] + refl[1])
    scl = np.where(ndvi > 0.35, 4, 5).astype(np.uint8)
    scl[land.cover == WATER] = 6
    scl[shadow] = 3
    scl[thin] = 10
    scl[thick] = np.where(rng.random(int(thick.sum())) < 0.5, 8, 9).astype(np.uint8)
    return np.clip(refl, 0.0001, 1.0), scl


def _write_granule(folder, granule, date, refl, scl, samplers, baseline, wedge, seconds,
                   orbit, platform) -> dict:
    offset = 1000 if baseline >= "04.00" else 0
    stamp = date.strftime("%Y%m%d")
    rel_dir = Path("data") / granule.name / stamp
    out_dir = folder / rel_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    hrefs = {}
    valid20 = None
    for res in (10, 20):
        tr, tc, ok = samplers[(granule.name, res)]
        t, (h, w) = granule.grid(res)
        valid = ok.copy()
        if wedge:  # nodata wedge along the eastern swath edge
            rows, cols = np.mgrid[0:h, 0:w]
            valid &= cols < (0.55 * w + 0.35 * rows * w / h)
        if res == 20:
            valid20 = valid
        for key, (_, band_res) in BANDS.items():
            if band_res != res:
                continue
            i = REFLECTANCE_ORDER.index({"B03": "green", "B04": "red", "B8A": "nir",
                                         "B11": "swir16", "B12": "swir22"}[key])
            dn = np.round(refl[i][tr, tc] * 10000 + offset)
            dn = np.clip(dn, 1, 65535).astype(np.uint16)
            dn[~valid] = 0
            _write_cog(out_dir / f"{key}.tif", dn, granule.crs, t, "average")
            hrefs[key] = (rel_dir / f"{key}.tif").as_posix()
    tr, tc, _ = samplers[(granule.name, 20)]
    t20, _ = granule.grid(20)
    scl_g = scl[tr, tc].copy()
    scl_g[~valid20] = 0
    _write_cog(out_dir / "SCL.tif", scl_g, granule.crs, t20, "nearest")
    hrefs["SCL"] = (rel_dir / "SCL.tif").as_posix()
    n_valid = int(valid20.sum())
    cloudy = int(np.isin(scl_g, (8, 9, 10)).sum())
    cloud_cover = 100.0 * cloudy / max(n_valid, 1)
    return _item(granule, date, seconds, baseline, cloud_cover, n_valid / valid20.size,
                 orbit, platform, hrefs)


def _write_truth(folder: Path, spec: SyntheticSpec, land: Landscape, transform: Affine) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    h, w = land.cover.shape
    base = dict(driver="GTiff", height=h, width=w, count=1, crs=spec.grid_crs,
                transform=transform, compress="DEFLATE")
    forest = np.isin(land.cover, (DECIDUOUS, CONIFER)).astype(np.uint8)
    # the codes the scenario uses (the demo's description is as it always was)
    types = (CLEAR_CUT, PARTIAL) if land.hard is None else tuple(DISTURBANCE_TYPES)
    loss = np.round(100 * land.loss) * (land.dist_type > 0)
    layers = {
        "forest.tif": (forest, "uint8", "1 = forest, 0 = not forest"),
        "land_cover.tif": (land.cover, "uint8", "0 water, 1 crop/grass, 2 deciduous, 3 conifer"),
        "disturbance_date.tif": (land.dist_day, "int32", "days since 1970-01-01; 0 = undisturbed"),
        "disturbance_type.tif": (land.dist_type, "uint8", ", ".join(
            ["0 none"] + [f"{t} {TYPE_LABELS[t]}" for t in types])),
        "canopy_loss.tif": (loss, "uint8", "canopy loss at the disturbance, percent; 0 = none"),
    }
    for name, (data, dtype, desc) in layers.items():
        with atomic_path(folder / name) as tmp, rasterio.open(tmp, "w", dtype=dtype, **base) as dst:
            dst.write(data.astype(dtype), 1)
            dst.update_tags(1, description=desc)
    # tree-cover density in EPSG:4326, standing in for an external tree-cover product
    to_ll = Transformer.from_crs(spec.grid_crs, 4326, always_xy=True)
    x0, y1 = transform.c, transform.f
    x1, y0 = x0 + w * transform.a, y1 + h * transform.e
    lon, lat = to_ll.transform([x0, x1, x0, x1], [y0, y0, y1, y1])
    res_deg = 0.0002
    dst_t = Affine(res_deg, 0, min(lon), 0, -res_deg, max(lat))
    dst_shape = (math.ceil((max(lat) - min(lat)) / res_deg), math.ceil((max(lon) - min(lon)) / res_deg))
    tcd = np.zeros(dst_shape, dtype=np.uint8)
    reproject(land.tree_cover, tcd, src_transform=transform, src_crs=spec.grid_crs,
              dst_transform=dst_t, dst_crs="EPSG:4326", resampling=Resampling.nearest,
              dst_nodata=255)
    with atomic_path(folder / "tree_cover.tif") as tmp, rasterio.open(
        tmp, "w", driver="GTiff", height=dst_shape[0], width=dst_shape[1], count=1,
        dtype="uint8", crs="EPSG:4326", transform=dst_t, nodata=255, compress="DEFLATE",
    ) as dst:
        dst.write(tcd, 1)
        dst.update_tags(1, description="tree cover density, percent")
    summary = {
        "scenario": spec.scenario,
        "forest_pixels": int(forest.sum()),
        "disturbed_pixels": int((land.dist_day > 0).sum()),
        "clear_cut_pixels": int((land.dist_type == CLEAR_CUT).sum()),
        "partial_pixels": int((land.dist_type == PARTIAL).sum()),
        "pixels_by_type": {DISTURBANCE_TYPES[t]: int((land.dist_type == t).sum()) for t in types},
        "first_disturbance": str(EPOCH + dt.timedelta(days=int(land.dist_day[land.dist_day > 0].min()))),
        "last_disturbance": str(EPOCH + dt.timedelta(days=int(land.dist_day.max()))),
        "resolution": spec.resolution,
        "crs": spec.grid_crs,
    }
    write_json(folder / "truth.json", summary)


# --------------------------------------------------------------------------- hard scenario
#
# Everything below runs only with ``scenario: hard``, and draws only from random streams of
# its own (``[seed, 2_000_000]`` for the landscape, ``[seed, 3_000_000 + year]`` per year,
# ``[seed, day, 2]`` per date), so the demo's draws, and so its archive, do not depend on it.

# endmember spectra (green, red, nir, swir16, swir22), surface reflectance
SOIL_SLASH = (0.08, 0.10, 0.20, 0.28, 0.19)  # bare soil with slash: the demo's "bare"
DEAD_WOOD = (0.06, 0.07, 0.23, 0.27, 0.18)  # fallen stems, root plates, drying crowns
UNDERSTORY_SUMMER = (0.07, 0.05, 0.32, 0.22, 0.11)  # grass, shrubs, young trees in leaf
UNDERSTORY_WINTER = (0.07, 0.09, 0.18, 0.26, 0.18)  # leaf litter and dead grass
SNOW = (0.80, 0.78, 0.72, 0.10, 0.06)  # fresh snow: bright in VNIR, dark in SWIR
CIRRUS = (0.50, 0.50, 0.48, 0.30, 0.20)  # ice cloud: flat in VNIR, darker in SWIR
HAZE = (0.030, 0.024, 0.010, 0.003, 0.0015)  # residual aerosol path reflectance per unit

#: share of disturbed forest by type, and (canopy e-folding days) of the recovery
HARD_SHARES = {CLEAR_CUT: 0.045, PARTIAL: 0.015, THINNING: 0.04, STORM: 0.03}
RECOVERY_DAYS = {CLEAR_CUT: 2500.0, PARTIAL: 1100.0, THINNING: 1500.0, STORM: 2500.0}
#: probability that a date has snow, by month
SNOW_PROBABILITY = {11: 0.1, 12: 0.35, 1: 0.5, 2: 0.4, 3: 0.15}
#: share of the ground's snow seen from above, by land cover (conifers hide most of it)
SNOW_VISIBLE = {WATER: 0.0, CROP: 1.0, DECIDUOUS: 0.7, CONIFER: 0.35}
GEOLOCATION_SIGMA_M = 3.0  # per axis and granule-date; clipped at 10 m


def _hard_landscape(spec: SyntheticSpec, shape: tuple[int, int], rng: np.random.Generator,
                    cover, tree_cover, forest, d0: int, d1: int) -> Landscape:
    """Four disturbance types with their canopy loss, and the fields of the hard scenario's
    phenology (per-pixel season shift, the drought year's early leaf fall)."""
    crop_phase = (_smooth_field(rng, shape, sigma=5) * 20).astype(np.float32)
    amp = (1 + 0.08 * _smooth_field(rng, shape, sigma=3)).astype(np.float32)
    hrng = np.random.default_rng([spec.seed, 2_000_000])
    dist_day = np.zeros(shape, dtype=np.int32)
    dist_type = np.zeros(shape, dtype=np.uint8)
    loss = np.zeros(shape, dtype=np.float32)
    forest_px = int(forest.sum())

    # storm damage: 2-3 storms in the winter half-year, each throwing irregular patches
    # clustered around a track, conifers (shallow-rooted spruce) more than broadleaves
    winter = [d for d in range(d0, d1) if (EPOCH + dt.timedelta(days=d)).month in (10, 11, 12, 1, 2, 3)]
    n_storms = int(hrng.integers(2, 4))
    storm_days = sorted(int(d) for d in hrng.choice(winter or list(range(d0, d1)), n_storms,
                                                      replace=False))
    weights = hrng.dirichlet(np.full(n_storms, 2.0))
    rough = _smooth_field(hrng, shape, sigma=3)
    texture = _smooth_field(hrng, shape, sigma=1)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    susceptible = np.where(cover == CONIFER, 1.0, 0.45)
    for day, weight in zip(storm_days, weights, strict=True):
        cy, cx = hrng.uniform(0, shape[0]), hrng.uniform(0, shape[1])
        radius = hrng.uniform(0.2, 0.35) * max(shape)
        track = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius ** 2))
        score = rough + 2.5 * track * susceptible
        free = forest & (dist_day == 0)
        n_px = weight * HARD_SHARES[STORM] * forest_px
        thr = np.quantile(score[free], 1 - min(1.0, n_px / max(int(free.sum()), 1)))
        labels, n = ndimage.label(free & (score > thr))
        severity = hrng.uniform(0.45, 1.0, n + 1)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        hit = (labels > 0) & (sizes[labels] >= 3)
        dist_day[hit] = day
        dist_type[hit] = STORM
        loss[hit] = np.clip(severity[labels[hit]] + 0.2 * texture[hit], 0.3, 1.0)

    # compartments: clear-cuts, thinnings (larger stands) and partial dieback (ellipses)
    target = {t: HARD_SHARES[t] * forest_px for t in (CLEAR_CUT, THINNING, PARTIAL)}
    done = dict.fromkeys(target, 0)
    attempts = 0
    while any(done[t] < target[t] for t in target) and attempts < 20000:
        attempts += 1
        left = np.array([max(target[t] - done[t], 0) for t in target])
        kind = list(target)[int(hrng.choice(len(target), p=left / left.sum()))]
        lo, hi = (6, 21) if kind == THINNING else (4, 15)
        h, w = int(hrng.integers(lo, hi)), int(hrng.integers(lo, hi))
        r, c = int(hrng.integers(0, shape[0] - h)), int(hrng.integers(0, shape[1] - w))
        window = (slice(r, r + h), slice(c, c + w))
        patch = forest[window] & (dist_day[window] == 0)
        if patch.mean() < 0.8:
            continue
        if kind == PARTIAL:
            py, px = np.mgrid[0:h, 0:w]
            patch &= ((py - h / 2 + 0.5) / (h / 2)) ** 2 + ((px - w / 2 + 0.5) / (w / 2)) ** 2 <= 1
        if kind == CLEAR_CUT:  # a few retention trees
            value = np.full(patch.shape, hrng.uniform(0.9, 1.0), np.float32)
        elif kind == THINNING:  # 25-45 % of the canopy removed, a little unevenly
            value = np.clip(hrng.uniform(0.27, 0.43) + 0.03 * texture[window], 0.25, 0.45)
        else:
            value = np.full(patch.shape, 0.35, np.float32)
        dist_day[window][patch] = int(hrng.integers(d0, d1))
        dist_type[window][patch] = kind
        loss[window][patch] = value[patch]
        done[kind] += int(patch.sum())

    # phenology: a static per-pixel shift of the deciduous season (aspect, soils), and
    # the drought year (the last one whose September is in the archive) in which part of
    # the deciduous forest drops its leaves 25-45 days early
    pheno_shift = (4 * _smooth_field(hrng, shape, sigma=6)).astype(np.float32)
    end = dt.date.fromisoformat(spec.end)
    drought_year = end.year if end >= dt.date(end.year, 9, 1) else end.year - 1
    dry = _smooth_field(hrng, shape, sigma=10)
    deciduous = cover == DECIDUOUS
    dry_area = deciduous & (dry > np.quantile(dry[deciduous], 0.6)) if deciduous.any() else deciduous
    drought_days = np.where(dry_area, 25 + 20 * hrng.random(shape), 0).astype(np.float32)
    hard = HardFields(pheno_shift, drought_days, drought_year, storm_days)
    return Landscape(cover, tree_cover, dist_day, dist_type, crop_phase, amp, loss=loss,
                     hard=hard)


def _logistic(x):
    return 1.0 / (1.0 + np.exp(-x))


def _reflectance_hard(land: Landscape, day: int, rng: np.random.Generator, seed: int) -> np.ndarray:
    """The hard scenario's cloud-free surface reflectance (5, y, x) float32.

    Deciduous phenology is a double logistic whose start and end of season move by up to
    three weeks from year to year (and a few days from pixel to pixel); disturbed pixels
    mix the remaining canopy with what the loss exposes (linear mixing of endmembers)."""
    date = EPOCH + dt.timedelta(days=day)
    doy = date.timetuple().tm_yday
    hard = land.hard
    year_rng = np.random.default_rng([seed, 1_000_000 + date.year])
    year_amp, year_shift = 1 + 0.1 * year_rng.standard_normal(), 8 * year_rng.standard_normal()
    sos_shift, eos_shift = np.clip(9 * np.random.default_rng([seed, 3_000_000 + date.year])
                                   .standard_normal(2), -21, 21)
    p_cos = year_amp * (0.5 - 0.5 * math.cos(2 * math.pi * (doy - 15 - year_shift) / 365.25))
    shape = land.cover.shape
    out = np.empty((5,) + shape, dtype=np.float32)
    coeff = {
        DECIDUOUS: ((0.055, -0.010), (0.060, -0.035), (0.20, 0.17), (0.20, -0.06), (0.11, -0.05)),
        CONIFER: ((0.040, -0.005), (0.035, -0.010), (0.22, 0.06), (0.13, -0.02), (0.060, -0.015)),
        WATER: ((0.050, 0.0), (0.030, 0.0), (0.020, 0.0), (0.010, 0.0), (0.008, 0.0)),
    }
    for code, bands in coeff.items():
        sel = land.cover == code
        if code == DECIDUOUS:
            sos = 118 + sos_shift + hard.pheno_shift[sel]
            eos = 292 + eos_shift + hard.pheno_shift[sel]
            if date.year == hard.drought_year:
                eos = eos - hard.drought_days[sel]
            p = year_amp * (_logistic((doy - sos) / 7) - _logistic((doy - eos) / 9))
        else:
            p = p_cos
        scale = p * land.amp[sel]
        for i, (base, slope) in enumerate(bands):
            out[i][sel] = base + slope * scale
    sel = land.cover == CROP
    cdoy = doy + land.crop_phase[sel]
    pc = np.clip(np.sin(np.pi * (cdoy - 80) / 110), 0, None) ** 1.5
    pc = np.where((cdoy > 80) & (cdoy < 190), pc, 0.05).astype(np.float32)
    for i, (bare, veg) in enumerate(((0.09, 0.06), (0.13, 0.04), (0.24, 0.42), (0.30, 0.18), (0.22, 0.09))):
        out[i][sel] = bare + (veg - bare) * pc

    since = day - land.dist_day
    hit = (land.dist_day > 0) & (since >= 0)
    if hit.any():
        kind, s, loss = land.dist_type[hit], since[hit].astype(np.float32), land.loss[hit]
        tau = np.select([kind == t for t in RECOVERY_DAYS], list(RECOVERY_DAYS.values()))
        m = (loss * np.exp(-s / tau)).astype(np.float32)
        # ground vegetation takes over open ground within a year or two
        regrowth = np.select([kind == CLEAR_CUT, kind == STORM], [0.6, 0.4], 0.0)
        g = regrowth * np.minimum(1.0, s / 365.0)
        pu = float(np.clip(p_cos, 0, 1))
        for i in range(5):
            under = UNDERSTORY_WINTER[i] + (UNDERSTORY_SUMMER[i] - UNDERSTORY_WINTER[i]) * pu
            ground = np.select(
                [kind == CLEAR_CUT, kind == THINNING, kind == STORM],
                [SOIL_SLASH[i], 0.6 * under + 0.4 * SOIL_SLASH[i],
                 0.6 * DEAD_WOOD[i] + 0.4 * SOIL_SLASH[i]],
                SOIL_SLASH[i],
            )
            ground = (1 - g) * ground + g * under
            out[i][hit] = (1 - m) * out[i][hit] + m * ground
    out += rng.normal(0, 0.003, (5, 1, 1)).astype(np.float32)
    out += rng.normal(0, 0.006, out.shape).astype(np.float32) * (0.5 + out)
    return np.clip(out, 0.0005, 1.0)


def _mix(refl: np.ndarray, weight: np.ndarray, spectrum) -> None:
    """In place: refl = (1 - weight) * refl + weight * spectrum, band by band."""
    for i, value in enumerate(spectrum):
        refl[i] += weight * (value - refl[i])


def _hard_surface_and_air(refl, land, date: dt.date, cloud, shadow, ring, hrng):
    """Snow, thin cirrus, unflagged haze and unflagged cloud and shadow edges.

    Returns the reflectance and the masks the SCL needs: ``snow`` (flagged snow, SCL 11)
    and ``cirrus`` (flagged thin cirrus, SCL 10). Some snow (thin, or missed patches) and
    the thinnest cirrus stay unflagged, as do haze and the edges."""
    refl = refl.copy()
    shape = land.cover.shape
    day = (date - EPOCH).days
    snow_flag = np.zeros(shape, bool)
    if hrng.random() < SNOW_PROBABILITY.get(date.month, 0.0):
        # snow lies on 40-100 % of the scene, with a patchy edge (the snow line)
        covered = hrng.uniform(0.4, 1.0)
        field = _smooth_field(hrng, shape, sigma=15)
        line = np.quantile(field, 1 - covered) if covered < 1 else -np.inf
        ground = np.clip((field - line) / 0.3 + 0.5, 0, 1)
        visible = np.choose(land.cover, [SNOW_VISIBLE[c] for c in (WATER, CROP, DECIDUOUS, CONIFER)])
        opened = land.loss * ((land.dist_day > 0) & (land.dist_day <= day))
        s = (ground * (visible + (1 - visible) * opened)).astype(np.float32)
        _mix(refl, s, SNOW)
        missed = _smooth_field(hrng, shape, sigma=6) > 1.5  # ~7 % of the area
        snow_flag = (s > 0.25) & ~missed
    cirrus_flag = np.zeros(shape, bool)
    if hrng.random() < 0.2:
        # optical thickness up to 0.04-0.15; the L2A flags it above 0.03
        t = hrng.uniform(0.04, 0.15) * np.clip(_smooth_field(hrng, shape, sigma=18), 0, 2) / 2
        _mix(refl, t.astype(np.float32), CIRRUS)
        cirrus_flag = t > 0.03
    if hrng.random() < 0.3:
        tau = hrng.uniform(0.2, 0.7) * np.clip(1 + _smooth_field(hrng, shape, sigma=25), 0, None) / 2
        for i, value in enumerate(HAZE):
            refl[i] += (tau * value).astype(np.float32)
    if cloud.any():
        # cloud edges 2-3 pixels out, unflagged: a fading share of cloud in the pixel
        dist = ndimage.distance_transform_edt(~cloud)
        edge = (dist > 1) & (dist < 3.5) & ~shadow
        w = np.where(edge, 0.12 * np.exp(-(dist - 1.4)), 0).astype(np.float32)
        _mix(refl, w, (hrng.uniform(0.25, 0.5),) * 5)
        shadow_edge = ndimage.binary_dilation(shadow) & ~shadow & ~cloud & ~ring
        refl[:, shadow_edge] *= 0.8
    return refl, {"snow": snow_flag, "cirrus": cirrus_flag}


def _hard_scl(scl: np.ndarray, extra: dict, cloud, shadow) -> np.ndarray:
    """Flag snow (11) and thin cirrus (10) where the L2A classification catches them."""
    free = ~cloud & ~shadow
    scl = scl.copy()
    scl[extra["cirrus"] & free] = 10
    scl[extra["snow"] & free & (scl != 6)] = 11
    return scl


def _shifted_samplers(coords: dict, truth_shape, resolution: float, granules, hrng) -> dict:
    """Each granule displaced by its own geolocation error on this date (a few metres)."""
    out = {}
    for g in granules:
        dx, dy = np.clip(hrng.normal(0, GEOLOCATION_SIGMA_M, 2), -10, 10)
        for res in (10, 20):
            tr, tc = coords[(g.name, res)]
            out[(g.name, res)] = _nearest(tr - dy / resolution, tc + dx / resolution, truth_shape)
    return out


def main_from_config(cfg: dict, folder: str | Path) -> Path:
    os.makedirs(folder, exist_ok=True)
    return generate_archive(folder, SyntheticSpec.from_config(cfg))


__all__ = ["SyntheticSpec", "generate_archive", "main_from_config"]
