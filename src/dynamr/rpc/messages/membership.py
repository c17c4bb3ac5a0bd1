"""Membership messages: gossip of the cluster state, phase acknowledgements, joining, and admin changes.

The cluster state travels as :class:`ClusterStateRecord` (the wire form of
:class:`dynamr.store.membership.ClusterState`; that module converts between the two).
"""

from __future__ import annotations

from dataclasses import dataclass

from dynamr.rpc.messages.base import Message, Record, record, register


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class MemberRecord(Record):
    node_id: str
    host: str
    port: int
    #: joining, valid, leaving or left
    status: str


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeRecord(Record):
    #: join, leave or remove
    action: str
    node_id: str


@record
@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterStateRecord(Record):
    version: int
    author: str
    members: tuple[MemberRecord, ...]
    owners: tuple[str, ...]
    pending: tuple[str, ...]
    phase: str
    acks: tuple[str, ...]
    since: int
    staged: tuple[ChangeRecord, ...]
    coordinator: str


@register(60)
@dataclass(frozen=True, slots=True, kw_only=True)
class StatePush(Message):
    """Gossip: the sender's cluster state, newer than the one the receiver said it has."""

    state: ClusterStateRecord


@register(61)
@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseAck(Message):
    """To the claimant: ``node_id`` has done its part of ``phase`` (it held state ``version``)."""

    node_id: str
    version: int
    phase: str


@register(62)
@dataclass(frozen=True, slots=True, kw_only=True)
class JoinCluster(Message):
    """A new node asks to become a member (registered as joining; an operator stages and commits its join).
    It says its settings that must match the cluster's."""

    node_id: str
    host: str
    port: int
    n: int
    vnodes: int


@register(63)
@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterAdmin(Message):
    """An operator's change: ``join``, ``leave`` or ``remove`` (staged, of ``node_id``), ``unstage`` or
    ``commit``; or ``show`` (change nothing). Any node takes it and hands it to the claimant."""

    action: str
    node_id: str = ""


@register(64)
@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterStateReply(Message):
    state: ClusterStateRecord
