"""One frozen settings object per process, read from the environment once at start.

A bad value fails at start with a message naming the variable, never mid-call.
Every variable is listed in README.md and .env.example.
"""

from __future__ import annotations

from functools import cached_property

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.keys import Keys
from shared.languages import SUPPORTED, canonical_language


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, env_file=".env", extra="ignore")

    # --- infrastructure ---
    redis_url: str | None = Field(
        default=None, description="Redis/Valkey URL; unset = embedded server (voice-agent up)"
    )
    redis_max_connections: int = Field(
        default=64, ge=4, description="connections per process; commands wait for a free one"
    )
    stream_prefix: str = Field(default="vna", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern=r"^(json|text)$")
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="workers run alone: serve /metrics here"
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
    barge_in: bool = Field(default=True, description="speech over a reply interrupts it")
    barge_in_min_speech_ms: int = Field(
        default=240, ge=30, description="continuous speech that counts as barging in"
    )
    resume_window_seconds: int = Field(
        default=120, ge=5, description="how long a dropped session can be resumed"
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
    commands_per_minute: int = Field(default=60, ge=0, description="0 = unlimited")

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
    tts_provider: str = "espeak"
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
    asr_provider: str = Field(
        default="pocketsphinx", description="none: no server-side recognition (voice_command only)"
    )
    asr_mode: str = Field(default="grammar", pattern=r"^(grammar|open)$")
    asr_fallback: bool = Field(
        default=True, description="grammar mode: decode rejected speech with the open model"
    )
    use_external_asr: bool = False
    external_asr_model: str = "whisper-1"
    external_asr_timeout: float = Field(default=10.0, gt=0)

    # --- agent ---
    llm_provider: str = "news"
    news_feeds: str = ""  # empty = built-in defaults (see llm_worker.news.feeds)
    news_feeds_zh: str = ""  # per language: a Chinese session's feeds (empty = NEWS_FEEDS)
    news_feeds_es: str = ""
    news_feeds_fr: str = ""
    news_feeds_de: str = ""
    news_cache_ttl: int = Field(default=600, ge=1)
    news_fetch_timeout: float = Field(default=3.0, gt=0)
    history_turns: int = Field(default=8, ge=0)
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None

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

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value

    @field_validator("default_language")
    @classmethod
    def _supported_language(cls, value: str) -> str:
        code = canonical_language(value)
        if code is None:
            raise ValueError(f"DEFAULT_LANGUAGE must be one of {', '.join(SUPPORTED)}")
        return code

    @model_validator(mode="after")
    def _external_asr_needs_a_key(self) -> Settings:
        if self.use_external_asr and not self.openai_api_key:
            raise ValueError("USE_EXTERNAL_ASR=true needs OPENAI_API_KEY to be set")
        return self

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
        return Keys(self.stream_prefix)


class SettingsError(ValueError):
    """Invalid configuration; the message names each bad variable (never its value)."""


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment (and explicit overrides, for tests)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
