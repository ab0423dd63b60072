"""Group commit: calls that arrive while one is running are made as one.

Every job host claims its slots through the supervisor, and every claim is a
store transaction on the one writer thread. In dedicated placement 100 hosts
claim the same second's slots at once: one transaction each, in a queue, put
the last claim ≈ 0.7 s behind the first. Here the calls that arrive while a
transaction runs wait for it and are then written together, in one.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, Optional, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """``await group(items)`` returns ``run(items)``'s results for these items;
    ``run`` (one list in, one result per item out) is called with the items of
    every call waiting at that moment, one ``run`` at a time. A failed ``run``
    fails every call of its group (each caller retries as it would alone)."""

    def __init__(self, run: Callable[[list[T]], Awaitable[list[R]]]):
        self._run = run
        self._waiting: list[tuple[list[T], asyncio.Future]] = []
        self._drainer: Optional[asyncio.Task] = None  # held: the loop keeps only weak references

    async def __call__(self, items: list[T]) -> list[R]:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((items, future))
        if self._drainer is None:
            self._drainer = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    results = await self._run([item for items, _ in group for item in items])
                except Exception as e:
                    for _, future in group:
                        if not future.done():
                            future.set_exception(e)
                    continue
                start = 0
                for items, future in group:
                    if not future.done():  # its caller may have been cancelled
                        future.set_result(results[start:start + len(items)])
                    start += len(items)
        finally:
            self._drainer = None
