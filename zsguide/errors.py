"""The one exception type that the command line turns into a single clear error line, and the helper that makes
jsonargparse's multi-line messages one line."""

import re


class ZSGuideError(Exception):
    """A user-facing error: bad input, a missing file, a mismatched checkpoint.

    The message must name the offending file, option or value; ``python -m zsguide`` prints it as one line
    (``error: <message>``) and exits with status 2, without a traceback.
    """


def one_line(message: str) -> str:
    """jsonargparse's multi-line message as one line: 'Parser key "x": ...' becomes '--x: ...'."""
    message = re.sub(r"<class '([\w.]+)'>", r"\1", message)
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    if not lines:
        return "invalid arguments"
    head = lines[0]
    if head.startswith('Parser key "') and head.endswith('":'):
        key = head[len('Parser key "') : -2]
        given = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Given value:")), None)
        detail = next((ln.lstrip("- ") for ln in lines[1:] if ln.startswith(("Expected", "- Expected"))), lines[1:2])
        detail = detail if isinstance(detail, str) else " ".join(detail)
        if given is None and "Got value:" in detail:
            detail, given = (part.strip() for part in detail.split("Got value:", 1))
            detail = detail.rstrip(".")
        return f"invalid value for --{key}" + (f": {given!r}" if given is not None else "") + f" ({detail})"
    return "; ".join(lines)
