"""The HTTP transport of every HTTP channel: one ``requests.Session``, explicit timeouts, and the
mapping of transport failures to outcomes.

* Connect failures (refused, DNS, connect timeout) happen before the request leaves: RETRYABLE.
  urllib3 retries them twice at once (``Retry(connect=2, read=0, status=0, other=0)``), which is safe
  for POST because nothing was sent; everything else is left to the outbox's backoff.
* A read timeout, or the connection dropping after the request was written: AMBIGUOUS.
* Redirects are not followed (a redirect of a POST would resend it; a moved endpoint is a
  configuration problem): 3xx is PERMANENT through ``classify_http``.
* Error messages carry exception *type names* only: requests' messages contain the URL, and chat
  webhook URLs are secrets.
"""

from __future__ import annotations

from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.retry import Retry

from worker.channels.base import DeliveryError, HttpConfig, Outcome, Refinement, classify_http

USER_AGENT = "crs-alert"
_BEFORE_SEND = (NewConnectionError, NameResolutionError, ConnectTimeoutError)


class HttpClient:
    """A session with connect-only retries and no cookies. Concurrent ``post`` calls from several
    threads are fine: the urllib3 pool is thread-safe and the session keeps no per-call state
    (no cookies, fixed headers). Do not share one across ``fork()``: build channels in each process."""

    def __init__(self, provider: str, config: HttpConfig) -> None:
        self.provider = provider
        self.timeout = (config.connect_timeout_s, config.read_timeout_s)
        self.session = requests.Session()
        # No proxies, CA bundles or .netrc credentials from the environment: the config says it all.
        self.session.trust_env = False
        if config.proxy:
            self.session.proxies = {"http": config.proxy, "https": config.proxy}
        if config.ca_file:
            self.session.verify = str(config.ca_file)
        # No cookies: one message's response must not change how the next one is sent.
        self.session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        retry = Retry(total=None, connect=2, read=0, status=0, other=0, redirect=0, backoff_factor=0)
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = USER_AGENT

    def post(
        self,
        url: str,
        *,
        method: str = "POST",
        refine: Refinement | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send; return the 2xx response or raise ``DeliveryError`` (see the module rules)."""
        try:
            response = self.session.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
        except requests.ConnectTimeout:
            raise DeliveryError(f"{self.provider}: connect timeout", Outcome.RETRYABLE) from None
        except requests.ReadTimeout:
            raise DeliveryError(
                f"{self.provider}: no response within {self.timeout[1]} s after sending", Outcome.AMBIGUOUS
            ) from None
        except requests.exceptions.SSLError as exc:
            verify_failed = "CERTIFICATE_VERIFY_FAILED" in str(exc)
            raise DeliveryError(
                f"{self.provider}: TLS " + ("certificate verification failed" if verify_failed else "handshake failed"),
                Outcome.PERMANENT if verify_failed else Outcome.RETRYABLE,
            ) from None
        except requests.ConnectionError as exc:
            reason = _root_reason(exc)
            if isinstance(reason, _BEFORE_SEND):
                raise DeliveryError(
                    f"{self.provider}: cannot connect ({type(reason).__name__})", Outcome.RETRYABLE
                ) from None
            raise DeliveryError(
                f"{self.provider}: connection lost after sending ({type(reason).__name__})", Outcome.AMBIGUOUS
            ) from None
        except requests.exceptions.ChunkedEncodingError:
            raise DeliveryError(f"{self.provider}: response cut off", Outcome.AMBIGUOUS) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema):
            raise DeliveryError(f"{self.provider}: invalid URL", Outcome.PERMANENT) from None
        except (requests.exceptions.InvalidJSONError, TypeError, ValueError) as exc:  # raised while preparing
            raise DeliveryError(
                f"{self.provider}: request body cannot be encoded ({type(exc).__name__})", Outcome.PERMANENT
            ) from None
        except requests.RequestException as exc:
            raise DeliveryError(f"{self.provider}: {type(exc).__name__}", Outcome.AMBIGUOUS) from None
        classify_http(
            response.status_code,
            response.text[:4000],
            response.headers.get("Retry-After"),
            provider=self.provider,
            refine=refine,
        )
        return response

    def close(self) -> None:
        self.session.close()


def _root_reason(exc: BaseException) -> BaseException:
    """The innermost urllib3 reason of a requests ConnectionError (MaxRetryError.reason, __context__)."""
    seen = exc.args[0] if exc.args else exc
    for _ in range(5):
        reason = getattr(seen, "reason", None)
        if isinstance(reason, BaseException):
            seen = reason
            continue
        break
    return seen
