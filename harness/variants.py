"""The variant registry: every training variant by name, built-in or a plugin's (entry-point group
`harness.trainers`; examples/variant-plugin). harness reaches the trainers only through it (and `ENGINES`):
reading it imports `trainers.builtin`, which registers the built-ins and sets the check a plugin must pass
(`trainers.builtin.base.check_variant`)."""

from __future__ import annotations

from harness.registry import Registry

VARIANTS: Registry[type] = Registry("variant", "harness.trainers", builtins_module="trainers.builtin")


def describe_variants() -> str:
    """`harness list variants`: every registered variant described by its trainer (`describe()`); a plugin that
    is broken, or that fails to describe itself, is listed with its reason and never stops the others."""
    blocks = []
    for name in VARIANTS.names():
        try:
            blocks.append(VARIANTS.get(name).describe())
        except Exception as error:  # a plugin's own bug: reported in its place
            blocks.append(f"{name}  BROKEN: cannot describe it: {type(error).__name__}: {error}")
    blocks += [f"{name}  BROKEN: {why}" for name, why in sorted(VARIANTS.broken.items())]
    return "\n\n".join(blocks)
