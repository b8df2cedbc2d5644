"""The voice page at ``/`` in a real chromium against the running system.

The fake microphone plays speech synthesised by the offline TTS; the page captures it
with its AudioWorklet, streams 16 kHz PCM, shows the transcript and the agent's text and
schedules the reply audio. Set ``VNA_SCREENSHOT=docs/browser-page.png`` to refresh the
screenshot in the docs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.audio import pcm16_to_wav
from tests.audio_checks import speech_16k
from tests.browser_support import chromium_args, ensure_chromium, ensure_playwright
from tests.support import running_system

pytestmark = pytest.mark.timeout(600)  # the first test may install chromium with apt-get

SPOKEN = "read me the sports headlines"
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def fake_mic_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wav = tmp_path_factory.mktemp("mic") / "speech.wav"
    wav.write_bytes(pcm16_to_wav(speech_16k(SPOKEN, 1000, 1500), 16000))
    return wav


@pytest.fixture(scope="module")
async def browser(fake_mic_wav: Path) -> AsyncIterator[Any]:
    executable = ensure_chromium()
    ensure_playwright()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=chromium_args(fake_mic_wav)
        )
        yield launched
        await launched.close()


@contextlib.asynccontextmanager
async def _open(browser: Any, url: str) -> AsyncIterator[Any]:
    """The page at ``url`` in a fresh context, connected; no script error may happen."""
    context = await browser.new_context(viewport={"width": 960, "height": 800})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(url)
    await page.wait_for_function("window.voicePage?.stats.phase === 'connected'", timeout=WAIT_MS)
    yield page
    await context.close()
    assert not errors, errors


@pytest.fixture
async def page(browser: Any, system) -> AsyncIterator[Any]:
    async with _open(browser, f"{system.http_url}/") as page:
        yield page


async def _turn(page: Any, condition: str) -> dict[str, Any]:
    """The first turn the page shows for which the JS ``condition`` on ``t`` holds."""
    found = await page.wait_for_function(
        f"voicePage.turns().find(t => {condition}) || false", timeout=WAIT_MS
    )
    return await found.json_value()


async def _stats(page: Any) -> dict[str, Any]:
    return await page.evaluate("voicePage.stats")


def _assert_reply_scheduled(turn: dict[str, Any], seconds: float) -> None:
    """Every chunk of the reply became audio: as many as the server sent, as long."""
    assert turn["chunks"] == turn["complete"]["total_chunks_sent"] > 0
    assert abs(seconds - turn["complete"]["audio_ms"] / 1000) < 0.05


async def test_spoken_turn_then_typed_command(page: Any) -> None:
    await page.click("#mic")  # hands-free: the server's end-of-speech detection ends it
    spoken = await _turn(page, "t.done && !t.typed")
    assert "sports" in spoken["user"] and spoken["userFinal"]
    assert "striker" in spoken["agent"].lower() and spoken["agentFinal"]
    stats = await _stats(page)
    assert stats["piecesSent"] >= 20 and stats["bytesSent"] == 3200 * stats["piecesSent"]
    _assert_reply_scheduled(spoken, stats["scheduledSeconds"])
    assert stats["queueStarts"] == 1  # the chunks were queued back to back, no gap
    await page.wait_for_function("voicePage.playing() && voicePage.audioTime() > 0.3")

    await page.fill("#command", "technology news")
    await page.press("#command", "Enter")
    typed = await _turn(page, "t.typed && t.done")
    assert typed["user"] == "technology news" and "battery" in typed["agent"].lower()
    after = await _stats(page)
    _assert_reply_scheduled(typed, after["scheduledSeconds"] - stats["scheduledSeconds"])
    assert after["stops"] == 1  # the new request silenced the rest of the first reply
    rows = await page.locator("#timings-body tr").all_inner_texts()
    assert len(rows) == 2 and rows[0].startswith("t1") and rows[1].startswith("t2")

    png = await page.screenshot(path=os.environ.get("VNA_SCREENSHOT"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("audio_format", ["wav", "mp3"])
async def test_other_reply_formats_play_in_full(browser: Any, system, audio_format: str) -> None:
    """wav chunks carry their own header; mp3 (a server that ignores pcm16) plays at the end."""
    async with _open(browser, f"{system.http_url}/?format={audio_format}") as page:
        await page.fill("#command", "sports news")
        await page.press("#command", "Enter")
        turn = await _turn(page, "t.done")
        assert turn["complete"]["format"] == audio_format
        await page.wait_for_function("voicePage.stats.scheduledSeconds > 0", timeout=WAIT_MS)
        _assert_reply_scheduled(turn, (await _stats(page))["scheduledSeconds"])


async def test_push_to_talk_sends_audio_only_while_held(page: Any) -> None:
    await page.click("#mode-ptt")
    await page.wait_for_timeout(300)
    assert (await _stats(page))["piecesSent"] == 0
    box = await page.locator("#mic").bounding_box()
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.mouse.down()
    await page.wait_for_function("voicePage.stats.piecesSent >= 40", timeout=WAIT_MS)
    await page.mouse.up()
    await page.wait_for_function("voicePage.stats.finalsSent === 1", timeout=WAIT_MS)
    turn = await _turn(page, "t.done")
    assert "sports" in turn["user"] and "striker" in turn["agent"].lower()
    sent = (await _stats(page))["piecesSent"]
    await page.wait_for_timeout(500)
    assert (await _stats(page))["piecesSent"] == sent  # released: nothing more goes out


async def test_stop_silences_the_reply_at_once(page: Any) -> None:
    await page.fill("#command", "read me the sports headlines")
    await page.press("#command", "Enter")
    await page.wait_for_function("voicePage.playing()", timeout=WAIT_MS)
    before = await _stats(page)
    await page.click("#stop")
    assert not await page.evaluate("voicePage.playing()")
    stats = await _stats(page)
    assert stats["stops"] == before["stops"] + 1
    assert await page.evaluate("voicePage.connection.session.v2"), "cancel needs protocol v2+"
    assert stats["cancelsSent"] - before["cancelsSent"] == 1
    stopped = await _turn(page, "t.done")
    assert "stopped" in stopped["meta"]
    await _one_row_and_one_label_per_turn(page)


async def _notice(page: Any) -> dict[str, str]:
    return await page.evaluate(
        """(() => { const el = document.getElementById('notice');
        const details = el.querySelector('.details');
        return {kind: el.dataset.kind || '', details: details ? details.textContent : '',
                text: el.firstChild && el.firstChild.nodeType === 3 ? el.firstChild.textContent
                                                                     : ''}; })()"""
    )


async def test_errors_read_as_sentences_and_clear_on_the_next_good_turn(page: Any) -> None:
    session = await page.evaluate("voicePage.sessionId")
    bad = {"session_id": session, "audio_chunk": "***not base64***", "is_final": False}
    await page.evaluate("(d) => voicePage.connection.send('voice_data', d)", bad)
    await page.wait_for_function("document.getElementById('notice').dataset.kind === 'error'")
    shown = await _notice(page)
    assert shown["text"].startswith("A piece of microphone audio arrived damaged")
    assert "bad_audio" not in shown["text"] and shown["details"].startswith("bad_audio: ")
    await page.fill("#command", "technology news")
    await page.press("#command", "Enter")
    await _turn(page, "t.typed && t.done")
    assert await _notice(page) == {"kind": "", "details": "", "text": ""}


async def _one_row_and_one_label_per_turn(page: Any) -> None:
    rows = await page.eval_on_selector_all("#timings-body tr", "rs => rs.map(r => r.dataset.turn)")
    assert len(rows) == len(set(rows)), rows
    for turn in await page.evaluate("voicePage.turns()"):
        for label in ("interrupted", "stopped"):
            assert turn["meta"].count(label) <= 1, turn["meta"]
        assert not ("interrupted" in turn["meta"] and "stopped" in turn["meta"]), turn["meta"]


async def test_speaking_over_the_reply_interrupts_it(page: Any) -> None:
    # this server offers barge-in (connected.barge_in): losing it is a regression to report
    assert await page.evaluate("voicePage.connection.session.bargeIn"), "no barge-in offered"
    await page.fill("#command", "technology news")
    await page.press("#command", "Enter")
    await page.wait_for_function("voicePage.playing()", timeout=WAIT_MS)
    await page.click("#mic")  # the fake microphone speaks while the reply plays
    spoken = await _turn(page, "t.done && !t.typed")
    assert "sports" in spoken["user"] and "striker" in spoken["agent"].lower()
    typed = await _turn(page, "t.typed && t.done")
    stats = await _stats(page)
    assert typed["cancelled"] and stats["stops"] >= 1
    assert stats["replyPauses"] >= 1  # reply_paused came first: the player paused it
    assert "interrupted" in typed["meta"]
    await _one_row_and_one_label_per_turn(page)


async def test_server_without_speech_recognition(
    browser: Any, redis_url: str, fixture_http: str, tmp_path: Path
) -> None:
    """ASR_PROVIDER=none (Render's free tier): no audio is streamed, typing still works."""
    with running_system(f"{redis_url}/3", fixture_http, tmp_path, ASR_PROVIDER="none") as up:
        async with _open(browser, f"{up.http_url}/") as page:
            hint = "document.getElementById('mic-hint').textContent"
            await page.wait_for_function(f"{hint}.includes('does not recognise speech')")
            await page.fill("#command", "technology news")
            await page.press("#command", "Enter")
            turn = await _turn(page, "t.done")
            assert "battery" in turn["agent"].lower()
            assert (await _stats(page))["piecesSent"] == 0


async def test_reconnects_after_the_socket_drops(page: Any) -> None:
    first = await page.evaluate("voicePage.sessionId")
    await page.evaluate("voicePage.drop()")
    await page.wait_for_function(
        "voicePage.stats.connects >= 2 && voicePage.stats.phase === 'connected'", timeout=WAIT_MS
    )
    await page.fill("#command", "technology news")
    await page.press("#command", "Enter")
    turn = await _turn(page, "t.done")
    assert "battery" in turn["agent"].lower()
    assert first is not None and (await _stats(page))["connects"] == 2


async def test_waking_up_is_shown_while_the_server_starts(browser: Any, system) -> None:
    """A sleeping server answers /health only once it has started (Render's free tier)."""
    page = await browser.new_page()
    waking = asyncio.Event()

    async def slow_health(route: Any) -> None:
        await waking.wait()
        await route.continue_()

    await page.route("**/health", slow_health)
    await page.goto(f"{system.http_url}/")
    await page.wait_for_function("voicePage.stats.phase === 'waking'", timeout=WAIT_MS)
    assert await page.inner_text("#status-text") == "Waking up…"
    waking.set()
    await page.wait_for_function("voicePage.stats.phase === 'connected'", timeout=WAIT_MS)
    assert await page.inner_text("#status-text") == "Connected"
    await page.close()


async def test_resume_replays_the_reply_missed_while_offline(page: Any) -> None:
    # this server offers resume (protocol v2+: resume_token): losing it is a regression
    assert await page.evaluate("voicePage.connection.session.v2"), "no session resume offered"
    first = await page.evaluate("voicePage.sessionId")
    # the reply is produced while the page is offline; resuming must replay all of it
    send_then_drop = "voicePage.connection.send('voice_command', {command: 'technology news'})"
    await page.evaluate(f"{send_then_drop}; voicePage.drop()")
    turn = await _turn(page, "t.done")
    assert await page.evaluate("voicePage.sessionId") == first
    assert (await _stats(page))["resumes"] == 1
    assert "battery" in turn["agent"].lower()
    _assert_reply_scheduled(turn, (await _stats(page))["scheduledSeconds"])


async def test_resume_names_the_last_event_id_seen(page: Any) -> None:
    """Protocol 3: the page resumes after the last ``event_id`` it saw (the server then
    replays exactly what it missed; no protocol-2 position is sent) and goes on live."""
    urls: list[str] = []
    page.on("websocket", lambda ws: urls.append(ws.url))
    await page.fill("#command", "technology news")
    await page.press("#command", "Enter")
    first = await _turn(page, "t.done")
    seen = await page.evaluate("voicePage.connection.lastEventId")
    assert seen, "the page keeps the event_id of the last event"
    await page.evaluate("voicePage.drop()")
    await page.wait_for_function(
        "voicePage.stats.resumes >= 1 && voicePage.stats.phase === 'connected'", timeout=WAIT_MS
    )
    query = parse_qs(urlsplit(urls[-1]).query)
    assert query["last_event_id"] == [seen] and "last_turn_id" not in query, urls[-1]
    await page.fill("#command", "science news")
    await page.press("#command", "Enter")
    await _turn(page, "t.done && t.id === 't2'")
    again = (await page.evaluate("voicePage.turns()"))[0]
    assert (again["agent"], again["chunks"]) == (first["agent"], first["chunks"])
