"""Local policy speed: batched sampling, the prompt ledger vs re-tokenizing, orchard-serve vs direct calls.

Run: .venv/bin/python benchmarks/agent_bench.py   (CPU; SmolLM2-135M-Instruct, the embedded default)
Writes benchmarks/results/agents.json and its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import uvicorn
from common import machine, percentiles, write_doc_section, write_results

from orchard_envs.agents.chat_format import ChatFormat
from orchard_envs.agents.hf_backend import HFGenerator, Sampling
from orchard_envs.agents.prompt_ledger import PromptLedger

OBSERVATION = "\n".join(f"tests/test_module_{i}.py::test_case_{i} PASSED" for i in range(40))


def timed(fn, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def sampling(generator: HFGenerator, batch: int, new_tokens: int) -> dict:
    """Tokens/s for `batch` prompts sampled one at a time vs in one left-padded batch."""
    chat = ChatFormat(generator.tokenizer)
    prompts = []
    for i in range(batch):
        text = chat.render(
            [{"role": "user", "content": f"Summarise this log (run {i}):\n{OBSERVATION[: 400 + 90 * i]}"}],
            [],
            add_generation_prompt=True,
        )
        prompts.append(generator.tokenizer.encode(text, add_special_tokens=False))
    params = Sampling(max_new_tokens=new_tokens, temperature=1.0, seed=0)
    generator.generate(prompts[:1], params)  # warm-up
    started = time.perf_counter()
    one_by_one = sum(len(generator.generate([p], params)[0].token_ids) for p in prompts)
    sequential = time.perf_counter() - started
    started = time.perf_counter()
    together = sum(len(g.token_ids) for g in generator.generate(prompts, params))
    batched = time.perf_counter() - started
    return {
        "batch": batch,
        "prompt_tokens_mean": sum(map(len, prompts)) / batch,
        "sequential_tokens_per_s": one_by_one / sequential,
        "batched_tokens_per_s": together / batched,
    }


def ledger_vs_retokenize(generator: HFGenerator, turns: int) -> dict:
    """Per-turn cost of building prompt ids at turn `turns` of a bash-style conversation."""
    tokenizer = generator.tokenizer
    chat = ChatFormat(tokenizer)
    end = {tokenizer.convert_tokens_to_ids("<|im_end|>")}
    ledger = PromptLedger(chat)
    messages = [{"role": "system", "content": "You are an agent."}, {"role": "user", "content": "Fix it."}]
    reply_ids = tokenizer.encode("```bash\npytest -q\n```", add_special_tokens=False) + sorted(end)
    ledger_ms, full_ms = [], []
    for _ in range(turns):
        started = time.perf_counter()
        ledger.prompt(messages, [])
        ledger_ms.append(time.perf_counter() - started)
        started = time.perf_counter()
        tokenizer.encode(chat.render(messages, [], add_generation_prompt=True), add_special_tokens=False)
        full_ms.append(time.perf_counter() - started)
        message = {"role": "assistant", "content": "```bash\npytest -q\n```"}
        messages.append(message)
        ledger.record(message, reply_ids, end)
        messages.append({"role": "user", "content": f"Output:\n{OBSERVATION}"})
    last = slice(-5, None)
    return {
        "turns": turns,
        "prompt_tokens_at_last_turn": len(ledger.prompt(messages, []).token_ids),
        "ledger_ms_last_turns": percentiles(ledger_ms[last])["mean_ms"],
        "retokenize_ms_last_turns": percentiles(full_ms[last])["mean_ms"],
    }


def serve_vs_direct(generator: HFGenerator, requests: int, concurrency: int) -> dict:
    """Latency of one chat completion through orchard-serve (openai client, real HTTP) vs a direct call."""
    import openai

    from orchard_envs.model_server.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(generator), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="EMPTY", max_retries=0)
        messages = [{"role": "user", "content": f"Summarise:\n{OBSERVATION[:800]}"}]
        ask = lambda: client.chat.completions.create(  # noqa: E731
            model=generator.name, messages=messages, max_tokens=16, temperature=0
        )
        chat = ChatFormat(generator.tokenizer)
        ids = generator.tokenizer.encode(
            chat.render(messages, [], add_generation_prompt=True), add_special_tokens=False
        )
        direct = lambda: generator.generate([ids], Sampling(max_new_tokens=16))  # noqa: E731
        ask(), direct()  # warm-up
        served = percentiles(timed(ask, requests))
        plain = percentiles(timed(direct, requests))
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda _: ask(), range(requests)))
        concurrent = requests / (time.perf_counter() - started)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return {
        "served_p50_ms": served["p50_ms"],
        "direct_p50_ms": plain["p50_ms"],
        "requests": requests,
        "concurrency": concurrency,
        "served_sequential_req_per_s": 1e3 / served["mean_ms"],
        "served_concurrent_req_per_s": concurrent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--requests", type=int, default=16)
    args = parser.parse_args()
    generator = HFGenerator()
    results = {
        "machine": machine(),
        "model": generator.name,
        "device": generator.device,
        "sampling": sampling(generator, args.batch, args.new_tokens),
        "prompt_ids": ledger_vs_retokenize(generator, args.turns),
        "serve": serve_vs_direct(generator, args.requests, concurrency=4),
    }
    print(write_results("agents", results))
    s, p, v = results["sampling"], results["prompt_ids"], results["serve"]
    write_doc_section(
        "agents",
        f"""## Local policy (`benchmarks/agent_bench.py`, {generator.name} on {generator.device}, \
{machine()["cpus"]} CPUs)

| measure | Orchard | baseline |
|---|---|---|
| sampling, {s["batch"]} prompts of ~{s["prompt_tokens_mean"]:.0f} tokens | \
{s["batched_tokens_per_s"]:.0f} tokens/s batched | {s["sequential_tokens_per_s"]:.0f} tokens/s one at a time |
| prompt ids at turn {p["turns"]} ({p["prompt_tokens_at_last_turn"]} tokens) | \
{p["ledger_ms_last_turns"]:.2f} ms (ledger: render + encode the new suffix) | \
{p["retokenize_ms_last_turns"]:.2f} ms (render + re-tokenize everything) |
| one chat completion, 16 new tokens, p50 | {v["served_p50_ms"]:.0f} ms through orchard-serve (HTTP, \
openai client) | {v["direct_p50_ms"]:.0f} ms calling the generator directly |
| {v["requests"]} completions, {v["concurrency"]} clients at once | \
{v["served_concurrent_req_per_s"]:.1f} req/s | {v["served_sequential_req_per_s"]:.1f} req/s one client |
""",
    )


if __name__ == "__main__":
    main()
