"""Supervised fine-tuning on recorded episodes: `train(SFTConfig(...))`, also run by `orchard-train sft`.

A plain PyTorch loop around a Hugging Face model, kept short on purpose: packed rows (no cross-talk), the
loss only on trained tokens and in chunks (`loss`), AdamW with cosine decay after warmup, gradient
accumulation with the loss normalised by the trained tokens of the whole optimizer step (not per
micro-batch, which would weight short batches up), optional gradient checkpointing and LoRA, FSDP2 when
started by torchrun, resumable state and a standard checkpoint at the end.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from orchard_envs.errors import ConfigError
from orchard_envs.trainers.config import SFTConfig
from orchard_envs.trainers.distributed import World, finish, init_world, shard, sync_gradients
from orchard_envs.trainers.loss import CausalLMLoss
from orchard_envs.trainers.model_setup import (
    check_out,
    loaded,
    lora_config,
    notice,
    resumable,
    torch_dtype,
)
from orchard_envs.trainers.packing import Row
from orchard_envs.trainers.prepare import Prepared, prepare
from orchard_envs.trainers.state import SaveAbandoned, prune_states, save_state, saved_step


@dataclass
class TrainResult:
    """What a training run produced: where, how many steps, the last loss."""

    out: Path
    steps: int
    final_loss: float | None
    data: dict[str, Any]
    model: Any = field(default=None, repr=False)  # the trained model in memory (a PeftModel with --lora)


@dataclass(frozen=True)
class Schedule:
    """Which packed rows each rank trains on at each step: a seeded shuffle per epoch."""

    rows: int
    batch_size: int
    micro_batch_size: int
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        """Batches per pass over the rows (the last one may be short)."""
        return math.ceil(self.rows / self.batch_size)

    def total_steps(self, epochs: float, max_steps: int | None) -> int:
        """`max_steps` if given, else enough steps for `epochs` (at least one)."""
        return max_steps or max(1, math.ceil(epochs * self.steps_per_epoch))

    def step_rows(self, step: int) -> list[int]:
        """The rows of `step`: a shuffle per epoch, seeded, so a resumed run picks the same rows."""
        epoch, index = divmod(step, self.steps_per_epoch)
        order = list(range(self.rows))
        random.Random(self.seed * 100_003 + epoch).shuffle(order)
        return order[index * self.batch_size : (index + 1) * self.batch_size]

    def micro_batches(self, rows: list[int], world: World) -> list[list[int | None]]:
        """This rank's share of a step's rows in micro-batches; None pads a rank that got fewer rows
        (every rank must run the same number of forward passes under FSDP)."""
        mine: list[int | None] = list(rows[world.rank :: world.size])
        count = math.ceil(math.ceil(len(rows) / world.size) / self.micro_batch_size)
        mine += [None] * (count * self.micro_batch_size - len(mine))
        size = self.micro_batch_size
        return [mine[i : i + size] for i in range(0, len(mine), size)]


def train(config: SFTConfig) -> TrainResult:
    """Train as `config` says, on one or more ranks; the process group is torn down either way."""
    world = init_world(config.device)
    try:
        return _train(config, world)
    finally:
        finish(world)


def _train(config: SFTConfig, world: World) -> TrainResult:
    from transformers import AutoTokenizer, get_cosine_schedule_with_warmup

    from orchard_envs.agents.hf_backend import checkpoint_eos, end_token_ids
    from orchard_envs.agents.hf_models import resolve_model
    from orchard_envs.trainers.examples import Tokenizer
    from orchard_envs.trainers.metrics import MetricsLog, Progress
    from orchard_envs.trainers.state import export_checkpoint, load_state

    out = Path(config.out)
    check_out(out, config.resume, world)
    torch.manual_seed(config.seed)
    path = resolve_model(config.model)
    tokenizer = loaded(config.model, AutoTokenizer.from_pretrained, path)
    end_ids = end_token_ids(tokenizer, checkpoint_eos(path))
    # the data first: a mistake in the episodes or filters shows before a large model loads
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(end_ids)
    data = prepare(config, loaded(config.model, Tokenizer.of, tokenizer, end_ids), pad_id, _scorer(config))
    if not data.packed.rows:
        raise ConfigError(_nothing_to_train(data, config))
    if world.is_main and data.packed.truncated_examples:
        notice(f"warning: {_truncation(data, config.seq_len)}")
    model, module, lora = _model(config, path, world)
    optimizer = torch.optim.AdamW(
        [p for p in module.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
        fused=world.device.type == "cuda",
    )
    schedule = Schedule(len(data.packed.rows), config.batch_size, config.micro_batch_size, config.seed)
    total = schedule.total_steps(config.epochs, config.max_steps)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(config.warmup_ratio * total), total)
    resuming = resumable(out, config.resume, world)
    start = load_state(out, module, optimizer, scheduler, world) if resuming else 0
    if start > total:
        raise ConfigError(
            f"the saved state is at step {start}, past this run's {total} steps; raise --max-steps"
        )

    out.mkdir(parents=True, exist_ok=True)
    if world.is_main:
        (out / "orchard_train.json").write_text(
            json.dumps({"config": config.model_dump(mode="json"), "data": data.summary()}, indent=2)
        )
    log = MetricsLog(out, start if config.resume else None) if world.is_main else None
    progress = Progress(total, start, config.progress and world.is_main)
    loss = None
    keep = max(config.save_total_limit, 1)  # while running: a Ctrl-C or crash must find a state to resume
    stop = StopRequest(world)

    def save(step: int) -> None:
        save_state(out, module, optimizer, scheduler, step, world, keep)

    with stop.installed():
        try:
            for step in range(start, total):
                row = _step(module, optimizer, scheduler, schedule, data, step, world, config.max_grad_norm)
                loss = row["loss"]
                if log is not None and ((step + 1) % config.log_steps == 0 or step + 1 == total):
                    log.write(row)
                progress.update(row)
                periodic = bool(config.save_steps) and (step + 1) % config.save_steps == 0
                if periodic and step + 1 < total:
                    save(step + 1)
                if step + 1 < total and stop.agreed():  # asked before or during that save: stop here
                    if not periodic:
                        save(step + 1)
                    raise Interrupted(step + 1, out)
            if config.save_total_limit:
                save(total)
        except SaveAbandoned:
            raise Interrupted(saved_step(out), out, abandoned=True) from None
        finally:
            progress.close()
            if log is not None:
                log.close()
        export_checkpoint(out, module, model, tokenizer, lora, world)  # a first Ctrl-C here lets it finish
    if world.is_main and not config.save_total_limit:
        prune_states(out, 0)
    return TrainResult(out, total, loss, data.summary(), model)


class Interrupted(ConfigError):
    """Ctrl-C stopped the run; the message says which state a `--resume` continues from."""

    def __init__(self, step: int | None, out: Path, abandoned: bool = False) -> None:
        what = "a second Ctrl-C abandoned the state save in progress (nothing half-written is left); "
        what = what if abandoned else ""
        if step is None:
            resume = "no state was saved yet, so --resume would start from step 0"
        else:
            resume = f"rerun with --resume to continue from step {step} (saved in {out / 'state'})"
        super().__init__(f"interrupted: {what}{resume}")
        self.step = step


class StopRequest:
    """Ctrl-C during training: the first asks the loop to stop after the step it is in (saving state there);
    a second one abandons the run at once (a save in progress is removed, the previous state stays)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.requested = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Ctrl-C asks to stop at the next step while inside; only on the main thread."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers are the main thread's; called from elsewhere, Ctrl-C works as before
            return
        previous = signal.signal(signal.SIGINT, self._interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def agreed(self) -> bool:
        """Whether any rank was asked to stop: every rank stops after the same step (or none does), so the
        save's collectives never wait on a rank that went on training."""
        if self.world.size == 1:
            return self.requested
        flag = torch.tensor([float(self.requested)], device=self.world.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        self.requested = bool(flag.item())
        return self.requested

    def _interrupt(self, signum: int, frame: Any) -> None:
        if self.requested:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True
        if self.world.is_main:
            notice("stopping: finishing this step and saving its state (Ctrl-C again to abandon)")


def _nothing_to_train(data: Prepared, config: SFTConfig) -> str:
    """Why no row was packed, in words: every example cut before its first reply, or nothing selected."""
    packed = data.packed
    if packed.examples and packed.dropped_examples == packed.examples and packed.truncated_examples:
        return (
            f"nothing to train on: --seq-len {config.seq_len} cut all {packed.examples} examples before "
            f"their first trained token (the longest is {packed.longest:,} tokens); raise --seq-len to "
            f"{_suggested_seq_len(packed.longest)}"
        )
    return (
        f"nothing to train on: {data.selection.summary()}, {packed.examples} examples with trained tokens; "
        "check the filters (--split, --suite, --min-reward, ...) and --unresolved"
    )


def _truncation(data: Prepared, seq_len: int) -> str:
    packed = data.packed
    total = packed.trained_tokens + packed.truncated_tokens
    share = packed.truncated_tokens / total if total else 0.0
    return (
        f"--seq-len {seq_len} cut {packed.truncated_examples} of {packed.examples} examples, dropping "
        f"{packed.truncated_tokens:,} of {total:,} trained tokens ({share:.0%}); "
        f"--seq-len {_suggested_seq_len(packed.longest)} keeps them all"
    )


def _suggested_seq_len(longest: int) -> int:
    return -(-longest // 256) * 256  # the longest example, rounded up to a multiple of 256


def _model(config: SFTConfig, path: str, world: World) -> tuple[Any, CausalLMLoss, Any]:
    """The model (a PeftModel with --lora), wrapped with its loss and sharded; and the LoRA config."""
    from transformers import AutoModelForCausalLM

    load = AutoModelForCausalLM.from_pretrained
    dtype = torch_dtype(config.dtype, world.device)
    model = loaded(config.model, load, path, dtype=dtype, attn_implementation=config.attention)
    lora = lora_config(config.lora_rank, config.lora_alpha) if config.lora else None
    if lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    module = CausalLMLoss(model, config.loss_chunk).to(world.device)
    module.train()
    shard(module, model.get_decoder().layers, world)
    return model, module, lora


def _step(
    module, optimizer, scheduler, schedule: Schedule, data: Prepared, step: int, world: World, clip: float
):
    started = time.perf_counter()
    rows = data.packed.rows
    global_rows = schedule.step_rows(step)
    trained = sum(rows[i].trained_tokens for i in global_rows)
    batches = schedule.micro_batches(global_rows, world)
    loss_sum = torch.zeros((), device=world.device)
    for k, batch in enumerate(batches):
        sync_gradients(module, k == len(batches) - 1, world)
        tensors = _tensors([rows[i] if i is not None else None for i in batch], rows[0], world.device)
        summed = module(**tensors)
        # FSDP averages gradients over ranks: scale so the result is the mean over the step's trained tokens
        (summed * world.size / trained).backward()
        loss_sum += summed.detach()
    norm = torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.requires_grad], clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if world.size > 1:
        torch.distributed.all_reduce(loss_sum)
    seconds = time.perf_counter() - started
    tokens = len(global_rows) * len(rows[0].input_ids)
    memory = {}
    if world.device.type == "cuda":
        memory["peak_memory_gb"] = torch.cuda.max_memory_allocated(world.device) / 2**30
    return {
        "step": step + 1,
        "epoch": round((step + 1) / schedule.steps_per_epoch, 4),
        "loss": loss_sum.item() / trained,
        "lr": scheduler.get_last_lr()[0],
        "grad_norm": float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm),
        "trained_tokens": trained,
        "tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "step_s": seconds,
        **memory,
    }


def _tensors(batch: list[Row | None], shape_of: Row, device: torch.device) -> dict[str, torch.Tensor]:
    from orchard_envs.trainers.loss import IGNORE

    length = len(shape_of.input_ids)
    blank = Row([0] * length, [IGNORE] * length, list(range(length)))
    filled = [row or blank for row in batch]
    return {
        name: torch.tensor([getattr(row, name) for row in filled], dtype=torch.long, device=device)
        for name in ("input_ids", "position_ids", "labels")
    }












def _scorer(config: SFTConfig) -> Any:
    from orchard_envs.trainers.credit import make_scorer

    if config.unresolved != "credit" or config.scorer == "heuristic":
        return make_scorer("heuristic")  # cheap: also used to report what credit assignment would train
    from orchard_envs.agents import get_agent
    from orchard_envs.cli_support import parse_options

    try:
        options = parse_options(config.judge_option)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return make_scorer(config.scorer, agent=get_agent(config.judge_agent, **options))
