"""Errors a user can act on: the CLI prints their one-line message, never a traceback."""


class TalkgenError(Exception):
    """A failure with a message that says what to do. Exit code 1."""

    exit_code = 1


class UsageError(TalkgenError):
    """The command line or its inputs are wrong. Exit code 2."""

    exit_code = 2
