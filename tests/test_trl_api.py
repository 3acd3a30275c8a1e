"""The TRL adapter overrides private methods of TRL's GRPOTrainer and reads private attributes: when an installed
TRL changes one, this says which and how, before a training run fails obscurely (or, worse, silently trains
something else)."""

import inspect

import pytest

trl = pytest.importorskip("trl")

from packaging.specifiers import SpecifierSet  # noqa: E402

from trainers.engines.trl import adapter  # noqa: E402


def parameters(method) -> tuple[str, ...]:
    return tuple(inspect.signature(method).parameters)[1:]  # after self


def test_the_installed_trl_is_a_checked_version():
    assert trl.__version__ in SpecifierSet(adapter.TRL_SUPPORTED), (
        f"TRL {trl.__version__} is outside the versions the adapter was checked against ({adapter.TRL_SUPPORTED}): "
        "check OVERRIDES and USES in trainers/engines/trl/adapter.py against it, then widen TRL_SUPPORTED and "
        "pyproject's pin")


@pytest.mark.parametrize("name", sorted(adapter.OVERRIDES))
def test_each_overridden_method_keeps_its_signature(name):
    assert hasattr(trl.GRPOTrainer, name), f"TRL {trl.__version__}'s GRPOTrainer no longer has {name}"
    found, expected = parameters(getattr(trl.GRPOTrainer, name)), adapter.OVERRIDES[name]
    assert found == expected, (f"TRL {trl.__version__} changed GRPOTrainer.{name}: it takes {found}, the adapter "
                               f"overrides it as {expected}")
    assert parameters(getattr(adapter.HarnessTRLTrainer, name)) == expected, f"the adapter's {name} drifted"


@pytest.mark.parametrize("name", sorted(adapter.USES))
def test_each_called_method_takes_what_the_adapter_passes(name):
    assert hasattr(trl.GRPOTrainer, name), f"TRL {trl.__version__}'s GRPOTrainer no longer has {name}"
    found, passed = parameters(getattr(trl.GRPOTrainer, name)), adapter.USES[name]
    assert found[: len(passed)] == passed, (f"TRL {trl.__version__} changed GRPOTrainer.{name}: its leading "
                                            f"parameters are {found[:len(passed)]}, the adapter passes {passed}")


def test_each_read_attribute_is_still_set_by_trl():
    source = inspect.getsource(inspect.getmodule(trl.GRPOTrainer))
    for attribute in adapter.USED_ATTRIBUTES:
        assert f"self.{attribute}" in source, (f"TRL {trl.__version__}'s GRPOTrainer no longer sets or reads "
                                               f"self.{attribute}, which the adapter reads")
