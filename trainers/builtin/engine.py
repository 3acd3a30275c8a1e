"""The built-in trainer as the `builtin` engine: the reference, and the default of `harness compare`."""

from __future__ import annotations

from harness.engines import ENGINES, Trained, TrainRow, train_in_process


class BuiltinEngine:
    name = "builtin"
    packages: tuple[str, ...] = ()  # the harness's own code: nothing beyond the card's usual versions

    def check(self, variant: str, config) -> None:
        """Every variant runs here: the skeleton has every hook."""

    def train(self, row: TrainRow) -> Trained:
        from trainers.builtin.base import VARIANTS

        trainer_cls = VARIANTS.get(row.variant)
        return train_in_process(row, lambda **setting: trainer_cls(row.config, **setting).train())


ENGINES.register("builtin", BuiltinEngine())
