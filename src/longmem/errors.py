"""The error every command reports in one line with exit code 1."""


class UserError(Exception):
    """Bad input from the user (a missing file, a corrupt checkpoint, ...).

    The command line prints ``longmem: error: <message>`` and exits with 1,
    without a traceback.
    """
