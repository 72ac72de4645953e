"""The H.264 samples of a chunk's MP4, read in Python: what the live stream copies into its segments.

A chunk is one video track that talkgen's ChunkEncoder wrote (media.CHUNK_VIDEO: x264, no
B-frames). Reading it here, rather than starting ffmpeg for each segment, saves that start
(about 0.1 s on the development machine) before every segment is listed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from talkgen.errors import TalkgenError

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}


@dataclass(frozen=True)
class Sample:
    data: bytes  # NAL units, each after its big-endian length
    dts: int  # in the track's timescale, the edit list applied
    pts: int
    key: bool


@dataclass(frozen=True)
class H264Track:
    timescale: int
    nal_length_size: int
    parameter_sets: tuple[bytes, ...]  # the SPS and PPS NAL units, in that order
    samples: tuple[Sample, ...]


def _boxes(data: bytes, start: int, end: int):
    """(type, payload start, payload end) of each box in data[start:end]."""
    off = start
    while off + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, off)
        head = 8
        if size == 1:
            size, head = struct.unpack_from(">Q", data, off + 8)[0], 16
        elif size == 0:
            size = end - off
        if size < head or off + size > end:
            raise ValueError(f"a {kind!r} box runs past its parent")
        yield kind, off + head, off + size
        off += size


def _tree(data: bytes, start: int, end: int, into: dict, path: tuple = ()) -> None:
    for kind, a, b in _boxes(data, start, end):
        where = (*path, kind)
        into.setdefault(where, (a, b))  # the first of each: a chunk has one track
        if kind in _CONTAINERS:
            _tree(data, a, b, into, where)


def _table(data: bytes, box: tuple[int, int] | None, fmt: str) -> list[tuple]:
    """A full box's entries: version and flags, a count, then `count` records of `fmt`."""
    if box is None:
        return []
    a, _ = box
    (count,) = struct.unpack_from(">I", data, a + 4)
    size = struct.calcsize(">" + fmt)
    return [struct.unpack_from(">" + fmt, data, a + 8 + i * size) for i in range(count)]


def read_h264(path: Path) -> H264Track:
    """The video samples of an MP4 written by talkgen (one H.264 track)."""
    data = path.read_bytes()
    try:
        return _read(data)
    except (ValueError, struct.error, KeyError, IndexError) as exc:
        raise TalkgenError(f"{path} is not a chunk talkgen can read ({exc}): delete it and render again") from None


def _read(data: bytes) -> H264Track:
    boxes: dict = {}
    _tree(data, 0, len(data), boxes)
    trak = (b"moov", b"trak")
    stbl = (*trak, b"mdia", b"minf", b"stbl")

    a, _ = boxes[(*trak, b"mdia", b"mdhd")]
    version = data[a]
    (timescale,) = struct.unpack_from(">I", data, a + (20 if version == 1 else 12))

    # stsd: one avc1 entry, whose avcC holds the parameter sets and the NAL length size
    a, b = boxes[(*stbl, b"stsd")]
    entry_kind, ea, eb = next(_boxes(data, a + 8, b), (b"none", 0, 0))
    if entry_kind not in (b"avc1", b"avc3"):
        raise ValueError(f"its video is {entry_kind.decode(errors='replace')}, not H.264")
    c = next((ca for kind, ca, _ in _boxes(data, ea + 78, eb) if kind == b"avcC"), None)
    if c is None:
        raise ValueError("its H.264 has no parameter sets (avcC)")
    nal_length_size = (data[c + 4] & 3) + 1
    sets, off = [], c + 5
    for mask in (0x1F, 0xFF):  # SPS count in 5 bits, then PPS count in 8
        count = data[off] & mask
        off += 1
        for _ in range(count):
            (n,) = struct.unpack_from(">H", data, off)
            sets.append(data[off + 2 : off + 2 + n])
            off += 2 + n

    sizes = _sample_sizes(data, boxes[(*stbl, b"stsz")])
    offsets = _sample_offsets(data, boxes, stbl, sizes)
    deltas = [d for n, d in _table(data, boxes.get((*stbl, b"stts")), "II") for _ in range(n)]
    ctts_box = boxes.get((*stbl, b"ctts"))
    signed = ctts_box is not None and data[ctts_box[0]] == 1
    shifts = [s for n, s in _table(data, ctts_box, "Ii" if signed else "II") for _ in range(n)] or [0] * len(sizes)
    sync = {n - 1 for (n,) in _table(data, boxes.get((*stbl, b"stss")), "I")} if (*stbl, b"stss") in boxes else None
    start = _edit_start(data, boxes.get((*trak, b"edts", b"elst")))
    if len(deltas) < len(sizes) or len(shifts) < len(sizes):
        raise ValueError("its sample tables disagree")

    samples, dts = [], 0
    for i, (offset, size) in enumerate(zip(offsets, sizes)):
        if offset + size > len(data):
            raise ValueError("a sample runs past the end of the file")
        samples.append(Sample(data[offset : offset + size], dts - start, dts + shifts[i] - start, sync is None or i in sync))
        dts += deltas[i]
    return H264Track(timescale, nal_length_size, tuple(sets), tuple(samples))


def _sample_sizes(data: bytes, box: tuple[int, int]) -> list[int]:
    a, _ = box
    fixed, count = struct.unpack_from(">II", data, a + 4)
    return [fixed] * count if fixed else list(struct.unpack_from(f">{count}I", data, a + 12))


def _sample_offsets(data: bytes, boxes: dict, stbl: tuple, sizes: list[int]) -> list[int]:
    """Each sample's byte offset, from the chunk offsets (stco/co64), samples per chunk (stsc) and sizes."""
    chunk_starts = [o for (o,) in (_table(data, boxes[(*stbl, b"stco")], "I") if (*stbl, b"stco") in boxes
                                   else _table(data, boxes[(*stbl, b"co64")], "Q"))]
    runs = _table(data, boxes[(*stbl, b"stsc")], "III")  # (first chunk, from 1; samples per chunk; description)
    count = len(sizes)
    offsets, sample = [], 0
    for r, (first, per_chunk, _) in enumerate(runs):
        last = runs[r + 1][0] - 1 if r + 1 < len(runs) else len(chunk_starts)
        for chunk in range(first - 1, last):
            off = chunk_starts[chunk]
            for _ in range(per_chunk):
                if sample == count:
                    return offsets
                offsets.append(off)
                off += sizes[sample]
                sample += 1
    if len(offsets) != count:
        raise ValueError("its chunk tables do not cover every sample")
    return offsets


def _edit_start(data: bytes, box: tuple[int, int] | None) -> int:
    """Where the edit list starts the presentation, in media time (0 without one)."""
    if box is None:
        return 0
    a, _ = box
    version = data[a]
    (count,) = struct.unpack_from(">I", data, a + 4)
    if not count:
        return 0
    media_time = struct.unpack_from(">q" if version == 1 else ">i", data, a + 8 + (8 if version == 1 else 4))[0]
    return max(0, media_time)


def annex_b(track: H264Track, sample: Sample) -> bytes:
    """The access unit with start codes, as MPEG-TS carries it: an access unit delimiter first, and
    the parameter sets before each key frame (so that any segment decodes on its own)."""
    out = [b"\x00\x00\x00\x01\x09\xf0"]
    if sample.key:
        out += [b"\x00\x00\x00\x01" + ps for ps in track.parameter_sets]
    data, n, off = sample.data, track.nal_length_size, 0
    while off + n <= len(data):
        size = int.from_bytes(data[off : off + n], "big")
        nal = data[off + n : off + n + size]
        off += n + size
        if nal and nal[0] & 0x1F == 9:
            continue  # its own delimiter: there is one already
        out.append((b"\x00\x00\x01" if len(out) > 1 + sample.key * len(track.parameter_sets) else b"\x00\x00\x00\x01") + nal)
    return b"".join(out)
