"""The live playlist as `talkgen serve` hands it out: every segment through the job's live/ route,
and no file the playlist does not list, on a playlist written here where a job writes its own
(beside its video, its segments in a folder beside that)."""

from talkgen.server import files


def test_the_playlist_routes_its_segments_and_nothing_else(tmp_path):
    job = "20260101-000000-0a0b0c0d"
    playlist = files.live_playlist(tmp_path, job)
    assert playlist == files.video(tmp_path, job).with_suffix(".m3u8")
    folder = playlist.with_suffix(".live")
    folder.mkdir(parents=True)
    for name in ("00000.ts", "00001.ts", "00002.ts"):
        (folder / name).write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("no")
    files.video(tmp_path, job).write_bytes(b"the video")
    text = f"""#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-MAP:URI="{folder.name}/00000.ts"
#EXTINF:2.0,
{folder.name}/00000.ts
#EXTINF:2.0,
{folder.name}/00001.ts
#EXTINF:2.0,
../secret.txt
"""
    playlist.write_text(text)
    served = files.for_client(text, "a b")
    assert f'URI="live/{folder.name}/00000.ts?token=a%20b"' in served and f"\nlive/{folder.name}/00001.ts?token=a%20b\n" in served
    assert files.listed(text) == [f"{folder.name}/00000.ts", f"{folder.name}/00000.ts", f"{folder.name}/00001.ts", "../secret.txt"]
    assert files.segment(tmp_path, job, f"{folder.name}/00001.ts") == (folder / "00001.ts").resolve()
    for name in (f"{folder.name}/00002.ts", files.video(tmp_path, job).name, "../secret.txt", "/etc/passwd",
                 f"{folder.name}/../secret.txt"):
        assert files.segment(tmp_path, job, name) is None, name
    (folder / "00001.ts").unlink()
    (folder / "00001.ts").symlink_to(tmp_path / "secret.txt")
    assert files.segment(tmp_path, job, f"{folder.name}/00001.ts") is None  # a link out of the folder is not followed
