"""The batch's live view on stderr: jobs done, running and failed; each worker's job and stage; time left.

"next" is the job a worker's look-ahead is making ready, and its stage. On a terminal it is a rich Live table redrawn a few times a second; elsewhere (a log, a
pipe) it is one line per job as it finishes, never a redraw.
"""

from __future__ import annotations

import time


class LiveView:
    def __init__(self, console, total: int, enabled: bool = True):
        self.console = console
        self.total = total
        self.enabled = enabled
        self.started = time.monotonic()
        self._live = None
        if enabled and console.is_terminal:
            from rich.live import Live

            self._live = Live(console=console, refresh_per_second=4, transient=True)
            self._live.start()

    def event(self, text: str, style: str = "") -> None:
        if not self.enabled:
            return
        self.console.print(f"[{style}]{text}[/]" if style else text, highlight=False, soft_wrap=True, markup=bool(style))

    def update(self, done: int, failed: int, workers: list[dict], left_s: float | None) -> None:
        if self._live is None:
            return
        from rich.table import Table

        running = sum(1 for w in workers if w.get("job"))
        pending = self.total - done - failed - running
        head = (f"{done} done, {running} running, {failed} failed, {max(0, pending)} waiting of {self.total}; "
                f"{time.monotonic() - self.started:.0f} s so far" + (f", about {left_s:.0f} s left" if left_s is not None else ""))
        table = Table(title=head, title_justify="left", show_edge=False)
        for col in ("worker", "node", "job", "stage", "chunk", "progress", "next"):
            table.add_column(col, overflow="fold")
        for w in workers:
            total = w.get("total")
            prog = f"{w.get('done', 0):.0f}/{total:.0f} {w.get('unit', '')}" if total else ""
            table.add_row(w.get("worker", "?"), str(w.get("node", ""))[:16], w.get("job") or "(idle)", w.get("stage") or "",
                          w.get("chunk", ""), prog, w.get("ahead", ""))
        self._live.update(table)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
