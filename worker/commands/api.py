"""`crs-alert api`: the HTTP service (ack links, SMS replies and delivery reports, EHR API, /healthz, /metrics), on waitress."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import TYPE_CHECKING

from worker.commands._common import CommandError, check_channels_file, configure_logging, fail, settings, store

if TYPE_CHECKING:
    from worker.channels.sms_gateway import StatusCallback


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("api", help="serve acknowledgement links, SMS replies and delivery reports, the EHR API, "
                                   "/healthz and /metrics")
    p.add_argument("--host", default=None, help="bind address (default: $CRS_API_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: $CRS_API_PORT or 8080)")
    p.add_argument("--threads", type=int, default=8)
    p.set_defaults(func=run)


def build_app(s):  # type: ignore[no-untyped-def]
    """The Flask app for settings ``s``; CommandError when the acknowledgement secret is missing."""
    from worker.api import ApiConfig, create_app, parse_api_tokens
    from worker.metrics import render_latest
    from worker.store.db import session_factory

    if s.ack_secret is None:
        raise CommandError("CRS_ACK_SECRET is required for the API (at least 32 random characters): it signs ack links")
    try:
        tokens = parse_api_tokens(s.api_tokens.get_secret_value() if s.api_tokens else "")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    config = ApiConfig(
        ack_secret=s.ack_secret.get_secret_value(),
        ack_max_age=dt.timedelta(seconds=s.ack_link_max_age_s),
        api_tokens=tokens,
        public_url=s.public_url,
        twilio_auth_token=s.twilio_auth_token.get_secret_value() if s.twilio_auth_token else None,
        sms_gateways=gateway_status_callbacks(s.channels_path),
    )
    return create_app(session_factory(store(s)), config, metrics=render_latest)


def gateway_status_callbacks(path: str | None) -> dict[str, StatusCallback | str]:
    """http_sms channel name -> its delivery-report settings, or the problem that makes them unusable
    (logged; that channel's reports get 503, the rest of the API serves). Channels without a status
    secret have none. A channels file that cannot be read leaves no channel with reports (the worker
    reports that file itself: `crs-alert health --component delivery`)."""
    import os

    from worker.channels.base import ConfigurationError
    from worker.channels.config_file import read_channels_file
    from worker.channels.sms_gateway import HttpSmsChannel, HttpSmsConfig, status_callback
    from worker.logs import get_logger

    if not path or not os.path.exists(path):
        return {}
    loaded = read_channels_file(path)
    out: dict[str, StatusCallback | str] = {}
    for name, spec in loaded.specs.items():
        if spec.get("kind") != HttpSmsChannel.kind:
            continue
        try:
            if name not in loaded.valid:
                raise ConfigurationError("; ".join(loaded.problems.get(name, ["invalid"])))
            config = loaded.valid[name][1]
            assert isinstance(config, HttpSmsConfig)
            found: StatusCallback | str | None = status_callback(name, config)
        except ConfigurationError as exc:
            problem = str(exc)
            get_logger(__name__).error("status_callback_unusable", channel=name, reason=problem)
            found = problem
        if found is not None:
            out[name] = found
    return out


def run(args: argparse.Namespace) -> int:
    import waitress

    from worker.settings import check_host

    try:
        s = settings()
        host = args.host or s.api_host
        port = args.port or s.api_port
        try:
            check_host(host)
        except ValueError as exc:
            raise CommandError(f"--host {host!r}: {exc}") from None
        configure_logging(s)
        check_channels_file(s)  # the gateway delivery reports are read from it: refuse a broken file at start
        app = build_app(s)
        try:  # binds now: a bad address or a port in use is an operator's error, not a traceback
            server = waitress.create_server(app, host=host, port=port, threads=args.threads, ident="crs-alert")
        except (OSError, ValueError, OverflowError) as exc:
            raise CommandError(f"cannot listen on {host}:{port} (--host/--port, CRS_API_HOST/CRS_API_PORT): "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
    except CommandError as exc:
        return fail(exc)
    print(f"crs-alert api listening on http://{host}:{port}", flush=True)
    server.run()
    return 0
