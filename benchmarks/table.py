"""The table every benchmark prints: measure, time, result, target."""

from __future__ import annotations

import os
import platform


def print_table(title: str, rows: list[tuple[str, str, str, str]]) -> None:
    print(f"{title} on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    header = ("measure", "time", "result", "target")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(4)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths)))
