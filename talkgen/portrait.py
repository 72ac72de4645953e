"""The portrait: load a picture, find the face, crop it square and scale it to the output size."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from talkgen.errors import UsageError
from talkgen.packaged import default_portrait

if TYPE_CHECKING:
    import numpy as np

    from talkgen.face import FaceLandmarks

DEFAULT_PORTRAIT = default_portrait()


@dataclass
class Portrait:
    image: "np.ndarray"  # RGB uint8, size x size
    landmarks: "FaceLandmarks | None"  # None in the avatar ranks, whose back ends use the picture alone
    source: Path
    sha256: str


RANK_IMAGE = "portrait.npy"


def hand_to_ranks(portrait: Portrait, folder: Path) -> dict:
    """Write the prepared portrait where the avatar ranks read it; what the rank request carries.

    The ranks may run in a back end's own Python, without OpenCV or the face finder, so they
    get the picture already found, cropped and scaled, as a numpy array.
    """
    import numpy as np

    path = folder / RANK_IMAGE
    np.save(path, portrait.image)
    return {"image": str(path.resolve()), "source": str(portrait.source), "sha256": portrait.sha256}


def from_launcher(data: dict) -> Portrait:
    """The portrait in an avatar rank, from what hand_to_ranks wrote."""
    import numpy as np

    return Portrait(image=np.load(data["image"]), landmarks=None, source=Path(data["source"]), sha256=data["sha256"])


def landmarks_path(path: Path) -> Path:
    return path.with_name(path.stem + ".landmarks.json")


def portrait_hash(path: Path | None) -> str:
    """The portrait's identity: its bytes and the landmarks file beside it, if any."""
    from talkgen.errors import TalkgenError
    from talkgen.job import sha256_file

    path = path or DEFAULT_PORTRAIT
    if not path.is_file():
        if path == DEFAULT_PORTRAIT:
            raise TalkgenError(f"the default portrait {path} is missing: reinstall talkgen")
        raise UsageError(f"portrait {path} does not exist")
    side = landmarks_path(path)
    return sha256_file(path) + (sha256_file(side)[:16] if side.is_file() else "")


def read_image(path: Path) -> "np.ndarray":
    import cv2
    import numpy as np

    if not path.exists():
        raise UsageError(f"portrait {path} does not exist")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise UsageError(f"cannot read portrait {path}: {exc.strerror}") from None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise UsageError(f"portrait {path} is not an image OpenCV can read: use a JPEG or PNG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_portrait(path: Path | None, size: int) -> Portrait:
    """Read, locate the face (or use the landmarks file beside it), crop square, resize."""
    from talkgen.face import FaceLandmarks, NoFaceError, find_landmarks
    from talkgen.job import sha256_file

    path = path or DEFAULT_PORTRAIT
    image = read_image(path)
    side_file = landmarks_path(path)
    if side_file.is_file():
        marks = FaceLandmarks.from_json(json.loads(side_file.read_text(encoding="utf-8")))
    else:
        try:
            marks = find_landmarks(image, name=str(path))
        except NoFaceError as exc:
            raise UsageError(str(exc)) from None
    image, marks = _square_crop(image, marks, size)
    return Portrait(image=image, landmarks=marks, source=path, sha256=sha256_file(path))


def _square_crop(image: "np.ndarray", marks: "FaceLandmarks", size: int):
    """Crop a square around the face, then scale it to size x size.

    The square is about four face widths (head and shoulders) but never smaller than
    the output, so a small face is not blown up into a blur, and never larger than the picture.
    """
    import cv2

    h, w = image.shape[:2]
    fx, fy, fw, fh = marks.face_box
    side = int(min(h, w, max(4 * fw, size)))
    cx, cy = fx + fw / 2, fy + fh / 2
    x0 = int(min(max(cx - side / 2, 0), w - side))
    y0 = int(min(max(cy - side / 2, 0), h - side))
    crop = image[y0 : y0 + side, x0 : x0 + side]
    scale = size / side
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    out = cv2.resize(crop, (size, size), interpolation=interp)
    return out, _transform(marks, scale, -x0, -y0)


def _transform(m: "FaceLandmarks", scale: float, dx: float, dy: float) -> "FaceLandmarks":
    """Landmarks after shifting by (dx, dy) and then scaling."""
    from dataclasses import replace

    def pt(p):
        return ((p[0] + dx) * scale, (p[1] + dy) * scale)

    x, y, w, h = m.face_box
    return replace(
        m,
        face_box=(round((x + dx) * scale), round((y + dy) * scale), round(w * scale), round(h * scale)),
        mouth_left=pt(m.mouth_left),
        mouth_right=pt(m.mouth_right),
        lip_line_y=(m.lip_line_y + dy) * scale,
        upper_lip_top=(m.upper_lip_top + dy) * scale,
        lower_lip_bottom=(m.lower_lip_bottom + dy) * scale,
        chin_y=(m.chin_y + dy) * scale,
        inner_top_y=None if m.inner_top_y is None else (m.inner_top_y + dy) * scale,
        inner_bottom_y=None if m.inner_bottom_y is None else (m.inner_bottom_y + dy) * scale,
        eyes=tuple(((ex + dx) * scale, (ey + dy) * scale, ew * scale, eh * scale) for ex, ey, ew, eh in m.eyes),
    )
