"""The shared layer's shape: no import circles among its modules, and DynamoDB spoken only inside `store/`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "flowpilot" / "flowpilot"
# What only the store may say: DynamoDB expressions, its key names, botocore and its error type.
STORE_ONLY = re.compile(r'ConditionExpression|KeyConditionExpression|"PK"|"SK"|GSI|botocore|ClientError')


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def top_level_imports(path: Path, known: set[str], *, lazy: bool = False) -> set[str]:
    """The `flowpilot.*` modules a module imports when it is imported: statements of its body, not inside
    functions (unless `lazy`) nor `if TYPE_CHECKING:`. `from a import b` counts `a.b` when that is a
    module, else `a`."""
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.parse(path.read_text()).body:
        if _is_type_checking(node):
            continue
        for inner in ast.walk(node):
            if not lazy and isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                break
            if isinstance(inner, ast.Import):
                found |= {alias.name for alias in inner.names}
            elif isinstance(inner, ast.ImportFrom):
                base = inner.module or ""
                if inner.level:
                    anchor = package.split(".")[: len(package.split(".")) - inner.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in inner.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if candidate in known else base)
    return {name for name in found if name in known}


def import_graph(*, lazy: bool = False) -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: top_level_imports(path, known, lazy=lazy) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_layer_has_no_import_circles() -> None:
    graph = import_graph()
    assert {"flowpilot.previews", "flowpilot.writers", "flowpilot.models", "flowpilot.store.sessions"} <= set(graph)
    assert "flowpilot.writers.offline" in graph["flowpilot.writers"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_writers_have_no_circle_even_through_lazy_imports() -> None:
    """The writer is chosen in `writers/__init__.py`, above the writers: no writer imports another lazily
    to choose it (`base` once did, closing a circle with `claude` and `offline`)."""
    graph = import_graph(lazy=True)
    writers = {name: targets for name, targets in graph.items() if name.startswith("flowpilot.writers")}
    assert "flowpilot.writers.claude" in writers["flowpilot.writers"]  # the lazy import is seen
    assert find_cycle(writers) is None, " -> ".join(find_cycle(writers) or [])


def test_the_cycle_check_can_fail() -> None:
    graph = import_graph()
    graph["flowpilot.writers.base"] = graph["flowpilot.writers.base"] | {"flowpilot.writers.offline"}
    assert find_cycle(graph) == ["flowpilot.writers.base", "flowpilot.writers.offline", "flowpilot.writers.base"]


def test_relative_and_package_imports_are_resolved() -> None:
    graph = import_graph()
    assert "flowpilot.store.sessions" in graph["flowpilot.sessions"]  # `from flowpilot.store import sessions`
    assert "flowpilot.models.api" in graph["flowpilot.models.stored"]


def store_only_lines() -> list[str]:
    """`path:line: text` of every line outside `store/` that speaks DynamoDB (comments and docstrings too:
    a key name in prose is a key name a reader has to know)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "store":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if STORE_ONLY.search(line) and not _allowed(relative, line):
                found.append(f"{relative}:{number}: {line.strip()}")
    return found


# Not DynamoDB: the logger names quietened at start-up, the metric named after 4xx answers, and why a
# restored snapshot reseeds `random` (botocore's retry jitter draws from it).
_NOT_DYNAMODB = {
    ("observability.py", '"botocore"'),
    ("api.py", 'name="ClientError"'),
    ("snapstart.py", "(botocore's"),
}


def _allowed(relative: Path, line: str) -> bool:
    return any(relative.name == name and text in line for name, text in _NOT_DYNAMODB)


def test_dynamodb_is_spoken_only_inside_the_store() -> None:
    assert store_only_lines() == []


def test_the_store_only_check_can_fail() -> None:
    assert STORE_ONLY.search('condition="attribute_exists(PK)", ConditionExpression=condition')
    assert STORE_ONLY.search("from botocore.exceptions import ClientError")
    assert STORE_ONLY.search('item["GSI2PK"]')
    assert not STORE_ONLY.search("store.link_ticket(caller.account_id, session_id, ticket, now)")
