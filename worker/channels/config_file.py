"""The channels file (CRS_CHANNELS_PATH): read and checked in one place, for every command.

Rules:

* YAML read with ruamel.yaml's safe loader; a duplicate key is an error.
* The top level is a mapping with one key, ``channels``: a mapping of NAME -> {kind: ..., ...}.
* ``rate_per_minute`` (optional, any entry) is ours, not the channel's: the dispatcher's rate limit,
  a positive integer (no booleans, no strings); it is removed before the kind's config model sees
  the entry.
* Every other problem comes from ``registry.validate_channel_specs`` (unknown kind, config-model
  errors). Every problem of the file is collected; each names the file and the channel; no message
  echoes a value (it may be a pasted secret or an address).
* Secrets are not resolved here (``registry.build_channels`` does that): a missing environment
  variable is an operational problem, not an invalid file.

``read_channels_file`` returns the valid entries together with the problems (a running worker keeps
the good channels); ``load_channels_file`` refuses a file with any problem (start-up, the CLI).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.channels.base import Channel, ChannelConfig

RATE_FIELD = "rate_per_minute"
_DUPLICATE = re.compile(r'found duplicate key "(.*?)"')
FILE = ""  # key of the problems that concern the whole file, not one channel


@dataclass(frozen=True)
class ChannelsFile:
    """What a channels file holds.

    * ``specs``: every entry that is a mapping, without ``rate_per_minute`` (valid or not);
    * ``valid``: name -> (kind class, validated config) of the entries whose kind and config are
      valid (a bad ``rate_per_minute`` alone does not take a channel away from a running worker);
    * ``rate_limits``: name -> sends per minute, where a valid one is set;
    * ``problems``: channel name (``FILE`` for the file as a whole) -> its error messages.
    """

    path: str
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    valid: dict[str, tuple[type[Channel], ChannelConfig]] = field(default_factory=dict)
    rate_limits: dict[str, int] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)

    @property
    def errors(self) -> list[str]:
        return [msg for msgs in self.problems.values() for msg in msgs]


class ChannelsFileError(ValueError):
    """The channels file is not usable as a whole; ``errors`` lists every problem."""

    def __init__(self, path: str, errors: list[str]) -> None:
        super().__init__(f"the channels file {path} is not valid ({len(errors)} problem(s)):\n  " + "\n  ".join(errors))
        self.path = path
        self.errors = errors


def load_channels_file(path: str, kinds: Mapping[str, type[Channel]] | None = None) -> ChannelsFile:
    """The channels file, or ``ChannelsFileError`` listing every problem (see the module rules)."""
    loaded = read_channels_file(path, kinds)
    if loaded.problems:
        raise ChannelsFileError(path, loaded.errors)
    return loaded


def read_channels_file(path: str, kinds: Mapping[str, type[Channel]] | None = None) -> ChannelsFile:
    """The channels file with its valid entries and every problem (never raises for the file)."""
    from worker.channels.registry import ChannelConfigError, load_channel_kinds, validate_channel_specs

    data, problem = _read_yaml(path)
    file = f"channels file {path}"
    if problem:
        return ChannelsFile(path, problems={FILE: [f"{file}: {problem}"]})
    if not isinstance(data, dict) or not isinstance(data.get("channels"), dict):
        return ChannelsFile(path, problems={FILE: [
            f"{file}: the top level must be a mapping with a 'channels' mapping of NAME: {{kind: ...}}"]})
    out = ChannelsFile(path)
    unknown = sorted(str(k) for k in data if k != "channels")
    if unknown:
        out.problems[FILE] = [f"{file}: unknown top-level key(s) {', '.join(map(repr, unknown))} (only 'channels')"]
    kinds = load_channel_kinds() if kinds is None else kinds
    for name, entry in data["channels"].items():
        where = f"{file}: channel {name!r}"
        if not isinstance(name, str) or not name:
            out.problems.setdefault(str(name), []).append(f"{where}: a channel name must be a non-empty string")
            continue
        if not isinstance(entry, dict):
            out.problems.setdefault(name, []).append(f"{where}: must be a mapping with a 'kind'")
            continue
        spec = dict(entry)
        rate = spec.pop(RATE_FIELD, None)
        out.specs[name] = spec
        errors = []
        try:
            out.valid.update(validate_channel_specs({name: spec}, kinds))
        except ChannelConfigError as exc:
            errors.extend(f"{file}: {e}" for e in exc.errors)
        if RATE_FIELD in entry:
            if type(rate) is int and rate > 0:  # type(): True is an int to isinstance
                out.rate_limits[name] = rate
            else:  # the channel stays usable (unlimited) for a running worker; start-up refuses the file
                errors.append(f"{where}: {RATE_FIELD}: must be a positive integer (sends per minute)")
        if errors:
            out.problems[name] = errors
    return out


def _read_yaml(path: str) -> tuple[Any, str | None]:
    """(document, None) or (None, the problem); YAML problems with their line, never the values."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="safe", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.load(fh), None
    except FileNotFoundError:
        return None, "not found"
    except OSError as exc:
        return None, f"cannot read ({exc.strerror or type(exc).__name__})"
    except UnicodeDecodeError:
        return None, "cannot read (not UTF-8 text)"
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        if dup := _DUPLICATE.search(str(exc.problem or "")):  # ruamel quotes the values too: keep the key only
            first = f" (the mapping starting at line {exc.context_mark.line + 1} already has it)" if exc.context_mark else ""
            return None, f"invalid YAML: {where}duplicate key {dup.group(1)!r}{first}"
        # ruamel's problem texts describe the token ("could not find expected ':'"), not its value
        return None, f"invalid YAML: {where}{' '.join(str(exc.problem or 'syntax error').split())[:200]}"
    except YAMLError as exc:
        return None, f"invalid YAML ({type(exc).__name__})"


def address_checks(
    loaded: ChannelsFile, kinds: Mapping[str, type[Channel]] | None = None
) -> dict[str, Callable[[str], str | None]]:
    """Channel name -> its kind's address rule, for ``rules.models.check_references``.

    Every channel the file names is included, valid or not, so a contact is not also reported as
    using an unconfigured channel; one whose kind is unknown accepts any ``to`` (its own error says
    why the channel is unusable).
    """
    from worker.channels.registry import load_channel_kinds

    kinds = load_channel_kinds() if kinds is None else kinds
    out: dict[str, Callable[[str], str | None]] = {}
    for name in [*loaded.specs, *(n for n in loaded.problems if n != FILE)]:
        cls = kinds.get(str(loaded.specs.get(name, {}).get("kind")))
        out[name] = cls.address_problem if cls is not None else _any_address
    return out


def _any_address(to: str) -> None:
    return None
