"""A STAC catalog of a run's outputs (``stac/``, written by rule ``stac_catalog``).

* ``stac/collection.json``: a Collection for the run (extent, the parameters of the run,
  links to every item);
* ``stac/<tile>/<tile>.json``: an Item per tile with its report COGs and its current
  monitoring state as assets;
* ``stac/mosaic/mosaic.json``: an Item for the run's mosaics (the VRTs and their QGIS
  styles), with the accuracy summary and the alert polygons when there are any.

STAC 1.1 with the projection (v2.0.0), raster (v1.1.0) and file (v2.1.0) extensions: each
asset has ``file:checksum`` (a multihash: ``1220`` + the SHA-256 of the file, hex) and
``file:size``, and raster assets their ``raster:bands`` (data type, nodata, unit). Each
item says what made it (``forestwatch:software``, ``forestwatch:parameters``: the index,
the monitor and its fit, the forest mask's provenance, from the tile's state) and from what
(``forestwatch:source_items``: the ids of the source items the fit and every monitored day
read, from the state's ledger; a ``derived_from`` link to the source catalog or API
collection). ``end_datetime`` is the last monitored day.

The catalog is rebuilt after every daily run (its Snakemake run's targets include it), so
a downstream service sees which tiles changed by their checksums. Every file is written
atomically, the items before the collection that lists them. A checksum is recomputed
only for a file that is newer than the previous item or has another size (a country of
tiles is not re-hashed every day), and a tile's item is kept as it is when every file it
lists is older than it and it was made for the same collection, links, history start and
item format (:data:`ITEM_FORMAT`): a daily run remakes the items of the tiles it updated
and reads the others.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from ..io import write_json

STAC_VERSION = "1.1.0"
EXTENSIONS = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
}
#: the version of what :func:`tile_item` writes (property ``forestwatch:item_format``): a
#: kept item of another version is made again. Raise it when an item's content changes.
ITEM_FORMAT = 1
COG = "image/tiff; application=geotiff; profile=cloud-optimized"
MEDIA_TYPES = {".tif": COG, ".vrt": "application/xml", ".qml": "application/xml",
               ".nc": "application/x-netcdf", ".json": "application/json",
               ".md": "text/markdown", ".gpkg": "application/geopackage+sqlite3",
               ".map": "text/plain", ".csv": "text/csv"}


def sha256_multihash(path: str | Path) -> str:
    """``file:checksum`` of a file: the multihash of its SHA-256 (``1220`` + hex digest)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "1220" + h.hexdigest()


def _rel(path: str | Path, start: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), start.resolve())).as_posix()


def _iso(day: str | dt.date, end: bool = False) -> str:
    return f"{day}T23:59:59Z" if end else f"{day}T00:00:00Z"


class _Previous(NamedTuple):
    """An item file as this run finds it, read once for both of its uses (its checksums,
    :class:`_Checksums`, and keeping it whole, :func:`_kept_item`)."""

    #: its content; empty when there is no such file or it cannot be read
    item: dict
    #: its modification time (ns); 0 when there is no such file
    made: int


def _previous(item_path: Path) -> _Previous:
    try:
        made = item_path.stat().st_mtime_ns
    except OSError:
        return _Previous({}, 0)
    try:
        item = json.loads(item_path.read_text())
    except (OSError, ValueError):
        item = {}
    return _Previous(item if isinstance(item, dict) else {}, made)


class _Checksums:
    """Checksums of the files an item had before, reused when a file did not change."""

    def __init__(self, previous: _Previous, folder: Path):
        self.previous: dict[str, tuple[int, str]] = {}
        self.since = previous.made
        for asset in previous.item.get("assets", {}).values():
            if "file:checksum" in asset:
                key = str((folder / asset["href"]).resolve())
                self.previous[key] = (asset.get("file:size", -1), asset["file:checksum"])

    def __call__(self, path: Path) -> tuple[int, str]:
        st = path.stat()
        old = self.previous.get(str(path.resolve()))
        if old and old[0] == st.st_size and st.st_mtime_ns < self.since:
            return old
        return st.st_size, sha256_multihash(path)


def _raster_fields(path: Path) -> tuple[dict, dict]:
    """(projection fields, raster:bands entry) of a single-band raster."""
    import rasterio

    with rasterio.open(path) as src:
        t = src.transform
        proj = {"proj:code": src.crs.to_string() if src.crs.to_epsg() else None,
                "proj:shape": [src.height, src.width],
                "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
                "proj:bbox": list(src.bounds)}
        if proj["proj:code"] is None:
            proj["proj:wkt2"] = src.crs.to_wkt()
        band = {"data_type": src.dtypes[0], "spatial_resolution": abs(t.a)}
        if src.nodata is not None:
            band["nodata"] = int(src.nodata) if float(src.nodata).is_integer() else src.nodata
        unit = src.tags(1).get("units") or (src.units[0] if src.units else None)
        if unit:
            band["unit"] = unit
    return proj, band


def _asset(path: Path, folder: Path, checksums: _Checksums, *, title: str,
           roles: Sequence[str], raster: bool = False) -> dict:
    size, checksum = checksums(path)
    asset = {"href": _rel(path, folder), "type": MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
             "title": title, "roles": list(roles), "file:size": size, "file:checksum": checksum}
    if raster:
        proj, band = _raster_fields(path)
        asset["raster:bands"] = [band]
    return asset


def _footprint(bounds: Sequence[float], crs: str) -> tuple[dict, list[float]]:
    """GeoJSON polygon and bbox in EPSG:4326 of ``bounds`` in ``crs`` (edges densified)."""
    from shapely.geometry import box, mapping
    from shapely.ops import transform

    from .._proj import PROJ  # one transformer per CRS for the process (~35 ms to make)

    def to_wgs84(x, y):
        return PROJ.transform(crs, "EPSG:4326", x, y)

    poly = transform(to_wgs84, box(*bounds).segmentize(max(bounds[2] - bounds[0], 1) / 8))
    return mapping(poly.simplify(0)), [round(v, 7) for v in poly.bounds]


def _links(folder: Path, catalog_root: Path, source: str | None) -> list[dict]:
    coll = _rel(catalog_root / "collection.json", folder)
    links = [{"rel": "root", "href": coll, "type": "application/json"},
             {"rel": "parent", "href": coll, "type": "application/json"},
             {"rel": "collection", "href": coll, "type": "application/json"}]
    if source:
        href = source if "://" in source else _rel(source, folder)
        links.append({"rel": "derived_from", "href": href, "type": "application/json",
                      "title": "the Sentinel-2 L2A items the monitoring read"})
    return links


def tile_item(*, tile: str, reports: Mapping[str, str | Path], state: str | Path,
              item_path: str | Path, collection: str, source: str | None,
              history_start: str) -> dict:
    """The STAC Item of one tile: its report COGs (``reports``: layer -> file) and its
    current state (and the fitted state it takes its unchanged arrays from), with what
    made them and from which source items (the state's ledger)."""
    from ..layout import fitted_state_of
    from ..state import read_provenance

    item_path = Path(item_path)
    folder = item_path.parent
    root = folder.parent
    links = _links(folder, root, source)
    fitted = fitted_state_of(state)
    files = {layer: Path(p) for layer, p in reports.items()} | {"state": Path(state)}
    previous = _previous(item_path)
    kept = _kept_item(previous, folder, files,
                      [Path(fitted)] if fitted and Path(fitted).exists() else [],
                      collection=collection, links=links, start=_iso(history_start))
    if kept is not None:
        return kept
    checksums = _Checksums(previous, folder)
    provenance = read_provenance(state)
    meta, ledger, digest = provenance.metadata, provenance.ledger, provenance.digest
    first = next(iter(reports.values()))
    proj, _ = _raster_fields(Path(first))
    geometry, bbox = _footprint(proj["proj:bbox"], proj.get("proj:code") or proj["proj:wkt2"])
    assets = {layer: _asset(Path(p), folder, checksums, title=f"{layer} of tile {tile}",
                            roles=["data"], raster=True) for layer, p in reports.items()}
    assets["state"] = _asset(Path(state), folder, checksums, roles=["metadata"],
                             title="the nrt monitor's state (forestwatch state format)")
    if provenance.shared_with_fit:  # the state is read with the fitted state it shares arrays with
        assets["fitted_state"] = _asset(
            Path(fitted), folder, checksums, roles=["metadata"],
            title="the fitted nrt monitor, whose unchanged arrays the state takes from it")
    sources = list(dict.fromkeys([*ledger.fit.items,
                                  *(i for e in ledger.applied for i in e.items)]))
    item = {
        "type": "Feature", "stac_version": STAC_VERSION,
        "stac_extensions": list(EXTENSIONS.values()),
        "id": tile, "collection": collection, "geometry": geometry, "bbox": bbox,
        "properties": {
            "datetime": None,
            "start_datetime": _iso(history_start),
            "end_datetime": _iso(ledger.last_day, end=True),
            **proj,
            "forestwatch:tile": tile,
            "forestwatch:last_monitored_day": str(ledger.last_day),
            "forestwatch:history": {"start": ledger.fit.start, "end": ledger.fit.end},
            "forestwatch:software": meta.get("software", {}),
            "forestwatch:parameters": {"index": meta.get("index"),
                                       "monitor": meta.get("monitor", {}),
                                       # a consensus state's further monitors and k
                                       **({"consensus": meta["consensus"]}
                                          if "consensus" in meta else {}),
                                       "forest_mask": meta.get("forest_mask", {})},
            "forestwatch:state_sha256": digest,
            "forestwatch:source_items": sources,
            # who applied its days, in order (``fast_forward``, then daily run ids)
            "forestwatch:runs": list(dict.fromkeys(e.run for e in ledger.applied if e.run)),
            "forestwatch:item_format": ITEM_FORMAT,
        },
        "links": links,
        "assets": assets,
    }
    write_json(item_path, item)
    return item


def _kept_item(previous: _Previous, folder: Path, files: Mapping[str, Path],
               also: Sequence[Path], *, collection: str, links: list[dict],
               start: str) -> dict | None:
    """The tile item as it was before (``previous``, in ``folder``) when it can be kept
    as it is, else None: every file it lists (``files``: asset key -> file) and ``also``
    (the fitted state the state may share arrays with) is older than it, its assets are
    those files, and it was made with the same ``collection``, ``links``, history
    ``start``, STAC version, extensions and :data:`ITEM_FORMAT`. Files newer than an item
    are what a tile's update rewrites (the same test as for reusing a checksum,
    :class:`_Checksums`)."""
    item = previous.item
    if not item:
        return None
    try:
        if any(p.stat().st_mtime_ns >= previous.made for p in [*files.values(), *also]):
            return None
    except OSError:
        return None
    assets = item.get("assets", {})
    properties = item.get("properties", {})
    same = (item.get("collection") == collection and item.get("links") == links
            and item.get("stac_version") == STAC_VERSION
            and item.get("stac_extensions") == list(EXTENSIONS.values())
            and properties.get("start_datetime") == start
            and properties.get("forestwatch:item_format") == ITEM_FORMAT
            and set(assets) - {"fitted_state"} == set(files)
            and all(assets[key].get("href") == _rel(path, folder)
                    for key, path in files.items()))
    return item if same else None


def mosaic_item(*, mosaics: Mapping[str, str | Path], extras: Mapping[str, str | Path],
                item_path: str | Path, collection: str, source: str | None,
                interval: tuple[str, str], parameters: dict, software: dict) -> dict:
    """The STAC Item of the run's mosaics (``mosaics``: layer -> VRT) and its other
    run-wide files (``extras``: asset key -> file: styles, accuracy, polygons)."""
    item_path = Path(item_path)
    folder = item_path.parent
    checksums = _Checksums(_previous(item_path), folder)
    proj, _ = _raster_fields(Path(next(iter(mosaics.values()))))
    geometry, bbox = _footprint(proj["proj:bbox"], proj.get("proj:code") or proj["proj:wkt2"])
    assets = {layer: _asset(Path(p), folder, checksums, title=f"mosaic of {layer}",
                            roles=["data"], raster=True) for layer, p in mosaics.items()}
    for key, p in extras.items():
        path = Path(p)
        role = ("style" if path.suffix == ".qml" else
                "data" if path.suffix == ".gpkg" else "metadata")
        assets[key] = _asset(path, folder, checksums, title=key.replace("_", " "),
                             roles=[role])
    item = {
        "type": "Feature", "stac_version": STAC_VERSION,
        "stac_extensions": list(EXTENSIONS.values()),
        "id": "mosaic", "collection": collection, "geometry": geometry, "bbox": bbox,
        "properties": {"datetime": None, "start_datetime": _iso(interval[0]),
                       "end_datetime": _iso(interval[1], end=True), **proj,
                       "forestwatch:software": software,
                       "forestwatch:parameters": parameters},
        "links": _links(folder, folder.parent, source),
        "assets": assets,
    }
    write_json(item_path, item)
    return item


def write_catalog(*, cfg: dict, tiles: Mapping[str, Mapping[str, str | Path]],
                  states: Mapping[str, str | Path], mosaics: Mapping[str, str | Path],
                  extras: Mapping[str, str | Path], collection_path: str | Path,
                  item_path, source: str | None) -> dict:
    """Write the whole catalog: an item per tile (``tiles``: tile -> layer -> COG, with
    ``states``: tile -> current state), the mosaic item, then the collection.
    ``item_path(id)`` is where an item goes (``RunLayout.stac_item``); ``cfg`` the run's
    config slice (``run_name``, ``history``, ``grid``, ``index``, ``monitor``, and
    ``consensus`` when it has members);
    ``source`` the source catalog file or API collection URL."""
    collection_path = Path(collection_path)
    run = cfg["run_name"]
    coll_id = f"forestwatch-{run}"
    items = [tile_item(tile=t, reports=layers, state=states[t], item_path=item_path(t),
                       collection=coll_id, source=source, history_start=cfg["history"]["start"])
             for t, layers in tiles.items()]
    end = max(i["properties"]["forestwatch:last_monitored_day"] for i in items)
    software = items[0]["properties"]["forestwatch:software"]
    parameters = {k: cfg[k] for k in ("grid", "index", "monitor", "consensus", "history")
                  if k in cfg}
    mosaic = mosaic_item(mosaics=mosaics, extras=extras, item_path=item_path("mosaic"),
                         collection=coll_id, source=source,
                         interval=(cfg["history"]["start"], end),
                         parameters=parameters, software=software)
    bboxes = [i["bbox"] for i in items]
    collection = {
        "type": "Collection", "stac_version": STAC_VERSION, "stac_extensions": [],
        "id": coll_id, "title": f"forestwatch run {run}",
        "description": ("Near-real-time forest disturbance monitoring of Sentinel-2 L2A with "
                        f"nrt: per-tile reports and mosaics of run {run}."),
        "license": "other",
        "extent": {
            "spatial": {"bbox": [mosaic["bbox"]] + bboxes},
            "temporal": {"interval": [[_iso(cfg["history"]["start"]), _iso(end, end=True)]]},
        },
        "summaries": {"proj:code": sorted({i["properties"].get("proj:code") for i in items
                                           if i["properties"].get("proj:code")})},
        "forestwatch:parameters": parameters,
        "forestwatch:software": software,
        "links": [{"rel": "root", "href": "./collection.json", "type": "application/json"},
                  *({"rel": "item", "href": "./" + _rel(item_path(i["id"]), collection_path.parent),
                     "type": "application/geo+json"} for i in [mosaic, *items])],
    }
    write_json(collection_path, collection)
    return collection


__all__ = ["write_catalog", "tile_item", "mosaic_item", "sha256_multihash", "EXTENSIONS"]
