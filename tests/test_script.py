import pytest

from talkgen.errors import UsageError
from talkgen.text.script import paragraphs, read_script, sentences


def test_reads_utf8_and_bom(tmp_path):
    p = tmp_path / "s.txt"
    p.write_bytes("\ufeffHéllo wörld — ok".encode("utf-8"))
    assert read_script(p) == "Héllo wörld — ok"


def test_falls_back_to_cp1252(tmp_path):
    p = tmp_path / "s.txt"
    p.write_bytes("Caf\xe9 \x93quoted\x94".encode("latin-1"))
    assert read_script(p) == "Café “quoted”"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"   \n\t\n  ", "only whitespace"),
        (b"\x00\x01\x02binary\x00", "binary"),
        (bytes(range(1, 32)) * 20, "binary"),
    ],
)
def test_refuses_bad_scripts(tmp_path, content, message):
    p = tmp_path / "s.txt"
    p.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        read_script(p)


def test_missing_and_folder(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        read_script(tmp_path / "nope.txt")
    with pytest.raises(UsageError, match="is a folder"):
        read_script(tmp_path)


def test_paragraphs_and_sentences():
    text = "First line\ncontinues here. Second one!\n\n\r\nNew para? Yes.\n"
    paras = paragraphs(text)
    assert paras == ["First line continues here. Second one!", "New para? Yes."]
    assert sentences(paras[0]) == ["First line continues here.", "Second one!"]
    assert sentences("Dr. Smith met Mr. J. Jones at 5 p.m. on Main Street. Then he left.") == [
        "Dr. Smith met Mr. J. Jones at 5 p.m. on Main Street.",
        "Then he left.",
    ]
