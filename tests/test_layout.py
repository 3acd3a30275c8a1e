"""The import rules of design.md ("Layout"), checked on the source: `harness` reaches `trainers` only through
registries; `trainers/builtin` and `trainers/engines` never import each other (both stand on `algos` and
`protocol`); the variant math in `trainers/algos` imports torch, the standard library and harness's stdlib-only
helpers, so verl's workers load it with nothing else.

The graph is read with `ast` (imports at module level and inside functions alike), so it needs no import and
sees imports that only run on one path."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "trainers", "tasks")

# What the variant math may import beyond torch and itself: each imports the standard library only (the shared
# protocol's config is a dataclass every variant's config derives).
ALGOS_MAY_IMPORT = {"harness.registry", "harness.claim", "harness.markers", "trainers.protocol.config"}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: pathlib.Path, modules: set[str]) -> set[str]:
    """Every module of `modules` that `path` imports, resolved to absolute names. `from package import sub`
    imports the submodule `sub` (and the package's `__init__` only when a name is not a submodule)."""
    here = module_name(path)
    package = here.split(".") if path.name == "__init__.py" else here.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names} & modules
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(target)
    return found & modules


def project_modules() -> set[str]:
    return {module_name(p) for pkg in PACKAGES for p in ROOT.joinpath(pkg).rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """importer -> the project modules it imports."""
    modules = project_modules()
    return {
        module_name(p): imports_of(p, modules)
        for pkg in PACKAGES
        for p in ROOT.joinpath(pkg).rglob("*.py")
    }


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def broken_rule(importer: str, imported: str) -> str | None:
    """The rule the arrow importer -> imported breaks, or None."""
    if within(importer, "harness") and within(imported, "trainers"):
        return "harness reaches trainers only through registries"
    if within(importer, "trainers.engines") and within(imported, "trainers.builtin"):
        return "engines never import the built-in trainer"
    if within(importer, "trainers.builtin") and within(imported, "trainers.engines"):
        return "the built-in trainer never imports an engine"
    if within(importer, "trainers.algos"):
        if within(imported, "trainers") and not within(imported, "trainers.algos") \
                and imported not in ALGOS_MAY_IMPORT:
            return "the variant math imports no other part of trainers but the shared config's dataclass"
        if within(imported, "harness") and imported not in ALGOS_MAY_IMPORT and imported != "harness":
            return "the variant math imports only harness's stdlib-only helpers"
    if within(importer, "trainers.protocol") and (within(imported, "trainers.builtin")
                                                  or within(imported, "trainers.engines")):
        return "the shared protocol stands under every engine and imports none"
    return None


def violations() -> set[tuple[str, str]]:
    return {
        (importer, imported)
        for importer, targets in import_graph().items()
        for imported in targets
        if broken_rule(importer, imported)
    }


def test_the_graph_sees_imports():
    """The parser resolves relative, nested and from-imports (else every rule below would pass vacuously)."""
    graph = import_graph()
    assert "harness.registry" in graph["trainers.algos"]
    assert "trainers.algos.variants" in graph["trainers.engines.verl.plugin"]
    assert any(within(t, "harness") for t in graph["harness.cli"])


def test_import_rules_hold():
    new = sorted(violations())
    assert not new, "import rules broken (design.md, Layout):\n" + "\n".join(
        f"  {a} -> {b}: {broken_rule(a, b)}" for a, b in new
    )


def test_compare_and_the_cli_name_no_engine():
    """Adding an engine is one module and its registration: compare and the command line only consult ENGINES."""
    for module in ("compare", "cli"):
        text = ROOT.joinpath("harness", f"{module}.py").read_text(encoding="utf-8")
        assert "trainers.engines" not in text and '"trl"' not in text and '"verl"' not in text, module


def test_no_cycle_between_harness_and_trainers_at_import_time():
    """harness's own modules never import trainers at module level, so `import harness.x` cannot pull the
    trainers (and with them torch) in."""
    offenders = []
    for p in ROOT.joinpath("harness").rglob("*.py"):
        tree = ast.parse(p.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trainers"):
                offenders.append(f"{module_name(p)} -> {node.module}")
            if isinstance(node, ast.Import) and any(a.name.startswith("trainers") for a in node.names):
                offenders.append(module_name(p))
    assert not offenders, offenders
