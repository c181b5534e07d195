"""Group commit: requests that arrive while a write is in flight go together in the next one.

Under load, many coroutines of one process each want one small commit. Each commit waits for
its own WAL flush; PostgreSQL's group commit only merges flushes that happen to coincide.
`GroupCommit` queues the requests and writes whatever has queued up as one batch — one
statement, one commit, one flush — as soon as a writer is free. Nothing waits on a timer: at
low load a batch holds one request and goes out at once, so latency is that of a lone write.

It knows nothing of events: `flush(batch)` writes a batch and returns one outcome per request
(in order); `key(request)` names what two requests must not share in one batch (a stream: two
appends to one stream in one INSERT would race each other for the same version).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

Request = TypeVar("Request")
Outcome = TypeVar("Outcome")


class GroupCommit(Generic[Request, Outcome]):
    def __init__(
        self,
        flush: Callable[[list[Request]], Awaitable[list[Outcome]]],
        key: Callable[[Request], Hashable],
        *,
        max_batch: int = 256,
        writers: int = 2,
    ) -> None:
        self._flush = flush
        self._key = key
        self.max_batch = max_batch
        self.writers = writers  # batches in flight at once: the next fills while one commits
        self._queue: list[tuple[Request, asyncio.Future[Outcome]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.requests = 0

    async def submit(self, request: Request) -> Outcome:
        """Queue `request`; its outcome once the batch holding it has committed (or its error)."""
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append((request, done))
        self._start_writers()
        return await done

    def _start_writers(self) -> None:
        while self._queue and self._in_flight < self.writers:
            batch = self._take()
            self._in_flight += 1
            task = asyncio.create_task(self._write(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[tuple[Request, asyncio.Future[Outcome]]]:
        """Up to max_batch queued requests, oldest first, at most one per key; the rest wait."""
        batch: list[tuple[Request, asyncio.Future[Outcome]]] = []
        waiting: list[tuple[Request, asyncio.Future[Outcome]]] = []
        keys: set[Hashable] = set()
        for item in self._queue:
            key = self._key(item[0])
            if len(batch) < self.max_batch and key not in keys:
                keys.add(key)
                batch.append(item)
            else:
                waiting.append(item)
        self._queue = waiting
        return batch

    async def _write(self, batch: list[tuple[Request, asyncio.Future[Outcome]]]) -> None:
        try:
            outcomes = await self._flush([request for request, _ in batch])
        except BaseException as exc:  # every request of the batch shares its fate
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if not done.done():  # a caller that gave up is not told
                    done.set_result(outcome)
            self.batches += 1
            self.requests += len(batch)
        finally:
            self._in_flight -= 1
            self._start_writers()
