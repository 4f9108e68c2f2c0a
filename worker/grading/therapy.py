"""Therapy risk tiers and at-risk windows, clinical.md sections 4.4 and 4.7 [design].

Rules:
- Names match generic or brand, case-insensitively, ignoring punctuation and spacing, with the
  common "-cel" abbreviations (axi-cel ...) and the FDA four-letter suffixes (teclistamab-cqyv).
- An unknown therapy is tier "unknown", never an error.
- Tisagenlecleucel is High for B-ALL and Medium for lymphoma; the check-in does not say which, so
  it is High [design: the safer tier].
- Bispecific T-cell engagers are High in cycle 1 (step-up and first full doses) and Medium after;
  the check-in has no cycle, so they are High and the window is the first 28 days from
  `therapy_start` (cycle 1) [design].
- TGN1412 (CD28 superagonist): any first-in-human T-cell agonist is treated as High.
- At-risk window, in days since `therapy_start` (day 0 = infusion / first dose): CAR-T 0-28
  (highest 0-14, heightened to 28), bispecifics 0-28 (cycle 1), CRS-associated antibodies 0-1
  (first 24 h after the infusion), low tier: no window.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class Therapy:
    generic: str
    therapy_class: str  # car_t | bispecific | antibody | other
    tier: str  # high | medium | low
    window_days: int | None  # last day (inclusive) of the at-risk window; None: no window


_CAR_T, _BSAB, _AB, _OTHER = "car_t", "bispecific", "antibody", "other"

# (generic, class, tier, window, names also accepted). clinical.md 4.7 table and 4.1/4.2 brands.
_CATALOGUE = (
    ("axicabtagene ciloleucel", _CAR_T, "high", 28, ("yescarta", "axi cel")),
    ("brexucabtagene autoleucel", _CAR_T, "high", 28, ("tecartus", "brexu cel")),
    ("ciltacabtagene autoleucel", _CAR_T, "high", 28, ("carvykti", "cilta cel")),
    ("idecabtagene vicleucel", _CAR_T, "high", 28, ("abecma", "ide cel")),
    ("tisagenlecleucel", _CAR_T, "high", 28, ("kymriah", "tisa cel")),
    ("lisocabtagene maraleucel", _CAR_T, "medium", 28, ("breyanzi", "liso cel")),
    ("blinatumomab", _BSAB, "high", 28, ("blincyto",)),
    ("teclistamab", _BSAB, "high", 28, ("tecvayli",)),
    ("talquetamab", _BSAB, "high", 28, ("talvey",)),
    ("elranatamab", _BSAB, "high", 28, ("elrexfio",)),
    ("epcoritamab", _BSAB, "high", 28, ("epkinly", "tepkinly")),
    ("glofitamab", _BSAB, "high", 28, ("columvi",)),
    ("mosunetuzumab", _BSAB, "high", 28, ("lunsumio",)),
    ("tarlatamab", _BSAB, "high", 28, ("imdelltra",)),
    ("anti-thymocyte globulin", _AB, "medium", 1, ("thymoglobulin", "atgam", "atg", "antithymocyte globulin")),
    ("alemtuzumab", _AB, "medium", 1, ("campath", "lemtrada")),
    ("obinutuzumab", _AB, "medium", 1, ("gazyva", "gazyvaro")),
    ("rituximab", _AB, "medium", 1, ("rituxan", "mabthera", "truxima", "ruxience", "riabni")),
    ("nivolumab", _AB, "low", None, ("opdivo",)),
    ("brentuximab vedotin", _AB, "low", None, ("adcetris", "brentuximab")),
    ("dacetuzumab", _AB, "low", None, ()),
    ("lenalidomide", _OTHER, "low", None, ("revlimid",)),
    ("oxaliplatin", _OTHER, "low", None, ("eloxatin",)),
    ("tgn1412", _AB, "high", 28, ("theralizumab", "tab08")),
)

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def _key(name: str) -> str:
    return _NON_ALNUM.sub(" ", name.lower()).strip()


_BY_NAME: dict[str, Therapy] = {}
for _generic, _cls, _tier, _window, _aliases in _CATALOGUE:
    _therapy = Therapy(_generic, _cls, _tier, _window)
    for _name in (_generic, *_aliases):
        _BY_NAME[_key(_name)] = _therapy
        _BY_NAME[_key(_name).replace(" ", "")] = _therapy

UNKNOWN = Therapy("unknown", "unknown", "unknown", None)
_FDA_SUFFIX = re.compile(r"^(.*\S) [a-z]{4}$")


@lru_cache(maxsize=1024)
def lookup(name: str | None) -> Therapy:
    """The catalogue entry for a therapy name (generic, brand or abbreviation), or UNKNOWN."""
    if not name:
        return UNKNOWN
    key = _key(name)
    found = _BY_NAME.get(key) or _BY_NAME.get(key.replace(" ", ""))
    if found is None and (m := _FDA_SUFFIX.match(key)):
        found = _BY_NAME.get(m.group(1))
    return found or UNKNOWN


def day_since(therapy_start: dt.date | None, recorded_at: dt.datetime) -> int | None:
    """Days since the infusion/first dose, counted on the check-in's own calendar date (day 0 = start)."""
    if therapy_start is None:
        return None
    return (recorded_at.date() - therapy_start).days


def in_window(therapy: Therapy, day: int | None) -> bool | None:
    """Inside the at-risk window? None when the therapy or the day is unknown."""
    if therapy is UNKNOWN or day is None:
        return None
    return therapy.window_days is not None and 0 <= day <= therapy.window_days
