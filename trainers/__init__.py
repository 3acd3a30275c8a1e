"""The GRPO skeleton and one module per variant (../shared/docs/variants.md). Importing the package registers
the built-in variants in `trainers.base.VARIANTS`."""

from trainers import dapo, dgpo, dr_grpo, grpo, n_grpo  # noqa: F401
