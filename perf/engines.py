"""The engines against the built-in trainer, in one run: parity of advantages and losses per variant, and step time.

Parity (`--what parity`): for each variant the engine runs, one built-in step's responses are fed to the engine
(TRL: through its rollout hook; verl: as a verl batch through its own `compute_advantage` and policy-loss registry)
and the largest |advantage difference| and the |loss difference| are printed. Run it in this project's
environment for TRL and in .venv-verl for verl.

Step time (`--what time`, TRL only): the same variant, model, prompts, seed and budget trained by each engine;
seconds per rollout step (generation, grading and the step's minibatch updates), construction excluded.

    python perf/engines.py --engine trl --what parity,time [--steps 3] [--model sandbox]
    .venv-verl/bin/python perf/engines.py --engine verl --what parity
"""

from __future__ import annotations

from harness.machine import pin_cpu_kernels

pin_cpu_kernels()  # before torch loads: the kernels `harness` commands use (harness/machine.py)

import argparse
import copy
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from harness.budget import Budget
from harness.prompts import TEMPLATES
from trainers.algos.variants import MATH, missing_input, registry_shaped
from trainers.engines import parity

PARITY = {"prompts_per_step": 8, "group_size": 8, "max_new_tokens": 96, "minibatches": 1}


def engine_variants(engine: str) -> list[str]:
    """The registry-shaped variants (DAPO with its resampling off), and for verl those it takes as configured."""
    from trainers.engines.verl.config import VERL_INPUTS

    shaped = [v for v in MATH.names() if registry_shaped(v)]
    if engine == "trl":
        return shaped
    return [v for v in shaped if missing_input(v, variant_config(v), VERL_INPUTS) is None]


class MixedPool:
    """Grades every third request right, so random-weight groups carry signal (verdicts depend on the row only)."""

    def grade(self, requests):
        return [i % 3 == 0 for i in range(len(requests))]


def variant_config(variant, **extra):
    from harness.overrides import apply_overrides
    from trainers.builtin.base import VARIANTS

    values = {**PARITY, **extra, **({"dynamic_sampling": "false"} if variant == "dapo" else {})}
    return apply_overrides(VARIANTS.get(variant).Config(), {k: str(v) for k, v in values.items()})


def builtin_step(variant, model, tokenizer, problems, run_dir):
    from trainers.builtin.base import VARIANTS

    trainer = VARIANTS.get(variant)(variant_config(variant), model=model, tokenizer=tokenizer, problems=problems,
                                    template=TEMPLATES.get("plain"), answer_format="boxed", grader="math",
                                    max_new_tokens=100, budget=Budget(steps=1), seed=3, run_dir=run_dir,
                                    pool=MixedPool())
    return (trainer, *parity.builtin_step(trainer))


def trl_parity(variant, model, tokenizer, problems, tmp: Path) -> tuple[float, float, float]:
    from trainers.engines.trl import make_trl_trainer

    builtin, generated, keep, advantages, loss = builtin_step(variant, copy.deepcopy(model), tokenizer, problems,
                                                              tmp / f"{variant}-builtin")
    config = variant_config(variant)
    trl = make_trl_trainer(variant, config, model=copy.deepcopy(model), tokenizer=tokenizer, problems=problems,
                           template=TEMPLATES.get("plain"), answer_format="boxed", grader="math", max_new_tokens=100,
                           budget=Budget(steps=1), seed=3, run_dir=tmp / f"{variant}-trl", pool=MixedPool(),
                           rollout_func=parity.replay(generated.batch))
    inputs = [trl.train_dataset[i] for i in range(config.prompts_per_step) for _ in range(config.group_size)]
    trl.model.train()
    out = trl._generate_and_score_completions(inputs)
    trl_advantages = out["advantages"].view(-1, config.group_size)[keep].reshape(-1)
    advantage_gap = float((trl_advantages - advantages).abs().max()) if keep.any() else 0.0
    if not keep.any():
        return advantage_gap, 0.0, 0.0
    trl_loss = trl._compute_loss(trl.model, out)
    trl_loss.backward()
    loss.backward()
    return advantage_gap, abs(trl_loss.item() - loss.item()), gradient_gap(builtin.model, trl.model)


def gradient_gap(ours, theirs) -> float:
    """Largest |gradient difference| over all parameters, relative to the largest gradient."""
    pairs = [(a.grad, b.grad) for a, b in zip(ours.parameters(), theirs.parameters(), strict=True)]
    scale = max(float(a.abs().max()) for a, _ in pairs)
    gap = max(float((a - b).abs().max()) for a, b in pairs)
    return gap / scale if scale else gap  # no gradient at all (every kept advantage 0): the absolute gap


def verl_parity(variant, model, tokenizer, problems, tmp: Path) -> tuple[float, float, float]:
    import numpy as np
    from verl import DataProto
    from verl.trainer.config import AlgoConfig
    from verl.trainer.ppo import core_algos
    from verl.trainer.ppo.ray_trainer import compute_advantage

    from trainers.engines.verl import plugin, verl_name

    builtin, generated, keep, advantages, loss = builtin_step(variant, copy.deepcopy(model), tokenizer, problems,
                                                              tmp / f"{variant}-builtin")
    config = variant_config(variant)
    spec = tmp / f"{variant}.json"
    spec.write_text(json.dumps({"variant": variant, "max_length": builtin.max_new_tokens,
                                "config": dataclasses.asdict(config)}))
    os.environ[plugin.SPEC_ENV] = str(spec)
    plugin.load_spec.cache_clear()
    batch, group = generated.batch, config.group_size
    width = builtin.max_new_tokens  # verl pads every response to the generation limit
    mask = torch.zeros(len(batch.lengths), width)
    mask[:, : batch.response_mask.shape[1]] = batch.response_mask.float()
    scores = torch.zeros_like(mask)
    scores[torch.arange(len(mask)), batch.lengths - 1] = generated.accuracy.reshape(-1)
    uid = np.array([f"q{r // group}" for r in range(len(mask))], dtype=object)
    data = DataProto.from_dict(tensors={"token_level_rewards": scores, "response_mask": mask.clone()},
                               non_tensors={"uid": uid})
    name = verl_name(variant)
    out = compute_advantage(data, adv_estimator=name, config=AlgoConfig())
    kept_rows = keep.repeat_interleave(group)
    per_row = (out.batch["advantages"] * mask).sum(-1) / mask.sum(-1)
    advantage_gap = float((per_row[kept_rows] - advantages).abs().max()) if keep.any() else 0.0
    if not keep.any():
        return advantage_gap, 0.0, 0.0
    # verl's loss on the built-in forward's log-probs, padded to verl's width; its gradient reaches the model.
    logp, _ = builtin.forward(generated.select(keep).batch)
    padded = torch.zeros(len(mask), width).index_put((kept_rows.nonzero().flatten(),),
                                                     torch.nn.functional.pad(logp, (0, width - logp.shape[1])))
    verl_loss, _ = core_algos.get_policy_loss_fn(name)(padded.detach(), padded, out.batch["advantages"],
                                                       out.batch["response_mask"], config.loss_aggregation)
    grads = torch.autograd.grad(verl_loss, list(builtin.model.parameters()), retain_graph=True)
    expected = torch.autograd.grad(loss, list(builtin.model.parameters()))
    scale = max(float(g.abs().max()) for g in expected)
    gap = max(float((a - b).abs().max()) for a, b in zip(grads, expected, strict=True)) / scale
    return advantage_gap, abs(verl_loss.item() - loss.item()), gap


def step_times(variant: str, model_dir: Path, problems, task, steps: int) -> tuple[float, float]:
    """Seconds per rollout step: (built-in, TRL), same model, prompts, seed, budget and real grading."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.grading_pool import GradingPool
    from trainers.builtin.base import VARIANTS
    from trainers.engines.trl import make_trl_trainer

    config = VARIANTS.get(variant).Config()  # the shared schedule: 16 prompts x 8, 4 minibatch updates
    budget = Budget(steps=steps * 4)
    figures = []
    with GradingPool() as pool, tempfile.TemporaryDirectory() as tmp:
        for engine in ("builtin", "trl"):
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(model_dir)
            kwargs = dict(model=model, tokenizer=tokenizer, problems=problems, template=TEMPLATES.get(task.template),
                          answer_format=task.answer_format, grader=task.grader, max_new_tokens=task.max_new_tokens,
                          budget=budget, seed=0, run_dir=Path(tmp) / engine, pool=pool)
            trainer = (VARIANTS.get(variant)(config, **kwargs) if engine == "builtin"
                       else make_trl_trainer(variant, config, **kwargs))
            started = time.perf_counter()
            trainer.train()
            figures.append((time.perf_counter() - started) / steps)
    return figures[0], figures[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("trl", "verl"), default="trl")
    parser.add_argument("--what", default="parity,time")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--model", default="sandbox")
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.models import resolve_model
    from harness.task import TASKS

    model_dir = resolve_model(args.model).path
    task = TASKS.get("sandbox-train")
    problems = task.load(None).problems
    what = set(args.what.split(","))
    if "parity" in what:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        measure = trl_parity if args.engine == "trl" else verl_parity
        print(f"parity, built-in vs {args.engine}: one step of {PARITY['prompts_per_step']} prompts x "
              f"{PARITY['group_size']} on {args.model}, identical responses")
        print(f"| variant | max abs(A_{args.engine} - A_builtin) | abs(loss_{args.engine} - loss_builtin) | "
              "max abs(gradient difference) / max abs(gradient) |")
        print("|---|---|---|---|")
        with tempfile.TemporaryDirectory() as tmp:
            for variant in engine_variants(args.engine):
                gaps = measure(variant, model, tokenizer, problems, Path(tmp))
                print(f"| {variant} | " + " | ".join(f"{gap:.2e}" for gap in gaps) + " |", flush=True)
    if "time" in what and args.engine == "trl":
        builtin, trl = step_times("grpo", model_dir, problems, task, args.steps)
        print(f"grpo, {args.model}, 16 prompts x 8 a step, 4 updates a step, {args.steps} steps: built-in "
              f"{builtin:.2f} s/step, TRL {trl:.2f} s/step ({trl / builtin:.2f}x)")


if __name__ == "__main__":
    main()
