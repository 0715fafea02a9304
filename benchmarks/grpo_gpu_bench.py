"""GRPO step speed on one GPU: `orchard-train grpo` against TRL's `GRPOTrainer` (no vLLM), same model, batch.

Run (one GPU; random weights, nothing downloaded; sized to finish within 8 minutes, which no GPU has checked
yet: `--smoke` on CPU is all that ran):
    .venv/bin/pip install trl==1.16.0 && .venv/bin/python benchmarks/grpo_gpu_bench.py
CPU check of the whole path (tiny model, 8 completions x 8 tokens, writes nothing):
    .venv/bin/python benchmarks/grpo_gpu_bench.py --smoke
Writes benchmarks/results/grpo_gpu.json and its section of docs/benchmarks.md (not with --smoke).

What the issue asks: completions/s and generated tokens/s for 64 completions x 256 tokens per step on a
randomly initialised Qwen2.5-0.5B-shaped model, against TRL `GRPOTrainer` without vLLM. Measured on one H100
earlier: TRL 1.16 took 7.4 s per step (8.6 completions/s, 36 GB). Target: >= 10x TRL's completions/s.

How:
- Model: `sft_gpu_bench.make_model` (a random Qwen2.5-0.5B-shaped Qwen2 with the embedded SmolLM2
  tokenizer). Random weights almost never sample the end token (1 in 151 936 per draw), so completions run
  to the full `--tokens`; the table reports the tokens each side actually generated.
- Task: 8 prompts ("Say a word about <topic>."), 8 completions each (`--prompts` x `--group-size`), one
  turn, reward = parity of the reply's length in characters: random-looking, so groups have variance and
  both trainers take an update every step (ours drops zero-variance groups).
- Ours: `orchard_envs.trainers.grpo.train` on a one-turn env (`BenchEnv`, registered here) with `--jobs`
  = all completions at once, so the rollout engine batches them; bf16 weights. Step time, rollout time and
  generated tokens come from its `metrics.jsonl`.
- TRL: `GRPOTrainer(model=<path>)` on the same prompts as chat messages, `num_generations` = group size,
  `per_device_train_batch_size` x `gradient_accumulation_steps` = completions per step (one optimizer step
  per generation batch), `max_completion_length` = `--tokens`, its defaults otherwise (bf16 autocast, no
  vLLM). A callback times each step after a CUDA sync.
- Each trainer runs in its own subprocess, one after the other, so each peak memory is its own; the first
  `--warmup` steps are left out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from common import add_worker_flags, gpu_or_smoke, launch_worker, machine, write_doc_section, write_results
from sft_gpu_bench import make_model

ENV_ID = "orchard-bench/OneTurn-v0"
HARNESS = "bench-reply"
TOPICS = ["rivers", "bread", "stars", "trains", "glass", "music", "snow", "maps"]
REFERENCE = (
    "Reference (issue, one H100): TRL 1.16 `GRPOTrainer` without vLLM, 7.4 s per step, 8.6 completions/s, "
    "36 GB."
)
TARGET_SPEEDUP = 10.0


def reward_of(text: str) -> float:
    """The benchmark's reward: the parity of the reply's length (random-looking for a random model)."""
    return float(len(text) % 2)


# ------------------------------------------------------------------------------------------------ our env


def register() -> None:
    """The one-turn env and a harness that takes any reply as the answer (idempotent)."""
    from gymnasium.envs.registration import register as gym_register
    from gymnasium.envs.registration import registry

    from orchard_envs.harnesses import HARNESSES

    if ENV_ID not in registry:
        gym_register(ENV_ID, entry_point="grpo_gpu_bench:BenchEnv")
    HARNESSES.setdefault(HARNESS, "grpo_gpu_bench:ReplyHarness")


def _bench_classes() -> tuple[type, type]:
    from orchard_envs.agents.base import AssistantTurn
    from orchard_envs.envs.tool_env import ToolEnv, find_task
    from orchard_envs.envs.tools import ToolCall, function_tool
    from orchard_envs.envs.verdict import Verdict
    from orchard_envs.harnesses.base import Call, Harness

    answer = function_tool("answer", "Reply.", {"text": {"type": "string"}}, ["text"])

    class Env(ToolEnv):
        """Task t: "Say a word about t."; one reply, rewarded by `reward_of`."""

        def __init__(self, task_ids: list[str] | None = None, render_mode: str | None = None) -> None:
            super().__init__(max_steps=1, render_mode=render_mode)
            self.tasks = list(task_ids or TOPICS)
            self._reward = 0.0

        def _begin(self, task_id: str | None) -> tuple[str, dict[str, Any]]:
            topic = find_task(self.tasks, task_id, str, "topics") if task_id else self.tasks[0]
            self._tools, self._reward = [answer], 0.0
            task = {"task_id": topic, "suite": "bench", "split": "train"}
            return f"Say a word about {topic}.", {"task": task}

        def _run_tool(self, call: ToolCall, info: dict[str, Any]) -> str:
            self._reward = reward_of(str(call.arguments.get("text", "")))
            return "ok"

        def _grade(self, ending_call: ToolCall | None) -> Verdict:
            return Verdict(status="passed" if self._reward else "failed", reward=self._reward, resolved=False)

    class Reply(Harness):
        """The whole reply is the answer; the prompt is the instruction alone (as TRL's dataset has it)."""

        name = HARNESS

        def start(self, instruction: str, tools: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
            return [{"role": "user", "content": instruction}], tools

        def api_tools(self, offered: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return []

        def parse(self, turn: AssistantTurn) -> list[Call]:
            return [Call({"name": "answer", "arguments": {"text": turn.content or ""}})]

        def observation(self, call: Call, observation: str) -> dict[str, Any]:
            return {"role": "user", "content": observation}

        def encode(self, action: Any) -> AssistantTurn:
            return AssistantTurn(content=str(action["arguments"].get("text", "")))

    return Env, Reply


def __getattr__(name: str) -> Any:  # the env and harness classes, built on first use (gym's entry point)
    if name in ("BenchEnv", "ReplyHarness"):
        env, harness = _bench_classes()
        globals().update(BenchEnv=env, ReplyHarness=harness)
        return globals()[name]
    raise AttributeError(name)


# ------------------------------------------------------------------------------------------------ runs


def run_ours(spec: dict) -> dict:
    import torch

    from orchard_envs.trainers.grpo import train
    from orchard_envs.trainers.grpo_config import GRPOConfig
    from orchard_envs.trainers.metrics import read_metrics

    register()
    completions = spec["prompts"] * spec["group_size"]
    config = GRPOConfig(
        out=Path(spec["work"]) / "ours",
        model=spec["model"],
        env=ENV_ID,
        task_ids=TOPICS[: spec["prompts"]],
        harness=HARNESS,
        steps=spec["steps"],
        groups=spec["prompts"],
        group_size=spec["group_size"],
        max_rounds=1,
        balanced=False,
        jobs=completions,
        max_new_tokens=spec["tokens"],
        max_turns=1,
        lr=1e-6,
        dtype=spec["dtype"],
        device=spec["device"],
        progress=False,
        save_steps=10_000,
    )
    train(config)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None  # the run's
    steps = [
        {
            "seconds": row["step_s"],
            "rollout_seconds": row["rollout_s"],
            "completions": row["rollouts"],
            "generated_tokens": row["generated_tokens"],
            "skipped": bool(row.get("skipped")),
            "peak_memory_gib": peak,
        }
        for row in read_metrics(config.out)
    ]
    return {"steps": steps}


def run_trl(spec: dict) -> dict:
    import time

    import torch

    try:
        import trl
    except ImportError:
        raise SystemExit("TRL is not installed: .venv/bin/pip install trl==1.16.0") from None
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback

    cuda = spec["device"] == "cuda"
    generated: list[int] = []

    class StepTimer(TrainerCallback):
        """Seconds from the end of one optimizer step to the end of the next, after a CUDA sync."""

        def __init__(self) -> None:
            self.steps: list[dict] = []
            self.last = 0.0

        def _now(self) -> float:
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = self._now()

        def on_step_end(self, args, state, control, **kwargs):
            now = self._now()
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
            tokens, generated[:] = sum(generated), []
            step = {"seconds": now - self.last, "generated_tokens": tokens, "peak_memory_gib": peak}
            self.steps.append(step)
            self.last = now

        def on_log(self, args, state, control, logs=None, **kwargs):
            """TRL's own count of the step's completion tokens, where it logs one (else: re-encoded)."""
            mean = (logs or {}).get("completions/mean_length")
            if mean is not None and self.steps and "trl_counted" not in self.steps[-1]:
                self.steps[-1].update(generated_tokens=mean * completions, trl_counted=True)

    tokenizer = AutoTokenizer.from_pretrained(spec["model"])

    def reward(completions: list[Any], **kwargs: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        generated.extend(len(tokenizer.encode(text, add_special_tokens=False)) for text in texts)
        return [reward_of(text) for text in texts]

    prompts = [[{"role": "user", "content": f"Say a word about {t}."}] for t in TOPICS[: spec["prompts"]]]
    completions = spec["prompts"] * spec["group_size"]
    micro = min(completions, spec["trl_micro_batch"])
    args = trl.GRPOConfig(
        output_dir=str(Path(spec["work"]) / "trl"),
        num_generations=spec["group_size"],
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=completions // micro,
        max_completion_length=spec["tokens"],
        max_steps=spec["steps"],
        learning_rate=1e-6,
        model_init_kwargs={"dtype": spec["dtype"]},
        bf16=cuda,
        use_cpu=not cuda,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    timer = StepTimer()
    trainer = trl.GRPOTrainer(
        model=spec["model"],
        reward_funcs=[reward],
        args=args,
        train_dataset=Dataset.from_list([{"prompt": p} for p in prompts] * (spec["steps"] * 2)),
        processing_class=tokenizer,
        callbacks=[timer],
    )
    trainer.train()
    for step in timer.steps:
        step["completions"] = completions
    return {"steps": timer.steps, "version": trl.__version__}


def worker(name: str, spec_path: Path, result_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    result = run_ours(spec) if name == "ours" else run_trl(spec)
    result_path.write_text(json.dumps(result))


# ------------------------------------------------------------------------------------------------ report


def summarise(run: dict, warmup: int) -> dict:
    """Medians over the measured steps: seconds, completions/s, generated tokens/s; the peak memory."""
    if "error" in run:
        return run
    steps = run["steps"][warmup:]
    if not steps:
        return {"error": "no measured step"}
    seconds = statistics.median(s["seconds"] for s in steps)
    completions = statistics.median(s["completions"] for s in steps)
    tokens = statistics.median(s["generated_tokens"] for s in steps)
    peaks = [s["peak_memory_gib"] for s in run["steps"] if s.get("peak_memory_gib") is not None]
    return {
        "step_s": seconds,
        "completions_per_s": completions / seconds,
        "generated_tokens_per_s": tokens / seconds,
        "generated_tokens_per_step": tokens,
        "peak_memory_gib": max(peaks) if peaks else None,
        "skipped_steps": sum(bool(s.get("skipped")) for s in steps),
        "measured_steps": len(steps),
    }


def markdown(results: dict) -> str:
    rows = [
        "| trainer | step s | completions/s | generated tokens/s | tokens per step | peak GiB |",
        "|---|---|---|---|---|---|",
    ]
    for name, summary in results["summary"].items():
        if "error" in summary:
            rows.append(f"| {name} | {summary['error']} | | | | |")
            continue
        peak = f"{summary['peak_memory_gib']:.1f}" if summary["peak_memory_gib"] is not None else "n/a"
        rows.append(
            f"| {name} | {summary['step_s']:.2f} | {summary['completions_per_s']:.1f} | "
            f"{summary['generated_tokens_per_s']:.0f} | {summary['generated_tokens_per_step']:.0f} | {peak} |"
        )
    settings = results["settings"]
    head = (
        f"Produced by `benchmarks/grpo_gpu_bench.py` on {results['machine'].get('gpu', 'cpu')}: "
        f"{settings['prompts']} prompts x {settings['group_size']} completions x {settings['tokens']} tokens "
        f"per step, {settings['model']['shape']}, medians over {settings['steps'] - settings['warmup']} "
        "steps "
        f"after {settings['warmup']} warm-up. Speed-up (completions/s, ours / TRL): "
        f"{results.get('speedup', 'n/a')}. {REFERENCE} Target: >= {TARGET_SPEEDUP:.0f}x. "
        "Raw numbers: `benchmarks/results/grpo_gpu.json`."
    )
    return "## GRPO step on one GPU (`benchmarks/grpo_gpu_bench.py`)\n\n" + head + "\n\n" + "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU, a few steps; writes nothing")
    parser.add_argument("--prompts", type=int, default=8, help="groups per step")
    parser.add_argument("--group-size", type=int, default=8, help="completions per prompt")
    parser.add_argument("--tokens", type=int, default=None, help="tokens per completion (default 256)")
    parser.add_argument("--steps", type=int, default=None, help="steps in all (default 6)")
    parser.add_argument("--warmup", type=int, default=None, help="steps left out (default 2)")
    parser.add_argument("--trl-micro-batch", type=int, default=8, help="TRL's per-device train batch")
    parser.add_argument("--skip-trl", action="store_true", help="ours only (e.g. without TRL installed)")
    add_worker_flags(parser)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.spec, args.result)
        return

    import torch

    device = gpu_or_smoke(args.smoke)
    tokens = args.tokens or (8 if args.smoke else 256)
    steps = args.steps or (2 if args.smoke else 6)
    warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 2)
    prompts, group_size = (2, 4) if args.smoke else (args.prompts, args.group_size)
    with tempfile.TemporaryDirectory(prefix="grpo-gpu-bench-") as tmp:
        work = Path(tmp)
        model = make_model(work / "model", args.smoke)
        spec = {
            "work": str(work),
            "model": str(work / "model"),
            "device": device,
            "dtype": "float32" if args.smoke else "bfloat16",
            "prompts": prompts,
            "group_size": group_size,
            "tokens": tokens,
            "steps": steps,
            "trl_micro_batch": args.trl_micro_batch,
        }
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(spec))
        runs = {"orchard-train grpo": launch_worker(__file__, "ours", spec_path)}
        if not args.skip_trl:
            runs["TRL GRPOTrainer"] = launch_worker(__file__, "trl", spec_path)
    summary = {name: summarise(run, warmup) for name, run in runs.items()}
    results: dict[str, Any] = {
        "machine": {**machine(), "gpu": torch.cuda.get_device_name() if device == "cuda" else "cpu"},
        "settings": {**spec, "warmup": warmup, "model": model},
        "runs": runs,
        "summary": summary,
    }
    ours, theirs = summary["orchard-train grpo"], summary.get("TRL GRPOTrainer", {})
    if "completions_per_s" in ours and "completions_per_s" in theirs:
        results["speedup"] = round(ours["completions_per_s"] / theirs["completions_per_s"], 2)
    print(json.dumps(summary, indent=2))
    if args.smoke:
        return
    write_results("grpo_gpu", results)
    write_doc_section("grpo-gpu", markdown(results))


if __name__ == "__main__":
    main()
