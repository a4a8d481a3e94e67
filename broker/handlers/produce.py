"""Produce (0): whole record batches in, appended as sent.

The records of each partition are handed to `Log.append_batches` as the bytes kio decoded; the
log validates each batch header (size, magic, CRC, max.message.bytes, producer sequences) and
assigns offsets by rewriting baseOffset. No record is parsed here.

Errors are per partition, checked in Kafka's order (KafkaApis.handleProduceRequest,
ProduceRequest.validateRecords, ReplicaManager.appendRecords, UnifiedLog / LogValidator):
UNKNOWN_TOPIC_OR_PARTITION (3); the request-level record checks of a v3+ request, INVALID_RECORD
(87) for no complete batch, a batch of magic 0 or 1, or more than one batch, and
UNSUPPORTED_COMPRESSION_TYPE (76) for zstd in a request below v7; INVALID_REQUIRED_ACKS (21);
INVALID_TOPIC_EXCEPTION (17) for internal topics; then the log's checks: a baseOffset other than
0 is INVALID_RECORD before MESSAGE_TOO_LARGE (10) and CORRUPT_MESSAGE (2, CRC); after them
INVALID_RECORD for what a client may not write (a control batch, a record count that disagrees
with lastOffsetDelta, a producer id without a sequence); INVALID_TIMESTAMP (32),
OUT_OF_ORDER_SEQUENCE_NUMBER (45). A transactional batch in a request without a transactional id
fails the whole request with TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53), as Kafka answers it.
These client-origin checks read batch headers only (61 bytes); the CRC is verified here only
for a batch already found wrong, so Kafka's precedence holds without a second CRC pass on the
hot path. With acks=0 there is no response to carry an error, so a failed partition closes the
connection instead (as Kafka does).
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
import struct
from typing import Any

from logstore import records as R
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
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
UNSUPPORTED_COMPRESSION_TYPE = 76

_I32 = struct.Struct(">i").unpack_from
_I64 = struct.Struct(">q").unpack_from
# from the attributes on: attributes, lastOffsetDelta, (base and max timestamp), producerId,
# (producerEpoch), baseSequence, recordCount
_CLIENT_FIELDS = struct.Struct(">hi16xq2xii").unpack_from
_ATTRIBUTES_OFFSET = 21
# Kafka's batch iterator: a size field below this is corruption, fewer bytes than this is no batch
_MIN_BATCH_SIZE_FIELD = 14          # LegacyRecord.RECORD_OVERHEAD_V0
_HEADER_UP_TO_MAGIC = 17


def _complete_batch_at(records: bytes, pos: int) -> int:
    """The size of the whole batch at `pos` as Kafka's batch iterator sees it: 0 when the bytes
    there hold no complete batch (the iterator ends), -1 when they are corrupt (it throws)."""
    rest = len(records) - pos
    if rest < R.LOG_OVERHEAD:
        return 0
    size = _I32(records, pos + 8)[0]
    if size < _MIN_BATCH_SIZE_FIELD or (rest >= _HEADER_UP_TO_MAGIC and records[pos + R.MAGIC_OFFSET] > R.MAGIC):
        return -1
    if rest < _HEADER_UP_TO_MAGIC or rest < size + R.LOG_OVERHEAD:
        return 0
    return size + R.LOG_OVERHEAD


def _request_records_error(records: bytes, version: int) -> tuple[int, str] | None:
    """Kafka's ProduceRequest.validateRecords for a v3+ request: one whole batch of magic 2 (zstd
    only from v7). Corrupt bytes are left to the log, which answers CORRUPT_MESSAGE as Kafka does."""
    first = _complete_batch_at(records, 0)
    if first < 0:
        return None
    if first == 0:
        return INVALID_RECORD, (f"Produce requests with version {version} must have at least one record batch "
                                f"per partition")
    if records[R.MAGIC_OFFSET] != R.MAGIC:
        return INVALID_RECORD, (f"Produce requests with version {version} are only allowed to contain record "
                                f"batches with magic version 2")
    if version < 7 and len(records) >= R.HEADER_SIZE and \
            records[_ATTRIBUTES_OFFSET + 1] & 0x07 == R.COMPRESSION_ZSTD:
        return UNSUPPORTED_COMPRESSION_TYPE, (f"Produce requests with version {version} are not allowed to use "
                                              f"ZStandard compression")
    if _complete_batch_at(records, first) > 0:
        return INVALID_RECORD, (f"Produce requests with version {version} are only allowed to contain exactly "
                                f"one record batch per partition")
    return None


def _is_transactional(records: bytes | None) -> bool:
    """RequestUtils.hasTransactionalRecords for one partition: its first batch is transactional."""
    return records is not None and len(records) >= R.HEADER_SIZE and bool(records[_ATTRIBUTES_OFFSET + 1] & 0x10) \
        and records[R.MAGIC_OFFSET] == R.MAGIC and _complete_batch_at(records, 0) > 0


def _client_batch_error(records: bytes, lg: Any, where: str) -> tuple[int, str] | None:
    """What Kafka refuses from a client (AppendOrigin.CLIENT) in the batch header: a baseOffset
    other than 0 (UnifiedLog.analyzeAndValidateRecords, before the size and CRC checks), then
    (LogValidator.validateBatch, after them) an offset range that disagrees with the record
    count, a control batch, a producer id without a base sequence. None when the header is fine
    or when the log's own checks answer first (too large, CRC)."""
    if len(records) < R.HEADER_SIZE:
        return None
    base_offset, = _I64(records, 0)
    if base_offset != 0:
        return INVALID_RECORD, (f"The baseOffset of the record batch in the append to {where} should be 0, "
                                f"but it is {base_offset}")
    attributes, delta, producer_id, base_sequence, count = _CLIENT_FIELDS(records, _ATTRIBUTES_OFFSET)
    if delta + 1 <= 0:
        bad = f"Batch has an invalid offset range: [0, {delta}] in topic partition {where}"
    elif count <= 0:
        bad = f"Invalid reported count for record batch: {count} in topic partition {where}"
    elif delta + 1 != count:
        bad = f"Inconsistent batch offset range [0, {delta}] and count of records {count} in topic partition {where}"
    elif attributes & 0x20:
        bad = f"Clients are not allowed to write control records in topic partition {where}"
    elif producer_id >= 0 and base_sequence < 0:
        bad = (f"Invalid sequence number {base_sequence} in record batch with producerId {producer_id} "
               f"in topic partition {where}")
    else:
        return None
    # a rare path: only a batch already found wrong reads its whole header and pays for a CRC check
    h = R.read_header(records, 0)
    if h.size > lg.config.max_message_bytes:
        return None
    try:
        R.validate_batch(records, 0, h)
    except LogStoreError:
        return None
    return INVALID_RECORD, bad


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
    if request.transactional_id is None and any(_is_transactional(pd.records) for t in request.topic_data
                                                for pd in t.partition_data):
        # KafkaApis: transactional records need a transactional id; the whole request fails
        msg = "transactional records in a produce request without a transactional id"
        if acks == 0:
            raise CloseConnection(f"acks=0 produce failed: {msg}")
        return [write_produce_response(version, ctx.header.correlation_id, [
            (t.name, [[int(pd.index), TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1, -1, -1, None]
                      for pd in t.partition_data]) for t in request.topic_data])]
    for t in request.topic_data:
        name = t.name
        parts: list[list[Any]] = []
        results.append((name, parts))
        for pd in t.partition_data:
            idx = int(pd.index)
            try:
                lg = store.partition(name, idx)
            except LogStoreError as e:
                parts.append([idx, UNKNOWN_TOPIC_OR_PARTITION, -1, -1, -1, str(e)])
                continue
            records = pd.records
            bad = _request_records_error(records or b"", version)
            if bad is None and acks not in (0, 1, -1):
                bad = INVALID_REQUIRED_ACKS, f"acks must be 0, 1 or -1, not {acks}"
            if bad is None and name in INTERNAL_TOPICS:
                bad = INVALID_TOPIC, f"Cannot append to internal topic {name}"
            if bad is None:
                bad = _client_batch_error(records, lg, f"{name}-{idx}")
            if bad is not None:
                parts.append([idx, bad[0], -1, -1, -1, bad[1]])
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
                # a client's bad batch is the client's business; a storage failure (disk full, out
                # of descriptors, an offline partition) is the operator's and goes in the log
                (log.warning if code == KAFKA_STORAGE_ERROR else log.debug)(
                    "produce to %s-%d refused: %s", name, idx, msg)
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
