"""The machine factory owns every machine of a test: variants, failure reports, shutdown,
Machine.start() cleaning up after its own failure, shared read-only checks, the profile."""

from __future__ import annotations

import pytest

from tests.leaks import no_leftovers  # noqa: F401  (autouse: each test's guests and run dirs)


def test_factory_boots_variants_and_reports_each_machines_tail(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        import dataclasses

        def louder(spec):
            return dataclasses.replace(spec, cmdline=spec.cmdline + " extra")

        def test_two(machine_factory, vmm_stack):
            plain = machine_factory.boot(vmm_stack, name="plain")
            variant = machine_factory.boot(vmm_stack, louder, name="variant")
            assert variant.spec.cmdline.endswith(" extra") and not plain.spec.cmdline.endswith(" extra")
            assert plain.pid != variant.pid and plain.is_alive() and variant.is_alive()
            variant.sendline("ping 9")
            variant.expect(rb"pong 9")
            assert False, "deliberate"
    """)
    result = pytester.runpytest("--vmm=fake")
    result.assert_outcomes(failed=1)
    # Both machines are in the failure report, each with its own console.
    assert result.stdout.str().count("vmm console tail: fake") == 2
    result.stdout.fnmatch_lines(["*pong 9*"])


def test_start_cleans_up_after_its_own_failure(fake_project) -> None:
    pytester = fake_project({"fake": "hang"}, timeout=0.5)
    pytester.makepyfile("""
        import pytest
        from pytest_vmm.errors import BootTimeout

        def test_it(machine_factory, vmm_stack):
            built = machine_factory.build(vmm_stack)
            with pytest.raises(BootTimeout):
                built.start()
            # No caller clean-up needed: the process is gone and so is the run dir.
            assert not built.is_alive() and built.exit_status is not None
            assert not built.run_dir.exists()
    """)
    pytester.runpytest("--vmm=fake").assert_outcomes(passed=1)


def test_vmm_shared_checks_share_a_guest_and_fresh_ones_do_not(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        import pytest

        pytestmark = pytest.mark.vmm_shared
        pids = []

        def test_a(machine):
            pids.append(machine.pid)

        def test_b(machine):
            pids.append(machine.pid)
            assert pids[0] == pids[1], "two read-only checks should share the guest"

        @pytest.mark.vmm_shared(False)
        def test_fresh(machine):
            assert machine.pid not in pids
    """)
    pytester.runpytest("--vmm=fake", "-p", "no:randomly").assert_outcomes(passed=3)
    pytester.runpytest("--vmm=fake", "-p", "no:randomly", "--vmm-fresh").assert_outcomes(passed=2, failed=1)


def test_a_shared_check_that_leaves_device_state_changed_gets_its_guest_rebooted(fake_project) -> None:
    """The vmm_shared_state guard: the check after one that left a register changed gets a
    fresh guest, and the run names the check and the register."""
    pytester = fake_project()
    pytester.makepyfile("""
        import pytest

        registers = {}  # by guest pid: what a device model would hold

        def probe(machine):
            return {"IMR": registers.setdefault(machine.pid, 0xFF), "ELCR": 0}

        pytestmark = [pytest.mark.vmm_shared, pytest.mark.vmm_shared_state(probe=probe)]
        pids = []

        def test_puts_back(machine):
            pids.append(machine.pid)
            registers[machine.pid] = 0x12
            registers[machine.pid] = 0xFF

        def test_still_shared(machine):
            assert machine.pid == pids[0]

        def test_leaves_imr_changed(machine):
            registers[machine.pid] = 0x5A

        def test_after_it(machine):
            assert machine.pid != pids[0], "the guest with the changed IMR must not be reused"
    """)
    result = pytester.runpytest("--vmm=fake", "-p", "no:randomly", "--junitxml=report.xml")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*vmm shared guests rebooted (a check left device state changed)*",
                                 "*::test_leaves_imr_changed[[]fake[]]: IMR: 0xff -> 0x5a"])
    assert 'name="vmm_shared_state_changed" value="IMR: 0xff -&gt; 0x5a"' in (pytester.path / "report.xml").read_text()


def test_a_failing_state_probe_is_an_error_naming_it(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        import pytest

        def broken_probe(machine):
            raise OSError("no such register")

        pytestmark = [pytest.mark.vmm_shared, pytest.mark.vmm_shared_state(probe=broken_probe)]

        def test_a(machine): pass
    """)
    result = pytester.runpytest("--vmm=fake")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*shared-state probe broken_probe failed: OSError('no such register')*"])


def test_a_module_says_why_it_needs_no_state_probe_or_is_told_to(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile(
        test_reads_only="""
            import pytest

            pytestmark = [pytest.mark.vmm_shared, pytest.mark.vmm_shared_state(probe=None, reason="reads only")]

            def test_a(machine): pass
        """,
        test_no_reason="""
            import pytest

            pytestmark = [pytest.mark.vmm_shared, pytest.mark.vmm_shared_state(probe=None)]

            def test_b(machine): pass
        """,
    )
    result = pytester.runpytest("--vmm=fake", "-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*vmm_shared_state takes probe=callable (machine -> mapping), or probe=None with a reason*"])


def test_a_shared_guest_that_printed_a_panic_is_not_reused(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        import pytest

        pytestmark = pytest.mark.vmm_shared
        pids = []

        def test_panics(machine):
            pids.append(machine.pid)
            machine.sendline("panic")
            machine.expect(rb"Kernel panic")  # the check saw it; the guest is still spoiled

        def test_next(machine):
            assert machine.pid not in pids
    """)
    result = pytester.runpytest("--vmm=fake", "-p", "no:randomly")
    # The panic fails its own check at teardown even though the check swallowed it.
    result.assert_outcomes(passed=2, errors=1)


def test_phase_profile_is_printed_with_vmm_profile_and_at_v(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        def test_a(machine): pass
        def test_b(machine): pass
    """)
    result = pytester.runpytest("--vmm=fake", "--vmm-profile")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*vmm phase profile*",
                                 "target*build s (n)*boot s (n)*check s (n)*shutdown s (n)*fixtures s*total s*",
                                 "fake *(2)*(2)*(2)*(2)*", "run wall time * s; every test's setup, call and teardown*"])
    assert "vmm phase profile" not in pytester.runpytest("--vmm=fake").stdout.str()
    assert "vmm phase profile" in pytester.runpytest("--vmm=fake", "-v").stdout.str()


def test_phase_profile_crosses_xdist_workers(fake_project) -> None:
    pytest.importorskip("xdist")
    pytester = fake_project()
    pytester.makepyfile("""
        def test_a(machine): pass
        def test_b(machine): pass
    """)
    result = pytester.runpytest("--vmm=fake,fake2", "--vmm-profile", "-n", "2")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["fake *(2)*(2)*(2)*(2)*", "fake2 *(2)*(2)*(2)*(2)*"])


def test_phase_profile_fixtures_column_is_setup_and_teardown_beyond_the_phases() -> None:
    """Each row sums to its tests' own time: what setup and teardown took beyond build, boot and
    shutdown is the fixtures column, never negative."""
    from types import SimpleNamespace

    from pytest_vmm.matrix import PROP_TARGET
    from pytest_vmm.profile import REPORT_ATTR, PhaseProfile

    profile = PhaseProfile()

    def report(when: str, duration: float, phases: dict[str, float] | None = None) -> SimpleNamespace:
        fake = SimpleNamespace(when=when, duration=duration, user_properties=[(PROP_TARGET, "t@h")])
        setattr(fake, REPORT_ATTR, phases)
        return fake

    profile.pytest_runtest_logreport(report("setup", 0.5))                   # type: ignore[arg-type]
    profile.pytest_runtest_logreport(report("call", 0.25))                   # type: ignore[arg-type]
    profile.pytest_runtest_logreport(report("teardown", 0.75, {"build": 0.125, "boot": 0.25,
                                                               "shutdown": 0.5}))  # type: ignore[arg-type]
    header, rows = profile.rows()
    row = dict(zip(header, rows[0], strict=True))
    assert row["fixtures s"] == "0.4"   # 1.25 s of setup+teardown minus 0.875 s of phases
    assert row["total s"] == "1.5"      # = the three reports' durations
    assert profile.tests_seconds == 1.5
