"""Option parsing, usage errors and --vmm-list, through pytester."""

from __future__ import annotations

import pytest


def test_unknown_stack_is_a_usage_error_listing_valid_names(fake_project) -> None:
    pytester = fake_project()
    result = pytester.runpytest("--vmm=nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown stack 'nope'*valid stacks:*fake*god*zigu*zosia*"])
    assert "Traceback" not in result.stderr.str()


def test_unknown_hypervisor_is_a_usage_error(fake_project) -> None:
    pytester = fake_project()
    result = pytester.runpytest("--vmm=fake@vmware")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown hypervisor 'vmware'*valid hypervisors:*god*proc*qemu*"])


def test_hypervisor_the_stack_does_not_run_on(fake_project) -> None:
    pytester = fake_project()
    result = pytester.runpytest("--vmm=fake@qemu")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*stack 'fake' does not run on 'qemu'*its hypervisors: proc, missing*"])


def test_vmm_list_shows_every_stack_with_availability_and_exits_0(fake_project) -> None:
    pytester = fake_project()
    result = pytester.runpytest("--vmm-list")
    assert result.ret == 0
    out = result.stdout.str()
    for stack in ("god", "zigu", "microkernelia", "zosia", "fake"):
        assert f"  {stack}: " in out, out
    result.stdout.fnmatch_lines(["host: KVM flavour *"])
    result.stdout.fnmatch_lines(["*fake ?default?: available (accel tcg)*",
                                 "*fake@missing: unavailable: missing-hv binary not found on PATH*"])
    # Every target line says available, or unavailable with a reason.
    import re
    target_lines = [line for line in out.splitlines()
                    if re.match(r"    \S+( \[default\])?: ", line) and "capabilities:" not in line]
    assert len(target_lines) >= 9, out
    for line in target_lines:
        assert re.search(r": (available \(accel (kvm|tcg)|unavailable: \S.{8,})", line), line
    assert "collected" not in out  # listing does not run tests


def test_ini_options_are_honoured(fake_project) -> None:
    pytester = fake_project()
    pytester.makeini("[pytest]\nvmm = fake2\nvmm_min_tok_s = 7.5\n")
    pytester.makepyfile("""
        def test_it(vmm_stack, vmm_min_tok_s):
            assert vmm_stack.id == "fake2"
            assert vmm_min_tok_s == 7.5
    """)
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_it?fake2? PASSED*"])


def test_command_line_beats_ini(fake_project) -> None:
    pytester = fake_project()
    pytester.makeini("[pytest]\nvmm = fake2\n")
    pytester.makepyfile("""
        def test_it(vmm_stack):
            assert vmm_stack.id == "fake"
    """)
    pytester.runpytest("--vmm=fake").assert_outcomes(passed=1)


def test_report_header_shows_accel_and_timeout_multiplier(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--vmm=fake,fake@missing")
    result.stdout.fnmatch_lines([
        "vmm: host kvm=*boot timeout multipliers: kvm-vmx x1*tcg x4*",
        "vmm: fake: hypervisor proc, accel tcg (timeouts x4), ready",
        "vmm: fake@missing: *unavailable: missing-hv binary not found on PATH",
    ])
