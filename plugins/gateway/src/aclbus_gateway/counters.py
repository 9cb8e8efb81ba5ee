"""The gateway's own counters: requests by endpoint and outcome (``/communication/statistics``)."""

from __future__ import annotations

from collections import Counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CountRequests", "RequestCounters"]

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""The methods counted by name; any other token a client sends counts as ``OTHER``."""

UNMATCHED = "(no route)"
"""The endpoint label of a request no route matched: one label for every unknown path, so
that the counters stay bounded whatever paths are tried."""


class RequestCounters:
    """How many requests each endpoint answered, by status code."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, int]] = Counter()

    def count(self, method: str, endpoint: str, status: int) -> None:
        """Count one answered request."""
        self._counts[(method, endpoint, status)] += 1

    def as_dict(self) -> dict[str, dict[str, int]]:
        """``{"POST /communication/send": {"200": 3, "422": 1}, ...}``, sorted."""
        out: dict[str, dict[str, int]] = {}
        for (method, endpoint, status), n in sorted(self._counts.items()):
            out.setdefault(f"{method} {endpoint}", {})[str(status)] = n
        return out


class CountRequests:
    """ASGI middleware that counts each HTTP request by its route's path template and status.

    Labelled by the template (``/communication/groups/{group}/join``), never by the path
    itself, and by a known method or ``OTHER``, so a caller cannot grow the counters with
    made-up paths, group names or methods.

    Args:
        app: The application.
        counters: Where to count.
    """

    def __init__(self, app: ASGIApp, counters: RequestCounters) -> None:
        self.app = app
        self.counters = counters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request; count it once its response has started."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers if the application fails before responding

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            self.counters.count(method, _endpoint(scope), status)


def _endpoint(scope: Scope) -> str:
    # The router records the route it chose in the (shared) scope: the path template of an
    # APIRoute, or of the route whose path matched with another method (a 405).
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED
