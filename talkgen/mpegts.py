"""An MPEG-TS segment of the live stream, written in Python: H.264 access units and ADTS AAC frames,
each at its place on the stream's one timeline.

One program (PAT, then PMT on PID 0x1000), the video on PID 0x100 (carrying the clock), the audio
on 0x101: the layout ffmpeg's mpegts muxer gives, so players treat the segments as they did
when ffmpeg wrote them. Every segment starts with its tables and a key frame, so it plays on its
own (#EXT-X-INDEPENDENT-SEGMENTS).
"""

from __future__ import annotations

import functools
from typing import Iterable

PACKET = 188
PAT_PID, PMT_PID, VIDEO_PID, AUDIO_PID = 0x0000, 0x1000, 0x0100, 0x0101
CLOCK = 90_000  # PES timestamps count at 90 kHz


def _crc32_mpeg2(data: bytes) -> int:
    # CRC-32/MPEG-2 (not zlib's: no bit reflection, no final inversion), over two short tables once.
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def _section(table_id: int, extension: int, body: bytes) -> bytes:
    length = 5 + len(body) + 4  # the header after section_length, the body, the CRC
    head = bytes([table_id, 0xB0 | (length >> 8), length & 0xFF, extension >> 8, extension & 0xFF, 0xC1, 0x00, 0x00])
    section = head + body
    return section + _crc32_mpeg2(section).to_bytes(4, "big")


@functools.cache
def _tables() -> tuple[bytes, bytes]:
    pat = _section(0x00, 1, bytes([0x00, 0x01, 0xE0 | (PMT_PID >> 8), PMT_PID & 0xFF]))
    streams = b"".join(bytes([kind, 0xE0 | (pid >> 8), pid & 0xFF, 0xF0, 0x00])
                       for kind, pid in ((0x1B, VIDEO_PID), (0x0F, AUDIO_PID)))  # H.264; AAC in ADTS
    pmt = _section(0x02, 1, bytes([0xE0 | (VIDEO_PID >> 8), VIDEO_PID & 0xFF, 0xF0, 0x00]) + streams)
    return pat, pmt


def _timestamp(prefix: int, t: int) -> bytes:
    t &= (1 << 33) - 1
    return bytes([(prefix << 4) | ((t >> 29) & 0x0E) | 1, (t >> 22) & 0xFF, ((t >> 14) & 0xFE) | 1, (t >> 7) & 0xFF,
                  ((t << 1) & 0xFE) | 1])


def _pes(stream_id: int, pts: int, dts: int, payload: bytes) -> bytes:
    if dts == pts:
        flags, header = 0x80, _timestamp(0b0010, pts)
    else:
        flags, header = 0xC0, _timestamp(0b0011, pts) + _timestamp(0b0001, dts)
    length = 3 + len(header) + len(payload)
    return (b"\x00\x00\x01" + bytes([stream_id]) + (length if length <= 0xFFFF else 0).to_bytes(2, "big")
            + bytes([0x80, flags, len(header)]) + header + payload)


def _pcr(t: int) -> bytes:
    base = t & ((1 << 33) - 1)
    return bytes([base >> 25 & 0xFF, base >> 17 & 0xFF, base >> 9 & 0xFF, base >> 1 & 0xFF, (base & 1) << 7 | 0x7E, 0x00])


class _Packets:
    """188-byte packets, with each PID's continuity counter."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self._counter: dict[int, int] = {}

    def send(self, pid: int, payload: bytes, pcr: int | None = None, random_access: bool = False) -> None:
        """One PES or section, over as many packets as it takes; the last one padded by its adaptation field."""
        first, off = True, 0
        while first or off < len(payload):
            flags, extra = 0, b""
            if first and random_access:
                flags |= 0x40
            if first and pcr is not None:
                flags |= 0x10
                extra = _pcr(pcr)
            field = bytes([flags]) + extra if flags else b""
            room = PACKET - 4 - (1 + len(field) if field else 0)
            chunk = payload[off : off + room]
            short = room - len(chunk)
            if short:
                if field:
                    field += b"\xff" * short
                elif short == 1:
                    field = b""  # the adaptation field's length byte alone, 0
                else:
                    field = b"\x00" + b"\xff" * (short - 2)
                has_field = True
            else:
                has_field = bool(field)
            cc = self._counter.get(pid, 0)
            self._counter[pid] = (cc + 1) & 0x0F
            head = bytes([0x47, (0x40 if first else 0) | (pid >> 8), pid & 0xFF, (0x30 if has_field else 0x10) | cc])
            self.out.append(head + (bytes([len(field)]) + field if has_field else b"") + chunk)
            off += len(chunk)
            first = False


def segment(video: Iterable[tuple[int, int, bool, bytes]], audio: Iterable[tuple[int, bytes]]) -> bytes:
    """A segment from video access units (pts, dts, key frame, Annex B bytes) and ADTS AAC frames
    (pts, bytes), all times in 90 kHz ticks; the two interleaved by time."""
    video, audio = list(video), list(audio)
    # One AAC frame a PES, as ffmpeg's muxer makes them with no mux delay: the sound stays beside
    # its picture in the file (a frame of silence is 11 bytes: grouped by size, seconds would go in one).
    items = [(dts, 0, ("v", pts, dts, key, data)) for pts, dts, key, data in video]
    items += [(pts, 1, ("a", pts, pts, False, frame)) for pts, frame in audio]
    items.sort(key=lambda item: item[:2])

    # The clock runs this far behind the video, so that the audio (whose first frame, the encoder's
    # priming, plays before the first picture) never reaches a player later than it is due.
    delay = max(0, video[0][1] - min(pts for pts, _ in audio)) if video and audio else 0
    packets = _Packets()
    pat, pmt = _tables()
    packets.send(PAT_PID, b"\x00" + pat)  # pointer_field 0: the section starts at once
    packets.send(PMT_PID, b"\x00" + pmt)
    for _, _, (kind, pts, dts, key, data) in items:
        if kind == "v":
            packets.send(VIDEO_PID, _pes(0xE0, pts, dts, data), pcr=dts - delay, random_access=key)
        else:
            packets.send(AUDIO_PID, _pes(0xC0, pts, dts, data))
    return b"".join(packets.out)


def ticks(seconds: float) -> int:
    return round(seconds * CLOCK)

