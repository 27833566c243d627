"""The one exception type a user sees: the command line prints its message on one line."""


class GdTorchError(Exception):
    """A problem the user can fix (bad option, missing data, broken checkpoint).

    The command line prints ``gd-torch: error: <message>`` and exits with status 2,
    with no traceback; everything else is a bug and keeps its traceback. Subclasses that
    are not the user's mistake (an interrupted or diverged run) exit with their own status.
    """

    exit_code = 2
