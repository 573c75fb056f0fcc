"""Configuration: YAML + environment + flags, precedence, strictness, and errors that name
the key, what is wrong and where to fix it."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
from conftest import SettingsFactory

from skinflint.app import App
from skinflint.config import (
    FeatureConfig,
    Settings,
    compile_rule_sets,
    data_dir_issue,
    load_settings,
    prepare_data_dir,
)
from skinflint.errors import ConfigError


def _issues(error: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return {issue.key: str(issue) for issue in error.value.issues}


def test_defaults_are_loopback_and_documented() -> None:
    settings = load_settings(env={})
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 50051
    assert settings.server.grace_seconds == 10
    assert settings.server.max_request_bytes == 4 * 1024 * 1024
    assert settings.server.max_concurrent_rpcs is None
    assert settings.data_dir == Path("skinflint-data").absolute()
    assert settings.cache.max_bytes == 1 << 30
    assert settings.cache.default_ttl_seconds == 86_400
    assert settings.cache.durable is False
    assert settings.cache.rule_set == "conservative"
    assert settings.logging.format == "json"
    assert dict(settings.rule_sets) == {} and dict(settings.features) == {}


YAML = """
server:
  host: 127.0.0.2
  port: 6000
  grace_seconds: 2.5
  max_concurrent_rpcs: 64
cache:
  max_bytes: 10485760
  rule_set: tickets
rule_sets:
  tickets:
    strip_uuids: true
    strip_patterns: ['ticket-[0-9]+']
features:
  support:
    rule_set: volatile
    default_max_tokens: 512
  search: {}
logging:
  level: DEBUG
  format: console
"""


def test_yaml_is_loaded(make_settings: SettingsFactory) -> None:
    settings = make_settings(YAML, env={"SKINFLINT_PORT": "6000"})
    assert settings.server.host == "127.0.0.2"
    assert settings.server.port == 6000
    assert settings.server.grace_seconds == 2.5
    assert settings.server.max_concurrent_rpcs == 64
    assert settings.cache.max_bytes == 10 * 1024 * 1024
    assert settings.rule_sets["tickets"].strip_patterns == ("ticket-[0-9]+",)
    assert settings.rule_sets["tickets"].strip_uuids is True
    assert settings.features["support"].default_max_tokens == 512
    assert settings.logging.level == "debug"
    assert settings.rule_set_name("support") == "volatile"
    assert settings.rule_set_name("search") == "tickets"  # falls back to cache.rule_set
    assert settings.rule_set_name("unconfigured") == "tickets"
    assert settings.feature("unconfigured") == FeatureConfig()


def test_config_path_from_env(tmp_path: Path) -> None:
    path = tmp_path / "from-env.yaml"
    path.write_text("server:\n  port: 7001\n")
    settings = load_settings(env={"SKINFLINT_CONFIG": str(path)})
    assert settings.server.port == 7001
    other = tmp_path / "from-flag.yaml"
    other.write_text("server:\n  port: 7002\n")
    assert load_settings(other, env={"SKINFLINT_CONFIG": str(path)}).server.port == 7002


def test_precedence_flag_over_env_over_yaml_over_default(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  host: 10.0.0.1\n  port: 1111\n  grace_seconds: 3\n")
    assert load_settings(path, env={}).server.port == 1111
    env = {"SKINFLINT_PORT": "2222", "SKINFLINT_HOST": "10.0.0.2"}
    from_env = load_settings(path, env=env)
    assert (from_env.server.host, from_env.server.port) == ("10.0.0.2", 2222)
    assert from_env.server.grace_seconds == 3  # untouched YAML keys stay
    assert from_env.server.max_request_bytes == 4 * 1024 * 1024  # defaults fill the rest
    from_flag = load_settings(path, env=env, flags={"port": 3333, "host": None})
    assert (from_flag.server.host, from_flag.server.port) == ("10.0.0.2", 3333)


def test_generic_env_form_reaches_any_key(tmp_path: Path) -> None:
    env = {
        "SKINFLINT__SERVER__GRACE_SECONDS": "1.5",
        "SKINFLINT__CACHE__DURABLE": "true",
        "SKINFLINT__LOGGING__LEVEL": "warning",
        "SKINFLINT__RULE_SETS__MINE__STRIP_PATTERNS": '["order-[0-9]+", "x"]',
        "SKINFLINT__FEATURES__QA__RULE_SET": "mine",
        "SKINFLINT__SERVER__MAX_CONCURRENT_RPCS": "8",
    }
    settings = load_settings(env=env)
    assert settings.server.grace_seconds == 1.5
    assert settings.cache.durable is True
    assert settings.logging.level == "warning"
    assert settings.rule_sets["mine"].strip_patterns == ("order-[0-9]+", "x")
    assert settings.rule_set_name("qa") == "mine"
    assert settings.server.max_concurrent_rpcs == 8


def test_named_env_var_wins_over_generic_form() -> None:
    env = {"SKINFLINT__SERVER__PORT": "1000", "SKINFLINT_PORT": "2000"}
    assert load_settings(env=env).server.port == 2000


def test_generic_env_overrides_yaml_key_by_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("cache:\n  max_bytes: 2097152\n  default_ttl_seconds: 60\n")
    settings = load_settings(path, env={"SKINFLINT__CACHE__DEFAULT_TTL_SECONDS": "120"})
    assert settings.cache.max_bytes == 2 * 1024 * 1024
    assert settings.cache.default_ttl_seconds == 120


def test_out_of_range_names_key_problem_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "skinflint.yaml"
    path.write_text("server:\n  port: 70000\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value) == (
        f"server.port: must be between 0 and 65535 (got 70000); "
        f"set server.port in {path} or SKINFLINT_PORT"
    )


def test_bad_value_from_env_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"SKINFLINT_PORT": "70000"})
    message = str(info.value)
    assert message.startswith("server.port: must be between 0 and 65535 (got '70000')")
    assert "fix the environment variable SKINFLINT_PORT" in message


def test_bad_value_from_flag_names_the_flag() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, flags={"port": -1})
    assert "fix the --port flag" in str(info.value)


def test_unknown_key_is_rejected_naming_it_and_the_valid_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  prot: 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert message.startswith("server.prot: unknown key; valid keys under server: host, port,")
    assert "max_request_bytes" in message
    assert f"remove it from {path}" in message


def test_unknown_top_level_key_and_nested_model_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("servers: {}\nrule_sets:\n  mine:\n    strip_emails: true\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    issues = _issues(info)
    assert "valid keys at the top level: server, data_dir, cache" in issues["servers"]
    assert "valid keys under rule_sets.mine: nfc," in issues["rule_sets.mine.strip_emails"]


def test_unknown_key_from_env_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"SKINFLINT__SERVER__HOTS": "x"})
    assert "unset the environment variable SKINFLINT__SERVER__HOTS" in str(info.value)


@pytest.mark.parametrize(
    ("yaml_text", "key", "phrase"),
    [
        ("logging:\n  format: xml\n", "logging.format", "must be one of 'json' or 'console'"),
        ("server:\n  port: abc\n", "server.port", "must be a whole number (got 'abc')"),
        ("server:\n  host: ''\n", "server.host", "must be a host name or IP address"),
        ("server:\n  max_request_bytes: 10\n", "server.max_request_bytes", "between 1024 and"),
        ("server:\n  grace_seconds: -1\n", "server.grace_seconds", "between 0 and 600"),
        ("server: 5\n", "server", "must be a mapping (got a number)"),
        ("cache:\n  durable: maybe\n", "cache.durable", "must be true or false"),
        ("cache:\n  max_bytes: 10\n", "cache.max_bytes", "between 1048576 and"),
        ("rule_sets:\n  mine:\n    strip_patterns: x\n", "rule_sets.mine.strip_patterns", "list"),
        ("features:\n  qa:\n    default_max_tokens: 0\n", "features.qa.default_max_tokens", "1"),
    ],
)
def test_invalid_values(tmp_path: Path, yaml_text: str, key: str, phrase: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    issues = _issues(info)
    assert key in issues, issues
    assert phrase in issues[key]
    assert str(path) in issues[key]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  port: 70000\n  grace_seconds: -1\nlogging:\n  level: loud\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert set(_issues(info)) == {"server.port", "server.grace_seconds", "logging.level"}
    assert str(info.value).startswith("3 configuration problems:")


def test_bad_regex_in_a_custom_rule_set_fails_at_boot(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("rule_sets:\n  mine:\n    strip_patterns: ['ok-[0-9]+', 'bad-(unclosed']\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    issues = _issues(info)
    assert list(issues) == ["rule_sets.mine.strip_patterns[1]"]
    assert (
        "invalid regular expression 'bad-(unclosed'" in issues["rule_sets.mine.strip_patterns[1]"]
    )


def test_unknown_rule_set_reference_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("features:\n  qa:\n    rule_set: strictest\ncache:\n  rule_set: nope\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    issues = _issues(info)
    assert "unknown rule set 'strictest'" in issues["features.qa.rule_set"]
    assert "conservative" in issues["features.qa.rule_set"]
    assert "define rule_sets.strictest" in issues["features.qa.rule_set"]
    assert "unknown rule set 'nope'" in issues["cache.rule_set"]


def test_custom_rule_set_may_not_shadow_a_builtin(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("rule_sets:\n  conservative:\n    case_fold: true\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert "is a built-in rule set name" in _issues(info)["rule_sets.conservative"]


def test_custom_rule_sets_compile_with_the_builtins(make_settings: SettingsFactory) -> None:
    settings = make_settings(YAML)
    compiled = compile_rule_sets(settings)
    assert {"exact", "conservative", "volatile", "aggressive", "tickets"} <= set(compiled)
    assert compiled["tickets"].name == "tickets"
    assert compiled["tickets"].canonicalize_text("see ticket-123") == compiled[
        "tickets"
    ].canonicalize_text("see ticket-456")


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("server: [1, 2\n", "is not valid YAML"),
        ("- a\n- b\n", "must hold a mapping of sections at the top level (got a list)"),
        ("server:\n  port: 1\nserver:\n  port: 2\n", "duplicate key 'server'"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, phrase: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert phrase in str(info.value)


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("# nothing yet\n")
    assert load_settings(path, env={}) == load_settings(env={})


def test_missing_file_names_where_it_came_from(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_settings(env={"SKINFLINT_CONFIG": str(missing)})
    assert f"file {missing} not found (named by SKINFLINT_CONFIG)" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_settings(missing, env={})
    assert "(named by --config)" in str(info.value)


def test_settings_are_immutable(make_settings: SettingsFactory) -> None:
    settings = make_settings(YAML)
    with pytest.raises(pydantic.ValidationError):
        settings.server.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.features["new"] = FeatureConfig()  # type: ignore[index]
    with pytest.raises(TypeError):
        settings.rule_sets["tickets"] = settings.rule_sets["tickets"]  # type: ignore[index]


def test_effective_config_round_trips_through_yaml(make_settings: SettingsFactory) -> None:
    settings = make_settings(YAML)
    again = Settings.model_validate(__import__("yaml").safe_load(settings.to_yaml()))
    assert again == settings


def test_data_dir_is_created_and_checked(make_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = make_settings(env={"SKINFLINT_DATA_DIR": str(tmp_path / "a" / "b")})
    assert data_dir_issue(settings) is None
    assert not settings.data_dir.exists()
    assert prepare_data_dir(settings) == tmp_path / "a" / "b"
    assert settings.data_dir.is_dir()


def test_unusable_data_dir_fails_at_boot_naming_the_key(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = make_settings(env={"SKINFLINT_DATA_DIR": str(blocker / "data")})
    issue = data_dir_issue(settings)
    assert issue is not None and issue.key == "data_dir"
    with pytest.raises(ConfigError) as info:
        App.open(settings)
    message = str(info.value)
    assert message.startswith(f"data_dir: cannot create {blocker / 'data'}")
    assert "SKINFLINT_DATA_DIR" in message


def test_app_opens_the_cache_under_the_data_dir(make_settings: SettingsFactory) -> None:
    settings = make_settings("cache:\n  max_bytes: 8388608\n")
    with App.open(settings) as app:
        assert app.cache.path.startswith(str(settings.data_dir / "cache"))
        app.cache.put(b"k" * 16, b"value", ttl_seconds=60)
        assert app.cache.get(b"k" * 16) == b"value"
        assert app.rule_set_for("anything").name == "conservative"
    app.close()  # closing twice is fine
