"""Repository hygiene that keeps one pytest run over every test folder working."""

from __future__ import annotations

import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_test_module_basenames_are_unique_across_testpaths() -> None:
    # Every test folder is rootdir-less (prepend import mode), so two test modules with the
    # same basename make the whole run fail at collection.
    testpaths = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["testpaths"]
    seen: dict[str, list[str]] = defaultdict(list)
    for folder in testpaths:
        for path in (ROOT / folder).rglob("*.py"):
            if path.name not in ("conftest.py", "__init__.py") and "__pycache__" not in path.parts:
                seen[path.name].append(str(path.relative_to(ROOT)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not clashes, f"rename these so each basename is unique: {clashes}"
