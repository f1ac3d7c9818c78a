"""AgentClient: one aiohttp ClientSession per process, posting deliveries and returning validated verdicts."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import aiohttp
from pydantic import SecretStr

from .protocol import IDEMPOTENCY_HEADER, Delivery, InvalidVerdict, Verdict, parse_verdict

MAX_RESPONSE_BYTES = 1 << 20


class AgentError(Exception):
    """A delivery did not produce a verdict; the message says why in one line, fit for `last_error`."""


class AgentClient:
    """Posts events to the agent over keep-alive connections, as many at once as there are workers."""

    def __init__(self, url: str, *, workers: int, timeout_seconds: float, token: SecretStr | None = None) -> None:
        self.url = url
        self._workers = workers
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._headers = {"Content-Type": "application/json"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        # ThreadedResolver only calls loop.getaddrinfo, which ThreadFreeEventLoop answers without threads;
        # naming it keeps aiohttp from picking aiodns (a C thread) when that happens to be installed.
        connector = aiohttp.TCPConnector(limit=self._workers, resolver=aiohttp.ThreadedResolver())
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, raise_for_status=False)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def analyse(self, delivery: Delivery) -> tuple[Verdict, dict[str, Any]]:
        """POST one event; the verdict and its raw JSON, or AgentError."""
        assert self._session is not None, "AgentClient used outside `async with`"
        headers = self._headers | {IDEMPOTENCY_HEADER: str(delivery.uid)}
        try:
            async with self._session.post(self.url, data=delivery.body, headers=headers) as response:
                body = await response.content.read(MAX_RESPONSE_BYTES + 1)
                if len(body) > MAX_RESPONSE_BYTES:
                    raise AgentError(f"agent response larger than {MAX_RESPONSE_BYTES} bytes")
                if response.status != 200:
                    snippet = body[:200].decode(errors="replace").strip().replace("\n", " ")
                    raise AgentError(f"agent answered HTTP {response.status}: {snippet}")
                return parse_verdict(body)
        except InvalidVerdict as exc:
            raise AgentError(str(exc)) from None
        except TimeoutError:
            raise AgentError(f"agent did not answer within {self._timeout.total:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise AgentError(f"agent unreachable: {exc or type(exc).__name__}") from None
