"""What ``StreamMux`` reads with and keeps per followed stream: the per-stream and
per-read records, its ``XREAD`` commands and their replies, stream-id order, and the first
entries of a stream read in the process's shared pipeline (``read_start``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from shared.bells import BellListener
from shared.protocol import event_id_key
from shared.resp import Lane, bulk, pack
from shared.write_batcher import write_batcher

Entry = tuple[str, dict[bytes, bytes]]
Deliver = Callable[[str, dict[bytes, bytes]], None]


@dataclass(slots=True)
class _Subscription:
    key: str
    last_id: str
    deliver: Deliver
    packed_id: bytes = b""  # last_id as a RESP bulk string, for the next XREAD
    packed_key: bytes = b""
    # with push: Redis confirmed the subscription (every later entry will be pushed), and
    # a read sent since then caught up; pushes that come while catching up wait here
    confirmed: bool = False
    confirmations: int = 0  # a read sent before the latest one cannot catch it up
    synced: bool = False
    deferred_pushes: list[tuple[str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.packed_id = bulk(self.last_id.encode())
        self.packed_key = bulk(self.key.encode())

    def advance(self, entry_id: str) -> None:
        self.last_id = entry_id
        self.packed_id = bulk(entry_id.encode())


@dataclass(slots=True)
class _ReadGroup:
    """Streams read together by one blocking ``XREAD`` (all of them, or one slot's)."""

    wake_key: str
    wake_id: str = "0-0"  # the doorbell key is unique to this process: read all of it
    subs: dict[str, _Subscription] = field(default_factory=dict)
    packed_keys: bytes | None = None  # RESP of the followed keys, in subs order
    ringing: bool = False  # rung since the reader took its list of streams
    task: asyncio.Task[None] | None = None
    lane: Lane | None = None  # the reader's connection, kept between reads
    # with push
    bells: BellListener | None = None
    bells_task: asyncio.Task[None] | None = None
    rung: dict[str, None] = field(default_factory=dict)  # streams to catch up, in order
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def blocking_read(self, subs: dict[str, _Subscription], block_ms: int) -> bytes:
        """``XREAD COUNT 256 BLOCK ms STREAMS wake *keys wake_id *ids``, packed by hand.

        redis-py packs every argument in Python on every call (about 6 ms for a thousand
        streams). Here the keys are packed once per change of the followed set, and each
        stream's id when it changes, so a read costs a join.
        """
        if self.packed_keys is None:
            self.packed_keys = b"".join(bulk(key.encode()) for key in subs)
        parts = (b"XREAD COUNT 256 BLOCK %d STREAMS" % block_ms).split(b" ")
        return b"".join(
            [
                b"*%d\r\n" % (len(parts) + 2 + 2 * len(subs)),
                *(bulk(part) for part in parts),
                bulk(self.wake_key.encode()),
                self.packed_keys,
                bulk(self.wake_id.encode()),
                *(sub.packed_id for sub in subs.values()),
            ]
        )


def catch_up_read(subs: dict[str, _Subscription]) -> bytes:
    """``XREAD COUNT 256 STREAMS *keys *ids`` without blocking: the catch-up of streams
    whose pushes may have been missed."""
    return b"".join(
        [
            b"*%d\r\n$5\r\nXREAD\r\n$5\r\nCOUNT\r\n$3\r\n256\r\n$7\r\nSTREAMS\r\n"
            % (4 + 2 * len(subs)),
            *(sub.packed_key for sub in subs.values()),
            *(sub.packed_id for sub in subs.values()),
        ]
    )


async def read_start(redis: aioredis.Redis, key: str, count: int = 64) -> list[Entry]:
    """The first ``count`` entries of ``key``, in the process's shared pipeline: an ASR
    job's first audio (sent with the job) then arrives in the same round trip as the job's
    checkpoint, not in a follow's catch-up read after it (``follow(..., read=...)``)."""

    async def through_redis_py() -> object:
        return await redis.xrange(key, count=count)

    packed = pack(b"XRANGE", key.encode(), b"-", b"+", b"COUNT", b"%d" % count)
    reply = await write_batcher(redis).call(key, packed, 1, through_redis_py)
    entries: list[Entry] = []
    for raw_id, flat in reply or ():  # type: ignore[union-attr]
        fields = flat if isinstance(flat, dict) else dict(zip(flat[::2], flat[1::2], strict=True))
        entries.append((raw_id.decode() if isinstance(raw_id, bytes) else raw_id, fields))
    return entries


def _newer(entry_id: str, than: str) -> bool:
    return event_id_key(entry_id) > event_id_key(than)


def parse_xread(reply: object) -> list[tuple[str, list[Entry]]]:
    """XREAD's reply (a RESP3 map or a RESP2 list; nil when the block timed out)."""
    if not reply:
        return []
    if isinstance(reply, ResponseError):
        raise reply
    pairs = reply.items() if isinstance(reply, dict) else reply  # type: ignore[union-attr]
    out = []
    for raw_key, entries in pairs:
        parsed = []
        for raw_id, flat in entries:
            fields = dict(zip(flat[::2], flat[1::2], strict=True)) if flat else {}
            parsed.append((raw_id.decode() if isinstance(raw_id, bytes) else raw_id, fields))
        key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        out.append((key, parsed))
    return out
