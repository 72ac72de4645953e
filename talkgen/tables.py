"""Tables for people on a terminal, and whole rows for scripts everywhere else.

Piped, a rich table narrows to 80 columns and folds values mid-word, so `talkgen weights
list | grep wan2.2-s2v` finds nothing. Off a terminal a table is printed as one line per
row, its values whole and separated by tabs, under a header line: grep, cut and awk read
it. The commands that print tables also have --json.
"""

from __future__ import annotations

from typing import Sequence


def on_terminal(console) -> bool:
    """Whether the console writes to a terminal: the stream itself, not rich's guess (FORCE_COLOR)."""
    try:
        return console.file.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def print_rows(console, columns: Sequence[str], rows: Sequence[Sequence[str]], title: str = "",
               right: Sequence[str] = (), end_rows: Sequence[Sequence[str]] = ()) -> None:
    """A table of `rows` (plus `end_rows`, a closing section such as a total) on `console`."""
    if on_terminal(console):
        from rich.table import Table

        table = Table(title=title or None, title_justify="left")
        for col in columns:
            table.add_column(col, justify="right" if col in right else "left", overflow="fold")
        for i, row in enumerate(rows):
            table.add_row(*row, end_section=bool(end_rows) and i == len(rows) - 1)
        for row in end_rows:
            table.add_row(*row)
        console.print(table)
        return
    lines = ([title] if title else []) + ["\t".join(columns)] + ["\t".join(_one_line(v) for v in row) for row in [*rows, *end_rows]]
    console.file.write("\n".join(lines) + "\n")
    console.file.flush()


def print_line(console, text: str) -> None:
    """One line of plain text, never folded, on a terminal or not."""
    console.print(text, soft_wrap=True, highlight=False, markup=False)


def _one_line(value: str) -> str:
    return " ".join(str(value).replace("\t", " ").split())
