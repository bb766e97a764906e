"""The source tree's shape: no import cycles, short modules, short functions (issue: one room per job)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    """Every module of the ``ngf`` package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted((SRC / "ngf").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(tree: ast.AST, name: str, is_package: bool, modules) -> set[str]:
    """The ngf modules that the module ``name`` imports anywhere, inside functions too."""
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package upwards
                package = name.split(".")[:len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:  # ``from pkg import module`` imports the module
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in modules else base)
    return {t for t in targets if t in modules and t != name}


def import_graph() -> dict[str, set[str]]:
    """Module → the ngf modules it imports (implicit imports of parent packages left out)."""
    modules = _modules()
    return {name: _imported(ast.parse(path.read_text()), name, path.name == "__init__.py", modules)
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = import_graph()
    graph["ngf.runs.config"] = graph["ngf.runs.config"] | {"ngf.runs.api"}  # api → ... → config → api
    assert any({"ngf.runs.api", "ngf.runs.config"} <= set(c) for c in cycles(graph))


def test_relative_and_lazy_imports_count():
    modules = {"ngf.a", "ngf.b", "ngf.pkg", "ngf.pkg.c"}
    tree = ast.parse("def f():\n    from ngf import b\nfrom .pkg import c\n")
    assert _imported(tree, "ngf.a", False, modules) == {"ngf.b", "ngf.pkg.c"}


def test_no_module_is_longer_than_the_limit():
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def _code_lines(node: ast.FunctionDef) -> int:
    """A function's length in lines, its docstring left out."""
    length = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        length -= first.end_lineno - first.lineno + 1
    return length


def test_no_function_is_longer_than_the_limit():
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = _code_lines(node)
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert long == []


def test_core_holds_only_the_learning_machinery():
    core = {name.rpartition(".")[2] for name in _modules() if name.startswith("ngf.core.")}
    assert core == {"alignment", "checks", "distributed", "engine", "errors", "feedback", "init", "losses", "network",
                    "parallel", "rule", "rule_checks", "stacked", "step"}
    imported = {m for name, deps in import_graph().items() if name.startswith("ngf.core") for m in deps}
    assert not {m for m in imported if m.startswith(("ngf.runs", "ngf.cli", "ngf.experiments", "ngf.host"))}


def _option_path():
    """``scripts/option_path.py`` as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("option_path", SRC.parent / "scripts" / "option_path.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_runs_options_pass_each_module_of_the_cli_and_run_layers_at_most_three_times(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('rule = "fa"\nepochs = 1\n[model_opts]\nwidths = [8]\n')
    entries = _option_path().module_entries(
        ["run", "--plugin", "ngf_tiny_data", "--dataset", "tiny", "--config", str(config), "--lr", "0.01",
         "--rule-opt", "scale=0.5", "--quiet", "--out", str(tmp_path / "out")])
    assert entries["ngf.runs.loop"] == 1  # the engine was reached through the loop
    layers = {name: n for name, n in entries.items()  # the signal guard is called around the path, not on it
              if name.startswith(("ngf.cli", "ngf.runs")) and name != "ngf.cli.signals"}
    assert max(layers.values()) <= 3, layers  # passed once, re-entered at most twice
