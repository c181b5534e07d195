"""GroupCommit's batching rules, on asyncio alone (the SQL side is in tests/integration)."""

from __future__ import annotations

import asyncio

import pytest

from shared.store.groupcommit import GroupCommit


class Recorder:
    """A flush that records each batch and holds it open until released."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, int]]] = []
        self.release = asyncio.Event()

    async def flush(self, batch: list[tuple[str, int]]) -> list[int]:
        self.batches.append(batch)
        await self.release.wait()
        return [n * 10 for _, n in batch]


async def test_requests_that_queue_behind_a_write_go_together_and_each_gets_its_own_outcome() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder.flush, key=lambda r: r[0], writers=1)
    first = asyncio.create_task(group.submit(("a", 1)))
    await asyncio.sleep(0)  # the first batch is in flight alone
    rest = [asyncio.create_task(group.submit((f"s{n}", n))) for n in range(2, 7)]
    await asyncio.sleep(0)
    recorder.release.set()

    assert await first == 10
    assert [await t for t in rest] == [20, 30, 40, 50, 60]
    assert recorder.batches == [[("a", 1)], [("s2", 2), ("s3", 3), ("s4", 4), ("s5", 5), ("s6", 6)]]
    assert (group.batches, group.requests) == (2, 6)


async def test_two_requests_for_one_key_never_share_a_batch() -> None:
    recorder = Recorder()
    recorder.release.set()
    group = GroupCommit(recorder.flush, key=lambda r: r[0], writers=1)
    outcomes = await asyncio.gather(*(group.submit(r) for r in [("x", 1), ("x", 2), ("y", 3), ("x", 4)]))

    assert outcomes == [10, 20, 30, 40]
    assert all(len({key for key, _ in batch}) == len(batch) for batch in recorder.batches)
    assert [n for batch in recorder.batches for key, n in batch if key == "x"] == [1, 2, 4]  # in order


async def test_a_failed_batch_fails_every_request_in_it_and_later_batches_still_run() -> None:
    calls = 0
    release = asyncio.Event()

    async def flush(batch: list[str]) -> list[str]:
        nonlocal calls
        calls += 1
        await release.wait()
        if calls == 2:
            raise ConnectionError("database went away")
        return [f"ok {r}" for r in batch]

    group = GroupCommit(flush, key=lambda r: r, writers=1)
    first = asyncio.create_task(group.submit("first"))
    await asyncio.sleep(0)
    queued = [asyncio.create_task(group.submit(r)) for r in ("a", "b")]  # the second batch, together
    await asyncio.sleep(0)
    release.set()

    assert await first == "ok first"
    failed = await asyncio.gather(*queued, return_exceptions=True)
    assert [type(f) for f in failed] == [ConnectionError, ConnectionError]
    assert await group.submit("c") == "ok c"


async def test_no_more_than_the_allowed_batches_are_in_flight() -> None:
    in_flight = peak = 0

    async def flush(batch: list[int]) -> list[int]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return batch

    group = GroupCommit(flush, key=lambda r: r, writers=2, max_batch=3)
    assert await asyncio.gather(*(group.submit(n) for n in range(20))) == list(range(20))
    assert peak == 2


@pytest.mark.parametrize("max_batch", [1, 4])
async def test_a_batch_never_exceeds_its_limit(max_batch: int) -> None:
    sizes: list[int] = []

    async def flush(batch: list[int]) -> list[int]:
        sizes.append(len(batch))
        await asyncio.sleep(0)
        return batch

    group = GroupCommit(flush, key=lambda r: r, max_batch=max_batch)
    await asyncio.gather(*(group.submit(n) for n in range(13)))
    assert max(sizes) <= max_batch and sum(sizes) == 13
