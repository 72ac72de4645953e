"""The puppet avatar: animates a still portrait from the speech with no model weights.

Each frame is one cv2.remap of the portrait through a sampling map, then the inside of the
mouth painted where the lips part. The map is the head's slight sway, the face rig's
smooth jaw and lip motion (talkgen/rig/warp.py) and the eyelids' closing; the numbers
that drive it (openness, width, blink, sway) come from the phoneme alignment and the
audio level (talkgen/rig/visemes.py), and blinks and sway from a generator seeded by the
recipe. So every frame is a pure function of the speech, the portrait, the seed and its
own index: a chunk renders the same whether the job ran in one go or resumed after a crash.
"""

from __future__ import annotations

import math
from importlib import metadata
from typing import TYPE_CHECKING, Any, Iterator

from talkgen.engines.avatar import AvatarParts, AvatarTraits
from talkgen.engines.registry import Backend, Settings
from talkgen.speech import SILENCE_DB

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from talkgen.portrait import Portrait
    from talkgen.recipe import RenderConfig
    from talkgen.speech import SpeechTrack

_SMOOTH = (0.25, 0.5, 0.25)  # symmetric, so a chunk's frames never depend on where it was cut


def identity(config: RenderConfig) -> dict:
    return {"engine": "puppet", "version": metadata.version("talkgen"), "code": _code_hash()}


def traits(config: RenderConfig) -> AvatarTraits:
    return AvatarTraits(
        max_chunk_s=PuppetAvatar.max_chunk_s,
        frames_per_clip=PuppetAvatar.frames_per_clip,
        world_size=PuppetAvatar.world_size,
        identity=identity(config),
        check={"lip_sync": True},  # check.py's lip-sync bounds were calibrated on the puppet
        # motion() reads a frame of smoothing and one more, 4096 samples of spectral margin (0.19 s at
        # 22.05 kHz) and phonemes up to visemes' window and closure (0.105 s) past the chunk: 0.5 s covers it.
        lookahead_s=0.5,
    )


def load(config: RenderConfig, portrait: Portrait, rank: int = 0, world_size: int = 1, device: str = "cpu",
         state_dir: Path | None = None) -> PuppetAvatar:
    return PuppetAvatar(config, portrait)  # one process on the CPU, and every frame a function of its index


# No weights and no GPU; it renders only in talkgen's own process (cv2, no torch).
BACKEND = Backend(kind="avatar", names=("puppet",), identity=identity, check=None, load=load, memory=None,
                  formats=None, doctor=None,
                  avatar=AvatarParts(traits=traits, preflight=None, rank_settings=None, ranks=False),
                  settings=Settings(output=("size", "fps", "seed"), reload=("size", "fps", "seed")))


class PuppetAvatar:
    frames_per_clip = 1
    lead_frames = 0
    world_size = 1
    output_rank = 0
    max_chunk_s = 3600.0  # no model state to bound: the plan's own limit applies

    def __init__(self, config: RenderConfig, portrait: "Portrait"):
        self.config = config
        self.fps = config.fps
        self.width = self.height = config.size
        self._seed = config.seed
        self.use_portrait(portrait)

    def use_portrait(self, portrait: "Portrait") -> None:
        """The rig of `portrait`: everything but the settings depends on it."""
        import numpy as np

        self.portrait = portrait
        self._source = np.ascontiguousarray(portrait.image)
        size = self.config.size
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        self._X, self._Y = xs, ys
        self._mx = np.empty((size, size), np.float32)
        self._my = np.empty((size, size), np.float32)
        # Outside the moving region (head, jaw, eyes) every frame is the portrait itself.
        self._out = self._source.copy()
        np.copyto(self._mx, xs)
        np.copyto(self._my, ys)
        self._prepare_fields()
        from talkgen.rig.geometry import MouthGeometry
        from talkgen.rig.interior import MouthInterior
        from talkgen.rig.warp import JawWarp

        geo = MouthGeometry.from_landmarks(portrait.landmarks)
        self._warp = JawWarp(geo, size)
        self._interior = MouthInterior(geo, self._source, self._warp)
        # The sway moves the face by up to about 1% of the frame; the opening is painted that much wider.
        self._sway_pad = int(math.ceil(0.012 * size)) + 2
        # The only pixels a frame changes: the head (which holds the eyes) and the jaw's region.
        (hr, hc), wr, wc = self._head, self._warp.rows, self._warp.cols
        self._moving = (slice(min(hr.start, wr.start), max(hr.stop, wr.stop)),
                        slice(min(hc.start, wc.start), max(hc.stop, wc.stop)))

    # -- identity and continuity ------------------------------------------------------
    def identity(self) -> dict:
        return {
            **identity(self.config),
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
        x, y = self._X[0], self._Y[:, 0]
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
        # The head turns about the neck, just below the chin.
        cx = (m.mouth_left[0] + m.mouth_right[0]) / 2
        chin = max(m.chin_y, 2 * m.lower_lip_bottom - m.upper_lip_top)
        self._pivot = (cx, min(float(size - 1), chin + 0.15 * fh))
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
        """Openness ("jaw"), width, blink and sway for frames [start, end), independent of chunking."""
        import numpy as np

        from talkgen.rig import visemes

        pad = len(_SMOOTH) // 2
        f0, f1 = start - pad, end + pad
        sr, fps = track.sample_rate, self.fps
        margin = 4096  # room for the spectral window around the first and last frame
        a0 = f0 * sr // fps - margin
        audio = track.read(a0, f1 * sr // fps + sr // fps + margin)
        n = f1 - f0
        level = np.empty(n, np.float32)
        for i in range(n):
            f = f0 + i
            a = audio[f * sr // fps - a0 : (f + 1) * sr // fps - a0]
            rms = float(np.sqrt(np.mean(a * a))) if len(a) else 0.0
            level[i] = 20 * math.log10(max(rms, 1e-6))
        loud = np.convolve(np.clip((level - SILENCE_DB) / 25.0, 0, 1), np.asarray(_SMOOTH, np.float32), mode="valid")
        frames = np.arange(start, end)
        centres = ((frames + 0.5) * sr / fps).astype(np.int64)
        if track.aligned and track.phonemes:
            shape_open, width, shut = visemes.from_alignment(track, centres / sr)
        else:
            shape_open, width = visemes.from_spectrum(audio, sr, centres - a0, loud)
            shut = np.zeros_like(shape_open)
        # Silence shuts the mouth. The jaw follows the voice's level as well as the phoneme's
        # shape (louder syllables open wider), and a bilabial closes the lips whatever its neighbours.
        gate = np.clip(loud / 0.15, 0, 1)
        jaw = (0.6 * shape_open + 0.4 * loud) * loud * gate * (1 - shut)
        return {"jaw": jaw.astype(np.float32), "width": (width * gate).astype(np.float32),
                "blink": self._blinks(frames), "sway": self._sway(frames)}

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
        """One frame for openness `jaw` (0..1) and `width` (-1 rounded .. +1 wide); the array is reused."""
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
        moving = self._moving
        np.copyto(mx[moving], X[moving])
        np.copyto(my[moving], Y[moving])
        head = self._head
        hx, hy, w = X[head], Y[head], self._head_weight
        mx[head] += w * ((c0 - 1) * hx + c1 * hy + c2)
        my[head] += w * (d0 * hx + (d1 - 1) * hy + d2)
        # From here mx, my hold face coordinates: the mouth moves within the swaying head.
        warp = self._warp
        pose = warp.pose(jaw, width)
        band = None
        if pose.gap > 0.05 or abs(pose.corner_dx) > 0.02 or warp.has_gap:
            qx, qy = mx[warp.rows, warp.cols], my[warp.rows, warp.cols]
            band = self._opening_band(pose)
            if band is not None:
                face = qx[band].copy(), qy[band].copy()
            warp.sample_map(pose, qx, qy)
        if blink > 1e-3 and self._eye_rows.stop > self._eye_rows.start:
            eyes = self._eye_rows, self._moving[1]
            my[eyes] -= blink * self._lid_field[eyes]
        out = self._out[moving]
        cv2.remap(self._source, mx[moving], my[moving], cv2.INTER_LINEAR, dst=out, borderMode=cv2.BORDER_REPLICATE)
        self._out[moving] = out
        if band is not None:
            rows, cols = band
            self._interior.paint(self._out, pose, warp.rows.start + rows.start, warp.cols.start + cols.start, *face)
        return self._out

    def _opening_band(self, pose) -> "tuple[slice, slice] | None":
        """The rows and columns of the region of interest that the opening can cover, sway included."""
        import numpy as np

        open_cols = np.flatnonzero(pose.lower - pose.upper > 0.05)
        if open_cols.size == 0:
            return None
        warp, pad = self._warp, self._sway_pad
        h, w = warp.rows.stop - warp.rows.start, warp.cols.stop - warp.cols.start
        top = float(pose.upper[open_cols].min()) - warp.rows.start
        bottom = float(pose.lower[open_cols].max()) - warp.rows.start
        r0, r1 = max(0, int(top - pad)), min(h, int(math.ceil(bottom + pad)) + 1)
        k0, k1 = max(0, int(open_cols[0] - pad)), min(w, int(open_cols[-1] + pad) + 1)
        return (slice(r0, r1), slice(k0, k1)) if r1 > r0 and k1 > k0 else None


def _code_hash() -> str:
    """The hash of this file, the rig's and the speech track's: a change to the animation invalidates cached renders."""
    from talkgen.job import code_hash

    return code_hash(__name__, "talkgen.rig", "talkgen.speech")
