"""One frozen settings object per process, read from the environment once at start.

A bad value fails at start with a message naming the variable, never mid-call.
Every variable is listed in README.md and .env.example.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from functools import cached_property
from typing import Literal, NoReturn
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.keys import Keys
from shared.languages import SUPPORTED, canonical_language
from shared.logs import hide_values, redact, redact_url

# The engines each stage can run, by setting value. The provider registries
# (asr_worker/llm_worker/tts_worker ``providers.PROVIDERS``) implement exactly these; a
# test keeps the two in step. Checked here so a typo fails before anything starts.
ASR_PROVIDERS = ("pocketsphinx", "none", "echo")
LLM_PROVIDERS = ("news", "openai", "echo")
TTS_PROVIDERS = ("espeak", "edge", "openai")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
CLUSTER_PARTITIONS = 16  # JOB_PARTITIONS on a Redis Cluster unless set
# hosted chat services that never answer without a key (local servers may)
HOSTS_NEEDING_KEYS = ("api.openai.com",)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, env_file=".env", extra="ignore")

    # --- infrastructure ---
    redis_url: str | None = Field(
        default=None,
        pattern=r"^(redis|rediss|unix|redis\+cluster|rediss\+cluster)://\S*$",
        description="Redis/Valkey URL; unset = embedded server (voice-agent up)",
    )
    redis_cluster: bool = Field(
        default=False, description="a Redis Cluster (also implied by a redis+cluster:// URL)"
    )
    job_partitions: int | None = Field(
        default=None, ge=1, le=1024, description="work streams per stage; default 1, cluster 16"
    )
    redis_max_connections: int = Field(
        default=64, ge=4, description="connections per process; commands wait for a free one"
    )
    stream_prefix: str = Field(default="vna", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="auto: text on a terminal, JSON otherwise"
    )
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="workers run alone: serve /metrics here"
    )
    otel_exporter_otlp_endpoint: str = Field(
        default="",
        pattern=r"^(https?://\S+)?$",
        description="OTLP/HTTP collector base URL; set = one trace per turn (docs/tracing.md)",
    )
    otel_service_name: str = Field(
        default="", description="service.name of the traces; empty = voice-agent-<service>"
    )
    otel_sdk_disabled: bool = Field(
        default=False, description="true: no traces even with an endpoint set"
    )

    # --- gateway / protocol ---
    max_websocket_connections: int = Field(default=200, ge=1)
    websocket_timeout: float = Field(default=300.0, gt=0, description="idle seconds")
    max_frame_bytes: int = Field(default=256 * 1024, ge=1024)
    max_utterance_seconds: float = Field(default=30.0, gt=0)
    max_command_chars: int = Field(default=1000, ge=1)
    end_of_speech_ms: int = Field(
        default=600, ge=0, description="pause that ends an utterance without is_final; 0 = off"
    )
    end_of_speech_complete_ms: int = Field(
        default=150, ge=30, description="the pause that ends a request heard as complete"
    )
    end_of_speech_unfinished_ms: int = Field(
        default=900, ge=30, description="the pause that ends a request heard as unfinished"
    )
    preemptive_reply: bool = Field(
        default=True, description="start the reply during a pause after a complete request"
    )
    command_revision_ms: int = Field(
        default=1500,
        ge=0,
        le=10000,
        description="a voice_command revising the previous one this soon is the same "
        "utterance; 0 = off",
    )
    barge_in: bool = Field(default=True, description="speech over a reply interrupts it")
    barge_in_min_speech_ms: int = Field(
        default=240, ge=30, description="continuous speech that counts as barging in"
    )
    barge_in_mode: Literal["confirm", "immediate"] = Field(
        default="confirm",
        description="confirm: pause the reply, cut it only when words confirm a person",
    )
    barge_in_pause_ms: int = Field(
        default=120, ge=30, description="confirm mode: continuous speech that pauses a reply"
    )
    barge_in_min_words: int = Field(
        default=2, ge=1, le=10, description="words (not the reply's, not 'uh-huh') that cut"
    )
    false_interruption_ms: int = Field(
        default=1500, ge=100, le=30000, description="a pause with no such words then resumes"
    )
    resume_window_seconds: int = Field(
        default=120, ge=5, description="how long a dropped session can be resumed"
    )
    gateway_processes: int = Field(
        default=1, ge=1, le=256, description="gateway processes sharing PORT (SO_REUSEPORT)"
    )
    gateway_drain_seconds: float = Field(
        default=10.0, ge=0, description="SIGTERM: time for replies in progress to finish"
    )
    audio_rate_limit: float = Field(
        default=4.0, ge=0, description="audio faster than this x real time is refused; 0 = off"
    )
    audio_burst_seconds: float = Field(
        default=40.0, gt=0, description="audio a client may send at once (a whole recording)"
    )
    commands_per_minute: int = Field(
        default=60,
        ge=0,
        description="typed and spoken requests, discarded early replies, cancels; 0 = unlimited",
    )
    resumes_per_minute: int = Field(
        default=10, ge=0, description="resumes of one session a minute; 0 = unlimited"
    )
    outbox_max_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=64 * 1024,
        description="reply events queued for one socket; a resume replays at most half",
    )

    # --- access ---
    api_keys: SecretStr | None = Field(
        default=None, description="comma-separated keys accepted as ?token= / Bearer"
    )
    auth_secret: SecretStr | None = Field(
        default=None, description="HMAC key for signed, expiring user tokens"
    )
    allowed_origins: str = Field(
        default="", description="comma-separated browser origins; empty = any"
    )

    # --- language ---
    default_language: str = Field(
        default="en", description="sessions that do not say ?lang= and whose request does not tell"
    )

    # --- audio out ---
    audio_chunk_size: int = Field(default=4096, ge=256, description="max MP3 bytes per tts_chunk")
    stream_tts_chunks: bool = Field(
        default=True, description="true: send audio as produced; false: one chunk per reply"
    )
    tts_provider: Literal["espeak", "edge", "openai"] = "espeak"
    tts_voice: str = "en-us"
    mp3_bitrate_kbps: int = Field(default=48, ge=8, le=320)
    tts_fallback: str = Field(
        default="",
        pattern=r"^\s*([a-z0-9_]+\s*(,\s*[a-z0-9_]+\s*)*)?$",
        description="comma-separated TTS engine chain, e.g. edge,espeak; empty = TTS_PROVIDER",
    )
    tts_timeout: float = Field(
        default=5.0, gt=0, description="seconds an engine may stay silent before the fallback"
    )
    tts_rate: int = Field(default=0, ge=-50, le=100, description="speaking-rate change, percent")
    tts_pitch: int = Field(default=0, ge=-50, le=50, description="pitch change (Hz for edge)")
    edge_tts_voice: str = Field(default="en-US-AriaNeural", min_length=1)
    openai_tts_model: str = Field(default="gpt-4o-mini-tts", min_length=1)
    openai_tts_voice: str = Field(default="alloy", min_length=1)

    # --- recognition ---
    asr_provider: Literal["pocketsphinx", "none", "echo"] = Field(
        default="pocketsphinx", description="none: no server-side recognition (voice_command only)"
    )
    asr_mode: Literal["grammar", "open"] = "grammar"
    asr_fallback: bool = Field(
        default=True, description="grammar mode: decode rejected speech with the open model"
    )
    use_external_asr: bool = False
    external_asr_model: str = "whisper-1"
    external_asr_timeout: float = Field(default=10.0, gt=0)

    # --- agent ---
    llm_provider: Literal["news", "openai", "echo"] = "news"
    news_feeds: str = ""  # empty = built-in defaults (see llm_worker.news.feeds)
    news_feeds_zh: str = ""  # per language: a Chinese session's feeds (empty = NEWS_FEEDS)
    news_feeds_es: str = ""
    news_feeds_fr: str = ""
    news_feeds_de: str = ""
    news_cache_ttl: int = Field(default=600, ge=1)
    news_fetch_timeout: float = Field(default=3.0, gt=0)
    history_turns: int = Field(default=8, ge=0)
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = Field(default=None, pattern=r"^https?://\S+$")

    # --- OpenAI-compatible LLM as the news agent (LLM_PROVIDER=openai) ---
    llm_base_url: str = Field(default="https://api.openai.com/v1", pattern=r"^https?://\S+$")
    llm_model: str = Field(default="gpt-4o-mini", min_length=1)
    llm_api_key: SecretStr | None = None  # empty is fine for local servers (Ollama, vLLM)
    llm_timeout: float = Field(
        default=15.0, gt=0, description="seconds the model may take to start or between chunks"
    )
    llm_max_tool_rounds: int = Field(default=3, ge=0, le=10)
    llm_max_retries: int = Field(default=1, ge=0, le=5)
    llm_history_tokens: int = Field(
        default=1500, ge=0, description="approximate token budget of the history sent"
    )

    # --- workers ---
    worker_concurrency: int = Field(default=8, ge=1)
    worker_name: str | None = None
    input_idle_timeout: float = Field(
        default=15.0, gt=0, description="seconds a turn waits for more input"
    )
    reclaim_idle_ms: int = Field(
        default=5000, ge=500, description="a job idle this long belongs to a dead worker"
    )
    max_deliveries: int = Field(default=3, ge=1, description="attempts before dead-lettering")
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    turn_ttl_seconds: int = Field(default=600, ge=10)
    session_ttl_seconds: int = Field(default=900, ge=10)
    jobs_maxlen: int = Field(default=10_000, ge=100)
    reply_maxlen: int = Field(default=2_000, ge=100)
    stream_push: bool = Field(
        default=True,
        description="readers of reply and input streams wake on their writers' pub/sub "
        "bells (false: they poll with a paced XREAD BLOCK)",
    )
    redis_plain_calls: str = Field(
        default="",
        description="uses of the lean Redis path sent through redis-py's public API instead, "
        "for measuring it: any of writes, stream_reads, job_reads, bells, or all",
    )

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        value = value.upper()
        if value not in LOG_LEVELS:
            raise ValueError(f"choose one of {', '.join(LOG_LEVELS)}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_parses(cls, value: str | None) -> str | None:
        return None if value is None else _check_redis_url(value)

    @field_validator("redis_plain_calls")
    @classmethod
    def _known_redis_uses(cls, value: str) -> str:
        from shared.resp import USES

        for name in (part.strip() for part in value.split(",")):
            if name and name != "all" and name not in USES:
                raise ValueError(f"{name!r} is no use; choose from {', '.join(USES)} or all")
        return value

    @field_validator("tts_fallback")
    @classmethod
    def _known_tts_engines(cls, value: str) -> str:
        for name in (part.strip() for part in value.split(",")):
            if name and name not in TTS_PROVIDERS:
                raise ValueError(
                    f"{name!r} is no TTS engine; choose from {', '.join(TTS_PROVIDERS)}"
                )
        return value

    @field_validator("news_feeds")
    @classmethod
    def _feed_urls(cls, value: str) -> str:
        if value.strip().lower() == "demo":
            return value  # the bundled demo headlines
        for item in (part.strip() for part in value.split(",")):
            url = (
                item.partition("=")[2] if "=" in item and "://" not in item.split("=")[0] else item
            )
            if item and not url.strip().startswith(("http://", "https://")):
                raise ValueError(
                    f"item {item!r} is not topic=http(s)://url (or a bare URL, or demo alone)"
                )
        return value

    @field_validator("default_language")
    @classmethod
    def _supported_language(cls, value: str) -> str:
        code = canonical_language(value)
        if code is None:
            raise ValueError(f"DEFAULT_LANGUAGE must be one of {', '.join(SUPPORTED)}")
        return code

    @model_validator(mode="after")
    def _keys_for_hosted_services(self) -> Settings:
        """Hosted engines without their key would fail on the first turn: fail now."""
        if self.use_external_asr and not _has(self.openai_api_key):
            raise ValueError("USE_EXTERNAL_ASR=true needs OPENAI_API_KEY to be set")
        if "openai" in self.tts_engines and not _has(self.openai_api_key):
            raise ValueError("the openai TTS engine needs OPENAI_API_KEY to be set")
        host = urlsplit(self.llm_base_url).hostname or ""
        hosted = any(host == h or host.endswith(f".{h}") for h in HOSTS_NEEDING_KEYS)
        keyless = not _has(self.llm_api_key) and not _has(self.openai_api_key)
        if self.llm_provider == "openai" and hosted and keyless:
            raise ValueError(
                f"LLM_PROVIDER=openai with {host} needs LLM_API_KEY (or OPENAI_API_KEY); "
                "for a local server set LLM_BASE_URL"
            )
        if self.tracing and not _tracing_installed():
            raise ValueError(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry packages are "
                "missing: pip install 'voice-news-agent[tracing]', or unset "
                "OTEL_EXPORTER_OTLP_ENDPOINT"
            )
        if self.cluster and self.redis_url and self.redis_url.startswith("unix:"):
            raise ValueError("REDIS_CLUSTER=true needs a redis:// URL of a cluster node")
        if self.cluster and self.redis_plain_uses:
            raise ValueError("REDIS_PLAIN_CALLS is for a single Redis server, not a cluster")
        if self.cluster and not _cluster_transactions():
            raise ValueError(
                "REDIS_CLUSTER=true needs a redis-py whose asyncio cluster pipelines run "
                "transactions (the installed one refuses MULTI): pip install -U redis"
            )
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, object]]:
        """``repr(settings)`` shows no URL credentials (secrets are ``SecretStr`` already)."""
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if isinstance(value, str) else value

    @property
    def redis_plain_uses(self) -> tuple[str, ...]:
        """The uses ``REDIS_PLAIN_CALLS`` names (``all``: every one)."""
        from shared.resp import USES

        names = {part.strip() for part in self.redis_plain_calls.split(",")} - {""}
        return USES if "all" in names else tuple(use for use in USES if use in names)

    @property
    def cluster(self) -> bool:
        """Talking to a Redis Cluster: hash-tagged keys, partitioned work streams."""
        url = self.redis_url or ""
        return self.redis_cluster or url.startswith(("redis+cluster:", "rediss+cluster:"))

    @property
    def tracing(self) -> bool:
        """OpenTelemetry traces are exported (``shared/tracing.py``)."""
        return bool(self.otel_exporter_otlp_endpoint) and not self.otel_sdk_disabled

    @property
    def partitions(self) -> int:
        """Work streams per stage kind (``JOB_PARTITIONS``)."""
        if self.job_partitions is not None:
            return self.job_partitions
        return CLUSTER_PARTITIONS if self.cluster else 1

    @property
    def tts_engines(self) -> list[str]:
        """TTS engine names in fallback order: ``TTS_FALLBACK`` if set, else ``TTS_PROVIDER``."""
        names = [name.strip() for name in self.tts_fallback.split(",") if name.strip()]
        return list(dict.fromkeys(names)) or [self.tts_provider]

    @property
    def speech_input_enabled(self) -> bool:
        """False when recognition happens only on the device (``ASR_PROVIDER=none``)."""
        return self.asr_provider != "none"

    @property
    def auth_required(self) -> bool:
        return bool(self.api_keys or self.auth_secret)

    @property
    def worker_kinds(self) -> tuple[str, ...]:
        return ("asr", "llm", "tts") if self.speech_input_enabled else ("llm", "tts")

    @cached_property
    def keys(self) -> Keys:
        return Keys(self.stream_prefix, self.partitions, self.cluster)


def _cluster_transactions() -> bool:
    """Single-slot MULTI on a cluster: newer redis-py releases only."""
    from redis.asyncio import cluster

    return hasattr(cluster, "TransactionStrategy")


def _tracing_installed() -> bool:
    """The ``tracing`` extra is installed (looked up, not imported: that happens later)."""
    from importlib.util import find_spec

    try:
        return all(
            find_spec(name) is not None
            for name in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")
        )
    except (ImportError, ValueError):  # a parent package missing or stubbed out
        return False


def _check_redis_url(url: str) -> str:
    """What the Redis clients would refuse later, each service on its own, refused now."""
    from redis.connection import parse_url

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("the port must be a number from 1 to 65535, as in redis://host:6379/0")
    database = parts.path.strip("/")
    if parts.scheme == "unix" and not parts.path:
        raise ValueError("a unix:// URL needs the socket's path, as in unix:///run/redis.sock")
    if parts.scheme != "unix" and database and not database.isdigit():
        raise ValueError("the database after the host must be a number, as in redis://host:6379/0")
    try:
        parse_url(url.replace("+cluster://", "://", 1))
    except ValueError as exc:  # a bad query argument (?socket_timeout=...)
        raise ValueError(
            f"{redact(str(exc)).rstrip('.')}; use redis://host:6379/0?name=value"
        ) from None
    return url


def _has(secret: SecretStr | None) -> bool:
    return secret is not None and bool(secret.get_secret_value().strip())


class SettingsError(ValueError):
    """Invalid configuration; the message names each bad variable (never a secret's value)."""


# settings whose values are never shown, whatever their type (SecretStr ones are already)
_SECRET_NAME = ("_KEY", "_KEYS", "SECRET", "TOKEN", "PASSWORD")


def _is_secret(name: str) -> bool:
    field = Settings.model_fields.get(name)
    typed = field is not None and "SecretStr" in str(field.annotation)
    return typed or name.upper().endswith(_SECRET_NAME)


def _hide_secrets(found: Settings | dict[str, object], errors: list | None = None) -> None:
    """Mask the values of secret settings (and a Redis password) in whatever this process
    reports from now on: log lines, errors, a debug traceback. ``found``: the settings, or
    (when they failed) the overrides, read along with the environment."""
    values: list[object] = [e.get("input") for e in errors or () if _error_is_secret(e)]
    urls: list[object] = []
    if isinstance(found, Settings):
        values += [getattr(found, name) for name in Settings.model_fields if _is_secret(name)]
        urls.append(found.redis_url)
    else:
        for name in Settings.model_fields:
            if _is_secret(name):
                values += [os.environ.get(name.upper()), found.get(name)]
        urls += [os.environ.get("REDIS_URL"), found.get("redis_url")]
    values += [p for url in urls if isinstance(url, str) for p in _url_passwords(url)]
    texts = [v.get_secret_value() if isinstance(v, SecretStr) else v for v in values]
    secrets = [t for t in texts if isinstance(t, str)]
    # a list of keys (API_KEYS) shows one at a time; a password may be %-encoded in a URL
    hide_values(*secrets, *(p.strip() for t in secrets for p in t.split(",")))


def _error_is_secret(error: dict) -> bool:
    return bool(error["loc"]) and _is_secret(str(error["loc"][0]))


def _url_passwords(url: str) -> list[str]:
    """A URL's password as written and as the client decodes it (``%40`` -> ``@``)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


# what a value that failed its pattern should look like, in words
_PATTERN_HINTS = {
    "redis_url": "use redis://host:6379/0, rediss://... (TLS), unix:///path "
    "or redis+cluster://node:6379 (a Redis Cluster)",
    "stream_prefix": "use 1-32 letters, digits, '_', '.' or '-'",
    "openai_base_url": "use an http(s):// URL",
    "llm_base_url": "use an http(s):// URL, e.g. http://localhost:11434/v1 for Ollama",
    "tts_fallback": "use engine names separated by commas, e.g. edge,espeak",
    "otel_exporter_otlp_endpoint": "use the collector's http(s):// base URL, "
    "e.g. http://localhost:4318",
}


def _describe(error: dict) -> str:
    """One problem as ``NAME='value': what would be right`` (secrets never shown)."""
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "string_pattern_mismatch" and error["loc"]:
        message = _PATTERN_HINTS.get(str(error["loc"][0]), message)
    if not error["loc"]:  # a check across settings: its message names them
        return message
    name = "_".join(str(part) for part in error["loc"][:1]).upper()
    value = error.get("input")
    if _error_is_secret(error) or not isinstance(value, str | int | float):
        return f"{name}: {message}"
    shown = redact_url(value) if isinstance(value, str) else value
    return f"{name}={shown!r}: {message[:1].lower()}{message[1:]}"


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment (and explicit overrides, for tests)."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        errors = exc.errors()
        _hide_secrets(overrides, errors)  # type: ignore[arg-type]
        problems = "; ".join(_describe(error) for error in errors)  # type: ignore[arg-type]
        raise SettingsError(redact(f"invalid configuration: {problems}")) from exc
    _hide_secrets(settings)
    return settings


def settings_or_exit(program: str, **overrides: object) -> Settings:
    """``load_settings`` for an entry point: a bad value ends the process before anything
    starts, with one line on stderr and exit code 2 (the traceback only with
    ``LOG_LEVEL=DEBUG``)."""
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        exit_with(program, str(exc), debug_exc=exc)


def port_free_or_exit(program: str, host: str, port: int) -> None:
    """A port another server holds ends the start with one line, before anything starts."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            exit_with(
                program,
                f"PORT={port} on {host or 'all interfaces'}: {exc.strerror or exc}; "
                "stop the other server or choose another PORT",
            )


def exit_with(
    program: str, message: str, code: int = 2, debug_exc: BaseException | None = None
) -> NoReturn:
    """Print ``program: message`` as one line on stderr and exit with ``code``."""
    if debug_exc is not None and os.environ.get("LOG_LEVEL", "").strip().upper() == "DEBUG":
        print(redact("".join(traceback.format_exception(debug_exc))), end="", file=sys.stderr)
    print(f"{program}: {redact(message)}", file=sys.stderr)
    raise SystemExit(code)
