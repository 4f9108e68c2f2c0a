"""The rules in force for a process, reloaded when the file changes or on SIGHUP.

Rules:
- At start the file must be valid: a process with no good rules refuses to start (it could not
  route a page), with every error as file:line. Given the process's channels (``channels``:
  name -> address rule), every contact must use one of them with an address it accepts, at start
  and on every reload (a reload cannot bring in a contact the process has no channel for).
- Afterwards a change (modification time, size or inode, so editors' rename-and-replace counts)
  or SIGHUP triggers a reload; the new rules are used only if the whole file is valid.
- A failed reload keeps the last good rules, sets ``last_error`` and calls
  ``on_failure(errors, last_good)`` once per distinct bad content, so the caller can raise an
  admin alert; it never silences anything. Any exception while reading or loading is a failed
  reload (a loader bug must neither fail the caller nor let a bad file be ignored unreported).
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from worker.rules.loader import LoadedRules, RuleError, RulesError, load_rules_text
from worker.rules.models import AddressCheck

FailureHook = Callable[[list[str], LoadedRules], None]


@dataclass(frozen=True, slots=True)
class _Stamp:
    mtime_ns: int
    size: int
    inode: int


class RulesHolder:
    def __init__(self, path: str, on_failure: FailureHook | None = None, channels: Mapping[str, AddressCheck] | None = None):
        self.path = path
        self.on_failure = on_failure
        self.channels = channels  # the process's channels: a reload's contacts are checked against them, as at start
        self._lock = threading.Lock()
        self._force = False
        self._failed_sha: str | None = None
        self.last_error: list[str] | None = None
        text, self._stamp = self._read()
        self.current = load_rules_text(text, path, channels)  # raises RulesError: refuse to start

    def _read(self) -> tuple[str, _Stamp]:
        with open(self.path, encoding="utf-8") as fh:
            st = os.fstat(fh.fileno())
            return fh.read(), _Stamp(st.st_mtime_ns, st.st_size, st.st_ino)

    def request_reload(self) -> None:
        """Reload at the next get() even if the file looks unchanged (SIGHUP)."""
        self._force = True

    def install_sighup(self) -> None:
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    def get(self) -> LoadedRules:
        """The rules in force, reloading first if the file changed or a reload was requested."""
        with self._lock:
            try:
                st = os.stat(self.path)
                changed = _Stamp(st.st_mtime_ns, st.st_size, st.st_ino) != self._stamp
            except OSError:
                changed = True
            if changed or self._force:
                self._force = False
                self._reload()
            return self.current

    def _reload(self) -> None:
        try:
            text, stamp = self._read()
        except OSError as exc:
            self._failed([f"{self.path}: cannot read: {exc.strerror or exc}"], "unreadable")
            return
        except UnicodeDecodeError:
            self._failed([f"{self.path}: cannot read: not UTF-8 text"], "unreadable")
            return
        sha = hashlib.sha256(text.encode()).hexdigest()
        self._stamp = stamp
        if sha != self.current.sha256:
            try:
                self.current = load_rules_text(text, self.path, self.channels)
            except RulesError as exc:
                self._failed([str(e) for e in exc.errors], sha)
                return
            except Exception as exc:  # noqa: BLE001 - a loader bug: report it like any bad file
                # The type only: an exception's text may quote the file's values.
                self._failed([f"{self.path}: could not be loaded ({type(exc).__name__}); the last good rules stay in force"], sha)
                return
        self._failed_sha = None  # valid again (or back to the content in force)
        self.last_error = None

    def _failed(self, errors: list[str], key: str) -> None:
        self.last_error = errors
        if key != self._failed_sha:
            self._failed_sha = key
            if self.on_failure is not None:
                self.on_failure(errors, self.current)


__all__ = ["RuleError", "RulesHolder"]
