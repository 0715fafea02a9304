"""The one typed config of an SFT run; `orchard-train sft` generates its flags from these fields."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchard_envs.agents.hf_models import DEFAULT_MODEL

DEVICE_PATTERN = r"^(cpu|cuda(:\d+)?|mps|xpu(:\d+)?)$"  # torch device names a trainer can use


class SFTConfig(BaseModel):
    """Defaults suit the embedded SmolLM2-135M on a laptop CPU as well as a 0.5 B model on one GPU."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    episodes: list[str] = Field(description="episode files, run folders or globs (runs/*/episodes.jsonl)")
    out: Path = Field(description="output folder: a Hugging Face checkpoint, metrics.jsonl, resumable state")
    model: str = Field(
        DEFAULT_MODEL, description="model to fine-tune: local path, cached hub id or embedded name"
    )

    # which episodes
    suite: str | None = Field(None, description="only episodes of this suite")
    split: str | None = Field(None, description="only episodes of this split (train, test, ...)")
    harness: str | None = Field(None, description="only episodes recorded under this harness")
    from_model: str | None = Field(None, description="only episodes whose metadata.model is this")
    min_reward: float | None = Field(None, description="only episodes with at least this reward")
    max_turns: int | None = Field(
        None, ge=1, description="only episodes with at most this many assistant turns"
    )
    unresolved: Literal["skip", "all", "credit"] = Field(
        "skip",
        description="unresolved episodes: skip them, train on all their steps, or on the productive prefix "
        "that credit assignment finds (also set by --credit-assignment)",
    )
    credit_assignment: bool = Field(False, description="shorthand for --unresolved credit")
    scorer: str = Field("heuristic", description="credit-assignment step scorer: heuristic or judge")
    judge_agent: str | None = Field(
        None, description="agent that labels steps for the judge scorer (e.g. openai)"
    )
    judge_option: list[str] = Field(
        default_factory=list, description="judge agent option key=value (repeatable)"
    )
    credit_policy: Literal["prefix", "good"] = Field(
        "prefix",
        description="prefix: steps before the first critical mistake; good: also drop bad steps before it",
    )
    token_ids: Literal["auto", "never"] = Field(
        "auto", description="auto: use the episode's stored token ids when it recorded them for every reply"
    )

    # optimisation
    epochs: float = Field(
        3.0, gt=0, description="passes over the packed data (ignored when --max-steps is set)"
    )
    max_steps: int | None = Field(None, ge=1, description="optimizer steps to run (overrides --epochs)")
    lr: float = Field(2e-5, gt=0, description="peak learning rate (cosine decay after warmup)")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="share of steps spent warming up linearly")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    batch_size: int = Field(8, ge=1, description="packed rows per optimizer step, over all devices")
    micro_batch_size: int = Field(1, ge=1, description="packed rows per forward pass (gradient accumulation)")
    seq_len: int = Field(4096, ge=16, description="tokens per packed row; longer examples are cut")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto", description="auto: bfloat16 on GPU, float32 on CPU"
    )
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward (less memory)")
    attention: str = Field("sdpa", description="attention kernel: sdpa, eager, flash_attention_2, ...")
    loss_chunk: int = Field(4096, ge=64, description="positions per output-head chunk in the loss")
    lora: bool = Field(False, description="train LoRA adapters (merged into the saved checkpoint)")
    lora_rank: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    seed: int = 0

    # bookkeeping
    save_steps: int | None = Field(
        None, ge=1, description="save resumable state every N steps (and at the end)"
    )
    save_total_limit: int = Field(
        1,
        ge=0,
        description="saved states kept in state/, newest first; 0: none once the run has finished (the "
        "exported model alone, about a quarter of the size)",
    )
    resume: bool = Field(False, description="continue from the state saved in --out")
    log_steps: int = Field(1, ge=1, description="write metrics every N steps")
    device: str | None = Field(None, description="cpu, cuda or cuda:N (default: cuda when available)")
    progress: bool = Field(True, description="show a live progress bar")

    @field_validator("device", mode="before")
    @classmethod
    def _known_device(cls, value: object) -> object:
        if isinstance(value, str) and not re.match(DEVICE_PATTERN, value):
            raise ValueError(f"{value!r} is not a device: use cpu or cuda (cuda:N for one GPU)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SFTConfig:
        if self.credit_assignment:
            self.unresolved = "credit"
        if self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"--batch-size {self.batch_size} is not a multiple of "
                f"--micro-batch-size {self.micro_batch_size}"
            )
        if self.scorer == "judge" and not self.judge_agent and self.unresolved == "credit":
            raise ValueError("the judge scorer needs --judge-agent (an agent name, e.g. openai)")
        return self
