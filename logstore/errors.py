"""Exceptions of the storage engine.

Every error raised by `logstore` is a `LogStoreError`; each subclass carries the Apache Kafka
error code it maps to (`error_code`), so the broker can answer with it unchanged. Messages name
what was wrong and where: topic, partition, file, position, offset or key. `check_int` is the
argument check the public API shares (a TypeError naming the argument).
"""

from __future__ import annotations

import operator
from typing import Any


def check_int(v: Any, what: str) -> int:
    """`v` as an int (anything with `__index__`, e.g. numpy's, but not a bool, float or str);
    a TypeError naming `what` otherwise (True or 1.0 would pass for 1 as a dict key or offset)."""
    if not isinstance(v, bool):
        try:
            return operator.index(v)
        except TypeError:
            pass
    raise TypeError(f"{what} must be an int, not {type(v).__name__} ({v!r})")


class LogStoreError(Exception):
    """Base class. `error_code` is the Kafka protocol error code (-1 = UNKNOWN_SERVER_ERROR)."""

    error_code: int = -1
    retriable: bool = False


class OffsetOutOfRangeError(LogStoreError):
    error_code = 1


class CorruptRecordError(LogStoreError):
    """A batch failed validation (size, magic, CRC). Carries the file and position when known."""

    error_code = 2

    def __init__(self, message: str, *, path: str | None = None, position: int | None = None):
        super().__init__(message)
        self.path = path
        self.position = position


class UnknownTopicOrPartitionError(LogStoreError):
    error_code = 3
    retriable = True


class RecordTooLargeError(LogStoreError):
    """MESSAGE_TOO_LARGE: a batch is larger than `max.message.bytes`."""

    error_code = 10


class InvalidTopicError(LogStoreError):
    error_code = 17


class RecordListTooLargeError(LogStoreError):
    error_code = 18


class InvalidRequiredAcksError(LogStoreError):
    error_code = 21


class InvalidTimestampError(LogStoreError):
    error_code = 32


class TopicAlreadyExistsError(LogStoreError):
    error_code = 36


class InvalidPartitionsError(LogStoreError):
    error_code = 37


class InvalidReplicationFactorError(LogStoreError):
    error_code = 38


class InvalidConfigError(LogStoreError):
    error_code = 40


class PolicyViolationError(LogStoreError):
    error_code = 44


class UnsupportedForMessageFormatError(LogStoreError):
    """Only RecordBatch v2 (magic 2) is stored; older message formats are refused."""

    error_code = 43


class OutOfOrderSequenceError(LogStoreError):
    error_code = 45


class DuplicateSequenceError(LogStoreError):
    """The batch was already appended; `first_offset` is where it went the first time."""

    error_code = 46

    def __init__(self, message: str, *, first_offset: int, last_offset: int, timestamp: int = -1):
        super().__init__(message)
        self.first_offset = first_offset
        self.last_offset = last_offset
        self.timestamp = timestamp


class InvalidProducerEpochError(LogStoreError):
    error_code = 47


class KafkaStorageError(LogStoreError):
    """The disk failed under us (ENOSPC, EIO): the append did not happen."""

    error_code = 56
    retriable = True


class UnknownProducerIdError(LogStoreError):
    error_code = 59


class InvalidRecordError(LogStoreError):
    error_code = 87


class LogDirLockedError(LogStoreError):
    """A second process (or a second open in this process) tried to open a locked log dir."""


class StoreClosedError(LogStoreError):
    """The store or log was closed."""


__all__ = [name for name, obj in list(globals().items()) if isinstance(obj, type) and issubclass(obj, LogStoreError)]
