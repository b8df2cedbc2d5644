"""OpenTelemetry traces: one trace per turn across the gateway and the three workers,
exported over OTLP/HTTP to a local receiver that decodes the real protocol; and off (no
OpenTelemetry imported, jobs encoded as before) unless the endpoint is set."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import msgpack

from shared.messages import AsrJob, LlmJob, TtsJob, decode, encode
from shared.settings import load_settings
from tests.audio_checks import speech_16k
from tests.otlp_receiver import ReceivedSpan, otlp_receiver
from tests.support import running_system
from voice_agent.client import VoiceClient

ROOT = Path(__file__).resolve().parent.parent
STAGES = {"gateway", "asr", "llm", "tts"}


def _turn_trace(spans: list[ReceivedSpan], turn_id: str, names: set[str]) -> str | None:
    """The trace id of ``turn_id`` once it holds spans of all ``names`` and every span's
    parent has arrived (services export on their own schedules)."""
    roots = [s for s in spans if s.name == "turn" and s.attributes.get("turn.id") == turn_id]
    for root in roots:
        trace = [s for s in spans if s.trace_id == root.trace_id]
        ids = {s.span_id for s in trace}
        if names <= {s.name for s in trace} and all(
            s.parent_id in ids for s in trace if s is not root
        ):
            return root.trace_id
    return None


def _by_name(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    named: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


async def test_a_spoken_turn_is_one_trace_across_all_four_services(
    redis_url: str, fixture_http: str, tmp_path: Path
) -> None:
    with (
        otlp_receiver() as receiver,
        running_system(
            f"{redis_url}/9",
            fixture_http,
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
            OTEL_BSP_SCHEDULE_DELAY="20",  # ms: export at once, the test waits on spans
        ) as up,
    ):
        async with VoiceClient.connect(up.ws_url) as client:
            spoken = await client.say(speech_16k("read me the sports headlines"), realtime=True)
            command = await client.ask("technology news")
        assert spoken.complete and command.complete, (spoken.errors, command.errors)
        jobs = {f"{stage} job" for stage in ("asr", "llm", "tts")}
        trace_id = receiver.wait_for(
            lambda s: _turn_trace(s, spoken.turn_id, {"gateway relay", *jobs})
        )
        command_trace = receiver.wait_for(
            lambda s: _turn_trace(s, command.turn_id, {"gateway relay", "llm job", "tts job"})
        )
        spans = receiver.trace(trace_id)
    assert command_trace != trace_id  # one trace per turn
    named = _by_name(spans)
    for name in ("gateway receive", "end of speech", "gateway relay"):
        assert len(named.get(name, [])) == 1, (name, sorted(named))
    for stage in ("asr", "llm", "tts"):  # each job and its first output, below its parent
        assert named[f"{stage} job"] and named[f"{stage} first output"], sorted(named)
    (root,) = named["turn"]
    assert root.parent_id == "" and root.attributes["turn.outcome"] == "complete"
    assert {s.service for s in spans} == {f"voice-agent-{stage}" for stage in STAGES}
    assert {s.resource["voice_agent.service"] for s in spans} == STAGES
    ids = {s.span_id: s for s in spans}
    assert all(s.parent_id in ids for s in spans if s is not root)  # one tree, nothing lost
    (asr_job,) = named["asr job"]
    assert asr_job.parent_id == root.span_id and asr_job.attributes["turn.id"] == spoken.turn_id
    for llm_job in named["llm job"]:  # the early reply's (from the turn) or the final's
        assert llm_job.parent_id in (root.span_id, asr_job.span_id)
    assert {ids[s.parent_id].name for s in named["tts job"]} == {"llm job"}
    relay = named["gateway relay"][0]
    assert relay.attributes["reply.chunks_sent"] == len(spoken.chunks) > 0
    words = "read me the sports headlines".split()
    assert not any(  # no transcript or reply text in any attribute
        isinstance(v, str) and any(w in v.split() for w in words[1:])
        for s in spans
        for v in s.attributes.values()
    )


def test_tracing_is_off_by_default_and_imports_nothing() -> None:
    code = (
        "import sys\n"
        "from shared.settings import load_settings\n"
        "from shared.tracing import tracer_for\n"
        "import gateway.session, shared.worker, asr_worker.worker, llm_worker.worker\n"
        "assert tracer_for(load_settings(), 'gateway') is None\n"
        "ours = ('opentelemetry.sdk.trace', 'opentelemetry.exporter')\n"
        "print(sorted(m for m in sys.modules if m.startswith(ours)))\n"
    )  # (redis-py imports OpenTelemetry's metrics API by itself when it is installed)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    disabled = load_settings(otel_exporter_otlp_endpoint="http://x:4318", otel_sdk_disabled=True)
    assert not disabled.tracing


def test_an_endpoint_without_the_packages_is_one_line_naming_it() -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if the tracing extra were not installed\n"
        "from voice_agent.cli import main\n"
        "sys.exit(main(['up']))\n"
    )
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in line and "pip install" in line, line
    assert "[tracing]" in line


def test_a_jobs_trace_rides_in_its_options_where_older_workers_accept_it() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    for job in (
        AsrJob("s", "t1", options={"lang": "en"}, trace=traceparent),
        LlmJob("s", "t1", "news", options={"lang": "en"}, trace=traceparent),
        TtsJob("s", "t1", options={"lang": "en"}, trace=traceparent),
    ):
        assert decode(encode(job)) == job
        body = msgpack.unpackb(encode(job)[b"m"])
        assert "trace" not in body and body["options"]["traceparent"] == traceparent
        untraced = dataclasses.replace(job, trace="")
        assert b"traceparent" not in encode(untraced)[b"m"]  # off: encoded as before
        assert decode(encode(untraced)).trace == ""
        # what an older worker does with it: every wire key is a field it knows
        older = {k: v for k, v in body.items() if k not in ("type", "v")}
        assert type(job)(**older).options["traceparent"] == traceparent


def test_a_collector_that_does_not_answer_is_one_warning_not_one_per_try(caplog) -> None:
    from shared.tracing import _EXPORTER_LOGGER, tracer_for

    tracer_for(load_settings(otel_exporter_otlp_endpoint="http://127.0.0.1:9"), "probe")
    exporter_log = logging.getLogger(_EXPORTER_LOGGER)
    with caplog.at_level(logging.INFO, logger=_EXPORTER_LOGGER):
        for _ in range(3):  # what the exporter logs for one failed batch, and the next
            exporter_log.warning("Transient error %s encountered while exporting", "boom")
            exporter_log.error("Failed to export span batch", exc_info=ValueError("x"))
    (record,) = caplog.records
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in record.getMessage()
    assert "127.0.0.1:9" in record.getMessage() and record.exc_info is None


def test_turns_the_sampler_leaves_out_are_followed_without_a_span(monkeypatch) -> None:
    from shared.tracing import TurnSpans, tracer_for

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    settings = load_settings(otel_exporter_otlp_endpoint="http://127.0.0.1:9")
    tracer = tracer_for(settings, "sampled-out")
    assert tracer is not None
    spans = TurnSpans(tracer, "s1")
    traceparent = spans.begin("t1", "speech")
    assert not int(traceparent[-2:], 16) & 1  # not sampled: the workers record nothing either
    spans.received("t1")
    spans.end_of_speech("t1", {"end_of_speech_silence_ms": 150})
    job = tracer.job(LlmJob("s1", "t1", "news", trace=traceparent), 1)
    job.first_output("token")
    assert not int(job.traceparent[-2:], 16) & 1
    job.end("ok")
    spans.relaying("t1")
    spans.finish("t1", "complete", 3)
