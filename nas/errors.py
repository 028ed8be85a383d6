"""Errors that reach the user as one line and exit code 2 (bad input), never a traceback."""


class UsageError(Exception):
    """Bad input: a config key, a CLI option, missing data, an unknown study. Exit code 2."""

    exit_code = 2


class DataError(UsageError):
    """A dataset cannot be found or read; the message says how to get it."""
