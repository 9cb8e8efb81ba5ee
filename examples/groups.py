"""Multicast groups: agents join and leave at run time; a multicast reaches the members of now.

    python examples/groups.py        # the embedded nats-server, or ACLBUS_BACKEND=memory

Three reviewers join the group ``reviewers``; a multicast reaches each of them once. Carol
leaves, and the next multicast reaches only Alice and Bob. Then the coordinator asks the group
for scores at once (scatter-gather) and gets one reply per current member.
"""

from __future__ import annotations

import asyncio

from aclbus import ACLMessage, Bus, Performative

GROUP = "reviewers"
REVIEWERS = ("alice", "bob", "carol")

bus = Bus()
news: dict[str, list[str]] = {name: [] for name in REVIEWERS}
arrived = asyncio.Condition()


def add_reviewer(name: str, strictness: int) -> None:
    """Make a reviewer agent: it notes the group's news and answers score requests."""
    reviewer = bus.agent(name)

    @reviewer.on(Performative.INFORM, message_type="review.news")
    async def note(msg: ACLMessage) -> None:
        """Note a piece of news sent to the group."""
        async with arrived:
            news[name].append(msg.payload)
            arrived.notify_all()

    @reviewer.on(Performative.REQUEST, message_type="review.score")
    async def score(msg: ACLMessage) -> ACLMessage:
        """Score a paper: its length, less this reviewer's strictness."""
        return msg.reply(
            Performative.INFORM, payload={"score": len(msg.payload["title"]) - strictness}
        )


for n, reviewer_name in enumerate(REVIEWERS):
    add_reviewer(reviewer_name, strictness=n)


async def wait_for_news(expected: dict[str, int], timeout: float = 10.0) -> None:
    """Wait until each named reviewer has noted the expected number of news."""

    def done() -> bool:
        return all(len(news[name]) >= count for name, count in expected.items())

    async with arrived:
        await asyncio.wait_for(arrived.wait_for(done), timeout)


async def main() -> None:
    async with bus:
        coordinator = bus.agent("coordinator")  # only sends: never started
        for name in REVIEWERS:
            await bus.agent(name).join(GROUP)
        members = await bus.group_members(GROUP)
        print(f"members of {GROUP!r}: {members}")
        assert members == ["alice", "bob", "carol"], members
        assert bus.agent("alice").groups == (GROUP,)

        await bus.multicast(
            GROUP,
            coordinator.message(
                Performative.INFORM, message_type="review.news", payload="deadline friday"
            ),
        )
        await wait_for_news({"alice": 1, "bob": 1, "carol": 1})
        print(f"first multicast reached: {sorted(n for n in REVIEWERS if news[n])}")

        await bus.agent("carol").leave(GROUP)
        print(f"carol left; members: {await bus.group_members(GROUP)}")
        await bus.multicast(
            GROUP,
            coordinator.message(
                Performative.INFORM, message_type="review.news", payload="room 101"
            ),
        )
        await wait_for_news({"alice": 2, "bob": 2})
        await asyncio.sleep(0.3)  # room for a copy to carol, if one were (wrongly) on its way
        print(f"second multicast reached: {sorted(n for n in REVIEWERS if len(news[n]) == 2)}")
        assert news["carol"] == ["deadline friday"], news["carol"]
        assert news["alice"] == news["bob"] == ["deadline friday", "room 101"], news

        # Scatter-gather over the group: one request to each member of now, replies by agent.
        gathered = await bus.gather(
            coordinator.message(
                Performative.REQUEST,
                message_type="review.score",
                payload={"title": "Agents on JetStream"},
            ),
            group=GROUP,
            timeout=5.0,
        )
        scores = {agent: reply.payload["score"] for agent, reply in gathered.replies.items()}
        print(f"gathered scores from {list(gathered.asked)}: {scores}")
        assert gathered.asked == ("alice", "bob"), gathered.asked
        assert scores == {"alice": 19, "bob": 18}, scores
        assert not gathered.errors
        assert not gathered.missing

        # The first reply is enough: count=1 returns as soon as one is in.
        first = await bus.gather(
            coordinator.message(
                Performative.REQUEST, message_type="review.score", payload={"title": "Short"}
            ),
            receivers=["alice", "bob", "carol"],  # carol serves requests still: not a group one
            count=1,
            timeout=5.0,
        )
        # Replies that came in together with the first are kept too: count is a minimum.
        print(f"count=1 returned with replies from {sorted(first.replies)}")
        assert first.replies, first
        assert set(first.replies) <= {"alice", "bob", "carol"}, first


if __name__ == "__main__":
    asyncio.run(main())
