"""The distribution on its own: build the sdist and wheels, install them into a fresh venv
outside the repository, and from an empty directory run ``pytest --vmm-list`` and the
MMIO/interrupt/timer suites on the probe under a command-template hypervisor wrapping QEMU
(what docs/own-vmm.md tells a new user to do).

Costs ~1-2 min: two isolated builds, a pip install from pip's cache (or PyPI), a probe build
and the three suites (~45 s under KVM).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QEMU = "qemu-system-x86_64"
SUITES = ("test_mmio", "test_interrupts", "test_timers")

# The template of docs/own-vmm.md: QEMU microvm, console on stdio, the exit port the probe
# uses. -cpu max,arch-capabilities=off works under TCG, hardware KVM and PVM (PLATFORM.md:
# PVM rejects MSR 0x10a).
VMM_TOML = """
[hypervisors.myqemu]
description = "QEMU microvm through the command template"
command = \"\"\"
qemu-system-x86_64 -M microvm -accel {accel} -cpu max,arch-capabilities=off
  -m {mem_mib} -smp {cpus} -nodefaults -no-user-config -no-reboot -display none
  -chardev stdio,id=console,signal=off -serial chardev:console
  -device isa-debug-exit,iobase=0xf4,iosize=0x04
  -kernel {kernel} -append {cmdline}
\"\"\"
disk_args = \"\"\"
-drive file={disk},format=raw,if=none,id=disk{disk_index},readonly={disk_ro}
  -device virtio-blk-device,drive=disk{disk_index}
\"\"\"
provides = ["blk"]
boots = ["pvh", "multiboot"]
accels = ["kvm", "tcg"]
"""

# Written into the work directory: records what the pytest run imported, for the assertion
# that nothing came from the repository.
RECORDER = """
import json, sys

def pytest_sessionfinish(session):
    files = sorted({str(getattr(m, "__file__", None) or "") for m in list(sys.modules.values())} - {""})
    with open("imports.json", "w") as out:
        json.dump({"sys_path": sys.path, "files": files}, out)
"""


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a new user's shell: nothing pointing into this checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "PYTHON", "VIRTUAL_ENV", "PIP_")) and k != "COV_CORE_SOURCE"}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO)))
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return {**env, **extra}


def run(argv: list[str | Path], cwd: Path, timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in argv], cwd=cwd, env=clean_env(**env), capture_output=True,
                            text=True, timeout=timeout, check=False)
    return result


def must(result: subprocess.CompletedProcess[str], what: str) -> str:
    assert result.returncode == 0, f"{what} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist + wheel (built from the sdist) of pytest-vmm, and god's wheel built from the sdist."""
    pytest.importorskip("build", reason="needs the build package (the dev extra)")
    out = tmp_path_factory.mktemp("dist")
    must(run([sys.executable, "-m", "build", "--outdir", out, REPO], REPO, 600), "python -m build")
    (sdist,) = out.glob("pytest_vmm-*.tar.gz")
    unpacked = tmp_path_factory.mktemp("sdist")
    with tarfile.open(sdist) as tar:
        tar.extractall(unpacked, filter="data")
    (root,) = unpacked.iterdir()
    must(run([sys.executable, "-m", "build", "--wheel", "--outdir", out, root / "guests" / "god"], root, 600),
         "building god's wheel from the sdist")
    return out


def tracked(*folders: str) -> list[str]:
    listing = subprocess.run(["git", "ls-files", *folders], cwd=REPO, capture_output=True, text=True, check=True)
    return [line for line in listing.stdout.splitlines() if line]


def test_wheel_carries_plugin_suites_and_guest_sources(dist: Path) -> None:
    (wheel,) = dist.glob("pytest_vmm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    if not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to list the project's files")
    expected = {f for f in tracked("pytest_vmm") if f.endswith(".py")}
    expected |= {"vmm_suites/" + f.removeprefix("suites/") for f in tracked("suites") if f.endswith(".py")}
    # Every guest source but the .gitignore files (not inputs of any build).
    expected |= {"pytest_vmm_guests/" + f.removeprefix("guests/") for f in tracked("guests")
                 if not f.endswith(".gitignore")}
    assert sorted(expected - names) == []
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata
    assert "Requires-Dist: pytest-vmm-god==0.1.0; extra == \"god\"" in metadata
    (god_wheel,) = dist.glob("pytest_vmm_god-*.whl")
    assert "god/cli.py" in zipfile.ZipFile(god_wheel).namelist()


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) with ``pytest-vmm[god]`` from the built wheels."""
    home = tmp_path_factory.mktemp("user")
    env_dir = home / "venv"
    must(run([sys.executable, "-m", "venv", env_dir], home, 120), "python -m venv")
    (wheel,) = dist.glob("pytest_vmm-*.whl")
    must(run([env_dir / "bin" / "python", "-m", "pip", "install", "-q", f"{wheel}[god]", "--find-links", dist],
             home, 900), "pip install pytest-vmm[god]")
    return env_dir


def test_installed_wheel_lists_its_stacks_and_runs_the_suites_under_a_template(
        venv: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    if shutil.which(QEMU) is None:
        pytest.skip(f"needs {QEMU} (apt-get install qemu-system-x86): the template wraps it")
    work = tmp_path_factory.mktemp("empty")
    (work / "vmm.toml").write_text(VMM_TOML)
    python = venv / "bin" / "python"

    listing = must(run([python, "-m", "pytest", "--vmm-list"], work, 120), "pytest --vmm-list")
    assert "not implemented" not in listing and "is missing" not in listing, listing
    for line in ("god [default]: available", "god@qemu: available", "god@myqemu: available", "myqemu       available"):
        assert line in listing, listing
    for stack in ("god", "zigu", "microkernelia", "zosia"):
        assert f"\n  {stack}: " in listing, listing

    (work / "conftest.py").write_text(RECORDER)
    cache = tmp_path_factory.mktemp("cache")
    # The two EOI-discipline checks fail on a PVM host whatever the VMM (its in-kernel LAPIC
    # keeps no ISR), and KVM's IOAPIC there sometimes delivers a pending level line twice on
    # unmask; suites/known-divergences.toml lists them for the in-repo targets.
    pvm = ["-k", "not unacknowledged_interrupt_blocks and not eoi_releases_one and not pending_level_interrupt"] \
        if Path("/sys/module/kvm_pvm").exists() else []
    inner_basetemp = tmp_path_factory.mktemp("inner-basetemp")  # the inner run's tmp dirs go with ours
    result = run([python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs", *pvm, "--vmm=probe@myqemu",
                  f"--vmm-cache={cache}", f"--basetemp={inner_basetemp}", "--pyargs", *(f"vmm_suites.{s}" for s in SUITES)], work, 1200)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    summary = re.search(r"(\d+) passed", output)
    assert summary and int(summary.group(1)) >= 60, output[-3000:]
    assert not re.search(r"\d+ (failed|error)", output), output[-3000:]
    for suite in SUITES:
        assert suite in output, f"the matrix names no {suite}:\n{output[-3000:]}"

    imported = json.loads((work / "imports.json").read_text())
    # By path, not by string prefix: a checkout at /x/fresh must not claim /x/fresh-tmp, and the
    # test's own venv and work dir (pytest's basetemp, which may lie inside the checkout) are not it.
    basetemp = tmp_path_factory.getbasetemp()
    from_repo = [p for p in imported["sys_path"] + imported["files"]
                 if Path(p).is_relative_to(REPO) and not Path(p).is_relative_to(basetemp)]
    assert from_repo == [], f"the installed run used files of the checkout: {from_repo[:10]}"
    site = str(venv)
    for module in ("pytest_vmm/plugin.py", "pytest_vmm/hypervisors/template.py", "vmm_suites/test_mmio.py"):
        assert any(f.startswith(site) and f.endswith(module) for f in imported["files"]), module
