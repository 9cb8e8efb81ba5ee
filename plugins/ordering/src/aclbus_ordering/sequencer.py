"""The publish side: numbering each series of messages, with bounded memory.

One counter per (sender, subject, key kind, key). Counters live in a least-recently-used map
of at most ``max_keys``; a counter forgotten and needed again starts a *new* series at 1 (a new
generation), so forgetting never makes a number repeat. A message published again with the
same dedup key (an application retry) gets the stamps it had the first time: the broker stores
it once, or the consumer sees a repeated number and skips it.
"""

from __future__ import annotations

import itertools
import secrets
from collections import OrderedDict
from collections.abc import Iterable

from aclbus_ordering.keys import format_stamp, subject_check

__all__ = ["Sequencer"]

CounterKey = tuple[str, str, str, str]
"""(sender, subject, header, key)"""


class _Counter:
    __slots__ = ("last", "series")

    def __init__(self, series: str) -> None:
        self.series = series
        self.last = 0


class Sequencer:
    """Hands out sequence numbers per series.

    Args:
        max_keys: Counters (and remembered stamps) kept at most.
        epoch: The epoch of this publisher's series; default: 12 random hex digits.

    Attributes:
        epoch: The epoch.
    """

    def __init__(self, max_keys: int, *, epoch: str | None = None) -> None:
        self.epoch = epoch if epoch is not None else secrets.token_hex(6)
        self._max = max_keys
        self._generation = itertools.count(1)
        self._counters: OrderedDict[CounterKey, _Counter] = OrderedDict()
        self._recent: OrderedDict[tuple[str, str], dict[str, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._counters)

    def stamp(
        self, sender: str, subject: str, msg_id: str, keys: Iterable[tuple[str, str]]
    ) -> dict[str, str]:
        """The stamp headers of a message.

        Args:
            sender: Its sender.
            subject: Where it is published.
            msg_id: Its dedup key: the same key gets the same stamps again.
            keys: ``(header, key)`` for each key it carries.

        Returns:
            ``{header: stamp}``.
        """
        recent = self._recent.get((subject, msg_id))
        if recent is not None:
            self._recent.move_to_end((subject, msg_id))
            return dict(recent)
        check = subject_check(subject)
        headers: dict[str, str] = {}
        for header, key in keys:
            counter = self._counter((sender, subject, header, key))
            counter.last += 1
            headers[header] = format_stamp(counter.series, check, counter.last)
        self._recent[(subject, msg_id)] = headers
        if len(self._recent) > self._max:
            self._recent.popitem(last=False)
        return dict(headers)

    def unstamp(
        self, sender: str, subject: str, msg_id: str, keys: Iterable[tuple[str, str]]
    ) -> None:
        """Take back the numbers of a message the broker certainly did not store.

        A number is taken back only if no later message took one since; otherwise the hole
        stays (the consumer reports it as a gap) and the stamps are kept for a retry.
        """
        headers = self._recent.get((subject, msg_id))
        if headers is None:
            return
        whole = True
        for header, key in keys:
            counter = self._counters.get((sender, subject, header, key))
            stamp = headers.get(header, "")
            if (
                counter is not None
                and stamp.startswith(counter.series + ".")
                and stamp.endswith(f".{counter.last}")
            ):
                counter.last -= 1
            else:
                whole = False
        if whole:
            del self._recent[(subject, msg_id)]

    def _counter(self, key: CounterKey) -> _Counter:
        counter = self._counters.get(key)
        if counter is not None:
            self._counters.move_to_end(key)
            return counter
        counter = self._counters[key] = _Counter(f"{self.epoch}-{next(self._generation):x}")
        if len(self._counters) > self._max:
            self._counters.popitem(last=False)
        return counter
