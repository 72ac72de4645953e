"""What the chat shows while a reply streams and a notice comes (a clip's live stream is there)."""

import io
import re

from talkgen.chat.screen import Screen

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def shown(screen: Screen, buf: io.StringIO, steps) -> str:
    screen.reply_start()
    for kind, text in steps:
        screen.notice(text) if kind == "notice" else screen.reply_text(text)
    screen.reply_end()
    return ANSI.sub("", buf.getvalue())


STEPS = [("text", " Bees make hon"), ("notice", "clip 2 live: talk/turns/0002/clip.m3u8 (1.1 s after the question)"),
         ("text", "ey"), ("text", " from the nectar"), ("text", " of flowers.")]


def test_on_a_terminal_a_notice_goes_between_two_words_of_the_reply_and_the_reply_goes_on_under_it():
    buf = io.StringIO()
    screen = Screen(interactive=True, file=buf, terminal=True)
    assert shown(screen, buf, STEPS) == ("avatar> Bees make honey\n"
                                         "clip 2 live: talk/turns/0002/clip.m3u8 (1.1 s after the question)\n"
                                         "        from the nectar of flowers.\n")


def test_a_notice_after_a_word_ending_in_a_space_goes_before_the_next_word():
    buf = io.StringIO()
    screen = Screen(interactive=True, file=buf, terminal=True)
    steps = [("text", "Hello there, "), ("notice", "clip 1 ready: c.mp4"), ("text", "friend.")]
    assert shown(screen, buf, steps) == "avatar> Hello there, \nclip 1 ready: c.mp4\n        friend.\n"


def test_piped_the_reply_stays_one_line_and_the_notice_follows_it():
    """A script reads whole lines: the notice waits for the reply's line to end."""
    buf = io.StringIO()
    screen = Screen(interactive=False, file=buf)
    assert shown(screen, buf, STEPS) == ("avatar> Bees make honey from the nectar of flowers.\n"
                                         "clip 2 live: talk/turns/0002/clip.m3u8 (1.1 s after the question)\n")


def test_a_notice_that_comes_with_the_last_word_follows_the_reply():
    buf = io.StringIO()
    screen = Screen(interactive=True, file=buf, terminal=True)
    steps = [("text", "Yes."), ("notice", "clip 3 live: x.m3u8")]
    assert shown(screen, buf, steps) == "avatar> Yes.\nclip 3 live: x.m3u8\n"
