"""The built-in trainer: the GRPO skeleton and one module per variant (../shared/docs/variants.md). Importing the
package registers the built-in variants in `harness.variants.VARIANTS`.

A variant's reward shaping, group filter, advantage and loss are registered in `trainers.algos.variants`, which the
skeleton's hooks call (so the TRL and verl engines compute the same numbers); its module here holds its config
with the paper's defaults, its mechanism probes, and the hooks the registry cannot hold (sampling, rollouts,
prompts, state)."""

from trainers.builtin import (  # noqa: F401
    a_grae,
    dapo,
    dgpo,
    disco,
    dr_grpo,
    gdpo,
    grpo,
    grpo_lead,
    mc_grpo,
    n_grpo,
    ngrpo,
    prompt_aug,
    prompt_gdro,
    r3,
    reflection,
    rollout_gdro,
    unlikeliness,
)
