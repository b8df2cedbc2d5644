"""Early (preemptive) replies: the protocol between the gateway and the workers.

With ``PREEMPTIVE_REPLY`` on, the gateway starts the reply to a complete hypothesis
during a pause, before the end of speech is confirmed. That reply is an *attempt*
(``t5.p1`` for utterance ``t5``; the client never sees that id). Whether it becomes
the turn's reply is decided once, in one place, and every side reads it there.

The record: ``Keys.early_verdicts(session)``, a hash, attempt id -> ``open:<words>``,
``used`` or ``dropped``. ``open`` is written only after the attempt's LLM job, in one
script (``EarlyVerdicts.open``): never a record without its job (a job left without its
record reads ``dropped``, a wasted call at worst). It leaves ``open`` once, atomically
(``EarlyVerdicts.decide``): to ``used`` only when the recogniser's final transcript is
exactly the words the attempt answered; to ``dropped`` for anything else, including
every withdrawal. An attempt never opened
(its publish failed, or its record expired) is ``dropped`` for everyone.

Who does what:

1. Gateway: opens the attempt (``open``); its LLM and TTS workers write its events to
   ``Keys.early_replies(session)`` under the attempt's id (``events_key``), which the
   gateway follows and keeps aside. The end-of-speech marker of the utterance names the
   attempt (``InputChunk.preempted``).
2. ASR worker: with the final transcript, ``decide(attempt, final)``: ``used`` -> it
   publishes no LLM job; ``dropped`` -> the normal LLM job for ``t5``, as without an
   attempt. Then the final transcript goes out (so whoever sees it can read the verdict).
3. Gateway, on that final transcript: ``decide(attempt, None)``, which returns the
   verdict already given (or drops an attempt nobody decided). ``used``: the kept events
   and those to come are copied to the reply stream as ``t5``'s; ``dropped``: its
   workers are cancelled and its events forgotten.
4. LLM worker, at the end of the attempt: waits for the verdict (``await_verdict``,
   woken by the control channel), and past its wait withdraws the attempt itself.
   ``used``: it keeps the agent's state and the history under ``t5``.

Anyone who sees the attempt break before the verdict withdraws it (``decide(attempt,
None)``): the ASR worker then publishes the normal job. Failures:

==========================================  ==============================================
failure                                     what happens
==========================================  ==============================================
publishing the attempt fails                never ``open``: the ASR worker publishes the
                                            normal job
the user speaks on / the hypothesis changes gateway withdraws it before the end marker
too many events kept while undecided        gateway withdraws it; if the ASR worker
                                            decided ``used`` first, the events go on
the verdict cannot be read (Redis blip)     read again a few times, else at close, where
                                            the attempt is withdrawn (or copied if used)
client gone before the final transcript     gateway withdraws it at close: normal job,
                                            whose reply a resume replays
client gone after ``used``                  the closing connection copies the rest of
                                            the attempt to the reply stream
gateway restarts (SIGTERM)                  as "client gone"; the gateway waits for
                                            those copies before it exits
LLM worker killed mid-attempt               its job is reclaimed like any job and resumes
                                            from its checkpoint into the early stream
an attempt's job fails or is dead-lettered  its error goes to the early stream under the
                                            attempt's id: the client sees it as ``t5``'s
                                            only if the attempt is used
ASR worker killed between verdict and final the job reruns: ``decide`` returns the same
                                            verdict, the final goes out once
the client cancels the turn                 its attempts stop whatever their verdict
gateway killed (SIGKILL) after ``used``     the copy's position is in the record: the
                                            gateway the client resumes on copies the
                                            rest from there (no resume: nothing to do,
                                            the keys expire after the resume window)
==========================================  ==============================================

No event naming an attempt id ever reaches the reply stream: the workers write an
attempt's events to the early stream only (``events_key``) and the gateway renames
them to the utterance's turn when it copies them.

The copy is resumable. Each copied event is appended by one script (``copy``) that also
records, in the same hash, the early entry id it came from (``copied:<attempt>``; ``done``
once the turn's end is copied), and appends only past that position. A gateway killed
mid-copy leaves it there; a resume of the session on any gateway reads the used attempts
whose copy is not ``done`` (``unfinished_copies``) and copies on from their position, and
a second copier (the old connection's, still alive) only skips what is copied already.
The copy stays in the gateway rather than in the workers: the LLM and TTS workers write
one attempt's events from two processes, in whatever order they finish, and only a
reader of the early stream knows the order the client must see them in.
"""

from shared.early_reply.attempts import KEPT_EVENTS_LIMIT, Attempt, Attempts, Phase, Step, as_turn
from shared.early_reply.names import (
    DROPPED,
    EARLY_OPTION,
    MAX_ATTEMPTS,
    OPEN,
    POLL_S,
    REPLY_TURN_OPTION,
    USED,
    attempt_id,
    attempt_turn,
    events_key,
    is_attempt,
    reply_turn,
)
from shared.early_reply.record import (
    BEHIND,
    COPIED,
    FINISHED,
    EarlyVerdicts,
    LlmAttempt,
    await_verdict,
)

__all__ = [
    "BEHIND",
    "COPIED",
    "DROPPED",
    "EARLY_OPTION",
    "FINISHED",
    "KEPT_EVENTS_LIMIT",
    "MAX_ATTEMPTS",
    "OPEN",
    "POLL_S",
    "REPLY_TURN_OPTION",
    "USED",
    "Attempt",
    "Attempts",
    "EarlyVerdicts",
    "LlmAttempt",
    "Phase",
    "Step",
    "as_turn",
    "attempt_id",
    "attempt_turn",
    "await_verdict",
    "events_key",
    "is_attempt",
    "reply_turn",
]
