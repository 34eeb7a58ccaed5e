"""Errors caused by the user's input or environment; reported as one line, never a traceback."""


class UserError(Exception):
    pass


def one_line(exc: BaseException) -> str:
    """The first line of an exception and of each exception that caused it, joined."""
    parts = []
    while exc is not None:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if first not in parts:
            parts.append(first)
        exc = exc.__cause__
    return ": ".join(parts)
