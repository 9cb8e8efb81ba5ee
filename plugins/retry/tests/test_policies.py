"""RetryPolicy on its own: delays, jitter, which errors are retried, the @policy decorator."""

from __future__ import annotations

import random
from typing import Any

import pytest

import aclbus_retry
from aclbus.errors import ConfigurationError
from aclbus_retry import NotRetryable, RetryPolicy
from aclbus_retry.policies import handler_overrides, handler_progress_declared


def test_delays_grow_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_interval=0.5, multiplier=3.0, max_interval=10.0, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 10.0, 10.0]


def test_a_huge_attempt_number_stays_at_the_cap() -> None:
    policy = RetryPolicy(max_interval=60.0, jitter=0)
    assert policy.delay(100_000) == 60.0
    assert policy.bounds(100_000) == (60.0, 60.0)


def test_no_initial_interval_means_no_delay() -> None:
    policy = RetryPolicy(initial_interval=0, multiplier=10.0, jitter=0.5)
    assert {policy.delay(n) for n in (1, 2, 500, 100_000)} == {0.0}


def test_multiplier_one_is_a_constant_delay() -> None:
    policy = RetryPolicy(initial_interval=2.0, multiplier=1.0, jitter=0)
    assert {policy.delay(n) for n in range(1, 20)} == {2.0}


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_count_from_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="attempt counts from 1"):
        RetryPolicy().delay(attempt)


def test_jitter_stays_within_its_bounds_and_spreads() -> None:
    policy = RetryPolicy(initial_interval=1.0, multiplier=2.0, max_interval=8.0, jitter=0.25)
    rng = random.Random(1)
    for attempt in range(1, 8):
        low, high = policy.bounds(attempt)
        assert (low, high) == (policy.base_delay(attempt) * 0.75, policy.base_delay(attempt) * 1.25)
        delays = [policy.delay(attempt, rng) for _ in range(500)]
        assert all(low <= d <= high for d in delays)
        # spread over the range, both sides of the base delay
        assert min(delays) < low + (high - low) * 0.1
        assert max(delays) > high - (high - low) * 0.1


def test_jitter_is_repeatable_with_a_seed() -> None:
    policy = RetryPolicy(jitter=0.5)
    first = [policy.delay(n, random.Random(42)) for n in range(1, 6)]
    again = [policy.delay(n, random.Random(42)) for n in range(1, 6)]
    assert first == again
    assert first != [policy.base_delay(n) for n in range(1, 6)]


def test_full_jitter_never_goes_negative() -> None:
    policy = RetryPolicy(jitter=1.0)
    rng = random.Random(3)
    assert all(policy.delay(1, rng) >= 0 for _ in range(1000))


def test_every_exception_is_retried_by_default_but_not_retryable() -> None:
    policy = RetryPolicy()
    assert policy.retryable(RuntimeError())
    assert policy.retryable(KeyError())
    assert not policy.retryable(NotRetryable("gone"))
    assert not policy.retryable(KeyboardInterrupt())  # not an Exception


def test_give_up_on_wins_over_retry_on() -> None:
    policy = RetryPolicy(retry_on=(OSError,), give_up_on=(FileNotFoundError,))
    assert policy.retryable(ConnectionResetError())
    assert not policy.retryable(FileNotFoundError())
    assert not policy.retryable(ValueError())


def test_retry_on_may_be_a_predicate_or_one_type() -> None:
    by_text = RetryPolicy(retry_on=lambda exc: "503" in str(exc))
    assert by_text.retryable(RuntimeError("HTTP 503"))
    assert not by_text.retryable(RuntimeError("HTTP 404"))
    one = RetryPolicy(retry_on=TimeoutError, give_up_on=ValueError)
    assert (one.retry_on, one.give_up_on) == ((TimeoutError,), (ValueError,))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("max_attempts", 0, "max_attempts must be an integer of at least 1"),
        ("max_attempts", 2.5, "max_attempts must be an integer"),
        ("max_attempts", True, "max_attempts must be an integer"),
        ("initial_interval", -1, "initial_interval must be finite and at least 0"),
        ("max_interval", float("inf"), "max_interval must be finite"),
        ("multiplier", 0.5, "multiplier must be finite and at least 1"),
        ("jitter", 1.5, "jitter must be 0 to 1"),
        ("jitter", float("nan"), "jitter must be a number"),
        ("retry_on", "ValueError", "retry_on must be exception types or a predicate"),
        ("retry_on", (ValueError, 3), "retry_on must hold exception types"),
        ("give_up_on", lambda exc: True, "give_up_on must be exception types"),
        ("progress_interval", 0, "progress_interval must be finite and above 0"),
    ],
)
def test_bad_fields_are_refused_with_the_value(field: str, value: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RetryPolicy(**{field: value})


def test_merged_overrides_field_by_field() -> None:
    base = RetryPolicy(max_attempts=5, initial_interval=2.0)
    merged = base.merged({"max_attempts": 2})
    assert (merged.max_attempts, merged.initial_interval) == (2, 2.0)
    assert base.merged({}) is base
    with pytest.raises(ConfigurationError, match=r"unknown retry policy field.*'max_attemps'"):
        base.merged({"max_attemps": 2})


def test_heartbeat_interval_auto_is_a_third_of_ack_wait() -> None:
    assert RetryPolicy(progress_interval="auto").heartbeat(30.0) == 10.0
    assert RetryPolicy(progress_interval=4).heartbeat(30.0) == 4.0
    assert RetryPolicy().heartbeat(30.0) is None


def test_policy_decorator_marks_the_function_itself() -> None:
    async def handler(msg: Any) -> None:
        return None

    marked = aclbus_retry.policy(max_attempts=2, give_up_on=KeyError)(handler)
    assert marked is handler
    assert handler_overrides(handler) == {"max_attempts": 2, "give_up_on": (KeyError,)}
    assert handler_overrides(lambda: None) is None


def test_policy_decorator_checks_its_fields_at_definition() -> None:
    with pytest.raises(ConfigurationError, match="max_attempts"):
        aclbus_retry.policy(max_attempts=0)
    unknown: dict[str, Any] = {"attempts": 3}
    with pytest.raises(ConfigurationError, match="unknown retry policy field"):
        aclbus_retry.policy(**unknown)


def test_policy_decorator_refuses_what_cannot_carry_it() -> None:
    with pytest.raises(TypeError, match="cannot mark"):
        aclbus_retry.policy(max_attempts=2)(len)


def test_heartbeats_on_a_handler_are_noticed() -> None:
    async def slow(msg: Any) -> None:
        return None

    aclbus_retry.policy(progress_interval=5.0)(slow)
    assert handler_progress_declared()
