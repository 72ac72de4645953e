"""The puppet avatar: animates a still portrait from the speech with no model weights.

Each frame is one cv2.remap of the portrait through a displacement field built from a
few numbers: jaw opening, mouth width (wide or rounded), eyelid closure and a slight
head sway. The numbers come from the audio level and the phoneme under each frame, and
blinks and sway from a generator seeded by the recipe, so every frame is a pure function
of the speech, the portrait, the seed and its own index: a chunk renders the same
whether the job ran in one go or resumed after a crash.
"""

from __future__ import annotations

import hashlib
import math
from importlib import metadata
from typing import TYPE_CHECKING, Any, Iterator

from talkgen.speech import SILENT_SYMBOLS
from talkgen.stages.plan import SILENCE_DB

if TYPE_CHECKING:
    import numpy as np

    from talkgen.portrait import Portrait
    from talkgen.speech import SpeechTrack

# Viseme table for espeak IPA symbols: (jaw openness 0..1, width -1 rounded .. +1 wide).
_OPEN = {"a": 1.0, "ɑ": 1.0, "æ": 0.95, "ɐ": 0.85, "ʌ": 0.85, "ɔ": 0.8, "ɒ": 0.85, "aɪ": 1.0}
_MID = {"e": 0.6, "ɛ": 0.7, "ə": 0.55, "ɜ": 0.6, "o": 0.6, "ɚ": 0.5, "ɝ": 0.55}
_CLOSE = {"i": 0.35, "ɪ": 0.4, "u": 0.3, "ʊ": 0.35, "y": 0.3}
_ROUND = {"u": -1.0, "ʊ": -0.8, "o": -0.8, "ɔ": -0.6, "w": -1.0, "ɹ": -0.3, "ʃ": -0.5, "ʒ": -0.5, "ɒ": -0.4}
_WIDE = {"i": 0.8, "ɪ": 0.6, "e": 0.6, "ɛ": 0.5, "æ": 0.4, "s": 0.5, "z": 0.5, "j": 0.6}
_LIPS_SHUT = {"p": 0.0, "b": 0.0, "m": 0.0, "f": 0.15, "v": 0.15}
_MOUTH_INTERIOR = (58, 18, 24)
_TEETH = (226, 220, 208)
_SMOOTH = (0.1, 0.2, 0.4, 0.2, 0.1)  # symmetric, so a chunk's frames never depend on where it was cut


def viseme(symbol: str) -> tuple[float, float]:
    if symbol in SILENT_SYMBOLS:
        return 0.0, 0.0
    if symbol in _LIPS_SHUT:
        return _LIPS_SHUT[symbol], 0.0
    openness = _OPEN.get(symbol) or _MID.get(symbol) or _CLOSE.get(symbol) or 0.35
    width = _ROUND.get(symbol, _WIDE.get(symbol, 0.0))
    return openness, width


def traits(config) -> dict:
    return {
        "max_chunk_s": PuppetAvatar.max_chunk_s,
        "frames_per_clip": PuppetAvatar.frames_per_clip,
        "world_size": PuppetAvatar.world_size,
        "identity": {"engine": "puppet", "version": metadata.version("talkgen"), "code": _code_hash()},
        "check": {"lip_sync": True},  # check.py's lip-sync bounds were calibrated on the puppet
    }


class PuppetAvatar:
    frames_per_clip = 1
    lead_frames = 0
    world_size = 1
    output_rank = 0
    max_chunk_s = 3600.0  # no model state to bound: the plan's own limit applies

    def __init__(self, config, portrait: "Portrait"):
        import numpy as np

        self.config = config
        self.fps = config.fps
        self.width = self.height = config.size
        self.portrait = portrait
        self._seed = config.seed
        self._source = np.ascontiguousarray(portrait.image)
        size = config.size
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        self._X, self._Y = xs, ys
        self._mx = np.empty((size, size), np.float32)
        self._my = np.empty((size, size), np.float32)
        self._out = np.empty((size, size, 3), np.uint8)
        self._prepare_fields()

    # -- identity and continuity ------------------------------------------------------
    def identity(self) -> dict:
        return {
            **traits(self.config)["identity"],
            "portrait": self.portrait.sha256,
            "size": self.config.size,
            "fps": self.fps,
            "seed": self._seed,
        }

    def continuity_after(self, end_frame: int) -> Any:
        # Every frame is a function of its index alone, so the next chunk needs only where to start.
        return {"next_frame": end_frame}

    # -- geometry prepared once ---------------------------------------------------------
    def _prepare_fields(self) -> None:
        import numpy as np

        m = self.portrait.landmarks
        size = self.config.size
        fx, fy, fw, fh = m.face_box
        (lx, _), (rx, _) = m.mouth_left, m.mouth_right
        self._cx = (lx + rx) / 2
        self._hw = max(2.0, (rx - lx) / 2)
        self._ly = m.lip_line_y
        lip_h = max(2.0, m.lower_lip_bottom - m.upper_lip_top)
        self._chin = max(m.chin_y, m.lower_lip_bottom + lip_h)
        self._max_open = 0.5 * lip_h + 0.1 * self._hw
        x = self._X[0]
        u = (x - self._cx) / self._hw
        self._mouth_profile = (np.clip(1 - u * u, 0, 1) ** 0.35).astype(np.float32)  # a rounded-rectangle opening
        self._jaw_width = np.exp(-0.5 * ((x - self._cx) / (0.55 * fw)) ** 2).astype(np.float32)
        # Outside the mouth the skin stretches over a long ramp; inside it the lips part at once.
        self._ramp_len = (1.0 + (0.45 * fh) * (1 - np.minimum(1, 2.5 * self._mouth_profile))).astype(np.float32)
        y = self._Y[:, 0]
        below = np.clip((y - self._chin) / (0.25 * fh), 0, 1)
        self._below_chin = (1 - below * below * (3 - 2 * below)).astype(np.float32)
        # Width changes act on a blob around the lips.
        gx = np.exp(-0.5 * ((x - self._cx) / (1.3 * self._hw)) ** 2)
        gy = np.exp(-0.5 * ((y - self._ly) / (1.4 * lip_h)) ** 2)
        self._width_field = (np.outer(gy, gx) * (self._X - self._cx)).astype(np.float32)
        # Eyelids: pixels inside an eye sample from above it when the eye closes.
        lid = np.zeros((size, size), np.float32)
        for ex, ey, ew, eh in m.eyes:
            gx = np.exp(-0.5 * ((x - ex) / (0.45 * ew)) ** 2)
            gy = np.exp(-0.5 * ((y - ey) / (0.9 * eh)) ** 2)
            lid = np.maximum(lid, np.outer(gy, gx) * eh * 1.1)
        self._lid_field = lid
        self._eye_rows = slice(0, 0)
        if m.eyes:
            top = min(ey - 3 * eh for _, ey, _, eh in m.eyes)
            bottom = max(ey + 3 * eh for _, ey, _, eh in m.eyes)
            self._eye_rows = slice(max(0, int(top)), min(size, int(math.ceil(bottom))))
        self._mouth_rows = slice(max(0, int(self._ly - 3 * lip_h)), min(size, int(math.ceil(self._chin + 0.3 * fh))))
        self._pivot = (self._cx, min(float(size - 1), self._chin + 0.15 * fh))
        # The head sways, the body and background do not: the sway fades out around the head.
        hcx, hcy = fx + fw / 2, fy + fh / 2
        r0, r1 = int(max(0, hcy - 2.2 * fh)), int(min(size, hcy + 2.2 * fh))
        c0, c1 = int(max(0, hcx - 1.8 * fw)), int(min(size, hcx + 1.8 * fw))
        self._head = (slice(r0, r1), slice(c0, c1))
        hy, hx = self._Y[self._head], self._X[self._head]
        r = np.sqrt(((hx - hcx) / (0.9 * fw)) ** 2 + ((hy - hcy) / (1.1 * fh)) ** 2)
        t = np.clip(2.0 - r, 0, 1)
        self._head_weight = (t * t * (3 - 2 * t)).astype(np.float32)

    # -- motion: per-frame parameters -----------------------------------------------------
    def motion(self, track: "SpeechTrack", start: int, end: int) -> dict[str, "np.ndarray"]:
        """Jaw, width, blink and sway for frames [start, end), independent of chunking."""
        import numpy as np

        pad = len(_SMOOTH) // 2
        f0, f1 = start - pad, end + pad
        sr, fps = track.sample_rate, self.fps
        audio = track.read(f0 * sr // fps, f1 * sr // fps + sr // fps)
        n = f1 - f0
        level = np.empty(n, np.float32)
        jaw_shape = np.zeros(n, np.float32)
        width = np.zeros(n, np.float32)
        starts = np.fromiter((p[1] for p in track.phonemes), np.int64, len(track.phonemes))
        for i in range(n):
            f = f0 + i
            a = audio[f * sr // fps - f0 * sr // fps : (f + 1) * sr // fps - f0 * sr // fps]
            rms = float(np.sqrt(np.mean(a * a))) if len(a) else 0.0
            level[i] = 20 * math.log10(max(rms, 1e-6))
            centre = int((f + 0.5) * sr / fps)
            k = int(np.searchsorted(starts, centre, side="right")) - 1
            if 0 <= k < len(track.phonemes):
                sym, s, cnt = track.phonemes[k]
                if centre < s + cnt:
                    if sym in ("ː", "ˈ", "ˌ") and k > 0:
                        sym = track.phonemes[k - 1][0]
                    jaw_shape[i], width[i] = viseme(sym)
        loud = np.clip((level - SILENCE_DB) / 25.0, 0, 1)
        jaw = loud * np.where(jaw_shape > 0, jaw_shape, 0.3 * loud)
        kernel = np.asarray(_SMOOTH, np.float32)
        jaw = np.convolve(jaw, kernel, mode="valid")
        width = np.convolve(width * (loud > 0), kernel, mode="valid")
        frames = np.arange(start, end)
        return {"jaw": jaw, "width": width, "blink": self._blinks(frames), "sway": self._sway(frames)}

    def _blinks(self, frames: "np.ndarray") -> "np.ndarray":
        """Blink every 2-6 s from a seeded generator over the whole timeline."""
        import numpy as np

        out = np.zeros(len(frames), np.float32)
        if len(frames) == 0:
            return out
        rng = np.random.default_rng(self._seed)
        t = rng.uniform(0.8, 2.5) * self.fps
        last = frames[-1]
        shape = np.array([0.5, 1.0, 0.8, 0.35], np.float32)
        while t <= last:
            b = int(t)
            for j, v in enumerate(shape):
                idx = b + j - frames[0]
                if 0 <= idx < len(out):
                    out[idx] = v
            t += rng.uniform(2.0, 6.0) * self.fps
        return out

    def _sway(self, frames: "np.ndarray") -> "np.ndarray":
        """Slow rotation (degrees) and translation (pixels) from seeded sinusoids."""
        import numpy as np

        rng = np.random.default_rng(self._seed + 1)
        t = frames.astype(np.float64) / self.fps
        freq = rng.uniform(0.08, 0.35, size=(3, 2))
        phase = rng.uniform(0, 2 * np.pi, size=(3, 2))
        amp = np.array([0.9, 0.006 * self.config.size, 0.004 * self.config.size])
        out = np.zeros((len(frames), 3))
        for c in range(3):
            out[:, c] = amp[c] * 0.5 * (np.sin(2 * np.pi * freq[c, 0] * t + phase[c, 0]) + np.sin(2 * np.pi * freq[c, 1] * t + phase[c, 1]))
        return out

    # -- frames -----------------------------------------------------------------------------
    def render_chunk(self, track: "SpeechTrack", start_frame: int, end_frame: int, continuity: Any = None) -> Iterator["np.ndarray"]:
        mo = self.motion(track, start_frame, end_frame)
        for i in range(end_frame - start_frame):
            yield self.frame(float(mo["jaw"][i]), float(mo["width"][i]), float(mo["blink"][i]), mo["sway"][i])

    def frame(self, jaw: float, width: float, blink: float, sway) -> "np.ndarray":
        """One frame; the returned array is reused by the next call."""
        import cv2
        import numpy as np

        angle, tx, ty = float(sway[0]), float(sway[1]), float(sway[2])
        px, py = self._pivot
        a = math.radians(angle)
        ca, sa = math.cos(a), math.sin(a)
        # Inverse rotation about the pivot plus translation: where each output pixel comes from.
        c0, c1, c2 = ca, sa, px - ca * (px + tx) - sa * (py + ty)
        d0, d1, d2 = -sa, ca, py + sa * (px + tx) - ca * (py + ty)
        mx, my, X, Y = self._mx, self._my, self._X, self._Y
        np.copyto(mx, X)
        np.copyto(my, Y)
        head = self._head
        hx, hy, w = X[head], Y[head], self._head_weight
        mx[head] += w * ((c0 - 1) * hx + c1 * hy + c2)
        my[head] += w * (d0 * hx + (d1 - 1) * hy + d2)
        rows = self._mouth_rows
        if jaw > 1e-3 or abs(width) > 1e-3:
            my_rows = my[rows]
            depth = np.clip(my_rows - self._ly, 0, None)  # below the lip line, in portrait rows
            opening = (jaw * self._max_open) * (0.35 * self._jaw_width + 0.65 * self._mouth_profile)
            disp = np.minimum(depth / self._ramp_len, 1.0) * opening * self._below_chin[rows, None]
            my_rows -= disp
            # Pixels whose source crossed the lip line are inside the open mouth.
            inside = np.minimum(depth, self._ly - my_rows)
            gap = np.clip(inside, 0, 1) if jaw > 1e-3 else None
            if gap is not None:
                from_top = 1 - (self._ly - my_rows) / np.maximum(disp, 1e-3)
            mx[rows] -= (0.12 * width) * self._width_field[rows]
        else:
            gap = None
        if blink > 1e-3 and self._eye_rows.stop > self._eye_rows.start:
            my[self._eye_rows] -= blink * self._lid_field[self._eye_rows]
        cv2.remap(self._source, mx, my, cv2.INTER_LINEAR, dst=self._out, borderMode=cv2.BORDER_REPLICATE)
        if gap is not None and gap.any():
            self._fill_mouth(rows, gap, from_top)
        return self._out

    def _fill_mouth(self, rows: slice, gap: "np.ndarray", from_top: "np.ndarray") -> None:
        """Paint the inside of the open mouth: dark, with a band of upper teeth at the top."""
        import numpy as np

        ys, xs = np.nonzero(gap > 0)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        a = gap[y0:y1, x0:x1, None]
        teeth = np.clip((0.18 - from_top[y0:y1, x0:x1, None]) * 12, 0, 1)
        colour = teeth * np.asarray(_TEETH, np.float32) + (1 - teeth) * np.asarray(_MOUTH_INTERIOR, np.float32)
        region = self._out[rows][y0:y1, x0:x1]
        region[:] = (region * (1 - a) + colour * a).astype(np.uint8)


def _code_hash() -> str:
    """This file's hash: a change to the animation invalidates cached renders."""
    from pathlib import Path

    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
