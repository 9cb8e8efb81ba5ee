from __future__ import annotations

from aclbus.middleware import Middleware, compose


class _Recorder(Middleware):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def publish(self, out, call_next):  # type: ignore[no-untyped-def, override]
        self.log.append(f"enter {self.name}")
        result = await call_next(out)
        self.log.append(f"exit {self.name}")
        return result


class _ConsumeOnly(Middleware):
    async def consume(self, delivery, call_next):  # type: ignore[no-untyped-def, override]
        await call_next(delivery)


async def test_first_middleware_is_outermost() -> None:
    log: list[str] = []

    async def terminal(value: object) -> object:
        log.append("terminal")
        return value

    chain = compose([_Recorder("a", log), _Recorder("b", log)], "publish", terminal)
    assert await chain("x") == "x"
    assert log == ["enter a", "enter b", "terminal", "exit b", "exit a"]


async def test_an_empty_or_pass_through_chain_is_the_terminal_itself() -> None:
    async def terminal(value: object) -> object:
        return value

    assert compose([], "publish", terminal) is terminal
    # a middleware that does not override publish adds nothing to the publish chain
    assert compose([_ConsumeOnly()], "publish", terminal) is terminal
    assert compose([_ConsumeOnly()], "consume", terminal) is not terminal
