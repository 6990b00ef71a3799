"""The serving layer's import graph, read with ``ast`` (nothing is imported or run).

Every function ships the whole layer (``layers/serving/topicserve``), so it must hold what a function runs
and nothing else, and read from the bottom up:

* no import cycle among its modules, and none among its subpackages either (``registry`` importing
  ``rollout`` while ``rollout`` imports ``registry`` is a cycle of packages even when no two modules close
  it); imports under ``if TYPE_CHECKING:`` are left out of these two checks, as they never run;
* every module is reachable by imports (lazy ones inside functions included) from a handler:
  ``functions/*/app.py`` or ``warmers/app.py``;
* nothing under ``layers/`` imports the code that is not shipped with it (benchmarks, training, tests,
  the operator tools, the container worker, the deploy, the demo, the handlers); this one counts every
  import, TYPE_CHECKING ones too.

Beside the layer, the same reading checks that the operator tools (``topicserve_ops``) and the bulk
worker (``topicserve_worker``) import neither the benchmarks, training or tests nor each other, and that
the image build (``containers/``) does not import the benchmarks.

The checks are functions over a folder, so the last tests plant each kind of violation in a copy-sized
package under ``tmp_path`` and see them reported by name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYER_ROOT = REPO / "layers" / "serving"
PACKAGE = "topicserve"
HANDLERS = [*sorted((REPO / "functions").glob("*/app.py")), REPO / "warmers" / "app.py"]
#: top-level packages that do not ship in the layer, so no layer module may import them
NOT_SHIPPED = (
    "bench",
    "training",
    "tests",
    "tools",
    "topicserve_ops",
    "topicserve_worker",
    "containers",
    "infra",
    "demo",
    "functions",
    "warmers",
)


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file of every module of ``package`` under ``root`` (a package is its __init__.py)."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST, *, runtime_only: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth (a lazy import in a function counts); ``runtime_only`` skips
    the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif runtime_only and isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]), runtime_only=True)
        else:
            yield from _import_nodes(child, runtime_only=runtime_only)


def imported_names(path: Path, module: str, *, runtime_only: bool = True) -> set[str]:
    """The dotted names ``path`` (the module ``module``) imports: ``a.b`` for ``import a.b``, ``a.b`` for
    ``from a import b`` (b may be a submodule of a, or a name defined in a: :func:`_known` decides)."""
    is_package = path.name == "__init__.py"
    names = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path)), runtime_only=runtime_only):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative: from the package this module is in
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - node.level + 1]
            base = ".".join([*anchor, *([node.module] if node.module else [])])
        names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _known(names: Iterable[str], known: dict[str, Path]) -> set[str]:
    """The most specific module of ``known`` a name names: ``a.b.c`` where that is a module, else ``a.b``."""
    found = set()
    for name in names:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in known:
                found.add(".".join(parts[:end]))
                break
    return found


def graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports at run time."""
    known = modules(root, package)
    return {m: _known(imported_names(p, m), known) - {m} for m, p in known.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None (depth-first search, in sorted order so it is stable)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def subpackage_edges(edges: dict[str, set[str]], package: str) -> dict[str, set[str]]:
    """The graph with each module replaced by its first level under ``package`` (``topicserve.registry``
    for ``topicserve.registry.store``; a top-level module stands for itself)."""

    def level(module: str) -> str:
        return ".".join(module.split(".")[:2]) if module != package else module

    out: dict[str, set[str]] = {}
    for module, targets in edges.items():
        out.setdefault(level(module), set()).update(level(t) for t in targets if level(t) != level(module))
    return out


def unreachable(root: Path, package: str, entry_points: Iterable[Path]) -> list[str]:
    """Modules no entry point reaches by imports. Importing ``a.b.c`` runs ``a`` and ``a.b`` too, so the
    packages above each reached module count as reached."""
    known = modules(root, package)
    edges = graph(root, package)
    todo = [m for path in entry_points for m in _known(imported_names(path, "app"), known)]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:end]) for end in range(1, len(parts))]
        todo += edges[module]
    return sorted(set(known) - seen)


def imports_not_shipped(root: Path, package: str) -> list[str]:
    """``module -> name`` for every import (TYPE_CHECKING included) of a top-level package in NOT_SHIPPED."""
    found = []
    for module, path in modules(root, package).items():
        names = {
            n for n in imported_names(path, module, runtime_only=False) if n.split(".")[0] in NOT_SHIPPED
        }
        # `from a.b import c` gives a.b and a.b.c: name the module, a.b
        found += [f"{module} -> {n}" for n in sorted(names) if n.rsplit(".", 1)[0] not in names]
    return found


# --- the layer ----------------------------------------------------------------------------------------


def test_the_layer_and_its_handlers_are_where_the_checks_look() -> None:
    assert len(modules(LAYER_ROOT, PACKAGE)) > 20
    assert len(HANDLERS) >= 5 and all(path.is_file() for path in HANDLERS)


def test_no_import_cycle_among_the_layer_modules() -> None:
    cycle = find_cycle(graph(LAYER_ROOT, PACKAGE))
    assert cycle is None, "import cycle in the layer: " + " -> ".join(cycle or [])


def test_no_import_cycle_among_the_layer_subpackages() -> None:
    cycle = find_cycle(subpackage_edges(graph(LAYER_ROOT, PACKAGE), PACKAGE))
    assert cycle is None, "the layer's subpackages import each other (one runs back up): " + " -> ".join(
        cycle or []
    )


#: layer modules no function imports yet, each with why it is there anyway; the test below fails when one
#: becomes reachable (or goes), so an entry cannot outlive its reason
NOT_YET_IMPORTED: dict[str, str] = {}  # module -> why no function imports it yet (none now: the gate
# imports topicserve.rollout.sequential)


def test_every_layer_module_is_imported_by_a_function() -> None:
    orphans = unreachable(LAYER_ROOT, PACKAGE, HANDLERS)
    unexplained = [m for m in orphans if m not in NOT_YET_IMPORTED]
    assert not unexplained, (
        f"modules in the layer that no function imports (move them out of layers/): {', '.join(unexplained)}"
    )
    stale = sorted(set(NOT_YET_IMPORTED) - set(orphans))
    assert not stale, f"imported by a function now, or gone: remove from NOT_YET_IMPORTED: {', '.join(stale)}"


def test_the_layer_imports_nothing_that_does_not_ship_with_it() -> None:
    found = imports_not_shipped(LAYER_ROOT, PACKAGE)
    assert not found, "the layer imports code that is not in it: " + "; ".join(found)


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        # the operator tools and the worker run on the library alone, and not on each other
        (REPO / "tools" / "topicserve_ops", ("bench", "training", "tests", "demo", "topicserve_worker")),
        (
            REPO / "containers" / "worker" / "topicserve_worker",
            ("bench", "training", "tests", "topicserve_ops"),
        ),
        # the product's image build does not depend on the benchmarks (they define their own variant)
        (REPO / "containers", ("bench", "training", "tests", "demo")),
    ],
    ids=["topicserve_ops", "topicserve_worker", "containers"],
)
def test_the_packages_beside_the_layer_import_nothing_above_them(
    folder: Path, forbidden: tuple[str, ...]
) -> None:
    found = [
        f"{path.relative_to(REPO)} -> {name}"
        for path in sorted(folder.rglob("*.py"))
        for name in sorted(imported_names(path, path.stem, runtime_only=False))
        if name.split(".")[0] in forbidden
    ]
    assert not found, "an import runs back up: " + "; ".join(found)


# --- the checks find what they look for (planted in a package of a few lines) -------------------------


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """``pkg``: ``a`` imports ``b`` (relative), ``b`` imports ``c`` lazily in a function, ``c`` imports
    ``a`` only under TYPE_CHECKING, ``sub.x`` imports ``sub.y`` and ``y`` imports ``a``; one handler
    imports ``a``."""
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "from . import b\n",
        "pkg/b.py": "def f():\n    import pkg.c\n",
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/x.py": "from pkg.sub import y\n",
        "pkg/sub/y.py": "import pkg.a\n",
        "app.py": "from pkg.a import b\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_checks_pass_a_clean_package_and_skip_type_checking_imports(planted: Path) -> None:
    edges = graph(planted, "pkg")
    assert edges["pkg.a"] == {"pkg.b"} and edges["pkg.b"] == {"pkg.c"} and edges["pkg.c"] == set()
    assert find_cycle(edges) is None
    assert find_cycle(subpackage_edges(edges, "pkg")) is None
    assert imports_not_shipped(planted, "pkg") == []


def test_a_planted_cycle_is_named(planted: Path) -> None:
    (planted / "pkg" / "c.py").write_text("def g():\n    from pkg.a import b\n")
    assert find_cycle(graph(planted, "pkg")) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_a_planted_cycle_of_subpackages_is_named(planted: Path) -> None:
    """d imports sub.y and sub.x imports d: no two modules close a cycle, but sub and d import each other."""
    (planted / "pkg" / "d.py").write_text("import pkg.sub.y\n")
    (planted / "pkg" / "sub" / "x.py").write_text("import pkg.d\n")
    edges = graph(planted, "pkg")
    assert find_cycle(edges) is None
    assert find_cycle(subpackage_edges(edges, "pkg")) == ["pkg.d", "pkg.sub", "pkg.d"]


def test_a_planted_orphan_is_named(planted: Path) -> None:
    assert unreachable(planted, "pkg", [planted / "app.py"]) == ["pkg.sub", "pkg.sub.x", "pkg.sub.y"]
    (planted / "app.py").write_text("from pkg.a import b\nimport pkg.sub.x\n")
    assert unreachable(planted, "pkg", [planted / "app.py"]) == []


def test_a_planted_import_of_unshipped_code_is_named(planted: Path) -> None:
    (planted / "pkg" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bench.common import REPO\n"
    )
    assert imports_not_shipped(planted, "pkg") == ["pkg.b -> bench.common.REPO"]
