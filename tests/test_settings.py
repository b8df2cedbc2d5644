"""Settings: validated at start, secrets hidden, and the docs list every variable."""

from pathlib import Path

import pytest

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
