"""``forest_mask.method: file`` (a tree-cover raster), and the mask's GeoTIFF: writing it
with its provenance tags, reading it back checked against the tile's grid, and deciding
whether a mask already on disk was made from the current inputs (:func:`kept_mask`: the
fit (rule ``tile_state``) that writes the mask keeps it when only the monitor changed)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.warp import reproject

from ..config import without_access_keys
from ..grid import Tile
from ..io import atomic_path

#: the mask tag holding :func:`mask_key` of what the mask was made from
KEY_TAG = "made_from_sha256"


def mask_from_tree_cover(tile: Tile, path: str | Path, threshold: float,
                         resampling: str = "average") -> np.ndarray:
    """Forest where the tree-cover raster (percent, any CRS) warped to the tile is
    ``>= threshold``. Pixels outside the raster or on its nodata are not forest."""
    with rasterio.open(path) as src:
        if src.crs is None:
            raise ValueError(f"tree-cover raster {str(path)!r} has no CRS; assign one first.")
        cover = np.full(tile.shape, np.nan, dtype=np.float32)
        reproject(
            source=rasterio.band(src, 1), destination=cover,
            src_nodata=src.nodata, dst_nodata=np.nan,
            dst_transform=tile.transform, dst_crs=tile.crs,
            resampling=Resampling[resampling],
        )
    return np.where(np.isfinite(cover) & (cover >= threshold), 1, 0).astype(np.uint8)


def write_mask(mask: np.ndarray, tile: Tile, path: str | Path, source: str, *,
               provenance: Mapping[str, object] | None = None,
               made_from: str | None = None) -> None:
    """Write the mask as a compressed GeoTIFF (uint8, 1 forest / 0 not, nodata 255).

    Band 1's tags say what it is: ``values``, ``source`` (one sentence), and each entry of
    ``provenance`` as a string (``method`` and what that method was made from: for a model
    its file, SHA-256, threshold and period), so that a mask file found on its own still
    tells how it was made; ``made_from`` (:func:`mask_key`) lets :func:`kept_mask` tell
    whether it is still current."""
    profile = dict(
        driver="GTiff", height=tile.shape[0], width=tile.shape[1], count=1, dtype="uint8",
        crs=tile.crs, transform=tile.transform, nodata=255, compress="DEFLATE",
    )
    if min(tile.shape) >= 256:  # GeoTIFF tiles must fit in the raster
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(mask.astype(np.uint8), 1)
        dst.set_band_description(1, "forest")
        tags = {str(k): str(v) for k, v in (provenance or {}).items()}
        if made_from is not None:
            tags[KEY_TAG] = made_from
        dst.update_tags(1, values="1 = forest (monitored), 0 = not forest", source=source,
                        **tags)


def read_mask(path: str | Path, tile: Tile) -> np.ndarray:
    """Read a tile's mask and check that it lies on the tile's grid."""
    with rasterio.open(path) as src:
        if src.shape != tile.shape or not src.transform.almost_equals(tile.transform):
            raise ValueError(
                f"forest mask {str(path)!r} is not on tile {tile.id}'s grid "
                f"(shape {src.shape} vs {tile.shape}); regenerate it with the workflow."
            )
        data = src.read(1)
    return np.where(data == 1, 1, 0).astype(np.uint8)


def read_mask_provenance(path: str | Path) -> dict[str, str]:
    """How the mask file ``path`` was made: its band-1 tags as :func:`write_mask` wrote
    them (``method`` and what that method used; for ``model``: ``backend``, ``model``,
    ``model_sha256``, ``threshold`` (percent), ``period``), plus ``source`` (one
    sentence). Values are strings; a mask written before the provenance tags existed
    gives ``source`` only."""
    with rasterio.open(path) as src:
        tags = src.tags(1)
    return {k: v for k, v in tags.items() if k not in ("values", KEY_TAG)}


def mask_key(mask_cfg: Mapping, tile_id: str, inputs: Sequence[str | Path]) -> str:
    """SHA-256 (hex) of what a tile's mask is made from: the mask's config slice (the
    rule's ``params.mask_cfg``: grid, source but
    :data:`forestwatch.config.STAC_ACCESS_KEYS`, history, forest_mask and, for a model,
    its file's SHA-256), the tile id, and the name, size and modification time of each
    input file (tree-cover raster, model files): a replaced input makes a new mask."""
    h = hashlib.sha256()
    h.update(json.dumps(without_access_keys(mask_cfg), sort_keys=True, default=str).encode())
    h.update(tile_id.encode())
    for path in inputs:
        st = Path(path).stat()
        h.update(f"{Path(path).name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def kept_mask(path: str | Path, tile: Tile, key: str) -> tuple[np.ndarray, dict] | None:
    """(mask, provenance) of the mask file ``path`` when it exists, lies on the tile's grid
    and was made from ``key`` (:func:`mask_key`, in its tags); None otherwise, so that it
    is made again. An unreadable file counts as absent."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with rasterio.open(path) as src:
            made_from = src.tags(1).get(KEY_TAG)
        if made_from != key:
            return None
        return read_mask(path, tile), read_mask_provenance(path)
    except (RasterioError, ValueError):
        return None
