"""Find the few face landmarks the puppet engine animates, with no model weights.

The puppet engine needs the mouth (corners, where the lips meet, how thick they are),
the eyes (for blinks) and a chin estimate (how far the jaw may drop). mediapipe, dlib
and downloaded models are not available on the machines talkgen must run on, so this
uses only what ships with OpenCV: its Haar face and eye cascades, followed by classical
image analysis inside the face box (lip colour, the dark line between the lips).

All the analysis happens on a "canonical" crop, resampled so that the face box is
CANON_W pixels wide whatever the picture's size: the kernel sizes and thresholds below
are therefore in canonical pixels, and the result scales with the picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from talkgen.errors import TalkgenError

CANON_W = 200

# A face narrower than this fraction of the picture's short side is not looked for: it
# would be too small to animate, and skipping small windows keeps detection fast.
_MIN_FACE_FRACTION = 0.08

# Face-box-relative search regions (fractions of the Haar box width/height). The Haar
# frontal box runs from about the eyebrows to just below the lower lip.
_MOUTH_ROI = (0.12, 0.88, 0.58, 1.10)
_EYE_ROI = (0.0, 1.0, 0.10, 0.62)

# Eye size from the Haar eye box: the box includes brow and cheek; the eye opening is
# about three quarters of its width and a little over a third as high as wide.
_EYE_W_PER_BOX = 0.75
_EYE_H_PER_W = 0.36

# Stomion-to-chin is about 0.72 of eye-to-stomion in adult anthropometric tables.
_CHIN_PER_EYE_MOUTH = 0.72
# Without eyes, fall back on the Haar box: the chin sits about 1.17 box heights down.
_CHIN_PER_BOX_H = 1.17


@dataclass(frozen=True)
class FaceLandmarks:
    """Face geometry in image pixels (x right, y down, integer coordinates at pixel centres).

    eyes holds (centre x, centre y, width, height) per eye found, left to right in the
    picture; 0 to 2 of them. inner_top_y and inner_bottom_y are the inner edges of the
    upper and lower lip down the middle: equal to lip_line_y when the mouth is closed,
    apart when the portrait shows teeth or an open mouth (None: not measured, taken as closed).
    """

    face_box: tuple[int, int, int, int]
    mouth_left: tuple[float, float]
    mouth_right: tuple[float, float]
    lip_line_y: float
    upper_lip_top: float
    lower_lip_bottom: float
    chin_y: float
    eyes: tuple[tuple[float, float, float, float], ...] = ()
    inner_top_y: float | None = None
    inner_bottom_y: float | None = None

    @property
    def inner_lips(self) -> tuple[float, float]:
        """(upper lip's inner edge, lower lip's inner edge) at the centre of the mouth."""
        top = self.lip_line_y if self.inner_top_y is None else min(self.inner_top_y, self.lip_line_y)
        bottom = self.lip_line_y if self.inner_bottom_y is None else max(self.inner_bottom_y, self.lip_line_y)
        return top, bottom

    def to_json(self) -> dict:
        return {
            "face_box": list(self.face_box),
            "mouth_left": list(self.mouth_left),
            "mouth_right": list(self.mouth_right),
            "lip_line_y": self.lip_line_y,
            "upper_lip_top": self.upper_lip_top,
            "lower_lip_bottom": self.lower_lip_bottom,
            "chin_y": self.chin_y,
            "eyes": [list(e) for e in self.eyes],
            **({} if self.inner_top_y is None else {"inner_top_y": self.inner_top_y}),
            **({} if self.inner_bottom_y is None else {"inner_bottom_y": self.inner_bottom_y}),
        }

    @classmethod
    def from_json(cls, d: dict) -> "FaceLandmarks":
        return cls(
            face_box=tuple(int(v) for v in d["face_box"]),
            mouth_left=tuple(float(v) for v in d["mouth_left"]),
            mouth_right=tuple(float(v) for v in d["mouth_right"]),
            lip_line_y=float(d["lip_line_y"]),
            upper_lip_top=float(d["upper_lip_top"]),
            lower_lip_bottom=float(d["lower_lip_bottom"]),
            chin_y=float(d["chin_y"]),
            eyes=tuple(tuple(float(v) for v in e) for e in d.get("eyes", ())),
            inner_top_y=None if d.get("inner_top_y") is None else float(d["inner_top_y"]),
            inner_bottom_y=None if d.get("inner_bottom_y") is None else float(d["inner_bottom_y"]),
        )


class NoFaceError(TalkgenError, ValueError):
    """No usable frontal face in the portrait. A TalkgenError so the CLI prints one line."""


def find_landmarks(image_rgb: np.ndarray, name: str = "portrait") -> FaceLandmarks:
    """Landmarks of the largest usable frontal face in an RGB (or grey) uint8 image."""
    rgb = _as_rgb_uint8(image_rgb, name)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    tried: list[tuple[int, int, int, int]] = []
    for box, votes in _detect_faces(gray):
        if any(_iou(box, t) > 0.6 for t in tried):
            continue
        tried.append(box)
        found = _landmarks_in_box(rgb, box, votes)
        if found is not None:
            return found
    raise NoFaceError(_no_face_message(name, rgb.shape))


def _no_face_message(name: str, shape: tuple[int, ...]) -> str:
    min_px = int(_MIN_FACE_FRACTION * min(shape[:2])) + 1
    return (
        f"no usable face found in {name}: use a front-facing, evenly lit portrait with the "
        f"mouth visible and the face at least {min_px} pixels wide"
    )


# ---------------------------------------------------------------- input


def _as_rgb_uint8(image: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise NoFaceError(f"{name} is not an image (array shape {arr.shape}): pass an RGB picture")
    if min(arr.shape[:2]) < 32:
        raise NoFaceError(
            f"{name} is only {arr.shape[1]}x{arr.shape[0]} pixels: use a portrait at least 128 pixels wide"
        )
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        # skimage-style float images live in [0, 1].
        scale = 255.0 if float(np.nanmax(arr)) <= 1.0 else 1.0
        arr = np.clip(np.nan_to_num(arr) * scale + 0.5, 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    if arr.shape[2] == 4:
        return np.ascontiguousarray(arr[:, :, :3])
    return np.ascontiguousarray(arr)


# ---------------------------------------------------------------- face boxes

_cascades: dict[str, "cv2.CascadeClassifier"] = {}


def _cascade(filename: str) -> "cv2.CascadeClassifier":
    # Loading a cascade parses a large XML file: do it once per process.
    if filename not in _cascades:
        if not hasattr(cv2, "CascadeClassifier"):
            raise TalkgenError(f"OpenCV {cv2.__version__} has no Haar cascades (5.x dropped them): install opencv-python-headless<5")
        cc = cv2.CascadeClassifier(cv2.data.haarcascades + filename)
        if cc.empty():
            raise RuntimeError(
                f"OpenCV's {filename} is missing: install opencv-python-headless<5, whose wheel ships the Haar cascades"
            )
        _cascades[filename] = cc
    return _cascades[filename]


def _detect_faces(gray: np.ndarray) -> list[tuple[tuple[int, int, int, int], int]]:
    """Candidate face boxes in image pixels, each with how many cascades agree on it.

    Clear detections (many overlapping hits) come first, largest first; weak ones (few
    hits) follow, to rescue harder pictures when no clear face turns out usable.
    """
    h, w = gray.shape
    # Resample so that the smallest face we look for is 32 px (the cascades' window is
    # 24 px): tiny pictures are upscaled, big ones shrunk, and detection costs the same
    # whatever the picture's size.
    scale = min(4.0, 32.0 / (_MIN_FACE_FRACTION * min(h, w)))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
    # Equalising helps dim or low-contrast portraits; the cascades were trained on
    # roughly normalised faces anyway.
    small = cv2.equalizeHist(small)
    raw = []
    for filename in ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml"):
        # Ungrouped hits, grouped below at two strengths: one cascade run serves both.
        hits = _cascade(filename).detectMultiScale(small, scaleFactor=1.1, minNeighbors=0, minSize=(32, 32))
        raw.append(np.asarray(hits, dtype=int).reshape(-1, 4).tolist())
    ranked: list[tuple[tuple[int, int, int, int], int]] = []
    # OpenCV's own defaults are 3 neighbours; 5 and 4 are the usual "sure" settings.
    for thresholds in ((5, 4), (2, 2)):
        boxes: list[tuple[int, int, int, int]] = []
        votes: list[int] = []
        for hits, threshold in zip(raw, thresholds):
            grouped, _ = cv2.groupRectangles(hits, threshold, 0.2) if hits else ((), None)
            for bx, by, bw, bh in np.asarray(grouped, dtype=float).reshape(-1, 4):
                box = (round(bx / scale), round(by / scale), round(bw / scale), round(bh / scale))
                same = [i for i, b in enumerate(boxes) if _iou(box, b) > 0.5]
                # Both cascades usually find the same face: keep the first one's box.
                if same:
                    votes[same[0]] += 1
                else:
                    boxes.append(box)
                    votes.append(1)
        ranked += sorted(zip(boxes, votes), key=lambda bv: (-bv[0][2] * bv[0][3], bv[0][1], bv[0][0]))
    return ranked


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


# ---------------------------------------------------------------- canonical crop


@dataclass(frozen=True)
class _Canon:
    """A crop around the face box resampled so the box is CANON_W pixels wide."""

    rgb: np.ndarray
    x0: int  # image pixel of the crop's top-left corner
    y0: int
    sx: float  # canonical pixels per image pixel
    sy: float
    box_u: float  # the face box's top-left corner in canonical pixels
    box_v: float
    box_w: float  # the face box's size in canonical pixels
    box_h: float

    def to_image(self, u: float, v: float) -> tuple[float, float]:
        # Pixel centres: canonical pixel u covers image [x0 + u/sx, x0 + (u+1)/sx).
        return (self.x0 + (u + 0.5) / self.sx - 0.5, self.y0 + (v + 0.5) / self.sy - 0.5)

    def u_at(self, fx: float) -> float:
        return self.box_u + fx * self.box_w

    def v_at(self, fy: float) -> float:
        return self.box_v + fy * self.box_h


def _canonical(rgb: np.ndarray, box: tuple[int, int, int, int]) -> _Canon:
    x, y, w, h = box
    # Room around the box: the chin and wide mouth corners fall outside a Haar box.
    x0, x1 = x - int(0.15 * w), x + w + int(0.15 * w)
    y0, y1 = y - int(0.10 * h), y + h + int(0.45 * h)
    ih, iw = rgb.shape[:2]
    pad = (max(0, -y0), max(0, y1 - ih), max(0, -x0), max(0, x1 - iw))
    crop = rgb[max(0, y0) : min(ih, y1), max(0, x0) : min(iw, x1)]
    if any(pad):
        crop = cv2.copyMakeBorder(crop, *pad, borderType=cv2.BORDER_REPLICATE)
    scale = CANON_W / w
    out_w, out_h = round((x1 - x0) * scale), round((y1 - y0) * scale)
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    canon = cv2.resize(crop, (out_w, out_h), interpolation=interp)
    sx, sy = out_w / (x1 - x0), out_h / (y1 - y0)
    return _Canon(canon, x0, y0, sx, sy, (x - x0) * sx, (y - y0) * sy, w * sx, h * sy)


# ---------------------------------------------------------------- landmarks


def _landmarks_in_box(rgb: np.ndarray, box: tuple[int, int, int, int], votes: int) -> FaceLandmarks | None:
    c = _canonical(rgb, box)
    lab = cv2.cvtColor(c.rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    gray = cv2.cvtColor(c.rgb, cv2.COLOR_RGB2GRAY)
    mouth = _mouth_by_colour(lab, c)
    by_colour = mouth is not None
    if mouth is None:
        mouth = _mouth_by_dark_line(lab[:, :, 0], c)
    if mouth is None:
        return None
    left, right, line_v, top_v, bottom_v, inner_top_v, inner_bottom_v = mouth
    if not _mouth_plausible(left, right, line_v, c):
        return None
    eyes = [e for e in _find_eyes(gray, c) if e[1] + e[3] / 2 < top_v]
    # A face box plus a red or dark mouth-like blob is weak evidence on its own (coins,
    # fabric, skin elsewhere): also insist on an eye, unless both face cascades agree
    # and the lips show their colour (closed eyes defeat the eye cascade).
    if not eyes and not (by_colour and votes >= 2):
        return None
    # A dark line is a weaker mouth than red lips: then ask for a matching pair of eyes.
    if not by_colour and len(eyes) < 2:
        return None
    if len(eyes) == 2:
        eye_v = (eyes[0][1] + eyes[1][1]) / 2
        chin_v = line_v + _CHIN_PER_EYE_MOUTH * (line_v - eye_v)
    else:
        chin_v = c.v_at(_CHIN_PER_BOX_H)
    chin_v = max(chin_v, bottom_v + 0.05 * c.box_h)

    # Plain rounded floats: the landmarks go into JSON manifests and cache keys.
    def pt(p: tuple[float, float]) -> tuple[float, float]:
        xi, yi = c.to_image(*p)
        return (round(float(xi), 2), round(float(yi), 2))

    def ys(v: float) -> float:
        return round(float(c.to_image(0.0, v)[1]), 2)

    image_eyes = []
    for u, v, ew, eh in eyes:
        ex, ey = pt((u, v))
        image_eyes.append((ex, ey, round(float(ew / c.sx), 2), round(float(eh / c.sy), 2)))
    return FaceLandmarks(
        face_box=tuple(int(b) for b in box),
        mouth_left=pt(left),
        mouth_right=pt(right),
        lip_line_y=ys(line_v),
        upper_lip_top=ys(top_v),
        lower_lip_bottom=ys(bottom_v),
        chin_y=ys(chin_v),
        eyes=tuple(sorted(image_eyes)),
        inner_top_y=ys(inner_top_v),
        inner_bottom_y=ys(inner_bottom_v),
    )


def _mouth_plausible(left: tuple[float, float], right: tuple[float, float], line_v: float, c: _Canon) -> bool:
    width = right[0] - left[0]
    centre_u = (left[0] + right[0]) / 2
    tilt = abs(right[1] - left[1])
    return (
        0.25 * c.box_w <= width <= 0.70 * c.box_w
        and c.v_at(0.5) <= line_v <= c.v_at(1.1)
        and c.u_at(0.3) <= centre_u <= c.u_at(0.7)
        and tilt <= 0.3 * width
    )


# ---------------------------------------------------------------- mouth

# (left corner, right corner, lip line, upper lip top, lower lip bottom, upper lip's inner
# edge, lower lip's inner edge), rows in canonical pixels.
_Mouth = tuple[tuple[float, float], tuple[float, float], float, float, float, float, float]


def _roi(c: _Canon, fracs: tuple[float, float, float, float], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    u0, u1 = max(0, int(c.u_at(fracs[0]))), min(shape[1], int(c.u_at(fracs[1])))
    v0, v1 = max(0, int(c.v_at(fracs[2]))), min(shape[0], int(c.v_at(fracs[3])))
    return u0, u1, v0, v1


def _mouth_by_colour(lab: np.ndarray, c: _Canon) -> _Mouth | None:
    u0, u1, v0, v1 = _roi(c, _MOUTH_ROI, lab.shape)
    # Lips are redder and less yellow than the skin around them: a* - b*/2 separates them
    # from skin better than a* alone (which also lights up flushed cheeks and the
    # nasolabial folds), and unlike a* - b* it does not rate white teeth (a* = b* = 0)
    # above yellowish skin. Blur first because JPEG chroma is blocky and subsampled.
    a = cv2.GaussianBlur(lab[v0:v1, u0:u1, 1], (0, 0), 2.0)
    b = cv2.GaussianBlur(lab[v0:v1, u0:u1, 2], (0, 0), 2.0)
    lipmap = a - 0.5 * b
    skin = float(np.median(lipmap))
    peak = float(np.percentile(lipmap, 99.5))
    # Below about 4 Lab units of contrast the "lips" are noise (grey pictures, masks).
    if peak - skin < 4.0:
        return None
    strong = lipmap > skin + 0.55 * (peak - skin)
    weak = lipmap > skin + 0.40 * (peak - skin)
    lips = _hysteresis(weak, strong)
    blob = _pick_blob(lips, c, u0, v0, vertical_bridge=0.12 * c.box_h)
    if blob is None:
        return None
    cols = np.flatnonzero(blob.any(axis=0))
    lips &= blob
    lum = lab[v0:v1, u0:u1, 0]
    # The red of the lips fades before the corners, which are dark creases: follow the
    # dark line between the lips out to where it ends.
    left, right = _trace_corners(_valley(lum, c), blob, int(cols[0]), int(cols[-1]), c)
    centre = int(round((left[0] + right[0]) / 2))
    half = max(2, int(0.03 * c.box_w))
    found = _lips_at_centre(lips, lab[v0:v1, u0:u1], centre, half, (left[1] + right[1]) / 2, right[0] - left[0])
    if found is None:
        return None
    line, top, bottom, inner_top, inner_bottom = found
    return (
        (left[0] + u0, left[1] + v0),
        (right[0] + u0, right[1] + v0),
        line + v0,
        top + v0,
        bottom + v0,
        inner_top + v0,
        inner_bottom + v0,
    )


def _hysteresis(weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    n, labels = cv2.connectedComponents(weak.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, dtype=bool)
    keep[np.unique(labels[strong])] = True
    keep[0] = False
    return keep[labels]


def _pick_blob(mask: np.ndarray, c: _Canon, u0: int, v0: int, vertical_bridge: float) -> np.ndarray | None:
    """The connected region most likely to be the mouth (upper and lower lip joined)."""
    k = max(3, int(vertical_bridge) | 1)
    # Bridge the gap between the lips (teeth, an open mouth) so both lips form one blob.
    closed = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (3, k)))
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(closed, connectivity=8)
    best, best_score = None, 0.0
    for i in range(1, n):
        area = stats[i, cv2.CC_STAT_AREA]
        if area < 0.002 * c.box_w * c.box_h or stats[i, cv2.CC_STAT_WIDTH] < 0.15 * c.box_w:
            continue
        fx = (centroids[i][0] + u0 - c.box_u) / c.box_w
        fy = (centroids[i][1] + v0 - c.box_v) / c.box_h
        # Prefer blobs centred horizontally at the usual mouth height of a Haar box.
        prior = np.exp(-0.5 * ((fx - 0.5) / 0.12) ** 2 - 0.5 * ((fy - 0.82) / 0.12) ** 2)
        score = area * prior
        if score > best_score:
            best, best_score = i, score
    if best is None:
        return None
    return labels == best


def _valley(lum: np.ndarray, c: _Canon) -> np.ndarray:
    """How much darker each pixel is than both pixels a lip-gap above and below it."""
    smooth = cv2.GaussianBlur(lum, (0, 0), 1.5)
    d = max(2, int(round(0.025 * c.box_h)))
    out = np.zeros_like(smooth)
    out[d:-d] = np.minimum(smooth[: -2 * d], smooth[2 * d :]) - smooth[d:-d]
    return out


def _trace_corners(
    valley: np.ndarray, blob: np.ndarray, left_u: int, right_u: int, c: _Canon
) -> tuple[tuple[float, float], tuple[float, float]]:
    rows = np.flatnonzero(blob.any(axis=1))
    top, bottom = int(rows[0]), int(rows[-1])
    inside = valley[top : bottom + 1, left_u : right_u + 1].max(axis=0)
    # A crease is "still there" while it keeps a fair share of its depth inside the mouth.
    floor = max(2.0, 0.3 * float(np.median(inside)))
    reach = int(0.12 * c.box_w)
    # Start well inside the mouth, where both lips are present: the blob's very ends are
    # often the tail of one lip only, away from the crease.
    span = right_u - left_u
    return (
        _trace(valley, blob, left_u + span // 4, -1, left_u - reach, floor),
        _trace(valley, blob, right_u - span // 4, +1, right_u + reach, floor),
    )


def _trace(
    valley: np.ndarray, blob: np.ndarray, start_u: int, step: int, stop_u: int, floor: float
) -> tuple[float, float]:
    """Follow the crease between the lips outward from start_u; return where it ends."""
    ys = np.flatnonzero(blob[:, start_u])
    v = int(ys[0]) + int(np.argmax(valley[ys[0] : ys[-1] + 1, start_u]))
    in_blob = blob.any(axis=0)
    stop_u = min(max(stop_u, 0), valley.shape[1] - 1)
    best = (float(start_u), float(v))
    misses = 0
    for u in range(start_u + step, stop_u + step, step):
        # Mouth corners curve but do not jump: let the line drift at most 2 rows a column.
        lo, hi = max(0, v - 2), min(valley.shape[0], v + 3)
        dv = int(np.argmax(valley[lo:hi, u]))
        if valley[lo + dv, u] < floor:
            # Between the lips the crease may break (teeth, an open mouth): carry on while
            # still within the lips; outside them, two weak columns end it.
            if in_blob[u]:
                best = (float(u), float(v))
                continue
            misses += 1
            if misses > 1:
                break
            continue
        misses = 0
        v = lo + dv
        best = (float(u), float(v))
    return best


def _lips_at_centre(
    lips: np.ndarray, lab: np.ndarray, centre: int, half: int, corner_v: float, mouth_w: float
) -> tuple[float, float, float, float, float] | None:
    """(lip line, upper lip top, lower lip bottom, inner edges of both lips) rows down the middle.

    A narrow band of lip mask down the middle shows runs of lip rows, and sometimes extra
    red runs (the philtrum or nose base, a shadow under the lower lip). Real lips run
    across most of the mouth, so narrow runs are dropped. Between the lips there may be a
    gap: an open mouth shows teeth or a dark cavity there, unlike the skin-coloured gaps
    around stray runs, so the gap least like skin is the mouth if it is unlike skin at
    all. Otherwise the lips are closed and meet along their darkest row.
    """
    cols = slice(max(0, centre - half), centre + half + 1)
    runs = [
        r for r in _runs(lips[:, cols].mean(axis=1) >= 0.5)
        if max(_row_extent(lips[row], centre) for row in range(*r)) >= 0.35 * mouth_w
    ]
    if not runs:
        return None
    skin = np.median(lab.reshape(-1, 3), axis=0)
    best_gap, best_diff = None, 0.12 * float(skin[0])
    for i in range(len(runs) - 1):
        gap = lab[runs[i][1] : runs[i + 1][0], cols].reshape(-1, 3)
        diff = float(np.linalg.norm(np.median(gap, axis=0) - skin))
        if diff > best_diff:
            best_gap, best_diff = i, diff
    if best_gap is not None:
        upper, lower = runs[best_gap], runs[best_gap + 1]
        line = (upper[1] + lower[0] - 1) / 2.0
        return line, upper[0] - 0.5, lower[1] - 0.5, upper[1] - 0.5, lower[0] - 0.5
    # Closed: the lips are the run nearest the corners; they touch along a thin shadow,
    # darker than the lip just above and below it. A thin upper lip is such a dark band
    # too, so prefer creases where the lip line usually is: about 40% of the way down
    # from the top of the upper lip to the bottom of the lower one.
    start, stop = min(runs, key=lambda r: max(0.0, r[0] - corner_v, corner_v - r[1]))
    profile = cv2.GaussianBlur(lab[:, cols, 0].mean(axis=1).reshape(-1, 1), (1, 3), 0).ravel()
    d = 3
    rows = np.arange(max(start, d), min(stop, len(profile) - d))
    if rows.size == 0:
        line = (start + stop - 1) / 2.0
        return line, start - 0.5, stop - 0.5, line, line
    crease = np.minimum(profile[rows - d], profile[rows + d]) - profile[rows]
    where = (rows - start) / max(1, stop - start)
    score = np.maximum(crease, 0) * np.exp(-0.5 * ((where - 0.42) / 0.2) ** 2)
    line = float(rows[int(np.argmax(score))])
    return line, start - 0.5, stop - 0.5, line, line


def _row_extent(row: np.ndarray, centre: int) -> int:
    """Length of the run of True in row that contains (or lies nearest) column centre."""
    runs = _runs(row)
    if not runs:
        return 0
    start, stop = min(runs, key=lambda r: max(0, r[0] - centre, centre - (r[1] - 1)))
    return stop - start


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, stop) runs of True."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2])]


def _mouth_by_dark_line(lum: np.ndarray, c: _Canon) -> _Mouth | None:
    """Fallback for grey pictures or pale lips: the mouth is a dark horizontal crease."""
    u0, u1, v0, v1 = _roi(c, _MOUTH_ROI, lum.shape)
    valley = _valley(lum[v0:v1, u0:u1], c)
    smooth = cv2.blur(valley, (max(3, int(0.05 * c.box_w)), 1))
    peak = float(np.percentile(smooth, 99.5))
    if peak < 4.0:
        return None
    blob = _pick_blob(smooth > 0.4 * peak, c, u0, v0, vertical_bridge=3)
    if blob is None:
        return None
    cols = np.flatnonzero(blob.any(axis=0))
    left, right = _trace_corners(valley, blob, int(cols[0]), int(cols[-1]), c)
    centre = int(round((left[0] + right[0]) / 2))
    half = max(2, int(0.03 * c.box_w))
    column = np.where(blob, smooth, -np.inf)[:, max(0, centre - half) : centre + half + 1].max(axis=1)
    if not np.isfinite(column.max()):
        return None
    line = float(np.argmax(column))
    # Without lip colour the lip edges are invisible: use typical lip heights.
    return (
        (left[0] + u0, left[1] + v0),
        (right[0] + u0, right[1] + v0),
        line + v0,
        line + v0 - 0.06 * c.box_h,
        line + v0 + 0.08 * c.box_h,
        line + v0,
        line + v0,
    )


# ---------------------------------------------------------------- eyes


def _find_eyes(gray: np.ndarray, c: _Canon) -> list[tuple[float, float, float, float]]:
    """Up to two eyes as (centre u, centre v, width, height) in canonical pixels."""
    u0, u1, v0, v1 = _roi(c, _EYE_ROI, gray.shape)
    roi = cv2.equalizeHist(gray[v0:v1, u0:u1])
    # Eye-cascade boxes on real faces are a fifth to a third of the face width; smaller
    # hits are texture (gravel, coin rims).
    lo, hi = int(0.16 * c.box_w), int(0.40 * c.box_w)
    candidates: list[tuple[float, float, float]] = []
    for filename in ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml"):
        found = _cascade(filename).detectMultiScale(
            roi, scaleFactor=1.05, minNeighbors=3, minSize=(lo, lo), maxSize=(hi, hi)
        )
        for ex, ey, ew, eh in np.asarray(found, dtype=float).reshape(-1, 4):
            u, v = ex + ew / 2 + u0, ey + eh / 2 + v0
            fy = (v - c.box_v) / c.box_h
            if 0.2 <= fy <= 0.55:
                candidates.append((u, v, ew))
        if len(candidates) >= 2:
            break
    pair = _best_eye_pair(candidates, c)
    return [(u, v, _EYE_W_PER_BOX * s, _EYE_W_PER_BOX * s * _EYE_H_PER_W) for u, v, s in pair]


def _best_eye_pair(cands: list[tuple[float, float, float]], c: _Canon) -> list[tuple[float, float, float]]:
    mid = c.u_at(0.5)
    left = [e for e in cands if e[0] < mid]
    right = [e for e in cands if e[0] >= mid]
    best, best_cost = [], np.inf
    for a in left:
        for b in right:
            sep = (b[0] - a[0]) / c.box_w
            if not 0.25 <= sep <= 0.65:
                continue
            # A real pair is level, alike in size and symmetric about the box centre.
            cost = (
                abs(b[1] - a[1]) / c.box_h
                + abs(np.log(b[2] / a[2]))
                + abs((a[0] + b[0]) / 2 - mid) / c.box_w
            )
            if cost < best_cost:
                best, best_cost = [a, b], cost
    if best:
        return best
    # No consistent pair: keep, per side, the candidate nearest the usual eye position.
    singles = []
    for side, fx in ((left, 0.3), (right, 0.7)):
        if side:
            target = (c.u_at(fx), c.v_at(0.38))
            singles.append(min(side, key=lambda e: np.hypot(e[0] - target[0], e[1] - target[1])))
    return singles
