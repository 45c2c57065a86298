"""Errors caused by the user's input (files, folders, options): the command line prints
their message without a traceback."""


class HamganError(Exception):
    """Bad input with an actionable message."""
