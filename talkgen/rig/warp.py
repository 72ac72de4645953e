"""Smooth displacement fields that part the lips and swing the jaw, and their inversion.

The face is cut along the line where the lips meet into an upper part (skull, upper lip)
and a lower part (lower lip, jaw). Each part moves by a smooth field, the forward
displacement D: a source pixel s lands at s + D(s).

- Upper part: the upper lip lifts a little as the mouth opens (and, for a portrait that
  shows its teeth, first comes down to close it); the motion fades out towards the nose.
- Lower part: the lower lip takes the shape of the opening near the lips and rides on the
  jaw below them. The jaw drops as one piece, most at the chin and least at its sides,
  as it would swinging about a pivot near the ears, and the motion fades out over a wide
  band below the jaw outline, so the moved chin slides over the still neck without a tear.
- Both parts: the mouth corners move out for wide shapes and in for rounded ones.

Every field is zero outside a box around the mouth and jaw (the region of interest), so
the sampling map is only rebuilt there. Fields are built once per portrait as a few
images; a frame combines them with a handful of numbers and inverts them by one
fixed-point step (s = q - D(s)), which is exact to well under a pixel for motions this
gentle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from talkgen.rig.geometry import MouthGeometry

if TYPE_CHECKING:
    import numpy as np

# Of the gap between the lips, the share the upper lip makes by lifting.
LIFT_SHARE = 0.2
# The widest opening between the lips, in mouth widths: a wide-open "ah" in speech.
MAX_GAP = 0.30
# Corners move out by this share of the half-width for wide shapes, in for rounded ones.
WIDEN, ROUND = 0.10, 0.22
# The jaw's motion fades to nothing this far outside its outline (elliptical units).
JAW_FADE = 1.2


def _smoothstep(t: "np.ndarray") -> "np.ndarray":
    import numpy as np

    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _corner_profile(u: "np.ndarray") -> "np.ndarray":
    """Horizontal stretch of the lips: linear inside, fading to 0 two half-widths out; 1 at the corners."""
    import numpy as np

    def raw(v):
        return v * (1 - _smoothstep((np.abs(v) - 0.5) / 1.5))

    return raw(u) / raw(np.asarray(1.0))


@dataclass
class MouthPose:
    """One frame's mouth in face pixels: the opening, the corners' motion and the output lip edges."""

    gap: float  # the opening between the lips at the centre, pixels
    corner_dx: float  # how far each corner moves outward, pixels (negative: inward)
    cols: "np.ndarray"  # face columns of the region of interest
    upper: "np.ndarray"  # the upper lip's inner edge at each column, after the motion
    lower: "np.ndarray"
    shape: "np.ndarray"  # the opening's profile along the columns, 1 at the centre


class JawWarp:
    """The displacement fields for one portrait, over the region of interest."""

    def __init__(self, geo: MouthGeometry, size: int):
        import numpy as np

        self.geo = g = geo
        jaw_h = g.chin_y - g.line_y
        self.r_up = max(4.0, 0.2 * g.face_h)
        self.r_low = max(3.0, 1.3 * (g.lower_bottom - g.inner_bottom) + 2.0)
        self.r_v = 2.2 * g.lip_h
        reach = 1 + JAW_FADE
        xs = np.arange(size, dtype=np.float64)
        upper_top = float(np.min(g.inner_upper(xs[max(0, int(g.cx - g.hw)) : int(g.cx + g.hw) + 1])))
        r0 = int(max(0, min(upper_top - self.r_up, g.line_y - self.r_v) - 2))
        r1 = int(min(size, g.line_y + reach * jaw_h + 3))
        half = max(reach * g.jaw_hw, 2 * g.hw)
        c0, c1 = int(max(0, g.cx - half - 2)), int(min(size, g.cx + half + 3))
        self.rows, self.cols = slice(r0, r1), slice(c0, c1)
        y = np.arange(r0, r1, dtype=np.float64)[:, None]
        x = np.arange(c0, c1, dtype=np.float64)
        self.x = x.astype(np.float32)
        u = g.u(x)
        self.u = u
        meet, up, low = g.meet(x), g.inner_upper(x), g.inner_lower(x)
        self.meet = meet.astype(np.float32)
        self.inner_up = up.astype(np.float32)
        self.inner_low = low.astype(np.float32)
        # Where the portrait itself shows a gap between the lips, the lip edges are clamped so
        # that no pixel of its teeth or mouth is sampled as lip.
        self.has_gap = bool(np.any(low - up > 0.5))
        self._margin = np.where(low - up > 0.5, 0.3, 0.0).astype(np.float32)
        self.fx = (_corner_profile(u)[None, :] * (1 - _smoothstep(np.abs(y - meet) / self.r_v))).astype(np.float32)
        self.v_up = (1 - _smoothstep((up - y) / self.r_up)).astype(np.float32)
        v_low = 1 - _smoothstep((y - low) / self.r_low)
        self.v_low = v_low.astype(np.float32)
        # The jaw: most at the chin, least at its sides (nearest the pivot by the ears).
        depth = 0.3 + 0.7 * np.clip(1 - ((x - g.cx) / g.jaw_hw) ** 2, 0, 1)
        # Inside the mouth the lower lip carries the jaw at once; beside it the cheek stretches over a longer way.
        side = _smoothstep((np.abs(u) - 0.8) / 0.6)
        r_top = (1 - side) * (low - meet + self.r_low) + side * (0.5 * jaw_h)
        top = _smoothstep((y - meet) / np.maximum(r_top, 1.0))
        fade = 1 - _smoothstep((g.jaw_rho(x[None, :], y) - 1) / JAW_FADE)
        self.jaw = ((1 - v_low) * depth * top * fade).astype(np.float32)
        shape = self.rows.stop - self.rows.start, self.cols.stop - self.cols.start
        self._grid_x = np.broadcast_to(x.astype(np.float32), shape)
        self._grid_y = np.broadcast_to(y.astype(np.float32), shape)
        self._d_up = np.empty(shape + (2,), np.float32)
        self._d_low = np.empty(shape + (2,), np.float32)

    def pose(self, openness: float, width: float) -> MouthPose:
        """The mouth for openness 0..1 and width -1 (rounded) .. +1 (wide)."""
        import numpy as np

        g = self.geo
        gap = float(np.clip(openness, 0, 1)) * MAX_GAP * g.width
        dc = g.hw * (WIDEN * width if width > 0 else ROUND * width)
        # Rounded mouths open rounder: the gap keeps its height further towards the corners.
        power = 0.6 + 0.2 * min(0.0, width)
        shape = g.gap_shape(self.u, power).astype(np.float32)
        x_out = self.x + dc * _corner_profile(self.u)
        upper = self.meet - LIFT_SHARE * gap * shape
        lower = self.meet + (1 - LIFT_SHARE) * gap * shape
        return MouthPose(gap, dc, self.x, np.interp(self.x, x_out, upper).astype(np.float32),
                         np.interp(self.x, x_out, lower).astype(np.float32), shape)

    def sample_map(self, pose: MouthPose, qx: "np.ndarray", qy: "np.ndarray") -> None:
        """Turn face coordinates (qx, qy) of the output pixels in the region into source coordinates, in place."""
        import cv2
        import numpy as np

        shape = pose.shape
        prof_up = (self.meet - self.inner_up) - LIFT_SHARE * pose.gap * shape
        prof_low = (self.meet - self.inner_low) + (1 - LIFT_SHARE) * pose.gap * shape
        d_up, d_low = self._d_up, self._d_low
        np.multiply(self.fx, pose.corner_dx, out=d_up[..., 0])
        d_low[..., 0] = d_up[..., 0]
        np.multiply(self.v_up, prof_up, out=d_up[..., 1])
        np.multiply(self.v_low, prof_low, out=d_low[..., 1])
        d_low[..., 1] += pose.gap * self.jaw
        c0, r0 = self.cols.start, self.rows.start
        mid = 0.5 * (pose.upper + pose.lower)
        upper_part = qy <= mid[None, :]
        out_x, out_y = qx.copy(), qy.copy()
        for d, part in ((d_up, upper_part), (d_low, ~upper_part)):
            # One fixed-point step: s = q - D(q - D(grid)), with D sampled where s will be.
            sx = qx - d[..., 0]
            sy = qy - d[..., 1]
            at = cv2.remap(d, sx - c0, sy - r0, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            np.copyto(out_x, qx - at[..., 0], where=part)
            np.copyto(out_y, qy - at[..., 1], where=part)
        if self.has_gap:
            # The portrait's own gap stays hidden: lips are sampled up to their inner edges only.
            up_edge = np.interp(out_x, self.x, self.inner_up - self._margin).astype(np.float32)
            low_edge = np.interp(out_x, self.x, self.inner_low + self._margin).astype(np.float32)
            np.copyto(out_y, np.minimum(out_y, up_edge), where=upper_part)
            np.copyto(out_y, np.maximum(out_y, low_edge), where=~upper_part)
        qx[:] = out_x
        qy[:] = out_y
