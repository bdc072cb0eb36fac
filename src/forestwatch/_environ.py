"""Performance settings read from the environment (``FORESTWATCH_IO_THREADS``,
``FORESTWATCH_SEARCH_PARTS``, ``FORESTWATCH_DECODED_CACHE_MIB``).

Why not config keys: they change no result, and a key of a config section that a rule's
params hold (the ``stac`` section is in every tile rule's) would rerun those rules when
it changed, on a deployment of thousands of tiles.
"""

from __future__ import annotations

import os


def whole_number(name: str, default: int, *, minimum: int, meaning: str) -> int:
    """The whole number in environment variable ``name``, or ``default`` when it is unset
    or empty. A value that is not a whole number of at least ``minimum`` raises a
    ``ValueError`` saying what to set (``meaning``: what the number counts, e.g. "reads in
    flight (1 or more)")."""
    value = os.environ.get(name, "")
    try:
        n = int(value) if value else default
    except ValueError:
        n = minimum - 1
    if n < minimum:
        raise ValueError(f"{name} is {value!r}; set it to a whole number of {meaning}, or "
                         f"unset it for the default ({default}).")
    return n


__all__ = ["whole_number"]
