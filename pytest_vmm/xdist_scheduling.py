"""xdist scheduling that keeps each target's tests on one worker.

A shared machine boots once per worker per target, so sending all of a target's tests to
the same worker means one boot per target. xdist's own ``loadgroup`` relies on rewriting
node ids, which newer pytest releases no longer allow; grouping here works on the node id
as it is: the target id is the ``vmm_stack`` parameter id inside ``[...]``.
"""

from __future__ import annotations

import re
from typing import Any

from xdist.scheduler import LoadScopeScheduling


def target_scope(nodeid: str, target_ids: list[str]) -> str:
    """The target a node id runs on, or the node id itself when it runs on none."""
    if nodeid.endswith("]") and "[" in nodeid:
        params = nodeid[nodeid.rindex("[", 0, len(nodeid)) + 1:-1]
        # Longest first so "god@qemu" wins over "god"; params are joined with "-".
        for target in sorted(target_ids, key=len, reverse=True):
            if re.search(rf"(^|-){re.escape(target)}($|-)", params):
                return f"vmm:{target}"
    return nodeid


class TargetScheduling(LoadScopeScheduling):  # type: ignore[misc,unused-ignore]
    def __init__(self, config: Any, log: Any, target_ids: list[str]) -> None:
        super().__init__(config, log)
        self.target_ids = target_ids

    def _split_scope(self, nodeid: str) -> str:
        return target_scope(nodeid, self.target_ids)
