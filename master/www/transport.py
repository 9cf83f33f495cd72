"""The connection and the request the web layer writes to, typed as what they are.

Twisted types ``Protocol.transport`` as ``ITransport | None``: the interface lacks the producer
and abort methods every TCP (and TLS) transport has, and None stands for "not connected yet".
The HTTP channel and the websocket protocol use those methods once connected.  Likewise
``IRequest`` lacks the producer and finish-notification methods of Twisted's requests, which
streamed responses use.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.web.iweb import IRequest


class Connection(Protocol):
    """What the web layer uses of a connected transport (Twisted's TCP and TLS transports have it all)."""

    def write(self, data: bytes) -> None:
        """Send *data*."""

    def getPeer(self) -> IAddress:  # noqa: N802 (Twisted's name)
        """The other end's address."""

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        """Have *producer* paused and resumed as the send buffer fills and drains."""

    def unregisterProducer(self) -> None:  # noqa: N802
        """Stop telling the registered producer."""

    def loseConnection(self) -> None:  # noqa: N802
        """Close once what was written is sent."""

    def abortConnection(self) -> None:  # noqa: N802
        """Close now, dropping what was not sent."""


def connection(protocol: TwistedProtocol) -> Connection:
    """*protocol*'s transport; RuntimeError before it is connected."""
    transport = protocol.transport
    if transport is None:
        raise RuntimeError(f"{type(protocol).__name__} is not connected")
    # Twisted's ITransport declares a subset of what its TCP and TLS transports provide
    return cast(Connection, transport)


class Streaming(Protocol):
    """What a response streamed by the web layer uses of its request, beyond IRequest's methods.

    Twisted's ``http.Request`` has them all; ``IRequest`` does not declare them.
    """

    def notifyFinish(self) -> Deferred[None]:  # noqa: N802 (Twisted's name)
        """A Deferred fired when the response is finished, or failed when the client went away."""

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        """Have *producer* paused and resumed as the client's socket buffer fills and drains."""

    def unregisterProducer(self) -> None:  # noqa: N802
        """Stop telling the registered producer."""


def streaming(request: IRequest) -> Streaming:
    """*request* seen as the ``http.Request`` the site makes (IRequest lacks the producer methods)."""
    return cast(Streaming, request)
