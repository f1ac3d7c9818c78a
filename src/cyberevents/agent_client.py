"""AgentClient: one aiohttp ClientSession per process, posting deliveries and returning validated verdicts.

Transient failures (no connection, a timeout, 429 with its Retry-After, 502 / 503 / 504) are retried with
exponential backoff and jitter by stamina; permanent ones (any other status, a body that is not a verdict or
is too large) are not: retrying would get the same answer.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Self

import aiohttp
import stamina
from pydantic import SecretStr

from .protocol import IDEMPOTENCY_HEADER, VERSION_HEADER, Delivery, InvalidVerdict, Verdict, parse_verdict
from .redaction import Redactor

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 1 << 20
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
# The longest agent version kept: a label, not a document.
MAX_VERSION = 64
MAX_RETRY_AFTER = 60.0
MAX_BACKOFF = 30.0


class AgentError(Exception):
    """A delivery did not produce a verdict; the message says why in one line, fit for `last_error`."""

    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after
        self.attempts = 1


@dataclass(frozen=True, slots=True)
class Answer:
    verdict: Verdict
    raw: str  # the response's JSON text, as received
    attempts: int


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds, 0 or more: a number of seconds or an HTTP date; None if absent or unreadable. Never
    NaN or infinite: one such wait in the loop's timer heap stops every other timer. AgentClient caps it."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    """The whole body, refused as soon as it grows past MAX_RESPONSE_BYTES."""
    too_large = AgentError(f"agent response larger than {MAX_RESPONSE_BYTES} bytes", transient=False)
    if (response.content_length or 0) > MAX_RESPONSE_BYTES:
        raise too_large
    if response.content_length is not None and "Content-Encoding" not in response.headers:
        return await response.read()  # no more than the length announced, as sent: one read, no loop
    body = bytearray()  # chunked, or compressed: only its inflated size counts
    async for chunk in response.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise too_large
    return bytes(body)


class AgentClient:
    """Posts events to the agent over keep-alive connections, as many at once as there are workers."""

    def __init__(
        self,
        url: str,
        *,
        workers: int,
        timeout_seconds: float,
        token: SecretStr | None = None,
        max_retries: int = 0,
        backoff_seconds: float = 0.5,
        verify_tls: bool = True,
        max_retry_after: float = MAX_RETRY_AFTER,
        redact: Redactor | None = None,
        observe: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self._workers = workers
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._headers = {"Content-Type": "application/json"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        self._attempts, self._backoff_seconds = max_retries + 1, backoff_seconds
        self._verify_tls = verify_tls
        self._max_retry_after = max_retry_after
        self._redact = redact or Redactor(())
        self._observe = observe or (lambda status_class: None)  # each request's end: 2xx … 5xx, timeout, unreachable
        if not verify_tls and url.startswith("https:"):
            log.warning("AGENT_TLS_VERIFY=false: the agent's certificate is NOT verified (%s)", url)
        self._session: aiohttp.ClientSession | None = None
        self.version: str | None = None  # what the agent last said it is (VERSION_HEADER), cleaned
        self._reported: str | None = None  # that header as sent: cleaned again only when it changes

    async def __aenter__(self) -> Self:
        # ThreadedResolver only calls loop.getaddrinfo, which ThreadFreeEventLoop answers without threads;
        # naming it keeps aiohttp from picking aiodns (a C thread) when that happens to be installed.
        connector = aiohttp.TCPConnector(limit=self._workers, resolver=aiohttp.ThreadedResolver(), ssl=self._verify_tls)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, raise_for_status=False)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def analyse(self, delivery: Delivery) -> Answer:
        """POST one event, retrying transient failures; the verdict, or AgentError carrying the attempts made.

        The first attempt runs outside stamina: setting up a retry context costs more CPU than the request
        itself, and nearly every request succeeds at once. A transient failure is then replayed as stamina's
        first attempt, so that its backoff (or the agent's Retry-After) comes before the second request.
        """
        try:
            return Answer(*await self._post(delivery), attempts=1)
        except AgentError as exc:
            if not exc.transient or self._attempts == 1:
                raise
            first_failure: AgentError | None = exc
        attempts = 1
        try:
            async for attempt in stamina.retry_context(
                on=self._backoff,
                attempts=self._attempts,
                timeout=None,
                wait_initial=self._backoff_seconds,
                wait_max=MAX_BACKOFF,
                wait_jitter=self._backoff_seconds,
            ):
                with attempt:
                    if first_failure is not None:
                        failure, first_failure = first_failure, None
                        raise failure
                    attempts += 1
                    verdict, raw = await self._post(delivery)
        except AgentError as exc:
            exc.attempts = attempts
            raise
        return Answer(verdict, raw, attempts)

    def _backoff(self, exc: Exception) -> bool | float:
        """stamina's hook: retry transient failures, after the agent's Retry-After (capped) when it gave one."""
        if not isinstance(exc, AgentError) or not exc.transient:
            return False
        return min(exc.retry_after, self._max_retry_after) if exc.retry_after is not None else True

    async def _post(self, delivery: Delivery) -> tuple[Verdict, str]:
        """One request; whatever the agent sends back, a verdict or an AgentError for this event alone."""
        assert self._session is not None, "AgentClient used outside `async with`"
        headers = self._headers | {IDEMPOTENCY_HEADER: str(delivery.uid)}
        ended: str | None = "unreachable"  # how the request ended, counted once: its status class once headers are in
        try:
            # No redirects: followed, a 303 turns the POST into a bodiless GET, and the verdict of whatever server it
            # lands on would be stored for an event that server never saw; a 307 sends the event to any host named.
            async with self._session.post(
                self.url, data=delivery.body, headers=headers, allow_redirects=False
            ) as response:
                ended = f"{response.status // 100}xx"
                body = await _read_capped(response)
                if response.status != 200:
                    raise _refusal(response, body, self._redact)
                verdict = parse_verdict(body)
                if (reported := response.headers.get(VERSION_HEADER)) is not None and reported != self._reported:
                    # Cleaned first: a control character inside a secret would hide it from the redactor.
                    self._reported, self.version = reported, self._redact(_one_line(reported))[:MAX_VERSION] or None
                return verdict
        except InvalidVerdict as exc:
            raise AgentError(str(exc), transient=False) from None
        except TimeoutError:
            ended = "timeout"
            raise AgentError(f"agent did not answer within {self._timeout.total:g}s", transient=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise AgentError(f"agent unreachable: {exc or type(exc).__name__}", transient=True) from None
        except AgentError:
            raise
        except asyncio.CancelledError:
            ended = None  # cut short by this process, not ended by the agent: not counted
            raise
        except Exception as exc:  # a response no rule above foresaw is still this event's failure, not the cycle's
            log.debug("Unreadable agent response", exc_info=True)
            raise AgentError(f"agent response unreadable: {type(exc).__name__}: {exc}", transient=False) from None
        finally:
            if ended is not None:
                self._observe(ended)


def _one_line(text: str) -> str:
    """Printable text only: a header is the agent's to fill, and this one is printed and logged."""
    return "".join(char for char in text if char.isprintable()).strip()


def _refusal(response: aiohttp.ClientResponse, body: bytes, redact: Redactor) -> AgentError:
    """Any status but 200 is a failed delivery; the message shows the start of the body, or where a redirect led,
    redacted before it is cut short (a secret cut in two would no longer be recognised)."""
    if 300 <= response.status < 400:
        location = redact(response.headers.get("Location", "no Location"))[:200]
        detail = f"redirect to {location} (the protocol takes no redirects)"
    else:
        detail = redact(body[:4096].decode(errors="replace"))[:200].strip().replace("\n", " ")
    return AgentError(
        f"agent answered HTTP {response.status}: {detail}",
        transient=response.status in RETRIED_STATUSES,
        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
    )
