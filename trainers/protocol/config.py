"""The shared protocol: the config fields every variant inherits, so a comparison changes mechanisms, not
optimisation. They are ours, tuned on the sandbox; a variant's own fields (its paper's, verl's where the paper is
silent) follow them in its config class."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field


def setting(default, doc: str):
    """A config field with its documentation, declared together (`harness list variants` prints it)."""
    return field(default=default, metadata={"doc": doc})


def field_docs(config_cls) -> dict[str, str]:
    """Each field's documentation; a field a subclass redeclares without one keeps its base class's."""
    docs: dict[str, str] = {}
    for klass in reversed(config_cls.__mro__):
        for f in getattr(klass, "__dataclass_fields__", {}).values():
            if f.name in vars(klass).get("__annotations__", {}) and f.metadata.get("doc"):
                docs[f.name] = f.metadata["doc"]
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(config_cls)}


@dataclass(frozen=True)
class SharedConfig:
    """The shared protocol's fields (ours)."""

    lr: float = setting(
        3e-5, "AdamW peak learning rate, chosen with the update schedule below (see there). Under 1 epoch x "
        "4 minibatches, 5e-5 gained +3.4 points of held-out pass@1 and 1e-4 +4.0 (one seed each); on an "
        "earlier sandbox without teacher slips 1e-4-2e-4 degraded it and 4e-4 collapsed it.")
    warmup_steps: int = setting(
        10, "Linear warm-up over this many rollout steps (not optimizer updates, so the schedule does not "
        "change it), then constant (verl's and MathForge's schedule).")
    adam_betas: tuple[float, float] = setting(
        (0.9, 0.999), "AdamW betas; beta2 0.999 as in the planning run that gained on the sandbox.")
    adam_eps: float = setting(
        1e-8, "AdamW epsilon (PyTorch's default). On the earlier sandbox without teacher slips, eps 1e-4 "
        "with lr 1e-4 lost 4.2 points in 40 steps, so the default is kept.")
    weight_decay: float = setting(0.0, "AdamW weight decay (none, as verl's default).")
    grad_clip: float = setting(1.0, "Gradient-norm clip (verl default 1.0).")
    prompts_per_step: int = setting(
        16, "Questions per training step.")
    group_size: int = setting(8, "Samples per question, G (project baseline 8; variants.md §2).")
    temperature: float = setting(
        1.0, "Rollout temperature (1.0: the policy itself; the log-probs are of this distribution).")
    max_new_tokens: int | None = setting(
        None, "Generation limit; None takes the train task's own. Also L_max for Dr. GRPO's normaliser.")
    template: str | None = setting(None, "Prompt template; None takes the train task's own.")
    format_reward: float = setting(
        0.0, "Weight of a format reward (1 when an answer can be extracted); 0 = accuracy only (Dr. GRPO's "
        "advice).")
    ppo_epochs: int = setting(
        2, "The update schedule: PPO epochs (mu) over each rollout batch, each split into this many "
        "minibatch updates of whole groups. Shared by every variant (ours): with several updates per rollout"
        " batch the policy moves between them, so later ones see ratios off 1 and the clips (asymmetric, "
        "higher, dual) can bind; with one update per batch the ratio is exactly 1 and every clip is inert. A"
        " variant's paper schedule (its `PAPER_SCHEDULE`) applies only under `harness compare --protocol "
        "paper`. Chosen on the sandbox (GRPO, default compute budget, 5 seeds each, warm start 43.8): 1 x 4 "
        "at lr 5e-5 cut only 1.5e-4 of tokens with the clip (pass@1 46.8, SD 1.3), too few for clip-based "
        "mechanisms to act on; 2 x 4 at lr 3e-5 cuts 1.4e-3 and keeps GRPO's gain significant over training "
        "seeds (46.0, SD 0.6; p = 0.013). Moving the policy further cost the gain: 1 x 8, 1 x 16 and 2 x 4 "
        "at lr 5e-5 (clip 0.8-2.5e-3) scored 43-45 at seeds 0 and 1.")
    minibatches: int = setting(4, "Minibatch updates per PPO epoch, each of whole groups (see ppo_epochs).")
    track_kl: bool = setting(
        True, "Log the k3 KL to the starting policy even when kl_beta is 0 (a training curve; costs one "
        "no-grad forward).")
    checkpoint_every: int = setting(
        20, "Save the whole trainer state every this many steps (and at the end).")
    prefix_grouper: bool = setting(
        False, "Prefix Grouper (variants.md §18): the training forwards encode each group's prompt once and "
        "score its G responses against the cached keys/values. Same log-probs and gradients up to float "
        "rounding (tests/test_prefix_grouper.py); faster when prompts are long against responses "
        "(perf/prefix_grouper.py).")
    rollout_engine: str = setting(
        "builtin", 'Who generates the rollouts: "builtin" (the reference sampler: the trainer\'s own model, '
        'exact log-probs, bit-exact resume) or "vllm" (a vLLM engine given the policy\'s weights before each '
        "rollout after an update; needs the vLLM environment, see the README). Variants whose rollout the "
        "engine cannot do (N-GRPO's embedding mixing) keep the built-in sampler and say so. Generation is "
        "charged the same either way.")
    rollout_dtype: str = setting(
        "float32", "The vLLM engine's precision: float32 like the trainer on CPU (sampler gap ~5e-6 nats a "
        "token on SmolLM2); bfloat16 is twice as fast there and what GPU engines run, at a gap of ~3e-2 that"
        " tis_cap corrects.")
    tis_cap: float | None = setting(
        2.0, "Truncated importance sampling for vLLM rollouts (ours: cap 2.0): each response token's "
        "gradient is weighted by min(pi_trainer / pi_sampler, tis_cap), the sampler's log-probs being the "
        "engine's. None: no correction. Inert with the built-in sampler, whose log-probs are the trainer's.")

    def __post_init__(self):
        if self.group_size < 1 or self.prompts_per_step < 1:
            raise ValueError("group_size and prompts_per_step must be >= 1")
        if self.minibatches < 1 or self.ppo_epochs < 1:
            raise ValueError("ppo_epochs and minibatches must be >= 1")
        if not self.temperature > 0 or not math.isfinite(self.temperature):
            raise ValueError(f"temperature must be a finite number > 0 for training rollouts, got {self.temperature}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")


SHARED_FIELDS = tuple(f.name for f in dataclasses.fields(SharedConfig))


def shared_settings(config) -> dict:
    """`config`'s shared-protocol fields and their values."""
    return {name: getattr(config, name) for name in SHARED_FIELDS}
