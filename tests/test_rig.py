"""The puppet's face rig on several portraits: lips that part and meet, teeth, and a jaw without a tear."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from talkgen.engines.puppet import PuppetAvatar
from talkgen.portrait import landmarks_path, load_portrait
from talkgen.recipe import load_recipe

DATA = Path(__file__).resolve().parent / "data"
SIZE = 512


def _hopper(tmp: Path) -> Path:
    """Grace Hopper from matplotlib's sample data: a closed-mouth portrait, with hand-placed landmarks."""
    matplotlib = pytest.importorskip("matplotlib")  # installed here, though not a talkgen dependency

    src = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    dst = tmp / "hopper.jpg"
    shutil.copy(src, dst)
    shutil.copy(DATA / "grace_hopper.landmarks.json", landmarks_path(dst))
    return dst


def _darker(tmp: Path) -> Path:
    """The astronaut with a much darker skin tone (the whole picture darkened and warmed), found by the finder."""
    import cv2
    import skimage.data

    img = skimage.data.astronaut().astype(np.float32) / 255
    dark = np.clip(255 * (img ** 1.25) * np.array([0.52, 0.40, 0.33]), 0, 255).astype(np.uint8)
    path = tmp / "darker.png"
    cv2.imwrite(str(path), cv2.cvtColor(dark, cv2.COLOR_RGB2BGR))
    return path


def _mirrored(tmp: Path) -> Path:
    import cv2
    import skimage.data

    path = tmp / "mirrored.png"
    cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(skimage.data.astronaut()[:, ::-1]), cv2.COLOR_RGB2BGR))
    return path


PORTRAITS = {"astronaut": lambda tmp: None, "hopper": _hopper, "darker": _darker, "mirrored": _mirrored}


@pytest.fixture(scope="module", params=sorted(PORTRAITS))
def rig(request, tmp_path_factory):
    path = PORTRAITS[request.param](tmp_path_factory.mktemp(request.param))
    portrait = load_portrait(path, SIZE)
    return request.param, PuppetAvatar(load_recipe("cpu", [f"render.size={SIZE}"]).render, portrait)


def _still(engine, openness, width=0.0):
    return engine.frame(openness, width, 0.0, np.zeros(3)).copy()


def _mouth_box(engine):
    """The closed mouth's box: corner to corner, upper lip top to lower lip bottom."""
    m = engine.portrait.landmarks
    return (slice(int(m.upper_lip_top), int(np.ceil(m.lower_lip_bottom)) + 1),
            slice(int(m.mouth_left[0]), int(np.ceil(m.mouth_right[0])) + 1))


def _grey(rgb):
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def _dark_share(engine, frame, rest):
    box = _mouth_box(engine)
    threshold = 0.45 * np.median(_grey(rest)[box])
    return float((_grey(frame)[box] < threshold).mean())


def test_lips_meet_when_closed_and_part_into_a_dark_mouth(rig):
    name, engine = rig
    rest = _still(engine, 0.0)
    # Closed, the mouth is no darker than the portrait's own (a closed portrait's lip crease may be dark).
    own = _dark_share(engine, engine.portrait.image, rest)
    assert _dark_share(engine, rest, rest) <= own + 0.01, name
    wide_open = _still(engine, 1.0)
    assert _dark_share(engine, wide_open, rest) >= 0.10, name
    # Rounded and wide shapes move the corners in and out.
    assert _dark_share(engine, _still(engine, 0.5, -1.0), rest) > 0.02


def test_the_opening_lies_between_the_lips_and_shows_upper_teeth(rig):
    name, engine = rig
    warp = engine._warp
    pose = warp.pose(1.0, 0.0)
    frame = _still(engine, 1.0)
    g = warp.geo
    c = int(round(g.cx)) - warp.cols.start
    top, bottom = float(pose.upper[c]), float(pose.lower[c])
    column = _grey(frame)[:, int(round(g.cx))]
    inside = column[int(np.ceil(top)) + 1 : int(bottom)]
    # Just under the upper lip: teeth, brighter than the cavity below them.
    assert inside[:2].mean() > 1.6 * inside.min(), (name, inside)
    # The opening ends at the lower lip, whose colour comes back just below it.
    lip_below = _grey(frame)[int(bottom) + 2, int(round(g.cx))]
    assert lip_below > 1.5 * inside.min()
    teeth = engine._interior
    if name == "hopper":
        assert not teeth.teeth_from_portrait  # a closed mouth: the teeth are drawn
    if name == "astronaut":
        assert teeth.teeth_from_portrait  # she smiles with her teeth showing


def _sampling(engine, pose):
    """The full-frame sampling map for a still head: where each output pixel comes from."""
    warp = engine._warp
    sy, sx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    qx, qy = sx[warp.rows, warp.cols].copy(), sy[warp.rows, warp.cols].copy()
    warp.sample_map(pose, qx, qy)
    sx[warp.rows, warp.cols], sy[warp.rows, warp.cols] = qx, qy
    return sx, sy


def _grad(img):
    import cv2

    g = _grey(img)
    return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))


def tear_share(frame, portrait, band, sx, sy) -> float:
    """Share of the band where the frame's gradient is well beyond the portrait's at the same
    point of the face (where the map samples it): a tear or fold makes edges the face did not have."""
    import cv2

    own = cv2.remap(_grad(portrait), sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return float((_grad(frame) > 1.5 * own + 12)[band].mean())


def test_no_tear_where_the_jaw_meets_the_still_neck(rig):
    name, engine = rig
    pose = engine._warp.pose(1.0, 0.0)
    sx, sy = _sampling(engine, pose)
    gy, gx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    disp = np.hypot(sx - gx, sy - gy)
    below = gy > np.interp(gx, engine._warp.x, engine._warp.meet + pose.gap) + 2
    # Where the moved jaw meets the still face, neck, collar or background.
    band = below & (disp > 0.1) & (disp < 2.0)
    assert band.sum() > 200
    portrait = engine.portrait.image
    share = tear_share(_still(engine, 1.0), portrait, band, sx, sy)
    assert share < 0.01, (name, share)
    # The measure sees a tear: the same region moved down rigidly, cut along its edge.
    moved = below & (disp > 0.1)
    drop = max(2.0, round(pose.gap))
    tx, ty = gx.copy(), gy.copy()
    ty[moved] -= drop
    import cv2

    torn = cv2.remap(portrait, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    assert tear_share(torn, portrait, band, tx, ty) > 0.03, name


def test_shipped_landmarks_hold_the_inner_lips(tmp_path):
    from talkgen.portrait import DEFAULT_PORTRAIT

    shipped = json.loads(landmarks_path(DEFAULT_PORTRAIT).read_text())
    assert shipped["inner_top_y"] < shipped["lip_line_y"] < shipped["inner_bottom_y"]
