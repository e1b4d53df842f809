"""vmm_requires / vmm_stacks markers and parametrization ids."""

from __future__ import annotations

import pytest


def test_parametrized_ids_and_requires_skip_reason(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        import pytest

        @pytest.mark.vmm_requires("agent")
        def test_needs_agent(vmm_stack):
            pass
    """)
    result = pytester.runpytest("--vmm=fake,fake2", "-rs", "-v", "--strict-markers")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*test_needs_agent?fake? PASSED*", "*test_needs_agent?fake2? SKIPPED*",
                                 "SKIPPED*stack fake2 lacks capability agent"])


def test_vmm_stacks_marker_narrows_targets(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        import pytest

        @pytest.mark.vmm_stacks("fake2")
        def test_only_fake2(vmm_stack):
            assert vmm_stack.stack.name == "fake2"

        @pytest.mark.vmm_stacks("zosia")
        def test_not_selected(vmm_stack):
            pass
    """)
    result = pytester.runpytest("--vmm=fake,fake2", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*none of the selected stacks (fake, fake2) is in vmm_stacks*zosia*"])


def test_unknown_capability_is_a_usage_error(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        import pytest

        @pytest.mark.vmm_requires("telepathy")
        def test_x(vmm_stack):
            pass
    """)
    result = pytester.runpytest("--vmm=fake")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown capability telepathy in vmm_requires; known: abi, agent*"])


def test_unavailable_target_skips_with_its_reason(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("def test_x(machine): pass")
    result = pytester.runpytest("--vmm=fake@missing", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*fake@missing cannot boot here: missing-hv binary not found on PATH"])


def test_markers_are_registered(fake_project) -> None:
    pytester = fake_project()
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.vmm_requires(*capabilities)*", "@pytest.mark.vmm_stacks(*names)*"])


def test_vmm_arch_skips_checks_of_the_other_architecture(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        import pytest

        @pytest.mark.vmm_arch("x86_64")
        def test_uart16550(vmm_stack):
            assert vmm_stack.arch == "x86_64"

        @pytest.mark.vmm_arch("aarch64")
        def test_pl011(vmm_stack):
            assert vmm_stack.arch == "aarch64"

        def test_neutral(vmm_stack):
            pass
    """)
    result = pytester.runpytest("--vmm=fake,fake@proc-arm", "-rs", "--strict-markers")
    result.assert_outcomes(passed=4, skipped=2)
    result.stdout.fnmatch_lines_random(["SKIPPED*x86 check on aarch64 target", "SKIPPED*arm64 check on x86_64 target"])


def test_vmm_arch_with_an_unknown_architecture_is_a_usage_error(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        import pytest

        @pytest.mark.vmm_arch("riscv")
        def test_x(vmm_stack):
            pass
    """)
    result = pytester.runpytest("--vmm=fake")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*vmm_arch needs architectures from x86_64, aarch64, got riscv*"])
