"""`crs-alert evaluate [FILE ...]`: the evaluation contract of ../shared/spec/evaluate.md.

- Input: FILEs, or standard input when none or "-": JSON Lines, one object, or one array; a line may
  be a vignette object ({"id", "checkin", "expected"}), whose "checkin" is evaluated.
- Output: one JSON object per input document, in input order, one a line (or a table with --table).
- An invalid document yields {"line", "checkin_id" (if readable), "valid": false, "errors"} and
  processing goes on.
- Exit status: 0 every input valid; 1 any invalid; 2 usage error (missing file, unreadable framing).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from worker.checkin import FieldError, IntakeError, parse_checkin
from worker.evaluation import evaluate
from worker.jsonstream import Document, FramingError, documents

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="grade check-ins (JSON Lines in, JSON Lines out); no Redis, database or network",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="*", metavar="FILE", help='check-in files; none or "-" reads standard input')
    p.add_argument("--table", action="store_true", help="print a readable table instead of JSON Lines")
    p.set_defaults(func=run)


def evaluate_document(doc: Document) -> dict[str, Any]:
    """One output object for one input document (valid evaluation or the list of errors)."""
    value = doc.value
    if doc.error is not None:
        return _invalid(doc.number, None, [FieldError("", doc.error)])
    if isinstance(value, dict) and "checkin" in value and "checkin_id" not in value:
        value = value["checkin"]  # a vignette line
    if not isinstance(value, dict):
        return _invalid(doc.number, None, [FieldError("", f"A check-in must be a JSON object, not {_json_type(value)}")])
    try:
        checkin = parse_checkin(value)
    except IntakeError as exc:
        return _invalid(doc.number, exc.checkin_id, exc.errors)
    return evaluate(checkin).as_dict()


def _invalid(line: int, checkin_id: str | None, errors: list[FieldError]) -> dict[str, Any]:
    out: dict[str, Any] = {"line": line}
    if checkin_id is not None:
        out["checkin_id"] = checkin_id
    out["valid"] = False
    out["errors"] = [e.as_dict() for e in errors]
    return out


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def run(args: argparse.Namespace) -> int:
    sources = args.files or ["-"]
    contents: list[tuple[str, bytes]] = []
    for name in sources:  # read everything first: a missing file is a usage error before any output
        try:
            contents.append((name, sys.stdin.buffer.read() if name == "-" else _read(name)))
        except OSError as exc:
            print(f"crs-alert evaluate: cannot read {name}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
    out = sys.stdout
    table = _Table(out) if args.table else None
    status = EXIT_OK
    for name, data in contents:
        try:
            for doc in documents(data):
                result = evaluate_document(doc)
                if not result["valid"]:
                    status = EXIT_INVALID
                    if len(contents) > 1:
                        result["file"] = name
                if table:
                    table.add(result)
                else:
                    out.write(json.dumps(result, ensure_ascii=False) + "\n")
        except FramingError as exc:
            print(f"crs-alert evaluate: {name}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if table:
        table.flush()
    return status


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


class _Table:
    """A compact human-readable view: one row per check-in, then the reasons of the urgent ones.

    CRS ">=N" is a minimum grade; ICANS "?(>=N)" is ungradable with a proven floor of N.
    """

    HEADER = ("checkin", "patient", "CRS", "ICANS", "NEWS2", "urgency", "red flags")

    def __init__(self, out: TextIO):
        self.out = out
        self.rows: list[tuple[str, ...]] = []
        self.notes: list[str] = []

    def add(self, r: dict[str, Any]) -> None:
        if not r["valid"]:
            ident = r.get("checkin_id") or f"line {r['line']}"
            self.rows.append((ident, "-", "-", "-", "-", "INVALID", ""))
            self.notes.append(f"{ident}: " + "; ".join(f"{e['loc'] or '(document)'}: {e['msg']}" for e in r["errors"]))
            return
        crs = f"{'>=' if r['crs_grade_is_minimum'] else ''}{r['crs_grade']}"
        icans = str(r["icans_grade"]) if r["icans_grade"] is not None else f"?(>={r['icans_floor']})"
        news = "-" if r["news2"] is None else str(r["news2"])
        self.rows.append((r["checkin_id"], r["patient_id"], crs, icans, news, r["urgency"], ", ".join(r["red_flags"])))
        if r["urgency"] in ("urgent", "emergency"):
            self.notes.append(f"{r['checkin_id']} ({r['urgency']}):" + "".join(f"\n  - {x}" for x in r["reasons"]))

    def flush(self) -> None:
        rows = [self.HEADER, *self.rows]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self.HEADER))]
        for row in rows:
            self.out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n")
        if self.notes:
            self.out.write("\n" + "\n".join(self.notes) + "\n")
