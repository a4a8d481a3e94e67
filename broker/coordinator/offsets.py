"""Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete, and their expiry.

`OffsetsMixin` (a part of `GroupCoordinator`) checks each request against the group's state and
leaves the records to `GroupOffsetStore` (logstore/groups.py: the `__consumer_offsets` schemas,
the in-memory view, and compaction-friendly tombstones).

Rules (Kafka's): a commit from a member needs its current generation (not while the group is
CompletingRebalance); generation -1 with no member id is a commit from outside the group
protocol (admin, a consumer using assign()), allowed while the group is Empty; a member's commit
(generation >= 0) to a group that does not exist is GROUP_ID_NOT_FOUND from OffsetCommit v9 on,
ILLEGAL_GENERATION before. A commit for a partition that does not exist, or with metadata over
`offset.metadata.max.bytes`, fails alone.

Durability: OffsetCommit is acknowledged once its batch is appended (written to the file: it
survives a kill -9), as Kafka acks after the append; power-loss durability comes from the
offsets topic's flush policy (`flush.ms` in the background), or per commit, fsynced in a worker
thread before the answer, with `flush.messages=1` on `__consumer_offsets` (or
`fsync_commits=True` in CoordinatorConfig).

Consumer-protocol groups (KIP-848, consumer_group.py) share the offsets store; their commits
and fetches are checked by member id and member epoch (STALE_MEMBER_EPOCH, UNKNOWN_MEMBER_ID).

Expiry: every `offsets.retention.check.interval.ms`, offsets of groups Empty for longer than
`offsets.retention.minutes` are tombstoned; an Empty group with no offsets left becomes Dead
and its metadata is tombstoned. A deleted topic takes its committed offsets with it.
"""

from __future__ import annotations

import logging
from typing import Iterable, Mapping

from logstore.groups import OFFSETS_TOPIC, OffsetAndMetadata

from . import errors as E
from .group import Group, GroupState
from .rebalance import RebalanceMixin

log = logging.getLogger("broker.coordinator")

TopicPartition = tuple[str, int]
S = GroupState


class OffsetsMixin(RebalanceMixin):
    """OffsetCommit, OffsetFetch, OffsetDelete and offsets expiry (see module docstring)."""

    def _partition_error(self, topic: str, partition: int) -> int:
        try:
            info = self.store.topic(topic)
        except Exception:
            return E.UNKNOWN_TOPIC_OR_PARTITION
        return E.NONE if 0 <= partition < info.partitions else E.UNKNOWN_TOPIC_OR_PARTITION

    async def commit(self, group_id: str, generation: int, member_id: str,
                     offsets: Mapping[TopicPartition, OffsetAndMetadata], *,
                     group_instance_id: str | None = None, api_version: int | None = None) -> dict[TopicPartition, int]:
        """OffsetCommit. Generation -1 with no member id is a commit from outside the group
        protocol (admin, a consumer using assign()): allowed while the group is Empty. For a
        consumer-protocol group (KIP-848) `generation` is the member epoch (STALE_MEMBER_EPOCH
        when it is not the member's current one; `api_version` below 9 is refused for members).
        A generation >= 0 for an unknown group is GROUP_ID_NOT_FOUND from `api_version` 9 on,
        ILLEGAL_GENERATION before (and when `api_version` is None)."""
        err = self._check_active()
        if not err and not group_id:
            err = E.INVALID_GROUP_ID
        if err:
            return {tp: err for tp in offsets}
        cg = self.consumer_groups.get(group_id)
        if cg is not None:
            err = self._consumer_commit_error(cg, generation, member_id, api_version)
            if err:
                return {tp: err for tp in offsets}
            return await self._write_offsets(group_id, offsets)
        g = self.groups.get(group_id)
        if g is None:
            if generation >= 0:
                # a member of a group we do not know (a KIP-848 group lost by a restart, a deleted
                # group): Kafka answers GROUP_ID_NOT_FOUND from v9 on, for both protocols, and
                # ILLEGAL_GENERATION before, for compatibility
                err = E.GROUP_ID_NOT_FOUND if api_version is not None and api_version >= 9 else E.ILLEGAL_GENERATION
                return {tp: err for tp in offsets}
            g = Group(group_id, state_timestamp_ms=self.clock())
            self.groups[group_id] = g
        err = self._commit_error(g, generation, member_id, group_instance_id)
        if err:
            return {tp: err for tp in offsets}
        return await self._write_offsets(group_id, offsets)

    async def _write_offsets(self, group_id: str, offsets: Mapping[TopicPartition, OffsetAndMetadata]
                             ) -> dict[TopicPartition, int]:
        """Append the offsets the group's checks let through; per-partition errors."""
        result: dict[TopicPartition, int] = {}
        good: dict[TopicPartition, OffsetAndMetadata] = {}
        now = self.clock()
        for tp, om in offsets.items():
            e = self._partition_error(*tp)
            if not e and len((om.metadata or "").encode()) > self.config.offset_metadata_max_bytes:
                e = E.OFFSET_METADATA_TOO_LARGE
            result[tp] = e
            if not e:
                good[tp] = om if om.commit_timestamp >= 0 else OffsetAndMetadata(
                    om.offset, om.metadata or "", now, om.leader_epoch, om.expire_timestamp)
        if good:
            assert self.offsets is not None
            try:
                if self.config.fsync_commits or self.offsets.sync_commits():  # fsync off the loop
                    await self._loop.run_in_executor(None, lambda: self.offsets.commit(group_id, good, fsync=True))
                else:
                    self.offsets.commit(group_id, good)
            except Exception as e:
                log.error("group %s: cannot write offsets to %s: %s", group_id, OFFSETS_TOPIC, e)
                code = getattr(e, "error_code", E.UNKNOWN_SERVER_ERROR)
                for tp in good:
                    result[tp] = code if code in (E.NOT_COORDINATOR,) else E.COORDINATOR_NOT_AVAILABLE
        return result

    def _commit_error(self, g: Group, generation: int, member_id: str, instance: str | None) -> int:
        """Kafka's order (ClassicGroup.validateOffsetCommit): the member and its generation are
        checked before the state, so only a current member hears REBALANCE_IN_PROGRESS while the
        group is CompletingRebalance; anyone else learns at once that it is not one."""
        if g.is_(S.DEAD):
            return E.COORDINATOR_NOT_AVAILABLE
        if generation < 0 and g.is_(S.EMPTY):
            return E.NONE  # from outside the group protocol (admin, assign())
        if g.fences(instance, member_id):
            return E.FENCED_INSTANCE_ID
        if instance and instance not in g.static:
            return E.UNKNOWN_MEMBER_ID
        m = g.members.get(member_id)
        if m is None:
            return E.UNKNOWN_MEMBER_ID
        if generation != g.generation:
            return E.ILLEGAL_GENERATION
        if g.is_(S.COMPLETING_REBALANCE):
            return E.REBALANCE_IN_PROGRESS
        self._heartbeat_ok(g, m)
        return E.NONE

    async def fetch(self, group_id: str, partitions: Iterable[TopicPartition] | None = None, *,
                    require_stable: bool = False, member_id: str | None = None,
                    member_epoch: int = -1) -> tuple[int, dict[TopicPartition, OffsetAndMetadata | None]]:
        """OffsetFetch: (error, offsets). `partitions` None = every partition with an offset;
        asked-for partitions without one map to None (the wire answer is offset -1). `member_id`
        and `member_epoch` (v9) are checked for a consumer-protocol group only, as Kafka does."""
        err = self._check_active()
        if err:
            return err, {}
        cg = self.consumer_groups.get(group_id)
        if cg is not None:
            err = self._consumer_fetch_error(cg, member_id, member_epoch)
            if err:
                return err, {}
        assert self.offsets is not None
        if partitions is None:
            return E.NONE, dict(self.offsets.fetch(group_id))
        parts = list(partitions)
        have = self.offsets.fetch(group_id, parts)
        return E.NONE, {tp: have.get(tp) for tp in parts}

    async def delete_offsets(self, group_id: str, partitions: Iterable[TopicPartition]) -> tuple[int, dict[TopicPartition, int]]:
        """OffsetDelete: allowed for an Empty group, or for topics a consumer group does not
        subscribe to (GROUP_SUBSCRIBED_TO_TOPIC otherwise). A live classic group of another
        protocol type is NON_EMPTY_GROUP; one of protocol type "consumer" whose subscriptions
        cannot be told (no protocol chosen yet, as in its first rebalance, or metadata we cannot
        read) counts as subscribed to every topic, as Kafka's ClassicGroup.isSubscribedToTopic.
        A partition that does not exist is UNKNOWN_TOPIC_OR_PARTITION whatever the group."""
        err = self._check_active()
        parts = list(partitions)
        if err:
            return err, {}
        g = self.groups.get(group_id)
        cg = self.consumer_groups.get(group_id)
        subscribed: set[str] = set()
        every_topic = False
        if cg is not None:
            subscribed = self._consumer_subscribed(cg)
        elif g is None or g.is_(S.DEAD):
            return E.GROUP_ID_NOT_FOUND, {}
        elif not g.is_(S.EMPTY):
            if g.protocol_type != "consumer":
                return E.NON_EMPTY_GROUP, {}
            topics = g.subscribed_topics()
            every_topic = topics is None
            subscribed = topics or set()
        result: dict[TopicPartition, int] = {}
        victims = []
        for tp in parts:
            # a partition that does not exist first (Kafka's KafkaApis checks the metadata before
            # the coordinator sees the request), then the group's subscription
            result[tp] = self._partition_error(*tp)
            if not result[tp] and (every_topic or tp[0] in subscribed):
                result[tp] = E.GROUP_SUBSCRIBED_TO_TOPIC
            if not result[tp]:
                victims.append(tp)
        assert self.offsets is not None
        if victims:
            self.offsets.delete_offsets(group_id, victims)
        return E.NONE, result

    # -- expiry ----------------------------------------------------------------------------------------------
    def _schedule_expiry(self) -> None:
        self._expiry_task = self._loop.call_later(self.config.offsets_retention_check_interval_ms / 1000,
                                                  self._expiry_tick)

    def _expiry_tick(self) -> None:
        if self.state != "active":
            return
        try:
            self.expire_offsets()
        except Exception:
            log.exception("offsets expiry failed")
        self._schedule_expiry()

    def expire_offsets(self, now_ms: int | None = None) -> dict[str, list[TopicPartition]]:
        """Tombstone the offsets of groups Empty for longer than offsets.retention.minutes
        (measured from when the group became Empty, or the commit when that is unknown); an Empty
        group with no offsets left becomes Dead and its metadata is tombstoned."""
        if self.offsets is None:
            return {}
        now = self.clock() if now_ms is None else now_ms

        def eligible(gid: str) -> int | None:
            cg = self.consumer_groups.get(gid)
            if cg is not None:
                return None if cg.members else cg.state_timestamp_ms
            g = self.groups.get(gid)
            if g is None:
                return -1
            return g.state_timestamp_ms if g.is_(S.EMPTY) else None

        removed = self.offsets.expire(now, self.config.offsets_retention_minutes * 60_000, eligible=eligible)
        for g in list(self.groups.values()):  # Empty and nothing left: Dead, as in Kafka's cleanup
            self._drop_if_unused(g)
        for gid, cg in list(self.consumer_groups.items()):
            if not cg.members and not self._has_offsets_of(gid):
                del self.consumer_groups[gid]
        if removed:
            log.info("expired offsets of %d groups", len(removed))
        return removed

    def _has_offsets_of(self, group_id: str) -> bool:
        return self.offsets is not None and self.offsets.has_offsets(group_id)

    def _on_topic_change(self, topic: str, change: str) -> None:
        """A deleted topic takes its committed offsets with it (may run on any thread)."""
        if change != "delete" or topic == OFFSETS_TOPIC or self.offsets is None:
            return
        n = self.offsets.remove_topic(topic)
        if n:
            log.info("removed %d committed offsets of deleted topic %s", n, topic)
