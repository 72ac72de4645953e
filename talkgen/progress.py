"""Rich progress bars and the streamed conversation, on stderr, for the pipeline's callbacks."""

from __future__ import annotations

from talkgen.stages import Progress


class RichProgress(Progress):
    def __init__(self, console, enabled: bool = True):
        self.console = console
        self.quiet = not enabled
        self.bars = enabled and console.is_terminal  # bars only on a terminal; notes and replies always
        self._bar = None
        self._tasks: dict[str, object] = {}
        self._mid_line = False

    def stage(self, name: str, total: float | None, unit: str) -> None:
        """A bar per stage that runs; stages that overlap have theirs at once."""
        if not self.bars:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        if self._bar is None:
            self._bar = Progress(
                TextColumn("{task.description:10s}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[unit]}"),
                TimeRemainingColumn(), console=self.console, transient=True,
            )
            self._bar.start()
        self._tasks[name] = self._bar.add_task(name, total=total, unit=unit)

    def advance(self, n: float = 1, stage: str = "") -> None:
        if self._bar is not None and self._tasks:
            self._bar.advance(self._tasks.get(stage, next(reversed(self._tasks.values()))), n)

    def done(self, name: str, cache: str) -> None:
        self._end_line()
        task = self._tasks.pop(name, None)
        if task is not None and self._bar is not None:
            self._bar.remove_task(task)
        if not self._tasks:
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

    def segment(self, index: int, playlist, seconds: float) -> None:
        if index == 0 and not self.quiet:
            self._end_line()
            self.console.print(f"live: {playlist} (first segment {seconds:.1f} s after the start)", highlight=False, soft_wrap=True)

    def _end_line(self) -> None:
        if self._mid_line:
            self.console.print()
            self._mid_line = False

    def _finish_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            self._tasks = {}

    def close(self) -> None:
        self._end_line()
        self._finish_bar()
