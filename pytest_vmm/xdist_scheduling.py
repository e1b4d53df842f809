"""xdist scheduling that spreads each target's test modules over the workers.

A worker boots a target's shared machine once, for the first of that target's tests it gets,
so the unit of work is one test module on one target: its tests share that worker's machine,
and a target's modules run on both workers side by side. A target whose machines share a
costly per-process resource (``Hypervisor.one_worker``: the ARM64 lane, booted once per
session) keeps all its tests on one worker. xdist's own ``loadgroup`` relies on rewriting node
ids, which newer pytest releases no longer allow; grouping here works on the node id as it is:
the target id is the ``vmm_stack`` parameter id inside ``[...]``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection
from typing import Any

from xdist.scheduler import LoadScopeScheduling


def target_of(nodeid: str, target_ids: Collection[str]) -> str | None:
    """The target a node id runs on, or None when it runs on none."""
    if nodeid.endswith("]") and "[" in nodeid:
        params = nodeid[nodeid.rindex("[", 0, len(nodeid)) + 1:-1]
        # Longest first so "god@qemu" wins over "god"; params are joined with "-".
        for target in sorted(target_ids, key=len, reverse=True):
            if re.search(rf"(^|-){re.escape(target)}($|-)", params):
                return target
    return None


def target_scope(nodeid: str, target_ids: Collection[str], one_worker: Collection[str] = (),
                 roots: Collection[str] = ()) -> str:
    """The unit of scheduling: the target (one_worker targets), the target and the test's
    module (other targets); for a test on no target, its module when the module lies
    directly in one of ``roots`` (the testpaths), else its directory, so the modules under a
    conftest share that conftest's session fixtures (one lane boot, one zigu build)."""
    module = nodeid.split("::", 1)[0]
    target = target_of(nodeid, target_ids)
    if target is None:
        folder = posixpath.dirname(module)
        return module if not folder or folder in roots else f"dir:{folder}"
    if target in one_worker:
        return f"vmm:{target}"
    return f"vmm:{target}:{module}"


class TargetScheduling(LoadScopeScheduling):  # type: ignore[misc,unused-ignore]
    def __init__(self, config: Any, log: Any, target_ids: list[str], one_worker: Collection[str] = ()) -> None:
        super().__init__(config, log)
        self.target_ids = target_ids
        self.one_worker = frozenset(one_worker)
        self.roots = frozenset(str(p).rstrip("/") for p in config.getini("testpaths"))

    def _split_scope(self, nodeid: str) -> str:
        return target_scope(nodeid, self.target_ids, self.one_worker, self.roots)
