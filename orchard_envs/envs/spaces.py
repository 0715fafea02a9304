"""A text space that is honest about holding any string: tool output and JSON actions use all of Unicode."""

from __future__ import annotations

import string
from typing import Any

from gymnasium import spaces

SAMPLE_CHARSET = string.ascii_letters + string.digits + string.punctuation + " \n"


class AnyText(spaces.Text):
    """Any `str` up to `max_length` characters; `sample()` draws printable ASCII.

    Gymnasium's `Text` only contains strings over a fixed charset, which no shell output respects.
    """

    def __init__(self, max_length: int, seed: int | None = None) -> None:
        super().__init__(max_length=max_length, min_length=0, charset=SAMPLE_CHARSET, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"AnyText(max_length={self.max_length})"
