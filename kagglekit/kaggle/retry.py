"""Transient failures talking to Kaggle, retried a bounded number of times: a 429 (rate limited) after the server's
`Retry-After`, a dropped connection or a 502/503/504 after an exponential back-off.

Only requests that are safe to repeat are retried on a dropped connection: one that creates something (a
submission) may have arrived, so it is retried only when Kaggle answered that it did not take it (429).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

ATTEMPTS = 5  # tries in all, the first included
MAX_WAIT = 300.0  # seconds: a longer Retry-After is cut to this
BACKOFF = 2.0  # seconds before the second try without a Retry-After; doubled for each further one
RATE_LIMITED = 429
UNAVAILABLE = (502, 503, 504)


def _status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def retry_after(error: BaseException) -> float | None:
    """The seconds the server's `Retry-After` header asks for (a number of seconds or an HTTP date), or None."""
    response = getattr(error, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def transient(error: BaseException, repeatable: bool = True) -> str | None:
    """Why `error` is worth another try ("rate limited", "dropped connection", ...), or None. `repeatable`: the
    request may be sent again even if it was received (reads); otherwise only a 429 qualifies."""
    from requests import ConnectionError, HTTPError, Timeout
    from urllib3.exceptions import ProtocolError

    status = _status(error)
    if isinstance(error, HTTPError) and status == RATE_LIMITED:
        return "rate limited (429)"
    if not repeatable:
        return None
    if isinstance(error, HTTPError) and status in UNAVAILABLE:
        return f"unavailable ({status})"
    if isinstance(error, (ConnectionError, Timeout, ProtocolError)):
        return f"dropped connection ({type(error).__name__})"
    return None


def retrying(call: Callable[[], T], what: str, *, repeatable: bool = True, attempts: int = ATTEMPTS) -> T:
    """`call()`, tried again after each transient failure (see `transient`) up to `attempts` tries in all, waiting
    the server's Retry-After (at most `MAX_WAIT` seconds) or a doubling back-off; the last failure is raised."""
    attempt = 1
    while True:
        try:
            return call()
        except Exception as error:
            reason = transient(error, repeatable)
            if reason is None or attempt >= attempts:
                raise
            asked = retry_after(error)
            wait = min(MAX_WAIT, BACKOFF * 2 ** (attempt - 1) if asked is None else asked)
            log.warning("Kaggle: %s while trying to %s; trying again in %.0f s (%d of %d tries left)", reason, what,
                        wait, attempts - attempt, attempts)  # fmt: skip
            time.sleep(wait)
            attempt += 1
