"""The broker's asyncio server: framing, dispatch, in-order responses, limits, shutdown.

Wire framing: every request and response is `size i32 | payload`. A connection may pipeline
requests; each is decoded and dispatched to its handler as its own task at once, and responses
are written strictly in request order (a slot queue per connection: a response that finishes
early waits for the ones before it). Produce with acks=0 occupies a slot that writes nothing.

Limits: a request larger than `socket.request.max.bytes` closes that connection (logged), as does
any request that cannot be parsed, an API key/version we do not serve (except ApiVersions, which
is answered with UNSUPPORTED_VERSION and our ranges), or a handler that raises. The broker itself
never stops because of one connection. A connection idle for `connections.max.idle.ms` (no
request in flight, nothing received, and nothing of its queued answers taken: a slow reader is
active, as in Kafka) is closed at once, answers it has not read dropped (a transport close waits
for them to be read, which a client that stopped reading never does: it kept its socket and held
answers for good); any other close gives answers already queued CLOSE_LINGER_S to leave.
When a connection has too many requests in flight or the transport's write buffer is full,
reading from it pauses (back-pressure): frames already received stay undecoded until it resumes
(one read may hold thousands of pipelined requests), and finished responses wait in their slots
(a Fetch's file regions unread) rather than pile up in the transport's buffer, so a client that
stops reading its socket holds at most MAX_IN_FLIGHT responses, not one per request it managed
to send.

Fetch long polls park on per-partition append waiters (`wait_for_append`); `Log` append
listeners wake them, from any thread (appends through the embedded API in another thread use
`call_soon_threadsafe`).

Shutdown (`stop()`, SIGTERM/SIGINT in `cli serve`): stop accepting, wake parked fetches, stop the
group coordinator, let in-flight requests finish (bounded), close connections (one whose client
does not take its last answers within STOP_LINGER_S is dropped), then
`store.close()` (flush, checkpoints, clean-shutdown marker) in a worker thread.

Descriptors: every open partition holds its active segment's log and index files, so a broker
with hundreds of partitions needs more than the usual soft limit of 1,024. At start the process's
soft RLIMIT_NOFILE is raised to its hard limit (`raise_open_file_limit`), as the JVM does for
Kafka (HotSpot's MaxFDLimit); running out later fails the request that needed a descriptor with
KAFKA_STORAGE_ERROR, never the broker.

`Broker` runs in-process (`async with Broker(config) as b: b.port`), in a thread
(`BrokerThread`), or as a process (`logstore serve`).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import resource
import threading
import weakref
from typing import Any, Mapping

import logstore
from logstore.file_slice import FileSlice

from .config import BrokerConfig
from .handlers import CloseConnection, Registry, RequestContext, default_registry
from .handlers.admin import ProducerIds
from .handlers.api_versions import unsupported_version_response
from .protocol import ProtocolError, UnsupportedVersion, decode_request, encode_response
from .protocol.codec import RequestHeader
from .zerocopy import direct_fd, write_parts

log = logging.getLogger("broker.server")

# the most the soft descriptor limit is raised to when the hard limit is unlimited (the kernel's
# usual fs.nr_open)
FD_LIMIT_CAP = 1 << 20


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (at most FD_LIMIT_CAP when the
    hard limit is unlimited); never lowers it. Returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = FD_LIMIT_CAP if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as e:
            log.info("cannot raise the open file limit from %d to %d: %s", soft, target, e)
            return soft, soft
        log.info("open file limit raised from %d to %d", soft, target)
        return soft, target
    return soft, soft

MAX_IN_FLIGHT = 128          # per connection, before reading pauses
SHUTDOWN_GRACE_S = 10.0
CLOSE_LINGER_S = 5.0         # a closed connection's unsent responses get this long to leave
STOP_LINGER_S = 1.0          # the same at shutdown


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when importable, else the default loop."""
    try:
        import uvloop
        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


class _Connection(asyncio.Protocol):
    __slots__ = ("broker", "transport", "chunks", "have", "slots", "tasks", "peer", "closed", "paused_read",
                 "paused_write", "last_active", "idle_buffered", "idle_handle", "need", "name", "sock_fd",
                 "processing")

    def __init__(self, broker: "Broker"):
        self.broker = broker
        self.transport: asyncio.Transport | None = None
        self.chunks: list[bytes] = []
        self.have = 0
        self.slots: collections.deque[list[Any]] = collections.deque()  # [done, payload]
        self.tasks: set[asyncio.Task] = set()
        self.peer: Any = None
        self.closed = False
        self.paused_read = False
        self.paused_write = False
        self.last_active = 0.0
        self.idle_buffered = 0   # bytes the transport held at the last activity or idle check
        self.idle_handle: asyncio.TimerHandle | None = None
        self.need = 4
        self.name = "?"
        self.sock_fd: int | None = None
        self.processing = False

    # -- asyncio callbacks ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sock_fd = direct_fd(transport)   # Fetch's file regions go out by sendfile through it
        self.peer = transport.get_extra_info("peername")
        self.name = f"{self.peer[0]}:{self.peer[1]}" if isinstance(self.peer, tuple) else str(self.peer)
        self.broker._connections.add(self)
        self.last_active = self.broker._loop.time()
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.broker._connections.discard(self)
        if self.idle_handle is not None:
            self.idle_handle.cancel()
        for t in list(self.tasks):
            t.cancel()   # parked JoinGroup/SyncGroup/Fetch see the cancellation
        self.slots.clear()

    def pause_writing(self) -> None:
        self.paused_write = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.paused_write = False
        self.last_active = self.broker._loop.time()   # the client is reading what it was sent
        self._flush()   # the responses held while the transport was full, then buffered frames

    def data_received(self, data: bytes) -> None:
        # Chunks are kept as received and joined once a whole frame is there, so a 1 MB produce
        # request arriving in 64 KB reads is copied once, not once per read.
        if self.closed:
            return
        self.chunks.append(data)
        self.have += len(data)
        self.last_active = self.broker._loop.time()
        self._process()

    def _must_wait(self) -> bool:
        return self.paused_write or len(self.slots) >= MAX_IN_FLIGHT

    def _process(self) -> None:
        """Dispatch the whole frames received so far, until back-pressure says wait (the rest stays
        buffered; `_update_reading` comes back here when the connection may go on)."""
        if self.processing or self.closed or self.have < self.need or self._must_wait():
            return
        self.processing = True
        try:
            buf = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
            self.chunks.clear()
            view = memoryview(buf)          # read-only: kio accepts it, and slicing copies nothing
            n = len(buf)
            pos = 0
            max_bytes = self.broker.max_request_bytes
            self.need = 4
            while n - pos >= 4 and not self._must_wait():
                size = int.from_bytes(view[pos:pos + 4], "big", signed=True)
                if size < 0 or size > max_bytes:
                    log.warning("closing connection from %s: request of %d bytes exceeds socket.request.max.bytes %d",
                                self.name, size, max_bytes)
                    self.close()
                    return
                if n - pos - 4 < size:
                    self.need = size + 4
                    break
                frame = view[pos + 4:pos + 4 + size]
                pos += 4 + size
                self._dispatch(frame)
                if self.closed:
                    return
            if pos < n:
                self.chunks.append(buf[pos:] if pos else buf)
            self.have = n - pos
        finally:
            self.processing = False

    # -- dispatch -------------------------------------------------------------------------------
    def _dispatch(self, frame: memoryview) -> None:
        broker = self.broker
        try:
            header, request = decode_request(frame)
        except UnsupportedVersion as e:
            if e.header.api_key == 18:
                self._answer_unsupported(e.header)
                return
            log.warning("closing connection from %s: %s", self.name, e)
            self.close()
            return
        except ProtocolError as e:
            log.warning("closing connection from %s: malformed request: %s", self.name, e)
            log.debug("the request began with %s", frame[:256].hex())
            self.close()
            return
        except Exception as e:  # noqa: BLE001 (a decoder bug must not take the broker down)
            log.warning("closing connection from %s: cannot decode request: %r", self.name, e)
            self.close()
            return
        handler = broker.registry.lookup(header.api_key, header.api_version)
        if handler is None:
            if header.api_key == 18:
                self._answer_unsupported(header)
                return
            log.warning("closing connection from %s: api key %d version %d is not served", self.name,
                        header.api_key, header.api_version)
            self.close()
            return
        slot = [False, None]
        self.slots.append(slot)
        ctx = RequestContext(broker, header, self.peer, self)
        task = broker._loop.create_task(self._run(slot, header, handler(ctx, request)))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        self._update_reading()

    def _answer_unsupported(self, header: RequestHeader) -> None:
        hdr = RequestHeader(header.api_key, 0, header.correlation_id, header.client_id, False)
        self.slots.append([True, encode_response(hdr, unsupported_version_response(self.broker.registry))])
        self._flush()

    async def _run(self, slot: list[Any], header: RequestHeader, coro: Any) -> None:
        try:
            resp = await coro
            if resp is None:
                payload = None
            elif isinstance(resp, list):
                payload = resp
            else:
                payload = encode_response(header, resp)
        except asyncio.CancelledError:
            raise
        except CloseConnection as e:
            log.info("closing connection from %s: %s", self.name, e)
            self.close()
            return
        except Exception:  # noqa: BLE001
            log.exception("handler for api key %d v%d failed; closing connection from %s", header.api_key,
                          header.api_version, self.name)
            self.close()
            return
        slot[0] = True
        slot[1] = payload
        self._flush()

    def _flush(self) -> None:
        if self.closed:
            return
        slots = self.slots
        transport = self.transport
        wrote = False
        # while the transport is over its high-water mark, finished responses stay in their slots
        # (resume_writing flushes them): memory stays bounded by MAX_IN_FLIGHT responses
        while slots and slots[0][0] and not self.paused_write:
            payload = slots.popleft()[1]
            if payload is None:
                continue
            if isinstance(payload, list):
                if any(type(p) is FileSlice for p in payload):
                    try:
                        self.broker.sendfile_bytes += write_parts(transport, self.sock_fd, payload)
                    except OSError as e:
                        log.info("closing connection from %s: %s", self.name, e)
                        self.close()
                        return
                else:
                    transport.writelines(payload)
            else:
                transport.write(payload)
            wrote = True
        if wrote:
            self.last_active = self.broker._loop.time()
            self.idle_buffered = transport.get_write_buffer_size()
        self._update_reading()

    def _update_reading(self) -> None:
        if self.closed or self.transport is None:
            return
        should_pause = self._must_wait()
        if should_pause and not self.paused_read:
            self.paused_read = True
            self.transport.pause_reading()
        elif not should_pause and self.paused_read:
            self.paused_read = False
            self.transport.resume_reading()
        if not should_pause and self.have >= self.need:
            self._process()   # frames received before the pause

    # -- idle and close -----------------------------------------------------------------------------
    def _arm_idle(self) -> None:
        idle_ms = self.broker.idle_ms
        if idle_ms is None or idle_ms < 0:
            return
        self.idle_handle = self.broker._loop.call_later(max(idle_ms / 1000.0, 0.001), self._check_idle)

    def _check_idle(self) -> None:
        if self.closed:
            return
        idle_s = self.broker.idle_ms / 1000.0
        now = self.broker._loop.time()
        busy = any(not slot[0] for slot in self.slots)   # answered but unsent (client not reading) is idle
        buffered = self.transport.get_write_buffer_size() if self.transport is not None else 0
        if buffered < self.idle_buffered:
            self.last_active = now   # a slow client is still taking its answers: that is activity
        self.idle_buffered = buffered
        if not busy and now - self.last_active >= idle_s:
            log.info("closing connection from %s: idle for more than connections.max.idle.ms", self.name)
            # whatever is still queued for it has not been read in all that time: drop it, or the
            # close would wait for the client to read it, keeping the socket forever
            self.close(abort=True)
            return
        wait = idle_s - (now - self.last_active) if not busy else idle_s
        self.idle_handle = self.broker._loop.call_later(max(wait, 0.001), self._check_idle)

    def close(self, abort: bool = False) -> None:
        """Stop serving this connection. The transport's `close()` sends what it still holds
        first and closes the socket only then, which never happens for a client that stopped
        reading: `abort=True` drops the unsent bytes at once, and a plain close that has not
        completed within CLOSE_LINGER_S becomes an abort."""
        transport = self.transport
        if self.closed:
            if abort and transport is not None and self in self.broker._connections:
                transport.abort()   # a close still lingering on unsent bytes
            return
        self.closed = True
        if transport is None:
            return
        if abort:
            transport.abort()
            return
        transport.close()
        if transport.get_write_buffer_size():
            self.broker._loop.call_later(CLOSE_LINGER_S, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if self in self.broker._connections and self.transport is not None:
            log.info("connection from %s did not take its last %d bytes in %gs; dropped", self.name,
                     self.transport.get_write_buffer_size(), CLOSE_LINGER_S)
            self.transport.abort()


class Broker:
    """One broker: a listener, a handler registry, a log store, a group coordinator."""

    def __init__(self, config: BrokerConfig | Mapping[str, Any] | None = None, *, store: Any = None,
                 registry: Registry | None = None, groups: bool = True):
        self.config = config if isinstance(config, BrokerConfig) else BrokerConfig(config or {})
        self.registry = registry or default_registry(groups=groups)
        self.store = store
        self._own_store = store is None
        self.coordinator: Any = None
        self.producer_ids = ProducerIds()
        self.flush_executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="broker-flush")
        self.node_id = self.config.node_id
        self.max_request_bytes = self.config["socket.request.max.bytes"]
        self.idle_ms = self.config["connections.max.idle.ms"]
        self.host = self.config.listener.host or "0.0.0.0"
        self.port = self.config.listener.port
        self.stopping = False
        self.sendfile_bytes = 0   # record bytes that left by sendfile (broker/zerocopy.py)
        self._server: asyncio.base_events.Server | None = None
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._loop_thread = 0
        self._connections: set[_Connection] = set()
        self._waiters: dict[Any, set[asyncio.Future]] = {}
        self._watched: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._stopped = asyncio.Event()
        self._started = False

    # -- addresses --------------------------------------------------------------------------------
    @property
    def advertised_host(self) -> str:
        adv = self.config.advertised
        if adv is not None and adv.host:
            return adv.host
        return self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"

    @property
    def advertised_port(self) -> int:
        adv = self.config.advertised
        if adv is not None and adv.port:
            return adv.port
        return self.port

    @property
    def bootstrap(self) -> str:
        return f"{self.advertised_host}:{self.port}"

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> "Broker":
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopped = asyncio.Event()
        self.config.log_ignored()
        raise_open_file_limit()
        if self.store is None:
            path = self.config.log_dir
            store_cfg = dict(self.config.store_config)
            self.store = await self._loop.run_in_executor(None, lambda: logstore.open(path, config=store_cfg))
        try:
            self._server = await self._loop.create_server(lambda: _Connection(self), self.host, self.port,
                                                          reuse_address=True, backlog=512)
        except BaseException:
            if self._own_store:
                await self._loop.run_in_executor(None, self.store.close)
            raise
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        if 14 in self.registry and self.coordinator is None:
            try:
                from .coordinator import GroupCoordinator
                self.coordinator = GroupCoordinator(self.store, self.config)
                await self.coordinator.start()
            except Exception:  # noqa: BLE001 (the data path works without groups)
                log.exception("group coordinator did not start; group APIs will answer NOT_COORDINATOR (16) and "
                              "FindCoordinator COORDINATOR_NOT_AVAILABLE (15)")
        self._started = True
        log.info("listening on %s:%d (node %d, log dir %s)", self.host, self.port, self.node_id,
                 getattr(self.store, "path", "?"))
        return self

    async def stop(self) -> None:
        if self.stopping:
            await self._stopped.wait()
            return
        self.stopping = True
        try:
            if self._server is not None:
                self._server.close()
            for futs in list(self._waiters.values()):
                for f in futs:
                    if not f.done():
                        f.set_result(None)
            if self.coordinator is not None:
                try:
                    await self.coordinator.stop()
                except Exception:  # noqa: BLE001
                    log.exception("group coordinator stop failed")
            tasks = [t for c in list(self._connections) for t in c.tasks]
            if tasks:
                _done, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S)
                for t in pending:
                    t.cancel()
            for c in list(self._connections):
                c.close()
            # answers already queued get a moment to leave; a client not reading them is dropped
            linger_until = self._loop.time() + STOP_LINGER_S
            while self._connections and self._loop.time() < linger_until:
                await asyncio.sleep(0.01)
            for c in list(self._connections):
                c.close(abort=True)
            await asyncio.sleep(0)
            for lg in list(self._watched):
                try:
                    lg.remove_append_listener(self._on_append)
                except Exception:  # noqa: BLE001
                    pass
            if self._own_store and self.store is not None:
                await self._loop.run_in_executor(None, self.store.close)
            self.flush_executor.shutdown(wait=True)
            log.info("stopped")
        finally:
            self._stopped.set()

    async def serve_forever(self) -> None:
        await self._stopped.wait()

    async def __aenter__(self) -> "Broker":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # -- append waiters (Fetch long polling) --------------------------------------------------------
    def _watch(self, lg: Any) -> None:
        if lg not in self._watched:
            lg.add_append_listener(self._on_append)
            self._watched.add(lg)

    def _on_append(self, lg: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            if lg in self._waiters:
                self._wake(lg)
            return
        try:
            self._loop.call_soon_threadsafe(self._wake, lg)
        except RuntimeError:  # loop closed: the broker is gone
            pass

    def _wake(self, lg: Any) -> None:
        futs = self._waiters.pop(lg, None)
        if futs:
            for f in futs:
                if not f.done():
                    f.set_result(None)

    async def wait_for_append(self, logs: list[Any], timeout: float) -> None:
        """Return when any of `logs` gets an append, or after `timeout` seconds."""
        fut = self._loop.create_future()
        for lg in logs:
            self._watch(lg)
            self._waiters.setdefault(lg, set()).add(fut)
        handle = self._loop.call_later(timeout, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            handle.cancel()
            for lg in logs:
                s = self._waiters.get(lg)
                if s is not None:
                    s.discard(fut)
                    if not s:
                        del self._waiters[lg]


class BrokerThread:
    """A Broker on its own event loop in a daemon thread: `with BrokerThread(cfg) as b: b.port`."""

    def __init__(self, config: BrokerConfig | Mapping[str, Any] | None = None, **kw: Any):
        self.broker = Broker(config, **kw)
        self._loop = new_event_loop()
        self._thread = threading.Thread(target=self._run, name="logstore-broker", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.broker.start())
        except BaseException as e:  # noqa: BLE001
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_until_complete(self.broker.serve_forever())
        self._loop.run_until_complete(self._loop.shutdown_default_executor())
        self._loop.close()

    def start(self, timeout: float = 30.0) -> "BrokerThread":
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("broker did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(self.broker.stop(), self._loop)
            fut.result(timeout)
            self._thread.join(timeout)

    @property
    def port(self) -> int:
        return self.broker.port

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    @property
    def store(self) -> Any:
        return self.broker.store

    def __enter__(self) -> "BrokerThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


__all__ = ["Broker", "BrokerThread", "new_event_loop"]
