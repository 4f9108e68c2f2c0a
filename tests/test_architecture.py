"""Pure layers import no I/O library (architecture.md: domain, checkin, grading, evaluation, rules, messages)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "worker"
PURE = ["domain.py", "checkin.py", "evaluation.py", "advice.py", "jsonstream.py", "grading", "rules", "messages.py"]
FORBIDDEN = {"redis", "celery", "kombu", "requests", "sqlalchemy", "alembic", "psycopg", "apscheduler", "urllib3",
             "socket", "smtplib", "http", "urllib", "subprocess", "structlog", "prometheus_client", "os", "pathlib",
             "io", "logging", "threading", "asyncio"}  # fmt: skip


def pure_files():
    for name in PURE:
        path = ROOT / name
        if path.is_dir():
            yield from sorted(path.rglob("*.py"))
        elif path.exists():
            yield path


def imported_roots(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


def worker_imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("worker"):
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("worker"))


PURE_FILES = list(pure_files())


def test_pure_files_found():
    assert len(PURE_FILES) >= 9


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_imports_no_io_library(path):
    bad = set(imported_roots(path)) & FORBIDDEN
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: pure logic must stay free of I/O"


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_imports_only_pure_worker_modules(path):
    pure_modules = {f"worker.{p.relative_to(ROOT).with_suffix('').as_posix().replace('/', '.')}" for p in PURE_FILES}
    pure_modules |= {"worker.grading", "worker.rules"}
    bad = {m for m in worker_imports(path) if m not in pure_modules}
    assert not bad, f"{path.relative_to(ROOT)} imports impure worker modules {sorted(bad)}"
