"""Shared fixtures: a small synthetic archive (generated once per session) and its config."""

from __future__ import annotations

import copy
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from forestwatch.config import validate_config
from forestwatch.synthetic import SyntheticSpec, generate_archive

REPO = Path(__file__).resolve().parents[1]
SMALL_CONFIG = REPO / "tests" / "config" / "small.yaml"
DEFAULT_CONFIG = REPO / "config" / "config.yaml"
# the real services the integration tests start (tests/services/*.py, imported by name)
sys.path.insert(0, str(REPO / "tests" / "services"))


def catalog_events(features: list[dict], *, after: dt.date, late_days: int = 14,
                   very_late_days: int = 45) -> dict:
    """A growing catalog's publication times and events, on STAC item dicts (changed in
    place): every item published the day after its acquisition, except ``late`` (a 33UUR
    granule of mid-May, published ``late_days`` after its acquisition) and ``very_late``
    (a 32UQB granule of mid-April, published ``very_late_days`` after it, long after the
    daily run's lookback has passed it); ``new`` is a re-processed version (baseline
    05.10, a new id) of ``old``, published a week after it (not in ``features``);
    ``broken`` (a 33UUR granule of late April) is left for the caller to break. Events
    are picked among the acquisitions after ``after``; ``pick(month, zone)`` picks more."""
    def day(feature: dict) -> dt.date:
        return dt.date.fromisoformat(feature["properties"]["datetime"][:10])

    def published(feature: dict, days: int) -> str:
        return f"{day(feature) + dt.timedelta(days=days)}T06:00:00Z"

    for f in features:
        f["properties"]["published"] = published(f, 1)
    later = [f for f in features if day(f) > after]

    def pick(month: str, zone: str) -> dict:
        return next(f for f in later if f["properties"]["datetime"].startswith(month)
                    and f["properties"]["s2:mgrs_tile"].startswith(zone))

    late, very_late, old = pick("2023-05-1", "33"), pick("2023-04-1", "32"), pick("2023-05-2", "32")
    late["properties"]["published"] = published(late, late_days)
    very_late["properties"]["published"] = published(very_late, very_late_days)
    new = copy.deepcopy(old)  # the same acquisition, reprocessed: a new id and baseline
    new["id"] = new["id"].replace("_N0400_", "_N0510_")
    new["properties"]["s2:processing_baseline"] = "05.10"
    new["properties"]["published"] = published(old, 8)
    return {"late": late, "very_late": very_late, "old": old, "new": new,
            "broken": pick("2023-04-2", "33"), "pick": pick}


def small_config(**overrides) -> dict:
    """The validated small test config (config/config.yaml with tests/config/small.yaml
    merged on top, as the workflow tests pass it), with nested ``overrides`` merged in."""
    from forestwatch.config import deep_update

    with open(DEFAULT_CONFIG) as f:
        raw = yaml.safe_load(f)
    with open(SMALL_CONFIG) as f:
        raw = deep_update(raw, yaml.safe_load(f))
    return validate_config(deep_update(raw, overrides))


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory) -> dict:
    """Generate the small synthetic archive once. Returns a dict with the validated
    config (``cfg``, with ``stac.source: local`` pointing at the archive), the archive
    ``folder`` and its ``catalog`` (items.json)."""
    folder = tmp_path_factory.mktemp("archive")
    cfg = small_config()
    catalog = generate_archive(folder, SyntheticSpec.from_config(cfg))
    cfg = small_config(stac={"source": "local", "catalog": str(catalog)})
    return {"cfg": cfg, "folder": folder, "catalog": catalog}


def forward(state, items, tile, cfg) -> list:
    """Monitor the new days of ``items`` on an in-memory ``state``; their ledger entries
    (:class:`forestwatch.state.AppliedDay`)."""
    from forestwatch.monitor import forward_items

    return forward_items(state, items, tile, cfg)[1]


def snakemake(workdir: Path, *args: str, check: bool = True, configfiles: tuple = (),
              env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the workflow on the small config (plus ``configfiles``) in ``workdir``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(DEFAULT_CONFIG), str(SMALL_CONFIG), *map(str, configfiles),
           "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env=None if env is None else os.environ | env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def deploy(workdir: Path, cfg_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the workflow as a deployment does: its one config file ``cfg_path`` (a whole
    config, written by the test), in ``workdir``; fails the test with the end of
    Snakemake's output when it fails."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                           "-d", str(workdir), "--configfile", str(cfg_path), "--cores", "2",
                           *args], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def workflow_run(tmp_path_factory) -> Path:
    """The workflow run once on the small config (synthetic archive generated by the
    workflow itself); tests that change its files restore them."""
    workdir = tmp_path_factory.mktemp("workflow")
    snakemake(workdir)
    return workdir
