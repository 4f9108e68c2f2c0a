"""Channel kinds come from entry points (group ``crs_alert.channels``); channels are built from specs.

Rules:

* ``load_channel_kinds``: every entry point of the group is loaded; the entry point name must equal
  the class's ``kind``; the class must be a ``Channel`` with a ``ChannelConfig`` model. A kind
  registered twice (two distributions, or two entry points) is an error naming both; a broken entry
  point is an error naming it. Nothing is skipped silently: a missing kind would silently lose pages.
* ``build_channels``: each spec is ``{"kind": ..., **config}``. Every problem of every channel is
  collected into one ``ChannelConfigError``: unknown kind (listing the known kinds), config
  validation errors (field and rule, never the input value), unresolvable secrets.

Built-in kinds are registered in this project's pyproject.toml like any third-party kind.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from worker.channels.base import Channel, ChannelConfig, ConfigurationError

GROUP = "crs_alert.channels"


class RegistryError(RuntimeError):
    """The installed channel kinds are inconsistent (duplicate, broken or invalid entry point)."""


class ChannelConfigError(ValueError):
    """One or more configured channels are invalid; ``errors`` lists every problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid channel configuration:\n  " + "\n  ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class KindInfo:
    kind: str
    cls: type[Channel]
    target: str  # "module:attr"
    distribution: str  # "name version"


def _dist(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"


def describe_channel_kinds(
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> dict[str, KindInfo]:
    """Like ``load_channel_kinds`` with the distribution of each kind (for ``channels list``)."""
    eps = list(importlib.metadata.entry_points(group=GROUP) if entry_points is None else entry_points)
    found: dict[str, KindInfo] = {}
    errors = []
    for ep in eps:
        where = f"entry point {ep.name!r} = {ep.value!r} of {_dist(ep)}"
        if ep.name in found:
            errors.append(
                f"channel kind {ep.name!r} is registered twice: by {found[ep.name].distribution} "
                f"({found[ep.name].target}) and by {_dist(ep)} ({ep.value}); uninstall one"
            )
            continue
        try:
            cls = ep.load()
        except Exception as exc:  # noqa: BLE001 - report which plugin is broken, whatever the error
            errors.append(f"{where} cannot be loaded: {type(exc).__name__}: {exc}")
            continue
        problem = _check(ep.name, cls)
        if problem:
            errors.append(f"{where}: {problem}")
            continue
        found[ep.name] = KindInfo(ep.name, cls, ep.value, _dist(ep))
    if errors:
        raise RegistryError("; ".join(errors))
    return found


def load_channel_kinds(
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> dict[str, type[Channel]]:
    """kind -> Channel class from the ``crs_alert.channels`` entry points (see the module rules)."""
    return {kind: info.cls for kind, info in describe_channel_kinds(entry_points).items()}


def _check(name: str, cls: Any) -> str | None:
    if not (isinstance(cls, type) and issubclass(cls, Channel)):
        return "is not a subclass of worker.channels.base.Channel"
    if getattr(cls, "kind", None) != name:
        return f"the class's kind is {getattr(cls, 'kind', None)!r}, not the entry point name {name!r}"
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and issubclass(config, ChannelConfig)):
        return "Config is not a worker.channels.base.ChannelConfig model"
    if config.model_config.get("extra") != "forbid":
        return "Config must forbid unknown fields (extra='forbid')"
    return None


def format_validation_error(exc: ValidationError) -> list[str]:
    """Field and rule of each error; never the input (it may be a pasted secret)."""
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(config)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (secrets go in *_env or *_file, never inline)"
        out.append(f"{loc}: {msg}")
    return out


def validate_channel_specs(
    specs: Mapping[str, Mapping[str, Any]], kinds: Mapping[str, type[Channel]] | None = None
) -> dict[str, tuple[type[Channel], ChannelConfig]]:
    """Validate every spec (kind and config model) without resolving secrets."""
    kinds = load_channel_kinds() if kinds is None else kinds
    errors: list[str] = []
    out: dict[str, tuple[type[Channel], ChannelConfig]] = {}
    for name, spec in specs.items():
        if not isinstance(spec, Mapping):
            errors.append(f"channel {name!r}: must be a mapping with a 'kind'")
            continue
        fields = dict(spec)
        kind = fields.pop("kind", None)
        if kind is None:
            errors.append(f"channel {name!r}: kind is required (known kinds: {', '.join(sorted(kinds))})")
            continue
        cls = kinds.get(kind)
        if cls is None:
            errors.append(f"channel {name!r}: unknown kind {kind!r} (known kinds: {', '.join(sorted(kinds))})")
            continue
        try:
            config = cls.Config.model_validate(fields)
        except ValidationError as exc:
            errors.extend(f"channel {name!r} ({kind}): {line}" for line in format_validation_error(exc))
            continue
        out[name] = (cls, config)
    if errors:
        raise ChannelConfigError(errors)
    return out


def build_channels(
    specs: Mapping[str, Mapping[str, Any]], kinds: Mapping[str, type[Channel]] | None = None
) -> dict[str, Channel]:
    """name -> built Channel (secrets resolved). Raises ``ChannelConfigError`` listing every problem."""
    validated = validate_channel_specs(specs, kinds)
    errors: list[str] = []
    channels: dict[str, Channel] = {}
    for name, (cls, config) in validated.items():
        try:
            channels[name] = cls(name, config)
        except ConfigurationError as exc:
            errors.append(f"channel {name!r} ({cls.kind}): {exc}")
    if errors:
        for channel in channels.values():
            channel.close()
        raise ChannelConfigError(errors)
    return channels
