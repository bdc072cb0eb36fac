"""Tree-cover models for the forest mask (``forest_mask.method: model``).

A model maps per-pixel statistics of one period's clear-sky surface reflectance to tree
cover in percent; the mask is where that cover is >= ``forest_mask.model.threshold``.
The model is an ONNX file run with onnxruntime, and it comes with a small description
file (JSON or YAML, beside the model or named by ``forest_mask.model.description``) that
states everything its inputs depend on, so nothing is left to guesswork:

* ``input.bands``: logical band names (``red``, ``nir``, ``swir16`` ...) in the model's
  order;
* ``input.scaling``: ``reflectance``, surface reflectance 0-1 from each item's own
  scale/offset (:func:`forestwatch.stac.load_reflectance`), as everywhere in the
  workflow - never a blanket ``DN - 1000``, which is wrong for baselines before 04.00;
* ``input.temporal``: the statistics per band over the clear observations of the period
  (``median``, ``mean``, ``p0``-``p100``), the period length they were made for
  (``days``), and ``min_observations`` (fewer: not forest, the model is not asked);
* ``input.resolution``: metres;
* ``output.unit``: ``percent`` (tree cover);
* ``sha256``: of the model file, checked before the model runs.

The model's input is one float32 matrix (pixels x features), features band-major:
``<band>_<statistic>`` for each band, for each statistic (``red_median, red_p10, ...``).
Before it runs, its ONNX input is checked against the description: the feature count,
and, when the model carries a ``features`` metadata entry (the training script writes
one), the feature names and their order.

Importing this module does not import onnxruntime: the configuration is validated, and
the description read, in every Snakemake parse.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import numpy as np
import yaml

from ._blocks import mask_by_block

if TYPE_CHECKING:
    from ..grid import Tile

log = logging.getLogger(__name__)

SCHEMA_DIR = Path(__file__).parent.parent / "schemas"
#: the project folder (the workflow, its resources/): the package is installed editable
PROJECT = Path(__file__).resolve().parents[3]

#: the model the demo uses when ``forest_mask.model.path`` is null (``stac.source:
#: synthetic`` only): shipped with the workflow, made by models/train_tree_cover.py
DEMO_MODEL = PROJECT / "resources" / "models" / "tree_cover_synthetic.onnx"
#: where a model's description is looked for when the config names none
DESCRIPTION_SUFFIXES = (".json", ".yaml", ".yml")
#: ONNX metadata entry with the model's feature names, comma-separated, in input order
FEATURES_METADATA = "features"

XINFEREO_MISSING = (
    "config key 'forest_mask.model.backend' is 'xinfereo', but the xinfereo package is not "
    "installed in this environment. Install it (pip install xinfereo, from the package "
    "index that provides it) or use 'backend: onnx' with an ONNX model file and its "
    "description ('forest_mask.model.path'; see config/README.md)."
)


class ModelError(ValueError):
    """A tree-cover model or its description is missing, malformed, or the two disagree.
    The message names the file, the field or config key, and what to do."""


@functools.cache
def known_bands() -> tuple[str, ...]:
    """The logical reflectance band names the workflow loads (``stac.bands``' names)."""
    with open(SCHEMA_DIR / "config.schema.yaml") as f:
        schema = yaml.safe_load(f)
    names = schema["properties"]["stac"]["properties"]["bands"]["propertyNames"]["enum"]
    return tuple(n for n in names if n != "scl")


@functools.cache
def _description_schema() -> dict:
    with open(SCHEMA_DIR / "model_description.schema.yaml") as f:
        return yaml.safe_load(f)


@dataclass(frozen=True)
class ModelDescription:
    """What a tree-cover model expects and gives, read from its description file."""

    path: Path
    sha256: str  # of the model file, lower-case hex
    bands: tuple[str, ...]  # logical names, in the model's order
    statistics: tuple[str, ...]  # per band: "median", "mean", "p<0-100>"
    days: int  # length of the period the statistics were made over
    min_observations: int  # clear observations a pixel needs to be given to the model
    resolution: float  # metres
    name: str = ""

    @property
    def features(self) -> tuple[str, ...]:
        """The model's input columns, band-major: ``<band>_<statistic>``."""
        return tuple(f"{b}_{s}" for b in self.bands for s in self.statistics)

    @classmethod
    def read(cls, path: str | Path) -> ModelDescription:
        """Read and check a description file (``.json``, else YAML). Raises
        :class:`ModelError` naming the file and the field."""
        path = Path(path)
        where = f"model description {str(path)!r}"
        try:
            text = path.read_text()
        except OSError as err:
            raise ModelError(f"{where} cannot be read ({err.strerror}); "
                             "check 'forest_mask.model.description'.") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as err:
            raise ModelError(f"{where} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}:"
                             f" {err}") from None
        if not isinstance(data, dict):
            raise ModelError(f"{where} must hold a mapping with 'sha256', 'input' and 'output' "
                             "(see config/README.md, 'The model's description file').")
        errors = sorted(jsonschema.Draft7Validator(_description_schema()).iter_errors(data),
                        key=lambda e: (len(e.path), str(e.path)))
        if errors:
            raise ModelError(f"{where}: {_describe(errors[0])} Fix the description (its fields: "
                             "config/README.md, 'The model's description file').")
        unknown = [b for b in data["input"]["bands"] if b not in known_bands()]
        if unknown:
            raise ModelError(
                f"{where}: input.bands names {', '.join(repr(b) for b in unknown)}, which this "
                f"workflow does not know; known bands: {', '.join(known_bands())}. Fix the "
                "description (a model needing other bands cannot run here)."
            )
        temporal = data["input"]["temporal"]
        return cls(
            path=path, sha256=data["sha256"], bands=tuple(data["input"]["bands"]),
            statistics=tuple(temporal["statistics"]), days=int(temporal["days"]),
            min_observations=int(temporal.get("min_observations", 1)),
            resolution=float(data["input"]["resolution"]), name=str(data.get("name", "")),
        )


def _describe(error: jsonschema.ValidationError) -> str:
    field = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return (f"unknown field(s) {', '.join(repr(e) for e in extra)}"
                f"{f' under {field!r}' if field else ''}; allowed: {', '.join(allowed)}.")
    if error.validator == "required":
        return f"{error.message}{f' in {field!r}' if field else ''}."
    return f"field {field!r}: {error.message}."


def model_files(model_cfg: dict, *, source: str) -> tuple[Path, Path]:
    """The model file and its description file that ``forest_mask.model`` names, with the
    defaults filled in: no ``path`` is the demo model (``stac.source: synthetic`` only),
    no ``description`` is the first of ``<model>.json``, ``.yaml``, ``.yml`` beside the
    model. Raises :class:`ModelError` naming the key when a file does not exist."""
    path = model_cfg["path"]
    if path is None:
        if source != "synthetic":
            raise ModelError(
                "config key 'forest_mask.model.path' is required when 'forest_mask.method' is "
                "'model' and 'stac.source' is not 'synthetic' (an ONNX tree-cover model; the "
                "demo model only knows the synthetic archive). See config/README.md."
            )
        path = DEMO_MODEL
    model = Path(path)
    if not model.is_file():
        hint = (" (it is the demo model, the default, shipped in the workflow's "
                "resources/models/; restore it, or set the key)"
                if model_cfg["path"] is None else "")
        raise ModelError(f"config key 'forest_mask.model.path' points to {str(model)!r}, which "
                         f"does not exist{hint}.")
    if model_cfg["description"] is not None:
        description = Path(model_cfg["description"])
        if not description.is_file():
            raise ModelError(
                f"config key 'forest_mask.model.description' points to {str(description)!r}, "
                "which does not exist; name the model's description file, or set it to null to "
                "use the one beside the model."
            )
        return model, description
    for suffix in DESCRIPTION_SUFFIXES:
        description = model.with_suffix(suffix)
        if description.is_file():
            return model, description
    tried = ", ".join(repr(str(model.with_suffix(s))) for s in DESCRIPTION_SUFFIXES)
    raise ModelError(
        f"model {str(model)!r} has no description file: none of {tried} exists. Write one "
        "beside the model (config/README.md, 'The model's description file') or name it with "
        "'forest_mask.model.description'."
    )


def model_period(cfg: dict) -> tuple[dt.date, dt.date]:
    """The period whose clear observations the model's statistics are made of (inclusive
    days): ``forest_mask.model.period``, by default the year that ends with
    ``history.end`` (2023-09-30 -> 2022-10-01 .. 2023-09-30)."""
    period = cfg["forest_mask"]["model"]["period"]
    if period:
        return (dt.date.fromisoformat(str(period["start"])),
                dt.date.fromisoformat(str(period["end"])))
    end = dt.date.fromisoformat(str(cfg["history"]["end"]))
    day = min(end.day, 28) if (end.month, end.day) == (2, 29) else end.day
    return end.replace(year=end.year - 1, day=day) + dt.timedelta(days=1), end


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, lower-case hex (as ``sha256sum`` prints it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def nan_quantiles(values: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """Quantiles ``q`` (0-1) along axis 0 ignoring NaN, as ``np.nanquantile(values, q,
    axis=0)`` (linear interpolation) but vectorised: numpy's loops over pixels in Python
    (~1 s per band of a 150 x 150 px tile). ``values`` (time, pixels); returns (len(q),
    pixels) float64, NaN for a pixel without any value."""
    n = np.isfinite(values).sum(axis=0)
    ordered = np.sort(values, axis=0)  # NaN sort last
    last = np.maximum(n - 1, 0)
    out = np.empty((len(q), values.shape[1]))
    for i, qi in enumerate(q):
        h = last * float(qi)
        lo = np.floor(h).astype(np.intp)
        hi = np.minimum(lo + 1, last)
        a = np.take_along_axis(ordered, lo[None], axis=0)[0].astype(np.float64)
        b = np.take_along_axis(ordered, hi[None], axis=0)[0].astype(np.float64)
        out[i] = a + (h - lo) * (b - a)
    out[:, n == 0] = np.nan
    return out


def temporal_features(cube, *, bands: Sequence[str], statistics: Sequence[str]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel statistics of a reflectance cube over its time axis, ignoring NaN (cloud,
    shadow, no data), as a model's input.

    ``cube`` is a Dataset from :func:`forestwatch.stac.load_reflectance` (variables named
    by logical band, dims time, y, x). Returns ``(features, n_obs)``: float32 (y*x,
    len(bands) * len(statistics)), columns band-major as
    :attr:`ModelDescription.features`; int32 (y*x,) the clear observations of each pixel
    (in every band). Pixels without any are NaN.
    """
    quantiles = {s: (0.5 if s == "median" else int(s[1:]) / 100)
                 for s in statistics if s != "mean"}
    n_time = cube.sizes["time"]
    columns, n_obs = [], None
    for band in bands:
        values = np.asarray(cube[band].values, dtype=np.float32).reshape(n_time, -1)
        n = np.isfinite(values).sum(axis=0)
        n_obs = n if n_obs is None else np.minimum(n_obs, n)
        qs = dict(zip(quantiles, nan_quantiles(values, list(quantiles.values())), strict=True))
        for s in statistics:
            if s == "mean":
                with np.errstate(invalid="ignore", divide="ignore"):
                    columns.append(np.nansum(values, axis=0, dtype=np.float64) / n)
            else:
                columns.append(qs[s])
    features = np.stack(columns, axis=1).astype(np.float32)
    return features, n_obs.astype(np.int32)


class OnnxTreeCoverModel:
    """An ONNX tree-cover model, checked against its description, run with onnxruntime.

    Use :meth:`load`. :meth:`tree_cover` turns one block's reflectance cube into tree
    cover; the model only ever sees that block's pixels.
    """

    backend = "onnx"

    def __init__(self, session, description: ModelDescription, *, path: Path) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        self._output = session.get_outputs()[0].name
        self.description = description
        self.path = path

    @classmethod
    def load(cls, model_path: str | Path, description_path: str | Path, *, threads: int = 1
             ) -> OnnxTreeCoverModel:
        """Read the description and the model's bytes, check the bytes' SHA-256 against the
        description, build the session from those same bytes (so what runs is what was
        checked) with ``threads`` threads, and check its input against the description.
        Raises :class:`ModelError`."""
        import onnxruntime as ort

        model_path = Path(model_path)
        description = ModelDescription.read(description_path)
        try:
            data = model_path.read_bytes()
        except OSError as err:
            raise ModelError(f"model file {str(model_path)!r} cannot be read ({err.strerror}); "
                             "check 'forest_mask.model.path'.") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != description.sha256:
            raise ModelError(
                f"model file {str(model_path)!r} has SHA-256 {digest}, but its description "
                f"{str(description.path)!r} states {description.sha256}: the model is not the "
                "one described (changed, or the wrong file). Restore it, or, if the change is "
                f"meant, write the new checksum (sha256sum {model_path.name}) into the "
                "description's 'sha256'."
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(data, sess_options=options,
                                           providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelError(f"model file {str(model_path)!r} is not an ONNX model onnxruntime "
                             f"can run: {err}") from None
        _check_inputs(session, description, model_path)
        return cls(session, description, path=model_path)

    @property
    def bands(self) -> tuple[str, ...]:
        return self.description.bands

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Tree cover (float32 percent, (n,)) of ``features`` (float32 (n, n_features))."""
        if len(features) == 0:
            return np.zeros(0, dtype=np.float32)
        out = self._session.run([self._output], {self._input: features})[0]
        cover = np.asarray(out, dtype=np.float32).reshape(-1)
        if cover.size != len(features):
            raise ModelError(
                f"model {str(self.path)!r} gave {cover.size} values for {len(features)} pixels; "
                "a tree-cover model gives one value (percent) per pixel."
            )
        return cover

    def tree_cover(self, cube) -> np.ndarray:
        """Tree cover (float32 percent, the cube's (y, x)) of a block's reflectance cube;
        NaN where a pixel has fewer than the description's ``min_observations``."""
        d = self.description
        features, n_obs = temporal_features(cube, bands=d.bands, statistics=d.statistics)
        ok = n_obs >= d.min_observations
        cover = np.full(len(features), np.nan, dtype=np.float32)
        cover[ok] = self.predict(np.ascontiguousarray(features[ok]))
        return cover.reshape(cube.sizes["y"], cube.sizes["x"])

    def provenance(self) -> dict[str, str]:
        """What made the mask, for its GeoTIFF tags."""
        return {"backend": self.backend, "model": self.path.name,
                "model_sha256": self.description.sha256,
                "model_description": self.description.path.name}


def _check_inputs(session, description: ModelDescription, path: Path) -> None:
    """The model takes one float32 (pixels x features) input matching the description."""
    where = f"model {str(path)!r}"
    inputs = session.get_inputs()
    expected = description.features
    said = (f"its description {str(description.path)!r} gives {len(description.bands)} band(s) "
            f"x {len(description.statistics)} statistic(s) = {len(expected)} features "
            f"({', '.join(expected)})")
    if len(inputs) != 1 or inputs[0].type != "tensor(float)" or len(inputs[0].shape) != 2:
        got = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
        raise ModelError(f"{where} takes {got}; a tree-cover model takes one float32 matrix "
                         f"(pixels x features), and {said}.")
    width = inputs[0].shape[1]
    if isinstance(width, int) and width != len(expected):
        raise ModelError(
            f"{where} takes {width} features per pixel, but {said}: the description's "
            "input.bands or input.temporal.statistics do not match the model. Fix the "
            "description (or use the model it was written for)."
        )
    meta = session.get_modelmeta().custom_metadata_map.get(FEATURES_METADATA)
    if meta is not None:
        made_for = tuple(f.strip() for f in meta.split(","))
        if made_for != expected:
            raise ModelError(
                f"{where} was made for the features {', '.join(made_for)} (its "
                f"'{FEATURES_METADATA}' metadata), in that order, but {said}: fix the order "
                "or the names of the description's input.bands and input.temporal.statistics."
            )


def mask_from_model(
    tile: Tile,
    items: Sequence[Any],
    *,
    model: Any,
    threshold: float,
    stac_cfg: dict,
    block_size: int = 512,
    loader: Callable[..., Any] | None = None,
    threads: int = 1,
) -> np.ndarray:
    """Forest where the tree cover (percent) a model gives is ``>= threshold``.

    ``items`` are the period's acquisitions (:func:`model_period`); ``model`` is what :func:`forestwatch.forest_mask.model.load_model`
    returns: it names the ``bands`` to load and turns a block's reflectance cube into
    tree cover (``tree_cover(cube)``, float32 (y, x), NaN for too few clear
    observations: not forest). Square blocks of ``block_size`` px are loaded and given to
    the model one at a time, so memory is bounded by a block (about 4 B x block px x
    period dates x bands for the cube), whatever the tile size.
    """
    from ..stac import NoDataError, load_reflectance

    loader = loader or load_reflectance
    if not items:
        raise NoDataError(
            f"tile {tile.id}: no acquisition in the model's period to derive the forest mask "
            "from; move or widen forest_mask.model.period, or raise stac.max_cloud_cover."
        )
    unobserved = 0

    def classify(cube) -> np.ndarray:
        nonlocal unobserved
        cover = model.tree_cover(cube)
        known = np.isfinite(cover)
        unobserved += int((~known).sum())
        return known & (cover >= threshold)

    mask = mask_by_block(tile, items, bands=model.bands, classify=classify,
                         stac_cfg=stac_cfg, block_size=block_size, loader=loader,
                         threads=threads)
    log.info("tile %s: model mask marks %.1f %% forest (tree cover >= %g %%); %d px had too "
             "few clear observations (not forest)", tile.id, 100 * mask.mean(), threshold,
             unobserved)
    return mask


def xinfereo_available() -> bool:
    return importlib.util.find_spec("xinfereo") is not None


class XinfereoTreeCoverModel:
    """Thin adapter to the ``xinfereo`` package's tree-cover inference, called as the
    reference document does: ``EOInferencer(data.tcd_model_meta(), name).predict(ds)[0]``.

    Untested: xinfereo is not installable where this workflow is developed and no public
    source of it was found, so the call follows the reference document only (the module
    paths ``xinfereo.EOInferencer`` and ``xinfereo.data`` are read from it). ``ds`` is one
    block's cube of every reflectance band the STAC source maps, variables named by their
    asset keys as an odc-stac load names them, in reflectance 0-1 from each item's own
    scale/offset (which for baselines >= 04.00 is the document's ``(DN - 1000) / 10000``).
    Which bands, period and resolution the model wants is its metadata's business.
    """

    backend = "xinfereo"

    def __init__(self, inferencer, name: str, asset_keys: dict[str, str]) -> None:
        self._inferencer = inferencer
        self.name = name
        self._asset_keys = asset_keys

    @classmethod
    def load(cls, name: str, *, stac_cfg: dict) -> XinfereoTreeCoverModel:
        if not xinfereo_available():
            raise ModelError(XINFEREO_MISSING)
        from xinfereo import EOInferencer, data

        from ..stac import band_keys

        keys = {b: k for b, k in band_keys(stac_cfg).items() if b != "scl"}
        return cls(EOInferencer(data.tcd_model_meta(), name), name, keys)

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(self._asset_keys)

    def tree_cover(self, cube) -> np.ndarray:
        ds = cube[list(self.bands)].rename(self._asset_keys)
        cover = np.asarray(self._inferencer.predict(ds)[0], dtype=np.float32)
        shape = (cube.sizes["y"], cube.sizes["x"])
        if cover.shape != shape:
            raise ModelError(f"xinfereo model {self.name!r} gave an array of shape "
                             f"{cover.shape} for a block of {shape}.")
        return cover

    def provenance(self) -> dict[str, str]:
        return {"backend": self.backend, "model": self.name,
                "xinfereo_version": _version("xinfereo")}


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def load_model(model_cfg: dict, *, model_path: str | Path | None,
               description_path: str | Path | None, stac_cfg: dict, threads: int = 1) -> Any:
    """The model ``forest_mask.model`` configures (:class:`OnnxTreeCoverModel` or
    :class:`XinfereoTreeCoverModel`), checked, with the bands it needs mapped by the STAC
    source. Raises :class:`ModelError`."""
    if model_cfg["backend"] == "xinfereo":
        return XinfereoTreeCoverModel.load(model_cfg["name"], stac_cfg=stac_cfg)
    if model_path is None or description_path is None:
        raise ModelError("the model mask needs the model file and its description "
                         "(forestwatch.forest_mask.model.model_files gives both).")
    from ..stac import band_keys

    model = OnnxTreeCoverModel.load(model_path, description_path, threads=threads)
    keys = band_keys(stac_cfg)
    unmapped = [b for b in model.bands if b not in keys]
    if unmapped:
        raise ModelError(
            f"the model's description {str(model.description.path)!r} needs band(s) "
            f"{', '.join(unmapped)}, which 'stac.preset' {stac_cfg['preset']!r} has no asset "
            f"key for; map them with 'stac.bands' (e.g. stac.bands.{unmapped[0]}: <asset key>)."
        )
    return model


__all__ = ["DEMO_MODEL", "mask_from_model", "ModelDescription", "ModelError", "OnnxTreeCoverModel",
           "XinfereoTreeCoverModel", "file_sha256", "known_bands", "load_model",
           "model_files", "model_period", "nan_quantiles", "temporal_features",
           "xinfereo_available"]
