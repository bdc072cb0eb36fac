"""Configuration: JSON-schema validation with defaults, then checks the schema cannot express.

Every error is a :class:`ConfigError` whose message names the offending key, says what was
wrong and what to do. The schema lives in ``forestwatch/schemas/config.schema.yaml``; every
key is documented in ``config/README.md``.
"""

from __future__ import annotations

import ast
import copy
import datetime as dt
import functools
import importlib.util
import inspect
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).parent / "schemas" / "config.schema.yaml"

#: ``stac`` keys that say how the source is reached, not what is read from it. The keys of
#: what a forest mask or a fit was made from (:func:`forestwatch.forest_mask.mask_key`,
#: :func:`forestwatch.monitor.fit_key`) leave them out: raising ``retries`` after a bad
#: night reruns the tile jobs (their params changed), which keep their masks and fits.
STAC_ACCESS_KEYS = ("timeout_s", "retries", "retry_backoff_s", "page_size", "auth")


def without_access_keys(cfg: Mapping) -> dict:
    """A shallow copy of ``cfg`` whose ``stac`` section, if any, leaves out
    :data:`STAC_ACCESS_KEYS`."""
    out = dict(cfg)
    if isinstance(out.get("stac"), dict):
        out["stac"] = {k: v for k, v in out["stac"].items() if k not in STAC_ACCESS_KEYS}
    return out


#: nrt monitor classes by config name.
MONITOR_CLASSES = ("IQR", "EWMA", "CuSum", "MoSum", "CCDC")

#: keyword arguments accepted by each monitor's ``fit()`` (passed through to nrt).
FIT_KWARGS = {
    "IQR": {"method", "screen_outliers", "maxiter", "L"},
    "EWMA": {"method", "screen_outliers", "L", "maxiter"},
    "CuSum": {"method", "alpha", "screen_outliers", "maxiter", "L"},
    "MoSum": {"method", "alpha", "screen_outliers", "maxiter", "L"},
    "CCDC": {"method", "screen_outliers", "scaling_factor", "maxiter", "L"},
}
FIT_METHODS = ("OLS", "RIRLS", "ROC", "CCDC-stable")
SCREEN_OUTLIERS = (None, "Shewhart", "CCDC_RIRLS")
#: constructor arguments that the workflow sets itself, never the user.
RESERVED_PARAMS = {
    "mask", "x_coords", "y_coords", "beta", "process", "detection_date", "fit_start", "self",
}

CONFIG_HELP = "See config/README.md for every key and its allowed values."

#: the smallest tile side, in pixels: smaller tiles give nrt too few pixels per job and
#: multiply the number of jobs.
MIN_TILE_PIXELS = 16

#: what a value of each type must be (its name in messages) and how to tell.
VALUE_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
}

#: type and range of every nrt monitor argument (``monitor.params`` and ``monitor.fit``),
#: read from nrt 0.3.0's sources: name, or ``Class.name`` where one class differs ->
#: (type, test of the range or None, the range as the message states it).
MONITOR_VALUES: dict[str, tuple[str, Callable[[Any], bool] | None, str]] = {
    "trend": ("bool", None, ""),
    "update_mask": ("bool", None, ""),
    "save_fit_start": ("bool", None, ""),
    "harmonic_order": ("integer", lambda v: v >= 0, ">= 0"),
    "boundary": ("integer", lambda v: v >= 1, ">= 1 (consecutive outliers that flag a break)"),
    "sensitivity": ("number", lambda v: v > 0, "> 0"),
    "CuSum.sensitivity": ("number", lambda v: 0 < v < 1, "in (0, 1) (a significance level)"),
    "MoSum.sensitivity": ("number", lambda v: 0.001 <= v <= 0.05,
                          "in [0.001, 0.05] (the significance levels of nrt's MoSum table)"),
    "lambda_": ("number", lambda v: 0 < v <= 1, "in (0, 1] (the weight of the newest value)"),
    "threshold_outlier": ("number", lambda v: v > 0, "> 0 (in residual standard deviations)"),
    "h": ("number", lambda v: str(v) in ("0.25", "0.5", "1"),
          "in {0.25, 0.5, 1} (nrt looks it up as written: 1, not 1.0)"),
    "alpha": ("number", lambda v: 0 < v < 1, "in (0, 1) (a significance level)"),
    "maxiter": ("integer", lambda v: v >= 1, ">= 1"),
    "L": ("number", lambda v: v > 0, "> 0 (in residual standard deviations)"),
    "scaling_factor": ("number", lambda v: v > 0, "> 0"),
}

#: what ``monitor.params`` / ``monitor.fit`` default to, per class, when absent. IQR's set
#: was chosen by measurement (BENCHMARKS.md); the others are nrt's defaults, except where
#: the comparison showed a clear improvement (MoSum without trend; CCDC without the
#: green/SWIR screening, which needs bands many archives lack).
MONITOR_DEFAULTS: dict[str, dict[str, dict]] = {
    "IQR": {"params": {"trend": False, "harmonic_order": 1, "sensitivity": 1.25,
                       "boundary": 4},
            "fit": {"method": "OLS"}},
    "EWMA": {"params": {}, "fit": {"method": "OLS"}},
    "CuSum": {"params": {}, "fit": {"method": "ROC"}},
    "MoSum": {"params": {"trend": False}, "fit": {"method": "ROC"}},
    "CCDC": {"params": {}, "fit": {"method": "CCDC-stable", "screen_outliers": None}},
}


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid."""


#: libyaml's safe loader where PyYAML has it (8 x faster than the pure-Python one: the
#: schema took ~0.2 s to parse, at every start of Snakemake and every config validation)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def _schema() -> dict:
    """The config schema, parsed once per process (read only: the validator copies the
    defaults it fills in)."""
    with open(SCHEMA_PATH) as f:
        return yaml.load(f, Loader=_YAML_LOADER)


def load_schema() -> dict:
    """The config schema (a copy the caller may change)."""
    return copy.deepcopy(_schema())


def _extend_with_default(validator_class):
    """A validator that fills ``default`` values into the instance while validating."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultFillingValidator = _extend_with_default(jsonschema.Draft7Validator)


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = f"under '{key}'" if error.absolute_path else "at the top level"
        return (
            f"unknown config key(s) {', '.join(repr(e) for e in extra)} {where}; "
            f"allowed keys: {', '.join(allowed)}. Check the spelling."
        )
    if error.validator == "enum":
        return (
            f"config key '{key}' is {error.instance!r}; allowed values: "
            f"{', '.join(repr(v) for v in error.validator_value)}."
        )
    if error.validator == "propertyNames":
        return f"config key '{key}' has a bad entry name: {error.message}."
    return f"config key '{key}': {error.message}."


def validate_config(config: dict) -> dict:
    """Validate ``config`` against the schema, fill defaults, and run semantic checks.

    Returns a new dict (the input is not modified). Raises :class:`ConfigError`.
    """
    cfg = copy.deepcopy(dict(config))
    validator = _DefaultFillingValidator(_schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.path), str(e.path)))
    if errors:
        raise ConfigError(_describe(errors[0]) + " " + CONFIG_HELP)
    mon = cfg["monitor"]
    for part in ("params", "fit"):
        if part not in mon:
            mon[part] = copy.deepcopy(MONITOR_DEFAULTS[mon["class"]][part])
    _check_semantics(cfg)
    _complete_consensus(cfg)
    return cfg


def complete_monitor(cls: str, params: dict | None, fit: dict | None, *, where: str) -> dict:
    """``{"class", "params", "fit"}`` of a monitor given in part: parameters and fit
    arguments not given take the class's measured defaults (:data:`MONITOR_DEFAULTS`, not
    nrt's own). Raises :class:`ConfigError` naming ``where`` for a bad one."""
    mon = {"class": cls,
           "params": copy.deepcopy({**MONITOR_DEFAULTS[cls]["params"], **(params or {})}),
           "fit": copy.deepcopy({**MONITOR_DEFAULTS[cls]["fit"], **(fit or {})})}
    try:
        _check_monitor(mon)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}".replace("config key 'monitor.",
                                                    "key 'monitor.")) from None
    return mon


#: the keys of ``monitor.regional_screening``
SCREEN_KEYS = ("window_m", "max_share", "hold_days", "by_seasonality")


def complete_screen(base: dict, given: dict | None | str, *, where: str) -> dict:
    """A monitor's regional screening: ``base`` (the workflow's) updated by ``given`` (a
    dict of keys, ``None`` for off, ``"inherit"`` for ``base`` itself)."""
    base = copy.deepcopy(base)
    if given == "inherit":
        return base
    if given is None:
        return {**base, "window_m": None}
    unknown = sorted(set(given) - set(SCREEN_KEYS))
    if unknown:
        raise ConfigError(f"{where}: regional_screening keys {unknown} are unknown; allowed: "
                          f"{list(SCREEN_KEYS)}.")
    return {**base, **given}


def complete_monitor_with_screen(cls: str, params: dict | None, fit: dict | None,
                                 screen: dict | None | str, *, base_screen: dict,
                                 where: str) -> dict:
    """A monitor section given in part, as a consensus member or a strategy candidate:
    :func:`complete_monitor`, with ``regional_screening`` from :func:`complete_screen`."""
    mon = complete_monitor(cls, params, fit, where=where)
    mon["regional_screening"] = complete_screen(base_screen, screen, where=where)
    return mon


def _complete_consensus(cfg: dict) -> None:
    """Fill the consensus members' monitors and ``k`` (all members when null); refuse a
    ``k`` over the number of members and a member that repeats another."""
    con = cfg["consensus"]
    seen = [(cfg["index"], _monitor_key(cfg["monitor"]))]
    for i, entry in enumerate(con["members"]):
        where = f"config key 'consensus.members[{i}]'"
        given = entry.get("monitor", {})
        mon = complete_monitor_with_screen(
            given.get("class", cfg["monitor"]["class"]), given.get("params"), given.get("fit"),
            given.get("regional_screening", "inherit"),
            base_screen=cfg["monitor"]["regional_screening"], where=where)
        entry["monitor"] = mon
        key = (entry["index"], _monitor_key(mon))
        if key in seen:
            raise ConfigError(
                f"{where} is the same index and monitor as "
                + ("index + monitor" if seen.index(key) == 0
                   else f"consensus.members[{seen.index(key) - 1}]")
                + "; a consensus needs different members (another index, class or parameters).")
        seen.append(key)
    n = 1 + len(con["members"])
    if con["k"] is None:
        con["k"] = n
    elif con["k"] > n:
        raise ConfigError(
            f"config key 'consensus.k' is {con['k']}, more than the {n} member(s) (index + "
            "monitor and consensus.members); lower k or add members.")


def _monitor_key(mon: dict) -> tuple:
    return (mon["class"], repr(sorted(mon["params"].items())), repr(sorted(mon["fit"].items())))


def parse_date(value: str, key: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(
            f"config key '{key}' is {value!r}, which is not a date; write it as YYYY-MM-DD."
        ) from None


def _check_semantics(cfg: dict) -> None:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    for key in ("grid.crs", "aoi.crs"):
        section, name = key.split(".")
        try:
            CRS.from_user_input(cfg[section][name])
        except CRSError:
            raise ConfigError(
                f"config key '{key}' is {cfg[section][name]!r}, which is not a known CRS; "
                "use an EPSG code such as 'EPSG:3035'."
            ) from None
    if not CRS.from_user_input(cfg["grid"]["crs"]).is_projected:
        raise ConfigError(
            f"config key 'grid.crs' is {cfg['grid']['crs']!r}, a geographic CRS; the grid needs "
            "a projected CRS in metres (e.g. 'EPSG:3035' for Europe or a UTM zone)."
        )
    grid = cfg["grid"]
    ratio = grid["tile_size"] / grid["resolution"]
    if abs(ratio - round(ratio)) > 1e-9:
        raise ConfigError(
            f"config key 'grid.tile_size' ({grid['tile_size']}) must be a whole multiple of "
            f"'grid.resolution' ({grid['resolution']})."
        )
    if round(ratio) < MIN_TILE_PIXELS:
        raise ConfigError(
            f"config key 'grid.tile_size' ({grid['tile_size']}) is {round(ratio)} pixels of "
            f"'grid.resolution' ({grid['resolution']}) a side; make it at least "
            f"{MIN_TILE_PIXELS} pixels ({MIN_TILE_PIXELS * grid['resolution']:g}): smaller "
            "tiles give nrt too few pixels per job and multiply the number of jobs."
        )

    regions = cfg["alerts"]["regions"]["path"]
    if regions is not None and not Path(regions).exists():
        raise ConfigError(
            f"config key 'alerts.regions.path' points to {regions!r}, which does not exist; "
            "give a vector file of region polygons (relative to the workflow folder), or "
            "null for no per-region statistics."
        )

    aoi = cfg["aoi"]
    if aoi["file"] is None and aoi["bbox"] is None:
        raise ConfigError("config key 'aoi' needs either 'bbox' or 'file'. " + CONFIG_HELP)
    if aoi["file"] is not None and not Path(aoi["file"]).exists():
        raise ConfigError(
            f"config key 'aoi.file' points to {aoi['file']!r}, which does not exist; "
            "give a vector file path relative to the workflow folder."
        )
    if aoi["bbox"] is not None and aoi["file"] is None:
        xmin, ymin, xmax, ymax = aoi["bbox"]
        if not (xmin < xmax and ymin < ymax):
            raise ConfigError(
                f"config key 'aoi.bbox' is {aoi['bbox']}; it must be [xmin, ymin, xmax, ymax] "
                "with xmin < xmax and ymin < ymax."
            )

    stac = cfg["stac"]
    if stac["source"] == "stac_api" and not stac["url"]:
        raise ConfigError(
            "config key 'stac.url' is required when 'stac.source' is 'stac_api' "
            "(the STAC API root, e.g. https://example.org/stac)."
        )
    sign = stac["auth"]["sign_url"]
    if sign and sign != "planetary-computer" and not re.fullmatch(r"[\w.]+:\w+", sign):
        raise ConfigError(
            f"config key 'stac.auth.sign_url' is {sign!r}; use 'planetary-computer' or "
            "'package.module:function' (a function taking and returning an href)."
        )
    if stac["source"] == "local":
        if not stac["catalog"]:
            raise ConfigError(
                "config key 'stac.catalog' is required when 'stac.source' is 'local' "
                "(a STAC ItemCollection JSON file)."
            )
        if not Path(stac["catalog"]).exists():
            raise ConfigError(
                f"config key 'stac.catalog' points to {stac['catalog']!r}, which does not exist."
            )

    day = {}
    for key in ("history.start", "history.end", "fast_forward.until",
                "synthetic.start", "synthetic.disturbance_start", "synthetic.end"):
        section, name = key.split(".")
        day[key] = parse_date(cfg[section][name], key)
    for earlier, later in (("history.start", "history.end"),
                           ("synthetic.start", "synthetic.disturbance_start"),
                           ("synthetic.disturbance_start", "synthetic.end")):
        if day[earlier] >= day[later]:
            raise ConfigError(
                f"config key '{earlier}' ({day[earlier]}) must be before '{later}' "
                f"({day[later]})."
            )
    if day["fast_forward.until"] <= day["history.end"]:
        raise ConfigError(
            f"config key 'fast_forward.until' ({day['fast_forward.until']}) must be after "
            f"'history.end' ({day['history.end']})."
        )
    if stac["source"] == "synthetic":
        first, last = day["synthetic.start"], day["synthetic.end"]
        for key in ("history.start", "fast_forward.until"):  # history.end lies between
            if not first <= day[key] <= last:
                raise ConfigError(
                    f"config key '{key}' ({day[key]}) is outside the synthetic archive "
                    f"('stac.source' is 'synthetic'), which runs from 'synthetic.start' ({first}) "
                    f"to 'synthetic.end' ({last}); there is no data there: move '{key}' into "
                    "that period, or widen the archive's dates."
                )

    fm = cfg["forest_mask"]
    if fm["method"] == "file":
        path = fm["file"]["path"]
        if path is None and stac["source"] != "synthetic":
            raise ConfigError(
                "config key 'forest_mask.file.path' is required when 'forest_mask.method' is "
                "'file' (a tree-cover raster, percent, any CRS)."
            )
        if path is not None and not Path(path).exists():
            raise ConfigError(
                f"config key 'forest_mask.file.path' points to {path!r}, which does not exist."
            )
    if fm["method"] == "model":
        _check_forest_model(cfg, day)
    _check_monitor(cfg["monitor"])


#: how far a configured model period may be from the length the model was made for
MODEL_PERIOD_TOLERANCE = 0.1


def _check_forest_model(cfg: dict, day: dict[str, dt.date]) -> None:
    """``forest_mask.method: model``: the model and its description exist and fit the grid,
    and the period is sound. Cheap (one small file read, no onnxruntime import): this runs
    in every Snakemake parse. The model's checksum and its ONNX input are checked when the
    mask is made (:meth:`forestwatch.forest_mask.model.OnnxTreeCoverModel.load`)."""
    from .forest_mask.model import (
        XINFEREO_MISSING,
        ModelDescription,
        ModelError,
        model_files,
        model_period,
        xinfereo_available,
    )

    mcfg = cfg["forest_mask"]["model"]
    description = None
    if mcfg["backend"] == "xinfereo":
        if not xinfereo_available():
            raise ConfigError(XINFEREO_MISSING)
    else:
        try:
            _, path = model_files(mcfg, source=cfg["stac"]["source"])
            description = ModelDescription.read(path)
        except ModelError as err:
            raise ConfigError(str(err)) from None
        if abs(description.resolution - cfg["grid"]["resolution"]) > 1e-9:
            raise ConfigError(
                f"config key 'grid.resolution' is {cfg['grid']['resolution']:g} m, but the model "
                f"was made at {description.resolution:g} m (input.resolution of "
                f"{str(path)!r}); use a model made for the grid's resolution, or change "
                "'grid.resolution'."
            )
    if mcfg["period"]:
        for name in ("start", "end"):
            parse_date(mcfg["period"][name], f"forest_mask.model.period.{name}")
    start, end = model_period(cfg)
    if start >= end:
        raise ConfigError(
            f"config key 'forest_mask.model.period.start' ({start}) must be before "
            f"'forest_mask.model.period.end' ({end})."
        )
    if cfg["stac"]["source"] == "synthetic":
        first, last = day["synthetic.start"], day["synthetic.end"]
        if start < first or end > last:
            key = "forest_mask.model.period" if mcfg["period"] else "history.end"
            raise ConfigError(
                f"the model's period {start}..{end} (config key '{key}') is outside the "
                f"synthetic archive, which runs from 'synthetic.start' ({first}) to "
                f"'synthetic.end' ({last}); move the period into it."
            )
    days = (end - start).days + 1
    if description and abs(days - description.days) > MODEL_PERIOD_TOLERANCE * description.days:
        what = ("config key 'forest_mask.model.period'" if mcfg["period"] else
                "the default model period (config key 'forest_mask.model.period' is null: the "
                "year that ends with 'history.end')")
        raise ConfigError(
            f"{what} spans {days} days ({start}..{end}), but the model was made for periods "
            f"of {description.days} days (input.temporal.days of {str(description.path)!r}): "
            "statistics over another length are not what it learnt. Set "
            "'forest_mask.model.period' to a period of about that length."
        )


@functools.cache
def monitor_init_params(name: str) -> frozenset[str]:
    """The arguments of nrt's ``<name>.__init__``, read from nrt's source with ``ast``.

    Not imported: importing nrt pulls in numba (~2 s), and the config is validated each
    time Snakemake parses the workflow - in every dry-run and in every cluster job. Falls
    back to importing nrt if its source is not laid out as expected.
    """
    if name not in MONITOR_CLASSES:
        monitor_class(name)  # raises the ConfigError listing the allowed names
    spec = importlib.util.find_spec("nrt")
    if spec is None:
        raise ConfigError("the nrt package is not installed: pip install -e . installs it.")
    for folder in spec.submodule_search_locations or []:
        path = Path(folder) / "monitor" / f"{name.lower()}.py"
        try:
            tree = ast.parse(path.read_text())
        except (OSError, SyntaxError):
            continue
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                for fn in node.body:
                    if isinstance(fn, ast.FunctionDef) and fn.name == "__init__":
                        a = fn.args
                        return frozenset(x.arg for x in a.posonlyargs + a.args + a.kwonlyargs)
    return frozenset(
        arg
        for arg, p in inspect.signature(monitor_class(name).__init__).parameters.items()
        if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    )


def _check_monitor(mon: dict) -> None:
    accepted = set(monitor_init_params(mon["class"]))
    # BaseNrt keyword arguments reach every subclass through **kwargs
    accepted |= {"update_mask", "save_fit_start"}
    accepted -= RESERVED_PARAMS
    for name, value in mon["params"].items():
        if name not in accepted:
            raise ConfigError(
                f"config key 'monitor.params.{name}' is not a parameter of nrt's "
                f"{mon['class']}; allowed: {', '.join(sorted(accepted))}."
            )
        if isinstance(value, (dict, list)):
            raise ConfigError(f"config key 'monitor.params.{name}' must be a single value.")
        _check_monitor_value(mon["class"], f"monitor.params.{name}", value)
    for name, value in mon["fit"].items():
        if name not in FIT_KWARGS[mon["class"]]:
            raise ConfigError(
                f"config key 'monitor.fit.{name}' is not a fit() argument of nrt's "
                f"{mon['class']}; allowed: {', '.join(sorted(FIT_KWARGS[mon['class']]))}."
            )
        _check_monitor_value(mon["class"], f"monitor.fit.{name}", value)
    method = mon["fit"].get("method")
    if method is not None and method not in FIT_METHODS:
        raise ConfigError(
            f"config key 'monitor.fit.method' is {method!r}; allowed values: "
            f"{', '.join(FIT_METHODS)}."
        )
    if "screen_outliers" in mon["fit"] and mon["fit"]["screen_outliers"] not in SCREEN_OUTLIERS:
        raise ConfigError(
            f"config key 'monitor.fit.screen_outliers' is {mon['fit']['screen_outliers']!r}; "
            "allowed values: null, 'Shewhart', 'CCDC_RIRLS'."
        )
    if method == "CCDC-stable" and mon["params"].get("trend") is False:
        raise ConfigError(
            "config key 'monitor.fit.method' is 'CCDC-stable', which needs "
            "'monitor.params.trend: true'."
        )


def _check_monitor_value(cls: str, key: str, value: Any) -> None:
    """Check ``value`` of the monitor argument ``key`` against :data:`MONITOR_VALUES`."""
    name = key.rsplit(".", 1)[1]
    rule = MONITOR_VALUES.get(f"{cls}.{name}") or MONITOR_VALUES.get(name)
    if rule is None:  # method and screen_outliers: checked by _check_monitor
        return
    kind, in_range, allowed = rule
    type_name, is_type = VALUE_TYPES[kind]
    if not is_type(value) or (in_range is not None and not in_range(value)):
        got = f"{value!r}, a string" if isinstance(value, str) else repr(value)
        must = f"{type_name} {allowed}".strip()
        raise ConfigError(f"config key '{key}' is {got}; it must be {must}.")


def monitor_class(name: str) -> type:
    """Return the nrt monitor class for a config name (``IQR``, ``EWMA``, ...)."""
    from nrt.monitor.ccdc import CCDC
    from nrt.monitor.cusum import CuSum
    from nrt.monitor.ewma import EWMA
    from nrt.monitor.iqr import IQR
    from nrt.monitor.mosum import MoSum

    classes = {"IQR": IQR, "EWMA": EWMA, "CuSum": CuSum, "MoSum": MoSum, "CCDC": CCDC}
    try:
        return classes[name]
    except KeyError:
        raise ConfigError(
            f"config key 'monitor.class' is {name!r}; allowed values: {', '.join(classes)}."
        ) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> dict:
    """Read a YAML config file, apply nested ``overrides``, and validate it."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist.")
    with open(path) as f:
        try:
            cfg = yaml.load(f, Loader=_YAML_LOADER) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from None
    if overrides:
        cfg = deep_update(cfg, overrides)
    return validate_config(cfg)


def deep_update(base: dict, updates: dict) -> dict:
    """Return ``base`` with ``updates`` merged in recursively (dicts merge, others replace)."""
    out = copy.deepcopy(base)
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
