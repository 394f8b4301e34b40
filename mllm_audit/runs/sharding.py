"""Splitting a scan into chunks (for resumable writes) and shards (for several processes).

Both split *by image*: every item of an image lands in the same chunk, and ranks take whole chunks, so each
distinct image is still encoded exactly once per run however the work is divided. Chunk and shard
boundaries never change a score (scoring.score is batch- and order-invariant); the final
`samples.jsonl` is written in suite order, so it is the same whichever way the work was split.

Several processes come from `accelerate launch` (or torchrun): each one sees WORLD_SIZE > 1 and we
then, and only then, import accelerate and set up its `PartialState` (gloo on CPU). A plain
`mllm-audit scan` never imports accelerate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

CHUNK_BATCHES = 4  # a chunk holds about this many batches of requests
CHUNK_MAX_IMAGES = 64  # and never more distinct images than this (scoring.IMAGE_CHUNK)
# Ranks wait for each other at the end of their shards; a slow shard must not time the others out.
BARRIER_TIMEOUT = timedelta(hours=48)


class _HasImage(Protocol):
    @property
    def image(self) -> str: ...


ItemT = TypeVar("ItemT", bound=_HasImage)


def group_by_image(items: Sequence[ItemT]) -> list[list[ItemT]]:
    """Items grouped by their image, groups in first-seen order, items in suite order within."""
    groups: dict[str, list[ItemT]] = {}
    for it in items:
        groups.setdefault(it.image, []).append(it)
    return list(groups.values())


def image_chunks(items: Sequence[ItemT], batch_size: int) -> list[list[ItemT]]:
    """Consecutive image groups, cut once a chunk has ~CHUNK_BATCHES batches of requests.

    Two requests per item (y_more, y_less). Small enough that a kill loses little work, large
    enough that batches stay full.
    """
    limit = max(2, CHUNK_BATCHES * max(1, batch_size))
    chunks: list[list[ItemT]] = []
    cur: list[ItemT] = []
    n_images = 0
    for group in group_by_image(items):
        cur.extend(group)
        n_images += 1
        if 2 * len(cur) >= limit or n_images >= CHUNK_MAX_IMAGES:
            chunks.append(cur)
            cur, n_images = [], 0
    if cur:
        chunks.append(cur)
    return chunks


def shard_chunks(chunks: Sequence[list[ItemT]], num_shards: int, index: int) -> list[list[ItemT]]:
    """This rank's chunks: a contiguous run of whole chunks, balanced by item count.

    Whole chunks, not just whole images: each chunk is then scored in exactly the batches a
    one-process run would use, so the numbers are bit-identical, not merely close.
    """
    if num_shards <= 1:
        return list(chunks)
    total = sum(len(c) for c in chunks)
    mine: list[list[ItemT]] = []
    before = 0
    for chunk in chunks:
        if min(num_shards - 1, (before * num_shards) // max(1, total)) == index:
            mine.append(chunk)
        before += len(chunk)
    return mine


def world_size_from_env() -> int:
    """Processes in this job as launchers announce it (1 when not launched)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


@dataclass
class Processes:
    """Where this process stands in the job; one process means no accelerate at all."""

    index: int = 0
    count: int = 1
    local_index: int = 0
    _state: Any = None

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def wait(self) -> None:
        """Barrier across ranks (no-op alone)."""
        if self._state is not None:
            self._state.wait_for_everyone()

    def broadcast(self, obj: T) -> T:
        """Rank 0's value of `obj` on every rank (identity alone)."""
        if self._state is None:
            return obj
        from accelerate.utils import broadcast_object_list

        box = [obj]
        broadcast_object_list(box, from_process=0)
        return box[0]


def current_processes(device: str = "cpu") -> Processes:
    """Set up accelerate's PartialState when launched as several processes, else a single one."""
    if world_size_from_env() <= 1:
        return Processes()
    from accelerate import PartialState

    state = PartialState(cpu=not device.startswith("cuda"), timeout=BARRIER_TIMEOUT)
    return Processes(
        index=int(state.process_index),
        count=int(state.num_processes),
        local_index=int(state.local_process_index),
        _state=state if state.num_processes > 1 else None,
    )
