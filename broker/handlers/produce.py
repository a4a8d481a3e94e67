"""Produce (0): whole record batches in, appended as sent.

The records of each partition are handed to `Log.append_batches` as the bytes kio decoded; the
log validates each batch header (size, magic, CRC, max.message.bytes, producer sequences) and
assigns offsets by rewriting baseOffset. No record is parsed here.

Errors are per partition: UNKNOWN_TOPIC_OR_PARTITION (3), CORRUPT_MESSAGE (2),
MESSAGE_TOO_LARGE (10), OUT_OF_ORDER_SEQUENCE_NUMBER (45), INVALID_RECORD (87: also a batch of
magic 0 or 1, or no batch at all, as Kafka answers a v3+ request), INVALID_TOPIC_EXCEPTION (17) for internal topics, INVALID_REQUIRED_ACKS (21). With acks=0 there is no response to carry an error, so a failed
partition closes the connection instead (as Kafka does).
A duplicate batch of an idempotent producer is answered as success with the offset it got the
first time, as Kafka does; on a LogAppendTime topic also with the append time it got then, so
a retried record's delivery report carries the timestamp a consumer will see.

Durability: appends run with `flush=False`; when the topic's flush policy (`flush.messages`)
asks for a flush, acks=all waits for it in a worker thread (concurrent flushes share fsyncs
inside `Log.flush`), other acks let it run in the background. acks=0 gets no response.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from logstore.errors import DuplicateSequenceError, LogStoreError, UnsupportedForMessageFormatError

from . import CloseConnection
from ..protocol.produce_writer import MAX_VERSION, MIN_VERSION, write_produce_response
from ._util import INTERNAL_TOPICS, error_of

log = logging.getLogger("broker.handlers.produce")

UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC = 17
INVALID_REQUIRED_ACKS = 21
INVALID_RECORD = 87
KAFKA_STORAGE_ERROR = 56


def _log_flush_error(fut: "asyncio.Future[Any]") -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("background flush failed: %s", fut.exception())


def _duplicate_append_time(lg: Any, e: DuplicateSequenceError) -> int:
    """The log_append_time answer for a duplicate batch: Kafka returns the timestamp of the batch it
    duplicates (UnifiedLog: `appendInfo.setLogAppendTime(duplicate.timestamp)`). That is the
    append time only on a LogAppendTime topic (the producer state keeps the stored max timestamp,
    which there is the stamped append time); elsewhere the answer stays -1, as for CreateTime."""
    return e.timestamp if lg.config.message_timestamp_type == "LogAppendTime" else -1


async def produce(ctx: Any, request: Any) -> Any:
    server = ctx.server
    store = server.store
    acks = int(request.acks)
    version = int(type(request).__version__)
    loop = asyncio.get_running_loop()
    results: list[tuple[str, list[list[Any]]]] = []   # [index, error, base_offset, append_time_ms, lso, message]
    waits: list[tuple[list[Any], Any]] = []
    for t in request.topic_data:
        name = t.name
        parts: list[list[Any]] = []
        results.append((name, parts))
        for pd in t.partition_data:
            idx = int(pd.index)
            if acks not in (0, 1, -1):
                parts.append([idx, INVALID_REQUIRED_ACKS, -1, -1, -1, f"acks must be 0, 1 or -1, not {acks}"])
                continue
            if name in INTERNAL_TOPICS:
                parts.append([idx, INVALID_TOPIC, -1, -1, -1, f"cannot produce to internal topic {name}"])
                continue
            try:
                lg = store.partition(name, idx)
            except LogStoreError as e:
                parts.append([idx, UNKNOWN_TOPIC_OR_PARTITION, -1, -1, -1, str(e)])
                continue
            records = pd.records
            if not records:
                parts.append([idx, INVALID_RECORD, -1, -1, -1,
                              f"Produce requests with version {version} must have at least one record batch"])
                continue
            try:
                info = lg.append_batches(records, flush=False)
            except DuplicateSequenceError as e:
                parts.append([idx, 0, e.first_offset, _duplicate_append_time(lg, e),
                              lg.log_start_offset, None])
                continue
            except UnsupportedForMessageFormatError:
                # Kafka's answer to an old-format batch in a v3+ request (the only ones served)
                parts.append([idx, INVALID_RECORD, -1, -1, -1, f"Produce requests with version {version} are "
                              f"only allowed to contain record batches with magic version 2"])
                continue
            except LogStoreError as e:
                code, msg = error_of(e)
                log.debug("produce to %s-%d refused: %s", name, idx, msg)
                parts.append([idx, code, -1, -1, -1, msg])
                continue
            except Exception as e:  # noqa: BLE001
                log.exception("produce to %s-%d failed", name, idx)
                parts.append([idx, -1, -1, -1, -1, f"{type(e).__name__}: {e}"])
                continue
            entry = [idx, 0, info.first_offset, info.log_append_time, info.log_start_offset, None]
            parts.append(entry)
            if info.flush_needed:
                fut = loop.run_in_executor(server.flush_executor, lg.flush, info.last_offset + 1)
                if acks == -1:
                    waits.append((entry, fut))
                else:
                    fut.add_done_callback(_log_flush_error)
    for entry, fut in waits:
        try:
            await fut
        except Exception as e:  # noqa: BLE001
            entry[1], entry[2], entry[5] = KAFKA_STORAGE_ERROR, -1, f"flush failed: {e}"
    if acks == 0:
        failed = [(name, p[0], p[5]) for name, parts in results for p in parts if p[1]]
        if failed:
            # no response to carry the error: close the connection so the client refreshes metadata
            raise CloseConnection(f"acks=0 produce failed for {failed[0][0]}-{failed[0][1]}: {failed[0][2]}")
        return None
    # the frame is packed directly (protocol.produce_writer): kio entities per partition cost
    # more than the appends when a request carries hundreds of small partitions
    return [write_produce_response(version, ctx.header.correlation_id, results)]


def register(registry: Any) -> None:
    # v0-2 stay advertised (KAFKA-18659: librdkafka derives features from the advertised range)
    # but are not served: only RecordBatch v2 is stored, and kio has no schemas for them.
    registry.register(0, produce, min_version=MIN_VERSION, max_version=MAX_VERSION, advertise_min=0)
