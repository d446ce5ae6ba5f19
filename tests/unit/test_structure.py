"""The code's shape: imports run one way (no cycle among lrqc's modules), TVM is imported only
inside lrqc/backend and reached lazily only through lrqc/door.py, the TVM-free layers import
without it, and modules and functions stay small enough to read."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "lrqc"
DOOR = "lrqc.door"  # the one module with imports inside functions, and one exception:
LAZY = {("lrqc.reference.inputs", "ml_dtypes")}  # 1-2 s to import, only for bfloat16 output
TVM = ("tvm", "tvm_ffi")
MODULE_LINES = 400  # "~400": a module may run over by a few lines, not by a page
MODULE_SLACK = 20
FUNCTION_LINES = 80
LONG_REASON = "Long:"  # a docstring line starting so says why a function may be longer


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, inside a function, line) of every import statement of a module; a
    `from pkg import name` that names a submodule counts as an import of that submodule."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in inner, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.append((sub if sub in MODULES else mod, id(node) in inner, node.lineno))
    return out


def _graph() -> dict[str, set[str]]:
    """lrqc module -> the lrqc modules it imports at module level (a package's __init__ runs
    when any of its modules is imported, so importing a.b.c depends on a.b too, except from
    inside a.b itself)."""
    graph = {}
    for name, path in MODULES.items():
        deps = set()
        for mod, inside, _ in _imports(name, path):
            if inside or not mod.startswith("lrqc"):
                continue
            parts = mod.split(".")
            deps |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)} & MODULES.keys()
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        graph[name] = deps - own  # a module's own packages are imported before it anyway
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None (depth-first search with colours)."""
    state, stack = {}, []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = 2
        stack.pop()
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_no_import_cycle_among_lrqc_modules():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# The packages in import order: a module may import modules of its own layer or of layers
# before it, never after (the door reaches forward lazily, inside its functions).
LAYERS = (
    ("_version", "errors", "files", "resources"),
    ("frontend", "api"),
    ("reference", "ir"),
    ("passes",),
    ("plan", "explain"),
    ("backend",),
    ("runtime",),
    ("pipeline",),
    ("tuning",),
    ("door",),
    ("cli", "torch"),
    ("lrqc",),  # the package root
)


def _layer(module: str) -> int:
    name = module.split(".")[1] if "." in module else "lrqc"
    return next(i for i, layer in enumerate(LAYERS) if name in layer)


def test_packages_import_in_one_direction():
    assert {_layer(m) for m in MODULES} == set(range(len(LAYERS)))  # every package placed
    bad = [f"{a} imports {b}" for a, deps in _graph().items() for b in sorted(deps)
           if _layer(b) > _layer(a)]
    assert not bad, bad


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_tvm_is_imported_only_inside_the_backend():
    bad = [f"{name}:{line} imports {mod}" for name, path in MODULES.items()
           for mod, _, line in _imports(name, path)
           if mod.split(".")[0] in TVM and not name.startswith("lrqc.backend")]
    assert not bad, bad


def test_imports_inside_functions_only_at_the_door():
    bad = [f"{name}:{line} imports {mod} inside a function" for name, path in MODULES.items()
           if name != DOOR for mod, inside, line in _imports(name, path)
           if inside and (name, mod) not in LAZY]
    assert not bad, bad


@pytest.mark.parametrize("modules", [
    "lrqc, lrqc.frontend.parser, lrqc.ir, lrqc.passes, lrqc.reference, lrqc.explain",
    "lrqc.plan.lower, lrqc.plan.printer, lrqc.plan.layout, lrqc.plan.chain",
    "lrqc.tuning.db, lrqc.cli, lrqc.cli.main, lrqc.runtime.manifest",
])
def test_tvm_free_layers_import_without_tvm(modules):
    code = (f"import sys, importlib\nfor m in {modules.split(', ')!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tvm', 'tvm_ffi'))\n"
            "assert not bad, bad[:5]")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]


def test_modules_and_functions_stay_small():
    long_modules = [f"{p.relative_to(ROOT)}: {n} lines" for p in PKG.rglob("*.py")
                    if (n := len(p.read_text().splitlines())) > MODULE_LINES + MODULE_SLACK]
    long_functions = []
    for p in [*PKG.rglob("*.py"), *(ROOT / "schedules").rglob("*.py")]:
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                doc = ast.get_docstring(node) or ""
                if lines > FUNCTION_LINES and LONG_REASON not in doc:
                    long_functions.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name}: "
                                          f"{lines} lines")
    assert not long_modules and not long_functions, long_modules + long_functions
