"""Errors caused by the user's input: shown as one line, no traceback, non-zero exit."""


class UserError(Exception):
    """An error caused by the user's input; its message says what is wrong and what to do."""
