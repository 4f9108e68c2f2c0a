"""docker-compose.yml and Dockerfile, checked without a Docker engine.

1. The Compose Specification schema (check-jsonschema's vendored ``vendor.compose-spec``).
2. What the schema cannot see: depends_on targets and conditions, every ``crs-alert ...`` argv
   parsed by the real ``worker.cli.build_parser()``, healthchecks, the worker's grace period
   against the Celery task time limit the worker would really get, no literal secrets, and the
   image entrypoint script (run for real).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from worker.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")
APP_SERVICES = {"migrate", "worker", "scheduler"}
SECRET_KEY = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.I)
WHOLE_INTERPOLATION = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?:(?::?[-?+])[^}]*)?\}$")
URL_PASSWORD = re.compile(r"://[^/@\s:]*:([^/\s]+)@")


def load(path: Path = COMPOSE) -> dict:
    return YAML(typ="safe").load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load()


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


# -- interpolation (the subset of the Compose rules this file uses) ---------------------------

_INTERP = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})"
)


def interpolate(value: str, env: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        if m["escaped"]:
            return "$"
        name, op, arg = m["name"], m["op"], m["arg"] or ""
        present = name in env and (env[name] != "" or not (op or "").startswith(":"))
        if op in (":-", "-"):
            return env[name] if present else arg
        if op in (":?", "?"):
            if not present:
                raise KeyError(f"{name}: {arg}")
            return env[name]
        if op in (":+", "+"):
            return arg if present else ""
        return env.get(name, "")

    return _INTERP.sub(repl, value)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def test_interpolate_follows_compose_rules():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d} ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} $${SET}", env) == "x d d  ${SET}"
    with pytest.raises(KeyError):
        interpolate("${UNSET:?set it}", env)


# -- 1. schema ------------------------------------------------------------------------------


def check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120,
    )


def test_compose_file_matches_the_compose_specification():
    result = check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_broken_copy(tmp_path):
    """Guard against a validator that passes everything: a wrong type must be caught."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("interval: 30s", "interval: [30]", 1))
    result = check_jsonschema(broken)
    assert result.returncode == 1, result.stdout
    assert "interval" in result.stdout + result.stderr


# -- 2. cross-references ----------------------------------------------------------------------


def test_expected_services_exist(services):
    assert {"redis", "postgres", "migrate", "worker", "scheduler"} <= set(services)


def test_depends_on_targets_exist_and_conditions_hold(services):
    for name, service in services.items():
        deps = service.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for target, spec in deps.items():
            assert target in services, f"{name} depends on undefined service {target!r}"
            assert target != name
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} health, it has none"
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} is one-shot"


def test_workers_wait_for_healthy_stores_and_the_migration(services):
    for name in ("worker", "scheduler"):
        deps = services[name]["depends_on"]
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["restart"] == "unless-stopped"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def argv_lists(service: dict) -> list[tuple[str, list[str]]]:
    """(where, argv) for the command, the entrypoint and the healthcheck of a service."""
    found = []
    for field in ("entrypoint", "command"):
        value = service.get(field)
        if value:
            found.append((field, shlex.split(value) if isinstance(value, str) else [str(v) for v in value]))
    test = (service.get("healthcheck") or {}).get("test")
    if isinstance(test, str):
        found.append(("healthcheck", shlex.split(test)))
    elif test and test[0] == "CMD-SHELL":
        found.append(("healthcheck", shlex.split(test[1])))
    elif test and test[0] == "CMD":
        found.append(("healthcheck", [str(v) for v in test[1:]]))
    return found


def crs_alert_invocations(argv: list[str]) -> list[list[str]]:
    """Every `crs-alert ...` argv, including inside `sh -c "..."` scripts."""
    calls = []
    for i, token in enumerate(argv):
        if any(c.isspace() for c in token):  # a shell script passed as one argument
            calls.extend(crs_alert_invocations(shlex.split(token)))
        elif Path(token).name == "crs-alert":
            rest = []
            for arg in argv[i + 1:]:
                if arg in ("&&", "||", ";", "|"):
                    break
                rest.append(arg)
            calls.append(rest)
    return calls


def parse_cli(argv: list[str]):
    parser = build_parser()
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"`crs-alert {' '.join(argv)}` is not a valid command (exit {exc.code})")


def test_every_crs_alert_command_is_a_real_subcommand(services):
    """Parsed with the real CLI: a service naming a command that does not exist fails here."""
    seen = set()
    for name, service in services.items():
        for where, argv in argv_lists(service):
            for call in crs_alert_invocations(argv):
                args = parse_cli(call)
                assert callable(getattr(args, "func", None)), f"{name}.{where}: {call} has no handler"
                seen.add(name)
    assert APP_SERVICES <= seen, "every application service runs `crs-alert ...`"


def test_command_check_rejects_unknown_commands_and_finds_shell_invocations():
    with pytest.raises(AssertionError, match="not a valid command"):
        parse_cli(["wroker"])
    with pytest.raises(AssertionError, match="not a valid command"):
        parse_cli(["health", "--component", "api"])
    service = {"command": "sh -c 'crs-alert db upgrade && crs-alert status --json'",
               "healthcheck": {"test": ["CMD-SHELL", "/usr/local/bin/crs-alert health || exit 1"]}}
    calls = [call for _, argv in argv_lists(service) for call in crs_alert_invocations(argv)]
    assert calls == [["db", "upgrade"], ["status", "--json"], ["health"]]


def test_application_services_run_the_expected_commands(services):
    assert services["migrate"]["command"] == ["crs-alert", "db", "upgrade"]
    for name in ("worker", "scheduler"):
        args = parse_cli(crs_alert_invocations(services[name]["command"])[0])
        assert args.command == name
        assert str(args.metrics_port) in services[name]["expose"], f"{name} serves /metrics on an exposed port"


def test_healthchecks_use_real_checks(services):
    for name in ("worker", "scheduler"):
        (call,) = crs_alert_invocations(argv_lists({"healthcheck": services[name]["healthcheck"]})[0][1])
        args = parse_cli(call)
        assert args.command == "health" and args.component == name
    redis_test = services["redis"]["healthcheck"]["test"]
    assert redis_test[0] == "CMD-SHELL" and "redis-cli ping" in redis_test[1]
    pg_test = services["postgres"]["healthcheck"]["test"]
    assert "pg_isready" in " ".join(pg_test)


def test_redis_is_durable_and_never_evicts(services):
    argv = services["redis"]["command"]
    flags = dict(zip(argv[1::2], argv[2::2]))
    assert argv[0] == "redis-server"
    assert flags == {"--appendonly": "yes", "--appendfsync": "everysec", "--maxmemory-policy": "noeviction"}
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")


def test_scheduler_runs_at_most_two_replicas(services):
    assert 1 <= services["scheduler"]["deploy"]["replicas"] <= 2


def duration_s(text: str) -> float:
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def celery_limits(env: dict[str, str]) -> dict:
    """The limits the worker would really run with: worker.celery_app imported under the compose env."""
    code = textwrap.dedent("""
        import json
        from celery import Celery
        import worker.celery_app as mod
        (app,) = {id(v): v for v in vars(mod).values() if isinstance(v, Celery)}.values()
        print(json.dumps({"task_time_limit": app.conf.task_time_limit,
                          "soft_shutdown": app.conf.worker_soft_shutdown_timeout}))
    """)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("CRS_")} | env
    result = subprocess.run(
        [sys.executable, "-c", code], env=run_env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_worker_grace_period_exceeds_the_celery_task_time_limit(services):
    worker = services["worker"]
    env = {k: interpolate(v, {"POSTGRES_PASSWORD": "x", "CRS_ACK_SECRET": "s" * 40, "CRS_PUBLIC_URL": "https://crs.example"}) for k, v in environment(worker).items()}
    limits = celery_limits(env)
    grace = duration_s(worker["stop_grace_period"])
    assert limits["task_time_limit"], f"no task time limit configured ({limits})"
    assert grace > float(limits["task_time_limit"]), (grace, limits)
    assert grace > float(limits["soft_shutdown"] or 0), (grace, limits)


# -- secrets ----------------------------------------------------------------------------------


def secret_problems(doc) -> list[str]:
    """Literal secrets anywhere in a compose document (mappings, env lists, URLs)."""
    problems: list[str] = []

    def check_pair(path: str, key: str, value) -> None:
        if SECRET_KEY.search(key) and isinstance(value, (str, int, float)):
            if not WHOLE_INTERPOLATION.match(str(value)):
                problems.append(f"{path}: {key} is a literal, use ${{VAR}}")

    def walk(node, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                check_pair(path, str(k), v)
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, str) and "=" in v:
                    check_pair(f"{path}[{i}]", *v.split("=", 1))
                walk(v, f"{path}[{i}]")
        elif isinstance(node, str):
            for password in URL_PASSWORD.findall(node):
                if not WHOLE_INTERPOLATION.match(password):
                    problems.append(f"{path}: URL with a literal password")

    walk(doc, "")
    return problems


def test_no_literal_secrets_in_compose(compose):
    assert secret_problems(compose) == []


def test_secret_check_catches_literals():
    doc = {
        "services": {
            "a": {"environment": {"POSTGRES_PASSWORD": "hunter2", "OK_PASSWORD": "${P:?set}"}},
            "b": {"environment": ["API_TOKEN=abc", "REDIS_URL=redis://:pw@redis:6379/0"]},
            "c": {"environment": {"DATABASE_URL": "postgresql://u:${P:?x}@db/x"}},
        }
    }
    problems = secret_problems(doc)
    assert len(problems) == 3, problems
    assert any("POSTGRES_PASSWORD" in p for p in problems)
    assert any("API_TOKEN" in p for p in problems)
    assert any("URL with a literal password" in p for p in problems)


def test_postgres_password_is_required_not_defaulted(services):
    value = environment(services["postgres"])["POSTGRES_PASSWORD"]
    assert value.startswith("${POSTGRES_PASSWORD:?")
    with pytest.raises(KeyError):
        interpolate(value, {})


# -- Dockerfile and entrypoint ----------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def entrypoint_source() -> Path:
    instructions = dockerfile_instructions()
    (entrypoint,) = [json.loads(rest) for op, rest in instructions if op == "ENTRYPOINT"]
    target = entrypoint[0]
    sources = [rest.split()[:-1] for op, rest in instructions if op == "COPY" and rest.split()[-1] == target]
    assert len(sources) == 1, f"no COPY puts anything at {target}"
    (src,) = sources[0]
    return ROOT / src


def test_dockerfile_basics():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [rest for op, rest in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    copies = " ".join(rest for op, rest in instructions if op == "COPY")
    assert "pyproject.toml" in copies and "worker" in copies
    assert any(op == "RUN" and "pip install" in rest for op, rest in instructions)


def test_dockerfile_entrypoint_script_exists_and_is_executable():
    script = entrypoint_source()
    assert script.is_file(), script
    assert script.stat().st_mode & stat.S_IXUSR
    assert script.read_text().startswith("#!/bin/sh")


def test_entrypoint_wipes_stale_metrics_and_execs_the_command(tmp_path):
    metrics_dir = Path("/tmp") / f"crs-test-entrypoint-{os.getpid()}-{tmp_path.name}"
    metrics_dir.mkdir()
    try:
        (metrics_dir / "counter_123.db").write_text("stale")
        (metrics_dir / "keep.txt").write_text("not a metrics file")
        result = subprocess.run(
            [str(entrypoint_source()), sys.executable, "-c",
             "import os, sys; print(os.environ['PROMETHEUS_MULTIPROC_DIR']); sys.exit(7)"],
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
            capture_output=True, text=True, timeout=30,
        )
        assert result.returncode == 7  # exec'd: the command's own status comes back
        assert result.stdout.strip() == str(metrics_dir)
        assert sorted(p.name for p in metrics_dir.iterdir()) == ["keep.txt"]
    finally:
        for p in metrics_dir.iterdir():
            p.unlink()
        metrics_dir.rmdir()


def test_entrypoint_refuses_a_dangerous_metrics_dir():
    result = subprocess.run(
        [str(entrypoint_source()), "true"],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": "/"},
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 64
    assert "refusing" in result.stderr
