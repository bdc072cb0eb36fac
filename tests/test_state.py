"""Round trip of a tile's monitoring state (forestwatch.state) and crash-safe writing
(forestwatch.io.atomic_path).

The state format exists because nrt 0.3.0's own to_netcdf/from_netcdf loses ``fit_start``,
EWMA's ``threshold_outlier`` and numpy-scalar parameters, returns masked arrays and writes
in clobber mode. Every monitor class is therefore fitted
with NON-default parameters, saved, reloaded and then monitored side by side with the
original: the reloaded monitor must behave exactly like the one that was never saved.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from affine import Affine

from forestwatch.config import monitor_class
from forestwatch.io import atomic_path
from forestwatch.state import (
    FORMAT_VERSION,
    AppliedDay,
    FitRecord,
    Ledger,
    MonitorMember,
    StateCorruptError,
    TileState,
    load_state,
    monitors_equal,
    read_ledger,
    save_state,
)

NY, NX = 12, 15
RES = 20.0
X0, Y0 = 4_461_600.0, 3_045_600.0  # upper-left corner, EPSG:3035
CRS = "EPSG:3035"
TRANSFORM = Affine(RES, 0, X0, 0, -RES, Y0)
EPOCH = dt.datetime(1970, 1, 1)

#: pixel with almost no clear observation (nrt marks it 4, "not enough observations")
SPARSE_PIXEL = (11, 14)
#: monitoring: rows that lose NDVI from the 4th new acquisition on; the drop grows with
#: the column (0.05 ... 0.5), so some drops fall between 6 and 10 residual sigma (EWMA's
#: threshold_outlier matters there) and some far above
DROP_ROWS = slice(5, 9)
DROP_FROM = 3
DROP = np.linspace(0.05, 0.5, NX)

# (class, constructor params, fit kwargs, attributes that must hold these exact values)
CASES = [
    pytest.param(
        "IQR",
        dict(trend=False, harmonic_order=2, sensitivity=np.float32(2.5), boundary=np.int64(4)),
        dict(method="OLS"),
        dict(trend=False, harmonic_order=2, sensitivity=2.5, boundary=4),
        id="IQR",
    ),
    pytest.param(
        "EWMA",
        dict(sensitivity=3.5, lambda_=0.2, threshold_outlier=6.0),
        dict(method="OLS", screen_outliers="Shewhart"),
        # nrt stores threshold_outlier as ``threshold`` (and its reload drops it: 10)
        dict(sensitivity=3.5, lambda_=0.2, threshold=6.0),
        id="EWMA",
    ),
    pytest.param(
        "CuSum",
        dict(sensitivity=0.1, save_fit_start=True),
        dict(method="ROC", alpha=0.1),
        dict(sensitivity=0.1),
        id="CuSum",
    ),
    pytest.param(
        # MoSum only accepts sensitivity in [0.001, 0.05] (nrt raises ValueError for 0.1);
        # 0.01 is still a non-default value (default 0.05)
        "MoSum",
        dict(h=0.5, sensitivity=0.01),
        dict(method="ROC", alpha=0.1),
        dict(h=0.5, sensitivity=0.01),
        id="MoSum",
    ),
    pytest.param(
        "CCDC",
        dict(sensitivity=2.5),
        dict(method="CCDC-stable", screen_outliers=None),
        dict(sensitivity=2.5, trend=True),
        id="CCDC",
    ),
]


# --------------------------------------------------------------------------- data


def _seasonal(days: np.ndarray) -> np.ndarray:
    """Forest NDVI without noise: 0.7 mean, annual harmonic of amplitude 0.15."""
    return 0.7 + 0.15 * np.sin(2 * np.pi * days / 365.25)


@pytest.fixture(scope="module")
def ndvi() -> xr.DataArray:
    """Two years of 8-day NDVI on a 12 x 15 px north-up tile, with clouds (NaN)."""
    rng = np.random.default_rng(20240611)
    time = pd.date_range("2021-01-01", "2022-12-31", freq="8D")
    doy = time.day_of_year.to_numpy(dtype=np.float64)[:, None, None]
    data = _seasonal(doy) + rng.normal(0.0, 0.02, (time.size, NY, NX))
    data[rng.random(data.shape) < 0.1] = np.nan  # 10 % clouds
    data[3:, SPARSE_PIXEL[0], SPARSE_PIXEL[1]] = np.nan
    x = X0 + RES / 2 + RES * np.arange(NX, dtype=np.float64)  # ascending
    y = Y0 - RES / 2 - RES * np.arange(NY, dtype=np.float64)  # descending (north-up)
    return xr.DataArray(
        np.ascontiguousarray(data, dtype=np.float32),
        dims=("time", "y", "x"),
        coords={"time": time.to_numpy(), "y": y, "x": x},
        name="ndvi",
    )


@pytest.fixture(scope="module")
def forest_mask() -> np.ndarray:
    mask = np.ones((NY, NX), dtype=np.uint8)
    mask[0, :4] = 0
    mask[NY - 1, :2] = 0
    return mask


def _fit(name: str, params: dict, fit_kwargs: dict, ndvi: xr.DataArray, mask: np.ndarray):
    monitor = monitor_class(name)(mask=mask.copy(), **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nrt warns about the deliberately sparse pixel
        monitor.fit(ndvi, **fit_kwargs)
    return monitor


def _ledger() -> Ledger:
    return Ledger(
        fit=FitRecord(start="2021-01-01", end="2022-12-31", days=["2021-01-02"],
                      items=["S2A_1", "S2B_2"]),
        applied=[AppliedDay(day="2023-01-05", items=["S2A_9", "S2B_9"],
                            acquisitions=["32UQB@2023-01-05T10:20:21", "33UUS@2023-01-05T10:20:30"],
                            valid_pixels=12, run="fast_forward"),
                 AppliedDay(day="2023-01-13", items=["S2A_10"],
                            acquisitions=["32UQB@2023-01-13T10:20:21"], valid_pixels=0,
                            unreadable=[{"item": "S2A_10", "asset": "B8A", "reason": "404"}],
                            run="20230113T020000_2023-01-13")],
        fitted_from="ab" * 32)


def _state(monitor, crs: str = CRS, tile_id: str = "X3718_Y2537") -> TileState:
    member = MonitorMember(index="NDVI", monitor=monitor,
                           monitor_config={"class": type(monitor).__name__,
                                           "params": {"sensitivity": 2.5}, "fit": {}})
    return TileState([member], crs=crs, transform=TRANSFORM, tile_id=tile_id,
                     ledger=_ledger(), software={"nrt": "0.3.0"}, created="2023-01-13")


def _new_acquisitions() -> list[tuple[np.ndarray, dt.datetime]]:
    """Ten acquisitions after the history; a growing drop on DROP_ROWS from DROP_FROM on;
    some clouds."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(10):
        date = dt.datetime(2023, 1, 4) + dt.timedelta(days=8 * i)
        doy = date.timetuple().tm_yday
        arr = _seasonal(np.full((NY, NX), float(doy))) + rng.normal(0.0, 0.02, (NY, NX))
        if i >= DROP_FROM:
            arr[DROP_ROWS, :] -= DROP[None, :]
        arr[rng.random((NY, NX)) < 0.1] = np.nan
        out.append((arr.astype(np.float32), date))
    return out


def _monitor_all(monitor) -> None:
    for arr, date in _new_acquisitions():
        monitor.monitor(arr.copy(), date)


def _assert_same_vars(original, loaded) -> None:
    """Every attribute equal, same array dtypes, no masked arrays, writable arrays."""
    va, vb = vars(original), vars(loaded)
    assert set(va) == set(vb)
    for key, a in va.items():
        b = vb[key]
        assert not isinstance(b, np.ma.MaskedArray), key
        if isinstance(a, np.ndarray) and a.ndim > 0:
            assert type(b) is np.ndarray, (key, type(b))
            assert b.dtype == a.dtype and b.shape == a.shape, key
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), key
            assert b.flags.writeable and b.flags.c_contiguous, key
        elif a is None:
            assert b is None, key
        elif isinstance(a, (bool, np.bool_, str)):
            assert b == a and type(b) is type(a), key
        else:  # python or numpy number: the numeric value must survive exactly
            assert isinstance(b, (int, float)), (key, type(b))
            assert float(b) == float(a), key


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("name, params, fit_kwargs, expected", CASES)
def test_roundtrip_after_fit(tmp_path, ndvi, forest_mask, name, params, fit_kwargs, expected):
    monitor = _fit(name, params, fit_kwargs, ndvi, forest_mask)
    state = _state(monitor)
    path = tmp_path / "state.nc"
    digest = save_state(state, path)
    assert isinstance(digest, str) and len(digest) == 64

    loaded = load_state(path)

    assert type(loaded.monitor) is type(monitor)
    assert monitors_equal(monitor, loaded.monitor)
    _assert_same_vars(monitor, loaded.monitor)
    for attr, value in expected.items():
        got = getattr(loaded.monitor, attr)
        if isinstance(value, bool):
            assert got is value, attr
        else:
            assert got == value and float(got) == float(value), attr
    # the numeric value of a numpy-scalar parameter is kept, not the class default
    assert float(loaded.monitor.sensitivity) == float(params["sensitivity"])
    if name == "CuSum":
        fit_start = loaded.monitor.fit_start
        assert isinstance(fit_start, np.ndarray) and fit_start.dtype == np.uint16
        np.testing.assert_array_equal(fit_start, monitor.fit_start)
        first, last = (int(d) for d in ndvi.time.values[[0, -1]].astype("datetime64[D]")
                       .astype(np.int64))
        monitored = loaded.monitor.mask == 1
        assert (fit_start[monitored] >= first).all() and (fit_start[monitored] < last).all()
    if name == "EWMA":
        assert loaded.monitor.threshold == 6.0
    # the sparse pixel and the non-forest pixels are reflected in the mask that was saved
    assert loaded.monitor.mask[SPARSE_PIXEL] == 4
    assert loaded.monitor.mask[0, 0] == 0
    np.testing.assert_array_equal(loaded.monitor.x, ndvi.x.values)
    np.testing.assert_array_equal(loaded.monitor.y, ndvi.y.values)

    assert loaded.crs == CRS
    assert loaded.transform == TRANSFORM
    assert loaded.metadata() == state.metadata()
    assert loaded.ledger == _ledger()
    assert loaded.ledger.applied_item_ids == {"S2A_9", "S2B_9", "S2A_10"}
    assert loaded.ledger.last_day == dt.date(2023, 1, 13)
    assert read_ledger(path) == (_ledger(), digest)  # attributes only, the same ledger


@pytest.mark.parametrize("name, params, fit_kwargs, expected", CASES)
def test_reloaded_monitor_behaves_like_original(tmp_path, ndvi, forest_mask, name, params,
                                                fit_kwargs, expected):
    original = _fit(name, params, fit_kwargs, ndvi, forest_mask)
    path = tmp_path / "state.nc"
    save_state(_state(original), path)
    reloaded = load_state(path).monitor

    _monitor_all(original)
    _monitor_all(reloaded)

    np.testing.assert_array_equal(reloaded.mask, original.mask)
    assert original.detection_date is not None
    np.testing.assert_array_equal(reloaded.detection_date, original.detection_date)
    assert reloaded.detection_date.dtype == original.detection_date.dtype
    if getattr(original, "process", None) is not None:
        np.testing.assert_array_equal(np.asarray(reloaded.process),
                                      np.asarray(original.process))
    assert monitors_equal(original, reloaded)

    # the strong drops are confirmed breaks, dated on one of the new acquisitions
    breaks = original.mask == 3
    assert breaks[DROP_ROWS].any(), "no break detected on the dropped rows"
    days = {(d - EPOCH).days for _, d in _new_acquisitions()}
    assert set(np.unique(original.detection_date[breaks]).tolist()) <= days
    assert (original.detection_date[~breaks] == 0).all()

    # save again now that detection_date and process are filled in
    path2 = tmp_path / "state2.nc"
    save_state(_state(reloaded), path2)
    again = load_state(path2).monitor
    assert monitors_equal(original, again)
    _assert_same_vars(original, again)
    np.testing.assert_array_equal(again.detection_date, original.detection_date)


def test_ewma_threshold_outlier_changes_detections(tmp_path, ndvi, forest_mask):
    """The attribute nrt's own reload resets (threshold 6 -> 10) really matters for these
    data: with the default the moderately dropped pixels are not screened out. So the
    equality in test_reloaded_monitor_behaves_like_original is meaningful for EWMA."""
    six = _fit("EWMA", dict(sensitivity=3.5, lambda_=0.2, threshold_outlier=6.0),
               dict(method="OLS", screen_outliers="Shewhart"), ndvi, forest_mask)
    ten = _fit("EWMA", dict(sensitivity=3.5, lambda_=0.2, threshold_outlier=10.0),
               dict(method="OLS", screen_outliers="Shewhart"), ndvi, forest_mask)
    _monitor_all(six)
    _monitor_all(ten)
    assert not np.array_equal(six.mask, ten.mask)


def test_monitors_equal_detects_differences(ndvi, forest_mask):
    params = dict(sensitivity=3.5, lambda_=0.2, threshold_outlier=6.0)
    fit_kwargs = dict(method="OLS", screen_outliers="Shewhart")
    a = _fit("EWMA", params, fit_kwargs, ndvi, forest_mask)
    b = _fit("EWMA", params, fit_kwargs, ndvi, forest_mask)
    assert monitors_equal(a, b)
    b.threshold = 10
    assert not monitors_equal(a, b)
    b.threshold = 6.0
    b.sigma = b.sigma.copy()
    b.sigma[3, 3] += 1e-3
    assert not monitors_equal(a, b)
    b.sigma = a.sigma.astype(np.float64)
    assert not monitors_equal(a, b)  # same values, different dtype
    c = _fit("IQR", dict(harmonic_order=2), dict(method="OLS"), ndvi, forest_mask)
    assert not monitors_equal(a, c)


# --------------------------------------------------------------------------- corruption


@pytest.fixture
def saved(tmp_path, ndvi, forest_mask) -> tuple[Path, object]:
    monitor = _fit("EWMA", dict(sensitivity=3.5, lambda_=0.2, threshold_outlier=6.0),
                   dict(method="OLS", screen_outliers="Shewhart"), ndvi, forest_mask)
    path = tmp_path / "tile_state.nc"
    save_state(_state(monitor), path)
    load_state(path)  # intact before we damage it
    return path, monitor


def test_truncated_file_is_corrupt(saved):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StateCorruptError) as err:
        load_state(path)
    assert str(path) in str(err.value)


def _zstd_frame(data: bytes, nbytes: int) -> int:
    """Offset of the first block of the one zstd frame in ``data`` whose header says it
    holds ``nbytes`` (RFC 8878: magic, frame header descriptor, window descriptor unless
    single-segment, dictionary id, frame content size)."""
    magic = bytes([0x28, 0xB5, 0x2F, 0xFD])
    found, off = [], data.find(magic)
    while off >= 0:
        fhd = data[off + 4]
        fcs_flag, single, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
        pos = off + 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
        size = (1 if single else 0, 2, 4, 8)[fcs_flag]
        content = int.from_bytes(data[pos:pos + size], "little") if size else None
        if size == 2:
            content += 256
        if content == nbytes:
            found.append(pos + size)
        off = data.find(magic, off + 1)
    assert len(found) == 1, found
    return found[0]


def test_state_variables_are_zstd_compressed(saved):
    """The format the daily update's cost was measured with (BENCHMARKS.md): zstd, where
    netCDF4 has the filter (its wheels do)."""
    path, _ = saved
    assert netCDF4.__has_zstandard_support__
    with netCDF4.Dataset(path) as nc:
        filters = nc.variables["beta"].filters()
    assert filters["zstd"] and not filters["zlib"]


def test_flipped_byte_in_compressed_data_is_corrupt(saved):
    """Flip a byte inside the data region of the largest variable (beta, one
    zstd-compressed chunk). The middle of the *file* is HDF5 padding in such a small
    state, so the offset is chosen inside beta's chunk instead."""
    path, monitor = saved
    data = bytearray(path.read_bytes())
    offset = _zstd_frame(bytes(data), monitor.beta.nbytes)
    data[offset + 40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StateCorruptError) as err:
        load_state(path)
    assert str(path) in str(err.value)


def test_flipped_byte_in_uncompressed_coordinate_fails_checksum(saved):
    """The x coordinate is stored uncompressed: altering one of its bytes leaves a
    readable file that only the content digest can catch."""
    path, monitor = saved
    data = bytearray(path.read_bytes())
    needle = np.asarray(monitor.x, dtype="<f8").tobytes()
    offset = data.find(needle)
    assert offset > 0 and data.find(needle, offset + 1) == -1
    data[offset + 8 * 7] ^= 0x01  # lowest mantissa byte of x[7]: still a finite number
    path.write_bytes(bytes(data))
    with pytest.raises(StateCorruptError, match="checksum") as err:
        load_state(path)
    assert str(path) in str(err.value)


def test_altered_attribute_fails_checksum(saved):
    path, _ = saved
    with netCDF4.Dataset(path, "a") as nc:
        attrs = json.loads(nc.getncattr("monitor_attributes"))
        attrs["threshold"] = 10.0
        nc.setncattr("monitor_attributes", json.dumps(attrs, sort_keys=True))
    with pytest.raises(StateCorruptError, match="checksum"):
        load_state(path)


def test_altered_array_fails_checksum(saved):
    path, _ = saved
    with netCDF4.Dataset(path, "a") as nc:
        nc.variables["mask"][0, 0] = 3
    with pytest.raises(StateCorruptError, match="checksum"):
        load_state(path)


def test_other_format_version_is_refused(saved):
    path, _ = saved
    with netCDF4.Dataset(path, "a") as nc:
        nc.setncattr("forestwatch_format_version", FORMAT_VERSION + 1)
    with pytest.raises(StateCorruptError, match="version|checksum") as err:
        load_state(path)
    assert str(path) in str(err.value)


def test_not_a_state_file_is_corrupt(tmp_path):
    path = tmp_path / "empty.nc"
    path.write_bytes(b"")
    with pytest.raises(StateCorruptError):
        load_state(path)


def test_missing_file_is_not_reported_as_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_state(tmp_path / "nope.nc")


# --------------------------------------------------------------------------- atomicity


def test_failed_save_keeps_previous_state(saved, ndvi, forest_mask, monkeypatch):
    path, monitor = saved
    before = path.read_bytes()
    other = _fit("IQR", dict(harmonic_order=2), dict(method="OLS"), ndvi, forest_mask)
    written = []

    def crash(self, target, *args, **kwargs):
        written.append(Path(target))
        Path(target).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 1000)  # partial garbage
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", crash)
    with pytest.raises(OSError, match="No space left"):
        save_state(_state(other), path)

    assert len(written) == 1
    assert written[0] != path and written[0].parent == path.parent  # written beside, not over
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == [path.name]
    monkeypatch.undo()
    assert monitors_equal(load_state(path).monitor, monitor)


def test_save_over_existing_state_replaces_it(saved, ndvi, forest_mask):
    path, _ = saved
    other = _fit("IQR", dict(harmonic_order=2), dict(method="OLS"), ndvi, forest_mask)
    save_state(_state(other, crs="EPSG:32633", tile_id="new"), path)
    loaded = load_state(path)
    assert monitors_equal(loaded.monitor, other)
    assert loaded.crs == "EPSG:32633" and loaded.tile_id == "new"
    assert sorted(os.listdir(path.parent)) == [path.name]


def test_atomic_path_success(tmp_path):
    target = tmp_path / "sub" / "dir" / "out.tif"  # parents are created
    with atomic_path(target) as tmp:
        assert tmp != target
        assert tmp.parent == target.parent
        assert tmp.suffix == ".tif"  # drivers that look at the extension behave
        assert not tmp.exists()
        tmp.write_text("new")
        assert not target.exists()  # nothing visible before success
    assert target.read_text() == "new"
    assert not tmp.exists()
    assert os.listdir(target.parent) == ["out.tif"]
    # the writer creates the file itself, so it gets ordinary permissions (not mkstemp's
    # 0600): compare with a file created the ordinary way
    reference = tmp_path / "reference"
    reference.write_text("x")
    assert target.stat().st_mode == reference.stat().st_mode


def test_atomic_path_error_leaves_target_unchanged(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("half writ")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert not tmp.exists()
    assert os.listdir(tmp_path) == ["out.json"]


def test_atomic_path_error_without_previous_target(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise KeyboardInterrupt
    assert not target.exists()
    assert os.listdir(tmp_path) == []


def test_atomic_paths_fsync_each_file_and_each_folder_once(tmp_path, monkeypatch):
    """Several files written together (a tile report's COGs): each target replaced by its
    complete file, each file fsynced, each folder fsynced once (not once per file); on
    error every target keeps its old content and no temporary file is left."""
    import forestwatch.io as fio

    synced = []
    real = fio.fsync_path
    monkeypatch.setattr(fio, "fsync_path", lambda path: (synced.append(Path(path)), real(path)))
    a, b = tmp_path / "r" / "a.tif", tmp_path / "r" / "b.tif"
    c = tmp_path / "other" / "c.json"
    b.parent.mkdir()
    b.write_text("old b")
    with fio.atomic_paths([a, b, c]) as tmps:
        assert [t.suffix for t in tmps] == [".tif", ".tif", ".json"]
        assert [t.parent for t in tmps] == [a.parent, b.parent, c.parent]
        for tmp, text in zip(tmps, ("new a", "new b", "new c"), strict=True):
            tmp.write_text(text)
        assert not a.exists() and b.read_text() == "old b"  # nothing visible yet
    assert [a.read_text(), b.read_text(), c.read_text()] == ["new a", "new b", "new c"]
    assert sorted(p.name for p in a.parent.iterdir()) == ["a.tif", "b.tif"]
    files, folders = [p for p in synced if not p.is_dir()], [p for p in synced if p.is_dir()]
    assert len(files) == 3 and sorted(folders) == sorted([a.parent, c.parent])
    with pytest.raises(RuntimeError, match="boom"), fio.atomic_paths([a, b]) as tmps:
        tmps[0].write_text("half")
        tmps[1].write_text("half")
        raise RuntimeError("boom")
    assert [a.read_text(), b.read_text()] == ["new a", "new b"]
    assert sorted(p.name for p in a.parent.iterdir()) == ["a.tif", "b.tif"]


def test_atomic_paths_killed_before_the_renames_change_no_target(tmp_path):
    """A real SIGKILL just before the renames (``FORESTWATCH_FAULT=kill-before-rename``,
    here at the second of three files): every target keeps its old content."""
    import subprocess
    import sys

    targets = [tmp_path / name for name in ("a.tif", "b.json", "c.tif")]
    for t in targets:
        t.write_text("old")
    code = ("import sys; from forestwatch.io import atomic_paths\n"
            "with atomic_paths(sys.argv[1:]) as tmps:\n"
            "    [t.write_text('new') for t in tmps]\n")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, targets)], timeout=60,
                          env=dict(os.environ, FORESTWATCH_FAULT="kill-before-rename:.json"))
    assert proc.returncode == -9
    assert [t.read_text() for t in targets] == ["old", "old", "old"]
    proc = subprocess.run([sys.executable, "-c", code, *map(str, targets)], timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "FORESTWATCH_FAULT"})
    assert proc.returncode == 0
    assert [t.read_text() for t in targets] == ["new", "new", "new"]


def test_atomic_path_stages_on_a_scratch_folder(tmp_path, monkeypatch):
    from forestwatch.io import SCRATCH_ENV, atomic_path

    scratch, out = tmp_path / "scratch", tmp_path / "shared" / "out.txt"
    monkeypatch.setenv(SCRATCH_ENV, str(scratch))
    seen = []
    with atomic_path(out) as tmp:
        seen.append(tmp.parent)
        tmp.write_text("complete")
    assert seen == [scratch]  # written on scratch first
    assert out.read_text() == "complete"
    assert list(scratch.iterdir()) == [] and [p.name for p in out.parent.iterdir()] == ["out.txt"]
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("killed")
    assert out.read_text() == "complete"
    assert list(scratch.iterdir()) == [] and [p.name for p in out.parent.iterdir()] == ["out.txt"]


# --------------------------------------------------------------------------- format 1


def test_a_format_1_state_still_loads_with_its_ledger(tmp_path, ndvi, forest_mask):
    """Format 1 kept the ledger inside ``metadata`` (history, applied with datatakes,
    skipped); such a file loads, converted, and is written back as the current format."""
    from forestwatch.state._netcdf import _digest, _to_dataset

    monitor = _fit("IQR", dict(harmonic_order=2), dict(method="OLS"), ndvi, forest_mask)
    ds = _to_dataset(_state(monitor))
    ds.attrs.pop("ledger")
    ds.attrs["forestwatch_format_version"] = 1
    ds.attrs["metadata"] = json.dumps({
        "tile_id": "X1_Y1", "index": "NDVI", "monitor": {"class": "IQR"}, "software": {},
        "history": {"start": "2021-01-01", "end": "2022-12-31", "days": ["2021-01-02"],
                    "items": ["S2A_1"], "unreadable": []},
        "applied": [{"day": "2023-01-05", "items": ["S2A_9"],
                     "datatakes": ["32UQB@2023-01-05T10:20:21"], "valid_pixels": 7}],
        "skipped": [{"item": "S2A_8", "reason": "late"}]})
    ds.attrs["content_sha256"] = _digest(ds)
    path = tmp_path / "v1.nc"
    ds.to_netcdf(path, engine="netcdf4")

    state = load_state(path)
    assert state.tile_id == "X1_Y1" and monitors_equal(state.monitor, monitor)
    ledger = state.ledger
    assert ledger.fit.end == "2022-12-31" and ledger.fit.items == ["S2A_1"]
    assert [(e.day, e.items, e.acquisitions, e.valid_pixels) for e in ledger.applied] == [
        ("2023-01-05", ["S2A_9"], ["32UQB@2023-01-05T10:20:21"], 7)]
    assert ledger.is_known("S2A_8") and ledger.is_known("S2A_1") and not ledger.is_known("x")
    assert ledger.descends_from("any digest")  # format 1 did not record its fit
    assert read_ledger(path)[0] == ledger
    save_state(state, path)
    with netCDF4.Dataset(path) as nc:
        assert nc.getncattr("forestwatch_format_version") == FORMAT_VERSION == 5
    assert load_state(path).ledger == ledger


def test_forest_mask_provenance_round_trips_and_older_states_load_without_it(
        tmp_path, ndvi, forest_mask):
    """The state records how its forest mask was made (``TileState.forest_mask``, in the
    ``metadata`` attribute); a state written before that loads with ``{}``."""
    from forestwatch.state._netcdf import _digest, _to_dataset

    monitor = _fit("IQR", dict(harmonic_order=2), dict(method="OLS"), ndvi, forest_mask)
    state = _state(monitor)
    state.forest_mask = {"method": "model", "model": "m.onnx", "model_sha256": "ab" * 32,
                         "threshold": "20"}
    path = tmp_path / "with.nc"
    save_state(state, path)
    assert load_state(path).forest_mask == state.forest_mask

    ds = _to_dataset(_state(monitor))
    meta = json.loads(ds.attrs["metadata"])
    del meta["forest_mask"]
    ds.attrs["metadata"] = json.dumps(meta, sort_keys=True)
    ds.attrs["forestwatch_format_version"] = 4  # one digest over every array's bytes
    ds.attrs["content_sha256"] = _digest(ds)
    old = tmp_path / "before.nc"
    ds.to_netcdf(old, engine="netcdf4")
    loaded = load_state(old)
    assert loaded.forest_mask == {} and monitors_equal(loaded.monitor, monitor)


# --------------------------------------------------------------------------- the store


def _store(tmp_path, keep=3):
    from forestwatch.layout import RunLayout
    from forestwatch.state import TileStateStore

    return TileStateStore(RunLayout(tmp_path / "run"), "X1_Y1", keep=keep)


def test_store_keeps_previous_states_and_prunes(tmp_path, ndvi, forest_mask):
    store = _store(tmp_path, keep=3)
    monitor = _fit("IQR", dict(harmonic_order=2), dict(method="OLS"), ndvi, forest_mask)
    state = _state(monitor)
    digests = []
    for n in range(5):
        state.ledger.applied.append(AppliedDay(day=f"2023-02-0{n + 1}", items=[f"S{n}"],
                                               acquisitions=[f"A{n}"], valid_pixels=1))
        digests.append(store.commit(state))
    kept = store.kept()
    assert len(kept) == 3  # pruned to operational.keep_states
    # each kept file is one of the states replaced, newest first, intact
    assert [read_ledger(p)[0].last_day.isoformat() for p in kept] == [
        "2023-02-04", "2023-02-03", "2023-02-02"]
    assert [read_ledger(p)[1] for p in kept] == digests[3:0:-1]
    assert load_state(store.current_path).ledger.last_day == dt.date(2023, 2, 5)


def test_store_never_keeps_a_corrupt_state_and_recovers_from_a_kept_one(tmp_path, ndvi,
                                                                       forest_mask):
    store = _store(tmp_path)
    state = _state(_fit("IQR", dict(harmonic_order=2), dict(method="OLS"), ndvi, forest_mask))
    store.commit(state)
    state.ledger.applied.append(AppliedDay(day="2023-02-01", items=["S9"], acquisitions=["A9"],
                                           valid_pixels=1))
    store.commit(state)
    data = store.current_path.read_bytes()
    store.current_path.write_bytes(data[: len(data) // 2])  # truncated in place
    fresh = _store(tmp_path)  # a new process: nothing verified yet
    recovered, name = fresh.load_current()
    assert name == fresh.kept()[0].name
    assert recovered.ledger.last_day == dt.date(2023, 1, 13)
    fresh.commit(recovered)
    assert len(fresh.kept()) == 1  # the corrupt file was not kept


def test_store_removes_what_a_killed_write_left(tmp_path, ndvi, forest_mask):
    store = _store(tmp_path)
    state = _state(_fit("IQR", dict(harmonic_order=2), dict(method="OLS"), ndvi, forest_mask))
    store.commit(state)
    debris = store.current_path.parent / f".{store.current_path.stem}.k2j4.tmp.nc"
    debris.write_bytes(b"half a state")
    other = store.current_path.parent / ".X2_Y2.k2j4.tmp.nc"  # another tile's: not ours
    other.write_bytes(b"x")
    store.commit(state)
    assert not debris.exists() and other.exists()


def test_states_read_and_written_from_threads_at_once(saved, tmp_path):
    """Jobs run in threads of one process (forestwatch.jobs) and HDF5 is not thread-safe:
    without the module's lock, concurrent reads crashed the process."""
    from concurrent.futures import ThreadPoolExecutor

    path, monitor = saved

    def work(k: int) -> bool:
        for i in range(6):
            state = load_state(path)
            save_state(state, tmp_path / f"copy_{k}_{i % 2}.nc")
            ledger, digest = read_ledger(tmp_path / f"copy_{k}_{i % 2}.nc")
            assert digest and monitors_equal(load_state(tmp_path / f"copy_{k}_{i % 2}.nc").monitor,
                                             monitor)
        return True

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(4)))


# ------------------------------------------------- states that share the fitted arrays


def _fitted_store(tmp_path, ndvi, forest_mask):
    """A store whose fitted state is written, and a state loaded from it to bring forward."""
    store = _store(tmp_path)
    fitted = _state(_fit("IQR", dict(harmonic_order=2), dict(method="OLS"), ndvi, forest_mask))
    store.fitted_path.parent.mkdir(parents=True)
    save_state(fitted, store.fitted_path)
    return store, fitted, load_state(store.fitted_path)


def _stored_variables(path) -> set[str]:
    with netCDF4.Dataset(path) as nc:
        return set(nc.variables)


def test_a_state_brought_forward_stores_what_monitoring_changed_and_reads_the_rest_from_the_fit(
        tmp_path, ndvi, forest_mask):
    """A commit does not write the arrays that are still the fitted state's (nrt's bands);
    the current state and a kept one load whole, by themselves (their fitted state found
    where the layout puts it) and equal to the state in memory."""
    from forestwatch.state import read_ledger, read_provenance, shared_with_fit
    from forestwatch.state._netcdf import _to_dataset

    store, fitted, state = _fitted_store(tmp_path, ndvi, forest_mask)
    _monitor_all(state.monitor)  # breaks on DROP_ROWS: mask, process, detection_date change
    store.commit(state)
    shared, stored = set(shared_with_fit(store.current_path)), _stored_variables(store.current_path)
    assert {"beta", "q25", "q75"} <= shared and not shared & stored
    # the STAC catalog's one read of the attributes says the same (and the ledger's)
    provenance = read_provenance(store.current_path)
    assert set(provenance.shared_with_fit) == shared
    assert (provenance.ledger, provenance.digest) == read_ledger(store.current_path)
    assert "applied" not in provenance.metadata and provenance.metadata
    assert {"mask", "process", "detection_date", "x", "y"} <= stored
    now, then = _to_dataset(state), _to_dataset(fitted)
    for name in now.data_vars:  # shared: exactly the arrays that are the fitted state's
        same = name in then and np.array_equal(now[name].values, then[name].values,
                                               equal_nan=True)
        assert (name in shared) == same, name
    assert not np.array_equal(state.monitor.mask, fitted.monitor.mask)
    loaded = load_state(store.current_path)
    assert monitors_equal(loaded.monitor, state.monitor)
    state.ledger.applied.append(AppliedDay(day="2023-02-01", items=["S9"], acquisitions=["A9"],
                                           valid_pixels=1))
    store.commit(state)
    kept = store.kept()[0]  # the state replaced, in state/history/<tile>/
    assert shared_with_fit(kept) and monitors_equal(load_state(kept).monitor, state.monitor)


def test_a_state_of_an_earlier_fit_or_without_its_fitted_state_says_so(tmp_path, ndvi,
                                                                      forest_mask):
    """Refitted, altered or deleted: the fitted arrays a state shares are verified, and the
    error names the fitted state and what to do; a corrupt current state is not
    'recovered' from kept states of the same old fit."""
    from forestwatch.state import FittedStateChangedError, shared_with_fit

    store, fitted, state = _fitted_store(tmp_path, ndvi, forest_mask)
    _monitor_all(state.monitor)
    store.commit(state)
    state.ledger.applied.append(AppliedDay(day="2023-02-01", items=["S9"], acquisitions=["A9"],
                                           valid_pixels=1))
    store.commit(state)
    assert len(store.kept()) == 1
    original = store.fitted_path.read_bytes()

    refit = _state(_fit("IQR", dict(harmonic_order=1), dict(method="OLS"), ndvi, forest_mask))
    save_state(refit, store.fitted_path)
    with pytest.raises(FittedStateChangedError, match="fitted again since") as err:
        _store(tmp_path).load_current()
    assert str(store.fitted_path) in str(err.value) and "snakemake" in str(err.value)

    store.fitted_path.unlink()
    with pytest.raises(FittedStateChangedError, match="which is missing"):
        load_state(store.current_path)

    # the same fitted file with one of its shared arrays altered (its attributes unchanged)
    store.fitted_path.write_bytes(original)
    with netCDF4.Dataset(store.fitted_path, "a") as nc:
        nc["q25"][0, 0] = nc["q25"][0, 0] + 1.0
    with pytest.raises(FittedStateChangedError, match="not those the state was brought"):
        load_state(store.current_path)
    store.fitted_path.write_bytes(original)
    assert monitors_equal(load_state(store.current_path).monitor, state.monitor)

    # a fitted state that cannot be read does not stop a commit: the state is written whole
    store.fitted_path.write_bytes(original[:1000])
    store.commit(state)
    assert not shared_with_fit(store.current_path)
    assert monitors_equal(load_state(store.current_path).monitor, state.monitor)


def test_the_layout_finds_the_fitted_state_of_a_current_or_kept_state(tmp_path):
    from forestwatch.layout import RunLayout, fitted_state_of

    layout = RunLayout(tmp_path / "run")
    fitted = Path(layout.fitted_state("X1_Y2"))
    assert fitted_state_of(layout.current_state("X1_Y2")) == fitted
    assert fitted_state_of(Path(layout.kept_states("X1_Y2")) / "20260101T000000_2026-01-01.nc"
                           ) == fitted
    assert fitted_state_of(tmp_path / "elsewhere" / "X1_Y2.nc") is None
