"""Which parts of Debian's python3.11 the lane ships: computed from what god imports.

Two layers:

* **base** (every lane boot): the interpreter, its shared libraries, and the stdlib modules
  god can import. The set is computed, not hand-written: every ``import`` statement in god's
  sources (including the lazy ones inside functions, found with ``ast``) is imported in a
  fresh ``python3.11 -I`` and everything that lands in ``sys.modules`` is kept, plus what the
  interpreter itself loads at start-up. ``LAZY_STDLIB`` adds the stdlib's own function-level
  imports that god's code paths reach (found by running god under the real interpreter; the
  test tests/lane/test_lane_image.py re-checks that the set is sufficient).
* **tests** (only when god's own test suite runs in the lane): the modules pytest needs to
  collect and run god's tests and write JUnit XML, found by running a collection in a fresh
  ``python3.11 -I`` and dumping ``sys.modules``; third-party packages (pytest, pluggy, ...)
  are copied from where the build's interpreter finds them.

Run as a script by the build (``python3.11 -I pyset.py closure MOD...``) so the result
reflects the interpreter that runs in the lane, not the one that runs the build.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

GUEST_PYTHON = "/usr/bin/python3.11"

# Function-level imports inside the stdlib that god's paths reach (argparse's help and error
# output), and runpy (frozen, but what `python -m god` runs imports importlib.util). Found by
# running god under the real interpreter and diffing sys.modules against the static closure.
LAZY_STDLIB: tuple[str, ...] = ("runpy", "importlib.util", "shutil", "gettext", "locale",
                                "encodings.latin_1", "encodings.ascii", "encodings.utf_8")

# Never shipped even if something imports them (tests, GUIs, big data files).
NEVER = ("test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data")


def source_imports(root: Path) -> list[str]:
    """Every absolute module name imported anywhere under ``root`` (top level or in a function)."""
    names: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                # "from a import b" may import the submodule a.b
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return sorted(names)


_CLOSURE_SCRIPT = r"""
import importlib, json, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception:
        pass
out = {}
for name, mod in sorted(sys.modules.items()):
    f = getattr(mod, "__file__", None)
    if f:
        out[name] = f
print(json.dumps(out))
"""


def closure(modules: list[str], python: str = GUEST_PYTHON, path: list[str] | None = None) -> dict[str, str]:
    """{module: file} of everything importing ``modules`` loads in a fresh ``python -I``."""
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
    script = _CLOSURE_SCRIPT
    if path:
        script = f"import sys; sys.path[:0] = {path!r}\n" + script
    res = subprocess.run([python, "-I", "-c", script, *modules], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(res.stdout)


_PYTEST_SCRIPT = r"""
import json, sys, os
sys.path[:0] = json.loads(os.environ["LANE_PATH"])
import pytest
rc = pytest.main(sys.argv[1:])
out = {n: getattr(m, "__file__", None) for n, m in sorted(sys.modules.items())}
print("@@MODULES " + json.dumps({n: f for n, f in out.items() if f}))
"""


def pytest_closure(args: list[str], path: list[str], cwd: Path, python: str = GUEST_PYTHON) -> dict[str, str]:
    """{module: file} loaded by ``pytest ARGS`` (a collection run) in a fresh interpreter."""
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANE_PATH": json.dumps(path),
           "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(cwd), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    res = subprocess.run([python, "-I", "-c", _PYTEST_SCRIPT, *args], capture_output=True,
                         text=True, env=env, cwd=cwd, check=False)
    for line in res.stdout.splitlines():
        if line.startswith("@@MODULES "):
            return json.loads(line[len("@@MODULES "):])
    raise RuntimeError(f"pytest collection under {python} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


def stdlib_dirs(python: str = GUEST_PYTHON) -> tuple[str, str]:
    code = ("import sysconfig; print(sysconfig.get_path('stdlib')); "
            "print(sysconfig.get_path('platstdlib') + '/lib-dynload')")
    out = subprocess.run([python, "-I", "-c", code],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], out[1]


def split_files(mods: dict[str, str], stdlib: str) -> tuple[list[str], list[str]]:
    """(stdlib-relative paths, other absolute paths) of the module files, package __init__s included."""
    rel: set[str] = set()
    other: set[str] = set()
    for name, f in mods.items():
        if name.split(".")[0] in NEVER:
            continue
        if f.startswith(stdlib + "/"):
            r = f[len(stdlib) + 1:]
            if r.startswith(("site-packages/", "dist-packages/")):
                continue
            rel.add(r)
            # parents' __init__.py are modules too (already in sys.modules), nothing to add
        else:
            other.add(f)
    return sorted(rel), sorted(other)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "imports":
        print("\n".join(source_imports(Path(sys.argv[2]))))
    elif len(sys.argv) >= 2 and sys.argv[1] == "closure":
        print(json.dumps(closure(sys.argv[2:]), indent=1))
    else:
        print(__doc__)
        sys.exit(2)
    os._exit(0)
