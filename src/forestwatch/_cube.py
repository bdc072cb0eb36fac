"""The reflectance cube's assembly from the reader's layers, and its normalised
difference indices, one pass per pixel (numba).

:func:`forestwatch.stac.load_reflectance` turns the reader's layers (stored DN per slice
and band, SCL per slice) into a float32 reflectance per band and solar day: a pixel comes
from the first slice of its day whose SCL class is valid and whose bands all hold data,
scaled by that slice's rule. numpy did it in the job's thread holding the GIL, about ten
passes over the tile per slice (``np.isin``, a comparison per band, boolean gathers and
scatters) after filling every band with NaN (BENCHMARKS.md, "The cube in one pass").
:func:`fill_slice` makes one pass per slice and releases the GIL, so the days are filled
on the job's threads. :func:`normalised_difference` does the same for an index, where
xarray made five passes (difference, sum, quotient, finiteness, cast). The same
operations in the same order and dtype (no ``fastmath``): the same bits.

Compiled once per environment into numba's cache (``cache=True``), one specialisation
per number of bands.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def fill_slice(scl, valid, dns, scales, offsets, clear, outs):  # pragma: no cover (numba)
    """One slice of a day into that day's arrays, where no earlier slice of the day filled.

    ``scl`` (y, x) the slice's SCL classes; ``valid`` (k,) the classes that count as
    clear; ``dns`` a tuple of (y, x) uint16 layers, one per band (0: no data); ``scales``
    and ``offsets`` (bands,) float32, the slice's DN -> reflectance rule; ``clear`` (y,
    x) bool, the day's pixels filled so far (set here); ``outs`` a tuple of (y, x)
    float32, the day's reflectance per band (written where this slice fills)."""
    height, width = scl.shape
    for r in range(height):
        for c in range(width):
            if clear[r, c]:
                continue
            s = scl[r, c]
            ok = False
            for v in valid:
                if s == v:
                    ok = True
                    break
            if not ok:
                continue
            for b in range(len(dns)):
                if dns[b][r, c] == 0:
                    ok = False
                    break
            if not ok:
                continue
            for b in range(len(dns)):
                outs[b][r, c] = np.float32(dns[b][r, c]) * scales[b] + offsets[b]
            clear[r, c] = True


@numba.njit(nogil=True, cache=True, error_model="numpy")  # x / 0 is inf or NaN, as numpy
def normalised_difference(a, b, out):  # pragma: no cover (numba)
    """``out[i] = (a[i] - b[i]) / (a[i] + b[i])`` for flat arrays ``a`` and ``b``, computed
    in their dtype and stored as float32 (``out``), NaN where the quotient is not finite
    (a zero sum, a missing band)."""
    nan = np.float32(np.nan)
    for i in range(a.size):
        q = (a[i] - b[i]) / (a[i] + b[i])
        out[i] = np.float32(q) if np.isfinite(q) else nan


def warm(bands: int = 2) -> None:
    """Compile :func:`fill_slice` for ``bands`` bands (uint16 layers), or load it from
    numba's cache. For :func:`forestwatch.monitor.warm_numba_cache`."""
    layer = np.zeros((1, 1), dtype=np.uint16)
    out = np.zeros((1, 1), dtype=np.float32)
    fill_slice(layer, np.zeros(1, dtype=np.uint16), (layer,) * bands,
               np.ones(bands, dtype=np.float32), np.zeros(bands, dtype=np.float32),
               np.zeros((1, 1), dtype=bool), (out,) * bands)
    normalised_difference(out.ravel(), out.ravel(), np.empty(1, dtype=np.float32))
