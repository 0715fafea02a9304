"""Packing examples into fixed-length rows without cross-contamination.

Each row holds whole examples back to back (first-fit decreasing), with position ids that restart at 0 for
every example: transformers reads those as sequence boundaries and masks attention accordingly, and the
first token of each example never gets a label, so no loss crosses from one example into the next.
An example longer than a row is cut to the row length (its tail replies lose their loss), and counted.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from orchard_envs.trainers.examples import Example
from orchard_envs.trainers.loss import IGNORE


@dataclass
class Row:
    """One training row: sequences packed end to end, position ids restarting at each."""

    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)

    def add(self, ids: list[int], mask: list[bool]) -> None:
        """Append a sequence; labels are shifted, and tokens with a False mask are not trained on."""
        self.input_ids += ids
        self.labels += [IGNORE] + [t if m else IGNORE for t, m in zip(ids[1:], mask[1:], strict=True)]
        self.position_ids += range(len(ids))

    @property
    def trained_tokens(self) -> int:
        """Labels that count in the loss."""
        return sum(label != IGNORE for label in self.labels)


@dataclass
class Packed:
    """Rows packed from examples, and what packing cut or dropped."""

    rows: list[Row]
    examples: int
    truncated_examples: int = 0
    truncated_tokens: int = 0  # trained tokens lost to the row length
    dropped_examples: int = 0  # no trained token left (all masked by credit assignment, or cut off)
    longest: int = 0  # tokens in the longest example, before any cut: the --seq-len that keeps them all

    @property
    def trained_tokens(self) -> int:
        """Labels that count in the loss, over all rows."""
        return sum(row.trained_tokens for row in self.rows)


def pack(examples: Sequence[tuple[Example, Collection[int] | None]], seq_len: int, pad_id: int) -> Packed:
    """Rows of exactly `seq_len` tokens from (example, trained message indices) pairs."""
    pieces: list[tuple[list[int], list[bool]]] = []
    packed = Packed([], len(examples))
    for example, trained in examples:
        mask = example.loss_mask(trained)
        packed.longest = max(packed.longest, len(mask))
        if len(mask) > seq_len:
            packed.truncated_examples += 1
            packed.truncated_tokens += sum(mask[seq_len:])
        ids, mask = example.input_ids[:seq_len], mask[:seq_len]
        if not any(mask[1:]):
            packed.dropped_examples += 1
            continue
        pieces.append((ids, mask))
    pieces.sort(key=lambda piece: len(piece[0]), reverse=True)
    free: list[int] = []  # room left in each row, to find a fit without rescanning the rows
    for ids, mask in pieces:
        slot = next((i for i, room in enumerate(free) if room >= len(ids)), None)
        if slot is None:
            packed.rows.append(Row())
            free.append(seq_len)
            slot = len(free) - 1
        packed.rows[slot].add(ids, mask)
        free[slot] -= len(ids)
    for row, room in zip(packed.rows, free, strict=True):
        if room:  # padding is its own "sequence" of positions 0.., never a label
            row.input_ids += [pad_id] * room
            row.labels += [IGNORE] * room
            row.position_ids += range(room)
    return packed
