"""Any OpenAI-compatible chat model as the news agent (``LLM_PROVIDER=openai``).

Works with OpenAI, ZhipuAI, Ollama, vLLM or a llama.cpp server: one streamed
Chat Completions call per round. Text deltas go to the caller as they arrive, so speech
starts before the reply is finished; tool calls (streamed in pieces) run the news tools
and their results go back to the model, for a bounded number of rounds. With no tool
rounds (``LLM_MAX_TOOL_ROUNDS=0``, for models without tool calling) the model is told the
current headlines in its system prompt instead of being told to call tools.

Every wait is bounded by ``timeout`` (opening the stream, retries included, and each
chunk), and every failure leaves as one ``LlmError`` whose message names the kind of
failure and never the key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import openai
import pydantic

from llm_worker import errors
from llm_worker.errors import LlmError
from llm_worker.news_tools import NewsTools
from llm_worker.prompt import build_messages, headlines_prompt, system_prompt
from llm_worker.tool_calls import ToolCalls, assistant_message
from shared.engines import AgentRequest

log = logging.getLogger(__name__)

KEYLESS_PLACEHOLDER = "no-key"  # local servers ignore the key, but the SDK needs one
_HOSTS_NEEDING_KEYS = ("api.openai.com",)


def key_required(base_url: str) -> bool:
    """True for hosted services that never answer without a key (local servers may)."""
    host = urlsplit(base_url).hostname or ""
    return any(host == h or host.endswith(f".{h}") for h in _HOSTS_NEEDING_KEYS)


def server_name(base_url: str) -> str:
    """Host and port of ``base_url`` only: a URL may carry credentials, never show those."""
    parts = urlsplit(base_url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


class OpenAIAgent:
    """ReplyAgent over a streamed Chat Completions endpoint with the news tools."""

    name = "openai"

    def __init__(
        self,
        tools: NewsTools,
        *,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        timeout: float = 15.0,
        max_tool_rounds: int = 3,
        history_tokens: int = 1500,
        max_retries: int = 1,
    ) -> None:
        self._tools = tools
        self._model = model
        self._server = server_name(base_url)
        self._has_key = bool(api_key)
        self._missing_key = not api_key and key_required(base_url)
        self._timeout = timeout
        self._max_tool_rounds = max_tool_rounds
        self._history_tokens = history_tokens
        self._client = openai.AsyncOpenAI(
            api_key=api_key or KEYLESS_PLACEHOLDER,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def reply(self, request: AgentRequest) -> AsyncIterator[str]:
        """Stream the model's text; between rounds, run the tools it asked for."""
        if self._missing_key:
            raise LlmError(errors.NO_API_KEY, "the language model needs an API key (LLM_API_KEY)")
        lang = request.language
        if self._max_tool_rounds:
            system = system_prompt(self._tools.topics(lang), language=lang)
        else:  # no tools to call: the current headlines go into the prompt instead
            headlines, notice = await self._tools.current_headlines(lang)
            system = headlines_prompt(headlines, notice, language=lang)
        messages = build_messages(system, request.history, request.text, self._history_tokens)
        spoke = False
        for round_number in range(self._max_tool_rounds + 1):
            offer_tools = round_number < self._max_tool_rounds
            stream = await self._open(messages, offer_tools, lang)
            calls = ToolCalls()
            text: list[str] = []
            try:
                while (chunk := await self._next_chunk(stream)) is not None:
                    delta, pieces = _read_chunk(chunk)
                    if delta:
                        text.append(delta)
                        spoke = True
                        yield delta
                    if pieces:
                        calls.add(pieces)
            finally:
                await stream.close()
            wanted = calls.finished()
            if not wanted or not offer_tools:
                break
            log.info("turn %s round %s: %s tool calls", request.turn_id, round_number, len(wanted))
            messages.append(assistant_message("".join(text), wanted))
            for call in wanted:
                arguments = "".join(call.arguments)
                result = await self._tools.run(request.session_id, call.name, arguments, lang)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        if not spoke:
            raise LlmError(errors.BAD_RESPONSE, "the language model sent an empty reply")

    async def _open(self, messages: list[dict[str, Any]], offer_tools: bool, lang: str) -> Any:
        """Start one streamed round; after the last tool round the model must answer in text."""
        extra: dict[str, Any] = {}
        if self._max_tool_rounds:
            extra["tools"] = self._tools.specs(lang)
            if not offer_tools:
                extra["tool_choice"] = "none"
        try:
            async with asyncio.timeout(self._timeout):
                return await self._client.chat.completions.create(
                    model=self._model, messages=messages, stream=True, **extra
                )
        except TimeoutError:
            raise self._timed_out() from None
        except openai.OpenAIError as exc:
            raise self._classify(exc) from None

    async def _next_chunk(self, stream: Any) -> Any | None:
        """The next chunk, or None at the end of the stream; bounded by the timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                return await anext(stream)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise self._timed_out() from None
        except openai.OpenAIError as exc:
            raise self._classify(exc) from None
        except (ValueError, pydantic.ValidationError):  # JSONDecodeError is a ValueError
            raise _malformed() from None

    def _timed_out(self) -> LlmError:
        return LlmError(
            errors.TIMEOUT, f"the language model did not answer within {self._timeout:g} seconds"
        )

    def _classify(self, exc: openai.OpenAIError) -> LlmError:
        """One readable LlmError per SDK failure; messages are ours, never the server's."""
        if isinstance(exc, openai.APITimeoutError):
            return self._timed_out()
        if isinstance(exc, openai.APIConnectionError):
            return LlmError(
                errors.UNREACHABLE, f"could not reach the language model at {self._server}"
            )
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            if not self._has_key:
                return LlmError(
                    errors.NO_API_KEY,
                    f"the language model asked for an API key (HTTP {exc.status_code}); "
                    "set LLM_API_KEY",
                )
            return LlmError(
                errors.AUTH_FAILED,
                f"the language model refused the API key (HTTP {exc.status_code})",
            )
        if isinstance(exc, openai.RateLimitError):
            return LlmError(
                errors.RATE_LIMITED, "the language model is rate limiting requests (HTTP 429)"
            )
        if not isinstance(exc, openai.APIStatusError):  # an error event inside the stream
            if isinstance(exc, openai.APIError):
                return LlmError(errors.SERVER_ERROR, "the language model failed while answering")
            return _malformed()
        if exc.status_code >= 500:
            return LlmError(
                errors.SERVER_ERROR, f"the language model server failed (HTTP {exc.status_code})"
            )
        return LlmError(
            errors.REJECTED,
            f"the language model rejected the request for model {self._model!r} "
            f"(HTTP {exc.status_code})",
        )


def _malformed() -> LlmError:
    return LlmError(errors.BAD_RESPONSE, "the language model sent a malformed stream")


def _read_chunk(chunk: Any) -> tuple[str, list[Any]]:
    """The text and tool-call pieces of one chunk (servers may send chunks without choices)."""
    try:
        choices = chunk.choices or []
        if not choices:
            return "", []
        delta = choices[0].delta
        text = delta.content or getattr(delta, "refusal", None) or ""
        return text, list(delta.tool_calls or [])
    except (AttributeError, TypeError):
        raise _malformed() from None
