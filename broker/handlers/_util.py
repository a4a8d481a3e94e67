"""Helpers shared by handlers: building a kio response of the request's own version, and Kafka's
internal topic names."""

from __future__ import annotations

import datetime
import importlib
from dataclasses import fields
from functools import lru_cache
from typing import Any

from kio.schema.errors import ErrorCode

from logstore.errors import LogStoreError, StoreClosedError

ZERO = datetime.timedelta(0)
# Kafka's Topic.INTERNAL_TOPICS: clients may not produce to them, create them or auto-create them,
# and Metadata marks them is_internal.
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})
NO_AUTH_OPS = -(2**31)
# With no authorizer Kafka answers every operation a resource type supports (AclEntry
# supportedOperations; AclOperation codes): for a group READ 3, DELETE 6, DESCRIBE 8,
# DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11 (group configs, KIP-848)
GROUP_OPERATIONS = sum(1 << op for op in (3, 6, 8, 10, 11))


@lru_cache(maxsize=None)
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


@lru_cache(maxsize=None)
def _module_of(request_cls: type) -> Any:
    return importlib.import_module(request_cls.__module__.rsplit(".", 1)[0] + ".response")


def response_module(request: Any) -> Any:
    """The kio module holding the response classes of the request's version."""
    return _module_of(type(request))


def version(request: Any) -> int:
    return int(type(request).__version__)


def make(cls: type, **kw: Any) -> Any:
    """Instantiate a kio entity from the keyword arguments it has fields for (versions differ
    mostly in which fields exist). `error_code` ints become ErrorCode; a missing throttle_time is 0."""
    names = _field_names(cls)
    args = {k: v for k, v in kw.items() if k in names}
    if "error_code" in args:
        args["error_code"] = ErrorCode(int(args["error_code"]))
    if "throttle_time" in names and "throttle_time" not in args:
        args["throttle_time"] = ZERO
    return cls(**args)


def has_field(cls: type, name: str) -> bool:
    return name in _field_names(cls)


def ms(value: Any) -> int:
    if isinstance(value, datetime.timedelta):
        return int(value / datetime.timedelta(milliseconds=1))
    return int(value)


def error_of(exc: BaseException) -> tuple[int, str]:
    """(Kafka error code, message) for an exception raised by logstore."""
    if isinstance(exc, StoreClosedError):
        # the partition was closed under us (topic deleted, store closing): retriable for clients
        return 3, str(exc)
    if isinstance(exc, LogStoreError):
        code = exc.error_code
        return (code if code is not None else -1), str(exc)
    return -1, f"{type(exc).__name__}: {exc}"
