"""`CoordinatorBase`: the state every part of `GroupCoordinator` shares, and the checks all of
its operations start with.

`GroupCoordinator` (coordinator.py) is assembled from mixins that each own one concept —
rebalance.py (group state machine and timers), membership.py (JoinGroup, SyncGroup, Heartbeat,
LeaveGroup), offsets.py (committed offsets and their expiry) — over this one state:
    store     the LogStore (`__consumer_offsets` and the topics offsets are committed for)
    config    CoordinatorConfig
    clock     wall-clock ms (tests may pass their own)
    groups    group id → Group; a Dead group is removed from it
    consumer_groups  group id → ConsumerGroup (KIP-848, consumer_group.py); an id is in one map at most
    offsets   GroupOffsetStore, None until `start()` has loaded it
    loop      the asyncio loop `start()` ran on: timers and parked requests live there
    state     "inactive" → "loading" → "active" → "inactive"
Invariant: group state is touched on the loop thread only (topic listeners aside, which touch
the offsets store alone).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Mapping

from logstore.groups import GroupOffsetStore

from . import errors as E
from .config import CoordinatorConfig
from .group import Group


class CoordinatorBase:
    """Shared state of the coordinator's parts (see module docstring)."""

    def __init__(self, store: Any, config: CoordinatorConfig | Mapping[str, Any] | None = None, *,
                 clock: Callable[[], int] | None = None) -> None:
        self.store = store
        if config is None:
            config = CoordinatorConfig()
        elif not isinstance(config, CoordinatorConfig):
            config = CoordinatorConfig.from_mapping(config)
        self.config = config
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.groups: dict[str, Group] = {}
        self.consumer_groups: dict[str, Any] = {}  # KIP-848 groups: group id → consumer_group.ConsumerGroup
        self.offsets: GroupOffsetStore | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.state = "inactive"  # inactive → loading → active → inactive
        self._expiry_task: asyncio.TimerHandle | None = None
        self._listener_installed = False

    def _check_active(self) -> int:
        """The error every request gets while the coordinator is not serving (E.NONE when it is)."""
        if self.state == "loading":
            return E.COORDINATOR_LOAD_IN_PROGRESS
        if self.state != "active":
            return E.NOT_COORDINATOR
        return E.NONE

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        assert self.loop is not None, "GroupCoordinator.start() was not awaited"
        return self.loop
