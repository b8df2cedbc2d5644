"""The reply relay lets go of a session when its connection ends (a gateway that kept
following the reply streams of closed sessions grew by ~70 KB per connection)."""

from __future__ import annotations

from redis.asyncio import Redis

from gateway.relay import ReplyRelay
from shared.keys import Keys
from shared.messages import ReplyEvent


class _Delivery:
    def __init__(self) -> None:
        self.events: list[ReplyEvent] = []

    def deliver(self, event: ReplyEvent, entry_id: str) -> None:
        self.events.append(event)


async def test_unsubscribe_with_the_sessions_own_bound_method_releases_it(redis: Redis) -> None:
    relay = ReplyRelay(redis, Keys("relaytest"))
    first, second = _Delivery(), _Delivery()
    await relay.subscribe("s1", first.deliver)
    await relay.subscribe("s2", second.deliver)
    relay.unsubscribe("s1", _Delivery().deliver)  # another connection's: s1 stays
    assert relay._mux.followed == 2
    relay.unsubscribe("s1", first.deliver)  # a new bound-method object, same delivery
    relay.unsubscribe("s2", second.deliver)
    assert relay._mux.followed == 0 and not relay._owners


async def test_only_the_owner_of_a_followed_stream_lets_go_of_it(redis: Redis) -> None:
    """A session resumed on the same gateway follows its early replies on the new
    connection; the old connection's close must not take that stream away."""
    relay = ReplyRelay(redis, Keys("relaytest"))
    old, new = _Delivery(), _Delivery()
    await relay.follow("relaytest:early:s1", old.deliver)
    await relay.follow("relaytest:early:s1", new.deliver)  # the resumed connection
    relay.unfollow("relaytest:early:s1", old.deliver)  # the old connection closes
    assert relay._mux.followed == 1
    relay.unfollow("relaytest:early:s1", new.deliver)
    assert relay._mux.followed == 0 and not relay._owners
