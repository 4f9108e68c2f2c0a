"""Find a Redis for one machine: REDIS_URL, else localhost:6379, else a private redis-server.

The private server is started from PATH with its data (AOF on, fsync every second) under
``<CRS_VAR_DIR>/redis/``, on a free loopback port written to ``redis.port`` there, so the next
command on this machine finds and reuses it. Its data outlives it: a restarted server replays the
AOF, so check-ins submitted but not yet processed are still there.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

LOCAL_URL = "redis://127.0.0.1:6379/0"


class RedisUnavailable(RuntimeError):
    pass


HOW_TO = (
    "no Redis found: REDIS_URL is not set, nothing answers on 127.0.0.1:6379, and no redis-server "
    "is on PATH to start a private one. Set REDIS_URL=redis://HOST:PORT/0, or install Redis "
    "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)."
)


@dataclass
class RedisHandle:
    url: str
    source: str  # "REDIS_URL" | "localhost" | "private (reused)" | "private (started)"
    process: subprocess.Popen | None = field(default=None, repr=False)

    def stop(self) -> None:
        """Stop a private server this process started (SHUTDOWN writes the AOF); else nothing."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            redis.Redis.from_url(self.url, socket_timeout=5).shutdown(nosave=False)
        except (redis.ConnectionError, redis.ResponseError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "RedisHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def answers(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def problem(url: str, timeout: float = 2.0) -> str | None:
    """Why ``url`` does not answer a PING (the error's type and its words, which name the host and
    port but never the password), or None when it does."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        detail = " ".join(str(exc).split())
        return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_private(var_dir: Path, *, port: int | None = None, timeout: float = 10.0) -> RedisHandle:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable(HOW_TO)
    data = (var_dir / "redis").resolve()
    data.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--appendonly", "yes",
            "--appendfsync", "everysec", "--maxmemory-policy", "noeviction", "--save", "",
            "--protected-mode", "yes", "--daemonize", "no", "--logfile", str(data / "redis.log")]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + timeout
    while not answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RedisUnavailable(f"the private redis-server did not start; see {data / 'redis.log'}")
        time.sleep(0.05)
    (data / "redis.port").write_text(str(port))
    return RedisHandle(url, "private (started)", proc)


def resolve(redis_url: str | None, var_dir: Path, *, try_local: bool = True) -> RedisHandle:
    """The Redis to use, in the order of the module docstring; raises RedisUnavailable."""
    if redis_url:
        return RedisHandle(redis_url, "REDIS_URL")
    if try_local and answers(LOCAL_URL):
        return RedisHandle(LOCAL_URL, "localhost")
    port_file = var_dir / "redis" / "redis.port"
    if port_file.exists():
        url = f"redis://127.0.0.1:{port_file.read_text().strip()}/0"
        if answers(url):
            return RedisHandle(url, "private (reused)")
    return start_private(var_dir)
