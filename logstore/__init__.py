"""logstore: a segmented commit log in Apache Kafka's on-disk format.

    import logstore
    with logstore.open("data") as store:
        store.create_topic("events", partitions=3)
        log = store.partition("events", 0)
        first = log.append([(b"key", b"value")])
        for rec in log.read(first):
            print(rec.offset, rec.key, rec.value)

Modules: records (RecordBatch v2 codec), index (mmap indexes), segment, log (one partition),
store (a log dir), checkpoint, config, errors. See DESIGN.md for the layering and formats.
"""

from __future__ import annotations

from . import errors, records
from .config import LogConfig, StoreConfig, TOPIC_CONFIGS
from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors_all
from .log import AppendInfo, Log, RecoveryStats
from .records import Record, BatchHeader, build_batch, decode_batch, decode_batches, iter_headers
from .segment import FileSlice, LogSegment
from .store import LogStore, TopicInfo, open, validate_topic_name

__version__ = "0.1.0"

__all__ = [
    "open", "LogStore", "TopicInfo", "Log", "AppendInfo", "RecoveryStats", "LogSegment", "FileSlice",
    "LogConfig", "StoreConfig", "TOPIC_CONFIGS", "Record", "BatchHeader", "build_batch", "decode_batch",
    "decode_batches", "iter_headers", "validate_topic_name", "errors", "records", *_errors_all,
]
from .groups import GroupOffsetStore, OffsetAndMetadata, OFFSETS_TOPIC, partition_for_group  # noqa: E402,F401
__all__ += ["GroupOffsetStore", "OffsetAndMetadata", "OFFSETS_TOPIC", "partition_for_group"]  # issue 6
from .client import Consumer, ConsumerRecord, DefaultPartitioner, Producer, RecordMetadata, murmur2  # noqa: E402,F401
__all__ += ["Producer", "Consumer", "ConsumerRecord", "RecordMetadata", "DefaultPartitioner", "murmur2"]  # issue 7
from .cleaner import Cleanable, CleanerStats, LogCleaner, OffsetMap  # noqa: E402,F401
from .retention import RetentionResult, retention_victims, run_retention  # noqa: E402,F401
__all__ += ["LogCleaner", "CleanerStats", "Cleanable", "OffsetMap", "RetentionResult", "retention_victims",
            "run_retention"]  # issue 4
