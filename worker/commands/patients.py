"""`crs-alert patients enroll|list`: the enrollment (age, therapy, therapy start, unit, expected
check-in interval, labels) that fills gaps in a patient's check-ins. Re-enrolling updates."""

from __future__ import annotations

import argparse
import json
import sys

from worker.commands import _common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("patients", help="enroll patients or list the enrolled ones")
    psub = p.add_subparsers(dest="patients_command", metavar="ACTION", required=True)
    en = psub.add_parser("enroll", help="enroll (or update) patients from flags or a JSON Lines file")
    en.add_argument("--file", help="JSON Lines, one enrollment a line (- for standard input)")
    en.add_argument("--patient-id")
    en.add_argument("--age", type=float, dest="age_years")
    en.add_argument("--therapy")
    en.add_argument("--therapy-start", help="YYYY-MM-DD")
    en.add_argument("--unit")
    en.add_argument("--interval-h", type=float, dest="checkin_interval_h", help="expected hours between check-ins")
    en.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    en.set_defaults(func=enroll)
    ls = psub.add_parser("list", help="list enrolled patients")
    ls.add_argument("--json", action="store_true", help="JSON Lines output")
    ls.set_defaults(func=list_)


def _inputs(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from worker.enrollment import EnrollmentError, EnrollmentFileError, parse_enrollment, parse_enrollments
    from worker.jsonstream import FramingError

    try:
        if args.file:
            if args.file == "-":
                data = sys.stdin.buffer.read()
            else:
                with open(args.file, "rb") as fh:
                    data = fh.read()
            return parse_enrollments(data)
        if not args.patient_id:
            raise _common.CommandError("give --patient-id (and optional fields) or --file FILE")
        labels = {}
        for item in args.label:
            key, sep, value = item.partition("=")
            if not sep:
                raise _common.CommandError(f"--label {item!r}: expected KEY=VALUE")
            labels[key] = value
        doc = {k: v for k, v in dict(patient_id=args.patient_id, age_years=args.age_years, therapy=args.therapy,
                                     therapy_start=args.therapy_start, unit=args.unit,
                                     checkin_interval_h=args.checkin_interval_h, labels=labels).items() if v is not None}
        return [parse_enrollment(doc)]
    except EnrollmentFileError as exc:
        raise _common.CommandError(file_problems(args.file, exc)) from None
    except EnrollmentError as exc:
        raise _common.CommandError(f"invalid enrollment: {exc}") from None
    except FramingError as exc:
        raise _common.CommandError(f"invalid enrollment file {args.file}: {exc}; nothing enrolled") from None
    except OSError as exc:
        raise _common.CommandError(f"cannot read {args.file}: {exc.strerror}") from None


def file_problems(path: str, exc) -> str:  # type: ignore[no-untyped-def]
    """Every bad line of an enrollment file, one a line (the file is refused as a whole)."""
    count = f"{len(exc.lines)} invalid line{'s' if len(exc.lines) > 1 else ''}"
    return f"invalid enrollment file {path} ({count}; nothing enrolled):\n" + "\n".join(f"  {bad}" for bad in exc.lines)


def enroll_all(engine, items, actor: str = "cli") -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Enroll every item in one transaction; (created, updated)."""
    import datetime as dt

    from worker.store import repo
    from worker.store.db import session_factory

    created = updated = 0
    now = dt.datetime.now(dt.UTC)
    with session_factory(engine).begin() as session:
        for e in items:
            if repo.enroll(session, repo.Enrollment(**e.model_dump()), now=now, actor=actor):
                created += 1
            else:
                updated += 1
    return created, updated


def enroll(args: argparse.Namespace) -> int:
    try:
        s = _common.settings()
        items = _inputs(args)
        created, updated = enroll_all(_common.store(s), items)
    except _common.CommandError as exc:
        return _common.fail(exc)
    print(json.dumps({"enrolled": created, "updated": updated}))
    return 0


def list_(args: argparse.Namespace) -> int:
    from worker.store import repo
    from worker.store.db import session_factory

    try:
        s = _common.settings()
        with session_factory(_common.store(s, must_exist=True))() as session:
            rows = repo.list_patients(session)
    except _common.CommandError as exc:
        return _common.fail(exc)
    for p in rows:
        doc = {"patient_id": p.patient_id, "age_years": p.age_years, "therapy": p.therapy,
               "therapy_start": p.therapy_start.isoformat() if p.therapy_start else None, "unit": p.unit,
               "checkin_interval_h": p.checkin_interval_h, "labels": p.labels}
        if args.json:
            print(json.dumps(doc))
        else:
            print(f"{p.patient_id:<12} age {p.age_years if p.age_years is not None else '?':<5} "
                  f"{p.therapy or '-':<28} start {doc['therapy_start'] or '-':<10} unit {p.unit or '-'}")
    return 0
