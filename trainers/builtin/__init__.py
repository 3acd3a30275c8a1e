"""The built-in trainer: the GRPO skeleton and one module per variant (../shared/docs/variants.md). Importing the
package registers the built-in variants in `trainers.builtin.base.VARIANTS`."""

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
