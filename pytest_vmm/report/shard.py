"""``--vmm-shard=i/N``: whole targets per shard, so a target's image is built on one machine."""

from __future__ import annotations

import pytest


def parse(spec: str) -> tuple[int, int]:
    """'2/3' -> (2, 3); 1-based like pytest-split's --group."""
    try:
        index_text, total_text = spec.split("/")
        index, total = int(index_text), int(total_text)
    except ValueError:
        raise pytest.UsageError(f"--vmm-shard={spec}: expected i/N, e.g. 1/3") from None
    if total < 1 or not 1 <= index <= total:
        raise pytest.UsageError(f"--vmm-shard={spec}: i must be between 1 and N (N >= 1)")
    return index, total


def assign(targets: list[str], total: int) -> dict[str, int]:
    """Target id -> shard (1-based): round-robin in the order --vmm names them (stable on every
    machine, since every shard resolves the same --vmm)."""
    return {target: i % total + 1 for i, target in enumerate(targets)}


def select(items: list[pytest.Item], target_of: dict[str, str], targets: list[str],
           index: int, total: int) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """(kept, deselected). Items that run on no target (plain unit tests) go to shard 1 only."""
    shards = assign(targets, total)
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        target = target_of.get(item.nodeid)
        shard = shards.get(target, 1) if target is not None else 1
        (kept if shard == index else dropped).append(item)
    return kept, dropped
