"""``--vmm-zosia-uefi`` / ini ``vmm_zosia_uefi`` reach a stack's machines through
``Stack.option_variant`` (the session applies it to every BootSpec), without booting."""

from __future__ import annotations

import pytest

from tests.fake_stack import conftest_source

# A stack whose option variant marks the command line when the UEFI option is on, the way
# zosia's sets BootSpec.firmware.
EXTRA = '''

def _uefi_marker(get, hypervisor):
    if not get("vmm_zosia_uefi"):
        return None
    def mark(spec):
        spec.cmdline += " uefi-asked"
        return spec
    return mark


def pytest_vmm_register(registry):
    registry.add_hypervisor(ProcessHypervisor())
    registry.add_stack(Stack(
        name="fake", description="test double", recipe=None, boot=make_boot("ok"),
        default_hypervisor="proc", hypervisors=("proc",), capabilities=frozenset({"serial"}),
        option_variant=_uefi_marker,
    ))
'''

TEST = """
def test_it(machine_factory, vmm_stack):
    machine = machine_factory.build(vmm_stack)  # built, never started
    print("CMDLINE", machine.config.spec.cmdline)
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(conftest_source().split("def pytest_vmm_register")[0] + EXTRA)
    pytester.makepyfile(TEST)
    return pytester


@pytest.mark.parametrize(("args", "ini", "asked"), [
    ((), "", False),
    (("--vmm-zosia-uefi",), "", True),
    ((), "vmm_zosia_uefi = true\n", True),
])
def test_uefi_option_and_ini_key(project: pytest.Pytester, args: tuple[str, ...], ini: str, asked: bool) -> None:
    project.makeini("[pytest]\nvmm = fake\n" + ini)
    result = project.runpytest("-s", *args)
    result.assert_outcomes(passed=1)
    marker = "*CMDLINE*uefi-asked*" if asked else "*CMDLINE ok"
    result.stdout.fnmatch_lines([marker])
