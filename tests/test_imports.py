"""The package's imports: every module imports on its own in a fresh interpreter, and the import
graph (counting the imports inside functions, which run later, in whatever order the user's calls
take) has no cycle.

A cycle of top-level imports fails only in some import orders (the module imported first runs
to the import of the second, which finds the first half-initialised); a cycle through imports
inside functions does not fail today but turns into that failure as soon as one of its imports
moves to the top, and it ties modules together that should be layered (the solver needs the
calibration, the calibration must not need the solver). Cycles that other parts of the code
base still have to remove are marked ``xfail(strict=True)``: the test turns red when they are
gone, and the mark must then be removed.

The package's own imports are at the top of every module (``test_package_imports_are_at_the_top``
lists the few exceptions), so the graph is the one the interpreter follows on ``import``.
"""
from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "dynpnp_jax"


# ---- the modules and their import graph ---------------------------------------------------------

def _modules() -> dict:
    """``{dotted name: (path, is_package)}`` for every .py file of the package."""
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if "__pycache__" in parts:
            continue
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (p, is_pkg)
    return out


MODULES = _modules()


def _is_main_block(node) -> bool:
    """``if __name__ == "__main__":`` -- runs only when the module is the script, never on import."""
    t = node.test if isinstance(node, ast.If) else None
    return (isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and t.left.id == "__name__"
            and len(t.comparators) == 1 and isinstance(t.comparators[0], ast.Constant)
            and t.comparators[0].value == "__main__")


@functools.lru_cache(maxsize=None)
def _imports(mod: str) -> list:
    """``[(target module, imported names or None, lineno)]`` of every import statement in
    ``mod`` (top level, inside functions and in ``if __name__ == "__main__"`` blocks: a
    ``python -m`` entry point ties modules together as much as any import)."""
    path, is_pkg = MODULES[mod]
    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
    out = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                out.extend((a.name, None, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = pkg[: len(pkg) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                out.append((target, [a.name for a in child.names], child.lineno))
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return out


def _provider(package: str, name: str, seen=()) -> str:
    """The module that defines ``name`` re-exported by ``package``'s ``__init__`` (else the
    package itself)."""
    if f"{package}.{name}" in MODULES:
        return f"{package}.{name}"
    for target, names, _ in _imports(package):
        if names and name in names and target in MODULES and target not in seen:
            if MODULES[target][1]:
                return _provider(target, name, seen + (package,))
            return target
    return package


def import_graph() -> dict:
    """``{module: {imported package module: first line}}``; ``from pkg import name`` counts as an
    import of the module that defines ``name`` (a submodule, or the one ``pkg/__init__`` takes it
    from), so the package ``__init__`` files (which re-export) do not join every module in one
    cycle."""
    graph = {m: {} for m in MODULES}
    for mod in MODULES:
        for target, names, line in _imports(mod):
            if target not in MODULES:
                continue
            if names is None or not MODULES[target][1]:
                deps = [target]
            else:
                deps = [_provider(target, n) for n in names]
            for d in deps:
                if d != mod and d != mod.rsplit(".", 1)[0]:  # a parent package is loaded first anyway
                    graph[mod].setdefault(d, line)
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan), as sorted lists."""
    index, low, stack, on, out = {}, {}, [], set(), []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def _describe(comp: list, graph: dict) -> str:
    return "; ".join(f"{m} -> {d} (line {graph[m][d]})" for m in comp for d in graph[m] if d in comp)


def test_the_graph_finds_a_cycle():
    """The cycle finder itself, on a made-up graph: a -> b -> c -> a, d -> a, e alone."""
    g = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}, "e": {}}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b": 1}, "b": {}}) == []


# ---- cycles, by the part of the code base that owns them ----------------------------------------

# the solver side: the solver, its steps and algorithms, the validation they share, tune
SOLVER_SIDE = tuple(m for m in MODULES if m in ("dynpnp_jax.solver", "dynpnp_jax.steps",
                                                "dynpnp_jax.tune", "dynpnp_jax.validation")
                    or m.startswith("dynpnp_jax.algorithms"))
DATA_SIDE = ("dynpnp_jax.data.protocols", "dynpnp_jax.data.degradations")
CALIBRATION_SIDE = ("dynpnp_jax.calibration", "dynpnp_jax.calibration_margins", "dynpnp_jax.kernels",
                    "dynpnp_jax.baselines", "dynpnp_jax.metrics", "dynpnp_jax.resize")


def _cycles_touching(names, graph=None) -> list:
    graph = import_graph() if graph is None else graph
    return [_describe(c, graph) for c in cycles(graph) if any(n in c for n in names)]


def test_calibration_is_in_no_cycle_and_needs_neither_tune_nor_the_solver():
    """calibration is a layer below the solver: it imports nothing from tune, the solver or its
    steps (the margin measurement on training images, which needs them, lives in
    calibration_margins), and no cycle runs through calibration, kernels, baselines, metrics or
    resize other than through the solver side's own edges (its cycle is the xfail below)."""
    graph = import_graph()
    deps = graph["dynpnp_jax.calibration"]
    assert not {"dynpnp_jax.tune", "dynpnp_jax.solver", "dynpnp_jax.steps"} & set(deps), deps
    assert not [d for d in deps if d.startswith("dynpnp_jax.algorithms")], deps
    # the solver side's outgoing edges removed: what is left must be free of cycles here
    cut = {m: ({} if m in SOLVER_SIDE else d) for m, d in graph.items()}
    assert _cycles_touching(CALIBRATION_SIDE, cut) == []


def test_calibration_imports_the_package_at_the_top():
    """calibration's package-internal imports are all at the top of the module."""
    tree = ast.parse(MODULES["dynpnp_jax.calibration"][0].read_text())
    top = {id(n) for n in tree.body}
    inner = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level
             and id(n) not in top and not any(_is_main_block(b) and n in ast.walk(b)
                                              for b in tree.body)]
    assert inner == [], f"package imports inside functions at lines {inner}"


def test_no_cycle_through_the_solver():
    assert _cycles_touching(SOLVER_SIDE) == []


def test_no_cycle_in_the_data_package():
    assert _cycles_touching(DATA_SIDE) == []


def test_no_other_cycle():
    """Every cycle of the graph involves one of the known groups above (none new appears)."""
    known = set(SOLVER_SIDE) | set(DATA_SIDE)
    graph = import_graph()
    new = [_describe(c, graph) for c in cycles(graph) if not known & set(c)]
    assert new == [], new


# ---- the package's own imports at the top of each module ------------------------------------------

# modules that other work is rewriting right now; their in-function imports move to the top when it
# lands (strict xfail: the test turns red once they are gone, and the entry must then be removed)
PENDING = {}  # module -> why its in-function imports are still there (strict xfail)


def _is_internal(node, package: str = "dynpnp_jax") -> bool:
    if isinstance(node, ast.ImportFrom):
        return bool(node.level) or (node.module or "").split(".")[0] == package
    return isinstance(node, ast.Import) and any(a.name.split(".")[0] == package
                                                for a in node.names)


def inner_imports(source: str, marked: bool = False) -> list:
    """``[(line, statement's first line)]`` of the package-internal imports (relative ones,
    ``dynpnp_jax...``) inside a function of ``source``, other than those under
    ``if __name__ == "__main__":`` and those marked ``# lazy: <reason>`` on one of their lines
    (``marked=True``: only those marked)."""
    lines = source.splitlines()
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if _is_main_block(child):
                continue
            if in_function and _is_internal(child):
                text = lines[child.lineno - 1: child.end_lineno]
                if any("# lazy:" in t for t in text) == marked:
                    out.append((child.lineno, text[0].strip()))
            visit(child, in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(source), False)
    return out


def test_inner_imports_finds_them():
    """The finder itself, on made-up code: imports in functions and methods are found; top-level,
    ``__main__`` block, ``# lazy:`` and third-party ones are not."""
    src = textwrap.dedent("""
        from . import a
        import dynpnp_jax.b
        def f():
            from .c import d
            import numpy
            from scipy import io
            if True:
                import dynpnp_jax.e as e
            from ..g import (h,  # lazy: needs the optional thing
                             i)
        class K:
            def m(self):
                from dynpnp_jax import j
        if __name__ == "__main__":
            from . import k
    """)
    assert [line for line, _ in inner_imports(src)] == [5, 9, 14]
    assert [line for line, _ in inner_imports(src, marked=True)] == [10]
    assert inner_imports("def f():\n    import os\n") == []


@pytest.mark.parametrize("mod", [pytest.param(m, marks=pytest.mark.xfail(
    strict=True, reason=PENDING[m])) if m in PENDING else m for m in MODULES])
def test_package_imports_are_at_the_top(mod):
    """Every package-internal import is at the top of its module, so the imports form layers
    (the graph above, with no cycle) that hold in every import order and are read at a glance.

    Exceptions: imports under ``if __name__ == "__main__":``, and imports marked on their line
    ``# lazy: <reason>`` -- to keep a heavy optional dependency out of the import, or where a
    function would need restructuring to move. Marked today: none. (Third-party imports inside
    functions -- torch, matplotlib, scipy.io, ... -- are not concerned.)"""
    found = inner_imports(MODULES[mod][0].read_text())
    assert found == [], (f"{mod}: package imports inside functions: {found}. Fix: move them to "
                         f"the top of the module (test_no_other_cycle says whether that makes a "
                         f"cycle), or mark one '# lazy: <reason>' and list it in this docstring.")


def test_lazy_imports_are_listed():
    """Each ``# lazy:`` package import is named (by module) in the docstring above."""
    doc = test_package_imports_are_at_the_top.__doc__
    marked = [m for m, (p, _) in MODULES.items() if inner_imports(p.read_text(), marked=True)]
    assert [m for m in marked if m not in doc] == [], marked


# ---- each module first, in a fresh interpreter ----------------------------------------------------

# third-party modules the package needs, loaded once before forking (none of the package's own):
# each child starts with no dynpnp_jax module loaded, so its import order is the one a user's
# `import dynpnp_jax.X` as the first line of a script gets
_PRELOAD = ("numpy", "scipy", "scipy.ndimage", "scipy.fft", "jax", "jax.numpy", "flax", "flax.linen",
            "PIL.Image", "tqdm.auto", "urllib.request", "etils.epath", "tensorflow_datasets")

_FORK_SCRIPT = textwrap.dedent("""
    import importlib, os, sys, traceback
    for name in {preload!r}:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    assert not any(m == "dynpnp_jax" or m.startswith("dynpnp_jax.") for m in sys.modules)
    failures = []
    for mod in {modules!r}:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                importlib.import_module(mod)
                msg = b""
            except BaseException:
                msg = traceback.format_exc().encode()
            os.write(w, msg[-4000:])
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            msg = f.read().decode()
        os.waitpid(pid, 0)
        if msg:
            failures.append(mod + ":\\n" + msg)
    print("\\n".join(failures))
    sys.exit(1 if failures else 0)
""")


def _refuses_import(path: Path) -> bool:
    """A ``python -m`` shim whose top level raises ImportError by design (``dynpnp_jax.restore``
    is the function; the command's code lives in ``restore_cli``)."""
    tree = ast.parse(path.read_text())
    return any(isinstance(n, ast.Raise) and isinstance(n.exc, ast.Call)
               and getattr(n.exc.func, "id", "") == "ImportError" for n in tree.body)


IMPORTABLE = [m for m, (p, _) in MODULES.items()
              if not m.endswith("__main__") and not _refuses_import(p)]
# the modules of the cycles above and the ones this test was written for; every module: slow
CORE = [m for m in IMPORTABLE if m in DATA_SIDE + CALIBRATION_SIDE + (
    "dynpnp_jax", "dynpnp_jax.solver", "dynpnp_jax.steps", "dynpnp_jax.tune", "dynpnp_jax.validation",
    "dynpnp_jax.algorithms", "dynpnp_jax.algorithms.calibrated")]


def _run(code: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _each_first(mods):
    res = _run(_FORK_SCRIPT.format(preload=_PRELOAD, modules=list(mods)))
    assert res.returncode == 0, res.stdout[-8000:] + res.stderr[-4000:]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_core_modules_import_first_in_a_fresh_process():
    """Each module of the cycles above (and calibration's) is the first of the package imported in
    its own process, forked from one that has only the third-party libraries loaded (about 0.4 s
    a module on 2 busy cores, not one jax start each)."""
    assert "dynpnp_jax.calibration" in CORE and "dynpnp_jax.solver" in CORE
    _each_first(CORE)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_every_module_imports_first_in_a_fresh_process():
    assert len(IMPORTABLE) > 40
    _each_first(IMPORTABLE)


@pytest.mark.slow
@pytest.mark.parametrize("mod", IMPORTABLE)
def test_module_imports_first_in_a_new_interpreter(mod):
    """The same, each module in a brand-new interpreter (no fork, nothing preloaded)."""
    res = _run(f"import {mod}")
    assert res.returncode == 0, res.stderr[-4000:]
