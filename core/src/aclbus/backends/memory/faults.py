"""Deterministic fault injection: the misbehaviours of a real broker, on demand.

`Faults` says which faults to inject and how often; `FaultInjector` draws from one
``random.Random(seed)``, so the same seed, settings and sequence of operations always inject
the same faults. Every fault is off by default and costs one attribute check when off.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, fields

from aclbus.errors import ConfigurationError
from aclbus.subjects import subject_matches

__all__ = ["FaultInjector", "Faults"]

_PROBABILITIES = ("duplicate", "reorder", "drop_ack", "delay", "storm")


@dataclass(frozen=True, slots=True)
class Faults:
    """Which faults the memory engine injects into deliveries, each as a probability.

    A probability is drawn once per delivery (``drop_ack`` once per ack) to a subject that
    matches one of ``subjects``.

    Attributes:
        duplicate: A delivery is handed to the subscription twice (same attempt and sequence),
            as a client that got the same message twice would see it.
        reorder: A delivery is held back and handed over right after the next one (or after
            ``reorder_hold`` seconds if no next one comes).
        drop_ack: An ``ack`` is lost on the way: the delivery counts as acked for the handler,
            but the broker redelivers the message after its ack timeout.
        delay: A delivery reaches the subscription ``delay_seconds`` late; its ack timer runs
            from when it was sent, as with a slow network.
        storm: A delivery sets off a redelivery storm: every unacknowledged message of the
            consumer is redelivered ``storm_redeliveries`` more times at once (bounded by
            ``max_deliver``), as after a consumer leader change.
        delay_seconds: How late a delayed delivery arrives.
        reorder_hold: Seconds a held delivery waits for a next one before it goes anyway.
        storm_redeliveries: Extra deliveries of each unacked message in a storm.
        subjects: Subject patterns the faults apply to (default: every subject).
    """

    duplicate: float = 0.0
    reorder: float = 0.0
    drop_ack: float = 0.0
    delay: float = 0.0
    storm: float = 0.0
    delay_seconds: float = 0.5
    reorder_hold: float = 1.0
    storm_redeliveries: int = 3
    subjects: tuple[str, ...] = (">",)

    def __post_init__(self) -> None:
        for name in _PROBABILITIES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigurationError(
                    f"fault probability {name}={value!r} must be between 0 and 1"
                )
        if self.delay_seconds < 0:
            raise ConfigurationError(f"delay_seconds={self.delay_seconds!r} must be >= 0")
        if self.reorder_hold < 0:
            raise ConfigurationError(f"reorder_hold={self.reorder_hold!r} must be >= 0")
        if self.storm_redeliveries < 1:
            raise ConfigurationError(
                f"storm_redeliveries={self.storm_redeliveries!r} must be at least 1"
            )
        if isinstance(self.subjects, str) or not self.subjects:
            raise ConfigurationError(
                f"subjects={self.subjects!r} must be a non-empty tuple of subject patterns"
            )

    @property
    def enabled(self) -> bool:
        """True if any fault has a probability above zero."""
        return any(getattr(self, name) > 0 for name in _PROBABILITIES)

    @classmethod
    def from_object(cls, source: object) -> Faults:
        """Build `Faults` from any object with some of its attribute names (a settings model).

        Attributes ``source`` lacks keep their defaults.
        """
        if isinstance(source, Faults):
            return source
        values = {f.name: getattr(source, f.name) for f in fields(cls) if hasattr(source, f.name)}
        if "subjects" in values:
            values["subjects"] = tuple(values["subjects"])
        return cls(**values)


class FaultInjector:
    """Decides, deterministically, which deliveries suffer which `Faults`.

    Args:
        faults: The settings; None injects nothing.
        seed: Seed of the random draws.

    Attributes:
        active: True while some fault is enabled: the engine's one check per delivery.
        counts: How many faults of each kind were injected (``counts["duplicate"]``).
    """

    def __init__(self, faults: Faults | None = None, *, seed: int = 0) -> None:
        self._seed = seed
        self._random = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self._faults = Faults()
        self._all_subjects = True
        self._applies: dict[str, bool] = {}
        self.active = False
        self.faults = faults if faults is not None else Faults()

    @property
    def faults(self) -> Faults:
        """The fault settings in force; assign new ones to change them (the draws go on)."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults
        self._all_subjects = ">" in faults.subjects
        self._applies.clear()
        self.active = faults.enabled

    @property
    def seed(self) -> int:
        """The seed the draws started from."""
        return self._seed

    def reseed(self, seed: int) -> None:
        """Start the draws over from ``seed`` and clear `counts`."""
        self._seed = seed
        self._random.seed(seed)
        self.counts.clear()

    def applies(self, subject: str) -> bool:
        """Whether faults may hit a delivery of ``subject``."""
        if self._all_subjects:
            return True
        hit = self._applies.get(subject)
        if hit is None:
            hit = any(subject_matches(p, subject) for p in self._faults.subjects)
            if len(self._applies) < 10_000:
                self._applies[subject] = hit
        return hit

    def _draw(self, kind: str, probability: float) -> bool:
        if probability <= 0.0:
            return False
        if self._random.random() < probability:
            self.counts[kind] += 1
            return True
        return False

    def duplicate(self) -> bool:
        """Draw: deliver this one twice?"""
        return self._draw("duplicate", self._faults.duplicate)

    def reorder(self) -> bool:
        """Draw: hold this delivery back behind the next one?"""
        return self._draw("reorder", self._faults.reorder)

    def drop_ack(self) -> bool:
        """Draw: lose this ack?"""
        return self._draw("drop_ack", self._faults.drop_ack)

    def delay(self) -> bool:
        """Draw: make this delivery arrive ``delay_seconds`` late?"""
        return self._draw("delay", self._faults.delay)

    def storm(self) -> bool:
        """Draw: set off a redelivery storm on this delivery's consumer?"""
        return self._draw("storm", self._faults.storm)
