"""The shape the code keeps: SQL only behind the repository modules, no module past 400 lines."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "cyberevents"
REPOSITORY_MODULES = {"repository.py", "queue.py", "ledger.py"}
QUERY_BUILDERS = {"text", "select", "insert", "update", "delete"}
# models.py declares the schema: server defaults and an index predicate are SQL expressions, not queries.
SCHEMA_EXPRESSIONS = {"models.py": {"text"}}
STATEMENT = re.compile(r"\b(SELECT\s+\S|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|WITH\s+\w+\s+AS\s*\(|SHOW\s+\w)")
MAX_LINES = 400


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def outside_the_repository() -> list[Path]:
    return [path for path in modules() if path.name not in REPOSITORY_MODULES or path.parent != PACKAGE]


@pytest.mark.parametrize("path", outside_the_repository(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_sql_is_written_only_in_the_repository_modules(path: Path) -> None:
    tree = ast.parse(path.read_text())
    allowed = SCHEMA_EXPRESSIONS.get(path.name, set())
    builders = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy")
        for alias in node.names
        if alias.name in QUERY_BUILDERS - allowed
    ]
    statements = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and STATEMENT.search(node.value)
    ]
    assert not builders, f"{path.name} builds queries ({', '.join(builders)}): they belong in a repository module"
    assert not statements, f"{path.name} holds SQL: {statements[0][:80]!r}"


def test_the_check_sees_sql_where_it_is() -> None:
    """The repository modules hold both kinds the check looks for, so that it cannot pass by seeing nothing."""
    sources = {name: (PACKAGE / name).read_text() for name in REPOSITORY_MODULES}
    assert STATEMENT.search(sources["queue.py"]) and STATEMENT.search(sources["ledger.py"])
    assert "from sqlalchemy import" in sources["repository.py"]


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_module_is_past_400_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines: split it by concern"
