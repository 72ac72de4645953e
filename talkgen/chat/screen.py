"""What the chat shows: a prompt, streamed replies and notices, on a terminal or as plain text.

On a terminal, a notice from the render thread (a clip is ready) is printed above the
prompt and the half-typed line is drawn again. While a reply streams, a notice waits for the
reply's next word, goes on a line of its own, and the reply goes on under its first word: the
clip's live stream can be watched while the reply is still being written (its first segment
comes about a second after the question, the reply's end seconds later). When standard input
is not a terminal, every line is plain text with no control codes, so a script can read it,
and notices wait for the reply's line to end.
"""

from __future__ import annotations

import sys
import threading

PROMPT = "you> "
REPLY = "avatar> "


class Screen:
    def __init__(self, interactive: bool, file=None, terminal: bool | None = None):
        """`file` and `terminal`: where the chat's lines go and whether it is a terminal (standard
        output, and whether it is one, unless told)."""
        from rich.console import Console

        self.interactive = interactive
        plain = {"force_terminal": terminal} if interactive else {"force_terminal": False, "color_system": None, "no_color": True}
        self.out = Console(highlight=False, soft_wrap=True, emoji=False, file=file, **plain)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False, **plain)
        self._live = interactive and self.out.is_terminal
        self._lock = threading.RLock()
        self._state = "busy"  # "prompt" while waiting for a line, "reply" while one streams
        self._held: list[tuple[str, str]] = []
        self._at_word = False  # the reply streamed so far ends between words
        self._readline = None
        if interactive:
            try:
                import readline  # line editing and history for input()

                self._readline = readline
            except ImportError:
                pass

    # -- input ----------------------------------------------------------------------------
    def read(self) -> str | None:
        """The next line the person typed; None at the end of input."""
        with self._lock:
            self._flush_held()
            self._state = "prompt"
        try:
            if self.interactive:
                # \001 and \002 tell readline the colour codes take no room on the line.
                prompt = f"\001\x1b[1;32m\002{PROMPT}\001\x1b[0m\002" if self._live else PROMPT
                return input(prompt)
            line = sys.stdin.readline()
            if not line:
                return None
            line = line.rstrip("\r\n")
            self._print(PROMPT + line, "")
            return line
        except EOFError:
            if self.interactive:
                self.out.print()
            return None
        except KeyboardInterrupt:
            if self.interactive:
                self.out.print()
            raise
        finally:
            with self._lock:
                self._state = "busy"

    # -- a streamed reply -----------------------------------------------------------------
    def reply_start(self) -> None:
        with self._lock:
            self._state = "reply"
            self._first = True
            self._at_word = False
        self._print(REPLY, "bold cyan", end="")

    def reply_text(self, chunk: str) -> None:
        with self._lock:
            if self._first:
                chunk, self._first = chunk.lstrip(), False
            elif self._held and self._live and chunk and (self._at_word or chunk[0].isspace()):
                # Between two words: the notices on lines of their own, the reply on under its start.
                self.out.print()
                self._flush_held()
                self._print(" " * len(REPLY), "", end="")
                chunk = chunk.lstrip()
            if chunk:
                self._at_word = chunk[-1].isspace()
            self._print(chunk, "", end="")

    def reply_end(self, stopped: bool = False) -> None:
        self._print(" [stopped]" if stopped else "", "yellow")
        with self._lock:
            self._state = "busy"
            self._flush_held()

    # -- lines ----------------------------------------------------------------------------
    def line(self, text: str, style: str = "") -> None:
        self._print(text, style)

    def notice(self, text: str, style: str = "") -> None:
        """A line from any thread: at once at the prompt; while a reply streams, at its next word on
        a terminal, after its line otherwise."""
        with self._lock:
            if self._state == "reply":
                self._held.append((text, style))
            elif self._state == "prompt" and self._live:
                typed = self._readline.get_line_buffer() if self._readline else ""
                self.out.file.write("\r\x1b[2K")
                self._print(text, style)
                self.out.file.write(f"\x1b[1;32m{PROMPT}\x1b[0m{typed}")
                self.out.file.flush()
            else:
                self._print(text, style)

    def error(self, text: str) -> None:
        from rich.text import Text

        self.err.print(Text.assemble(("error: ", "bold red"), text))

    def status(self, text: str) -> None:
        from rich.text import Text

        self.err.print(Text(text, style="dim"))

    def _print(self, text: str, style: str, end: str = "\n") -> None:
        from rich.text import Text

        with self._lock:
            self.out.print(Text(text, style=style), end=end)
            self.out.file.flush()

    def _flush_held(self) -> None:
        held, self._held = self._held, []
        for text, style in held:
            self._print(text, style)
