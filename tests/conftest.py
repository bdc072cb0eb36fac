"""Shared fixtures: a small synthetic archive (generated once per session) and its config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from forestwatch.config import validate_config
from forestwatch.synthetic import SyntheticSpec, generate_archive

REPO = Path(__file__).resolve().parents[1]
SMALL_CONFIG = REPO / "tests" / "config" / "small.yaml"
DEFAULT_CONFIG = REPO / "config" / "config.yaml"


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
