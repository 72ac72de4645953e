"""The mouth and jaw as curves over the portrait's columns, from the finder's landmarks.

The finder gives the mouth corners, the lip line, the lips' outer and inner edges down the
middle and the chin. The curves between are modelled: the lips meet along a line that
runs from corner to corner through the lip line; the inner lip edges bow away from it like
an ellipse (the shape of a parted mouth), and the jaw outline is the lower half of an
ellipse through the chin whose width is the face's at the mouth (0.40 face-box widths,
which is where mediapipe's jaw contour sits on the test portraits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from talkgen.face import FaceLandmarks

# The inner lip edges of a parted mouth are close to an ellipse: (1 - u^2)^GAP_POWER.
GAP_POWER = 0.6
# Half the jaw's width at the mouth, in face-box widths.
JAW_HALF_WIDTH = 0.40


@dataclass(frozen=True)
class MouthGeometry:
    cx: float  # the mouth's centre column
    hw: float  # half the mouth's width
    corner_left: tuple[float, float]
    corner_right: tuple[float, float]
    line_y: float  # where the lips meet, at the centre
    upper_top: float  # the upper lip's outer edge, at the centre
    lower_bottom: float
    inner_top: float  # the upper lip's inner edge, at the centre (line_y when closed)
    inner_bottom: float
    chin_y: float
    jaw_hw: float  # half the jaw's width at the mouth
    face_h: float

    @classmethod
    def from_landmarks(cls, m: "FaceLandmarks") -> "MouthGeometry":
        (lx, ly), (rx, ry) = m.mouth_left, m.mouth_right
        cx, hw = (lx + rx) / 2, max(2.0, (rx - lx) / 2)
        top, bottom = m.inner_lips
        lip_h = max(2.0, m.lower_lip_bottom - m.upper_lip_top)
        # A chin estimate too close to the lips would leave the jaw no room to swing.
        chin = max(m.chin_y, m.lower_lip_bottom + lip_h)
        return cls(cx, hw, (lx, ly), (rx, ry), m.lip_line_y, m.upper_lip_top, m.lower_lip_bottom,
                   top, bottom, chin, max(1.3 * hw, JAW_HALF_WIDTH * m.face_box[2]), float(m.face_box[3]))

    @property
    def width(self) -> float:
        return 2 * self.hw

    @property
    def lip_h(self) -> float:
        return max(2.0, self.lower_bottom - self.upper_top)

    def u(self, x: "np.ndarray") -> "np.ndarray":
        """Columns as -1 (left corner) .. +1 (right corner)."""
        return (x - self.cx) / self.hw

    def corner_line(self, x: "np.ndarray") -> "np.ndarray":
        (lx, ly), (rx, ry) = self.corner_left, self.corner_right
        return ly + (ry - ly) * (x - lx) / max(1e-6, rx - lx)

    def meet(self, x: "np.ndarray") -> "np.ndarray":
        """Where the lips meet when closed; beyond the corners, the corner line carried on."""
        import numpy as np

        u = self.u(x)
        bow = np.clip(1 - u * u, 0, None)
        return self.corner_line(x) + (self.line_y - self.corner_line(np.asarray(self.cx))) * bow

    def gap_shape(self, u: "np.ndarray", power: float = GAP_POWER) -> "np.ndarray":
        """How far the inner lip edges stand from the meeting line, 1 at the centre, 0 at the corners."""
        import numpy as np

        return np.clip(1 - u * u, 0, None) ** power

    def inner_upper(self, x: "np.ndarray") -> "np.ndarray":
        """The portrait's upper inner lip edge (the meeting line for a closed mouth)."""
        return self.meet(x) - (self.line_y - self.inner_top) * self.gap_shape(self.u(x))

    def inner_lower(self, x: "np.ndarray") -> "np.ndarray":
        return self.meet(x) + (self.inner_bottom - self.line_y) * self.gap_shape(self.u(x))

    def jaw_rho(self, x: "np.ndarray", y: "np.ndarray") -> "np.ndarray":
        """Elliptical distance from the mouth: 1 on the jaw outline (chin below, jaw's sides beside)."""
        import numpy as np

        return np.sqrt(((x - self.cx) / self.jaw_hw) ** 2 + ((y - self.line_y) / (self.chin_y - self.line_y)) ** 2)

    def jaw_outline(self, x: "np.ndarray") -> "np.ndarray":
        import numpy as np

        t = np.clip((x - self.cx) / self.jaw_hw, -1, 1)
        return self.line_y + (self.chin_y - self.line_y) * np.sqrt(1 - t * t)
