"""Rich progress bars and the streamed conversation, on stderr, for the pipeline's callbacks."""

from __future__ import annotations

from talkgen.pipeline import Progress


class RichProgress(Progress):
    def __init__(self, console, enabled: bool = True):
        self.console = console
        self.quiet = not enabled
        self.bars = enabled and console.is_terminal  # bars only on a terminal; notes and replies always
        self._bar = None
        self._task = None
        self._mid_line = False

    def stage(self, name: str, total: float | None, unit: str) -> None:
        if not self.bars:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._finish_bar()
        self._bar = Progress(
            TextColumn(f"{name:10s}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit), TimeRemainingColumn(),
            console=self.console, transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(name, total=total)

    def advance(self, n: float = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def done(self, name: str, cache: str) -> None:
        self._end_line()
        self._finish_bar()
        if self.bars:
            self.console.print(f"{name:10s} {'cached' if cache == 'hit' else 'done'}", highlight=False)

    def note(self, message: str) -> None:
        if not self.quiet:
            self._end_line()
            self._finish_bar()
            self.console.print(f"[yellow]note:[/] {message}", highlight=False, soft_wrap=True)

    def turn(self, index: int, question: str) -> None:
        if not self.quiet:
            self._end_line()
            self._finish_bar()
            self.console.print(f"[bold]Q{index + 1}:[/] {question}", highlight=False, soft_wrap=True)
            self.console.print(f"[bold]A{index + 1}:[/]", end="", highlight=False)
            self._mid_line = True

    def text(self, chunk: str) -> None:
        if not self.quiet:
            self.console.print(chunk, end="", highlight=False, markup=False, soft_wrap=True)
            self._mid_line = True

    def _end_line(self) -> None:
        if self._mid_line:
            self.console.print()
            self._mid_line = False

    def _finish_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def close(self) -> None:
        self._end_line()
        self._finish_bar()
