"""GRPO-family RL on live environments: `train(GRPOConfig(...))`, also run by `orchard-train grpo`.

Each step rolls out groups of episodes on the suite's tasks with the current policy (`rollouts`: the same
`run_episode` as `orchard-bench`, many episodes at once, their model calls batched), chosen and sized by
Balanced Adaptive Rollout (`balanced_rollout`), drops the groups without reward variance, turns rewards into
advantages (`advantages`; per turn with `--credit`), and takes one optimizer step on the policy-gradient
loss of the policy's own tokens (`policy_loss`). Alone, the rollout generator shares the policy's weights,
so the next step samples from the updated policy with nothing copied. State is saved every `--save-steps`
(weights, optimizer, scheduler, RNG and the pass-rate estimates), so `--resume` after a kill continues the
same run; the end result is a plain Hugging Face checkpoint that the `hf` agent and `orchard-bench` load.

Under torchrun the trained policy is sharded with FSDP2 (weights, gradients and optimizer state; as SFT
does); with the colocated engine each rank samples from a full, unsharded copy of it that gets the gathered
weights after every update (the layout of a colocated vLLM engine). Every rank rolls out its share of each
round's episodes and all ranks then see every group (`all_gather_object`), so they agree on the batch; each
computes the loss of its share of the sequences, padded so that every rank runs as many forward and
backward passes (FSDP's collectives run in lockstep), and FSDP averages the gradients.
"""

from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from orchard_envs.cli_support import parse_options
from orchard_envs.errors import ConfigError
from orchard_envs.leaderboard.executor import EpisodeFactory
from orchard_envs.trainers.advantages import Group, Rollout, shaped_reward
from orchard_envs.trainers.balanced_rollout import BalancedRollout, RolloutSettings, is_positive
from orchard_envs.trainers.distributed import World, finish, init_world, shard, sync_gradients
from orchard_envs.trainers.grpo_config import GRPOConfig
from orchard_envs.trainers.loss import CausalLMLoss
from orchard_envs.trainers.model_setup import check_out, loaded, lora_config, resumable
from orchard_envs.trainers.policy_loss import LossSettings, build_sequences, sequence_loss, token_logprobs
from orchard_envs.trainers.rollouts import describe, generated_tokens, rollout_jobs, rollout_pool
from orchard_envs.trainers.sft import Interrupted, StopRequest


@dataclass
class GRPOResult:
    """What an RL run produced: where, how many steps, the last step's mean rollout reward."""

    out: Path
    steps: int
    final_reward: float | None
    model: Any = field(default=None, repr=False)


@dataclass
class _Run:
    """What the step loop works with."""

    config: GRPOConfig
    world: World
    model: Any
    module: CausalLMLoss
    rollout_model: Any
    optimizer: Any
    scheduler: Any
    tokenizer: Any
    chat: Any
    planner: BalancedRollout
    pool: Any  # RolloutPool or RayRolloutPool
    settings: LossSettings
    reference: Any


def train(config: GRPOConfig) -> GRPOResult:
    """Train as `config` says, on one or more ranks; the process group is torn down either way."""
    world = init_world(config.device)
    try:
        return _train(config, world)
    finally:
        finish(world)


def _train(config: GRPOConfig, world: World) -> GRPOResult:
    from transformers import AutoTokenizer, get_constant_schedule_with_warmup

    from orchard_envs.agents.hf_backend import checkpoint_eos, end_token_ids
    from orchard_envs.agents.hf_models import resolve_model
    from orchard_envs.trainers.examples import Tokenizer
    from orchard_envs.trainers.metrics import MetricsLog, Progress
    from orchard_envs.trainers.state import (
        export_checkpoint,
        load_state,
        prune_states,
        save_state,
        saved_extra,
    )

    out = Path(config.out)
    check_out(out, config.resume, world)
    torch.manual_seed(config.seed)
    path = resolve_model(config.model)
    tokenizer = loaded(config.model, AutoTokenizer.from_pretrained, path)
    end_ids = end_token_ids(tokenizer, checkpoint_eos(path))
    env_id, env_kwargs, task_ids = _tasks(config)
    model, module, lora, rollout_model = _policy(config, path, world)
    optimizer = torch.optim.AdamW(
        [p for p in module.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
        fused=world.device.type == "cuda",
    )
    scheduler = get_constant_schedule_with_warmup(optimizer, config.warmup_steps)
    planner = BalancedRollout(task_ids, _rollout_settings(config), config.seed)
    start = 0
    if resumable(out, config.resume, world):
        start = load_state(out, module, optimizer, scheduler, world)
        planner.load_state_dict(saved_extra(out).get("pass_rates", {}))
    out.mkdir(parents=True, exist_ok=True)
    generator, agent, agent_options = _policy_agent(rollout_model, tokenizer, end_ids, config, path)
    harness_options = {"max_turns": config.max_turns, **_options(config.harness_option)}
    factory = EpisodeFactory(
        env_id, env_kwargs, config.harness, "hf", harness_options, agent_options, shared_agent=agent
    )
    pool = rollout_pool(factory, config.jobs, config.executor, config.ray_address)
    run = _Run(
        config,
        world,
        model,
        module,
        rollout_model,
        optimizer,
        scheduler,
        tokenizer,
        Tokenizer.of(tokenizer, end_ids),
        planner,
        pool,
        _loss_settings(config),
        _reference(config, path, world, lora is not None),
    )
    log = MetricsLog(out, start if config.resume else None) if world.is_main else None
    progress = Progress(
        config.steps, start, config.progress and world.is_main, label="grpo", status=_status_line
    )
    stop = StopRequest(world)
    reward = None
    _sync_weights(run, generator)  # the rollout weights start as this run's (and a resume's)

    def save(step: int) -> None:
        extra = {"pass_rates": planner.state_dict()}
        save_state(out, module, optimizer, scheduler, step, world, max(config.save_total_limit, 1), extra)

    try:
        with stop.installed():
            for step in range(start, config.steps):
                row = _step(run, step)
                if not row.get("skipped"):
                    _sync_weights(run, generator)
                reward = row["reward_mean"]
                if log is not None:
                    log.write(row)
                progress.update(row)
                if (step + 1) % config.save_steps == 0 or step + 1 == config.steps:
                    save(step + 1)
                    if step + 1 < config.steps and stop.agreed():
                        raise Interrupted(step + 1, out)
                elif stop.agreed():
                    save(step + 1)
                    raise Interrupted(step + 1, out)
    finally:
        pool.close()
        progress.close()
        if log is not None:
            log.close()
        if hasattr(generator, "close"):
            generator.close()
    if config.engine == "colocated":  # its rollouts ran with neutral generation settings
        model.generation_config = generator.checkpoint_generation_config
    export_checkpoint(out, module, model, tokenizer, lora, world)
    if world.is_main and not config.save_total_limit:
        prune_states(out, 0)
    return GRPOResult(out, config.steps, reward, model)


def _step(run: _Run, step: int) -> dict[str, Any]:
    """Roll out until the step has its groups (or its rounds are spent), then update on them."""
    started = time.perf_counter()
    groups, rollout_stats = _rollout(run, step)
    rollout_s = time.perf_counter() - started
    update = _update(run, groups) if groups else {"loss": 0.0, "grad_norm": 0.0, "skipped": True}
    seconds = time.perf_counter() - started
    return {
        "step": step + 1,
        **rollout_stats,
        **update,
        "rollout_s": rollout_s,
        "update_s": seconds - rollout_s,
        "step_s": seconds,
        "tokens_per_s": rollout_stats["generated_tokens"] / max(rollout_s, 1e-9),
        "lr": run.scheduler.get_last_lr()[0],
    }


def _rollout(run: _Run, step: int) -> tuple[list[Group], dict[str, Any]]:
    config = run.config
    kept: list[Group] = []
    every: list[Group] = []
    statuses: dict[str, int] = defaultdict(int)
    run.rollout_model.eval()
    for round_ in range(config.max_rounds):
        need = config.groups - len(kept)
        if need <= 0:
            break
        positives = sum(is_positive(group) for group in kept)
        plan = run.planner.plan(need, step, round_, positives, len(kept) - positives)
        spacing = max(config.group_size, config.max_group_size)  # trial numbers never collide
        jobs = rollout_jobs(plan, step, round_, config.max_rounds, spacing)
        results = _gathered(run, jobs)
        for status, count in describe([episode for episode, _ in results]).items():
            statuses[status] += count
        for task_id, size in plan:
            mine, results = results[:size], results[size:]
            rollouts = [
                Rollout(e, shaped_reward(e, config.overlong_tokens, config.overlong_buffer), fork_values=v)
                for e, v in mine
            ]
            group = Group(task_id, rollouts)
            run.planner.observe(group)
            every.append(group)
            if group.has_variance():
                kept.append(group)
    chosen = run.planner.select(kept, config.groups)
    if config.credit == "pure":
        from orchard_envs.trainers.turn_credit import pure_credit

        pure_credit(chosen, run.settings.scale_rewards)
    elif config.credit == "turn-fork":
        from orchard_envs.trainers.turn_credit import fork_credit

        fork_credit(chosen, run.settings.scale_rewards)
    rewards = [reward for group in every for reward in group.rewards]
    stats = {
        "reward_mean": sum(rewards) / len(rewards) if rewards else 0.0,
        "pass_rate": sum(r >= config.success_threshold for r in rewards) / len(rewards) if rewards else 0.0,
        "rollouts": len(rewards),
        "groups_rolled": len(every),
        "groups_kept": len(chosen),
        "groups_zero_variance": len(every) - len(kept),
        "groups_positive": sum(is_positive(group) for group in chosen),
        "rollouts_per_task": {group.task_id: len(group.rollouts) for group in every},
        "pass_rate_histogram": run.planner.histogram(),
        "statuses": dict(statuses),
        "generated_tokens": generated_tokens([r.episode for g in every for r in g.rollouts]),
        "forked_turns": sum(len(r.fork_values) for g in every for r in g.rollouts),
    }
    return chosen, stats


def _gathered(run: _Run, jobs: list[Any]) -> list[tuple[Any, dict[int, float]]]:
    """Every job's (episode, turn-fork values) in job order; under torchrun each rank runs its share and
    all ranks get all."""
    world = run.world
    indices = list(range(world.rank, len(jobs), world.size))
    hooks = [_forks(run) for _ in indices]
    episodes = run.pool.run([jobs[i] for i in indices], hooks)
    mine = [(i, e, h.values if h else {}) for i, e, h in zip(indices, episodes, hooks, strict=True)]
    if world.size == 1:
        return [(episode, values) for _, episode, values in mine]
    parts: list[Any] = [None] * world.size
    torch.distributed.all_gather_object(parts, mine)
    merged = sorted((item for part in parts for item in part), key=lambda item: item[0])
    return [(episode, values) for _, episode, values in merged]


def _forks(run: _Run) -> Any:
    """A turn-fork hook for one rollout, under `--credit turn-fork`."""
    if run.config.credit != "turn-fork":
        return None
    from orchard_envs.trainers.turn_credit import TurnForks

    factory = run.pool.factory
    return TurnForks(factory.harness, factory.agent, run.config.fork_turns, run.config.fork_samples)


def _update(run: _Run, groups: list[Group]) -> dict[str, Any]:
    """One optimizer step (per `--updates-per-batch` pass) on this rank's share of the batch's sequences."""
    config, world = run.config, run.world
    sequences = build_sequences(groups, run.chat, run.settings)
    mine: list[Any] = sequences[world.rank :: world.size]
    # every rank runs as many passes (FSDP's collectives are in lockstep); a pad is a pass with no loss
    padded = mine + [None] * (math.ceil(len(sequences) / world.size) - len(mine))
    policy = run.module.model
    policy.train()
    with torch.no_grad():
        for sequence in padded:
            if sequence is None:
                if config.updates_per_batch > 1:
                    token_logprobs(policy, *_pad_inputs(sequences))
                continue
            if run.reference is not None:
                sequence.ref_logprobs = _reference_logprobs(run, sequence)
            if config.updates_per_batch > 1:
                sequence.old_logprobs = token_logprobs(policy, sequence.input_ids, sequence.positions)
    params = [p for p in run.module.parameters() if p.requires_grad]
    sums: dict[str, float] = defaultdict(float)
    loss_total, norm = 0.0, torch.zeros(())
    for _ in range(config.updates_per_batch):
        loss_total = 0.0
        for k, sequence in enumerate(padded):
            sync_gradients(policy, k == len(padded) - 1, world)
            if sequence is None:
                (token_logprobs(policy, *_pad_inputs(sequences)).sum() * 0.0).backward()
                continue
            logprobs = token_logprobs(policy, sequence.input_ids, sequence.positions)
            loss, stats = sequence_loss(logprobs, sequence, run.settings)
            (loss * world.size).backward()  # FSDP averages gradients over ranks; the loss is their sum
            loss_total += float(loss.detach())
            for key, value in stats.items():
                sums[key] += value
        norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
    sums["loss"] = loss_total
    if world.size > 1:  # every rank's share of the sums, for the log
        keys = sorted(sums)
        totals = torch.tensor([sums[key] for key in keys], dtype=torch.float64)
        torch.distributed.all_reduce(totals)
        sums = defaultdict(float, zip(keys, totals.tolist(), strict=True))
    tokens = max(sums["tokens"], 1.0)
    return {
        "loss": sums["loss"],
        "grad_norm": float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm),
        "trained_sequences": len(sequences),
        "trained_tokens": int(sums["tokens"]),
        "clip_fraction": sums["clipped"] / tokens,
        "kl": sums["kl"] / tokens,
        "logprob_mismatch": sums["logprob_mismatch"] / tokens,
        "is_weight_mean": sums["is_weight"] / tokens,
        "nll": sums["nll"] / tokens,
    }


def _pad_inputs(sequences: list[Any]) -> tuple[list[int], list[int]]:
    """The inputs of a padding pass: two tokens of the batch's first sequence (only its collectives count)."""
    return sequences[0].input_ids[:2], [1]


def _reference_logprobs(run: _Run, sequence: Any) -> torch.Tensor:
    """The frozen reference's logprobs: the adapters switched off under LoRA, else a separate copy."""
    if run.reference == "adapters-off":
        with run.module.model.disable_adapter():
            return token_logprobs(run.module.model, sequence.input_ids, sequence.positions)
    return token_logprobs(run.reference, sequence.input_ids, sequence.positions)


def _tasks(config: GRPOConfig) -> tuple[str, dict[str, Any], list[str]]:
    """The env id, its keywords and the task ids to train on."""
    env_kwargs: dict[str, Any] = _options(config.env_option)
    if config.env is not None:
        if not config.task_ids:
            raise ConfigError("--env needs --task-ids (the tasks of a suite orchard-bench does not know)")
        return config.env, {**env_kwargs}, list(config.task_ids)
    from orchard_envs.leaderboard import suites

    suite = suites.load(config.suite, config.split)
    ids = [task.task_id for task in suite.tasks]
    if config.task_ids:
        missing = sorted(set(config.task_ids) - set(ids))
        if missing:
            raise ConfigError(
                f"--task-ids not in suite {config.suite!r} ({config.split}): {', '.join(missing)}"
            )
        ids = list(config.task_ids)
    if not ids:
        raise ConfigError(f"suite {config.suite!r} has no task in split {config.split!r}")
    return suite.env_id, {**suite.env_kwargs(config.split, None), **env_kwargs}, ids


def _options(pairs: list[str]) -> dict[str, Any]:
    try:
        return parse_options(pairs)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _policy(config: GRPOConfig, path: str, world: World) -> tuple[Any, CausalLMLoss, Any, Any]:
    """The trainable policy (a PeftModel with --lora), wrapped as the SFT trainer wraps it, its LoRA config,
    and the model that rollouts sample from: the policy itself alone; under torchrun a full copy made
    before the policy is sharded (FSDP2 on each decoder layer, then on the model, which is what the
    trainer calls)."""
    from transformers import AutoModelForCausalLM

    from orchard_envs.trainers.model_setup import torch_dtype

    dtype = torch_dtype(config.dtype, world.device)
    model = loaded(config.model, AutoModelForCausalLM.from_pretrained, path, dtype=dtype).to(world.device)
    lora = lora_config(config.lora_rank, config.lora_alpha) if config.lora else None
    if lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if world.size == 1:
        return model, CausalLMLoss(model), lora, model
    rollout_model = model  # a server or vLLM holds its own copy; the colocated engine samples from this one
    if config.engine == "colocated":
        rollout_model = copy.deepcopy(model).eval().requires_grad_(False)
    shard(model, model.get_decoder().layers, world)
    return model, CausalLMLoss(model), lora, rollout_model


def _reference(config: GRPOConfig, path: str, world: World, lora: bool) -> Any:
    """What the KL term compares with: nothing without --kl-coef; the adapters off with LoRA; else a copy."""
    if not config.kl_coef:
        return None
    if lora:
        return "adapters-off"
    from transformers import AutoModelForCausalLM

    from orchard_envs.trainers.model_setup import torch_dtype

    reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(config.dtype, world.device))
    return reference.to(world.device).eval().requires_grad_(False)


def _policy_agent(
    model: Any, tokenizer: Any, end_ids: set[int], config: GRPOConfig, path: str
) -> tuple[Any, Any, dict[str, Any]]:
    """The rollout engine (around the policy's own weights, a server's or a colocated vLLM's), the `hf`
    agent the workers clone, and that agent's options (how a Ray actor builds its own: only a served
    policy can be)."""
    from orchard_envs.agents.hf import HFAgent

    options: dict[str, Any] = {
        "max_new_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "seed": config.seed,
    }
    if config.engine == "server":
        assert config.engine_url is not None  # the config's validator
        server = {"base_url": config.engine_url, "api_key": config.engine_api_key}
        options |= {"model": path, "server": server}
        agent = HFAgent(**options)
        return agent.generator, agent, options
    if config.engine == "vllm":
        from orchard_envs.agents.rollout.vllm_engine import VLLMEngine

        engine = VLLMEngine(path, seed=config.seed, gpu_memory_utilization=config.vllm_gpu_memory)
        return engine, HFAgent(generator=engine, **options), options
    from orchard_envs.trainers.rollouts import colocated_generator

    generator = colocated_generator(model, tokenizer, end_ids, config.model)
    return generator, HFAgent(generator=generator, **options), options


def _sync_weights(run: _Run, generator: Any) -> None:
    """The rollout weights become the trained ones: a served policy is sent them (from the main rank; the
    others wait), each rank's vLLM and a sharded policy's full copy get them gathered; alone, a colocated
    generator already samples from them."""
    sharded = run.world.size > 1
    if run.config.engine == "colocated" and not sharded:
        return
    if sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True)  # a collective: every rank takes part
        state = get_model_state_dict(run.module.model, options=options)
    else:
        state = {name: tensor.detach() for name, tensor in run.module.model.state_dict().items()}
    if run.config.engine == "server":
        if run.world.is_main:
            generator.load_weights(state)
    elif run.config.engine == "vllm":
        generator.load_weights(state)
    else:
        run.rollout_model.load_state_dict(state)
    if sharded:
        torch.distributed.barrier()


def _rollout_settings(config: GRPOConfig) -> RolloutSettings:
    return RolloutSettings(
        group_size=config.group_size,
        min_group_size=config.min_group_size,
        max_group_size=config.max_group_size if config.balanced else config.group_size,
        success_threshold=config.success_threshold,
        balanced=config.balanced,
    )


def _loss_settings(config: GRPOConfig) -> LossSettings:
    assert config.clip_high is not None  # set by the config's validator
    return LossSettings(
        clip_low=config.clip_low,
        clip_high=config.clip_high,
        kl_coef=config.kl_coef,
        is_cap=config.is_cap,
        aggregation=config.aggregation,
        scale_rewards=config.scale_rewards,
        constant=config.max_new_tokens,
    )


def _status_line(row: dict[str, Any]) -> str:
    return (
        f"reward {row['reward_mean']:.3f}  kept {row['groups_kept']}/{row['groups_rolled']} groups  "
        f"{row['tokens_per_s']:,.0f} tok/s"
    )
