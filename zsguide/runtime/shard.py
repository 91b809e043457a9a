"""The work of a predict run in fixed batches, and each rank's share of them: an evaluation's (cell, image) items,
a calibration's images (as cell 0).

A cell's images ``0 .. N-1`` are cut into fixed chunks ``[0, B), [B, 2B), ...`` (B = ``--batch_size``), whatever has
been done already; a chunk is pending while any of its images is not committed, and a pending chunk is run whole (its
committed images are not written again). So a batch always holds the same images, on any number of devices and
after any interruption. (An image's result does not depend on its batch anyway, per-image seeding; the fixed chunks
make that hold to the last bit even for kernels whose rounding depends on the batch size.)

Sharding: the pending batches, in grid order, go round-robin to the ranks, batch ``j`` to rank ``j mod W``: every
batch on exactly one rank, none left out, uneven counts included (a rank may get one batch more than another, or
none). Rank 0 computes the pending list once and broadcasts it, so every rank shards the same list.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

WorkBatch = tuple[int, tuple[int, ...]]  # (cell index, image indices)
EMPTY_BATCH: WorkBatch = (-1, ())  # what a rank with no share runs (nothing), so that it still runs the loop


def chunks(indices: Sequence[int], batch_size: int) -> list[tuple[int, ...]]:
    """``indices`` cut into consecutive chunks of ``batch_size`` (the last one shorter)."""
    return [tuple(indices[i : i + batch_size]) for i in range(0, len(indices), batch_size)]


def pending_batches(
    num_cells: int, indices: Sequence[int], batch_size: int, done: Sequence[set[int]]
) -> list[WorkBatch]:
    """Every chunk of every cell with an image not in ``done[cell]``, in grid order."""
    return [(c, chunk) for c in range(num_cells) for chunk in chunks(indices, batch_size) if not set(chunk) <= done[c]]


def shard(batches: Sequence[WorkBatch], rank: int, world_size: int) -> list[WorkBatch]:
    """Rank ``rank``'s share: batches ``rank, rank + W, rank + 2W, ...``."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside 0 .. {world_size - 1}")
    return list(batches[rank::world_size])


class WorkBatches(Dataset):
    """Item ``j``: ``{"cell", "index" (B,), "image" (B, C, H, W)}`` of batch ``j``, images read from ``images``
    (a dataset of ``{"image", "index"}``) by position; used with ``DataLoader(batch_size=None)``."""

    def __init__(self, images: Dataset, batches: Sequence[WorkBatch]) -> None:
        self.images = images
        self.batches = list(batches)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, j: int) -> dict:
        cell, idx = self.batches[j]
        if cell < 0:
            return {"cell": cell, "index": torch.zeros(0, dtype=torch.long), "image": torch.zeros(0)}
        items = [self.images[i] for i in idx]
        return {
            "cell": cell,
            "index": torch.tensor([int(it["index"]) for it in items]),
            "image": torch.stack([it["image"] for it in items]),
        }
