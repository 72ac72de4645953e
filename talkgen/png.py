"""Write an RGB image as a PNG with the standard library and numpy alone.

The avatar ranks may run in a back end's own Python, where OpenCV or PIL need not be
installed, and LiveAvatar reads its reference image from a file.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def write_png(path: Path, rgb: "np.ndarray") -> None:
    """`rgb`: uint8 (height, width, 3). Lossless, so the file decodes to exactly these pixels."""
    import numpy as np

    image = np.ascontiguousarray(rgb, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"write_png needs an RGB image (height, width, 3), got shape {image.shape}")
    h, w = image.shape[:2]
    rows = np.zeros((h, w * 3 + 1), np.uint8)  # each row: filter type 0 (none), then its pixels
    rows[:, 1:] = image.reshape(h, w * 3)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, truecolour, no interlace
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
                           + chunk(b"IEND", b""))
