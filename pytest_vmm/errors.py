"""Errors a machine raises; each message carries what a person needs to act on it."""

from __future__ import annotations


class MachineError(Exception):
    """Base class; ``console_tail`` and ``log_path`` are shown in failure reports."""

    def __init__(self, message: str, console_tail: str = "", log_path: str = "") -> None:
        details = message
        if log_path:
            details += f"\nconsole log: {log_path}"
        if console_tail:
            details += f"\n--- console tail ---\n{console_tail}\n--- end of console ---"
        super().__init__(details)
        self.summary = message
        self.console_tail = console_tail
        self.log_path = log_path


class BootTimeout(MachineError):
    pass


class GuestCrashed(MachineError):
    pass


class GuestExited(MachineError):
    pass


class LaunchError(MachineError):
    pass


class MachineLeak(MachineError):
    """Something outlived shutdown: a process, a socket or the run directory."""


class TargetUnavailable(Exception):
    pass
