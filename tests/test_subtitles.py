import re

from talkgen.speech import Sentence
from talkgen.subtitles import cues, write_srt


def test_cues_follow_the_word_timings_and_fit_two_lines(tmp_path):
    sr = 1000
    long_words = [(f"word{i:02d}", 1000 + i * 300, 1000 + i * 300 + 250) for i in range(30)]
    sentences = [
        Sentence("Hello there.", 0, 100, 900, [("Hello", 100, 400), ("there.", 450, 900)]),
        Sentence(" ".join(w for w, _, _ in long_words), 0, 1000, 10000, long_words),
    ]
    out = cues(sentences, sr)
    assert out[0] == (0.1, 0.9, "Hello there.")
    assert len(out) > 2  # the 30-word sentence was split
    for start, end, text in out:
        lines = text.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines)
        assert end > start
    for a, b in zip(out, out[1:]):
        assert a[1] <= b[0]
    assert out[-1][1] == 10.0 - 0.05  # the last word ends at 9.95 s
    path = tmp_path / "a.srt"
    write_srt(path, sentences, sr)
    text = path.read_text()
    assert text.startswith("1\n00:00:00,100 --> 00:00:00,900\nHello there.\n")
    assert len(re.findall(r"^\d\d:\d\d:\d\d,\d\d\d --> ", text, re.M)) == len(out)
