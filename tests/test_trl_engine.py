"""The TRL engine: the same variant math as the built-in trainer (parity on identical responses), the same budget,
ledger and run store, and `harness compare --engine trl` end to end on a random-weight model."""

import copy
import json

import pytest
import torch
from trainer_helpers import AlternatingPool, make_trainer

from harness.budget import Budget
from harness.cli import main
from harness.overrides import apply_overrides
from harness.prompts import TEMPLATES
from trainers.algos.variants import registry_shaped
from trainers.builtin.base import VARIANTS
from trainers.engines import parity
from trainers.protocol.schedule import updates_per_step

pytest.importorskip("trl")

# Every variant the registry holds whole (DAPO with its resampling off); their defaults otherwise.
REGISTRY_SHAPED = ["grpo", "dr-grpo", "dapo", "dgpo", "ngrpo", "gdpo", "a-grae", "grpo-lead", "reflection",
                   "unlikeliness"]
# On the sandbox warm start, whose answers end (a random model's rarely do, and Dr. GRPO would see only zeros).
PARITY = {"prompts_per_step": 4, "group_size": 4, "max_new_tokens": 64, "minibatches": 1, "ppo_epochs": 1}


@pytest.fixture(scope="module")
def warm_start_dir():
    from harness.models import resolve_model

    return resolve_model("sandbox").path


def test_the_registry_shaped_list_is_the_registrys():
    assert sorted(REGISTRY_SHAPED) == sorted(v for v in VARIANTS.names() if registry_shaped(v))


def builtin_step(variant, model_dir, run_dir, problems, **extra):
    trainer = make_trainer(VARIANTS.get(variant), model_dir, run_dir, problems, Budget(steps=1), **PARITY, **extra)
    return (trainer, *parity.builtin_step(trainer))


@pytest.mark.parametrize("variant", REGISTRY_SHAPED)
def test_one_trl_step_gives_the_builtin_advantages_and_loss(variant, warm_start_dir, tmp_path, train_problems):
    from trainers.engines.trl import make_trl_trainer

    extra = {"dynamic_sampling": False} if variant == "dapo" else {}
    builtin, generated, keep, advantages, loss = builtin_step(variant, warm_start_dir, tmp_path / "b",
                                                              train_problems, **extra)
    assert advantages.abs().sum() > 0, "a step without signal would test nothing"
    config = apply_overrides(VARIANTS.get(variant).Config(), {**PARITY, **extra})
    trl = make_trl_trainer(variant, config, model=copy.deepcopy(builtin.model), tokenizer=builtin.tokenizer,
                           problems=train_problems, template=TEMPLATES.get("plain"), answer_format="boxed",
                           grader="math", max_new_tokens=100, budget=Budget(steps=1), seed=3,
                           run_dir=tmp_path / "t", pool=AlternatingPool(),
                           rollout_func=parity.replay(generated.batch))
    group = config.group_size
    inputs = [trl.train_dataset[i] for i in range(config.prompts_per_step) for _ in range(group)]
    assert [train_problems[x["problem_index"]].id for x in inputs[::group]] == [p.id for p in generated.problems]
    trl.model.train()
    out = trl._generate_and_score_completions(inputs)
    trl_advantages = out["advantages"].view(-1, group)
    assert torch.allclose(trl_advantages[keep].reshape(-1), advantages.float(), atol=1e-6), variant
    assert (trl_advantages[~keep] == 0).all() and (out["completion_mask"].view(-1, group, out[
        "completion_mask"].shape[-1])[~keep] == 0).all()
    trl_loss = trl._compute_loss(trl.model, out)
    assert trl_loss.item() == pytest.approx(loss.item(), rel=1e-5, abs=1e-7), variant
    # The loss's value at ratio 1 does not depend on the log-probs; its gradient does, through every one.
    loss.backward()
    trl_loss.backward()
    for (name, ours), theirs in zip(builtin.model.named_parameters(), trl.model.parameters(), strict=True):
        assert torch.allclose(theirs.grad, ours.grad, rtol=1e-4, atol=1e-7), (variant, name)
    # The same responses were charged: rollouts, tokens and questions.
    assert (trl.ledger.rollouts, trl.ledger.tokens, trl.ledger.prompts) == (
        builtin.ledger.rollouts, builtin.ledger.tokens, builtin.ledger.prompts)


@pytest.mark.parametrize("variant, extra", [("grpo", {}), ("dapo", {"dynamic_sampling": False}), ("dgpo", {}),
                                            ("disco", {}), ("grpo-lead", {}), ("unlikeliness", {}),
                                            ("grpo", {"ppo_epochs": 2})])
def test_a_whole_trl_step_of_minibatch_updates_matches_the_builtin_step(variant, extra, warm_start_dir, tmp_path,
                                                                          train_problems):
    """A full rollout step of 4 minibatch updates, so later ones see ratios off 1 and the clips can bind (one epoch;
    the shared schedule's two in the last case): TRL, fed the built-in sampler's responses, takes the built-in trainer's minibatches (whole
    groups, the run seed's order), computes the same loss on each and makes the same update, up to float
    rounding."""
    from trainers.engines.trl import make_trl_trainer

    schedule = {**PARITY, "minibatches": 4, "lr": 1e-3, "warmup_steps": 1, **extra}
    builtin = make_trainer(VARIANTS.get(variant), warm_start_dir, tmp_path / "b", train_problems,
                           Budget(steps=8), **schedule)
    start, first = copy.deepcopy(builtin.model), copy.deepcopy(builtin.model)
    generated = builtin.generate_groups(builtin.draw_prompts())
    groups = generated.select(builtin.group_filter(generated))
    builtin_losses = []
    real_loss = builtin.loss
    builtin.loss = lambda *a: builtin_losses.append(real_loss(*a)) or builtin_losses[-1]
    builtin.update(groups)
    builtin_losses = [float(x) for x in builtin_losses]
    config = apply_overrides(VARIANTS.get(variant).Config(), schedule)
    updates = updates_per_step(config, config.prompts_per_step)
    trl = make_trl_trainer(variant, config, model=start, tokenizer=builtin.tokenizer, problems=train_problems,
                           template=TEMPLATES.get("plain"), answer_format="boxed", grader="math", max_new_tokens=100,
                           budget=Budget(steps=updates), seed=3, run_dir=tmp_path / "t", pool=AlternatingPool(),
                           rollout_func=parity.replay(generated.batch))
    trl_losses = []
    real_trl_loss = trl._compute_loss
    trl._compute_loss = lambda *a: trl_losses.append(real_trl_loss(*a)) or trl_losses[-1]
    trl.train()
    trl_losses = [float(x) for x in trl_losses]
    assert trl.ledger.steps == builtin.ledger.steps == updates and trl.ledger.rollouts == builtin.ledger.rollouts
    # Every minibatch's loss: the first at ratio 1 on the same weights, the later ones after the same updates.
    assert trl_losses == pytest.approx(builtin_losses, rel=1e-4, abs=1e-6), variant
    # Adam moves every weight by about the learning rate whatever its gradient's size, so a weight whose gradient
    # is at float-rounding level lands anywhere within lr: the update as a whole agrees (measured ~5e-4).
    ours = torch.cat([(a - s).flatten() for a, s in zip(builtin.model.parameters(), first.parameters(), strict=True)])
    theirs = torch.cat([(a - s).flatten() for a, s in zip(trl.model.parameters(), first.parameters(), strict=True)])
    assert float(ours.norm()) > 0 and float((ours - theirs).norm()) < 2e-3 * float(ours.norm()), variant
    # The mechanism probe is the same number on both engines: 0 for GRPO itself, the variant's effect otherwise.
    (logged,) = [json.loads(line) for line in (tmp_path / "t" / "train_log.jsonl").read_text().splitlines()]
    change = builtin.probes["update_change"]
    assert logged["probes"]["update_change"] == pytest.approx(change, rel=1e-3, abs=1e-7), variant
    assert (change == 0) == (variant == "grpo"), (variant, change)


@pytest.mark.parametrize("variant, needs", [("n-grpo", "rollout"), ("r3", "replay buffer"),
                                             ("mc-grpo", "pivot rollout"),
                                             ("rollout-gdro", "per-prompt rollout counts"), ("dapo", "resample")])
def test_variants_needing_hooks_trl_lacks_are_refused_with_the_hook_named(variant, needs):
    from trainers.engines.trl import check_supported

    with pytest.raises(ValueError, match=f"cannot run {variant}, which needs {needs}.*--engine builtin"):
        check_supported(variant, VARIANTS.get(variant).Config())


def test_compare_refuses_a_variant_trl_cannot_run_before_any_work(untrained_model_dir, tmp_path, capsys):
    code = main(["compare", "--engine", "trl", "--model", str(untrained_model_dir), "--variants", "grpo,n-grpo",
                 "--out", str(tmp_path / "runs"), "--quiet"])
    assert code == 2
    assert "cannot run n-grpo" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_compare_with_trl_ranks_rows_with_the_budget_consumed(untrained_model_dir, tmp_path):
    assert main(["compare", "--engine", "trl", "--model", str(untrained_model_dir), "--variants",
                 "grpo,dr-grpo,dgpo", "--out", str(tmp_path / "runs"), "--leaderboard-dir", str(tmp_path / "boards"),
                 "--name", "trl", "--budget", "rollouts=32", "--set", "all.prompts_per_step=4", "--set",
                 "all.group_size=4", "--set", "all.max_new_tokens=12", "--n", "2", "--k", "1,2", "--limit", "4",
                 "--quiet"]) == 0
    for variant in ("grpo", "dr-grpo", "dgpo"):
        train = tmp_path / "runs" / f"{variant}-seed0" / "train"
        ledger = json.loads((train / "ledger.json").read_text())
        # Two rollout steps of 4 x 4: the budget's first limit stops it, as the built-in trainer.
        assert ledger["consumed"]["rollouts"] == 32 and ledger["stopped_by"] == "rollouts", ledger
        # 2 epochs x 4 minibatch updates a step (the shared schedule)
        assert ledger["consumed"]["steps"] == 16 and ledger["steps_trained"] == 2
        assert ledger["consumed"]["update_tokens"] > 0 and ledger["consumed"]["tokens"] > 0
        log = [json.loads(line) for line in (train / "train_log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log] == [1, 2] and all(r["engine"] == "trl" for r in log)
        assert "clipped" in log[-1]["probes"]
        card = json.loads((train / "card.json").read_text())
        assert card["engine"] == "trl" and "trl" in card["versions"]
        assert (train / "final" / "model.safetensors").is_file()
    probes = json.loads((tmp_path / "runs" / "dgpo-seed0" / "train" / "train_log.jsonl").read_text().splitlines()[0])
    assert "advantage_change" in probes["probes"]
    board = (tmp_path / "boards" / "trl.md").read_text()
    assert all(f"| {v} |" in board for v in ("grpo", "dr-grpo", "dgpo", "warm start"))
    assert "| 32 / " in board  # the rollouts consumed, as built-in rows show them
    assert "Trained by the `trl` engine" in board


def test_a_killed_trl_row_resumes_without_losing_or_repeating_a_step(warm_start_dir, tmp_path, train_problems):
    """Killed during its third rollout step (checkpoints every step), a TRL row resumes from the last checkpoint:
    the same ledger and the same train log, sample counts, tokens and losses, as the run that was never killed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from trainers.engines import trl as engine

    config = apply_overrides(VARIANTS.get("grpo").Config(), {**PARITY, "minibatches": 2, "checkpoint_every": 1})
    budget = Budget(rollouts=3 * 16)

    def train(run_dir, die_at=None):
        kwargs = dict(model=AutoModelForCausalLM.from_pretrained(warm_start_dir, dtype=torch.float32),
                      tokenizer=AutoTokenizer.from_pretrained(warm_start_dir), problems=train_problems,
                      template=TEMPLATES.get("plain"), answer_format="boxed", grader="math", max_new_tokens=100,
                      budget=budget, seed=3, pool=AlternatingPool())
        real = engine.make_trl_trainer

        class Killed(TrainerCallback):
            def on_step_end(self, args, state, control, **_):
                if state.global_step == die_at:
                    raise KeyboardInterrupt("killed")

        def killable(*args, **more):
            trainer = real(*args, **more)
            if die_at is not None:
                trainer.add_callback(Killed())
            return trainer

        engine.make_trl_trainer = killable
        try:
            return engine.train_with_trl("grpo", config, run_dir=run_dir, **kwargs), kwargs["model"]
        finally:
            engine.make_trl_trainer = real

    def log(run_dir):
        return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]

    whole, trained = train(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "killed", die_at=5)  # mid third step: steps 1 and 2 are checkpointed
    assert [r["step"] for r in log(tmp_path / "killed")] == [1, 2]
    resumed, _ = train(tmp_path / "killed")
    assert (resumed.steps, resumed.rollouts, resumed.prompts) == (whole.steps, whole.rollouts, whole.prompts) == (
        6, 48, 12)
    assert [r["step"] for r in log(tmp_path / "killed")] == [1, 2, 3]
    # TRL's checkpoint holds the RNG and data position too: the resumed steps are the very same ones.
    def without_clock(records):
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in records]

    assert without_clock(log(tmp_path / "killed")) == without_clock(log(tmp_path / "whole"))
    # Killed after its last step's checkpoint (before compare wrote the final model): nothing is trained again,
    # the checkpoint's weights are the row's.
    again, model = train(tmp_path / "whole")
    assert (again.steps, again.rollouts, again.tokens) == (whole.steps, whole.rollouts, whole.tokens)
    assert len(log(tmp_path / "whole")) == 3
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained.state_dict().values(),
                                                 strict=True))
