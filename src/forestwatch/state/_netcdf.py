"""A tile's monitoring state on disk: one NetCDF file, written atomically, verified on load.

This module is the only one that knows the file format; :mod:`forestwatch.state.store`
decides where and when a tile's current state is written.

nrt's own ``to_netcdf``/``from_netcdf`` lose parameters (``fit_start``, EWMA's
``threshold_outlier``, numpy-scalar parameters), return masked arrays, record no CRS,
and open the target in clobber mode, so a crash mid-write leaves a truncated file that
loads without error. This module writes every attribute of the monitor instead:

* each numpy-array attribute becomes a variable (2-D ``(y, x)``; 3-D ``(<name>_layer, y, x)``),
  ``x``/``y`` are coordinates;
* every other attribute (python or numpy scalars, strings, ``None``) goes into the JSON
  global attribute ``monitor_attributes``, so a reload restores exactly the same object;
* global attributes record the CRS (WKT), the affine transform, the monitor class and
  format version, ``metadata`` (JSON: tile id, index, monitor configuration, software
  versions, creation time, the forest mask's provenance (key ``forest_mask``, absent in
  states written before it was recorded: read as ``{}``)) and ``ledger`` (JSON: :class:`~forestwatch.state.ledger.Ledger`);
* ``array_blake3`` (JSON) holds a BLAKE3 digest of each variable and coordinate (its
  name, dtype, shape and bytes) and ``content_sha256`` a SHA-256 of the global
  attributes, these included; :func:`load_state` recomputes both and raises :class:`StateCorruptError`
  when a file was truncated or altered;
* a state brought forward from a fit (:meth:`~forestwatch.state.TileStateStore.commit`)
  does not store the arrays that are still bit for bit those of its fitted state (nrt's
  ``beta`` and bands, which monitoring never changes: ~80 % of a state's compressed
  bytes): the JSON attribute ``shared_arrays`` names them and the fitted state's
  ``content_sha256``, and they are read from the fitted state
  (``state/fitted/<tile>.nc``, :func:`forestwatch.layout.fitted_state_of`) and verified
  against this file's ``array_blake3``. A fitted state replaced since (a refit) makes
  such a state unloadable (:class:`FittedStateChangedError`): it belongs to the old fit.

* the tile's alert layers (:class:`~forestwatch.alerts.ladder.AlertLayers`) are variables
  ``alert_<name>`` beside the monitor's arrays;
* a consensus state (several monitors, ``consensus.members``) stores its first monitor as
  above, each further monitor ``i`` as variables ``member<i>_<name>`` and every member's
  own alert layers as ``member<i>_alert_<name>``; the JSON global attribute ``consensus``
  holds ``k`` and, per further member, its index, configuration, class and scalar
  attributes. ``alert_<name>`` are then the members' consensus.

Variables are compressed with zstd (``_COMPRESSION``; zlib in states written before
it, which still load).

Format versions: 1 kept the ledger inside ``metadata``; 2 has its own ``ledger`` attribute
and records the fitted state a state descends from; 3 adds the alert layers; 4 adds
consensus states (a one-monitor state is written as in version 3); 5 (this version) has a
digest per array (``array_blake3``) and shares the unchanged fitted arrays with the fitted
state (``shared_arrays``); versions 1-4 have one ``content_sha256`` over the attributes
and every array's bytes. Older files still load: a version-1 ledger is converted on reading, and the alert
layers of a version-1 or 2 state are rebuilt from nrt's mask and detection date
(:meth:`AlertLayers.from_monitor`: confirmed breaks stay confirmed; anomalies before the
upgrade are not known). They are written back as version 3.
"""

from __future__ import annotations

import hashlib
import json
import platform
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine

from ..alerts.ladder import AlertLayers
from ..config import monitor_class
from ..io import atomic_path
from .ledger import Ledger

FORMAT_VERSION = 5
#: versions this module reads (older ones are converted on load)
READABLE_VERSIONS = (1, 2, 3, 4, 5)
#: the first version with a digest per array and arrays shared with the fitted state
_PER_ARRAY_VERSION = 5
_COORD_ATTRS = ("x", "y")
#: prefix of the alert layers' variables
_ALERT_PREFIX = "alert_"
#: prefix of a consensus member's variables (``member<i>_``)
_MEMBER_PREFIX = "member"


class StateCorruptError(RuntimeError):
    """A state file is unreadable, truncated or fails its checksum."""


class FittedStateChangedError(StateCorruptError):
    """A state takes arrays from its tile's fitted state, and that fitted state is missing,
    unreadable or not the one it was brought forward from (the tile was fitted again
    since, or the file was damaged)."""


@dataclass
class MonitorMember:
    """One nrt monitor of a tile's state, with its own alert ladder."""

    #: spectral index the monitor watches (``NDVI``, ``NBR``, ``NDMI``)
    index: str
    monitor: Any
    #: ``{"class", "params", "fit"}``: how the monitor was built and fitted
    monitor_config: dict
    #: the member's alert ladder; ``None`` while it is being built (started from the
    #: monitor's mask, :meth:`AlertLayers.start`)
    alerts: AlertLayers | None = None

    def __post_init__(self) -> None:
        if self.alerts is None:
            self.alerts = AlertLayers.start(self.monitor.mask)


@dataclass
class TileState:
    """A tile's fitted nrt monitors and what the workflow knows about them.

    Usually one monitor (``members[0]``: the config's ``index`` + ``monitor``); with
    ``consensus.members``, several, and the tile's :attr:`alerts` are their consensus
    (:func:`forestwatch.alerts.consensus.combine_layers`, at least :attr:`agree` members).
    """

    #: the monitors, the configured ``index`` + ``monitor`` first
    members: list[MonitorMember]
    crs: str
    transform: Affine
    tile_id: str
    ledger: Ledger
    software: dict = field(default_factory=dict)
    created: str = ""
    #: how the forest mask the monitor was fitted on was made: the mask file's provenance
    #: tags (:func:`forestwatch.forest_mask.read_mask_provenance`; ``method``, and for a
    #: model ``model``, ``model_sha256``, ``threshold`` ...), strings; ``{}`` for a state
    #: written before it was recorded
    forest_mask: dict = field(default_factory=dict)
    #: members that must agree for the tile's alert (``consensus.k``); 1 for one member
    agree: int = 1
    #: the tile's alert layers: the one member's own, or the members' consensus
    alerts: AlertLayers | None = None

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError(f"tile {self.tile_id}: a state needs at least one monitor")
        if self.alerts is None:
            self.refresh_alerts()

    @property
    def monitor(self) -> Any:
        """The first member's nrt monitor (the config's ``index`` + ``monitor``)."""
        return self.members[0].monitor

    @property
    def index(self) -> str:
        return self.members[0].index

    @property
    def monitor_config(self) -> dict:
        return self.members[0].monitor_config

    @property
    def is_consensus(self) -> bool:
        return len(self.members) > 1

    def refresh_alerts(self) -> None:
        """Make :attr:`alerts` from the members' ladders: the one member's own layers (the
        same object), or their consensus, made anew."""
        if self.is_consensus:
            from ..alerts.consensus import combine_layers

            self.alerts = combine_layers([m.alerts for m in self.members], self.agree)
        else:
            self.alerts = self.members[0].alerts

    def metadata(self) -> dict:
        """Everything but the monitor arrays and the ledger, as stored in the file."""
        meta = {"tile_id": self.tile_id, "index": self.index, "monitor": self.monitor_config,
                "software": self.software, "created": self.created,
                "forest_mask": self.forest_mask}
        if self.is_consensus:
            meta["consensus"] = {"k": self.agree, "members": [
                {"index": m.index, "monitor": m.monitor_config} for m in self.members[1:]]}
        return meta


def software_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("forestwatch", "nrt", "numpy", "xarray", "odc-geo", "rasterio", "numba"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _jsonable(value: Any, name: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    raise TypeError(f"monitor attribute {name!r} of type {type(value).__name__} cannot be saved")


def _monitor_vars(monitor: Any, prefix: str = "") -> tuple[dict, dict]:
    """(data variables, JSON-able scalars) of an nrt monitor's attributes."""
    data_vars, scalars = {}, {}
    for name, value in vars(monitor).items():
        if name in _COORD_ATTRS:
            continue
        if isinstance(value, np.ndarray):
            value = np.asarray(value)
            if value.ndim == 2:
                data_vars[prefix + name] = (("y", "x"), value)
            elif value.ndim == 3:
                data_vars[prefix + name] = ((f"{prefix}{name}_layer", "y", "x"), value)
            else:
                raise TypeError(f"monitor attribute {name!r} has {value.ndim} dimensions")
        else:
            scalars[name] = _jsonable(value, name)
    return data_vars, scalars


def _member_prefix(i: int) -> str:
    return f"{_MEMBER_PREFIX}{i}_"


def _to_dataset(state: TileState) -> xr.Dataset:
    attrs = vars(state.monitor)
    x, y = np.asarray(attrs["x"]), np.asarray(attrs["y"])
    data_vars, scalars = _monitor_vars(state.monitor)
    for name, value in state.alerts.arrays().items():
        data_vars[_ALERT_PREFIX + name] = (("y", "x"), value)
    further = []
    if state.is_consensus:
        for i, member in enumerate(state.members):
            prefix = _member_prefix(i)
            if i > 0:
                arrays, member_scalars = _monitor_vars(member.monitor, prefix)
                data_vars.update(arrays)
                further.append({"index": member.index, "monitor": member.monitor_config,
                                "monitor_class": type(member.monitor).__name__,
                                "monitor_attributes": member_scalars})
            for name, value in member.alerts.arrays().items():
                data_vars[prefix + _ALERT_PREFIX + name] = (("y", "x"), value)
    ds = xr.Dataset(data_vars, coords={"y": y, "x": x})
    ds.attrs = {
        "title": "forestwatch tile monitoring state",
        "forestwatch_format_version": FORMAT_VERSION,
        "monitor_class": type(state.monitor).__name__,
        "crs": state.crs,
        "transform": json.dumps(list(state.transform)[:6]),
        "monitor_attributes": json.dumps(scalars, sort_keys=True),
        "metadata": json.dumps(state.metadata(), sort_keys=True, default=str),
        "ledger": json.dumps(state.ledger.to_dict(), sort_keys=True, default=str),
    }
    if state.is_consensus:
        ds.attrs["consensus"] = json.dumps({"k": state.agree, "members": further},
                                           sort_keys=True, default=str)
    return ds


def _digest(ds: xr.Dataset) -> str:
    """``content_sha256`` of a dataset of format 1-4: its attributes but that one, then
    each variable and coordinate (name, dtype, shape, bytes) in the order of their names."""
    return _digest_of(ds.attrs, ((name, ds[name].values) for name in _digest_order(ds)))


def _hash_attrs(h, attrs: dict):
    """``h`` (a hashlib-like object) updated with the global attributes but
    ``content_sha256``, in the order of their names; returned."""
    for key in sorted(k for k in attrs if k != "content_sha256"):
        h.update(f"{key}={attrs[key]}".encode())
    return h


def _hash_array(h, name: str, values: np.ndarray) -> None:
    """``h`` updated with an array's name, dtype, shape and bytes (without ``tobytes()``'s
    copy)."""
    arr = np.ascontiguousarray(values)
    h.update(name.encode())
    h.update(str(arr.dtype).encode())
    h.update(str(arr.shape).encode())
    h.update(arr.reshape(-1).view(np.uint8))


def _array_digest(name: str, values: np.ndarray) -> str:
    """A format-5 ``array_blake3`` entry: BLAKE3 of an array's name, dtype, shape and bytes.

    BLAKE3, not SHA-256: a state's arrays are hashed on every load and save, and BLAKE3
    hashed the 59 MiB of a 1000 x 1000 px state in 13 ms against SHA-256's 34 ms (with
    the CPU's SHA extensions), a tenth of a one-acquisition daily update."""
    import blake3

    h = blake3.blake3()
    _hash_array(h, name, values)
    return h.hexdigest()


def _array_digests(arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """:func:`_array_digest` of each array, on two threads (blake3 releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2, thread_name_prefix="forestwatch-digest") as pool:
        return dict(zip(arrays, pool.map(_array_digest, arrays, arrays.values()), strict=True))


def _attrs_digest(attrs: dict) -> str:
    """A format-5 ``content_sha256``: the global attributes but that one (``array_blake3``
    among them, so every array is covered through its own digest)."""
    return _hash_attrs(hashlib.sha256(), attrs).hexdigest()


def _digest_order(ds: xr.Dataset) -> list[str]:
    return sorted(list(ds.data_vars) + list(ds.coords))


def _digest_of(attrs: dict, arrays) -> str:
    """:func:`_digest` of ``attrs`` and ``arrays``, an iterable of (name, array) in
    :func:`_digest_order`."""
    h = _hash_attrs(hashlib.sha256(), attrs)
    for name, values in arrays:
        _hash_array(h, name, values)
    return h.hexdigest()


class _DigestBeside:
    """:func:`_digest_of` (``per_array``: :func:`_array_digest` of each array, a dict)
    computed in a thread while the caller reads the file (:func:`_read_verified`).

    hashlib, blake3 and netCDF4's reads all release the GIL, so on two cores a state's
    digests (a format-4 SHA-256 took ~55 ms for the 59 MiB of a 1000 x 1000 px tile, a
    twentieth of a one-acquisition daily update) cost little time beside the file's read. (On save
    the digest is an attribute of the file, computed before it is written:
    :func:`save_state`.) :meth:`add` hands over the arrays in :func:`_digest_order`,
    :meth:`close` says there are no more, :meth:`result` (closing if need be) waits for
    the digest. Always call one of them, or the thread waits for arrays forever.
    """

    _DONE = object()

    def __init__(self, attrs: dict, *, per_array: bool = False) -> None:
        import queue

        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._digest: list = []
        self._error: list[BaseException] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, args=(dict(attrs), per_array),
                                        name="forestwatch-digest", daemon=True)
        self._thread.start()

    def _arrays(self):
        while (item := self._queue.get()) is not self._DONE:
            yield item

    def _run(self, attrs: dict, per_array: bool) -> None:
        try:
            if per_array:
                self._digest.append({name: _array_digest(name, values)
                                     for name, values in self._arrays()})
            else:
                self._digest.append(_digest_of(attrs, self._arrays()))
        except BaseException as err:  # re-raised by result()
            self._error.append(err)
            while self._queue.get() is not self._DONE:  # let add() go on
                pass

    def add(self, name: str, values: np.ndarray) -> None:
        self._queue.put((name, values))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(self._DONE)

    def result(self) -> str | dict[str, str]:
        self.close()
        self._thread.join()
        if self._error:
            raise self._error[0]
        return self._digest[0]


def _has_zstd() -> bool:
    """Whether this netCDF4 has the zstd filter (its wheels do)."""
    import netCDF4

    return bool(getattr(netCDF4, "__has_zstandard_support__", 0))


#: zstd at level 1 where netCDF4 has it: a 1000 x 1000 px state wrote in 0.15 s instead of
#: zlib's 0.5-1.1 s, at the same size (13 MiB of 59), which is most of a one-acquisition
#: daily update (BENCHMARKS.md); zlib otherwise
_ZSTD = _has_zstd()
_COMPRESSION = {"compression": "zstd", "complevel": 1} if _ZSTD else {"zlib": True, "complevel": 1}


#: every netCDF4 call of the process, one at a time: the HDF5 in netCDF4's wheels is not
#: thread-safe (two jobs reading states at once in the Snakemake process crashed it, a
#: segmentation fault; forestwatch.jobs), and xarray's own locks do not cover attribute
#: reads. Held for a whole open-read-close or write, a small part of any job.
_HDF5_LOCK = threading.RLock()


def save_state(state: TileState, path: str | Path, *,
               share_with: str | Path | None = None) -> str:
    """Write ``state`` to ``path`` atomically; return its content digest.

    With ``share_with``, the tile's fitted state (a format-5 file), the arrays that are
    bit for bit that file's (same name and ``array_blake3``) are not written but named in
    ``shared_arrays``: a state brought forward stores what monitoring changed.

    The digests are attributes of the file, so they are computed before the write: the
    file is written once, in one open, and never reopened to add them (a reopen in append
    mode of the file just written failed in one CI run with an HDF error, daily jobs
    running as threads of one process)."""
    ds = _to_dataset(state)
    digests = _array_digests({name: ds[name].values for name in _digest_order(ds)})
    ds.attrs["array_blake3"] = json.dumps(digests, sort_keys=True)
    if share_with is not None:
        fitted_content, fitted_digests = _array_digests_of(share_with)
        shared = sorted(n for n in ds.data_vars if fitted_digests.get(n) == digests[n])
        if shared:
            ds.attrs["shared_arrays"] = json.dumps(
                {"fitted_sha256": fitted_content, "names": shared}, sort_keys=True)
            ds = ds.drop_vars(shared)
    content = _attrs_digest(ds.attrs)
    ds.attrs["content_sha256"] = content
    encoding = {name: dict(_COMPRESSION) for name in ds.data_vars}
    with atomic_path(path) as tmp, _HDF5_LOCK:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
    return content


def _array_digests_of(path: str | Path) -> tuple[str, dict[str, str]]:
    """(``content_sha256``, ``array_blake3``) of a state file, from its attributes (not
    verified: what is shared with it is verified on each load); ``("", {})`` for a file
    without per-array digests (format 1-4), with arrays of its own shared elsewhere, or
    that cannot be read (a state is then written whole rather than not at all)."""
    import netCDF4

    try:
        with _HDF5_LOCK, netCDF4.Dataset(path) as nc:
            names = nc.ncattrs()
            if "array_blake3" not in names or "shared_arrays" in names:
                return "", {}
            return (str(nc.getncattr("content_sha256")),
                    json.loads(nc.getncattr("array_blake3")))
    except (OSError, ValueError, KeyError):
        return "", {}


def _read_verified(path: Path, fitted: str | Path | None = None) -> xr.Dataset:
    """The state file's dataset, loaded, with the arrays it shares with its fitted state
    (``fitted``; by default where :func:`forestwatch.layout.fitted_state_of` says);
    :class:`StateCorruptError` if it is not intact."""
    try:
        with _HDF5_LOCK, xr.open_dataset(path, engine="netcdf4", mask_and_scale=False,
                                         decode_times=False) as src:
            version = src.attrs.get("forestwatch_format_version")
            per_array = isinstance(version, (int, np.integer)) and version >= _PER_ARRAY_VERSION
            digest = _DigestBeside(src.attrs, per_array=per_array)
            try:
                for name in _digest_order(src):  # each array hashed while the next is read
                    digest.add(name, src[name].load().values)
                ds = src.load()  # nothing left to read: the loop loaded every variable
            finally:
                content = digest.result()
    except FileNotFoundError:
        raise
    except Exception as err:  # netCDF4/HDF5 raise assorted errors on truncated files
        raise StateCorruptError(
            f"state file {str(path)!r} cannot be read ({err}); it is truncated or not a state "
            "file. Restore it from the previous state or rerun the fit for this tile."
            + ("" if _ZSTD else " (Or it was written with zstd "
               "compression, which this installation's netCDF4 cannot decode: install "
               "netCDF4 from its wheels, `pip install --force-reinstall netCDF4`.)")
        ) from err
    if version not in READABLE_VERSIONS:
        raise StateCorruptError(
            f"state file {str(path)!r} has format version {version!r}; this forestwatch "
            f"reads versions {', '.join(map(str, READABLE_VERSIONS))}. If it was written by a "
            "newer forestwatch, upgrade; otherwise refit the tile (delete it and run snakemake)."
        )
    if per_array:
        try:
            expected = json.loads(ds.attrs.get("array_blake3", "{}"))
            shared = json.loads(ds.attrs.get("shared_arrays", '{"names": []}'))
            intact = (ds.attrs.get("content_sha256") == _attrs_digest(ds.attrs)
                      and set(expected) == set(content) | set(shared["names"])
                      and all(expected[name] == d for name, d in content.items()))
        except (ValueError, TypeError, KeyError):  # attributes that are not this format's
            intact = False
    else:
        intact = ds.attrs.get("content_sha256") == content
    if not intact:
        raise StateCorruptError(
            f"state file {str(path)!r} fails its checksum: its content was altered or "
            "partially written. Restore it from the previous state or refit the tile."
        )
    if per_array and shared["names"]:
        _add_shared(ds, path, fitted, shared, expected)
    return ds


def _add_shared(ds: xr.Dataset, path: Path, fitted: str | Path | None, shared: dict,
                expected: dict[str, str]) -> None:
    """Read the arrays ``shared["names"]`` of ``path`` from its fitted state into ``ds``,
    each verified against ``expected`` (the state's ``array_blake3``)."""
    if fitted is None:
        from ..layout import fitted_state_of

        fitted = fitted_state_of(path)
    names = shared["names"]
    what = (f"state file {str(path)!r} takes {len(names)} unchanged array(s) "
            f"({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}) from its tile's "
            f"fitted state {str(fitted)!r}")
    if fitted is None or not Path(fitted).exists():
        raise FittedStateChangedError(
            f"{what}, which is missing. Restore that file (it is never rewritten, only "
            "replaced by a new fit), or rerun `snakemake` to fit the tile again: its states "
            "are then rebuilt from the new fit.")
    try:
        with _HDF5_LOCK, xr.open_dataset(fitted, engine="netcdf4", mask_and_scale=False,
                                         decode_times=False) as src:
            found = src.attrs.get("content_sha256")
            digest = _DigestBeside({}, per_array=True)
            arrays = {}
            try:
                for name in names:
                    if name in src.data_vars:
                        arrays[name] = (src[name].dims, src[name].load().values)
                        digest.add(name, arrays[name][1])
            finally:
                got = digest.result()
    except Exception as err:
        raise FittedStateChangedError(f"{what}, which cannot be read ({err}). Rerun "
                                      "`snakemake` to fit the tile again.") from err
    if set(got) != set(names) or any(got[n] != expected[n] for n in names):
        raise FittedStateChangedError(
            f"{what}, and that file's arrays are not those the state was brought forward "
            f"with (fitted state {shared['fitted_sha256'][:12]}..., found "
            f"{str(found)[:12]}...): the tile was fitted again since, or the fitted state "
            "is damaged. Rerun `snakemake` (or the daily run): a state of an earlier fit is "
            "rebuilt from the new one. If the tile was not fitted again, restore the fitted "
            "state, or delete it and rerun `snakemake` to fit the tile again.")
    for name, (dims, values) in arrays.items():
        ds[name] = (dims, values)


def _ledger_of(ds: xr.Dataset) -> Ledger:
    if ds.attrs.get("forestwatch_format_version") == 1:
        return Ledger.from_v1_metadata(json.loads(ds.attrs["metadata"]))
    return Ledger.from_dict(json.loads(ds.attrs["ledger"]))


def _monitor_from(ds: xr.Dataset, cls_name: str, scalars: dict, prefix: str = "") -> Any:
    cls = monitor_class(cls_name)
    monitor = cls.__new__(cls)
    attrs: dict[str, Any] = dict(scalars)
    for name in ds.data_vars:
        if prefix:
            if name.startswith(prefix) and not name.startswith(prefix + _ALERT_PREFIX):
                attrs[name[len(prefix):]] = np.ascontiguousarray(ds[name].values)
        elif not name.startswith((_ALERT_PREFIX, _MEMBER_PREFIX)):
            attrs[name] = np.ascontiguousarray(ds[name].values)
    attrs["x"] = ds["x"].values.astype(np.float64)
    attrs["y"] = ds["y"].values.astype(np.float64)
    monitor.__dict__.update(attrs)
    return monitor


def load_state(path: str | Path, *, fitted: str | Path | None = None) -> TileState:
    """Read a state file; raise :class:`StateCorruptError` if it is not intact.

    ``fitted``: the tile's fitted state, which a state brought forward shares its
    unchanged arrays with; by default the one beside it in its run's layout
    (:func:`forestwatch.layout.fitted_state_of`)."""
    return load_verified(path, fitted=fitted)[0]


def load_verified(path: str | Path, *, fitted: str | Path | None = None
                  ) -> tuple[TileState, str]:
    """:func:`load_state` and the content digest it verified, from the one open of the
    file (the store records which file it verified without opening it again)."""
    ds = _read_verified(Path(path), fitted)
    meta = json.loads(ds.attrs["metadata"])
    first = _monitor_from(ds, ds.attrs["monitor_class"], json.loads(ds.attrs["monitor_attributes"]))
    consensus = json.loads(ds.attrs["consensus"]) if "consensus" in ds.attrs else None
    if consensus is None:
        members = [MonitorMember(index=meta["index"], monitor=first,
                                 monitor_config=meta["monitor"], alerts=_alerts_of(ds))]
        agree = 1
    else:
        members = [MonitorMember(index=meta["index"], monitor=first,
                                 monitor_config=meta["monitor"],
                                 alerts=_alerts_of(ds, _member_prefix(0)))]
        for i, m in enumerate(consensus["members"], start=1):
            prefix = _member_prefix(i)
            members.append(MonitorMember(
                index=m["index"], monitor=_monitor_from(ds, m["monitor_class"],
                                                        m["monitor_attributes"], prefix),
                monitor_config=m["monitor"], alerts=_alerts_of(ds, prefix)))
        agree = int(consensus["k"])
    state = TileState(
        members=members,
        crs=ds.attrs["crs"],
        transform=Affine(*json.loads(ds.attrs["transform"])),
        tile_id=meta["tile_id"],
        ledger=_ledger_of(ds),
        software=meta.get("software", {}),
        created=meta.get("created", ""),
        forest_mask=meta.get("forest_mask", {}),
        agree=agree,
        # one member: the tile's layers are the member's own (the same object)
        alerts=_alerts_of(ds) if consensus is not None else None,
    )
    return state, str(ds.attrs["content_sha256"])


def _alerts_of(ds: xr.Dataset, prefix: str = "") -> AlertLayers:
    """The alert layers stored under ``prefix`` (a member's: ``member<i>_``; the tile's:
    none); rebuilt from nrt's arrays for a state written before the ladder."""
    start = prefix + _ALERT_PREFIX
    names = [n for n in ds.data_vars if n.startswith(start)]
    if names:
        return AlertLayers.from_arrays({n[len(start):]: ds[n].values for n in names})
    detection = ds["detection_date"].values if "detection_date" in ds.data_vars else None
    return AlertLayers.from_monitor(ds["mask"].values, detection)


@dataclass
class StateLayers:
    """Arrays of a verified state, without the nrt monitor object (no nrt import: ~2 s of
    start-up a report job does not need)."""

    layers: dict[str, np.ndarray]
    crs: str
    transform: Affine
    ledger: Ledger
    #: the tile's alert layers (the members' consensus in a consensus state)
    alerts: AlertLayers
    #: whether the state holds several monitors (``layers`` are then the first one's)
    is_consensus: bool = False


def read_layers(path: str | Path, names: tuple[str, ...], *,
                fitted: str | Path | None = None) -> StateLayers:
    """The monitor arrays ``names`` of an intact state file (a name the monitor does not
    have, e.g. ``detection_date`` before any break, is ``None``); ``fitted`` as in
    :func:`load_state`."""
    ds = _read_verified(Path(path), fitted)
    return StateLayers(
        layers={n: np.ascontiguousarray(ds[n].values) if n in ds.data_vars else None
                for n in names},
        crs=ds.attrs["crs"], transform=Affine(*json.loads(ds.attrs["transform"])),
        ledger=_ledger_of(ds), alerts=_alerts_of(ds), is_consensus="consensus" in ds.attrs)


def _ledger_of_attrs(nc) -> tuple[Ledger, str]:
    """(ledger, content digest) from an open netCDF4 dataset's attributes."""
    attrs = {k: nc.getncattr(k) for k in ("forestwatch_format_version", "metadata",
                                           "content_sha256") if k in nc.ncattrs()}
    if attrs.get("forestwatch_format_version") == 1:
        ledger = Ledger.from_v1_metadata(json.loads(attrs["metadata"]))
    else:
        ledger = Ledger.from_dict(json.loads(nc.getncattr("ledger")))
    return ledger, str(attrs.get("content_sha256", ""))


def read_ledger(path: str | Path) -> tuple[Ledger, str]:
    """(ledger, content digest) of a state file, read from its attributes only: cheap
    (no array is read) and therefore **not verified**; :func:`load_state` verifies."""
    import netCDF4

    with _HDF5_LOCK, netCDF4.Dataset(path) as nc:
        return _ledger_of_attrs(nc)


@dataclass(frozen=True)
class Provenance:
    """What a state file says of itself in its attributes (:func:`read_provenance`)."""

    #: what made it: tile id, index, monitor configuration, software versions, forest
    #: mask provenance (:meth:`TileState.metadata`, without the ledger's parts)
    metadata: dict
    #: what it has seen
    ledger: Ledger
    #: the recorded content digest (SHA-256 hex)
    digest: str
    #: the arrays it takes from its tile's fitted state (:func:`shared_with_fit`)
    shared_with_fit: tuple[str, ...]


def read_provenance(path: str | Path) -> Provenance:
    """A state file's :class:`Provenance`, from its attributes in one open (cheap, **not
    verified**). For the STAC catalog of the outputs: one open per tile item instead of
    three (22.6-24.6 -> 16.4-19.0 ms per item made, 122 small tiles; BENCHMARKS.md)."""
    import netCDF4

    with _HDF5_LOCK, netCDF4.Dataset(path) as nc:
        ledger, digest = _ledger_of_attrs(nc)
        meta = json.loads(nc.getncattr("metadata")) if "metadata" in nc.ncattrs() else {}
        shared = _shared_of_attrs(nc)
    meta.pop("applied", None), meta.pop("history", None), meta.pop("skipped", None)
    return Provenance(meta, ledger, digest, tuple(shared))


def shared_with_fit(path: str | Path) -> list[str]:
    """The arrays a state file takes from its tile's fitted state (from its attributes;
    not verified); ``[]`` for a state that stores all of its own."""
    import netCDF4

    with _HDF5_LOCK, netCDF4.Dataset(path) as nc:
        return _shared_of_attrs(nc)


def _shared_of_attrs(nc) -> list[str]:
    """The arrays shared with the fit, from an open netCDF4 dataset's attributes."""
    if "shared_arrays" not in nc.ncattrs():
        return []
    return list(json.loads(nc.getncattr("shared_arrays"))["names"])


def state_digest(path: str | Path) -> str:
    """The recorded content digest of a state file (from its attributes; not verified)."""
    import netCDF4

    with _HDF5_LOCK, netCDF4.Dataset(path) as nc:
        return str(nc.getncattr("content_sha256"))


def monitors_equal(a: Any, b: Any) -> bool:
    """True when two monitors have the same class and identical attributes (arrays
    compared with NaN == NaN)."""
    if type(a) is not type(b):
        return False
    va, vb = vars(a), vars(b)
    if set(va) != set(vb):
        return False
    for k in va:
        x, y = va[k], vb[k]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
                return False
            if x.shape != y.shape or x.dtype != y.dtype:
                return False
            if not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                return False
        elif x != y:
            return False
    return True
