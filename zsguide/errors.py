"""The one exception type that the command line turns into a single clear error line."""


class ZSGuideError(Exception):
    """A user-facing error: bad input, a missing file, a mismatched checkpoint.

    The message must name the offending file, option or value; ``python -m zsguide`` prints it as one line
    (``error: <message>``) and exits with status 2, without a traceback.
    """
