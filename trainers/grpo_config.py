"""The one typed config of a GRPO run; `orchard-train grpo` generates its flags from these fields."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchard_envs.agents.hf_models import DEFAULT_MODEL
from orchard_envs.trainers.config import DEVICE_PATTERN

Loss = Literal["grpo", "dr_grpo", "dapo"]

# What each loss option means: its upper clip (unless --clip-high is given), how token losses are
# aggregated, and whether advantages are divided by the group's reward std. Every option drops groups whose
# rewards are all equal (their advantages are zero: no gradient) and rolls out more to fill the step (DAPO's
# dynamic sampling), up to --max-rounds.
LOSS_DEFAULTS: dict[str, dict[str, object]] = {
    "grpo": {"clip_high": 0.2, "aggregation": "sequence", "scale_rewards": True},
    "dr_grpo": {"clip_high": 0.2, "aggregation": "constant", "scale_rewards": False},
    "dapo": {"clip_high": 0.28, "aggregation": "token", "scale_rewards": True},
}


class GRPOConfig(BaseModel):
    """Defaults suit the embedded SmolLM2-135M on claw-mini on a CPU; raise the sizes on a GPU."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    out: Path = Field(description="output folder: a Hugging Face checkpoint, metrics.jsonl, resumable state")
    model: str = Field(
        DEFAULT_MODEL, description="policy to start from: local path, cached hub id or embedded name"
    )
    suite: str = Field("claw-mini", description="task suite to train on (a bundled name or a suite file)")
    split: str | None = Field("train", description="split of the suite to train on")
    env: str | None = Field(None, description="env id, when the suite is not one orchard-bench knows")
    task_ids: list[str] = Field(default_factory=list, description="train only on these tasks (repeatable)")
    env_option: list[str] = Field(default_factory=list, description="env option key=value (repeatable)")
    harness: str = Field("tool-calling", description="harness between the policy and the env")
    harness_option: list[str] = Field(default_factory=list, description="harness option key=value")

    # rollouts
    steps: int = Field(20, ge=1, description="optimizer steps (one batch of groups each)")
    groups: int = Field(4, ge=1, description="groups (tasks) with reward variance per step")
    group_size: int = Field(4, ge=2, description="rollouts per task; Balanced Adaptive Rollout varies it")
    max_rounds: int = Field(
        4, ge=1, description="rollout rounds per step to fill --groups before training on what there is"
    )
    jobs: int = Field(4, ge=1, description="episodes run at once; their model calls are batched")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of rollouts")
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(256, ge=1, description="tokens per model turn")
    max_turns: int | None = Field(8, ge=1, description="model turns per episode (the harness's cut)")
    engine: Literal["colocated", "server", "vllm"] = Field(
        "colocated",
        description="colocated: roll out with the policy being trained (nothing to sync); server: sample "
        "from the orchard-serve at --engine-url, which is sent the new weights after every step; vllm: a "
        "colocated vLLM (CUDA, the vllm extra; untested here), sent the new weights after every step",
    )
    vllm_gpu_memory: float = Field(
        0.3, gt=0, lt=1, description="vllm engine: the share of GPU memory vLLM takes (the rest trains)"
    )
    engine_url: str | None = Field(None, description="server engine: base URL of an orchard-serve of --model")
    engine_api_key: str | None = Field(None, description="server engine: its API key")
    executor: Literal["threads", "ray"] = Field(
        "threads",
        description="threads: --jobs episode workers in this process; ray: --jobs Ray actors (envs anywhere "
        "on a cluster) that sample from the --engine server",
    )
    ray_address: str | None = Field(
        None, description="ray executor: a cluster (host:port, ray://host:port, auto); unset: a local Ray"
    )
    balanced: bool = Field(True, description="Balanced Adaptive Rollout: adapt tasks and group sizes")
    min_group_size: int = Field(2, ge=2, description="rollouts of a task that looks solved or hopeless")
    max_group_size: int = Field(8, ge=2, description="rollouts of a task near a 50% pass rate")
    success_threshold: float = Field(1.0, description="reward at or above which a rollout counts as a pass")

    # loss
    loss: Loss = Field("grpo", description="grpo, dr_grpo (no std, constant normaliser) or dapo")
    clip_low: float = Field(0.2, gt=0, lt=1, description="ratio clip below 1")
    clip_high: float | None = Field(None, gt=0, description="ratio clip above 1 (dapo: 0.28, else 0.2)")
    kl_coef: float = Field(0.0, ge=0, description="weight of the k3 KL to the frozen starting policy")
    is_cap: float | None = Field(
        2.0, gt=0, description="truncated importance-sampling cap for rollout-vs-trainer logprob mismatch"
    )
    overlong_tokens: int | None = Field(
        None, ge=1, description="dapo soft overlong penalty: episode completion tokens where it reaches -1"
    )
    overlong_buffer: int = Field(64, ge=1, description="tokens before --overlong-tokens where it starts")
    credit: Literal["episode", "turn-fork", "pure"] = Field(
        "episode",
        description="episode: one advantage per rollout; turn-fork: per-turn values from forked envs; "
        "pure: min-form credit over step rewards",
    )
    fork_turns: int = Field(2, ge=1, description="turn-fork: turns per episode at which the env is forked")
    fork_samples: int = Field(2, ge=1, description="turn-fork: continuations rolled out per fork")

    # optimisation
    lr: float = Field(1e-6, gt=0, description="learning rate (constant after warmup)")
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    updates_per_batch: int = Field(1, ge=1, description="optimizer passes over each batch (PPO epochs)")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto", description="auto: bfloat16 on GPU, float32 on CPU"
    )
    gradient_checkpointing: bool = Field(False)
    lora: bool = Field(False, description="train LoRA adapters (merged into the saved checkpoint)")
    lora_rank: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    seed: int = 0

    # bookkeeping
    save_steps: int = Field(1, ge=1, description="save resumable state every N steps (and at the end)")
    save_total_limit: int = Field(1, ge=0, description="saved states kept; 0: none once the run is done")
    resume: bool = Field(False, description="continue the run saved in --out")
    device: str | None = Field(None, description="cpu, cuda or cuda:N (default: cuda when available)")
    progress: bool = Field(True, description="show a live progress line")

    @field_validator("device", mode="before")
    @classmethod
    def _known_device(cls, value: object) -> object:
        if isinstance(value, str) and not re.match(DEVICE_PATTERN, value):
            raise ValueError(f"{value!r} is not a device: use cpu or cuda (cuda:N for one GPU)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> GRPOConfig:
        if self.min_group_size > self.max_group_size:
            raise ValueError(
                f"--min-group-size {self.min_group_size} exceeds --max-group-size {self.max_group_size}"
            )
        if self.engine == "server" and not self.engine_url:
            raise ValueError("--engine server needs --engine-url (an orchard-serve started on --model)")
        if self.executor == "ray" and self.engine != "server":
            raise ValueError(
                "--executor ray needs --engine server: the actors reach the policy through an orchard-serve"
            )
        if self.engine in ("server", "vllm") and self.lora:
            raise ValueError(
                f"--engine {self.engine} is sent full weights after each step: train without --lora"
            )
        if self.clip_high is None:
            self.clip_high = float(LOSS_DEFAULTS[self.loss]["clip_high"])  # type: ignore[arg-type]
        return self

    @property
    def aggregation(self) -> str:
        """How token losses become the batch loss: per sequence, per token, or over a constant."""
        return str(LOSS_DEFAULTS[self.loss]["aggregation"])

    @property
    def scale_rewards(self) -> bool:
        """Whether advantages are divided by the group's reward std (Dr. GRPO says not to)."""
        return bool(LOSS_DEFAULTS[self.loss]["scale_rewards"])
