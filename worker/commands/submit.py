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


def invalid_lines(lines: list[bytes]) -> list[dict]:
    """One report per invalid line: its number, the check-in id when readable, every field error."""
    from worker.checkin import IntakeError, parse_checkin

    out = []
    for n, line in enumerate(lines, 1):
        try:
            parse_checkin(line)
        except IntakeError as exc:
            out.append({"line": n, "checkin_id": exc.checkin_id, "errors": [e.as_dict() for e in exc.errors]})
    return out


def read_lines(path: str) -> list[bytes]:
    if path == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise _common.CommandError(f"cannot read {path}: {exc.strerror}") from None
    return [line.strip() for line in data.splitlines() if line.strip()]


def run(args: argparse.Namespace) -> int:
    from worker.intake import submit

    try:
        s = _common.settings()
        lines = read_lines(args.file)
        if args.validate and (bad := invalid_lines(lines)):
            for report in bad:
                print(json.dumps(report), file=sys.stderr)
            print(f"crs-alert: {len(bad)} of {len(lines)} lines invalid; nothing submitted", file=sys.stderr)
            return 1
        handle = _common.redis_handle(s)
        try:
            ids = submit(_common.redis_client(handle.url), s.stream_name, lines, group=s.group)
        finally:
            handle.stop()
    except _common.CommandError as exc:
        return _common.fail(exc)
    print(json.dumps({"submitted": len(ids), "stream": s.stream_name, "first_id": ids[0] if ids else None,
                      "last_id": ids[-1] if ids else None}))
    return 0
