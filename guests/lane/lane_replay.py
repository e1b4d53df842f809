"""pytest plugin: god's own tests without a compiler in the lane (``-p lane_replay``).

god's KVM tests build their tiny guests with gcc/ld/objcopy at test time
(guests/god/tests/guestbuild.py, tests/virtio/vguest.py: ``subprocess.run(["gcc", ...])``).
The lane has no toolchain, so the lane build runs god's test suite once on the build host
in **record** mode and the lane runs it in **replay** mode:

* record (``LANE_REPLAY=record:FILE``): every ``subprocess.run`` of gcc/cc/ld/objcopy really
  runs and its output file is stored under a key made from the command line, with each
  input file replaced by the hash of its content and each output path by its base name.
  Guests are not booted (``run_guest`` skips, ``python -m god`` in a child exits at once,
  the ``kvm`` fixture is forced on so every build is reached); outcomes are ignored.
* replay (``LANE_REPLAY=replay:FILE``): such a ``subprocess.run`` writes the recorded output
  instead of running the tool (and ``shutil.which`` finds the tools), so the test then
  boots exactly the guest it built on the host.

A command that was not recorded fails its test with a message naming it (the lane image is
out of date: its build input hash includes god's tests, so a rebuild records it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_records: dict[str, dict[str, str]] = {}
_mode = ""
_file = ""
_fake_god_dir: Path | None = None  # record mode's stand-in god, removed at the end


def _output_of(cmd: list[str]) -> str:
    if "-o" in cmd:
        return cmd[cmd.index("-o") + 1]
    return cmd[-1]  # objcopy IN OUT


def command_key(cmd: list[str]) -> str:
    out = _output_of(cmd)
    parts = []
    for arg in cmd:
        if arg == out:
            parts.append("OUT:" + os.path.basename(arg))
        elif os.path.isfile(arg):
            parts.append("F:" + hashlib.sha256(Path(arg).read_bytes()).hexdigest())
        elif os.path.isdir(arg):
            parts.append("D:" + os.path.basename(arg.rstrip("/")))
        elif arg.startswith("/"):
            parts.append("P:" + os.path.basename(arg))
        else:
            parts.append(arg)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


TOOLS = ("gcc", "cc", "ld", "objcopy")
_real_run = subprocess.run
_real_which = shutil.which


def _is_tool(cmd: object) -> bool:
    return isinstance(cmd, (list, tuple)) and bool(cmd) and os.path.basename(str(cmd[0])) in TOOLS \
        and ("-o" in cmd or os.path.basename(str(cmd[0])) == "objcopy")


def _record_run(cmd, *args, **kwargs):  # type: ignore[no-untyped-def]
    if not _is_tool(cmd):
        return _real_run(cmd, *args, **kwargs)
    cmd = [str(c) for c in cmd]
    key = command_key(cmd)
    result = _real_run(cmd, *args, **kwargs)
    out = Path(_output_of(cmd))
    if result.returncode == 0 and out.is_file():
        _records[key] = {"cmd": " ".join(os.path.basename(c) for c in cmd),
                         "out": base64.b64encode(out.read_bytes()).decode()}
    return result


def _replay_run(cmd, *args, **kwargs):  # type: ignore[no-untyped-def]
    if not _is_tool(cmd):
        return _real_run(cmd, *args, **kwargs)
    cmd = [str(c) for c in cmd]
    rec = _records.get(command_key(cmd))
    if rec is None:
        raise RuntimeError("lane: no prebuilt output for " + " ".join(cmd) +
                           " (not recorded when the lane's tests layer was built)")
    out = Path(_output_of(cmd))
    out.write_bytes(base64.b64decode(rec["out"]))
    out.chmod(0o755)
    empty = b"" if not kwargs.get("text") and not kwargs.get("universal_newlines") else ""
    return subprocess.CompletedProcess(cmd, 0, empty, empty)


def _replay_which(name, *args, **kwargs):  # type: ignore[no-untyped-def]
    if name in TOOLS:
        return f"/usr/bin/{name}"
    return _real_which(name, *args, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    global _mode, _file, _fake_god_dir
    spec = os.environ.get("LANE_REPLAY", "")
    _mode, _, _file = spec.partition(":")
    if _mode == "replay":
        _records.update(json.loads(Path(_file).read_text()))
        subprocess.run = _replay_run
        shutil.which = _replay_which
    elif _mode == "record":
        subprocess.run = _record_run
        # Children that run `python -m god` get a god that exits at once: record mode builds
        # guests, it does not boot them.
        _fake_god_dir = Path(tempfile.mkdtemp(prefix="lane-fakegod-"))
        fake = _fake_god_dir / "god"
        fake.mkdir()
        (fake / "__init__.py").write_text("")
        (fake / "__main__.py").write_text("raise SystemExit(86)\n")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(fake.parent), *filter(None, [os.environ.get("PYTHONPATH")])])


def _patch() -> None:
    gb = sys.modules.get("guestbuild")
    cf = sys.modules.get("conftest")
    if gb is None or getattr(gb, "_lane_patched", False):
        return
    gb._lane_patched = True
    gb.have_gcc = lambda: True
    if cf is not None:
        cf.have_gcc = lambda: True
    if _mode == "record":
        def no_boot(*a, **k):
            pytest.skip("record mode: guest built, not booted")
        gb.run_guest = no_boot
        for mod in list(sys.modules.values()):
            if getattr(mod, "run_guest", None) is not None and mod is not gb:
                try:
                    mod.run_guest = no_boot
                except (AttributeError, TypeError):
                    pass
        if cf is not None:
            cf._kvm_usable = lambda: None


def pytest_collection_finish(session: pytest.Session) -> None:
    if _mode:
        _patch()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _mode == "record" and _file:
        Path(_file).write_text(json.dumps(_records, indent=0, sort_keys=True) + "\n")
    if _fake_god_dir is not None:
        shutil.rmtree(_fake_god_dir, ignore_errors=True)
