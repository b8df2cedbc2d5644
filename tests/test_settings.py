"""Settings: validated at start, secrets hidden, and the docs list every variable."""

import logging
from pathlib import Path

import pytest

from shared.logs import JsonFormatter, RedactingFilter
from shared.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"port": 0}, "PORT"),
        ({"log_level": "LOUD"}, "LOG_LEVEL"),
        ({"asr_mode": "x"}, "ASR_MODE"),
        ({"redis_cluster": "maybe"}, "REDIS_CLUSTER"),
        ({"job_partitions": 0}, "JOB_PARTITIONS"),
        ({"redis_cluster": True, "redis_url": "unix:///tmp/r.sock"}, "REDIS_CLUSTER"),
    ],
)
def test_bad_values_fail_naming_the_variable(overrides: dict, variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(**overrides)


def test_secrets_never_show_in_repr_or_errors() -> None:
    settings = load_settings(openai_api_key="sk-very-secret", llm_api_key="sk-other-secret")
    assert "sk-very-secret" not in repr(settings) and "sk-other-secret" not in str(settings)
    with pytest.raises(SettingsError) as err:
        load_settings(openai_api_key="sk-very-secret", port=-1)
    assert "sk-very-secret" not in str(err.value)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("redis://:pw-Secret1@h:notaport/0", "port must be a number"),
        ("redis://:pw-Secret1@h:0/0", "port must be a number"),
        ("redis://:pw-Secret1@h:6379/zero", "database after the host must be a number"),
        ("redis://:pw-Secret1@h:6379/0?socket_timeout=soon", "'socket_timeout'"),
        ("redsi://:pw-Secret1@h:6379/0", "use redis://host:6379/0"),
    ],
)
def test_a_redis_url_the_clients_would_refuse_fails_without_its_password(
    url: str, words: str
) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(redis_url=url)
    assert "REDIS_URL='" in str(err.value) and words in str(err.value)
    assert "pw-Secret1" not in str(err.value) and "//***@h:" in str(err.value)


def test_good_redis_urls_pass() -> None:
    for url in ("redis://:pw@h:6379/0", "rediss://u:pw@h", "unix:///run/r.sock?db=1"):
        assert load_settings(redis_url=url).redis_url == url
    assert load_settings(redis_url="redis+cluster://h:7000").cluster


def test_log_lines_and_tracebacks_hide_secret_values() -> None:
    settings = load_settings(
        llm_api_key="sk-log-secret",
        api_keys="key-one-log,key-two-log",
        redis_url="redis://:pw-log@h:6379/0",
    )
    assert "pw-log" not in repr(settings)
    try:
        raise RuntimeError("upstream said: bad key sk-log-secret, user key-two-log")
    except RuntimeError as exc:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "cannot reach %s", (settings.redis_url,), None
        )
        record.exc_info = (type(exc), exc, exc.__traceback__)
    RedactingFilter().filter(record)
    line = JsonFormatter().format(record)
    assert "pw-log" not in line and "sk-log-secret" not in line and "key-two" not in line
    assert "redis://***@h:6379/0" in line and "bad key ***, user ***" in line


def test_configuration_page_and_env_example_list_every_setting() -> None:
    readme = (ROOT / "docs" / "configuration.md").read_text()
    example = (ROOT / ".env.example").read_text()
    for name in Settings.model_fields:
        assert f"`{name.upper()}`" in readme or f"`{name.upper()}` /" in readme, name
        assert f"{name.upper()}=" in example, name


def test_single_redis_keeps_its_key_names_and_a_cluster_gets_partitions() -> None:
    single = load_settings(redis_url="redis://r:6379/0").keys
    assert (single.reply("s1"), single.jobs_for("llm", "s1")) == ("vna:reply:s1", "vna:llm:jobs")
    cluster = load_settings(redis_url="redis+cluster://node:6379").keys
    assert cluster.partitions == 16 and cluster.reply("s1").startswith("vna:{")
    assert load_settings(redis_cluster=True, job_partitions=4).keys.partitions == 4
