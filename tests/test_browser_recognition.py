"""The voice page with the browser's own speech recognition (a server without ASR): interim
results go out as ``voice_command`` ``is_final: false``, the final one as ``true``, and the
user gets one reply.

Real chromium against the running system; the browser's speech recognition is replaced by
a scripted one (chromium has none headless) that reports a growing text, as Chrome does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import System, running_system
from tests.test_browser_page import WAIT_MS, _open, _turn, browser, fake_mic_wav  # noqa: F401

pytestmark = pytest.mark.timeout(600)

SCRIPTED_RECOGNISER = """
window.sentCommands = [];
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  if (typeof data === "string" && data.includes('"voice_command"')) {
    window.sentCommands.push(JSON.parse(data).data);
  }
  return send.call(this, data);
};
window.SpeechRecognition = class {
  start() { window.recogniser = this; }
  stop() { if (this.onend) this.onend(); }
};
window.hear = (text, isFinal) => {
  const result = [{ transcript: text, confidence: 0.9 }];
  result.isFinal = isFinal;
  window.recogniser.onresult({ resultIndex: 0, results: [result] });
};
"""
INTERIMS = ["read", "read me the", "read me the sports", "read me the sports headlines"]


@pytest.fixture(scope="module")
def device_only(redis_url: str, fixture_http: str, tmp_path_factory: pytest.TempPathFactory):
    log_dir = Path(tmp_path_factory.mktemp("recognition"))
    env = {"ASR_PROVIDER": "none", "STREAM_PREFIX": "recognition"}
    with running_system(f"{redis_url}/9", fixture_http, log_dir, **env) as up:
        yield up


def _commands(sent: list[dict[str, Any]]) -> Iterator[tuple[str, bool | None]]:
    for data in sent:
        yield data["command"], data.get("is_final")


async def test_the_browsers_interim_results_get_one_reply(browser, device_only: System) -> None:  # noqa: F811
    async with _open(browser, f"{device_only.http_url}/") as page:
        await page.add_init_script(SCRIPTED_RECOGNISER)
        await page.reload()
        await page.wait_for_function("window.voicePage?.stats.phase === 'connected'")
        hint = "document.getElementById('mic-hint').textContent"
        await page.wait_for_function(f"{hint}.includes('does not recognise speech')")
        await page.click("#mic")  # the browser listens
        await page.wait_for_function("window.recogniser !== undefined", timeout=WAIT_MS)
        for text in INTERIMS:
            await page.evaluate("t => window.hear(t, false)", text)
        await page.evaluate("t => window.hear(t, true)", INTERIMS[-1])
        turn = await _turn(page, "t.done")
        sent = await page.evaluate("window.sentCommands")
        turns = await page.evaluate("voicePage.turns()")
    assert list(_commands(sent)) == [(t, False) for t in INTERIMS] + [(INTERIMS[-1], True)]
    assert "striker" in turn["agent"].lower()
    assert len(turns) == 1 and not turn["cancelled"]
