"""Request handlers, one module per API family, and the registry the server dispatches on.

A handler is `async def handler(ctx: RequestContext, request) -> response`, where `request` is
the kio request object and `response` is one of:
  - a kio response object of the request's version (the server encodes it with the right header),
  - a list of buffers that already form the whole response frame (Fetch's zero-copy writer,
    Produce's packed writer),
  - None: no response is sent (Produce with acks=0).

`Registry.register(api_key, handler, min_version=, max_version=)` installs a handler; ApiVersions
advertises exactly what is registered (plus `advertise_min` overrides, e.g. Produce's v0-2 kept
advertised for librdkafka, KAFKA-18659, though they are refused if used). A module registers its
APIs with `module.register(registry)`; `default_registry()` installs everything available,
including the group APIs of `broker.handlers.groups` when that module imports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

log = logging.getLogger("broker.handlers")

Handler = Callable[[Any, Any], Awaitable[Any]]


class CloseConnection(Exception):
    """Raised by a handler to close the connection without an answer (and without logging a bug),
    e.g. Produce with acks=0 that failed: the client learns of it by the disconnect, as with Kafka."""


@dataclass(slots=True)
class Entry:
    api_key: int
    min_version: int
    max_version: int
    handler: Handler
    advertise_min: int


class Registry:
    """api_key → (versions served, handler)."""

    def __init__(self) -> None:
        self.entries: dict[int, Entry] = {}

    def register(self, api_key: int, handler: Handler, *, min_version: int, max_version: int,
                 advertise_min: int | None = None) -> None:
        self.entries[int(api_key)] = Entry(int(api_key), int(min_version), int(max_version), handler,
                                           int(min_version if advertise_min is None else advertise_min))

    def lookup(self, api_key: int, version: int) -> Handler | None:
        e = self.entries.get(api_key)
        if e is None or not e.min_version <= version <= e.max_version:
            return None
        return e.handler

    def advertised(self) -> list[tuple[int, int, int]]:
        """(api_key, min, max) sorted by key, as ApiVersions reports them."""
        return [(k, e.advertise_min, e.max_version) for k, e in sorted(self.entries.items())]

    def __contains__(self, api_key: int) -> bool:
        return api_key in self.entries


class RequestContext:
    """What a handler may read: the broker, the request header, the peer."""

    __slots__ = ("server", "header", "peer", "conn")

    def __init__(self, server: Any, header: Any, peer: Any, conn: Any = None):
        self.server = server
        self.header = header
        self.peer = peer
        self.conn = conn

    # spellings the group handlers look for (broker/coordinator/NEEDS.md)
    @property
    def store(self) -> Any:
        return self.server.store

    @property
    def config(self) -> Any:
        return self.server.config

    @property
    def coordinator(self) -> Any:
        return self.server.coordinator

    @property
    def api_version(self) -> int:
        return self.header.api_version

    @property
    def correlation_id(self) -> int:
        return self.header.correlation_id

    @property
    def client_id(self) -> str:
        return self.header.client_id or ""

    @property
    def client_host(self) -> str:
        return self.peer[0] if isinstance(self.peer, (tuple, list)) and self.peer else ""

    @property
    def node_id(self) -> int:
        return self.server.node_id

    @property
    def advertised_host(self) -> str:
        return self.server.advertised_host

    @property
    def advertised_port(self) -> int:
        return self.server.advertised_port


def default_registry(*, groups: bool = True) -> Registry:
    from . import admin, api_versions, fetch, metadata, produce
    reg = Registry()
    for mod in (api_versions, metadata, produce, fetch, admin):
        mod.register(reg)
    from . import log_dirs; log_dirs.register(reg)  # noqa: E702  DescribeLogDirs (35)
    if groups:
        try:
            from . import groups as group_handlers
        except ImportError as e:  # the group coordinator is optional for the data path
            log.warning("group APIs not available: %s", e)
        else:
            group_handlers.register(reg)
            from . import consumer_groups; consumer_groups.register(reg)  # noqa: E702  KIP-848 (68, 69)
    return reg


__all__ = ["Registry", "RequestContext", "Entry", "Handler", "CloseConnection", "default_registry"]
