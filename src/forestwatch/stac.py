"""From STAC Items to a reflectance cube on a tile's GeoBox: one code path for every source.

``search_items`` finds the items (a STAC API via pystac-client, or a local ItemCollection
file filtered the same way); ``load_reflectance`` reads them onto the tile grid (each
asset file read once per load, many reads in flight: ``forestwatch._assets``), converts DN
to surface reflectance with each item's own scale/offset, and masks clouds with the SCL
classes from config; ``spectral_index`` derives NDVI/NBR/NDMI.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pystac
import xarray as xr
from odc.geo.geobox import GeoBox
from shapely.geometry import box, shape

from ._assets import ReadFailure, read_slices
from ._environ import whole_number
from .access import (
    TOO_MANY_REQUESTS,
    AccessError,
    api_io,
    gdal_options,
    redact,
    share_http_cache,
    url_signer,
)
from .acquisitions import by_solar_day

log = logging.getLogger(__name__)

#: logical band name -> asset key, per provider convention
BAND_PRESETS: dict[str, dict[str, str]] = {
    # the built-in synthetic archive and ESA/Planetary Computer naming
    "synthetic": {"green": "B03", "red": "B04", "nir": "B8A", "swir16": "B11",
                  "swir22": "B12", "scl": "SCL"},
    # a stac-fastapi-pgstac deployment with the reference document's keys (20 m products)
    "pgstac-cdse": {"green": "B03_20", "red": "B04_20", "nir": "B8A", "swir16": "B11",
                    "swir22": "B12", "scl": "SCL"},
    # Copernicus Data Space Ecosystem's own STAC (stac.dataspace.copernicus.eu/v1)
    "cdse": {"green": "B03_20m", "red": "B04_20m", "nir": "B8A_20m", "swir16": "B11_20m",
             "swir22": "B12_20m", "scl": "SCL_20m"},
    # Element84 Earth Search (sentinel-2-l2a / sentinel-2-c1-l2a)
    "earth-search": {"green": "green", "red": "red", "nir": "nir08", "swir16": "swir16",
                     "swir22": "swir22", "scl": "scl"},
    # Microsoft Planetary Computer (sentinel-2-l2a)
    "planetary-computer": {"green": "B03", "red": "B04", "nir": "B8A", "swir16": "B11",
                           "swir22": "B12", "scl": "SCL"},
}

#: bands each index needs (logical names)
INDEX_BANDS = {"NDVI": ("nir", "red"), "NBR": ("nir", "swir22"), "NDMI": ("nir", "swir16")}


class NoDataError(RuntimeError):
    """No acquisition matched the search; the message says what was searched."""


def band_keys(stac_cfg: dict) -> dict[str, str]:
    """Logical band name -> asset key: the preset, with per-band overrides from config."""
    return BAND_PRESETS[stac_cfg["preset"]] | dict(stac_cfg.get("bands") or {})


def _as_datetime(value: dt.date | dt.datetime | str, end: bool = False) -> dt.datetime:
    if isinstance(value, str):
        value = dt.date.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    t = dt.time(23, 59, 59, 999999) if end else dt.time(0, 0)
    return dt.datetime.combine(value, t, tzinfo=dt.UTC)


def search_items(
    stac_cfg: dict,
    bbox_lonlat: Sequence[float],
    start: dt.date | str,
    end: dt.date | str,
    catalog_path: str | Path | None = None,
    *,
    published_since: dt.date | None = None,
    published_property: str = "published",
) -> list[pystac.Item]:
    """Items intersecting ``bbox_lonlat`` with start <= datetime <= end (whole days, UTC)
    and ``eo:cloud_cover`` below the configured maximum, sorted by datetime then id.

    ``catalog_path`` is the local ItemCollection for ``source: local|synthetic``.
    ``published_since``: only items whose ``published_property`` (an ISO 8601 UTC time, as
    in the STAC timestamps extension) is on or after that day, with the API's ``query``
    extension (``gte``, the same extension as the cloud filter); items without the
    property are not found that way.
    """
    began = time.perf_counter()
    pystac_ready()
    t0, t1 = _as_datetime(start), _as_datetime(end, end=True)
    max_cc = stac_cfg["max_cloud_cover"]
    since = None if published_since is None else _as_datetime(published_since)
    if stac_cfg["source"] == "stac_api":
        extra = {} if since is None else {
            published_property: {"gte": since.strftime("%Y-%m-%dT%H:%M:%SZ")}}
        items, pages, parts = _search_api(stac_cfg, bbox_lonlat, t0, t1, extra_query=extra)
        split = "" if parts == 1 else f" in {parts} parts"
        where = f"{stac_cfg['url']} ({pages} page(s){split})"
    else:
        items = [
            it for it in read_item_collection(catalog_path or stac_cfg["catalog"])
            if _matches(it, bbox_lonlat, t0, t1, max_cc)
            and (since is None or _published_on_or_after(it, published_property, since))
        ]
        where = "local catalog"
    items.sort(key=lambda it: (it.datetime, it.id))
    log.info("STAC search %s..%s%s bbox=%s cloud<%s in %s: %d items in %.2f s", t0.date(),
             t1.date(), "" if since is None else f" {published_property}>={published_since}",
             [round(v, 4) for v in bbox_lonlat], max_cc, where, len(items),
             time.perf_counter() - began)
    return items


def _published_on_or_after(item: pystac.Item, prop: str, since: dt.datetime) -> bool:
    value = item.properties.get(prop)
    try:
        return bool(value) and _as_datetime(dt.datetime.fromisoformat(str(value))) >= since
    except ValueError:
        return False


#: shortest part, days, of a search cut into parts (:func:`search_periods`): a shorter
#: period (a daily discovery's window) is searched in one piece
MIN_PART_DAYS = 30
#: most parts a STAC API search is cut into (:func:`search_periods`). Measured
#: (BENCHMARKS.md, "Searches in parts"): the demo's two-year history 1.37 s in one piece,
#: 0.73 s in 2 parts, 0.69 s in 4, 0.81 s in 8; with 300 ms per request 2.83, 1.97, 1.58
#: and 1.66 s. The environment variable ``FORESTWATCH_SEARCH_PARTS`` overrides it (1: in
#: one piece, for a provider that limits concurrent requests). Not a config key, as
#: :data:`IO_THREADS` is not: it changes no result, and a key of the ``stac`` section, which
#: every rule's params hold, would rerun every rule.
SEARCH_PARTS = 4


def search_parts() -> int:
    """The most parts a search is cut into: :data:`SEARCH_PARTS`, or
    ``FORESTWATCH_SEARCH_PARTS``."""
    return whole_number("FORESTWATCH_SEARCH_PARTS", SEARCH_PARTS, minimum=1,
                        meaning="parts a STAC API search is cut into (1 or more: 1 "
                                "searches in one piece)")


def search_periods(t0: dt.date | dt.datetime | str, t1: dt.date | dt.datetime | str,
                   parts: int) -> list[tuple[dt.datetime, dt.datetime]]:
    """``[t0, t1]`` cut into at most ``parts`` consecutive periods, each at least
    :data:`MIN_PART_DAYS` long, that :func:`_search_api` searches side by side (days as
    :func:`search_items` takes them: ``t0`` from its start, ``t1`` to its end, UTC).

    Why: a STAC API answers a search page by page, each page after the previous one
    (its ``next`` link), and a page costs the server time in proportion to its items; a
    two-year history over a block of tiles is several pages, one after the other. Parts
    are answered at the same time. Each part ends where the next begins: STAC datetime
    intervals are closed, so an item exactly at a boundary is found by both and kept once
    (by id), and none falls between two parts at any time precision."""
    t0, t1 = _as_datetime(t0), _as_datetime(t1, end=True)
    n = max(1, min(int(parts), int((t1 - t0) / dt.timedelta(days=MIN_PART_DAYS))))
    inner = [(t0 + (t1 - t0) * i / n).replace(microsecond=0) for i in range(1, n)]
    edges = [t0, *inner, t1]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _search_api(stac_cfg: dict, bbox_lonlat, t0: dt.datetime, t1: dt.datetime, *,
                extra_query: dict | None = None) -> tuple[list[pystac.Item], int, int]:
    """(items, pages read, parts) of a STAC API search of ``[t0, t1]``, in the parts of
    :func:`search_periods` (:func:`search_parts` at most) side by side, each paginated; an item
    found by two parts is kept once. Any failure after the retries raises
    :class:`AccessError`: a partial result is never returned."""
    periods = search_periods(t0, t1, search_parts())
    if len(periods) == 1:
        return (*_search_period(stac_cfg, bbox_lonlat, t0, t1, extra_query, None), 1)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(periods), thread_name_prefix="forestwatch-search-part") as pool:
        found = list(pool.map(lambda p: _search_period(stac_cfg, bbox_lonlat, *p, extra_query,
                                                       f"{p[0]:%Y-%m-%d}..{p[1]:%Y-%m-%d}"),
                              periods))
    unique: dict[str, pystac.Item] = {}
    for items, _ in found:
        for it in items:
            unique.setdefault(it.id, it)
    return list(unique.values()), sum(pages for _, pages in found), len(periods)


def _search_period(stac_cfg: dict, bbox_lonlat, t0: dt.datetime, t1: dt.datetime,
                   extra_query: dict | None, part: str | None
                   ) -> tuple[list[pystac.Item], int]:
    """(items, pages read) of one paginated search of ``[t0, t1]`` (``part``: its name in
    an error, when the search was cut into parts)."""
    from pystac_client import Client

    url = stac_cfg["url"]
    items: list[pystac.Item] = []
    pages = 0
    try:
        # Client.open resets the StacApiIO's timeout to its own argument: pass it again
        client = Client.open(url, stac_io=api_io(stac_cfg), timeout=stac_cfg["timeout_s"])
        search = client.search(
            collections=[stac_cfg["collection"]], bbox=list(bbox_lonlat), datetime=[t0, t1],
            query={"eo:cloud_cover": {"lt": stac_cfg["max_cloud_cover"]},
                   **(extra_query or {})},
            limit=stac_cfg["page_size"],
        )
        for page in search.pages():
            pages += 1
            items.extend(page.items)
    except AccessError:
        raise
    except Exception as err:  # noqa: BLE001 - pystac-client wraps transport errors variously
        where = "" if part is None else f" (part {part} of the period)"
        if getattr(err, "status_code", None) == TOO_MANY_REQUESTS:
            what = ("the provider answered HTTP 429 (too many requests) even to one request "
                    "at a time. Raise stac.retries or stac.retry_backoff_s (the wait "
                    "doubles at each retry), or search each period in one piece "
                    "(FORESTWATCH_SEARCH_PARTS=1)")
        else:
            what = (f"{type(err).__name__}: {redact(str(err))}. Check that the server is up "
                    "and stac.url/stac.collection are right; stac.retries, "
                    "stac.retry_backoff_s and stac.timeout_s set the patience")
        raise AccessError(
            f"STAC API search at {redact(url)} failed on page {pages + 1}{where} after "
            f"{stac_cfg['retries']} retries: {what}."
        ) from None
    return items, pages


#: the last local ItemCollection read, by (path, modification time); read under its lock
#: (a tile's searches run side by side in threads: one reads, the other waits for it)
_ITEM_CACHE: dict[tuple[str, float], list[pystac.Item]] = {}
_ITEM_CACHE_LOCK = threading.Lock()

#: a minimal item, parsed once by :func:`pystac_ready`
_MINIMAL_ITEM = {"type": "Feature", "stac_version": "1.0.0", "id": "forestwatch-ready",
                 "geometry": None, "properties": {"datetime": "2000-01-01T00:00:00Z"},
                 "links": [], "assets": {}}
_PYSTAC_READY = threading.Event()
_PYSTAC_LOCK = threading.Lock()


def pystac_ready() -> None:
    """Have pystac register its extensions' hooks now, in one thread, before items are
    parsed in several. pystac finds them lazily, at the first item it migrates, and marks
    them found before it has added them all: a second thread parsing an item meanwhile
    iterates the half-filled registry and fails ("dictionary changed size during
    iteration"; rule ``tile_state``'s two searches side by side met it in a new process).
    The first call parses one minimal item under a lock; later calls return at once."""
    if _PYSTAC_READY.is_set():
        return
    with _PYSTAC_LOCK:
        if not _PYSTAC_READY.is_set():
            pystac.Item.from_dict(dict(_MINIMAL_ITEM), migrate=True)
            _PYSTAC_READY.set()


def read_item_collection(path: str | Path) -> list[pystac.Item]:
    """Read a local STAC ItemCollection; relative asset hrefs resolve against its folder.
    The last one read is kept (a new modification time reads it again)."""
    pystac_ready()
    path = Path(path).resolve()
    if not path.exists():
        raise FileNotFoundError(f"STAC item collection {str(path)!r} does not exist.")
    key = (str(path), path.stat().st_mtime)
    with _ITEM_CACHE_LOCK:
        if key not in _ITEM_CACHE:
            with open(path) as f:
                features = json.load(f)["features"]
            items = []
            for feat in features:
                item = pystac.Item.from_dict(feat, preserve_dict=False)
                for asset in item.assets.values():
                    if "://" not in asset.href and not asset.href.startswith("/"):
                        asset.href = (path.parent / asset.href).as_uri()
                items.append(item)
            _ITEM_CACHE.clear()
            _ITEM_CACHE[key] = items
        return _ITEM_CACHE[key]


def _matches(item: pystac.Item, bbox, t0, t1, max_cc) -> bool:
    if not (t0 <= item.datetime <= t1):
        return False
    if item.properties.get("eo:cloud_cover", 0) >= max_cc:
        return False
    return item_over(item, bbox)


def item_over(item: pystac.Item, bbox_lonlat: Sequence[float]) -> bool:
    """Whether the item's footprint intersects the lon/lat box: a STAC API's ``bbox``
    test, applied here to local catalogs and to searches shared by several tiles."""
    return shape(item.geometry).intersects(box(*bbox_lonlat))


def _scale_offset(item: pystac.Item, asset_key: str) -> tuple[float, float]:
    """DN -> reflectance (``reflectance = DN * scale + offset``) from the asset's own
    metadata, in the first form present: STAC 1.0 ``raster:bands[0]`` scale/offset,
    STAC 1.1 asset-level ``raster:scale``/``raster:offset`` or ``bands[0]`` of them;
    else the processing-baseline rule (baseline >= 04.00 adds 1000 to DN)."""
    asset = item.assets[asset_key].extra_fields
    bands = asset.get("raster:bands")
    if bands and ("scale" in bands[0] or "offset" in bands[0]):
        return float(bands[0].get("scale", 1.0)), float(bands[0].get("offset", 0.0))
    for where in (asset, *(asset.get("bands") or [])[:1]):
        if "raster:scale" in where or "raster:offset" in where:
            return float(where.get("raster:scale", 1.0)), float(where.get("raster:offset", 0.0))
    baseline = str(item.properties.get("s2:processing_baseline", "99.99"))
    return 1e-4, (-0.1 if baseline >= "04.00" else 0.0)


#: reads in flight per load (the reader's thread pool) when the caller's ``threads`` is
#: lower. GDAL releases the GIL while it waits for a request, and so do the reader's
#: samplers (numba, ``nogil``), so more reads than cores hide an object store's latency.
#: The chain through nginx adding 20 ms to every request (BENCHMARKS.md, "Reads in flight
#: behind a latency proxy in C", 2026-12-05, alternating): the larger benchmark area's
#: workflow 24.0-26.1 s with 16 (mean 25.1, 5 runs), 21.9-25.0 s with 32 (mean 23.5),
#: 23.4-24.9 s with 64; the demo 11.6-13.4 s with 16, 9.9-11.2 s with 32. Direct (no
#: latency) the larger area 22.2 -> 21.2 s (means of 5), the demo 9.9 -> 10.3 s (of 4). Peak memory of the 1000 x 1000 px fit job within 3 %, its
#: fast-forward +86 MiB. (Through the tests' Python fault proxy 32 did not help: the
#: proxy's own CPU, on the same cores, was the limit.) The environment variable
#: ``FORESTWATCH_IO_THREADS`` overrides it. It is not a config key: it changes no result,
#: and a config key would sit in the ``stac`` section that every rule's params hold, so
#: changing it would rerun every rule.
IO_THREADS = 32


def io_threads(threads: int | None) -> int:
    """Reads in flight for a load by a job given ``threads`` cores: the larger of the two
    and :data:`IO_THREADS` (or ``FORESTWATCH_IO_THREADS``)."""
    n = whole_number("FORESTWATCH_IO_THREADS", IO_THREADS, minimum=1,
                     meaning="reads in flight (1 or more)")
    return max(threads or 1, n)


def load_reflectance(
    items: Sequence[pystac.Item],
    geobox: GeoBox,
    bands: Sequence[str],
    stac_cfg: dict,
    threads: int | None = None,
) -> xr.Dataset:
    """Load ``bands`` (logical names) as surface reflectance on ``geobox``.

    ``items`` are reduced to the newest version of each acquisition and grouped by solar
    day (:func:`forestwatch.acquisitions.by_solar_day`). Returns a Dataset of float32
    reflectance variables named by logical band, dims (time, y, x), one time step per solar
    day (UTC midnight of that day), NaN where SCL is not in ``valid_scl_classes``, where any
    band is nodata, or outside every footprint. The variable ``clear`` (bool) says which
    pixels passed the cloud mask. Attributes: ``item_ids`` (JSON list) and ``unreadable``
    (JSON list of ``{"item", "asset", "reason"}`` skipped with ``on_unreadable_asset: skip``).
    """
    keys = band_keys(stac_cfg)
    missing = [b for b in list(bands) + ["scl"] if b not in keys]
    if missing:
        raise ValueError(f"no asset key configured for band(s) {missing}; set stac.bands.")
    by_day = by_solar_day(items)
    if not by_day:
        raise NoDataError("no items to load")
    sign = stac_cfg["auth"]["sign_url"]
    asset_keys = [keys[b] for b in bands] + [keys["scl"]]
    resampling = {keys[b]: stac_cfg["resampling"]["reflectance"] for b in bands}
    resampling[keys["scl"]] = stac_cfg["resampling"]["scl"]
    valid_scl = np.asarray(stac_cfg["valid_scl_classes"], dtype=np.uint8)
    pool = io_threads(threads)

    # One time slice per (solar day, DN -> reflectance rule): the reader fuses the items
    # of a slice as stored DN, before they can be scaled, so granules of one day whose
    # scale/offset differ (one reprocessed to a newer baseline, its neighbour not) are
    # loaded apart, scaled each with its own rule, and fused afterwards.
    days = list(by_day)
    slices: dict[tuple, list[pystac.Item]] = {}
    for d in days:
        for it in by_day[d]:
            rule = tuple(_scale_offset(it, keys[b]) for b in bands)
            slices.setdefault((d, rule), []).append(it)
    slice_keys = list(slices)
    day_items = [it for k in slice_keys for it in slices[k]]
    share_http_cache()  # tiles of this process that share a file fetch it once
    try:
        raw, failures = read_slices(
            [slices[k] for k in slice_keys], asset_keys=asset_keys, geobox=geobox,
            resampling=resampling, gdal_opts=gdal_options(stac_cfg), threads=pool,
            sign=url_signer(sign), on_failure=stac_cfg["on_unreadable_asset"],
        )
    except ReadFailure as err:
        raise AssetReadError(
            f"unreadable asset: {redact(str(err))}. The provider may be down or the item "
            "broken. The daily run retries it over operational.unreadable_assets' grace "
            "period; in the workflow, stac.on_unreadable_asset: skip goes on without it "
            "and records it."
        ) from None

    out, clear = _reflectance(raw, slice_keys, days, bands, keys, valid_scl, threads)
    coords = {
        "time": np.array([np.datetime64(d, "ns") for d in days]),
        "y": geobox.coords["y"].values,
        "x": geobox.coords["x"].values,
    }
    data = {b: (("time", "y", "x"), out[b]) for b in bands}
    data["clear"] = (("time", "y", "x"), clear)
    cube = xr.Dataset(data, coords=coords)
    cube.attrs["item_ids"] = json.dumps([it.id for d in days for it in by_day[d]])
    cube.attrs["unreadable"] = json.dumps(_unreadable_items(failures, day_items, sign))
    return cube


def _reflectance(raw: dict[str, np.ndarray], slice_keys: list[tuple], days: list,
                 bands: Sequence[str], keys: dict[str, str], valid_scl: np.ndarray,
                 threads: int | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The reader's layers ``raw`` (asset key -> uint16 (slices, y, x)) as float32
    reflectance per band and day (NaN where not observed clear) and the days' ``clear``
    mask: a pixel comes from the first slice of its day (``slice_keys``: (day, rule), in
    the layers' order) that observed it clear, scaled by that slice's rule. One compiled
    pass per slice (:func:`forestwatch._cube.fill_slice`), the days on ``threads``
    threads."""
    from concurrent.futures import ThreadPoolExecutor

    from ._cube import fill_slice

    shape_t = (len(days),) + raw[keys["scl"]].shape[1:]
    out = {b: np.empty(shape_t, dtype=np.float32) for b in bands}
    clear = np.zeros(shape_t, dtype=bool)
    scl = raw[keys["scl"]]
    valid = valid_scl.astype(scl.dtype)
    day_index = {d: i for i, d in enumerate(days)}
    slices_of: dict[int, list[int]] = {}
    for n, (d, _) in enumerate(slice_keys):
        slices_of.setdefault(day_index[d], []).append(n)

    def fill_day(i: int) -> None:
        outs = tuple(out[b][i] for b in bands)
        for layer in outs:
            layer.fill(np.nan)
        for n in slices_of.get(i, []):
            rule = slice_keys[n][1]
            fill_slice(scl[n], valid, tuple(raw[keys[b]][n] for b in bands),
                       np.array([s for s, _ in rule], dtype=np.float32),
                       np.array([o for _, o in rule], dtype=np.float32), clear[i], outs)

    with ThreadPoolExecutor(max(1, threads or 1), thread_name_prefix="forestwatch-cube") as pool:
        list(pool.map(fill_day, range(len(days))))
    return out, clear


class AssetReadError(RuntimeError):
    """An asset could not be read (after GDAL's retries) and ``on_unreadable_asset`` is
    ``fail``; the message is redacted of secrets."""


def _unreadable_items(failures: list[tuple[str, str]], items: Sequence[pystac.Item],
                      sign: str | None) -> list[dict]:
    """``[{"item", "asset", "reason"}]`` for each (uri, reason) the reader skipped, once per
    asset, with secrets redacted. Their pixels are nodata, so masked as not observed."""
    if not failures:
        return []
    by_href = {}
    for it in items:
        for key, asset in it.assets.items():
            by_href[asset.href.split("?")[0]] = (it.id, key)
    out, seen = [], set()
    for uri, reason in failures:
        item_id, key = by_href.get(uri.split("?")[0], ("?", redact(uri)))
        if (item_id, key) in seen:
            continue
        seen.add((item_id, key))
        out.append({"item": item_id, "asset": key, "reason": redact(reason)})
        log.warning("skipped unreadable asset %s of item %s: %s", key, item_id, redact(reason))
    return out


def spectral_index(ds: xr.Dataset, name: str, threads: int = 2) -> xr.DataArray:
    """Normalised difference index (float32, NaN where undefined; inf never survives),
    with ``ds``'s coordinates: one compiled pass (:func:`forestwatch._cube.
    normalised_difference`) over ``threads`` parts of the arrays, in the bands' dtype."""
    from ._cube import normalised_difference
    from ._threads import in_parts

    a, b = xr.broadcast(*(ds[band] for band in INDEX_BANDS[name]))
    va = np.ascontiguousarray(a.values).reshape(-1)
    vb = np.ascontiguousarray(b.values, dtype=va.dtype).reshape(-1)
    out = np.empty(va.size, dtype=np.float32)
    in_parts(lambda i, j: normalised_difference(va[i:j], vb[i:j], out[i:j]), va.size,
             threads, min_part=65536, name="forestwatch-index")
    return xr.DataArray(out.reshape(a.shape), coords=a.coords, dims=a.dims, name=name)
