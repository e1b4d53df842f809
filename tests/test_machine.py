"""The machine fixture against test-double guests: boot, console, failures, clean shutdown."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.leaks import no_leftovers  # noqa: F401  (autouse: each test's guests and run dirs)


def test_machine_boots_and_talks_over_the_console(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        def test_ping(machine):
            assert machine.boot_ms is not None and machine.boot_ms > 0
            assert machine.is_alive()
            machine.sendline("ping 7")
            match = machine.expect(rb"pong (\\d+)", timeout=5)
            assert match.group(1) == b"7"
            assert b"fake: ready" in machine.console_text()
    """)
    pytester.runpytest("--vmm=fake").assert_outcomes(passed=1)


def test_boot_timeout_names_pattern_duration_and_what_came_instead(fake_project) -> None:
    pytester = fake_project({"fake": "hang"}, timeout=0.5)
    pytester.makepyfile("def test_boot(machine): pass")
    result = pytester.runpytest("--vmm=fake")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*BootTimeout: fake: no boot within 2.0 s: waited for /fake: ready/ on the console, got 14 bytes*",
        "*console log: *console.log",
        "*fake firmware*",
    ])


def test_kernel_panic_fails_with_console_tail(fake_project) -> None:
    pytester = fake_project({"fake": "panic"})
    pytester.makepyfile("def test_boot(machine): pass")
    result = pytester.runpytest("--vmm=fake")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*GuestCrashed: fake: guest crashed while booting*Kernel panic*",
                                 "*VFS: Unable to mount root fs*"])


def test_panic_during_a_test_fails_that_test(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        def test_panics(machine):
            machine.sendline("panic")
            machine.expect(rb"never printed", timeout=5)

        def test_next_starts_clean(machine):
            machine.sendline("ping 1")
            machine.expect(rb"pong 1")
    """)
    result = pytester.runpytest("--vmm=fake")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*GuestCrashed: fake: guest crashed (matched *Kernel panic*"])


def test_guest_that_dies_fails_with_exit_status(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        def test_dies(machine):
            machine.sendline("exit 5")
            machine.expect(rb"pong", timeout=5)
    """)
    result = pytester.runpytest("--vmm=fake")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*GuestExited: fake: console closed (status 5)*"])


def test_failure_report_carries_console_tail_and_log_path(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        def test_fails(machine):
            machine.sendline("ping 42")
            machine.expect(rb"pong 42")
            assert False, "deliberate"
    """)
    result = pytester.runpytest("--vmm=fake")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*vmm console tail: fake*", "console log: *console.log",
                                 "hypervisor: proc, accel tcg, exit status None", "*fake: ready*", "pong 42"])


def test_hypervisor_ignoring_sigterm_is_killed(fake_project) -> None:
    pytester = fake_project({"fake": "ignore-term"})
    pytester.makepyfile("""
        def test_it(machine):
            machine.shutdown()
            assert "SIGTERM ignored; sent SIGKILL" in machine.notes
            assert not machine.is_alive()
    """)
    pytester.runpytest("--vmm=fake").assert_outcomes(passed=1)


def test_grandchild_processes_are_killed_at_shutdown(fake_project) -> None:
    pytester = fake_project({"fake": "orphan"})
    pytester.makepyfile("""
        def test_it(machine):
            machine.shutdown()
            assert any("killed leftover" in note for note in machine.notes), machine.notes
    """)
    pytester.runpytest("--vmm=fake").assert_outcomes(passed=1)


def test_garbage_console_keeps_junit_valid(fake_project) -> None:
    pytester = fake_project({"fake": "garbage"}, timeout=0.5)
    pytester.makepyfile("""
        def test_boot(machine): pass

        def test_property(record_property):
            record_property("guest_said", "\\x00\\x1b[31m\\udcff bytes")
    """)
    result = pytester.runpytest("--vmm=fake", "--junitxml=report.xml")
    result.assert_outcomes(errors=1, passed=1)
    tree = ET.parse(pytester.path / "report.xml")  # raises if the XML is not well formed
    text = ET.tostring(tree.getroot(), encoding="unicode")
    assert "not utf-8" in text


def test_shared_machine_boots_once_and_reboots_after_death(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        pids = []

        def test_first(shared_machine):
            pids.append(shared_machine.pid)

        def test_second(shared_machine):
            pids.append(shared_machine.pid)
            assert pids[0] == pids[1]
            shared_machine.sendline("exit 0")
            assert shared_machine.wait_exit(5) == 0

        def test_third_gets_a_fresh_one(shared_machine):
            assert shared_machine.pid != pids[0]
            shared_machine.sendline("ping 3")
            shared_machine.expect(rb"pong 3")
    """)
    pytester.runpytest("--vmm=fake").assert_outcomes(passed=3)


def test_shared_machine_is_shut_down_when_the_run_leaves_its_module(fake_project) -> None:
    """An idle shared guest must not outlive its module (a polling kernel spins its vCPU)."""
    pytester = fake_project()
    pytester.makepyfile(
        test_shared_first="""
            import os

            def test_first(shared_machine):
                os.environ["VMM_FIRST_PID"] = str(shared_machine.pid)

            def test_still_the_same(shared_machine):
                assert str(shared_machine.pid) == os.environ["VMM_FIRST_PID"]
        """,
        test_shared_second="""
            import os

            def test_previous_guest_is_gone(shared_machine):
                first = int(os.environ["VMM_FIRST_PID"])
                assert shared_machine.pid != first
                assert not os.path.exists(f"/proc/{first}") or open(f"/proc/{first}/stat").read().split()[2] == "Z"
        """,
    )
    pytester.runpytest("--vmm=fake", "-p", "no:randomly").assert_outcomes(passed=3)


def test_a_lane_like_hypervisors_shared_machine_outlives_its_module(fake_project) -> None:
    """shared_across_modules (the lanes, whose boots cost seconds): the next module reuses the
    machine, and the session's end shuts it down (no_leftovers checks that nothing is left)."""
    pytester = fake_project()
    pytester.makepyfile(
        test_shared_first="""
            import os

            def test_first(shared_machine):
                os.environ["VMM_FIRST_PID"] = str(shared_machine.pid)
        """,
        test_shared_second="""
            import os

            def test_same_guest(shared_machine):
                assert shared_machine.pid == int(os.environ["VMM_FIRST_PID"])
        """,
    )
    pytester.runpytest("--vmm=fake@proc-lane", "-p", "no:randomly").assert_outcomes(passed=2)
    pytester.runpytest("--vmm=fake", "-p", "no:randomly").assert_outcomes(passed=1, failed=1)


def test_logs_of_passing_tests_are_removed_unless_kept(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        def test_pass(machine): pass

        def test_fail(machine): assert False
    """)
    artifacts = pytester.path / "artifacts"
    pytester.runpytest("--vmm=fake", f"--vmm-artifacts={artifacts}").assert_outcomes(passed=1, failed=1)
    logs = sorted(p.parent.name for p in artifacts.glob("*/console.log"))
    assert logs == ["test_logs_of_passing_tests_are_removed_unless_kept.py_test_fail_fake"], logs
    pytester.runpytest("--vmm=fake", f"--vmm-artifacts={artifacts}", "--vmm-keep-logs")
    assert len(list(artifacts.glob("*/console.log"))) == 2


def test_companion_starts_first_and_is_stopped(fake_project) -> None:
    pytester = fake_project({"fake": "with-companion"})
    pytester.makepyfile("""
        def test_it(machine):
            assert (machine.run_dir / "backend.sock").exists()
            assert (machine.artifacts_dir / "backend.log").exists()
    """)
    pytester.runpytest("--vmm=fake").assert_outcomes(passed=1)


def test_companion_that_dies_is_a_clear_launch_error(fake_project) -> None:
    pytester = fake_project({"fake": "bad-companion"})
    pytester.makepyfile("def test_it(machine): pass")
    result = pytester.runpytest("--vmm=fake")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*LaunchError: backend exited with 4 before creating */backend.sock; "
                                 "its log: backend: bad config*"])


def test_agent_unsupported_answer_skips_the_check(fake_project) -> None:
    pytester = fake_project()
    pytester.makepyfile("""
        from pytest_vmm.agent.client import AgentError
        from pytest_vmm.agent.protocol import ErrorCode

        def test_needs_smp(machine):
            raise AgentError(ErrorCode.UNSUPPORTED, "no second vCPU", "@>3 ipi to=1 *00")

        def test_other_agent_errors_still_fail(machine):
            raise AgentError(ErrorCode.FAULT, "page fault", "@>4 rd addr=0 *00")
    """)
    result = pytester.runpytest("--vmm=fake", "-rs")
    result.assert_outcomes(skipped=1, failed=1)
    result.stdout.fnmatch_lines(["SKIPPED*the guest agent does not support this: no second vCPU*"])
