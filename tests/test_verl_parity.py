"""Parity in verl's own environment (.venv-verl; CI: `pytest -m verl`): every variant the verl engine runs gives,
through verl's `compute_advantage` and `get_policy_loss_fn`, the advantages and loss the built-in trainer computes
(the registered variant math on grouped tensors) on identical tensors; the harness's GRPO equals verl's own; and
the generated launch overrides compose against verl's real `ppo_trainer` config."""

import json

import numpy as np
import pytest
import torch

verl = pytest.importorskip("verl")

from verl import DataProto  # noqa: E402
from verl.trainer.config import AlgoConfig  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage  # noqa: E402

from harness.budget import Budget  # noqa: E402
from trainers import algos  # noqa: E402
from trainers.algos.variants import MATH, GroupBatch, registry_shaped  # noqa: E402

pytestmark = pytest.mark.verl

GROUPS, GROUP, WIDTH, MAX_LENGTH = 6, 4, 12, 12
# The registry-shaped variants whose reward and advantage read only what verl's advantage step sees (the rest are
# refused by trainers.engines.verl.config.check_supported, tested in tests/test_verl_engine.py).
VERL_VARIANTS = ["grpo", "dr-grpo", "dapo", "dgpo", "ngrpo", "a-grae", "grpo-lead"]


def variant_config(variant):
    """The variant's defaults (as the plugin gets them: JSON into a namespace), at this test's group size."""
    import dataclasses

    from trainers.builtin.base import VARIANTS

    cfg = dataclasses.replace(VARIANTS.get(variant).Config(), group_size=GROUP, max_new_tokens=MAX_LENGTH,
                              **({"dynamic_sampling": False} if variant == "dapo" else {}))
    return dataclasses.asdict(cfg)


@pytest.fixture
def spec(tmp_path, monkeypatch):
    from trainers.engines.verl import plugin

    def use(variant):
        path = tmp_path / f"{variant}.json"
        path.write_text(json.dumps({"variant": variant, "max_length": MAX_LENGTH, "config": variant_config(variant)}))
        monkeypatch.setenv(plugin.SPEC_ENV, str(path))
        plugin.load_spec.cache_clear()
        return plugin.load_spec().config

    yield use
    plugin.load_spec.cache_clear()


def rollout(seed):
    """A verl batch whose rows are interleaved across prompts (as verl's balance_batch leaves them), with binary
    scores at each response's last token, and the same data grouped [N, G] in prompt order."""
    g = torch.Generator().manual_seed(seed)
    accuracy = (torch.rand(GROUPS, GROUP, generator=g) < 0.5).float()
    accuracy[0] = 1.0  # an all-correct group and an all-wrong one: filters and degenerate groups act
    accuracy[1] = 0.0
    lengths = torch.randint(1, WIDTH + 1, (GROUPS, GROUP), generator=g)
    lengths[2, 0] = WIDTH  # one response at the generation limit (truncated)
    rows = torch.randperm(GROUPS * GROUP, generator=g)  # verl row r holds grouped sample rows[r]
    flat_acc, flat_len = accuracy.reshape(-1)[rows], lengths.reshape(-1)[rows]
    mask = (torch.arange(WIDTH)[None, :] < flat_len[:, None]).float()
    scores = torch.zeros(len(rows), WIDTH)
    scores[torch.arange(len(rows)), flat_len - 1] = flat_acc
    uid = np.array([f"q{int(r) // GROUP}" for r in rows], dtype=object)
    data = DataProto.from_dict(tensors={"token_level_rewards": scores, "response_mask": mask.clone()},
                               non_tensors={"uid": uid})
    batch = GroupBatch(accuracy=accuracy, lengths=lengths, truncated=lengths >= MAX_LENGTH, max_length=MAX_LENGTH)
    return data, batch, rows, mask


def builtin_advantages(variant, batch, cfg):
    """What the built-in trainer computes: reward, filter, advantage of the kept groups (registered math)."""
    import dataclasses

    math = MATH.get(variant)
    rewards, components, _ = math.reward(batch, cfg)
    batch = dataclasses.replace(batch, rewards=rewards, components=components)
    keep = math.group_filter(batch, cfg)
    advantages = torch.zeros(GROUPS, GROUP)
    if keep.any():
        kept = dataclasses.replace(batch, accuracy=batch.accuracy[keep], lengths=batch.lengths[keep],
                                   truncated=batch.truncated[keep], rewards=rewards[keep],
                                   components={k: v[keep] for k, v in components.items()})
        advantages[keep] = math.advantage(kept, cfg)[0]
    return advantages, keep


def test_the_plugin_is_loaded_by_import_verl_and_registers_every_registry_shaped_variant():
    names = {f"harness_{v.replace('-', '_')}" for v in MATH.names() if registry_shaped(v)}
    assert names <= set(core_algos.ADV_ESTIMATOR_REGISTRY) and names <= set(core_algos.POLICY_LOSS_REGISTRY)
    assert "harness_n_grpo" not in core_algos.ADV_ESTIMATOR_REGISTRY  # its mechanism is in the rollout


@pytest.mark.parametrize("variant", VERL_VARIANTS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_verl_advantage_and_loss_equal_the_builtin_trainers(variant, seed, spec):
    import types

    cfg = types.SimpleNamespace(**variant_config(variant))
    spec(variant)
    name = f"harness_{variant.replace('-', '_')}"
    data, batch, rows, mask = rollout(seed)
    out = compute_advantage(data, adv_estimator=name, config=AlgoConfig())
    expected, keep = builtin_advantages(variant, batch, cfg)
    per_row = expected.reshape(-1)[rows]
    kept_rows = keep.repeat_interleave(GROUP)[rows]
    # Each response's advantage on every one of its tokens; a dropped group's rows masked out.
    assert torch.allclose(out.batch["advantages"], per_row[:, None] * mask * kept_rows[:, None], atol=1e-6)
    assert torch.equal(out.batch["response_mask"], mask * kept_rows[:, None])

    g = torch.Generator().manual_seed(100 + seed)
    old = -torch.rand(len(rows), WIDTH, generator=g) * 3
    logp = (old + 0.3 * torch.randn(len(rows), WIDTH, generator=g)).requires_grad_()
    loss_fn = core_algos.get_policy_loss_fn(name)
    loss, metrics = loss_fn(old, logp, out.batch["advantages"], out.batch["response_mask"], cfg.loss_aggregation)
    if not keep.any():
        return
    # The built-in trainer trains the kept groups' rows only (the filter dropped the rest).
    sel = kept_rows.nonzero().flatten()
    ref_logp = logp.detach()[sel].clone().requires_grad_()
    expected_loss, _ = MATH.get(variant).loss(ref_logp, old[sel], per_row[sel], mask[sel], None, cfg, MAX_LENGTH)
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-6, abs=1e-7)
    loss.backward()
    expected_loss.backward()
    assert torch.allclose(logp.grad[sel], ref_logp.grad, atol=1e-7)
    assert "harness/clipped" in metrics
    # The diagnostics are those of the kept rows alone (a dropped group's zeroed mask leaves it out).
    kept_mask = mask[sel] > 0
    kept_ratio = torch.exp(algos.log_ratio(logp.detach()[sel], old[sel]))[kept_mask]
    assert metrics["harness/ratio_mean"] == pytest.approx(float(kept_ratio.mean()), rel=1e-6)
    assert metrics["harness/ratio_max"] == pytest.approx(float(kept_ratio.max()), rel=1e-6)
    kl = algos.k3_kl(logp.detach()[sel], old[sel])[kept_mask]
    assert metrics["harness/kl_old"] == pytest.approx(float(kl.mean()), rel=1e-6)


def test_harness_grpo_equals_verls_own_grpo(spec):
    """Our GRPO advantage is verl's `grpo` estimator; our clipped loss under token-mean is verl's vanilla loss."""
    from omegaconf import OmegaConf

    spec("grpo")
    data, _, rows, mask = rollout(5)
    ours = compute_advantage(data, adv_estimator="harness_grpo", config=AlgoConfig())
    data, _, _, _ = rollout(5)
    theirs = compute_advantage(data, adv_estimator="grpo", config=AlgoConfig(), norm_adv_by_std_in_grpo=True)
    assert torch.allclose(ours.batch["advantages"], theirs.batch["advantages"], atol=1e-6)

    g = torch.Generator().manual_seed(9)
    old = -torch.rand(len(rows), WIDTH, generator=g) * 3
    logp = old + 0.4 * torch.randn(len(rows), WIDTH, generator=g)
    advantages = ours.batch["advantages"]
    actor = OmegaConf.create({"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.2, "clip_ratio_c": 3.0,
                              "global_batch_info": {}})
    vanilla, _ = core_algos.get_policy_loss_fn("vanilla")(old, logp, advantages, mask, "seq-mean-token-mean", actor)
    harness, _ = core_algos.get_policy_loss_fn("harness_grpo")(old, logp, advantages, mask, "seq-mean-token-mean")
    assert harness.item() == pytest.approx(vanilla.item(), rel=1e-6)


def test_generated_overrides_compose_against_verls_config(tmp_path):
    """Every key the launch files set exists in verl's ppo_trainer config and takes the value (Hydra compose)."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from trainers.builtin.base import VARIANTS
    from trainers.engines.verl.config import write_row

    write_row(tmp_path / "row", "dgpo", VARIANTS.get("dgpo").Config(), model_path=str(tmp_path / "model"),
              prompts=["1+1?"] * 8, golds=[("2",)] * 8, answer_format="boxed", grader="math",
              budget=Budget(rollouts=2 * 128), seed=3, max_new_tokens=64, max_prompt_tokens=32)
    overrides = (tmp_path / "row" / "verl" / "overrides.txt").read_text().split()
    config_dir = Path(verl.__file__).parent / "trainer" / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=overrides)
    assert cfg.algorithm.adv_estimator == "harness_dgpo"
    assert cfg.actor_rollout_ref.actor.policy_loss.loss_mode == "harness_dgpo"
    assert cfg.actor_rollout_ref.actor.ppo_mini_batch_size == 4 and cfg.actor_rollout_ref.rollout.n == 8
    assert cfg.trainer.total_training_steps == 2 and cfg.data.train_batch_size == 16
