"""The voice page's language: the picker and `lang` on the page URL reach the server, and
where the server's recogniser cannot follow the language, the browser's listens in it.

Real chromium against the running system (pocketsphinx: English only); the browser's
speech recognition is replaced by a recorder (chromium has none headless).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_browser_page import WAIT_MS, _open, _turn, browser, fake_mic_wav  # noqa: F401

pytestmark = pytest.mark.timeout(600)

RECORDING_RECOGNISER = """
window.recognitionLangs = [];
window.SpeechRecognition = class {
  start() { window.recognitionLangs.push(this.lang); }
  stop() { if (this.onend) this.onend(); }
};
"""


async def test_page_language_reaches_the_server_and_the_picker(browser, system) -> None:  # noqa: F811
    async with _open(browser, f"{system.http_url}/?lang=zh-CN") as page:
        assert await page.input_value("#lang") == "zh-CN"
        assert await page.evaluate("document.documentElement.lang") == "zh-CN"
        await page.fill("#command", "technology news")  # English words: the page's lang wins
        await page.press("#command", "Enter")
        turn = await _turn(page, "t.done")
        assert turn["agent"].startswith("以下是最新的科技新闻。")  # the agent answered in Chinese
        await page.select_option("#lang", "es")  # a new session in Spanish
        await page.wait_for_url("**/?lang=es", timeout=WAIT_MS)
        await page.wait_for_function("window.voicePage?.stats.phase === 'connected'")
        await page.fill("#command", "technology news")
        await page.press("#command", "Enter")
        turn = await _turn(page, "t.done")
        assert turn["agent"].startswith("Estos son los últimos titulares de tecnología.")


async def test_unsupported_spoken_language_switches_to_the_browsers_recogniser(
    browser: Any,  # noqa: F811
    system,
) -> None:
    async with _open(browser, f"{system.http_url}/?lang=zh-CN") as page:
        await page.add_init_script(RECORDING_RECOGNISER)
        await page.reload()
        await page.wait_for_function("window.voicePage?.stats.phase === 'connected'")
        await page.click("#mic")  # speech streams to the server, which cannot hear Chinese
        notice = "document.getElementById('notice').textContent"
        await page.wait_for_function(f"{notice}.includes('英语')", timeout=WAIT_MS)
        await page.click("#mic")  # now the browser listens, in Chinese
        assert await page.evaluate("window.recognitionLangs") == ["zh-CN"]
