"""Every Redis stream, consumer group and key the system uses, in one place.

All names start with ``KeyPrefix.prefix`` (setting ``STREAM_PREFIX``, default ``vna``)
so several deployments can share one Redis. Messages are msgpack in a single field
``m`` (see ``shared.messages``).

Work streams (carry a consumer group, so they NEVER get a TTL; trimmed with MAXLEN ~;
an entry is deleted (XDEL, in the MULTI of its XACK) once its job is done, so they hold
only work queued or in progress):

* ``{p}:asr:jobs``  group ``asr``  -- ``AsrJob``: one entry per utterance. The worker that
  claims it follows the utterance's audio stream to its end, so all audio of one
  utterance reaches one recogniser.
* ``{p}:llm:jobs``  group ``llm``  -- ``LlmJob``: one entry per user request (final
  transcript or a ``voice_command``).
* ``{p}:tts:jobs``  group ``tts``  -- ``TtsJob``: one entry per reply; the claiming worker
  follows the reply's sentence stream, so all sentences of one reply reach one voice.
* ``{p}:dead``      no group      -- ``DeadLetter``: jobs that could not be decoded or
  failed too often; kept for inspection, trimmed.

Per-turn input streams (no group, read with XREAD by the one worker that owns the turn;
TTL ``TURN_TTL_SECONDS`` refreshed on each write):

* ``{p}:asr:in:{session}:{turn}`` -- ``InputChunk`` with PCM audio, then one with ``end``.
* ``{p}:tts:in:{session}:{turn}`` -- ``InputChunk`` with one sentence of text each, then
  one with ``end``.

Per-turn checkpoints (``shared.checkpoint``; TTL ``TURN_TTL_SECONDS``, deleted once the
job is acknowledged):

* ``{p}:ckpt:{kind}:{session}:{turn}`` hash -- a stage's progress on one turn, written
  atomically with its output: ``v`` (version, fences a worker that lost its claim),
  ``done``; ASR ``heard`` (input seq of the last partial sent); LLM ``tts_job``,
  ``chars`` (reply text sent as deltas), ``sentences``, ``reply``, ``remembered``; TTS
  ``chunks`` (next ``chunk_index``), ``after`` (input entry id of the last sentence fully
  sent), ``audio_ms``, ``first_chunk_ms``.

Per-session keys (``Keys.session_keys``; TTL ``SESSION_TTL_SECONDS`` refreshed on each
write, and all of them by a connected client's ``ping``; when the client disconnects all
of them get ``RESUME_WINDOW_SECONDS``, and a resume gives all of them
``SESSION_TTL_SECONDS`` again, ``gateway.session_store``):

* ``{p}:reply:{session}`` stream, no group -- ``ReplyEvent``: everything the client should
  see, in order, from every stage. The gateway XREADs it from the last id it relayed.
* ``{p}:early:{session}`` stream, no group -- ``ReplyEvent``s of replies started before the
  end of speech was confirmed (``PREEMPTIVE_REPLY``), under their attempt's turn id
  (``t5.p1``). The gateway keeps them aside, then copies a used attempt's events to the
  reply stream as the turn's own (``t5``) or forgets a dropped one (``shared.early_reply``).
* ``{p}:early:verdicts:{session}`` hash -- attempt turn id -> ``open:<words>``, ``used`` or
  ``dropped``: the one record of whether an attempt is the turn's reply
  (``shared.early_reply``, which says who writes it and when).
* ``{p}:history:{session}`` list of msgpack ``HistoryTurn`` (newest last, bounded).
* ``{p}:news:state:{session}`` string, msgpack: the stories last presented to the session
  (for "more about the first story", "next", "repeat").
* ``{p}:lang:{session}`` string -- the language detected from the session's first request
  that told one (``shared.languages``), for sessions that did not say ``?lang=``; set once
  (NX) by the LLM stage, its TTL refreshed with the session record's at every turn, so it
  lives as long as the session.
* ``{p}:session:{session}`` hash -- the resume record: hashed resume token, user id,
  reply options, turn counter. Its TTL shrinks to ``RESUME_WINDOW_SECONDS`` when the
  client disconnects; with it expire the reply stream, history and news state.
* ``{p}:resumes:{session}`` string -- resumes of the session in the current minute
  (``RESUMES_PER_MINUTE``); TTL 60 s from the first, not a session key (it expires alone).
* ``{p}:cancelled:{session}`` hash -- turn id -> msgpack record of a reply the client
  cancelled (chunks and sentences delivered), for workers that start late, for replay
  and for the history (which keeps only what was heard).

Signals:

* ``{p}:control`` pub/sub channel -- "cancel" of a turn (every worker process drops
  work on it within milliseconds) and "takeover" of a session resumed on another
  connection (its old socket is closed).

Per process:

* ``{p}:wake:{owner}`` stream, no group, TTL -- a doorbell (``shared.mux``): a process's
  single reader blocks on all the streams it follows (a gateway: its sessions' reply
  streams; a worker: its turns' input streams) plus this one; following a new stream
  rings it so the stream joins the read at once. Deleted on clean shutdown.

Liveness:

* ``{p}:hb:{kind}`` sorted set, no TTL: consumer name -> last heartbeat (ms). Workers
  write it from their upkeep loop; ``/ready`` counts members seen recently; stale
  members are removed by the workers themselves.

Shared caches:

* ``{p}:news:feed:{sha1(url)}`` string, msgpack list of stories, TTL ``NEWS_CACHE_TTL``.

Partitions and Redis Cluster (``JOB_PARTITIONS``, ``REDIS_CLUSTER``):

With one Redis and the default ``JOB_PARTITIONS=1`` every name is exactly as above.
``JOB_PARTITIONS=N`` on one Redis splits each work stream into ``{p}:{kind}:jobs:{i}``.
On a Redis Cluster every key of a session (its per-session and per-turn keys) and the
work streams of its partition carry one hash tag, the partition's: ``{p}:{<tag>}:reply:
{session}``, ``{p}:{<tag>}:asr:jobs``, ``{p}:{<tag>}:dead``... A session's partition is
``crc32(session) % N``, so the checkpoint commit (which appends to the reply stream and to
the next stage's work stream) and the ack (XACK + XDEL + the turn's keys) each touch one
slot. The N tags are chosen so their slots spread evenly over the 16384 slots (and so
over the masters). The mux's doorbell gets one key per slot it reads,
``{p}:wake:{owner}{<tag>}``. An early reply's scratch agent session ``<session>~<turn>``
hashes as its session (it is copied and renamed onto the session's keys). The news cache
is read with one MGET, so on a cluster its keys share the tag ``{news}``
(``{p}:{news}:feed:{sha1(url)}``). Changing ``JOB_PARTITIONS`` or the cluster option
renames keys: do it with the work streams drained (sessions in their resume window are
lost).
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

ASR_GROUP = "asr"
LLM_GROUP = "llm"
TTS_GROUP = "tts"


def partition_tags(partitions: int) -> tuple[str, ...]:
    """One hash tag per partition, the i-th hashing into the i-th Nth of the slots."""
    tags = []
    for index in range(partitions):
        low = index * REDIS_CLUSTER_HASH_SLOTS // partitions
        high = (index + 1) * REDIS_CLUSTER_HASH_SLOTS // partitions
        salt = 0
        while not low <= key_slot(f"{index}.{salt}".encode()) < high:
            salt += 1
        tags.append(f"{index}.{salt}")
    return tuple(tags)


def hash_tag(key: str) -> str | None:
    """The part of ``key`` Redis Cluster hashes (between the first ``{`` and ``}``)."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1 : end] if start >= 0 and end > start + 1 else None


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder bound to one prefix (and, for a cluster, to its partition tags)."""

    prefix: str = "vna"
    partitions: int = 1
    cluster: bool = False
    _tags: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.cluster:
            object.__setattr__(self, "_tags", partition_tags(self.partitions))

    def partition(self, session_id: str) -> int:
        """The work-stream partition (and, on a cluster, the slot) of a session."""
        if self.partitions == 1:
            return 0
        # an early reply's scratch agent state (``<session>~<turn>``) stays with its session
        owner = session_id.split("~", 1)[0]
        return zlib.crc32(owner.encode()) % self.partitions

    def _scope(self, session_id: str) -> str:
        """The prefix of a session's keys: the hash tag of its partition on a cluster."""
        if not self.cluster:
            return self.prefix
        return f"{self.prefix}:{{{self._tags[self.partition(session_id)]}}}"

    # work streams -------------------------------------------------------------
    def jobs(self, kind: str, partition: int = 0) -> str:
        """A work stream of a stage kind; its consumer group is named after the kind."""
        if self.cluster:
            return f"{self.prefix}:{{{self._tags[partition]}}}:{kind}:jobs"
        if self.partitions > 1:
            return f"{self.prefix}:{kind}:jobs:{partition}"
        return f"{self.prefix}:{kind}:jobs"

    def job_streams(self, kind: str) -> tuple[str, ...]:
        """Every partition's work stream of a kind (a worker reads them all)."""
        return tuple(self.jobs(kind, index) for index in range(self.partitions))

    def jobs_for(self, kind: str, session_id: str) -> str:
        """The work stream that carries a session's jobs of a kind."""
        return self.jobs(kind, self.partition(session_id))

    def dead_letters_of(self, partition: int) -> str:
        """Where a partition's failed jobs go (on a cluster: next to its work streams)."""
        if self.cluster:
            return f"{self.prefix}:{{{self._tags[partition]}}}:dead"
        return f"{self.prefix}:dead"

    # per turn -------------------------------------------------------------------
    def asr_input(self, session_id: str, turn_id: str) -> str:
        return f"{self._scope(session_id)}:asr:in:{session_id}:{turn_id}"

    def tts_input(self, session_id: str, turn_id: str) -> str:
        return f"{self._scope(session_id)}:tts:in:{session_id}:{turn_id}"

    def checkpoint(self, kind: str, session_id: str, turn_id: str) -> str:
        return f"{self._scope(session_id)}:ckpt:{kind}:{session_id}:{turn_id}"

    # per session ----------------------------------------------------------------
    def reply(self, session_id: str) -> str:
        return f"{self._scope(session_id)}:reply:{session_id}"

    def early_replies(self, session_id: str) -> str:
        return f"{self._scope(session_id)}:early:{session_id}"

    def early_verdicts(self, session_id: str) -> str:
        return f"{self._scope(session_id)}:early:verdicts:{session_id}"

    def history(self, session_id: str) -> str:
        return f"{self._scope(session_id)}:history:{session_id}"

    def news_state(self, session_id: str) -> str:
        return f"{self._scope(session_id)}:news:state:{session_id}"

    def session(self, session_id: str) -> str:
        return f"{self._scope(session_id)}:session:{session_id}"

    def language(self, session_id: str) -> str:
        return f"{self._scope(session_id)}:lang:{session_id}"

    def cancelled(self, session_id: str) -> str:
        return f"{self._scope(session_id)}:cancelled:{session_id}"

    def resumes(self, session_id: str) -> str:
        return f"{self._scope(session_id)}:resumes:{session_id}"

    def session_keys(self, session_id: str) -> tuple[str, ...]:
        """Keys that live and expire with the session (resume window)."""
        return (
            self.session(session_id),
            self.reply(session_id),
            self.history(session_id),
            self.news_state(session_id),
            self.cancelled(session_id),
            self.early_replies(session_id),
            self.early_verdicts(session_id),
            self.language(session_id),
        )

    @property
    def control(self) -> str:
        return f"{self.prefix}:control"

    def heartbeats(self, kind: str) -> str:
        return f"{self.prefix}:hb:{kind}"

    def mux_wake(self, owner: str) -> str:
        return f"{self.prefix}:wake:{owner}"

    # caches -------------------------------------------------------------------------
    def news_feed(self, url: str) -> str:
        digest = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()
        if self.cluster:  # one slot for the whole cache: the agent reads it with MGET
            return f"{self.prefix}:{{news}}:feed:{digest}"
        return f"{self.prefix}:news:feed:{digest}"
