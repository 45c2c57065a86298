"""Outcomes the command line reports by their message alone, without a traceback: errors caused
by the user's input (files, folders, options; exit code 2) and, as subclasses with their own
`exit_code`, runs that stopped on request (`hamgan.stopping.RunStopped`)."""


class HamganError(Exception):
    """Bad input with an actionable message."""

    exit_code = 2
