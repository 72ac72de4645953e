"""Rich progress bars on stderr for the pipeline's callbacks."""

from __future__ import annotations

from talkgen.pipeline import Progress


class RichProgress(Progress):
    def __init__(self, console, enabled: bool = True):
        self.console = console
        self.enabled = enabled and console.is_terminal
        self._bar = None
        self._task = None

    def stage(self, name: str, total: float | None, unit: str) -> None:
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._finish_bar()
        self._bar = Progress(
            TextColumn(f"{name:9s}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit), TimeRemainingColumn(),
            console=self.console, transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(name, total=total)

    def advance(self, n: float = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def done(self, name: str, cache: str) -> None:
        self._finish_bar()
        if self.enabled:
            self.console.print(f"{name:9s} {'cached' if cache == 'hit' else 'done'}", highlight=False)

    def _finish_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def close(self) -> None:
        self._finish_bar()
