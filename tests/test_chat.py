"""talkgen chat, driven through a real pseudo-terminal (pexpect) and through a pipe.

The replies come from the small embedded LLM, so nothing here depends on what it says:
the tests check the structure of the conversation, the files of the session, the clips'
frames and durations, and the session log.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from talkgen import media

from incli import talkgen

ROOT = Path(__file__).resolve().parents[1]
QUESTION = ROOT / "examples" / "question.wav"
PROMPT = "you> "
CLIP = r"clip (\d+) ready: (\S+) \(([\d.]+) s, rendered in ([\d.]+) s\)"
SHORT = ["llm.max_reply_words=6"]  # the tests check the conversation's structure, never what is said
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def ignore_ctrl_c() -> None:
    """A chat's start as from a shell's background job (or a test run started from one): SIGINT
    ignored, which Python then keeps. Chat at a terminal must take Ctrl-C all the same."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def kill(child: pexpect.spawn) -> None:
    """SIGKILL a chat, wait until it is gone, then close its terminal. Without the wait, close()
    gave up ("Could not terminate the child") on a loaded machine, where a process of a GB or more
    can take longer to exit than the half second pexpect allows it."""
    if child.isalive():
        child.kill(signal.SIGKILL)
        child.wait()
    child.close(force=True)


def spawn(args: list[str], cwd: Path, env: dict | None = None, **kw) -> pexpect.spawn:
    # The first start in a test session converts the bundled LLM once (about 20 s).
    child = pexpect.spawn(sys.executable, ["-m", "talkgen", "chat", *args], cwd=str(cwd), env=env or dict(os.environ),
                          encoding="utf-8", timeout=180, dimensions=(50, 250), **kw)
    try:
        child.expect_exact(PROMPT)
    except BaseException:  # no prompt: the chat is not left running
        kill(child)
        raise
    return child


def ask(child: pexpect.spawn, question: str) -> None:
    child.sendline(question)
    child.expect_exact("avatar> ")
    child.expect_exact(PROMPT)


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def video_frames(path: Path) -> tuple[int, set[str]]:
    info = media.probe(path)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    return int(video["nb_read_packets"]), {s["codec_type"] for s in info["streams"]}


@pytest.fixture(scope="module")
def conversation(tmp_path_factory):
    """Two turns with clips, then /history, /save and a few mistakes, in one terminal session."""
    cwd = tmp_path_factory.mktemp("chat")
    child = spawn(["--session-dir", "talk", "render.size=96", *SHORT], cwd)
    child.sendline("Hello, who are you?")
    child.expect_exact("avatar> ")
    child.expect_exact(PROMPT)
    # The next question goes in while the first clip may still be rendering.
    child.sendline("What do you like to do?")
    clips = []
    for _ in range(2):
        child.expect(CLIP)
        clips.append(child.match.groups())
    child.expect_exact(PROMPT)
    out = {"clips": clips}
    for command in ("/history", "/save", "/audio nowhere.wav", "/frobnicate", "/persona"):
        child.sendline(command)
        child.expect_exact(PROMPT)
        out[command] = child.before
    for command in ("/persona a pirate captain", "/reset"):
        child.sendline(command)
        child.expect_exact(PROMPT)
    ask(child, "Who are you?")
    child.sendline("/quit")  # waits for the third clip
    child.expect(CLIP)
    clips.append(child.match.groups())
    out["exit"] = finish(child)
    out["session"] = cwd / "talk"
    out["cwd"] = cwd
    return out


@pytest.mark.slow
def test_each_turn_gets_a_clip_in_order(conversation):
    assert conversation["exit"] == 0
    session = conversation["session"]
    assert [c[0] for c in conversation["clips"]] == ["1", "2", "3"]
    records = jsonl(session / "history.jsonl")
    turns = [r for r in records if r["type"] == "turn"]
    clips = {r["turn"]: r for r in records if r["type"] == "clip"}
    assert [t["turn"] for t in turns] == [1, 2, 3] and set(clips) == {1, 2, 3}
    # The second question was answered knowing the first exchange; the third, after /reset, knowing none.
    assert [t["prompt_messages"] for t in turns] == [2, 4, 2]
    assert turns[1]["persona"] != "a pirate captain" and turns[2]["persona"] == "a pirate captain"
    assert [r["type"] for r in records if r["type"] in ("persona", "reset")] == ["persona", "reset"]
    for n, (_, shown, duration, _) in enumerate(conversation["clips"], 1):
        turn = session / "turns" / f"{n:04d}"
        assert conversation["cwd"] / shown == turn / "clip.mp4"
        assert (turn / "reply.txt").read_text().strip() == turns[n - 1]["reply"]
        frames, streams = video_frames(turn / "clip.mp4")
        assert streams == {"video", "audio", "subtitle"}
        assert frames == clips[n]["frames"] and abs(frames / 25 - float(duration)) < 0.06
        # The clip lasts as long as its speech, to within a frame.
        speech_s = media.audio_duration(turn / "speech.wav")
        assert 0 <= frames / 25 - speech_s < 1 / 25 + 1e-3


@pytest.mark.slow
def test_history_and_save(conversation):
    session = conversation["session"]
    history = conversation["/history"]
    assert "1. you: Hello, who are you?" in history and "2. you: What do you like to do?" in history
    assert history.count("clip: talk/turns/") == 2
    assert "saved talk/chat.mp4 (2 turns" in conversation["/save"]
    clip_frames = [video_frames(session / "turns" / f"{n:04d}" / "clip.mp4")[0] for n in (1, 2)]
    frames, streams = video_frames(session / "chat.mp4")
    assert frames == sum(clip_frames) and streams == {"video", "audio", "subtitle"}
    # The second turn's subtitles start where its clip starts in the joined video.
    starts = [_seconds(m) for m in re.findall(r"^(\S+) --> ", (session / "chat.srt").read_text(), re.M)]
    first_turn_cues = len(re.findall(r" --> ", (session / "turns" / "0001" / "clip.srt").read_text()))
    assert all(s < clip_frames[0] / 25 for s in starts[:first_turn_cues])
    assert all(s >= clip_frames[0] / 25 for s in starts[first_turn_cues:]) and len(starts) > first_turn_cues


def _seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


@pytest.mark.slow
def test_mistakes_are_one_line_and_the_chat_goes_on(conversation):
    for command, fragment in (("/audio nowhere.wav", "error: no file nowhere.wav"),
                              ("/frobnicate", "error: unknown command /frobnicate"), ("/persona", "error: say who the avatar is")):
        text = ANSI.sub("", conversation[command]).replace("\r", "")
        lines = [line for line in text.splitlines() if line.strip()][1:]  # the first is the command echoed
        assert len(lines) == 1 and fragment in lines[0], text
        assert "Traceback" not in text


@pytest.mark.slow
def test_the_second_turn_loads_no_model(conversation):
    events = jsonl(conversation["session"] / "events.jsonl")
    loads = [e for e in events if e["event"] == "load"]
    assert sorted(e["model"] for e in loads) == ["avatar", "llm", "tts"]
    second = next(i for i, e in enumerate(events) if e["event"] == "question" and e["turn"] == 2)
    ready = next(i for i, e in enumerate(events) if e["event"] == "clip_ready" and e["turn"] == 2)
    assert second < ready
    assert not [e for e in events[second:] if e["event"] == "load"]
    assert all(e["t"] < events[second]["t"] for e in loads)


# An ffmpeg (through TALKGEN_FFMPEG, the setting that names it) that, when started as a chunk's
# encoder, says so in the gate folder and waits to start until the gate is open. While it waits,
# no chunk can finish, so the clip is rendering for as long as the test needs, however fast x264 is.
GATED_FFMPEG = """#!{python} -S
import os, sys, time
from pathlib import Path

gate = Path({gate!r})
if "pipe:0" in sys.argv:  # frames come in on standard input: a chunk's encoder
    parent = os.getppid()
    (gate / f"started-{{os.getpid()}}").touch()
    while not (gate / "open").exists():
        if os.getppid() != parent:  # the chat is gone: nothing will read this encoder
            sys.exit(1)
        time.sleep(0.02)
os.execv({ffmpeg!r}, [{ffmpeg!r}, *sys.argv[1:]])
"""


def gated_ffmpeg(folder: Path) -> tuple[dict, Path]:
    """The environment that runs chat with the gated ffmpeg, and its gate folder (closed)."""
    import shutil

    gate = folder / "gate"
    gate.mkdir()
    wrapper = folder / "ffmpeg"
    wrapper.write_text(GATED_FFMPEG.format(python=sys.executable, gate=str(gate), ffmpeg=shutil.which("ffmpeg")))
    wrapper.chmod(0o755)
    return {**os.environ, "TALKGEN_FFMPEG": str(wrapper)}, gate


def stop_chats(chats: list[pexpect.spawn], gate: Path) -> None:
    """A test's end, passed or failed: SIGKILL its chats, then what they left of their encoders.
    A gated wrapper leaves by itself once its chat is gone, and a real ffmpeg at the end of its
    input; the ones still running are killed too (those whose command line names the test's folder)."""
    import time

    for child in chats:
        kill(child)
    pids = [int(f.name.split("-")[1]) for f in gate.glob("started-*")]
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:
        for pid in list(pids):
            try:
                mine = str(gate.parent).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                mine = False
            if not mine or state == "Z":
                pids.remove(pid)
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def wait_for_an_encoder(gate: Path, timeout: float = 180) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not list(gate.glob("started-*")):
        assert time.monotonic() < deadline, "no chunk encoder started: the clip never reached its render"
        time.sleep(0.05)


@pytest.mark.slow
def test_ctrl_c_stops_a_reply_then_a_render_and_a_crash_loses_only_the_clip_in_flight(tmp_path):
    env, gate = gated_ffmpeg(tmp_path)
    chats: list[pexpect.spawn] = []  # stopped at the end, also when the test fails
    try:
        # Chunks of at most 0.4 s: every clip has at least 4 (lead-in and tail alone are 0.6 s). With
        # its encoders held, the render can make the frames of 3 chunks at most before it waits, so
        # it is still rendering, and reads the stop at its next frame, once the gate opens.
        args = ["--session-dir", "s", "render.size=96", "render.max_chunk_s=0.4", "render.min_chunk_s=0.2",
                "llm.max_reply_words=200", "llm.max_new_tokens=300"]
        child = spawn(args, tmp_path, env, preexec_fn=ignore_ctrl_c)
        chats.append(child)
        child.logfile_read = (tmp_path / "terminal.log").open("w")  # what the chat showed, to read when this fails
        child.sendline("Tell me a long story about a dragon and a knight.")
        child.expect_exact("avatar> ")
        child.expect(r"\w+\W+\w+\W+\w+")
        child.sendintr()
        # The prompt instead: the reply ran to its end, the Ctrl-C not taken (say so now, not in 180 s).
        assert child.expect_exact(["[stopped]", PROMPT]) == 0, "the reply ran to its end: its Ctrl-C was not taken"
        child.expect_exact(PROMPT)
        ask(child, "Hi!")
        wait_for_an_encoder(gate)  # the clip's first chunk is being encoded, and cannot finish
        child.sendintr()
        # One Ctrl-C, taken at once, while the render thread starts encoders and their threads: such a
        # thread could take the SIGINT off the queue before the main thread ran, and the prompt slept
        # on until the next key (about 1 run in 12, before stopping.main_wakes).
        child.expect_exact("stopping the clips being rendered", timeout=20)
        (gate / "open").touch()
        child.expect_exact("clip 1 stopped")
        # A clip stopped while its speech is still being spoken (the clip's stages overlap) has no plan yet.
        plan = tmp_path / "s" / "turns" / "0001" / "plan.json"
        assert not plan.exists() or len(json.loads(plan.read_text())["chunks"]) >= 4, \
            "a clip this short could finish while its encoders were held"
        # A crash while the second clip renders: the reply is kept and the clip is made on resume.
        (gate / "open").unlink()
        for started in gate.glob("started-*"):
            started.unlink()
        ask(child, "Bye!")
        wait_for_an_encoder(gate)
        kill(child)
        records = jsonl(tmp_path / "s" / "history.jsonl")
        assert [(r["type"], r["turn"]) for r in records] == [("turn", 1), ("clip_stopped", 1), ("turn", 2)]
        assert records[0]["question"] == "Hi!" and records[2]["question"] == "Bye!"

        (gate / "open").touch()
        child = pexpect.spawn(sys.executable, ["-m", "talkgen", "chat", "--resume", "s", *args[2:]], cwd=str(tmp_path),
                              env=env, encoding="utf-8", timeout=180, dimensions=(50, 250), preexec_fn=ignore_ctrl_c)
        chats.append(child)
        seen = set()
        while len(seen) < 2:  # the clip may be ready before or after the prompt shows
            seen.add(child.expect([CLIP, re.escape(PROMPT)]))
            if seen == {0}:
                assert child.match.group(1) == "2"
        # Ctrl-C twice at an empty prompt leaves.
        child.sendintr()
        child.expect_exact("Ctrl-C again")
        child.sendintr()
        assert finish(child) == 0
        records = jsonl(tmp_path / "s" / "history.jsonl")
        assert [(r["type"], r["turn"]) for r in records] == [("turn", 1), ("clip_stopped", 1), ("turn", 2), ("clip", 2)]
        frames, _ = video_frames(tmp_path / "s" / "turns" / "0002" / "clip.mp4")
        assert frames == records[3]["frames"]
        events = [e["event"] for e in jsonl(tmp_path / "s" / "events.jsonl")]
        assert events.count("reply_stopped") == 1 and events.count("render_stopped") == 1
        assert not (tmp_path / "s" / "turns" / "0001" / "clip.mp4").exists()
    finally:
        stop_chats(chats, gate)


@pytest.mark.slow
def test_piped_lines_are_turns_in_plain_text_and_the_session_resumes(tmp_path):
    env = {**os.environ, "TERM": "xterm-256color", "FORCE_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "talkgen", "chat", "--no-video", *SHORT], cwd=tmp_path, env=env,
                          input=f"hello\nwhat can you do?\n/audio {QUESTION}\n", capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line for line in lines if line.startswith("you> ")] == ["you> hello", "you> what can you do?", f"you> /audio {QUESTION}"]
    assert len([line for line in lines if line.startswith("avatar> ") and len(line) > len("avatar> ")]) == 3
    heard = next(line for line in lines if line.startswith("heard: "))
    assert "tallest mountain" in heard.lower()
    (session,) = (tmp_path / ".talkgen" / "chats").iterdir()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}-\d{4}", session.name)
    turns = [r for r in jsonl(session / "history.jsonl") if r["type"] == "turn"]
    assert [t["source"] for t in turns] == ["typed", "typed", f"audio:{QUESTION}"]
    assert not list(session.glob("turns/*/clip.mp4"))

    # The same session, resumed by its id in a terminal: the model sees the whole conversation.
    child = spawn(["--resume", session.name, "--no-video", *SHORT], tmp_path)
    child.sendline("/history")
    child.expect_exact("1. you: hello")
    child.expect_exact("3. you: " + turns[2]["question"])
    child.expect_exact(PROMPT)
    ask(child, "What did I ask first?")
    child.sendline("/quit")
    assert finish(child) == 0
    turns = [r for r in jsonl(session / "history.jsonl") if r["type"] == "turn"]
    assert [t["turn"] for t in turns] == [1, 2, 3, 4]
    # System prompt, three questions and their replies, the new question; the next seed.
    assert turns[3]["prompt_messages"] == 8 and turns[3]["seed"] == turns[2]["seed"] + 1
    loads = [e for e in jsonl(session / "events.jsonl") if e["event"] == "load"]
    assert [e["model"] for e in loads] == ["llm", "stt", "vad", "llm"]  # --no-video loads no voice or face


@pytest.mark.parametrize("args, code, fragment", [
    (["--resume", "2020-01-01-0000"], 2, "no chat session '2020-01-01-0000'"),
    (["--recipe", "h100-8x"], 1, "LiveAvatar cannot run: no LiveAvatar checkout"),
    (["--recipe", "gpu-1x", "render.liveavatar.checkout=nowhere"], 1, "LiveAvatar cannot run: nowhere is not a LiveAvatar checkout"),
    (["--persona", " "], 2, "--persona is empty"),
    (["--resume", "x", "--session-dir", "y"], 2, "drop --session-dir"),
    (["llm.nope=1"], 2, "unknown recipe key 'llm.nope'"),
    (["--voice", str(QUESTION)], 2, "--voice clones a voice with F5-TTS"),
])
def test_bad_command_lines_are_one_line(tmp_path, args, code, fragment):
    proc = talkgen(["chat", *args], tmp_path, input="")  # refused before the conversation starts: in the test's process
    assert proc.returncode == code, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in " ".join(proc.stderr.split()) and "Traceback" not in proc.stderr
    assert not (tmp_path / ".talkgen").exists()


@pytest.mark.slow
def test_a_cloned_voice_speaks_the_chat(tmp_path):
    """tts.engine=f5-tts in chat: the reference is checked and loaded once, the clip is in its voice's 24 kHz."""
    import wave

    import tiny_f5

    paths = tiny_f5.build(tmp_path / "f5")
    proc = subprocess.run(
        [sys.executable, "-m", "talkgen", "chat", "--voice", str(QUESTION), "--voice-text", "What is the tallest mountain?",
         *SHORT, *tiny_f5.overrides(paths), "render.size=128"],
        cwd=tmp_path, input="hello\n", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (session,) = (tmp_path / ".talkgen" / "chats").iterdir()
    assert (session / "turns" / "0001" / "speech.wav").is_file(), proc.stdout + proc.stderr
    with wave.open(str(session / "turns" / "0001" / "speech.wav")) as w:
        assert w.getframerate() == 24000
    assert (session / "turns" / "0001" / "clip.mp4").is_file()
    loads = [e["model"] for e in jsonl(session / "events.jsonl") if e["event"] == "load"]
    assert loads.count("tts") == 1


def test_a_resumed_chat_leaves_out_the_turns_its_last_prompt_left_out():
    """So the first prompt after --resume begins as the next one of the live chat would have."""
    from talkgen.chat.session import dropped

    turn = lambda n, d: {"type": "turn", "turn": n, "question": "q", "reply": "r", "dropped_turns": d}  # noqa: E731
    assert dropped([turn(1, 0), turn(2, 3), turn(3, 3)]) == 3
    assert dropped([turn(1, 0), turn(2, 3), {"type": "reset"}]) == 0
    assert dropped([{"type": "turn", "turn": 1, "question": "q", "reply": "r"}]) == 0  # a session from before the count


@pytest.mark.slow
def test_a_multi_rank_avatar_chats_on_one_rank_group(tmp_path):
    """tp-test on 2 ranks: every clip through the one group the chat launched (chat used to refuse it)."""
    proc = subprocess.run([sys.executable, "-m", "talkgen", "chat", *SHORT, "render.engine=tp-test", "render.nproc=2",
                           "render.size=96"], cwd=tmp_path, input="hello\nwhat can you do?\n", capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    (session,) = (tmp_path / ".talkgen" / "chats").iterdir()
    clips = [r for r in jsonl(session / "history.jsonl") if r["type"] == "clip"]
    assert [c["turn"] for c in clips] == [1, 2]
    for c in clips:
        frames, kinds = video_frames(session / "turns" / f"{c['turn']:04d}" / "clip.mp4")
        assert frames == c["frames"] > 0 and {"video", "audio"} <= kinds
    loads = [e["model"] for e in jsonl(session / "events.jsonl") if e["event"] == "load"]
    assert loads.count("ranks") == 1  # launched once for both clips
    assert len(list((session / "avatar-ranks" / "ranks" / "inbox").glob("[0-9]*.json"))) == 2
