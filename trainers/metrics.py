"""Where training metrics go: `metrics.jsonl` always, TensorBoard when installed, a rich progress bar."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


class MetricsLog:
    """Append-only JSONL, one object per logged step. On resume, rows after the resumed step (logged by the
    interrupted run, then lost with its state) are dropped first, so the curve has no duplicate steps."""

    def __init__(self, out: Path, resume_step: int | None) -> None:
        self.path = out / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            _keep_rows_through(self.path, resume_step)
        self._file = self.path.open("a")
        self._board = _tensorboard(out)

    def write(self, row: dict[str, Any]) -> None:
        """Append a row to metrics.jsonl (flushed) and its numbers to TensorBoard, if on."""
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._board is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, int | float):
                    self._board.add_scalar(f"train/{key}", value, row["step"])

    def close(self) -> None:
        """Close metrics.jsonl and the TensorBoard writer."""
        self._file.close()
        if self._board is not None:
            self._board.close()


def read_metrics(out: Path) -> list[dict[str, Any]]:
    """The rows of `out`/metrics.jsonl."""
    path = Path(out) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _keep_rows_through(path: Path, step: int) -> None:
    kept = [
        line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step
    ]
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=".metrics-")
    with os.fdopen(fd, "w") as handle:
        handle.write("".join(line + "\n" for line in kept))
    os.replace(staging, path)


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tensorboard"))


class Progress:
    """Loss, tokens/s and ETA on the terminal; silent when disabled (tests, other ranks)."""

    def __init__(
        self,
        total: int,
        start: int,
        enabled: bool,
        label: str = "sft",
        status: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        self._bar = None
        self._status = status or _sft_status
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn(label),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeRemainingColumn(),
            )
            self._task = self._bar.add_task(label, total=total, completed=start, status="")
            self._bar.start()

    def update(self, row: dict[str, Any]) -> None:
        """Show a step's loss, throughput and learning rate on the progress bar."""
        if self._bar is not None:
            self._bar.update(self._task, completed=row["step"], status=self._status(row))

    def close(self) -> None:
        """Stop the progress bar."""
        if self._bar is not None:
            self._bar.stop()


def _sft_status(row: dict[str, Any]) -> str:
    return f"loss {row['loss']:.4f}  {row['tokens_per_s']:,.0f} tok/s  lr {row['lr']:.2e}"
