"""`crs-alert channels list|test`: the installed channel kinds and the configured channels.

* ``channels list [--config PATH]``: every kind with its distribution, then every configured
  channel with its kind and settings. Secrets are never shown (the config only names their
  variables or files; the listing says whether each variable is set); query-string values of URLs
  are masked (``***``), since some providers put tokens there.
* ``channels test NAME [--config PATH] [--to ADDRESS]``: builds channel NAME (resolving its
  secrets), sends a test message (event ``test``, patient reference ``TEST``) and prints the receipt
  or the classified error. ``--to``: the recipient, as a contact's ``to`` in the rules (E.164 for
  SMS, an e-mail address for e-mail); omit it for fixed-target channels (webhook, PagerDuty, chat).

``--config`` defaults to $CRS_CHANNELS_PATH, else config/channels.yaml (``list`` shows only the
kinds when neither is given and that file does not exist).

Config format (YAML, read with ruamel.yaml's safe loader; duplicate keys are errors; see
worker/channels/config_file.py)::

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
from urllib.parse import urlsplit, urlunsplit

from worker.commands._common import CommandError, fail


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "channels",
        help="list channel kinds and configured channels; send a test message",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    csub = p.add_subparsers(dest="channels_command", metavar="SUBCOMMAND", required=True)
    config_help = f"channels config file (YAML; default: $CRS_CHANNELS_PATH or {DEFAULT_CONFIG})"
    lp = csub.add_parser("list", help="installed kinds and configured channels (secrets masked)")
    lp.add_argument("--config", metavar="PATH", help=config_help)
    lp.set_defaults(func=run_list)
    tp = csub.add_parser("test", help="send a test message through one configured channel")
    tp.add_argument("name", metavar="NAME", help="channel name in the config file")
    tp.add_argument("--config", metavar="PATH", help=config_help)
    tp.add_argument("--to", metavar="ADDRESS", default="",
                    help="recipient: E.164 for SMS, an e-mail address for e-mail; omit for webhook, PagerDuty, chat")
    tp.set_defaults(func=run_test)


DEFAULT_CONFIG = "config/channels.yaml"


def config_path(given: str | None) -> tuple[str, bool]:
    """(the channels file to use, whether it was named: --config or $CRS_CHANNELS_PATH)."""
    named = given or os.environ.get("CRS_CHANNELS_PATH")
    return (named, True) if named else (DEFAULT_CONFIG, False)


def load_config(path: str):  # type: ignore[no-untyped-def]
    """The channels file (worker.channels.config_file); CommandError listing every problem."""
    from worker.channels.config_file import ChannelsFileError, load_channels_file

    try:
        return load_channels_file(path)
    except ChannelsFileError as exc:
        raise CommandError(str(exc)) from None


def mask_url(value: str) -> str:
    """``value`` with every query-string value replaced by ``***`` (providers put tokens there)."""
    parts = urlsplit(value)
    if not parts.query:
        return value
    query = "&".join(f"{pair.split('=', 1)[0]}=***" if "=" in pair else "***" for pair in parts.query.split("&"))
    return urlunsplit(parts._replace(query=query))


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
        elif isinstance(value, str) and value.startswith(("http://", "https://")):
            lines.append(f"{key}: {mask_url(value)}")
        else:
            lines.append(f"{key}: {value}")
    return lines


def run_list(args: argparse.Namespace) -> int:
    from worker.channels.registry import RegistryError, describe_channel_kinds

    try:
        infos = describe_channel_kinds()
    except RegistryError as exc:
        return fail(CommandError(str(exc)))
    print("kinds:")
    for kind, info in sorted(infos.items()):
        field = info.cls.Config.model_fields.get("secure")
        secure = "secure by default" if (field.default if field else info.cls.secure) else "not secure"
        print(f"  {kind:<12} {info.target}  ({info.distribution}; {secure})")
    path, named = config_path(args.config)
    if not named and not os.path.exists(path):
        print(f"no channels file ({DEFAULT_CONFIG} does not exist; give --config or set CRS_CHANNELS_PATH)",
              file=sys.stderr)
        return 0
    try:
        validated = load_config(path).valid
    except CommandError as exc:
        return fail(exc)
    print(f"channels ({path}):")
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

    path, _ = config_path(args.config)
    try:
        loaded = load_config(path)
        if args.name not in loaded.specs:
            raise CommandError(f"no channel {args.name!r} in {path} (configured: {', '.join(sorted(loaded.specs))})")
        problem = loaded.valid[args.name][0].address_problem(args.to)
        if problem:  # the contact rule of the kind (never quoting the address)
            raise CommandError(f"--to: {problem} (channel {args.name!r})")
        channel = build_channels({args.name: loaded.specs[args.name]})[args.name]
    except CommandError as exc:
        return fail(exc)
    except (ChannelConfigError, RegistryError) as exc:
        return fail(CommandError(str(exc)))
    content = sample_content()
    rendered = render(content, channel.kind, channel.secure, channel.max_length, None, replies=channel.accepts_replies)
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
