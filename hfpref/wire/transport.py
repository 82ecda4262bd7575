"""The seam under the client: a transport takes one chat-completions request and returns the answer's
JSON (a dict with a non-empty ``choices`` list), or raises the :class:`~hfpref.errors.ProviderError`
the failure stands for.

As with httpx's transports, everything above the seam (cache, limits, retries, budget, records) is the
same whoever answers:

* :class:`HTTPTransport`: aiohttp to an OpenAI-compatible endpoint;
* :class:`hfpref.wire.local.LocalTransport`: the ``local:`` models, in-process with transformers;
* anything else with the two methods of :class:`Transport`, passed as ``ChatClient(transport=...)``
  (a test's fake endpoint, say, as with httpx's ``MockTransport``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson

from hfpref.config import ProviderConfig
from hfpref.errors import EndpointUnreachable
from hfpref.wire.failures import TRANSPORT_ERRORS, ConnectionRefused, json_or_raise, transport_error

SessionFactory = Callable[[ProviderConfig, int], aiohttp.ClientSession]
UNREACHABLE_AFTER_S = 3.0  # connections refused for this long, with no answer ever: the endpoint is down


@dataclass(frozen=True, slots=True)
class Request:
    """One chat-completions request: ``body`` is its JSON, already encoded."""

    model: str
    url: str
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    async def send(self, request: Request) -> dict[str, Any]:
        """The answer's JSON, with choices; or raise a :class:`~hfpref.errors.ProviderError`."""
        ...

    async def aclose(self) -> None:
        """Close what the running event loop holds (called when its last user of the client leaves)."""
        ...


def default_session(provider: ProviderConfig, concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(
        total=provider.timeout_s,
        sock_connect=provider.connect_timeout_s,
        sock_read=provider.read_timeout_s,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"Content-Type": "application/json", "X-Title": "hfpref"},
        json_serialize=lambda obj: orjson.dumps(obj).decode(),
    )


@dataclass
class _Endpoint:
    """Whether an endpoint ever answered, and since when every connection to it has been refused."""

    answered: bool = False
    refused_since: float | None = None


class HTTPTransport:
    """POSTs requests with aiohttp: one session per event loop (``datasets.map`` runs each call on a
    new one), opened on the loop's first request. Failures are mapped by :mod:`hfpref.wire.failures`;
    an endpoint that refused every connection for ``UNREACHABLE_AFTER_S`` seconds and never answered is
    given up on (:class:`~hfpref.errors.EndpointUnreachable`)."""

    def __init__(
        self,
        provider: ProviderConfig,
        concurrency: int,
        *,
        session_factory: SessionFactory = default_session,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.concurrency = concurrency
        self.session_factory = session_factory
        self.clock = clock
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._endpoints: dict[str, _Endpoint] = {}
        self._answered: set[str] = set()  # urls that answered once (checked first: the common case)

    async def send(self, request: Request) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None:
            session = self._sessions[loop] = self.session_factory(self.provider, self.concurrency)
        try:
            async with session.post(request.url, data=request.body, headers=request.headers) as resp:
                raw = await resp.read()
                status, headers = resp.status, resp.headers
        except TRANSPORT_ERRORS as exc:
            error = transport_error(exc, request.model)
            if isinstance(error, ConnectionRefused):
                self.check_reachable(request.url, error)
            raise error from None
        if request.url not in self._answered:  # the first answer of an endpoint
            self._answered.add(request.url)
            endpoint = self._endpoints.setdefault(request.url, _Endpoint())
            endpoint.answered = True
            endpoint.refused_since = None
        return json_or_raise(status, headers, raw, request.model)

    async def aclose(self) -> None:
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()

    def check_reachable(self, url: str, exc: ConnectionRefused) -> None:
        """Give up on an endpoint that never answered once its connections were refused for a while."""
        endpoint = self._endpoints.setdefault(url, _Endpoint())
        if endpoint.answered:
            return
        now = self.clock()
        if endpoint.refused_since is None:
            endpoint.refused_since = now
        elif now - endpoint.refused_since >= UNREACHABLE_AFTER_S:
            reason = str(exc).split(": ", 1)[-1]
            raise EndpointUnreachable(
                f"{url}: {reason} for {now - endpoint.refused_since:.0f} s and never answered; "
                "is the server running, and is base_url right?",
                model=exc.model,
            )
