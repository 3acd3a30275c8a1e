"""Training step time per variant against GRPO, in one run, on the sandbox warm start.

Each variant trains for the same number of steps from the same weights and seed; the figures are seconds
per step split into rollout (generation + grading) and update (reference and training forwards, backward,
optimizer), and milliseconds per 1,000 generated tokens, since variants that sample differently generate
different amounts. N-GRPO's decode overhead is its rollout time per token against GRPO's.

    python perf/train_step.py [--steps 6] [--variants grpo,dr-grpo,dapo,dgpo,n-grpo] [--model sandbox]
                              [--probe-cost]

--probe-cost adds, for each variant, the same steps with the `update_change` probe switched off (it reads 0),
so the update time the probe costs is measured against its baseline in the same run.
"""

from __future__ import annotations

from harness.machine import pin_cpu_kernels

pin_cpu_kernels()  # before torch loads: the kernels `harness` commands use (harness/machine.py)

import argparse
import tempfile
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.budget import Budget
from harness.grading_pool import GradingPool
from harness.models import resolve_model
from harness.prompts import TEMPLATES
from harness.task import TASKS
from trainers.builtin.base import VARIANTS


def measure(variant: str, model_dir, problems, task, steps: int, pool, probe: bool = True) -> dict:
    import trainers.builtin.grpo as grpo_module

    trainer_cls = VARIANTS.get(variant)
    timings = {"rollout": 0.0, "update": 0.0}

    def timed(key: str, method):
        def wrapper(self, *args, **kwargs):
            started = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                timings[key] += time.perf_counter() - started
        return wrapper

    Timed = type(f"Timed{trainer_cls.__name__}", (trainer_cls,),
                 {"generate_groups": timed("rollout", trainer_cls.generate_groups),
                  "update": timed("update", trainer_cls.update)})
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    real_probe = grpo_module.update_change
    if not probe:
        grpo_module.update_change = lambda *args: 0.0
    with tempfile.TemporaryDirectory() as run_dir:
        config = trainer_cls.Config()
        trainer = Timed(config, model=model, tokenizer=tokenizer, problems=problems,
                        template=TEMPLATES.get(task.template), answer_format=task.answer_format, grader=task.grader,
                        max_new_tokens=task.max_new_tokens, budget=Budget(prompts=steps * config.prompts_per_step),
                        seed=0, run_dir=run_dir, pool=pool, aux_rewards=task.aux_rewards)
        try:
            ledger = trainer.train()
        finally:
            grpo_module.update_change = real_probe
    trained_steps = trainer.step
    return {"variant": variant + ("" if probe else " (no probe)"), "steps": trained_steps, "tokens": ledger.tokens, "rollouts": ledger.rollouts,
            "rollout_s": timings["rollout"] / trained_steps, "update_s": timings["update"] / trained_steps,
            "rollout_ms_per_1k_tokens": 1000 * timings["rollout"] / ledger.tokens * 1000,
            "total_ms_per_1k_tokens": 1000 * (timings["rollout"] + timings["update"]) / ledger.tokens * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--variants", default="grpo,dr-grpo,dapo,dgpo,n-grpo")
    parser.add_argument("--model", default="sandbox")
    parser.add_argument("--probe-cost", action="store_true", help="also time each variant without update_change")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model_dir = resolve_model(args.model).path
    task = TASKS.get("sandbox-train")
    problems = task.load(None).problems
    with GradingPool() as pool:
        measure("grpo", model_dir, problems, task, 1, pool)  # warm-up: first-call costs are nobody's figure
        rows = [measure(v, model_dir, problems, task, args.steps, pool, probe)
                for v in args.variants.split(",") for probe in ((True, False) if args.probe_cost else (True,))]
    base = next((r for r in rows if r["variant"] == "grpo"), rows[0])
    print(f"{args.steps} steps per variant, 16 prompts x G=8, {torch.get_num_threads()} threads, model {args.model}")
    print(f"{'variant':18} {'rollout s/step':>15} {'update s/step':>14} {'tokens':>8} {'rollout ms/1k tok':>18} "
          f"{'total ms/1k tok':>16} {'vs grpo':>8}")
    for r in rows:
        ratio = r["total_ms_per_1k_tokens"] / base["total_ms_per_1k_tokens"]
        print(f"{r['variant']:18} {r['rollout_s']:15.2f} {r['update_s']:14.2f} {r['tokens']:8d} "
              f"{r['rollout_ms_per_1k_tokens']:18.1f} {r['total_ms_per_1k_tokens']:16.1f} {ratio:8.2f}x")


if __name__ == "__main__":
    main()
