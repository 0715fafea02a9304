"""A text space that holds any string and that Gymnasium's vector envs can carry.

Tool output and JSON actions use all of Unicode, which Gymnasium's `Text` (a fixed charset) does not hold.
And in Gymnasium 1.x an `AsyncVectorEnv` with `shared_memory=True` reads a `Text` buffer once, when it
starts, so text observations never change after that (every observation reads as `'a' * max_length`).
`AnyText` therefore registers its own shared memory with Gymnasium's vector utilities (the extension point
they name for custom spaces): each env's slot holds the string's length and then its code points as int32,
and the parent reads the slots afresh on every access. It also registers `flatten`/`unflatten`/
`flatten_space` over code points, so `gymnasium.spaces.flatten` takes any string.
"""

from __future__ import annotations

import string
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.spaces.utils import flatten, flatten_space, unflatten
from gymnasium.vector.utils import create_shared_memory, read_from_shared_memory, write_to_shared_memory

SAMPLE_CHARSET = string.ascii_letters + string.digits + string.punctuation + " \n"
CODEC = f"utf-32-{'le' if sys.byteorder == 'little' else 'be'}"  # a code point per native int32
PAD = sys.maxunicode + 1  # no character has this code point: it pads a flattened string


class AnyText(spaces.Text):
    """Any `str` up to `max_length` characters; `sample()` draws printable ASCII.

    Envs guarantee the bound by clipping what they return (`ToolEnv` does).
    """

    def __init__(self, max_length: int, seed: int | None = None) -> None:
        super().__init__(max_length=max_length, min_length=0, charset=SAMPLE_CHARSET, seed=seed)

    def contains(self, x: Any) -> bool:
        """Any string that fits, whatever its characters."""
        return isinstance(x, str) and len(x) <= self.max_length

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnyText) and other.max_length == self.max_length

    def __hash__(self) -> int:
        return hash((AnyText, self.max_length))

    def __repr__(self) -> str:
        return f"AnyText(max_length={self.max_length})"


def encode(space: AnyText, text: str) -> np.ndarray:
    """The string's code points (lone surrogates included), refusing one longer than the space allows."""
    if not isinstance(text, str) or len(text) > space.max_length:
        size = len(text) if isinstance(text, str) else type(text).__name__
        raise ValueError(f"{space!r} cannot hold a value of length/type {size}")
    return np.frombuffer(text.encode(CODEC, "surrogatepass"), dtype=np.int32)


def decode(codes: np.ndarray) -> str:
    """The inverse of `encode`."""
    return np.ascontiguousarray(codes, dtype=np.int32).tobytes().decode(CODEC, "surrogatepass")


class SharedTexts(Sequence[str]):
    """The parent's live view of the envs' slots; a deep copy (what `AsyncVectorEnv` returns by default)
    is a plain tuple of strings, as with shared memory off."""

    def __init__(self, buffer: Any, n: int, max_length: int) -> None:
        self._slots = np.frombuffer(buffer.get_obj(), dtype=np.int32).reshape(n, max_length + 1)

    def __len__(self) -> int:
        return len(self._slots)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(len(self))[index])
        slot = self._slots[index]
        return decode(slot[1 : 1 + int(slot[0])])

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    def __deepcopy__(self, memo: dict) -> tuple[str, ...]:
        return tuple(self)

    def __repr__(self) -> str:
        return f"SharedTexts({tuple(self)!r})"


@create_shared_memory.register(AnyText)
def _create(space: AnyText, n: int = 1, ctx: Any = None) -> Any:
    import multiprocessing

    return (ctx or multiprocessing).Array(np.dtype(np.int32).char, n * (space.max_length + 1))


@read_from_shared_memory.register(AnyText)
def _read(space: AnyText, shared_memory: Any, n: int = 1) -> SharedTexts:
    return SharedTexts(shared_memory, n, space.max_length)


@write_to_shared_memory.register(AnyText)
def _write(space: AnyText, index: int, value: str, shared_memory: Any) -> None:
    codes = encode(space, value)
    slot = np.frombuffer(shared_memory.get_obj(), dtype=np.int32)[index * (space.max_length + 1) :]
    slot[0] = len(codes)
    slot[1 : 1 + len(codes)] = codes


@flatten.register(AnyText)
def _flatten(space: AnyText, x: str) -> np.ndarray:
    flat = np.full(space.max_length, PAD, dtype=np.int32)
    codes = encode(space, x)
    flat[: len(codes)] = codes
    return flat


@unflatten.register(AnyText)
def _unflatten(space: AnyText, x: np.ndarray) -> str:
    codes = np.asarray(x, dtype=np.int32)
    return decode(codes[codes < PAD])


@flatten_space.register(AnyText)
def _flatten_space(space: AnyText) -> spaces.Box:
    return spaces.Box(low=0, high=PAD, shape=(space.max_length,), dtype=np.int32)
