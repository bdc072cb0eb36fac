"""The reader's per-file GDAL calls (open, read a window, close) made in rasterio's own
GDAL library through ctypes, which releases the interpreter lock around each call.

Why: ``rasterio.open`` holds the interpreter for ~0.6 ms per file (it builds the dataset
object: CRS, transform, nodata, block shapes...), while GDAL's own open takes ~0.06 ms,
and the reader opens every file of a load once per load: 888 files per load of a tile
on the 1000 x 1000 px benchmark area, each open taking the lock from the 16 reader
threads. Open, one 512 px block read and close of such a file: 2.6 ms with rasterio
against 1.6 ms here in one thread, 1.7 against 0.8 ms per file with 8 threads
(BENCHMARKS.md, "The reader's GDAL calls without the interpreter lock").

What a file is (CRS, grid, overviews, block shape, nodata: :meth:`Raster.info`, made
into ``_assets._FileInfo`` with rasterio's CRS object, once per file and process) is read
here too. The warper (cubic, average, mode) stays rasterio's. Only local files and
HTTP(S) URLs come here, the schemes whose GDAL paths need no credentials from rasterio's
session (``s3://``, ``gs://``... go through rasterio).

GDAL's config options are per thread: :func:`use_options` sets the load's options
(``forestwatch.access.gdal_options``) in the calling reader thread, as ``rasterio.Env``
does, once per thread. ``FORESTWATCH_DIRECT_GDAL=0`` in the environment sends every read
through rasterio instead (the same values, tested).
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np

#: GDAL's data type code for each numpy dtype the reader reads
_GDAL_TYPES = {"uint8": 1, "uint16": 2, "int16": 3, "uint32": 4, "int32": 5, "float32": 6,
               "float64": 7, "uint64": 12, "int64": 13, "int8": 14}
_NUMPY_TYPES = {code: name for name, code in _GDAL_TYPES.items()}
#: the numpy dtypes :class:`Raster` reads
DTYPES = frozenset(_GDAL_TYPES)
_GDAL_OF_RASTER, _GDAL_OF_VERBOSE_ERROR = 0x02, 0x40
_CE_FAILURE = 3


class GdalError(Exception):
    """A GDAL call that failed; the message is GDAL's."""


def gdal_libraries() -> list[ctypes.CDLL]:
    """Every GDAL library mapped into this process (rasterio's, and e.g. pyogrio's own
    copy), opened with ctypes: the same handles as the loaded copies (refcount). Empty
    where they cannot be listed (not Linux)."""
    import rasterio  # noqa: F401 - maps rasterio's GDAL into the process

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = {line.split(maxsplit=5)[-1] for line in maps.splitlines() if "/libgdal" in line}
    libraries = []
    for path in sorted(paths):
        try:
            libraries.append(ctypes.CDLL(path))
        except OSError:
            continue
    return libraries


@functools.cache
def library() -> ctypes.CDLL | None:
    """rasterio's GDAL library with the prototypes of the calls made here: the one that
    sees an option set through ``rasterio.Env`` (pyogrio may map a second copy); None
    where it cannot be found or ``FORESTWATCH_DIRECT_GDAL`` is ``0``."""
    import rasterio

    if os.environ.get("FORESTWATCH_DIRECT_GDAL", "1") == "0":
        return None
    probe = b"FORESTWATCH_GDAL_PROBE"
    with rasterio.Env(FORESTWATCH_GDAL_PROBE="yes"):
        for lib in gdal_libraries():
            try:
                lib.CPLGetConfigOption.restype = ctypes.c_char_p
                lib.CPLGetConfigOption.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
                if lib.CPLGetConfigOption(probe, None) == b"yes":
                    return _with_prototypes(lib)
            except AttributeError:
                continue
    return None


def _with_prototypes(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.GDALOpenEx.restype = ctypes.c_void_p
    lib.GDALOpenEx.argtypes = [ctypes.c_char_p, ctypes.c_uint, ctypes.c_void_p,
                               ctypes.c_void_p, ctypes.c_void_p]
    lib.GDALClose.restype = None
    lib.GDALClose.argtypes = [ctypes.c_void_p]
    lib.GDALGetRasterBand.restype = ctypes.c_void_p
    lib.GDALGetRasterBand.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.GDALRasterIO.restype = ctypes.c_int
    lib.GDALRasterIO.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                 ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                                 ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    for name in ("GDALGetRasterCount", "GDALGetRasterXSize", "GDALGetRasterYSize",
                 "GDALGetRasterDataType", "GDALGetOverviewCount", "GDALGetRasterBandXSize"):
        getattr(lib, name).restype = ctypes.c_int
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.GDALGetOverview.restype = ctypes.c_void_p
    lib.GDALGetOverview.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.GDALGetGeoTransform.restype = ctypes.c_int
    lib.GDALGetGeoTransform.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_double)]
    lib.GDALGetRasterNoDataValue.restype = ctypes.c_double
    lib.GDALGetRasterNoDataValue.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    lib.GDALGetBlockSize.restype = None
    lib.GDALGetBlockSize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int),
                                     ctypes.POINTER(ctypes.c_int)]
    lib.GDALGetProjectionRef.restype = ctypes.c_char_p
    lib.GDALGetProjectionRef.argtypes = [ctypes.c_void_p]
    lib.CPLErrorReset.restype = None
    lib.CPLErrorReset.argtypes = []
    lib.CPLGetLastErrorMsg.restype = ctypes.c_char_p
    lib.CPLGetLastErrorMsg.argtypes = []
    lib.CPLPushErrorHandler.restype = None
    lib.CPLPushErrorHandler.argtypes = [ctypes.c_void_p]
    lib.CPLSetThreadLocalConfigOption.restype = None
    lib.CPLSetThreadLocalConfigOption.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    return lib


def gdal_path(href: str) -> str | None:
    """``href`` as GDAL opens it, for a local file or an HTTP(S) URL; None for any other
    scheme (read through rasterio, which brings its session's credentials)."""
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    path = href.removeprefix("file://")
    if "://" in path or path.startswith("/vsi"):
        return None
    return path


_THREAD = threading.local()


def use_options(options: dict[str, str]) -> None:
    """Prepare the calling thread for :class:`Raster`: set ``options`` as its GDAL config
    options (what ``rasterio.Env`` sets for a read; an option of the thread's last set that
    is not in this one is unset), once per thread and set of options;
    and the first time, make GDAL's messages in this thread quiet (``CPLQuietErrorHandler``;
    the message of a failure is still GDAL's last error, which :class:`GdalError` carries).
    GDAL's default handler would print them to stderr, past the logging filter that
    redacts a signed URL's query string (``forestwatch.access.RedactSecrets``)."""
    lib = library()
    if not getattr(_THREAD, "quiet", False):
        lib.CPLPushErrorHandler(ctypes.cast(lib.CPLQuietErrorHandler, ctypes.c_void_p))
        _THREAD.quiet = True
    key = tuple(sorted((str(name), str(value)) for name, value in options.items()))
    before = getattr(_THREAD, "options", ())
    if before == key:
        return
    for name in dict(before).keys() - dict(key).keys():  # a last load's option not set now
        lib.CPLSetThreadLocalConfigOption(name.encode(), None)
    for name, value in key:
        lib.CPLSetThreadLocalConfigOption(name.encode(), value.encode())
    _THREAD.options = key


class RasterInfo(NamedTuple):
    """What GDAL says of an open file's grid and band 1 (rasterio's names and forms)."""

    wkt: str
    #: GDAL's geotransform (c, a, b, f, d, e), as ``Affine.from_gdal`` takes it
    geotransform: tuple[float, ...]
    shape: tuple[int, int]
    #: numpy's name of band 1's type; None for a type the reader does not read here
    dtype: str | None
    nodata: float | None
    #: each overview's decimation factor, as rasterio's ``overviews(1)``
    factors: tuple[int, ...]
    block_shape: tuple[int, int]


class Raster:
    """Band 1 of a file opened by ``GDALOpenEx`` (``overview_level`` as GDAL's
    ``OVERVIEW_LEVEL`` open option, None for full resolution): its :meth:`info`, and
    rasterio's ``read(1, window=...)`` for ``_assets._read_window``. Close it."""

    def __init__(self, path: str, overview_level: int | None) -> None:
        self._lib = lib = library()
        options = None
        if overview_level is not None:
            options = (ctypes.c_char_p * 2)(f"OVERVIEW_LEVEL={overview_level}".encode(), None)
        lib.CPLErrorReset()
        self._handle = lib.GDALOpenEx(path.encode(), _GDAL_OF_RASTER | _GDAL_OF_VERBOSE_ERROR,
                                      None, options, None)
        if not self._handle:
            raise GdalError(_last_error(lib, f"{path}: cannot be opened"))
        if lib.GDALGetRasterCount(self._handle) < 1:
            self.close()
            raise GdalError(f"{path}: no raster band")
        self._band = lib.GDALGetRasterBand(self._handle, 1)
        self.dtype = _NUMPY_TYPES.get(lib.GDALGetRasterDataType(self._band))

    def info(self) -> RasterInfo:
        lib, band = self._lib, self._band
        transform = (ctypes.c_double * 6)()
        if lib.GDALGetGeoTransform(self._handle, transform) >= _CE_FAILURE:
            transform = (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # GDAL's default, as rasterio's
        width, height = lib.GDALGetRasterXSize(self._handle), lib.GDALGetRasterYSize(self._handle)
        has_nodata = ctypes.c_int(0)
        nodata = lib.GDALGetRasterNoDataValue(band, ctypes.byref(has_nodata))
        factors = tuple(
            int(round(width / lib.GDALGetRasterBandXSize(lib.GDALGetOverview(band, i))))
            for i in range(lib.GDALGetOverviewCount(band)))
        block_x, block_y = ctypes.c_int(0), ctypes.c_int(0)
        lib.GDALGetBlockSize(band, ctypes.byref(block_x), ctypes.byref(block_y))
        wkt = lib.GDALGetProjectionRef(self._handle) or b""
        return RasterInfo(wkt.decode(), tuple(transform), (height, width), self.dtype,
                          nodata if has_nodata.value else None, factors,
                          (block_y.value, block_x.value))

    def read(self, band: int, *, window: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
        """The ``window`` ((row0, row1), (col0, col1)) of band 1, as rasterio's read."""
        if band != 1 or self.dtype is None:
            raise GdalError(f"band {band} of type {self.dtype} is not read here")
        (r0, r1), (c0, c1) = window
        out = np.empty((r1 - r0, c1 - c0), dtype=self.dtype)
        lib = self._lib
        lib.CPLErrorReset()
        err = lib.GDALRasterIO(self._band, 0, c0, r0, c1 - c0, r1 - r0, out.ctypes.data,
                               c1 - c0, r1 - r0, _GDAL_TYPES[self.dtype], 0, 0)
        if err >= _CE_FAILURE:
            raise GdalError(_last_error(lib, "reading failed"))
        return out

    def close(self) -> None:
        if self._handle:
            self._lib.GDALClose(self._handle)
            self._handle = None


def _last_error(lib: ctypes.CDLL, default: str) -> str:
    message = lib.CPLGetLastErrorMsg()
    return message.decode(errors="replace") if message else default


def can_open(href: str) -> bool:
    """Whether :class:`Raster` opens ``href`` (else rasterio does)."""
    return gdal_path(href) is not None and library() is not None


__all__ = ["DTYPES", "GdalError", "Raster", "RasterInfo", "can_open", "gdal_libraries", "gdal_path",
           "library", "use_options"]
