"""The source tree's import graph keeps the house's rule (docs/architecture.md): import only downward.

Every import counts, at module level or inside a function (a lazy import is still a dependency).
benchmarks/ and tests/ stand outside the house and are not part of the graph.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400

# The rooms and their floors, lowest first. A module imports only from its own room and the floors
# below: never up, and never across to another room of its floor (the learner reads the lake through
# infra, not through the sink; the report never drives the experiment). The longest prefix of a
# module's name picks its room. The consumers stand on the producers: they read what the producers
# made, and the skill library and the simulator (the curriculum renders the scene and proposes
# skills; summaries reward them); the producers never read a consumer.
FLOORS = {
    "schemas": 0,
    "infra": 1,
    "producers": 2,
    "consumers": 3,
    "learner": 3,
    "robolake.experiment": 4,
    "robolake.report": 4,
    "robolake": 5,
}
PACKAGES = tuple(dict.fromkeys(room.split(".")[0] for room in FLOORS))
OUTSIDE = ("tests", "benchmarks", "docs")  # folders that stand outside the house


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    imported: str  # module name
    file: str  # the importer's file, from the root
    line: int

    def where(self) -> str:
        return f"{self.file}:{self.line} imports {self.imported}"


def source_files(root: Path = ROOT) -> list[Path]:
    return sorted(path for package in PACKAGES for path in (root / package).rglob("*.py"))


def module_name(path: Path, root: Path = ROOT) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def imports(root: Path = ROOT) -> list[Import]:
    """Each import of a module of the tree by a module of the tree ('from a import b' names the
    module a.b when it is one, else a)."""
    files = source_files(root)
    modules = {module_name(path, root) for path in files}
    found = []
    for path in files:
        importer = module_name(path, root)
        package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the importer's package, up level - 1
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                         for alias in node.names]
            else:
                continue
            for name in names:
                while name and name not in modules:  # a name inside a module: the module
                    name = name.rpartition(".")[0]
                if name and name != importer:
                    found.append(Import(importer, name, str(path.relative_to(root)), node.lineno))
    return list(dict.fromkeys(found))  # `from a import b, c` of one module counts once


def room(module: str) -> str:
    return max((p for p in FLOORS if module == p or module.startswith(p + ".")), key=len)


def upward(found: list[Import]) -> list[Import]:
    """Imports of a module on a higher floor than the importer's, or in another room of its floor."""
    return [imp for imp in found if FLOORS[room(imp.imported)] > FLOORS[room(imp.importer)]
            or (FLOORS[room(imp.imported)] == FLOORS[room(imp.importer)] and room(imp.imported) != room(imp.importer))]


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for module in graph.get(todo.pop(), ()):
            if module not in seen:
                seen.add(module)
                todo.append(module)
    return seen


def circles(found: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module: modules that reach each other."""
    graph: dict[str, set[str]] = {}
    for imp in found:
        graph.setdefault(imp.importer, set()).add(imp.imported)
    reach = {module: reachable(graph, module) for module in graph}
    return sorted({tuple(sorted(m for m in reach[module] if module in reach.get(m, ())))
                   for module in graph if module in reach[module]})


def test_imports_only_go_downward():
    bad = upward(imports())
    assert not bad, "imports that go up a floor or across to another room (docs/architecture.md):\n" + "\n".join(
        imp.where() for imp in bad)


def test_all_source_is_in_a_room_of_the_house():
    """A new top-level package or module would otherwise escape every check above."""
    loose = [path.name for path in ROOT.glob("*.py")]
    loose += [f"{path.name}/" for path in ROOT.iterdir() if path.is_dir() and not path.name.startswith(".")
              and path.name not in PACKAGES + OUTSIDE and any(path.glob("*.py"))]
    assert not loose, f"Python outside the house's rooms (add it to FLOORS, or to OUTSIDE): {', '.join(loose)}"


def test_no_import_circles():
    found = imports()
    found_circles = circles(found)
    lines = []
    for component in found_circles:
        members = set(component)
        lines.append(f"a circle of {len(component)} modules, through:")
        lines += [f"  {imp.where()}" for imp in found if imp.importer in members and imp.imported in members]
    assert not found_circles, "\n".join(lines)


def long_modules(root: Path = ROOT) -> list[str]:
    return [f"{path.relative_to(root)}: {n} lines (at most {MAX_LINES})" for path in source_files(root)
            if (n := len(path.read_text().splitlines())) > MAX_LINES]


# The one exception: `import robolake; robolake.run(...)` needs the top package to name the Python
# API, so its __init__.py is its docstring line and one line importing from robolake/api.py (whose
# module-level imports are light: `import robolake` stays cheap).
FRONT_DOOR = Path("robolake/__init__.py")


def wordy_inits(root: Path = ROOT) -> list[str]:
    """Package __init__.py files that are not one line (a docstring: what the room is for)."""
    return [f"{path.relative_to(root)}: not one line of docstring (what the room is for)"
            for path in source_files(root) if path.name == "__init__.py" and not _one_docstring_line(path)
            and not (path.relative_to(root) == FRONT_DOOR and _front_door(path))]


def _one_docstring_line(path: Path) -> bool:
    text = path.read_text()
    body = ast.parse(text).body
    return len(text.splitlines()) == 1 and len(body) == 1 and _is_docstring(body[0])


def _front_door(path: Path) -> bool:
    """A docstring line, then one line: `from robolake.api import ...`."""
    text = path.read_text()
    body = ast.parse(text).body
    return (len(text.splitlines()) == 2 and len(body) == 2 and _is_docstring(body[0])
            and isinstance(body[1], ast.ImportFrom) and body[1].module == "robolake.api" and not body[1].level)


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def test_modules_are_short():
    long = long_modules()
    assert not long, "\n".join(long)


def test_each_package_init_is_one_line():
    wordy = wordy_inits()
    assert not wordy, "\n".join(wordy)


def test_only_the_top_package_may_also_import_the_python_api(tmp_path):
    doc = '"""What the room is for."""\n'
    api = "from robolake.api import run\n"
    for folder, text, wordy in (("robolake", doc + api, False), ("robolake", doc + "import os\n", True),
                                ("robolake", doc + api + api, True), ("infra", doc + api, True)):
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / "__init__.py").write_text(text)
        assert bool(wordy_inits(tmp_path)) == wordy, (folder, text)
        (tmp_path / folder / "__init__.py").unlink()
