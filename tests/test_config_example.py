"""The documented example config stays valid and documents every key."""

from __future__ import annotations

from pathlib import Path

import yaml

from skinflint.config import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parent.parent / "skinflint.example.yaml"


def test_example_config_loads() -> None:
    settings = load_settings(EXAMPLE, env={})
    assert settings.server.host == "127.0.0.1"
    assert settings.rule_set_name("support-triage") == "support-tickets"


def test_example_config_names_every_top_level_and_section_key() -> None:
    documented = yaml.safe_load(EXAMPLE.read_text())
    assert set(documented) == set(Settings.model_fields)
    for section in ("server", "cache", "logging"):
        model = type(getattr(load_settings(EXAMPLE, env={}), section))
        assert set(documented[section]) == set(model.model_fields), section
    l2 = load_settings(EXAMPLE, env={}).cache.l2
    assert set(documented["cache"]["l2"]) == set(type(l2).model_fields)
