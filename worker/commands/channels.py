"""`crs-alert channels list|test`: the installed channel kinds and the configured channels.

* ``channels list [--config PATH]``: every kind with its distribution; with ``--config``, every
  configured channel with its kind and settings. Secrets are never shown (the config only names
  their variables or files; the listing says whether each variable is set).
* ``channels test NAME --config PATH [--to ADDRESS]``: builds channel NAME (resolving its secrets),
  sends a test message (event ``test``, patient reference ``TEST``) and prints the receipt or the
  classified error.

Config format (YAML, read with ruamel.yaml's safe loader; duplicate keys are errors)::

    channels:
      oncall-sms: {kind: twilio_sms, account_sid: AC..., auth_token_env: TWILIO_AUTH_TOKEN, ...}

Exit status: 0 success; 1 the test send failed; 2 configuration or usage error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import uuid
from typing import Any

from worker.commands._common import CommandError, fail


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "channels",
        help="list channel kinds and configured channels; send a test message",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    csub = p.add_subparsers(dest="channels_command", metavar="SUBCOMMAND", required=True)
    lp = csub.add_parser("list", help="installed kinds and configured channels (secrets masked)")
    lp.add_argument("--config", metavar="PATH", help="channels config file (YAML)")
    lp.set_defaults(func=run_list)
    tp = csub.add_parser("test", help="send a test message through one configured channel")
    tp.add_argument("name", metavar="NAME", help="channel name in the config file")
    tp.add_argument("--config", metavar="PATH", required=True, help="channels config file (YAML)")
    tp.add_argument("--to", metavar="ADDRESS", default="", help="recipient (e-mail or E.164); empty for webhooks")
    tp.set_defaults(func=run_test)


def load_config(path: str) -> dict[str, dict[str, Any]]:
    """``channels`` mapping of a YAML file; CommandError naming the file and the problem."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        with open(path, encoding="utf-8") as fh:
            data = YAML(typ="safe", pure=True).load(fh)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    except YAMLError as exc:
        raise CommandError(f"{path}: invalid YAML: {' '.join(str(exc).split())[:300]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("channels"), dict):
        raise CommandError(f"{path}: expected a mapping with a 'channels' mapping of NAME: {{kind: ...}}")
    unknown = sorted(set(data) - {"channels"})
    if unknown:
        raise CommandError(f"{path}: unknown top-level keys {unknown} (only 'channels')")
    return data["channels"]


def _describe(config: Any) -> list[str]:
    """One line per set field; *_env fields say whether the variable is set, never its value."""
    lines = []
    for key, value in config.model_dump(mode="json", exclude_defaults=False).items():
        if value is None or value == {}:
            continue
        if key.endswith("_env"):
            state = "set" if os.environ.get(str(value)) else "NOT SET"
            lines.append(f"{key}: {value} ({state})")
        elif key.endswith("_file"):
            state = "readable" if os.access(str(value), os.R_OK) else "NOT READABLE"
            lines.append(f"{key}: {value} ({state})")
        else:
            lines.append(f"{key}: {value}")
    return lines


def run_list(args: argparse.Namespace) -> int:
    from worker.channels.registry import ChannelConfigError, RegistryError, describe_channel_kinds, validate_channel_specs

    try:
        infos = describe_channel_kinds()
    except RegistryError as exc:
        return fail(CommandError(str(exc)))
    print("kinds:")
    for kind, info in sorted(infos.items()):
        field = info.cls.Config.model_fields.get("secure")
        secure = "secure by default" if (field.default if field else info.cls.secure) else "not secure"
        print(f"  {kind:<12} {info.target}  ({info.distribution}; {secure})")
    if not args.config:
        return 0
    try:
        validated = validate_channel_specs(load_config(args.config), {k: i.cls for k, i in infos.items()})
    except CommandError as exc:
        return fail(exc)
    except ChannelConfigError as exc:
        return fail(CommandError(str(exc)))
    print(f"channels ({args.config}):")
    for name, (cls, config) in validated.items():
        print(f"  {name} ({cls.kind})")
        for line in _describe(config):
            print(f"    {line}")
    return 0


def sample_content(event: str = "test"):  # type: ignore[no-untyped-def]
    from worker.messages import AlertContent

    return AlertContent(
        alert_id=0,
        alert_code="TEST",
        patient_ref="TEST",
        unit=None,
        condition="clinical",
        event=event,
        urgency="routine",
        crs_grade=0,
        crs_grade_is_minimum=False,
        icans_grade=0,
        icans_floor=0,
        news2=0,
        red_flags=(),
        reasons=("Test message from crs-alert: no patient is involved.",),
        advice="No action needed: this is a test of the delivery channel.",
        vitals={},
        recorded_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        ack_url=None,
        step=0,
        repeat=0,
        reference=f"test-{uuid.uuid4().hex[:12]}",
    )


def run_test(args: argparse.Namespace) -> int:
    from worker.channels.base import DeliveryError, OutboundMessage
    from worker.channels.registry import ChannelConfigError, RegistryError, build_channels
    from worker.messages import render

    try:
        specs = load_config(args.config)
        if args.name not in specs:
            raise CommandError(f"no channel {args.name!r} in {args.config} (configured: {', '.join(sorted(specs))})")
        channel = build_channels({args.name: specs[args.name]})[args.name]
    except CommandError as exc:
        return fail(exc)
    except (ChannelConfigError, RegistryError) as exc:
        return fail(CommandError(str(exc)))
    content = sample_content()
    rendered = render(content, channel.kind, channel.secure, channel.max_length, None)
    message = OutboundMessage(
        reference=content.reference,
        alert_id=content.alert_id,
        alert_code=content.alert_code,
        urgency=content.urgency,
        to=args.to,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        payload=rendered.payload,
        dedup_key=content.reference,
        event="test",
    )
    try:
        receipt = channel.send(message)
    except DeliveryError as exc:
        extra = "".join(
            f" {k}={v}" for k, v in (("status", exc.status), ("retry_after", exc.retry_after)) if v is not None
        )
        print(f"{args.name}: FAILED ({exc.outcome.value}){extra}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        channel.close()
    print(f"{args.name}: sent reference={message.reference} provider_id={receipt.provider_id} {receipt.detail}".rstrip())
    return 0
