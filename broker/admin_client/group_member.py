"""`GroupMember`: one member of a consumer group, for `console-consumer --group`.

Owns: the member's side of the classic group protocol over an `AdminClient` (JoinGroup /
SyncGroup / Heartbeat / LeaveGroup / OffsetCommit), with protocol type "consumer" and the
"range" assignor; when this member is the leader it computes every member's assignment.

Invariants: `join()` retries until it holds an assignment of the current generation (or raises
`KafkaError` after the rebalance timeout plus 30 s); `heartbeat()` returns False when the caller
must `join()` again; `member_id` is "" whenever the coordinator no longer knows this member.
"""

from __future__ import annotations

import time

from .client import AdminClient
from .codes import (API_HEARTBEAT, API_JOIN_GROUP, API_LEAVE_GROUP, API_SYNC_GROUP, ILLEGAL_GENERATION,
                    MEMBER_ID_REQUIRED, REBALANCE_IN_PROGRESS, RETRIABLE_COORDINATOR, UNKNOWN_MEMBER_ID,
                    KafkaError)
from .connection import code_of
from .consumer_protocol import decode_assignment, decode_subscription, encode_assignment, encode_subscription, range_assign


class GroupMember:
    """One member of a consumer group, with the range assignor. `join()` returns this member's
    partitions; `heartbeat()` returns False when the group is rebalancing (join again)."""

    def __init__(self, client: AdminClient, group: str, topics: list[str], *, session_timeout_ms: int = 10000,
                 rebalance_timeout_ms: int = 30000):
        self.client = client
        self.group = group
        self.topics = topics
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.member_id = ""
        self.generation = -1
        self.assignment: list[tuple[str, int]] = []

    def join(self) -> list[tuple[str, int]]:
        self.client.find_coordinator(self.group)
        deadline = time.monotonic() + self.rebalance_timeout_ms / 1000 + 30
        while True:
            if time.monotonic() > deadline:
                raise KafkaError(27, f"could not join group {self.group!r}: rebalance did not finish")
            resp = self.client.request(API_JOIN_GROUP, {
                "group_id": self.group, "session_timeout": self.session_timeout_ms,
                "rebalance_timeout": self.rebalance_timeout_ms, "member_id": self.member_id,
                "group_instance_id": None, "protocol_type": "consumer",
                "protocols": [{"name": "range", "metadata": encode_subscription(self.topics)}], "reason": None},
                timeout=self.rebalance_timeout_ms / 1000 + 10)
            code = code_of(resp.error_code)
            if code == MEMBER_ID_REQUIRED:
                self.member_id = resp.member_id
                continue
            if code in (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION):
                self.member_id = ""
                continue
            if code in (REBALANCE_IN_PROGRESS, *RETRIABLE_COORDINATOR):
                time.sleep(0.1)
                continue
            if code:
                raise KafkaError(code, where=f" (JoinGroup {self.group!r})")
            self.member_id = resp.member_id
            self.generation = int(resp.generation_id)
            assignments = []
            if resp.leader == resp.member_id:
                subs = {m.member_id: decode_subscription(bytes(m.metadata)) for m in resp.members}
                wanted = sorted({t for ts in subs.values() for t in ts})
                md = self.client.metadata(wanted)["topics"]
                counts = {t: len(v["partitions"]) for t, v in md.items() if not v["error"]}
                plan = range_assign(subs, counts)
                assignments = [{"member_id": m, "assignment": encode_assignment(tps)} for m, tps in plan.items()]
            sresp = self.client.request(API_SYNC_GROUP, {
                "group_id": self.group, "generation_id": self.generation, "member_id": self.member_id,
                "group_instance_id": None, "protocol_type": "consumer", "protocol_name": "range",
                "assignments": assignments}, timeout=self.rebalance_timeout_ms / 1000 + 10)
            scode = code_of(sresp.error_code)
            if scode in (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION):
                continue
            if scode == UNKNOWN_MEMBER_ID:
                self.member_id = ""
                continue
            if scode:
                raise KafkaError(scode, where=f" (SyncGroup {self.group!r})")
            self.assignment = decode_assignment(bytes(sresp.assignment or b""))
            return self.assignment

    def heartbeat(self) -> bool:
        resp = self.client.request(API_HEARTBEAT, {"group_id": self.group, "generation_id": self.generation,
                                                   "member_id": self.member_id, "group_instance_id": None})
        code = code_of(resp.error_code)
        if code in (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID):
            if code == UNKNOWN_MEMBER_ID:
                self.member_id = ""
            return False
        if code:
            raise KafkaError(code, where=f" (Heartbeat {self.group!r})")
        return True

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        self.client.offset_commit(self.group, offsets, generation=self.generation, member_id=self.member_id)

    def leave(self) -> None:
        if not self.member_id:
            return
        try:
            self.client.request(API_LEAVE_GROUP, {"group_id": self.group, "member_id": self.member_id,
                                                  "members": [{"member_id": self.member_id,
                                                               "group_instance_id": None, "reason": None}]})
        finally:
            self.member_id = ""
