"""The live playlist as `talkgen serve` hands it out: every segment through the job's live/ route,
and no file the playlist does not list (the server's own tests cannot make a playlist until jobs
stream one; this is the route's rule on a playlist written here)."""

from talkgen.batching import queue as q
from talkgen.server import files

PLAYLIST = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MAP:URI="init.mp4"
#EXTINF:2.0,
seg/00000.m4s
#EXTINF:2.0,
seg/00001.m4s
"""


def test_the_playlist_routes_its_segments_and_nothing_else(tmp_path):
    job = "20260101-000000-0a0b0c0d"
    folder = q.job_dir(tmp_path, job)
    (folder / "seg").mkdir(parents=True)
    for name in ("init.mp4", "seg/00000.m4s", "seg/00001.m4s", "seg/00002.m4s", "manifest.json"):
        (folder / name).write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("no")
    files.live_playlist(tmp_path, job).write_text(PLAYLIST)
    served = files.for_client(PLAYLIST, "a b")
    assert 'URI="live/init.mp4?token=a%20b"' in served and "\nlive/seg/00001.m4s?token=a%20b\n" in served
    assert files.listed(PLAYLIST) == ["init.mp4", "seg/00000.m4s", "seg/00001.m4s"]
    assert files.segment(tmp_path, job, "seg/00001.m4s") == (folder / "seg" / "00001.m4s").resolve()
    for name in ("seg/00002.m4s", "manifest.json", "../../../secret.txt", "/etc/passwd", "seg/../init.mp4"):
        assert files.segment(tmp_path, job, name) is None, name
    (folder / "seg" / "00001.m4s").unlink()
    (folder / "seg" / "00001.m4s").symlink_to(tmp_path / "secret.txt")
    assert files.segment(tmp_path, job, "seg/00001.m4s") is None  # a link out of the job is not followed
