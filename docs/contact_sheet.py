"""Write docs/images/puppet-contact-sheet.png: the puppet's mouth shapes in real speech.

    python3 docs/contact_sheet.py [--out PATH]

Piper speaks a sentence; for the default portrait and for Grace Hopper (matplotlib's sample
picture, with the hand-placed landmarks from tests/data), the puppet's frames are picked by
the phoneme under them: closed (a pause), an open vowel, a rounded one, a wide one and a
bilabial. Each tile is the frame as rendered at 512x512, cropped around the face.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "Father saw two cheap sheep, and a moose drove home to Bombay."
KINDS = (
    ("closed", None),
    ("open vowel", set("aɑæɐʌ")),
    ("rounded", set("uoʊw")),
    ("wide", set("iɪe")),
    ("bilabial", set("mbp")),
)


def _speech(tmp: Path):
    from talkgen.speech import SpeechTrack

    (tmp / "s.txt").write_text(SENTENCE)
    subprocess.run([sys.executable, "-m", "talkgen", "render", "s.txt", "--say", "-o", "o.mp4", "--size", "128",
                    "--job-dir", "job", "-q"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
    return SpeechTrack.load(tmp / "job" / "speech.wav", tmp / "job" / "alignment.json")


def _pick(track, motion, fps: int) -> list[int]:
    sr = track.sample_rate
    n = len(motion["jaw"])
    under = [""] * n
    for sym, start, count in track.phonemes:
        for f in range(int(start * fps / sr), min(n, int((start + count) * fps / sr) + 1)):
            if start <= (f + 0.5) * sr / fps < start + count:
                under[f] = sym
    jaw, width = motion["jaw"], motion["width"]
    picks = []
    for name, symbols in KINDS:
        if symbols is None:
            frames = [f for f in range(n) if jaw[f] < 0.01 and motion["blink"][f] == 0]
            picks.append(frames[0])
            continue
        frames = [f for f in range(n) if under[f] in symbols]
        if name == "open vowel":
            picks.append(max(frames, key=lambda f: jaw[f]))
        elif name == "rounded":
            picks.append(min(frames, key=lambda f: width[f]))
        elif name == "wide":
            picks.append(max(frames, key=lambda f: width[f] + jaw[f]))
        else:
            picks.append(frames[len(frames) // 2])
    return picks


def main() -> None:
    import cv2
    import matplotlib
    import numpy as np

    from talkgen.engines.puppet import PuppetAvatar
    from talkgen.portrait import landmarks_path, load_portrait
    from talkgen.recipe import load_recipe

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "puppet-contact-sheet.png")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        track = _speech(tmp)
        hopper = tmp / "hopper.jpg"
        shutil.copy(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg", hopper)
        shutil.copy(ROOT / "tests" / "data" / "grace_hopper.landmarks.json", landmarks_path(hopper))
        rows = []
        for path in (None, hopper):
            recipe = load_recipe("cpu", ["render.size=512"])
            engine = PuppetAvatar(recipe.render, load_portrait(path, 512))
            fps = recipe.render.fps
            n = int(track.duration_s * fps)
            motion = engine.motion(track, 0, n)
            m = engine.portrait.landmarks
            fx, fy, fw, fh = m.face_box
            cx, cy = (m.mouth_left[0] + m.mouth_right[0]) / 2, (fy + m.chin_y) / 2 + 0.05 * fh
            half = 0.62 * fh
            tiles = []
            for (name, _), f in zip(KINDS, _pick(track, motion, fps)):
                frame = engine.frame(float(motion["jaw"][f]), float(motion["width"][f]), float(motion["blink"][f]),
                                     motion["sway"][f])
                y0, x0 = int(max(0, cy - half)), int(max(0, cx - half))
                tile = cv2.resize(frame[y0 : int(cy + half), x0 : int(cx + half)], (200, 200), interpolation=cv2.INTER_AREA)
                tile = cv2.cvtColor(tile, cv2.COLOR_RGB2BGR)
                cv2.rectangle(tile, (0, 176), (200, 200), (0, 0, 0), -1)
                cv2.putText(tile, f"{name} (frame {f})", (6, 193), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
                tiles.append(tile)
            rows.append(np.concatenate(tiles, axis=1))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.out), np.concatenate(rows, axis=0))
    print(args.out)


if __name__ == "__main__":
    main()
