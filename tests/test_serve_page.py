"""The `talkgen serve` page in a real headless Chromium against a real server on 127.0.0.1.

Asks by text and by a recorded question through Chromium's fake microphone, sees the reply
stream in and the avatar's video play (its currentTime advancing), replays an earlier turn,
and reads the jobs view. Every wait is bounded; the browser and the server stop at the end,
also on failure.
"""

from __future__ import annotations

import os
import re
import secrets

import pytest
from conftest import spoken_wav

from serve_browser import CHROMIUM, ask, chromium, get_json, marks, open_page, serve, wait_done, wait_playing

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium: install it (./install.sh does on Debian)"),
]
pytest.importorskip("playwright")

# Small frames and short chunks: these tests are about the page, not the render's speed.
SMALL = ["render.size=128", "render.max_chunk_s=1", "render.min_chunk_s=0.5"]
QUESTION = "What is the tallest mountain in the world?"
SPOKEN = "What is two plus two?"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("serve"), *SMALL) as url:
        yield url


@pytest.fixture(scope="module")
def microphone(tmp_path_factory):
    """The spoken question as a WAV, said by the embedded voice, for the fake microphone."""
    return spoken_wav(tmp_path_factory.mktemp("mic") / "question.wav", SPOKEN)


@pytest.fixture(scope="module")
def browser(microphone):
    with chromium(fake_microphone=microphone) as b:
        yield b


@pytest.fixture(scope="module")
def conversation(server, browser):
    """One page that asked QUESTION by typing (Shift+Enter adding a second line first) and
    whose answer finished."""
    page = open_page(browser, server)
    box = page.locator("textarea[name=question]")
    box.click()
    box.press_sequentially(QUESTION)
    box.press("Shift+Enter")
    box.press_sequentially("One sentence, please.")
    lines = box.input_value()
    turns_before_enter = page.locator("#turns > li").count()
    box.press("Enter")
    page.locator("#turns > li").first.wait_for()
    yield {"page": page, "lines": lines, "turns_before_enter": turns_before_enter}
    page.context.close()


def test_shift_enter_makes_a_new_line_and_enter_asks(conversation):
    page = conversation["page"]
    assert conversation["lines"] == f"{QUESTION}\nOne sentence, please."
    assert conversation["turns_before_enter"] == 0
    assert page.locator("textarea[name=question]").input_value() == ""
    assert page.locator("#turns > li .question").first.text_content().startswith(QUESTION)


def test_typed_question_streams_the_reply_and_plays_the_video(conversation):
    page = conversation["page"]
    wait_playing(page, 0)
    conversation["first_src"] = page.evaluate("document.querySelector('video').src")
    assert wait_done(page, 0) == "done"
    reply = page.locator("#turns > li .reply").first.text_content()
    assert len(reply.split()) >= 2
    lengths = marks(page)["lengths"][0]
    assert len(lengths) >= 2, f"the reply arrived in one piece, not streamed: {lengths}"
    assert lengths[-1] == len(reply)


def test_the_first_answer_played_from_the_live_stream(conversation):
    # Played from the live stream through hls.js (a Media Source blob), not the finished file.
    src = conversation["first_src"]
    assert src.startswith("blob:"), f"the video played {src}, not the live stream"


def test_an_earlier_turn_replays_from_its_video(conversation):
    page = conversation["page"]
    wait_done(page, 0)
    ask(page, "And the second tallest?")
    wait_playing(page, 1)
    page.locator("video").evaluate("v => v.pause()")
    page.locator("#turns > li").first.get_by_role("button", name="Replay").click()
    wait_playing(page, 0)
    assert "/video.mp4" in page.evaluate("document.querySelector('video').src")
    assert page.locator("#turns > li").nth(0).get_attribute("class") == "turn playing"
    wait_done(page, 1)


def test_the_jobs_view_shows_duration_render_time_and_cost(server, conversation):
    page = conversation["page"]
    wait_done(page, 0)
    page.get_by_role("button", name="Refresh").click()
    status, listing = get_json(server + "v1/jobs")
    assert status == 200
    done = [job for job in listing["jobs"] if job["status"] == "done"]
    assert done, listing
    job = done[-1]
    row = page.locator("#jobs tr", has_text=job["question"][:30]).first
    row.wait_for()
    cells = [c.strip() for c in row.locator("td").all_text_contents()]
    assert cells[2] == "done"
    assert cells[3] == f"{job['video_s']:.1f} s"
    assert cells[4] == f"{job['render_s']:.1f} s"
    assert re.fullmatch(r"\$\d[\d.e-]*", cells[5]), cells
    assert job["video_s"] > 0 and job["render_s"] > 0 and job["cost_usd"] is not None


def test_a_reload_keeps_the_conversation(conversation):
    page = conversation["page"]
    wait_done(page, 0)
    first = page.locator("#turns > li .reply").first.text_content()
    page.reload()
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Ready')")
    page.locator("#turns > li").first.wait_for()
    assert page.locator("#turns > li .reply").first.text_content() == first


def test_a_spoken_question_is_heard_answered_and_played(server, browser):
    page = open_page(browser, server)
    try:
        speak = page.get_by_role("button", name="Speak")
        speak.click()
        page.wait_for_function("document.getElementById('speak').getAttribute('aria-pressed') === 'true'")
        page.wait_for_timeout(4000)  # the WAV: 0.8 s of silence, the question, 1 s of silence
        page.get_by_role("button", name="Stop and ask").click()
        wait_playing(page, 0)
        assert wait_done(page, 0) == "done"
        heard = page.locator("#turns > li .question").first.text_content().lower()
        assert "two" in heard or "2" in heard, heard
        assert page.locator("#turns > li .reply").first.text_content().strip()
    finally:
        page.context.close()


def test_a_server_with_a_token_asks_for_it_once_and_plays_with_it(tmp_path, browser):
    token = secrets.token_urlsafe(32)
    token_file = tmp_path / "token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    with serve(tmp_path / "serve", "--token-file", str(token_file), *SMALL, token=token) as url:
        page = browser.new_context().new_page()
        page.set_default_timeout(60_000)
        try:
            page.goto(url)
            form = page.locator("#token-form")
            form.wait_for(state="visible")
            page.locator("#token").fill("not-the-token")
            page.get_by_role("button", name="Use token").click()
            form.wait_for(state="visible")  # refused: asked again
            page.locator("#token").fill(token)
            page.get_by_role("button", name="Use token").click()
            page.wait_for_function("document.getElementById('status').textContent.startsWith('Ready')")
            turn = ask(page, "Say hello.")
            wait_playing(page, turn)
            assert wait_done(page, turn) == "done"
            page.locator("#turns > li").nth(turn).get_by_role("button", name="Replay").click()
            wait_playing(page, turn)
            src = page.evaluate("document.querySelector('video').src")
            assert "/video.mp4?token=" in src
            page.reload()  # the token is kept for the tab: not asked again
            page.wait_for_function("document.getElementById('status').textContent.startsWith('Ready')")
            assert page.locator("#token-form").is_hidden()
        finally:
            page.context.close()
