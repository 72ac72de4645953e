"""What shows between parted lips: a shaded cavity, the teeth and a hint of tongue.

Painted in face coordinates, so the upper teeth stay fixed to the skull while the lips
move over them, and the lower teeth and tongue ride on the jaw. Colours come from the
portrait: the lips' own colour, darkened, for the cavity and tongue; the teeth from the
portrait's own teeth when it shows them, else an off-white lit like the face.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from talkgen.rig.geometry import MouthGeometry

if TYPE_CHECKING:
    import numpy as np

    from talkgen.rig.warp import JawWarp, MouthPose

# Tooth boundaries across the upper front teeth, in half mouth widths from the centre:
# the central incisors meet at 0, then laterals, canines and premolars, narrowing.
_TOOTH_EDGES = (0.0, 0.25, 0.47, 0.66, 0.82)
_DEFAULT_TEETH = (236, 231, 218)
# The lower teeth's top edge: this share of the gap below where the lips meet.
LOWER_TEETH_DROP = 0.8


def _luma(rgb) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


class MouthInterior:
    def __init__(self, geo: MouthGeometry, image: "np.ndarray", warp: "JawWarp"):
        import numpy as np

        self.geo = g = geo
        self.warp = warp
        h, w = image.shape[:2]
        c0, c1 = int(max(0, g.cx - 0.5 * g.hw)), int(min(w, g.cx + 0.5 * g.hw + 1))

        def band(top: float, bottom: float) -> "np.ndarray":
            r0, r1 = int(np.ceil(top)), int(np.floor(bottom)) + 1
            r0, r1 = max(0, r0), min(h, r1)
            return image[r0:r1, c0:c1].reshape(-1, 3) if r1 > r0 and c1 > c0 else np.zeros((0, 3), np.uint8)

        lips = np.concatenate([band(g.upper_top + 1, g.inner_top - 1), band(g.inner_bottom + 1, g.lower_bottom - 1)])
        if len(lips) < 4:
            lips = band(g.line_y - g.lip_h / 3, g.line_y + g.lip_h / 3)
        lip = np.median(lips, axis=0) if len(lips) else np.array([150, 90, 90], float)
        skin = np.median(band(g.lower_bottom + 0.3 * g.lip_h, g.lower_bottom + 0.8 * g.lip_h), axis=0) \
            if len(band(g.lower_bottom + 0.3 * g.lip_h, g.lower_bottom + 0.8 * g.lip_h)) else lip
        self.teeth_from_portrait = False
        teeth = None
        gap = band(g.inner_top + 0.5, g.inner_bottom - 0.5)
        if g.inner_bottom - g.inner_top >= 2.5 and len(gap) >= 6:
            bright = gap[np.argsort([_luma(p) for p in gap])[len(gap) // 2 :]]
            candidate = np.median(bright, axis=0)
            # Only teeth are brighter than the lips; a dark gap is the portrait's open mouth.
            if _luma(candidate) > 1.15 * _luma(lip):
                teeth, self.teeth_from_portrait = candidate, True
        if teeth is None:
            # Teeth catch the same light as the face: scale an off-white by the skin's brightness.
            light = np.clip(_luma(skin) / 170.0, 0.5, 1.05)
            tint = skin / max(1.0, float(skin.mean()))
            teeth = np.asarray(_DEFAULT_TEETH, float) * light * (0.85 + 0.15 * tint)
        self.lip = lip.astype(np.float32)
        self.teeth = np.clip(teeth, 0, 255).astype(np.float32)
        self.cavity = np.clip(lip * 0.38 + 4, 0, 255).astype(np.float32)
        self.tongue = np.clip(lip * np.array([0.72, 0.5, 0.52]), 0, 255).astype(np.float32)

    def paint(self, out: "np.ndarray", pose: "MouthPose", r0: int, c0: int, qx: "np.ndarray", qy: "np.ndarray") -> None:
        """Paint the opening into out[r0:, c0:], given each of those pixels' face coordinates (qx, qy)."""
        import numpy as np

        g, w = self.geo, self.warp
        xs = w.x
        up = np.interp(qx, xs, pose.upper).astype(np.float32)
        low = np.interp(qx, xs, pose.lower).astype(np.float32)
        # How much of the pixel's height [qy - 0.5, qy + 0.5] lies between the lips: soft, exact edges.
        alpha = np.clip(np.minimum(qy + 0.5, low) - np.maximum(qy - 0.5, up), 0, 1)
        if not alpha.any():
            return
        meet = np.interp(qx, xs, w.meet).astype(np.float32)
        u = (qx - g.cx) / g.hw
        uu = u * u
        mw = g.width
        # Light falls off towards the corners and the back: the inside is a curved shell.
        around = np.clip(1 - uu, 0, 1)
        depth = np.clip((qy - up) / np.maximum(low - up, 0.5), 0, 1)
        cavity = self.cavity * (0.55 + 0.45 * around * (1 - 0.6 * np.sin(np.pi * depth)))[..., None]
        colour = cavity
        gap = pose.gap
        if gap > 0.08 * mw:
            # The tongue lies low, behind the lower teeth, and shows on open vowels.
            top = meet + 0.55 * gap + 0.35 * mw * uu
            t = np.clip(qy - top + 0.5, 0, 1) * np.clip(1 - uu * 1.6, 0, 1)
            tongue = self.tongue * (0.55 + 0.45 * np.clip((qy - top) / 2.0, 0, 1) * around)[..., None]
            colour = colour + t[..., None] * (tongue - colour)
        # Lower teeth ride on the jaw, just above the lower lip.
        edge_low = meet + LOWER_TEETH_DROP * gap - 0.03 * mw + 0.25 * mw * uu
        lt = np.clip(qy - edge_low + 0.5, 0, 1) * np.clip(1.6 - 1.6 * np.abs(u), 0, 1)
        lower_teeth = self.teeth * (0.8 * (0.55 + 0.45 * around))[..., None]
        colour = colour + lt[..., None] * (lower_teeth - colour)
        # Upper teeth are fixed to the skull: their edge sits just below where the lips meet.
        edge_up = meet + 0.035 * mw - 0.14 * mw * uu
        ut = np.clip(edge_up - qy + 0.5, 0, 1) * np.clip(1.25 - 1.25 * np.abs(u), 0, 1)
        dist = np.min(np.abs(np.abs(u)[..., None] - np.asarray(_TOOTH_EDGES, np.float32)), axis=-1) * g.hw
        seams = 1 - 0.22 * np.exp(-(dist / 0.7) ** 2)
        under_lip = 0.7 + 0.3 * np.clip((qy - up) / 1.5, 0, 1)
        upper_teeth = self.teeth * (seams * under_lip * (0.5 + 0.5 * around))[..., None]
        colour = colour + ut[..., None] * (upper_teeth - colour)
        region = out[r0 : r0 + qx.shape[0], c0 : c0 + qx.shape[1]]
        a = alpha[..., None]
        region[:] = np.clip(region * (1 - a) + colour * a + 0.5, 0, 255).astype(np.uint8)
