"""Command-template hypervisors and declared stacks from vmm.toml (pytest_vmm/config.py,
pytest_vmm/hypervisors/template.py, pytest_vmm/stacks/declared.py), through pytester.

The "VMM" is tests/template_vmm.py: it prints the argv the template produced, then acts as a
guest console. The "kernel" is any file: the double never reads it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from pytest_vmm import machine as machine_module
from pytest_vmm.host import HostInfo
from pytest_vmm.registry import Registry, RegistryError
from pytest_vmm.stack import BootSpec, Stack

TEMPLATE_VMM = Path(__file__).with_name("template_vmm.py").resolve()

HYPERVISOR = f"""
[hypervisors.fakevmm]
description = "the test double"
command = "{{python}} -u {TEMPLATE_VMM} --mode {{mode}} --kernel {{kernel}} --mem {{mem_mib}} --cpus {{cpus}} --accel {{accel}} --run-dir {{run_dir}}"
cmdline_args = "--cmdline {{cmdline}}"
initrd_args = ["--initrd", "{{initrd}}"]
disk_args = "--disk {{disk_index}}:{{disk}}:ro={{disk_ro}}"
boots = ["flat", "pvh"]
accels = ["tcg"]
"""

STACK = """
[stacks.fake]
kernel = "kernel.bin"
format = "flat"
initrd = "initrd.img"
disks = ["a.img", "b.img"]
cmdline = "console=ttyS0 quiet=yes please"
mem_mib = 96
cpus = 2
ready = "fake: ready"
boot_timeout = {timeout}
capabilities = ["serial", "blk", "smp"]
hypervisors = ["fakevmm"]
"""

ARGV_TEST = """
import json, re

def test_argv(machine):
    match = re.search(rb"template-vmm: argv=(.*)\\n", machine.console_text())
    argv = json.loads(match.group(1))
    with open("argv.json", "w") as out:
        json.dump({"argv": argv, "run_dir": str(machine.run_dir)}, out)
    machine.sendline("ping 7")
    machine.expect(rb"pong 7")
"""


def project(pytester: pytest.Pytester, toml: str, files: tuple[str, ...] = ("kernel.bin", "initrd.img", "a.img", "b.img"),
            mode: str = "ok") -> pytest.Pytester:
    for name in files:
        (pytester.path / name).write_bytes(b"\0" * 16)
    pytester.makefile(".toml", vmm=toml.replace("{mode}", mode))
    return pytester


def test_placeholders_become_one_argument_each(pytester: pytest.Pytester) -> None:
    project(pytester, HYPERVISOR + STACK.format(timeout=10))
    pytester.makepyfile(test_argv=ARGV_TEST)
    result = pytester.runpytest("--vmm=fake", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    got = json.loads((pytester.path / "argv.json").read_text())
    argv, run_dir = got["argv"], got["run_dir"]
    base = pytester.path.resolve()
    assert argv == [
        "--mode", "ok", "--kernel", str(base / "kernel.bin"), "--mem", "96", "--cpus", "2", "--accel", "tcg",
        "--run-dir", run_dir,
        "--cmdline", "console=ttyS0 quiet=yes please",
        "--initrd", str(base / "initrd.img"),
        "--disk", f"0:{base / 'a.img'}:ro=on", "--disk", f"1:{base / 'b.img'}:ro=on",
    ]
    assert run_dir.startswith("/") and not Path(run_dir).exists(), "the run dir is removed after the test"


def test_missing_binary_is_explained_by_vmm_list_and_skips(pytester: pytest.Pytester) -> None:
    toml = HYPERVISOR.replace("{python} -u", "no-such-vmm-binary") + STACK.format(timeout=10)
    project(pytester, toml)
    listing = pytester.runpytest("--vmm-list")
    listing.stdout.fnmatch_lines([
        "*fakevmm*unavailable: no-such-vmm-binary not found (the first word of command, hypervisors.fakevmm in *vmm.toml)",
        "*fake [[]default[]]: unavailable: no-such-vmm-binary not found*",
    ])
    pytester.makepyfile(test_argv=ARGV_TEST)
    result = pytester.runpytest("--vmm=fake", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*fake cannot boot here: no-such-vmm-binary not found*"])


def test_vmm_list_names_a_placeholder_the_stack_needs(pytester: pytest.Pytester) -> None:
    toml = HYPERVISOR.replace(" --cpus {cpus}", "").replace('initrd_args = ["--initrd", "{initrd}"]\n', "")
    project(pytester, toml + STACK.format(timeout=10))
    listing = pytester.runpytest("--vmm-list")
    listing.stdout.fnmatch_lines([("*fake*unavailable: stack fake runs on several vCPUs (capability smp) but the "
                                  "template has no {cpus} placeholder (hypervisors.fakevmm in *vmm.toml)")])
    project(pytester, toml.replace("--mem", "--cpus {cpus} --mem") + STACK.format(timeout=10))
    listing = pytester.runpytest("--vmm-list")
    listing.stdout.fnmatch_lines(["*fake*unavailable: stack fake has an initrd but the template has no initrd_args*"])


def test_kernel_file_missing_is_explained(pytester: pytest.Pytester) -> None:
    project(pytester, HYPERVISOR + STACK.format(timeout=10), files=("initrd.img", "a.img", "b.img"))
    listing = pytester.runpytest("--vmm-list")
    listing.stdout.fnmatch_lines(["*fake [[]default[]]: unavailable: kernel file */kernel.bin does not exist (stacks.fake in *vmm.toml)"])


MALFORMED = {
    "unknown placeholder": (HYPERVISOR.replace("{kernel}", "{kernal}", 1),
                            "*hypervisors.fakevmm.command: unknown placeholder {kernal}; placeholders here: {kernel}*"),
    "optional placeholder in command": (HYPERVISOR.replace("--kernel {kernel}", "--kernel {kernel} {initrd}"),
                                        "*hypervisors.fakevmm.command: {initrd} may only appear in initrd_args*"),
    "format spec": (HYPERVISOR.replace("{mem_mib}", "{mem_mib:x}"),
                    "*hypervisors.fakevmm.command: {mem_mib...} in '{mem_mib:x}': placeholders take no format spec*"),
    "unbalanced brace": (HYPERVISOR.replace("{cpus}", "{cpus"), "*hypervisors.fakevmm.command: bad placeholder syntax*"),
    "misspelt key": (HYPERVISOR.replace("boots =", "boot ="), "*hypervisors.fakevmm.boot: unknown key; known keys: command*"),
    "no boots": (HYPERVISOR.replace('boots = ["flat", "pvh"]\n', ""), "*hypervisors.fakevmm.boots: missing (required)*"),
    "unknown format": (HYPERVISOR.replace('"flat", "pvh"', '"elf"'), "*hypervisors.fakevmm.boots: unknown value 'elf'; valid: pvh*"),
    "bad signal": (HYPERVISOR + 'stop = "SIGNOPE"\n', "*hypervisors.fakevmm.stop: unknown signal 'SIGNOPE'*"),
    "vsock without args": (HYPERVISOR + 'provides = ["vsock"]\n', "*hypervisors.fakevmm.provides: 'vsock' needs vsock_args*"),
    "socket console without socket": (HYPERVISOR + 'console = "socket"\n', "*hypervisors.fakevmm.console: \"socket\" needs {console_sock}*"),
    "command not a string": (re.sub(r"(?m)^command = .*$", "command = 3", HYPERVISOR),
                             "*hypervisors.fakevmm.command: expected a command string or a list of strings, got 3*"),
    "not toml": ("[hypervisors.fakevmm\n", "*vmm.toml: not valid TOML*"),
    "stack capability": (HYPERVISOR + STACK.format(timeout=10).replace('"smp"]', '"smpp"]'),
                         "*stacks.fake.capabilities: unknown value 'smpp'*"),
    "stack ready regex": (HYPERVISOR + STACK.format(timeout=10).replace('"fake: ready"', '"fake: (ready"'),
                          "*stacks.fake.ready: not a valid regular expression*"),
    "stack build without sources": (HYPERVISOR + STACK.format(timeout=10) + 'build = "make OUT={out}"\n',
                                    "*stacks.fake.sources: missing: with build*"),
    "name taken": (HYPERVISOR.replace("[hypervisors.fakevmm]", "[hypervisors.qemu]"),
                   "*hypervisors.qemu: a hypervisor of that name is already registered*"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_declaration_is_a_usage_error_naming_the_key(pytester: pytest.Pytester, case: str) -> None:
    toml, expected = MALFORMED[case]
    project(pytester, toml)
    for args in (("--vmm-list",), ("--vmm=fake",)):
        result = pytester.runpytest(*args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, (args, result.outlines, result.errlines)
        result.stderr.fnmatch_lines(["ERROR: " + expected])


def test_hypervisor_that_never_prints_the_ready_pattern(pytester: pytest.Pytester) -> None:
    project(pytester, HYPERVISOR + STACK.format(timeout=1), mode="silent")
    pytester.makepyfile(test_argv=ARGV_TEST)
    result = pytester.runpytest("--vmm=fake@fakevmm", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*fake@fakevmm: no boot within *waited for /fake: ready/ on the console*",
        "*template-vmm: argv=*",
        "*template-vmm: still booting 2*",
    ])


STOP_TEST = """
def test_stops_gracefully(machine):
    machine.sendline("ping 1")
    machine.expect(rb"pong 1")
    assert machine.shutdown() == [], "the VMM stopped at the first, graceful request"
"""


def test_socket_console(pytester: pytest.Pytester) -> None:
    toml = HYPERVISOR.replace("--run-dir {run_dir}", "--run-dir {run_dir} --console-sock {console_sock}")
    project(pytester, toml + 'console = "socket"\n' + STACK.format(timeout=10), mode="socket")
    pytester.makepyfile(test_argv=ARGV_TEST + STOP_TEST)
    result = pytester.runpytest("--vmm=fake", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_stop_command_stops_a_vmm_that_ignores_sigterm(pytester: pytest.Pytester,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # The escalation's waits, shortened: pytester runs in this process, so the machine module
    # it uses is this one (the escalation's order is what is checked, not its durations).
    monkeypatch.setattr(machine_module, "GRACEFUL_S", 0.5)
    monkeypatch.setattr(machine_module, "TERM_S", 0.5)
    stop = f'stop_command = ["{sys.executable}", "-c", "import os, sys; os.kill(int(sys.argv[1]), 10)", "{{pid}}"]\n'
    project(pytester, HYPERVISOR + stop + STACK.format(timeout=10), mode="usr1")
    pytester.makepyfile(test_argv=ARGV_TEST + STOP_TEST)
    result = pytester.runpytest("--vmm=fake", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    # Without the stop command the default SIGTERM is ignored: the machine notes the escalation.
    project(pytester, HYPERVISOR + STACK.format(timeout=10), mode="usr1")
    result = pytester.runpytest("--vmm=fake", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*fakevmm ignored the graceful stop; sent SIGTERM*"])


def test_template_runs_a_builtin_stack_by_alias() -> None:
    """probe@HV resolves to the god stack (the probe kernel), on any open hypervisor."""
    from pytest_vmm.hypervisors.template import Template, TemplateHypervisor

    registry = Registry(HostInfo.detect())
    registry.add_stack(Stack(name="god", description="", recipe=None, boot=lambda *a: BootSpec(kernel=Path("k")),
                             default_hypervisor="god", hypervisors=("god",), capabilities=frozenset({"serial"})))
    template = Template(name="myvmm", source="test", command=("vmm", "{kernel}"), groups={}, boots=("pvh",),
                        accels=("kvm",), console="stdio", stop_signal=15, stop_command=None, provides=frozenset())
    registry.add_hypervisor(TemplateHypervisor(template), any_stack=True)
    (target,) = registry.resolve("probe@myvmm")
    assert (target.id, target.stack.name, target.hypervisor.name) == ("probe@myvmm", "god", "myvmm")
    assert registry.hypervisors_for(target.stack) == ["god", "myvmm"]
    with pytest.raises(RegistryError, match="unknown stack 'probe'"):
        Registry(HostInfo.detect()).resolve("probe")


def test_config_file_named_by_option_or_ini(pytester: pytest.Pytester) -> None:
    (pytester.path / "conf").mkdir()
    (pytester.path / "conf" / "vms.toml").write_text(HYPERVISOR.replace("{mode}", "ok"))
    result = pytester.runpytest("--vmm-list", "--vmm-config=conf/vms.toml")
    result.stdout.fnmatch_lines(["  fakevmm      available"])
    pytester.makeini("[pytest]\nvmm_config = conf/vms.toml\n")
    result = pytester.runpytest("--vmm-list")
    result.stdout.fnmatch_lines(["  fakevmm      available"])
    result = pytester.runpytest("--vmm-list", "--vmm-config=nope.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --vmm-config / vmm_config: */nope.toml does not exist"])
