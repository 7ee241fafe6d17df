"""Parsers for the comma-separated lists the CLI and configs take (``--shots``, ``--seeds``).

They live in the library, not in a workflow, so that every command parses (and refuses) the same
text the same way.
"""

from __future__ import annotations

from fmlab.errors import ConfigError


def parse_shots(text: str, what: str = "--shots") -> list[int | str]:
    """``"1,2,all"`` → ``[1, 2, "all"]``; every token a positive integer or ``all``.

    Args:
        text: the comma-separated list.
        what: the flag or key named in the error.

    Returns:
        The shots, in the given order.

    Raises:
        ConfigError: a token is neither a positive integer nor ``all``.

    Examples:
        >>> parse_shots("1, 4,all")
        [1, 4, 'all']
    """
    out: list[int | str] = []
    for tok in text.split(","):
        tok = tok.strip()
        if tok == "all":
            out.append("all")
        elif tok.isdigit() and int(tok) > 0:
            out.append(int(tok))
        else:
            raise ConfigError(f"{what}: {tok!r} is not a positive integer or 'all'")
    return out


def parse_ints(text: str, what: str, low: int | None = 0) -> list[int]:
    """``"1,2,3"`` → ``[1, 2, 3]``; each integer must be >= ``low`` (None: any).

    Seeds are non-negative (numpy's ``SeedSequence`` refuses negative entropy), hence ``low=0``.

    Args:
        text: the comma-separated list.
        what: the flag or key named in the error.
        low: the smallest allowed value, or None.

    Returns:
        The integers, in the given order (an empty text gives an error, not an empty list).

    Raises:
        ConfigError: a token is not an integer, is below ``low``, or the list is empty.

    Examples:
        >>> parse_ints("1,2,3", "--seeds")
        [1, 2, 3]
        >>> parse_ints("-1", "--seeds")
        Traceback (most recent call last):
        ...
        fmlab.errors.ConfigError: --seeds: -1 must be >= 0
    """
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a comma-separated list of integers") from None
    if not values:
        raise ConfigError(f"{what}: {text!r} holds no integers")
    for v in values:
        if low is not None and v < low:
            raise ConfigError(f"{what}: {v} must be >= {low}")
    return values
