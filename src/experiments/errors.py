"""Errors caused by the user's input or environment; reported as one line, never a traceback."""


class UserError(Exception):
    pass


def one_line(exc: BaseException) -> str:
    """The first line of an exception and of each exception that caused it, joined (with the
    second line where the first only announces it, as Hydra's 'raised while composing config:')."""
    parts = []
    while exc is not None:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        first = " ".join(lines[:2]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]
        if first not in parts:
            parts.append(first)
        exc = exc.__cause__
    return ": ".join(parts)
