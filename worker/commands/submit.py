"""`crs-alert submit [FILE|-]`: push check-ins (JSON Lines) onto the intake stream.

Each non-blank line becomes one stream entry, as it is: validation happens in the worker, which
stores a refused line with its errors (so nothing a producer sent is ever silently lost). With
``--validate`` the file is checked first and nothing is submitted when any line is invalid. The
Python equivalent is ``worker.intake.submit(redis, stream, checkins)``.
"""

from __future__ import annotations

import argparse
import json
import sys

from worker.commands import _common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="push check-ins (JSON Lines) onto the intake queue")
    p.add_argument("file", nargs="?", default="-", help="JSON Lines file, or - for standard input (default)")
    p.add_argument("--validate", action="store_true",
                   help="check every line first; if any is invalid, print its errors and submit nothing (exit 1)")
    p.set_defaults(func=run)


def invalid_lines(lines: list[tuple[int, bytes]]) -> list[dict]:
    """One report per invalid line: its number in the file, the check-in id when readable, every
    field error, in the worker's words (worker.pipeline.decode reads the same bytes the same way).
    A checkin_id used again with different content is reported too, as the worker would reject it."""
    from worker.checkin import IntakeError, not_utf8, parse_checkin

    out = []
    first: dict[str, tuple[int, object]] = {}  # checkin_id -> (its first line, its content)
    for n, line in lines:
        try:
            checkin = parse_checkin(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            out.append({"line": n, "checkin_id": None, "errors": [not_utf8(line, exc).as_dict()]})
            continue
        except IntakeError as exc:
            out.append({"line": n, "checkin_id": exc.checkin_id, "errors": [e.as_dict() for e in exc.errors]})
            continue
        content = json.loads(line)
        seen = first.setdefault(checkin.checkin_id, (n, content))
        if seen[1] != content:  # the same content again is a harmless resend; other content is refused
            out.append({"line": n, "checkin_id": checkin.checkin_id, "errors": [{"loc": "checkin_id", "msg": (
                f"Also used by line {seen[0]} with different content: the worker would store line {seen[0]} and "
                "reject this one (checkin_id_conflict); give each check-in its own checkin_id")}]})
    return out


def numbered_lines(data: bytes) -> list[tuple[int, bytes]]:
    """(line number in the file, the line stripped) for every non-blank line: blank lines are
    skipped but still counted, so a report's number is the one an editor shows."""
    return [(n, line.strip()) for n, line in enumerate(data.splitlines(), 1) if line.strip()]


def read_bytes(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise _common.CommandError(f"cannot read {path}: {exc.strerror}") from None


def read_lines(path: str) -> list[bytes]:
    return [line for _, line in numbered_lines(read_bytes(path))]


def run(args: argparse.Namespace) -> int:
    import redis

    from worker.intake import submit
    from worker.settings import redact_url

    try:
        s = _common.settings()
        numbered = numbered_lines(read_bytes(args.file))
        lines = [line for _, line in numbered]
        if args.validate and (bad := invalid_lines(numbered)):
            for report in bad:
                print(json.dumps(report), file=sys.stderr)
            print(f"crs-alert: {len(bad)} of {len(lines)} lines invalid; nothing submitted", file=sys.stderr)
            return 1
        if not lines:
            print(f"crs-alert: warning: {'standard input' if args.file == '-' else args.file} holds no check-in "
                  "(empty, or blank lines only); nothing submitted", file=sys.stderr)
        handle = _common.redis_handle(s)
        try:
            ids = submit(_common.redis_client(handle.url), s.stream_name, lines, group=s.group)
        except redis.RedisError as exc:  # it answered the PING, then failed: part of the file may be queued
            raise _common.CommandError(f"Redis at {redact_url(handle.url)} (REDIS_URL) failed while submitting "
                                       f"({type(exc).__name__}): some lines may have been queued; the worker drops "
                                       "a repeated checkin_id as a duplicate, so sending the file again is safe") from None
        finally:
            handle.stop()
    except _common.CommandError as exc:
        return _common.fail(exc)
    print(json.dumps({"submitted": len(ids), "stream": s.stream_name, "first_id": ids[0] if ids else None,
                      "last_id": ids[-1] if ids else None}))
    return 0
