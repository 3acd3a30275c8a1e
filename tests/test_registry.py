import pytest

from harness.registry import Registry, UnknownNameError, parse_name_list


def test_unknown_name_lists_known_ones():
    registry = Registry("widget")
    registry.register("b", 2)

    @registry.register("a")
    def a():
        return 1

    assert registry.names() == ["a", "b"]
    with pytest.raises(UnknownNameError, match="unknown widget 'c'; known widgets: a, b"):
        registry.get("c")
    with pytest.raises(UnknownNameError):
        parse_name_list("a,c", registry)
    assert parse_name_list("all", registry) == ["a", "b"]


def test_double_registration_is_an_error():
    registry = Registry("widget")
    registry.register("a", 1)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a", 2)


def test_builtin_tasks_models_and_templates_are_registered():
    from harness.models import MODELS
    from harness.prompts import TEMPLATES
    from harness.task import TASKS

    for name in ("math500", "aime24", "aime25", "amc23", "minerva", "olympiadbench", "ineqmath-bound",
                 "ineqmath-relation", "gsm8k", "sandbox", "sandbox-train", "sandbox-relation"):
        assert name in TASKS
    assert {"sandbox", "smollm2-135m"} <= set(MODELS.names())
    assert {"boxed_cot", "r1_think", "plain"} <= set(TEMPLATES.names())
