"""SFT speed on one GPU: `orchard-train sft` against TRL's `SFTTrainer` (its defaults, packing), same run.

Run (one GPU; random weights, nothing downloaded):
    .venv/bin/python benchmarks/sft_gpu_bench.py
    .venv/bin/python benchmarks/sft_gpu_bench.py --micro-batch-size 1     # 4 forwards of 1 x 4096 per step
CPU check of the whole path (tiny model, writes nothing):
    .venv/bin/python benchmarks/sft_gpu_bench.py --smoke
Writes benchmarks/results/sft_gpu.json and its section of docs/benchmarks.md (not with --smoke).

Why: a trainer is only worth keeping if it is not slower nor hungrier than the library everyone would reach
for. Measured on one H100 (4 x 4096 tokens per step, bf16, SDPA), TRL 1.16 ran 20.8 k tokens/s (7.3 % MFU)
at 38 GB peak and a plain PyTorch loop 71.5 k tokens/s (25 %) at 52 GB; the target is MFU >= 35 % at no
more peak memory than TRL.

How:
- Model: a randomly initialised Qwen2.5-0.5B-shaped Qwen2 (494 M parameters, tied embeddings; speed does not
  depend on the weights), saved to a temporary folder with the embedded SmolLM2 tokenizer and chat template
  (its 49 152 ids are valid in the 151 936-row embedding).
- Data: synthetic one-turn conversations (a short user message, a long reply of random words), each exactly
  `--example-tokens` tokens (default: the sequence length, so every packed row is one whole conversation and
  "causal attention over the sequence length" is exact). Both trainers get the very same token ids: ours
  through episodes whose `turns` carry the ids (trained from the stored ids, loss on the reply), TRL through
  a pre-tokenised dataset (`input_ids` + `completion_mask`, `completion_only_loss=True`), so no
  re-tokenisation can change a length. Every step holds `batch_size x seq_len` real tokens, no padding
  (checked with `prepare` before training, and from TRL's own `num_tokens` count).
- Ours: `orchard_envs.trainers.sft.train` in bf16 weights (AdamW on them), SDPA, no gradient checkpointing
  by default; step times and peak memory from its `metrics.jsonl`.
- TRL: `SFTTrainer(model=<path>)` with `packing=True` (BFD, padding-free) and its defaults otherwise:
  gradient checkpointing on, bf16 autocast over float32 weights (TRL loads a path in float32 unless told).
  A second TRL run with bf16 weights, as ours, follows by default (`--trl-dtypes float32` skips it); the
  target compares with the first. A callback times each step from the end of one to the end of the next,
  after a CUDA sync (data loading and logging included).
- Micro-batch: both trainers run `--micro-batch-size` rows per forward (default 4: one 4 x 4096 forward
  per step, no accumulation); 1 trades speed for activation memory. Which is fastest while fitting is for
  the GPU run to show: try both.
- Each trainer runs in its own subprocess, one after the other: `torch.cuda.max_memory_allocated` is then
  that trainer's peak alone, with nothing left cached by the other (allocator pools, TRL/accelerate
  singletons, compiled kernels), which an in-process reset cannot guarantee.
- The first `--warmup` steps (allocator, autotuning) are left out of tokens/s; peak memory covers all steps.
- MFU = tokens/s x FLOPs per token / peak FLOP/s, FLOPs per token = 6 N + 6 L s d: N = all parameters
  (with tied embeddings that is exactly the matmul weights a token goes through, the output head included;
  the embedding lookup is no matmul and is not counted again; norms and biases are < 0.1 %), and causal
  attention 12 L s d / 2 for L layers, s = the attended length, d = the attention width (heads x head dim).
  This is the issue's formula (it reproduces 7.3 % from 20.8 k tokens/s). Peak: 989 TFLOP/s, H100 SXM
  dense bf16 (`--peak-tflops`). Our trainer projects only trained positions through the output head; the
  prompts are a few dozen tokens of 4096, so the nominal count overstates its work by well under 1 %.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from importlib import metadata
from pathlib import Path

from common import add_worker_flags, gpu_or_smoke, launch_worker, machine, write_doc_section, write_results

H100_BF16_TFLOPS = 989.0
QWEN25_05B = dict(
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=32768,
    tie_word_embeddings=True,
    rope_theta=1000000.0,
)
TINY = dict(  # --smoke: the same architecture, small enough for a laptop CPU; vocab = the tokenizer's
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    tie_word_embeddings=True,
    rope_theta=1000000.0,
)
REFERENCE = (
    "Reference (issue, one H100, 4 x 4096 tokens per step, bf16, SDPA): TRL 1.16 `SFTTrainer` 20.8 k "
    "tokens/s, 7.3 % MFU, 38 GB peak; a plain PyTorch loop 71.5 k tokens/s, 25 % MFU, 52 GB. "
    "Target: MFU >= 35 % at no more peak memory than TRL."
)
TARGET_MFU = 0.35


# ------------------------------------------------------------------------------------------------ setup


def make_model(folder: Path, smoke: bool) -> dict:
    """A randomly initialised Qwen2 (Qwen2.5-0.5B shape, or tiny) with SmolLM2's tokenizer, in `folder`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, Qwen2Config

    from orchard_envs.agents.hf_models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("SmolLM2-135M-Instruct"))
    shape = dict(TINY, vocab_size=len(tokenizer)) if smoke else QWEN25_05B
    config = Qwen2Config(
        **shape,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    params = sum(p.numel() for p in model.parameters())  # tied weights once
    # bf16 on disk for the real shape (half the bytes; float32 loads of it are exact), float32 for the CPU run
    model.to(torch.float32 if smoke else torch.bfloat16).save_pretrained(folder)
    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return {
        "shape": "tiny Qwen2 (smoke)" if smoke else "Qwen2.5-0.5B (random init)",
        "params": params,
        "layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
        "attention_width": heads * head_dim,
        "vocab": config.vocab_size,
        "tokenizer": "SmolLM2-135M-Instruct",
    }


def make_data(folder: Path, model_dir: Path, examples: int, example_tokens: int) -> tuple[Path, Path, float]:
    """The same token ids twice: episodes with stored ids (ours) and a pre-tokenised JSONL (TRL).
    Returns both paths and the share of tokens that get loss."""
    from transformers import AutoTokenizer

    from orchard_envs.agents.chat_format import ChatFormat
    from orchard_envs.episodes import EpisodeWriter

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    chat = ChatFormat(tokenizer)
    words = sorted(
        index
        for token, index in tokenizer.get_vocab().items()
        if token.startswith("Ġ") and len(token) > 3 and token[1:].isascii() and token[1:].isalpha()
    )
    rng = random.Random(0)
    episodes, pretokenised = folder / "episodes.jsonl", folder / "trl.jsonl"
    trained = 0
    with EpisodeWriter(episodes) as writer, pretokenised.open("w") as trl:
        for i in range(examples):
            user = {"role": "user", "content": f"Write note {i} of the benchmark in plain words."}
            prompt = tokenizer.encode(
                chat.render([user], [], add_generation_prompt=True), add_special_tokens=False
            )
            reply = [*rng.choices(words, k=example_tokens - len(prompt) - 1), tokenizer.eos_token_id]
            if len(reply) < 2:
                raise SystemExit(
                    f"--example-tokens {example_tokens} is shorter than a prompt ({len(prompt)})"
                )
            text = tokenizer.decode(reply[:-1])
            writer.write(
                {
                    "messages": [user, {"role": "assistant", "content": text}],
                    "metadata": {
                        "env_id": "bench/sft-speed",
                        "suite": "bench",
                        "task_id": f"note-{i}",
                        "harness": "synthetic",
                        "agent": "synthetic",
                        "reward": 1.0,
                        "resolved": True,
                        "status": "submitted",
                    },
                    "turns": [{"message_index": 1, "prompt_token_ids": prompt, "token_ids": reply}],
                }
            )
            mask = [0] * len(prompt) + [1] * len(reply)
            trl.write(json.dumps({"input_ids": prompt + reply, "completion_mask": mask}) + "\n")
            trained += len(reply)
    return episodes, pretokenised, trained / (examples * example_tokens)


def check_rows(config: dict, model_dir: Path, rows: int) -> dict:
    """What our trainer will see: every row exactly seq_len real tokens, from the stored ids, none cut."""
    from transformers import AutoTokenizer

    from orchard_envs.episodes import read_episodes
    from orchard_envs.trainers.config import SFTConfig
    from orchard_envs.trainers.credit import make_scorer
    from orchard_envs.trainers.examples import Tokenizer, episode_examples
    from orchard_envs.trainers.prepare import prepare

    sft = SFTConfig(**config)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    wrapped = Tokenizer.of(tokenizer, {tokenizer.eos_token_id})
    first = next(iter(read_episodes(sft.episodes[0])))
    source = episode_examples(first, wrapped)[0].source
    data = prepare(sft, wrapped, tokenizer.pad_token_id, make_scorer("heuristic"))
    packed = data.packed
    lengths = {len(row.input_ids) for row in packed.rows}
    problems = []
    if source != "token_ids":
        problems.append(f"examples come from {source}, not the stored token ids")
    if len(packed.rows) != rows or lengths != {sft.seq_len}:
        problems.append(f"{len(packed.rows)} rows of lengths {lengths}, expected {rows} of {sft.seq_len}")
    if packed.truncated_examples or packed.dropped_examples:
        problems.append(f"{packed.truncated_examples} truncated, {packed.dropped_examples} dropped examples")
    if problems:
        raise SystemExit("benchmark data is not what it should be: " + "; ".join(problems))
    return {"rows": len(packed.rows), "trained_tokens": packed.trained_tokens, "source": source}


# ----------------------------------------------------------------------------------------------- workers


def run_ours(spec: dict) -> dict:
    import torch

    from orchard_envs.trainers.config import SFTConfig
    from orchard_envs.trainers.metrics import read_metrics
    from orchard_envs.trainers.sft import train

    config = SFTConfig(**spec["ours"])
    result = train(config)
    steps = [
        {
            "seconds": row["step_s"],
            "tokens": row["tokens"],
            "trained_tokens": row["trained_tokens"],
            "loss": row["loss"],
            "peak_memory_gib": row.get("peak_memory_gb"),
        }
        for row in read_metrics(config.out)
    ]
    return {"steps": steps, "device": _device_name(torch), "data": result.data}


def run_trl(spec: dict, dtype: str) -> dict:
    import time

    import torch

    try:
        import trl
    except ImportError:
        raise SystemExit("TRL is not installed: .venv/bin/pip install trl (1.16 tested)") from None
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback

    cuda = spec["device"] == "cuda"

    class StepTimer(TrainerCallback):
        """Seconds from the end of one optimizer step to the end of the next, after a CUDA sync."""

        def __init__(self) -> None:
            self.steps: list[dict] = []
            self.last = 0.0
            self.seen = 0

        def _now(self) -> float:
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = self._now()

        def on_step_end(self, args, state, control, **kwargs):
            now = self._now()
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
            self.steps.append({"seconds": now - self.last, "peak_memory_gib": peak})
            self.last = now

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs and self.steps and "loss" not in self.steps[-1]:
                seen = int(logs.get("num_tokens", 0))
                self.steps[-1].update(loss=logs["loss"], tokens=seen - self.seen)
                self.seen = seen

    with open(spec["trl_data"]) as handle:
        dataset = Dataset.from_list([json.loads(line) for line in handle])
    ours = spec["ours"]
    args = trl.SFTConfig(
        output_dir=str(Path(spec["work"]) / f"trl-{dtype}"),
        packing=True,
        max_length=ours["seq_len"],
        per_device_train_batch_size=ours["micro_batch_size"],
        gradient_accumulation_steps=ours["batch_size"] // ours["micro_batch_size"],
        max_steps=ours["max_steps"],
        learning_rate=ours["lr"],
        completion_only_loss=True,  # loss on the reply, as ours; the same work either way
        model_init_kwargs={"dtype": dtype, "attn_implementation": ours["attention"]},
        bf16=cuda,
        use_cpu=not cuda,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    timer = StepTimer()
    trainer = trl.SFTTrainer(
        model=spec["model"],
        args=args,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(spec["model"]),
        callbacks=[timer],
    )
    trainer.train()
    settings = {
        "gradient_checkpointing": args.gradient_checkpointing,
        "packing_strategy": args.packing_strategy,
        "padding_free": trainer.padding_free,
        "weights": dtype,
        "bf16_autocast": args.bf16,
        "optimizer": getattr(args.optim, "value", str(args.optim)),
    }
    return {"steps": timer.steps, "device": _device_name(torch), "settings": settings}


def _device_name(torch) -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def worker(name: str, spec_path: Path, result_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    result = run_ours(spec) if name == "ours" else run_trl(spec, name.removeprefix("trl-"))
    result_path.write_text(json.dumps(result))


# ------------------------------------------------------------------------------------------------ report


def summarise(run: dict, warmup: int, expected_steps: int, flops_per_token: float, peak_flops: float | None):
    if "error" in run:
        return run
    steps = run["steps"]
    if len(steps) != expected_steps:
        return {"error": f"{len(steps)} steps recorded, expected {expected_steps}"}
    measured = steps[warmup:]
    seconds = sum(step["seconds"] for step in measured)
    tokens = sum(step["tokens"] for step in measured)
    tokens_per_s = tokens / seconds
    peaks = [step["peak_memory_gib"] for step in steps if step.get("peak_memory_gib") is not None]
    return {
        "tokens_per_s": tokens_per_s,
        "mfu": tokens_per_s * flops_per_token / peak_flops if peak_flops else None,
        "peak_memory_gib": max(peaks) if peaks else None,
        "step_s_mean": seconds / len(measured),
        "step_s": [round(step["seconds"], 4) for step in steps],
        "tokens_per_step": sorted({step["tokens"] for step in steps}),
        "measured_steps": len(measured),
        "loss_first": steps[0].get("loss"),
        "loss_last": steps[-1].get("loss"),
        "device": run.get("device"),
        **({"settings": run["settings"]} if "settings" in run else {}),
    }


def versions() -> dict:
    found = {}
    for package in ("torch", "transformers", "trl", "accelerate", "datasets"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def table(results: dict) -> str:
    config = results["config"]
    trl_version = results["versions"]["trl"]
    lines = ["| trainer | tokens/s | MFU | peak memory (GiB) | settings |", "|---|---|---|---|---|"]
    for name, row in results["trainers"].items():
        if "error" in row:
            lines.append(f"| {label(name, trl_version)} | failed: {row['error']} | | | |")
            continue
        mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "n/a"
        peak = f"{row['peak_memory_gib']:.1f}" if row["peak_memory_gib"] is not None else "n/a"
        if name == "ours":
            settings = (
                f"bf16 weights, micro-batch {config['micro_batch_size']}, gradient checkpointing "
                f"{'on' if config['gradient_checkpointing'] else 'off'}, loss chunk {config['loss_chunk']}"
            )
            if config["dtype"] == "float32":
                settings = settings.replace("bf16", "float32")
        else:
            s = row["settings"]
            settings = (
                f"{s['weights']} weights{', bf16 autocast' if s['bf16_autocast'] else ''}, "
                f"micro-batch {config['micro_batch_size']}, gradient checkpointing "
                f"{'on' if s['gradient_checkpointing'] else 'off'}, packing {s['packing_strategy']}"
                f"{' (padding-free)' if s['padding_free'] else ''}, {s['optimizer']}"
            )
        lines.append(
            f"| {label(name, trl_version)} | {row['tokens_per_s']:,.0f} | {mfu} | {peak} | {settings} |"
        )
    return "\n".join(lines)


def label(name: str, trl_version: str | None) -> str:
    if name == "ours":
        return "Orchard `orchard-train sft`"
    dtype = name.removeprefix("trl-")
    kind = "defaults + packing" if dtype == "float32" else "packing, bf16 weights"
    return f"TRL {trl_version} `SFTTrainer` ({kind})"


def verdict(results: dict) -> dict:
    ours, trl = results["trainers"].get("ours", {}), results["trainers"].get("trl-float32", {})
    if "tokens_per_s" not in ours or ours["mfu"] is None:
        return {"met": None, "why": "no MFU for our trainer"}
    mfu_ok = ours["mfu"] >= TARGET_MFU
    if "tokens_per_s" not in trl or trl["peak_memory_gib"] is None or ours["peak_memory_gib"] is None:
        return {"met": None, "mfu_ok": mfu_ok, "why": "no TRL-defaults peak memory to compare with"}
    memory_ok = ours["peak_memory_gib"] <= trl["peak_memory_gib"]
    speedup = ours["tokens_per_s"] / trl["tokens_per_s"]
    return {"met": mfu_ok and memory_ok, "mfu_ok": mfu_ok, "memory_ok": memory_ok, "speedup_vs_trl": speedup}


def markdown(results: dict) -> str:
    config, model, data, versions = results["config"], results["model"], results["data"], results["versions"]
    met = results["target"]
    outcome = {True: "met", False: "not met", None: "not decided"}[met["met"]]
    speed = f" ({met['speedup_vs_trl']:.2f}x TRL's tokens/s)" if "speedup_vs_trl" in met else ""
    peak = f"{config['peak_tflops']:g} TFLOP/s" if config["peak_tflops"] else "peak (none given)"
    setup = " ".join(
        [
            f"{model['shape']}, {model['params'] / 1e6:.1f} M parameters;",
            f"{config['batch_size']} x {config['seq_len']} tokens per optimizer step",
            f"(one {data['example_tokens']}-token conversation per packed row,",
            f"{data['trained_share']:.1%} of tokens trained), {config['attention']},",
            "the same token ids for both trainers;",
            f"{config['steps']} measured steps after {config['warmup']} warmup,",
            "each trainer in its own process.",
            f"MFU = tokens/s x (6N + 6 L s d) / {peak},",
            f"{results['flops_per_token'] / 1e9:.2f} GFLOP per token.",
            f"Versions: torch {versions['torch']}, transformers {versions['transformers']},",
            f"TRL {versions['trl']}.",
        ]
    )
    return "\n\n".join(
        [
            f"## SFT on one GPU: Orchard vs TRL (`benchmarks/sft_gpu_bench.py`, {results['device']})",
            setup,
            table(results),
            f"{REFERENCE} This run: target {outcome}{speed}.",
        ]
    )


# -------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU, a few steps; writes nothing")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per packed row (default 4096)")
    parser.add_argument("--batch-size", type=int, default=4, help="packed rows per optimizer step")
    parser.add_argument(
        "--micro-batch-size", type=int, default=4, help="rows per forward pass (both trainers)"
    )
    parser.add_argument(
        "--example-tokens", type=int, default=None, help="tokens per conversation (default: seq-len)"
    )
    parser.add_argument("--warmup", type=int, default=None, help="steps left out of tokens/s (default 3)")
    parser.add_argument("--steps", type=int, default=None, help="measured steps (default 10)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="for our trainer")
    parser.add_argument("--loss-chunk", type=int, default=4096, help="our trainer's output-head chunk")
    parser.add_argument("--attention", default="sdpa")
    parser.add_argument(
        "--trl-dtypes",
        nargs="*",
        choices=["float32", "bfloat16"],
        default=None,
        help="TRL weight dtypes; float32 is its default for a model path (default: both; smoke: float32)",
    )
    parser.add_argument("--peak-tflops", type=float, default=None, help="989 (H100 bf16 dense) on GPU")
    add_worker_flags(parser)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.spec, args.result)
        return


    device = gpu_or_smoke(args.smoke)
    seq_len = args.seq_len or (256 if args.smoke else 4096)
    warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 3)
    steps = args.steps or (2 if args.smoke else 10)
    example_tokens = args.example_tokens or seq_len
    if seq_len % example_tokens or args.batch_size % args.micro_batch_size:
        raise SystemExit(
            "--seq-len must be a multiple of --example-tokens, --batch-size of --micro-batch-size"
        )
    peak_tflops = args.peak_tflops or (None if device == "cpu" else H100_BF16_TFLOPS)
    trl_dtypes = (
        args.trl_dtypes
        if args.trl_dtypes is not None
        else (["float32"] if args.smoke else ["float32", "bfloat16"])
    )
    total = warmup + steps
    rows = args.batch_size * total  # each step sees new rows: one epoch, no repeats
    examples = rows * (seq_len // example_tokens)

    with tempfile.TemporaryDirectory(prefix="sft-gpu-bench-") as tmp:
        work = Path(tmp)
        model_dir = work / "model"
        model = make_model(model_dir, args.smoke)
        episodes, trl_data, trained_share = make_data(work, model_dir, examples, example_tokens)
        ours = {
            "episodes": [str(episodes)],
            "out": str(work / "ours"),
            "model": str(model_dir),
            "seq_len": seq_len,
            "batch_size": args.batch_size,
            "micro_batch_size": args.micro_batch_size,
            "max_steps": total,
            "lr": 2e-5,
            "dtype": "float32" if args.smoke else "bfloat16",
            "gradient_checkpointing": args.gradient_checkpointing,
            "attention": args.attention,
            "loss_chunk": args.loss_chunk,
            "device": device,
            "progress": False,
        }
        checked = check_rows(ours, model_dir, rows)
        spec = {
            "ours": ours,
            "model": str(model_dir),
            "trl_data": str(trl_data),
            "device": device,
            "work": tmp,
        }
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(spec))
        runs = {"ours": launch_worker(__file__, "ours", spec_path)}
        for dtype in trl_dtypes:
            runs[f"trl-{dtype}"] = launch_worker(__file__, f"trl-{dtype}", spec_path)

    span = example_tokens  # causal attention reaches back over one conversation
    flops_per_token = 6 * model["params"] + 6 * model["layers"] * span * model["attention_width"]
    peak_flops = peak_tflops * 1e12 if peak_tflops else None
    trainers = {
        name: summarise(run, warmup, total, flops_per_token, peak_flops) for name, run in runs.items()
    }
    device_name = next((r["device"] for r in trainers.values() if r.get("device")), device)
    results = {
        "machine": machine(),
        "device": device_name,
        "versions": versions(),
        "config": {
            "smoke": args.smoke,
            "seq_len": seq_len,
            "batch_size": args.batch_size,
            "micro_batch_size": args.micro_batch_size,
            "tokens_per_step": args.batch_size * seq_len,
            "warmup": warmup,
            "steps": steps,
            "dtype": ours["dtype"],
            "attention": args.attention,
            "gradient_checkpointing": args.gradient_checkpointing,
            "loss_chunk": args.loss_chunk,
            "trl_dtypes": trl_dtypes,
            "peak_tflops": peak_tflops,
        },
        "model": model,
        "data": {
            "examples": examples,
            "example_tokens": example_tokens,
            "trained_share": trained_share,
            **checked,
        },
        "flops_per_token": flops_per_token,
        "mfu_formula": "tokens/s * (6 N + 6 L s d) / peak; N all parameters (tied head counted once), "
        "s attended length, d heads x head_dim",
        "trainers": trainers,
        "reference": REFERENCE,
    }
    results["target"] = verdict(results)
    print(table(results))
    print(json.dumps(results["target"]))
    if args.smoke:  # the whole report, printed: a CPU run never replaces the GPU numbers
        print(json.dumps(results, indent=2))
        print(markdown(results))
    else:
        print(write_results("sft_gpu", results))
        write_doc_section("sft_gpu", markdown(results))
    failed = [name for name, row in trainers.items() if "error" in row]
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
