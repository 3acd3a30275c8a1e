"""GRPO skeleton and one module per variant (see ../shared/docs/variants.md). Filled in by the trainer issue."""
