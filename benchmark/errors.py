"""Errors that are the user's to fix (a missing store, a bad option value): every command prints them as one
line, ``error: ...``, and exits 2 (``benchmark.cli``). Config errors are :class:`benchmark.config.ConfigError`."""


class UserError(Exception):
    """Something the user asked for that cannot be done as asked; the message says what and where."""
