"""Reading asset files onto a tile's GeoBox: each file opened once per load, sampled onto
the tile grid, many reads in flight.

Used by :func:`forestwatch.stac.load_reflectance` in place of ``odc.stac.load``, which
spent ~13 ms of pure Python per item and load on footprint geometry, and whose warps (like
any GDAL warped VRT) serialise on a PROJ lock, so its reads in threads did not overlap
(BENCHMARKS.md, "The chain against its I/O floor"). Here a read opens the file (at the
overview that matches the tile's resolution), reads the window over the tile, and samples
it with a pixel mapping computed once per source grid (:class:`_Samplers`) into its
slice's layer, where the slice's earlier items left it empty (:mod:`forestwatch._sampling`).
Local files and HTTP(S) URLs are opened and read through GDAL's own calls
(:mod:`forestwatch._gdal`), which do not hold the interpreter lock as rasterio's do.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import NamedTuple

import numpy as np
import pystac
from odc.geo.geobox import GeoBox

from . import _gdal
from ._environ import whole_number
from ._proj import PROJ as _PROJ

log = logging.getLogger(__name__)


class ReadFailure(Exception):
    """One asset file that could not be read: ``href`` (as given) and GDAL's ``reason``."""

    def __init__(self, href: str, reason: str) -> None:
        super().__init__(f"{href}: {reason}")
        self.href, self.reason = href, reason


def _nodata(asset: pystac.Asset, file_nodata: float | None) -> float:
    """The asset's nodata value: its ``raster:bands`` entry, else the file's, else 0 (the
    Sentinel-2 L2A convention for DN and SCL)."""
    bands = asset.extra_fields.get("raster:bands") or [{}]
    value = bands[0].get("nodata", file_nodata)
    return 0 if value is None else value


def _overview_level(src, dst_res: float) -> int | None:
    """The coarsest overview whose pixels are still no larger than the tile's
    (``dst_res``, CRS units), as GDAL's OVERVIEW_LEVEL; None for full resolution. Reading a
    10 m band onto a 20 m grid then decodes a quarter of the pixels, as odc-stac does."""
    factors = src.overviews(1)
    src_res = abs(src.transform.a)
    fit = [i for i, f in enumerate(factors) if src_res * f <= dst_res * (1 + 1e-6)]
    return fit[-1] if fit else None


#: spacing, in tile pixels, of the nodes where :func:`_positions` transforms exactly
NODE_SPACING = 16
#: largest error, in source pixels, that :func:`_positions` accepts from interpolating
#: between nodes; beyond it (or where a node cannot be transformed) every pixel is
#: transformed exactly
MAX_INTERPOLATION_ERROR = 0.01


def _positions(geobox: GeoBox, src_crs, src_transform) -> tuple[np.ndarray, np.ndarray]:
    """Where every tile pixel centre falls in a source grid: fractional (col, row), float64,
    flattened in the tile's row order.

    PROJ transforms exactly only the nodes of a grid fixed to the tile CRS (every
    :data:`NODE_SPACING` pixels, at multiples of that distance from the CRS origin), and
    the pixels between are interpolated bilinearly: a whole-tile mapping cost ~0.3 s per
    source grid on 1000 x 1000 px, most of a one-acquisition daily update. Because the
    nodes belong to the CRS, not to the window, the same pixel maps to the same place
    whatever window of the tile is read. The interpolation is checked against the exact
    transform at every node cell's centre (where its error is largest); if any is off by
    more than :data:`MAX_INTERPOLATION_ERROR` pixels, or a node falls outside the
    projection's domain, every pixel is transformed exactly.
    """
    height, width = geobox.shape
    a = geobox.affine
    tile_wkt, src_wkt = geobox.crs.to_wkt(), src_crs.to_wkt()

    def to_src(x, y):
        return _PROJ.transform(tile_wkt, src_wkt, x, y)

    inverse = ~src_transform
    xs = a.c + (np.arange(width) + 0.5) * a.a
    ys = a.f + (np.arange(height) + 0.5) * a.e
    if a.b == 0 and a.d == 0 and min(height, width) > 2 * NODE_SPACING:
        step_x, step_y = NODE_SPACING * abs(a.a), NODE_SPACING * abs(a.e)
        nx = np.arange(np.floor(xs.min() / step_x), np.ceil(xs.max() / step_x) + 1) * step_x
        ny = np.arange(np.floor(ys.min() / step_y), np.ceil(ys.max() / step_y) + 1) * step_y
        gx, gy = np.meshgrid(nx, ny)
        node_col, node_row = inverse * to_src(gx, gy)
        mx, my = np.meshgrid((nx[:-1] + nx[1:]) / 2, (ny[:-1] + ny[1:]) / 2)
        mid_col, mid_row = inverse * to_src(mx, my)
        err = np.fmax(abs(_centres(node_col) - mid_col), abs(_centres(node_row) - mid_row))
        if np.isfinite(node_col).all() and np.isfinite(node_row).all() and (
                err.max() <= MAX_INTERPOLATION_ERROR):
            return (_interpolate(node_col, nx, ny, xs, ys).ravel(),
                    _interpolate(node_row, nx, ny, xs, ys).ravel())
    gx, gy = np.meshgrid(xs, ys)
    col, row = inverse * to_src(gx.ravel(), gy.ravel())
    return np.asarray(col), np.asarray(row)




def _centres(nodes: np.ndarray) -> np.ndarray:
    """The bilinear interpolation of ``nodes`` at the centre of each node cell."""
    return (nodes[:-1, :-1] + nodes[:-1, 1:] + nodes[1:, :-1] + nodes[1:, 1:]) / 4


def _interpolate(nodes: np.ndarray, nx: np.ndarray, ny: np.ndarray, xs: np.ndarray,
                 ys: np.ndarray) -> np.ndarray:
    """``nodes`` (len(ny), len(nx)) interpolated bilinearly at every (ys[i], xs[j]): along x
    for each node row, then along y for each tile row."""
    fx = (xs - nx[0]) / (nx[1] - nx[0])
    ix = np.clip(np.floor(fx).astype(np.int64), 0, len(nx) - 2)
    tx = fx - ix
    along_x = nodes[:, ix] * (1 - tx) + nodes[:, ix + 1] * tx  # (len(ny), width)
    fy = (ys - ny[0]) / (ny[1] - ny[0])
    iy = np.clip(np.floor(fy).astype(np.int64), 0, len(ny) - 2)
    ty = fy - iy
    from ._sampling import interpolate_rows  # numba: at the first read

    out = np.empty((len(ys), len(xs)), dtype=np.float64)
    interpolate_rows(np.ascontiguousarray(along_x), iy, ty, out)  # one compiled pass
    return out


class _Footprint(NamedTuple):
    """The tile pixels whose centres fall inside a source grid, and where
    (:func:`_footprint`)."""

    #: the tile's flat index of each such pixel (int64); empty: every pixel, in order
    targets: np.ndarray
    #: their fractional (col, row) in the source grid (float64)
    col: np.ndarray
    row: np.ndarray
    #: the source grid's (rows, cols)
    src_shape: tuple[int, int]


def _footprint(positions: tuple[np.ndarray, np.ndarray],
               src_shape: tuple[int, int]) -> _Footprint | None:
    """The positions (:func:`_positions`) inside a source grid of ``src_shape``; ``None``
    when none is. Made once per source grid and load, for its samplers of every method."""
    from ._sampling import inside_positions  # numba: at the first read

    col, row = (np.ascontiguousarray(p, dtype=np.float64) for p in positions)
    targets, col, row = inside_positions(col, row, *src_shape)
    if col.shape[0] == 0:
        return None
    return _Footprint(targets, col, row, (int(src_shape[0]), int(src_shape[1])))


class _Sampler:
    """The ``nearest`` or ``bilinear`` sampling of a source window at the tile's pixel
    positions in that source grid (:func:`_positions`, :func:`_footprint`).

    Why not GDAL's warper: creating a warped VRT per file takes a process-wide lock in
    PROJ, so reads in threads ran slower than one at a time (BENCHMARKS.md), and its
    approximate transformer gives values that depend on the window (a block of a tile
    differed from the same pixels of the whole tile). Conventions follow GDAL's warper:
    a tile pixel is observed when its centre lies inside the file; bilinear weights are
    renormalised over the neighbours that hold data; integers are rounded half up.
    """

    def __init__(self, footprint: _Footprint | None, method: str) -> None:
        self.method = method
        self.window = None
        if footprint is None:  # no tile pixel inside the file
            return
        #: the layer's flat index of each sampled pixel; empty: all of them, in order
        self.targets = footprint.targets
        from ._sampling import bilinear_taps, nearest_taps  # numba: at the first read

        # int32 and float32 (the sampler is kept for the whole load: memory), and each
        # neighbour as a flat index into the window
        col, row = footprint.col, footprint.row
        if method == "nearest":
            index, (top, bottom, left, right) = nearest_taps(col, row)
            self.taps = index[np.newaxis]
        else:
            self.taps, self.tap_weights, (top, bottom, left, right) = bilinear_taps(
                col, row, *footprint.src_shape)
        self.window = ((int(top), int(bottom) + 1), (int(left), int(right) + 1))

    def fill(self, layer: np.ndarray, data: np.ndarray, nodata: float) -> None:
        """Fill ``layer`` (uint16, the tile's shape, C order) with the values sampled from
        ``data``, the source window, where ``layer`` is still 0 (no earlier item of the
        slice observed the pixel); nodata and pixels outside the file leave it as it is."""
        if self.window is None:
            return
        from ._sampling import bilinear_fill, nearest_fill  # numba: at the first read

        flat_data = np.ascontiguousarray(data).ravel()
        if not layer.flags.c_contiguous:
            raise ValueError("a sampled layer must be C-contiguous (it is written in place)")
        flat_layer = layer.reshape(-1)  # a view, since contiguous
        if self.method == "nearest":
            nearest_fill(flat_data, self.taps[0], float(nodata), flat_layer, self.targets)
        else:
            bilinear_fill(flat_data, self.taps, self.tap_weights, float(nodata), flat_layer,
                          self.targets)


class _Samplers:
    """The samplers of one load, shared by its reader threads: one pixel mapping and
    footprint per source grid (every item of a granule shares them; nearest and bilinear
    share them), one sampler per source grid and method."""

    def __init__(self, geobox: GeoBox) -> None:
        self.geobox = geobox
        self._footprints: dict = {}
        self._samplers: dict = {}
        self._lock = threading.Lock()

    def get(self, info: _FileInfo, method: str) -> _Sampler:
        grid = info.grid
        with self._lock:
            sampler = self._samplers.get((grid, method))
            if sampler is None:
                if grid not in self._footprints:
                    self._footprints[grid] = _footprint(
                        _positions(self.geobox, info.crs, info.transform), info.shape)
                sampler = self._samplers[(grid, method)] = _Sampler(self._footprints[grid],
                                                                    method)
        return sampler


#: largest size, MiB, of the decoded source blocks one process keeps (:data:`DECODED`):
#: a tile's fit loads its history once per ``monitor.block_size`` block, and the blocks
#: share most source blocks (granule blocks are not aligned with the tile's). On the
#: 1000 x 1000 px benchmark tile the 2-year history under a 512 px block is ~1 GiB
#: decoded, so each source block is decoded once per tile instead of twice; a load larger
#: than the cache still finds part of the last one's (:func:`read_slices`' alternate
#: scans). BENCHMARKS.md, "The chain against its I/O floor"
DECODED_CACHE_MIB = 1024
#: smallest block, in pixels, the cache keeps: a file stored in strips is cached in
#: blocks of 512 x 512 px (GDAL decodes the strips under them)
_MIN_BLOCK_PX = 256 * 256


class _FileInfo(NamedTuple):
    """What a read needs from an asset file at one overview level; ``overviews`` and the
    grid attributes are named as rasterio's dataset's, so the helpers take either."""

    crs: object
    transform: object
    shape: tuple[int, int]
    dtype: str
    nodata: float | None
    factors: tuple[int, ...]
    block_shape: tuple[int, int]
    #: the source grid (CRS WKT, affine, shape): the key of :class:`_Samplers`
    grid: tuple

    def overviews(self, band: int) -> tuple[int, ...]:
        return self.factors

    @classmethod
    def of(cls, src) -> _FileInfo:
        """From a file rasterio opened."""
        return cls._of(src.crs, src.transform, src.shape, src.dtypes[0], src.nodata,
                       tuple(src.overviews(1)), src.block_shapes[0])

    @classmethod
    def of_gdal(cls, raster: _gdal.RasterInfo) -> _FileInfo:
        """From :mod:`forestwatch._gdal`'s info: the same values as :meth:`of` gives."""
        from affine import Affine

        return cls._of(_crs_from_wkt(raster.wkt), Affine.from_gdal(*raster.geotransform),
                       raster.shape, raster.dtype, raster.nodata, raster.factors,
                       raster.block_shape)

    @classmethod
    def _of(cls, crs, transform, shape, dtype, nodata, factors, block_shape) -> _FileInfo:
        bh, bw = block_shape
        if bh * bw < _MIN_BLOCK_PX:
            bh, bw = 512, 512
        return cls(crs, transform, shape, dtype, nodata, factors, (bh, bw),
                   (crs.to_wkt() if crs else "", tuple(transform)[:6], shape))


@functools.lru_cache(maxsize=64)
def _crs_from_wkt(wkt: str):
    """rasterio's CRS of a file's WKT (the files of an archive share a few), None for a
    file without one, as rasterio's ``src.crs``."""
    from rasterio.crs import CRS

    return CRS.from_wkt(wkt) if wkt else None


class _DecodedBlocks:
    """The source blocks this process decoded, and the files' :class:`_FileInfo`: tiles
    whose jobs run in one process read the files they share (a granule covers many tiles)
    with one open and one decode instead of one per tile.

    Least recently used blocks go first beyond ``max_mib``. A local file is known by its
    path, inode, size and modification time, so a file rewritten is read again; a URL
    by itself, as GDAL's HTTP cache knows it, and :func:`forestwatch.access.
    clear_gdal_http_cache` clears both.
    """

    def __init__(self, max_mib: int) -> None:
        self.max_bytes = max_mib * 2**20
        self._blocks: OrderedDict = OrderedDict()
        self._infos: dict = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def info(self, key) -> _FileInfo | None:
        with self._lock:
            return self._infos.get(key)

    def put_info(self, key, info: _FileInfo) -> None:
        with self._lock:
            self._infos[key] = info

    def block(self, key) -> np.ndarray | None:
        with self._lock:
            block = self._blocks.get(key)
            if block is not None:
                self._blocks.move_to_end(key)
            return block

    def put_block(self, key, block: np.ndarray) -> None:
        if block.nbytes > self.max_bytes:
            return
        block.flags.writeable = False
        with self._lock:
            if key in self._blocks:
                return
            self._blocks[key] = block
            self._bytes += block.nbytes
            while self._bytes > self.max_bytes:
                _, old = self._blocks.popitem(last=False)
                self._bytes -= old.nbytes

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._infos.clear()
            self._bytes = 0


def _decoded_cache_mib() -> int:
    """:data:`DECODED_CACHE_MIB`, or ``FORESTWATCH_DECODED_CACHE_MIB`` (not a config key:
    it changes no result, so it reruns nothing)."""
    return whole_number("FORESTWATCH_DECODED_CACHE_MIB", DECODED_CACHE_MIB, minimum=0,
                        meaning="MiB (0 keeps no decoded block)")


#: the process's decoded blocks (:class:`_DecodedBlocks`)
DECODED = _DecodedBlocks(_decoded_cache_mib())


def _file_key(href: str) -> tuple:
    """What identifies ``href``'s content to the cache: a local file's path, inode, size
    and modification time (a file replaced by a rename has a new inode, even within the
    file system's timestamp resolution); a URL itself."""
    path = href.removeprefix("file://")
    if "://" not in path:
        try:
            st = os.stat(path)
        except OSError:
            return (href,)
        return (path, st.st_ino, st.st_size, st.st_mtime_ns)
    return (href,)


def _read_window(key: tuple, info: _FileInfo, window, open_src) -> np.ndarray:
    """``window`` ((row0, row1), (col0, col1)) of the file at ``info``'s level, assembled
    from its blocks: each taken from :data:`DECODED`, or read (``open_src()`` gives the
    open file) and kept.

    The blocks not kept are read in one call, the rectangle of blocks around them: GDAL
    then fetches their byte ranges together (consecutive blocks of a row in one request,
    the rows' requests side by side) where one call per block made one request after
    the other (BENCHMARKS.md, "The IQR fit, the rule mask and a window's blocks in one
    read"). A block inside that rectangle that was kept is decoded again, to the same
    values."""
    (r0, r1), (c0, c1) = window
    bh, bw = info.block_shape
    height, width = info.shape
    indices = [(br, bc) for br in range(r0 // bh, (r1 - 1) // bh + 1)
               for bc in range(c0 // bw, (c1 - 1) // bw + 1)]
    blocks = {index: DECODED.block(key + index) for index in indices}
    missing = [index for index, block in blocks.items() if block is None]
    if missing:
        top = min(br for br, _ in missing) * bh
        bottom = min((max(br for br, _ in missing) + 1) * bh, height)
        left = min(bc for _, bc in missing) * bw
        right = min((max(bc for _, bc in missing) + 1) * bw, width)
        read = open_src().read(1, window=((top, bottom), (left, right)))
        for br, bc in missing:
            block = np.ascontiguousarray(
                read[br * bh - top:min((br + 1) * bh, height) - top,
                     bc * bw - left:min((bc + 1) * bw, width) - left])
            DECODED.put_block(key + (br, bc), block)
            blocks[(br, bc)] = block
    out = np.empty((r1 - r0, c1 - c0), dtype=info.dtype)
    for (br, bc), block in blocks.items():
        rows = (br * bh, min((br + 1) * bh, height))
        cols = (bc * bw, min((bc + 1) * bw, width))
        top, bottom = max(r0, rows[0]), min(r1, rows[1])
        left, right = max(c0, cols[0]), min(c1, cols[1])
        out[top - r0:bottom - r0, left - c0:right - c0] = block[
            top - rows[0]:bottom - rows[0], left - cols[0]:right - cols[0]]
    return out


def _read_one(href: str, asset: pystac.Asset, resampling: str, gdal_opts: dict,
              samplers: _Samplers, layer: np.ndarray) -> None:
    """``href`` on the load's tile, into ``layer`` (uint16 as stored, the tile's shape)
    where it is still 0: nearest and bilinear by reading the file's window (its blocks
    kept in :data:`DECODED`, so a file another tile of the process read is neither opened
    nor decoded again) and sampling it (:class:`_Samplers`); other methods through GDAL's
    warper."""
    import rasterio
    from rasterio._err import CPLE_BaseError  # GDAL errors rasterio does not wrap

    geobox = samplers.geobox
    base = _file_key(asset.href)  # not the signed href: a signature changes, the file not
    opened: dict = {}
    direct: dict[int | None, _gdal.Raster] = {}
    # GDAL's options (per thread), entered at the first open only: ~0.5 ms a read, and
    # most reads of a later tile of the process open nothing
    env = ExitStack()
    in_env = False

    def open_src(level: int | None):
        nonlocal in_env
        if not in_env:
            env.enter_context(rasterio.Env(**gdal_opts))
            in_env = True
        if level not in opened:
            for src in opened.values():
                src.close()
            opened.clear()
            opened[level] = (rasterio.open(href) if level is None
                             else rasterio.open(href, OVERVIEW_LEVEL=level))
        return opened[level]

    def open_direct(level: int | None) -> _gdal.Raster:
        if level not in direct:
            _gdal.use_options(gdal_opts)
            direct[level] = _gdal.Raster(_gdal.gdal_path(href), level)
        return direct[level]

    def open_data(level: int | None, info: _FileInfo):
        """What :func:`_read_window` reads: the file opened by GDAL's own calls
        (:mod:`forestwatch._gdal`, without the interpreter lock) where they can read it,
        else by rasterio."""
        if level in opened or info.dtype not in _gdal.DTYPES or not _gdal.can_open(href):
            return open_src(level)
        return open_direct(level)

    def info_at(level: int | None) -> _FileInfo:
        info = DECODED.info(base + (level,))
        if info is None:
            if _gdal.can_open(href) and open_direct(level).dtype is not None:
                info = _FileInfo.of_gdal(direct[level].info())
            else:
                info = _FileInfo.of(open_src(level))
            if info.crs is None:
                raise _gdal.GdalError("the file has no coordinate reference system, so it "
                                      "cannot be placed on the tile grid")
            DECODED.put_info(base + (level,), info)
        return info

    try:
        with env:
            try:
                level = _overview_level(info_at(None), abs(geobox.affine.a))
                info = info_at(level)
                nodata = _nodata(asset, info.nodata)
                if resampling not in ("nearest", "bilinear"):
                    warped = _warp(open_src(level), geobox, resampling, nodata)
                    np.copyto(layer, warped, where=layer == 0)
                    return
                sampler = samplers.get(info, resampling)
                data = None if sampler.window is None else _read_window(
                    base + (level,), info, sampler.window, lambda: open_data(level, info))
            finally:
                for src in [*opened.values(), *direct.values()]:
                    src.close()
    except (rasterio.errors.RasterioError, CPLE_BaseError, _gdal.GdalError) as err:
        raise ReadFailure(href, str(err)) from None
    sampler.fill(layer, data, nodata)


def _warp(src, geobox: GeoBox, resampling: str, nodata: float) -> np.ndarray:
    """``src`` through GDAL's warper onto ``geobox`` (cubic, average, mode)."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    height, width = geobox.shape
    with WarpedVRT(src, crs=geobox.crs.wkt, transform=geobox.affine, width=width,
                   height=height, resampling=Resampling[resampling], src_nodata=nodata,
                   nodata=nodata) as vrt:
        data = vrt.read(1)
    return np.where(data == nodata, 0, data).astype(np.uint16)


def read_slices(
    slices: Sequence[Sequence[pystac.Item]],
    *,
    asset_keys: Sequence[str],
    geobox: GeoBox,
    resampling: dict[str, str],
    gdal_opts: dict[str, str],
    threads: int,
    sign: Callable[[str], str] | None = None,
    on_failure: str = "skip",
) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """Read every asset of every item onto ``geobox``, one layer per slice of items.

    Returns ``{asset key: uint16 array (len(slices), y, x)}``, 0 where no item of the slice
    has data (nodata, or outside every file), the first item of a slice with data winning
    where they overlap (odc-stac's fusing order); and the ``(href, reason)`` of each file
    that could not be read, left as 0 with ``on_failure`` ``"skip"``. With ``"fail"`` the
    first such file raises :class:`ReadFailure`. ``threads`` reads are in flight at once;
    ``sign`` rewrites each href before it is opened (``stac.auth.sign_url``).

    Successive calls in a process scan the layers in alternate directions (oldest first,
    then newest first, ...): a tile's fit loads the same files once per block, and
    neighbouring tiles of a process load the files they share, so the next load starts
    with the blocks the last one decoded most recently, those still in :data:`DECODED`.
    Scanned in one direction every time, a load larger than the cache evicts each block
    before the next load comes back to it, and none is found. The result does not depend
    on the direction.
    """
    height, width = geobox.shape
    out = {key: np.zeros((len(slices), height, width), dtype=np.uint16) for key in asset_keys}
    reads = [(n, key, item.assets[key]) for n, items in enumerate(slices) for item in items
             for key in asset_keys]
    # one task per layer (slice, asset key): its items in the slice's order, each filling
    # what the ones before left empty (the first with data wins), so no two threads write
    # one layer and nothing is fused afterwards
    layers: dict[tuple[int, str], list[int]] = {}
    for i, (n, key, _) in enumerate(reads):
        layers.setdefault((n, key), []).append(i)
    tasks = list(layers.values())
    if next(_SCANS) % 2 == 1:
        tasks.reverse()

    samplers = _Samplers(geobox)

    def fill(task: list[int]) -> list[tuple[int, ReadFailure]]:
        failed = []
        for i in task:
            n, key, asset = reads[i]
            href = sign(asset.href) if sign else asset.href
            try:
                _read_one(href, asset, resampling[key], gdal_opts, samplers, out[key][n])
            except ReadFailure as err:
                if on_failure == "fail" and not _transient(href, err.reason):
                    raise
                failed.append((i, ReadFailure(asset.href, err.reason)))
        return failed

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="forestwatch-read") as pool:
        failed_by_task = dict(enumerate(pool.map(fill, tasks)))
    again = [t for t, failed in failed_by_task.items()
             if any(_transient(err.href, err.reason) for _, err in failed)]
    if again:
        refused = {err.href for t in again for _, err in failed_by_task[t]}
        failed_by_task.update(_read_again(again, refused, tasks, reads, out, fill))
    failures = sorted((f for failed in failed_by_task.values() for f in failed),
                      key=lambda f: f[0])
    if failures and on_failure == "fail":
        raise failures[0][1]
    return out, [(err.href, err.reason) for _, err in failures]


#: what GDAL says of a request the server refused for good: a client error other than 429
_REFUSED_FOR_GOOD = re.compile(r"HTTP response code: 4(?!29)\d\d\b")


def _transient(href: str, reason: str) -> bool:
    """Whether a failed read of ``href`` may pass later in the same run: a file served over
    HTTP(S) that the server did not refuse for good (404, 403, ...). Rate limiting (429;
    S3's SlowDown and Azure's ServerBusy are 503) and server-side failures are; so is a
    file GDAL found "not recognized as a supported format" when its header request was
    refused and GDAL read the refusal's body (seen with 429s). A corrupt file is read once
    more, and fails again."""
    return href.startswith(("http://", "https://")) and not _REFUSED_FOR_GOOD.search(reason)


def _read_again(again: list[int], refused: set[str], tasks: list[list[int]], reads: list,
                out: dict, fill: Callable) -> dict[int, list]:
    """The layers (``tasks`` indices) where a file failed with a transient HTTP error
    after GDAL's own retries, read again after the others, one file at a time: a
    provider that limits requests in flight refuses some of the many the reader makes at
    once (tests/test_stac_api.py), and one at a time is what it accepts. Each layer is
    emptied and read whole again, its items in order, so the first item with data wins as
    in the first reading. GDAL first forgets its failed reads of the ``refused`` files
    (else it answers with them)."""
    from .access import forget_gdal_http_reads

    forget_gdal_http_reads(refused)
    redone = {}
    for t in again:
        for i in tasks[t]:
            n, key, _ = reads[i]
            out[key][n].fill(0)
        redone[t] = fill(tasks[t])
    still = sum(len(failed) for failed in redone.values())
    log.warning("%d layer(s) with a file served over HTTP that failed after GDAL's retries "
                "(not refused for good) read again one file at a time: %d file(s) still "
                "unread", len(again), still)
    return redone


#: counts :func:`read_slices` calls of the process: odd ones scan newest first
_SCANS = itertools.count()
