"""Stateful fuzzing of the zigu capability table against a reference model.

A Hypothesis RuleBasedStateMachine drives random ABI call sequences (acquire, release,
enter with live/stale/forged handles, every gated call, workload resets) and predicts each
result exactly from a small Python model of the capability table. Invariants: no gated call
succeeds without its kind active, a stale handle never resolves, handles never leak (the
active mask always equals the model's), and the kernel never crashes. Host-side runs many
steps (libzigu_abi.so); in-guest runs fewer over the ABI channel. Failures shrink to a
minimal call sequence.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from pytest_vmm.stacks import zigu

from .. import zigu_abi_spec as spec


@dataclass
class Slot:
    gen: int = 1
    kind: int = 0
    used: bool = False
    entered: bool = False


class Model:
    """Reference model of the capability table, from docs/zigu-abi.md (rules 3-6 and 9) with the
    document's numbers (suites/zigu_abi_spec.py), never the library's own constants: ``UK`` is
    only used to drive the implementation."""

    def __init__(self, UK):
        self.UK = spec.SpecConstants()
        self.slots = [Slot() for _ in range(spec.TABLE_SIZE)]
        self.policy = spec.POLICIES["WL_DEFAULT"]
        self.policies = spec.POLICY_BY_WORKLOAD

    def _free(self, s: Slot) -> None:
        s.used = s.entered = False
        s.kind = 0
        s.gen = 1 if s.gen >= self.UK.HANDLE_GEN_MAX else s.gen + 1

    def reset(self, wl: int) -> int:
        if wl >= self.UK.WL_COUNT:
            return self.UK.ERR_INVALID
        for s in self.slots:
            if s.used:
                self._free(s)
        self.policy = self.policies[wl]
        return 0

    def mask(self) -> int:
        m = 0
        for s in self.slots:
            if s.used and s.entered:
                m |= 1 << s.kind
        return m

    def resolve(self, h: int):
        UK = self.UK
        if h < 0 or h > 0xFFFFFFFF:
            return UK.ERR_BAD_HANDLE
        slot, gen = h & UK.HANDLE_SLOT_MASK, h >> UK.HANDLE_GEN_SHIFT
        if gen == 0 or slot >= UK.CAP_TABLE_SIZE:
            return UK.ERR_BAD_HANDLE
        s = self.slots[slot]
        if s.used and s.gen == gen:
            return slot
        return UK.ERR_STALE_HANDLE if gen < s.gen else UK.ERR_BAD_HANDLE

    def acquire(self, kind: int) -> int:
        UK = self.UK
        if not UK.CAP_KIND_MIN <= kind <= UK.CAP_KIND_MAX:
            return UK.ERR_BAD_KIND
        if not self.policy & (1 << kind):
            return UK.ERR_DENIED
        for i, s in enumerate(self.slots):
            if not s.used:
                s.used, s.entered, s.kind = True, False, kind
                return (s.gen << UK.HANDLE_GEN_SHIFT) | i
        return UK.ERR_TABLE_FULL

    def release(self, h: int) -> int:
        r = self.resolve(h)
        if r < 0:
            return r
        self._free(self.slots[r])
        return 0

    def kind(self, h: int) -> int:
        r = self.resolve(h)
        return r if r < 0 else self.slots[r].kind

    def enter(self, hs: list[int]) -> int:
        if len(hs) > self.UK.CAP_TABLE_SIZE:
            return self.UK.ERR_BAD_LENGTH
        sel = set()
        for h in hs:
            r = self.resolve(h)
            if r < 0:
                return r
            sel.add(r)
        for i, s in enumerate(self.slots):
            s.entered = s.used and i in sel
        return self.mask()

    def gated(self, nr_name: str, kind: int) -> int | None:
        """Exact result of a gated call with all-zero arguments (None: any value >= 0)."""
        UK = self.UK
        if not self.mask() & (1 << kind):
            return UK.ERR_PERMISSION
        return {"SYS_IO_PIPE": UK.ERR_BAD_POINTER, "SYS_IO_READ": UK.ERR_BAD_FD, "SYS_IO_WRITE": UK.ERR_BAD_FD,
                "SYS_IO_CLOSE": UK.ERR_BAD_FD, "SYS_NET_OPEN": UK.ERR_INVALID, "SYS_LOG_WRITE": 0,
                "SYS_TIME_SLEEP": 0, "SYS_TASK_YIELD": 0, "SYS_IO_POLL": 0, "SYS_RANDOM_GET": 0}.get(nr_name)


def make_machine(abi, UK):
    abi_checks = zigu.adapter("abi_checks")

    gated = sorted(abi_checks.GATED.items())

    class AbiStateMachine(RuleBasedStateMachine):
        handles = Bundle("handles")

        def __init__(self):
            super().__init__()
            self.abi = abi
            self.model = Model(UK)
            # the backend keeps generations across resets: align the model by draining the table
            assert abi.reset(UK.WL_TRUSTED) == 0
            self.model.policy = spec.POLICIES["WL_TRUSTED"]
            self._sync_generations()

        def _sync_generations(self):
            """Learn each slot's current generation (acquire all, release all)."""
            hs = [abi.acquire(UK.CAP_LOG) for _ in range(UK.CAP_TABLE_SIZE)]
            assert all(h > 0 for h in hs), hs
            for h in hs:
                self.model.slots[h & UK.HANDLE_SLOT_MASK].gen = h >> UK.HANDLE_GEN_SHIFT
                assert abi.release(h) == 0
                self.model._free(self.model.slots[h & UK.HANDLE_SLOT_MASK])

        @rule(target=handles, kind=st.integers(0, UK.CAP_KIND_MAX + 2))
        def acquire(self, kind):
            got, want = self.abi.acquire(kind), self.model.acquire(kind)
            assert got == want, f"cap_acquire({kind}) = {got}, model {want}"
            return got if got > 0 else (1 << UK.HANDLE_GEN_SHIFT) | kind  # keep errors as forged handles

        @rule(h=handles)
        def release(self, h):
            got, want = self.abi.release(h), self.model.release(h)
            assert got == want, f"cap_release({h:#x}) = {got}, model {want}"

        @rule(h=st.one_of(handles, st.integers(0, 2**32 - 1), st.integers(2**32, 2**64 - 1)))
        def kind(self, h):
            got, want = self.abi.kind(h), self.model.kind(h)
            assert got == want, f"cap_kind({h:#x}) = {got}, model {want}"
            if want == UK.ERR_STALE_HANDLE:
                assert got < 0, "a stale handle resolved"

        @rule(hs=st.lists(st.one_of(handles, st.integers(0, 2**32 - 1)), max_size=UK.CAP_TABLE_SIZE + 1))
        def enter(self, hs):
            got, want = self.abi.enter(hs), self.model.enter(hs)
            assert got == want, f"cap_enter({[hex(h) for h in hs]}) = {got}, model {want}"

        @rule(call=st.sampled_from(gated))
        def gated_call(self, call):
            nr_name, kind_name = call
            got = self.abi.syscall(getattr(UK, nr_name), 0, 0, 0)
            want = self.model.gated(nr_name, spec.KINDS[kind_name])
            if want is None:
                assert got >= 0, f"{nr_name} with its capability active = {got}"
            else:
                assert got == want, f"{nr_name}() = {got}, model {want} (mask {self.model.mask():#x})"

        @rule(wl=st.integers(0, UK.WL_COUNT))
        def reset(self, wl):
            got, want = self.abi.reset(wl), self.model.reset(wl)
            assert got == want

        @invariant()
        def mask_matches(self):
            got = self.abi.active()
            assert got == self.model.mask(), f"active mask {got:#x}, model {self.model.mask():#x}"

    return AbiStateMachine


@pytest.mark.vmm_stacks("zigu")
def test_abi_fuzz_host(vmm_stack) -> None:
    """docs/zigu-abi.md, rules 1-6 and 9, on the host library: random call sequences, each
    result predicted exactly by the document's model. A failing `zig build` errors. zigu's
    check (its abi.zig built for the host): it runs when zigu is among the selected targets."""
    abi = spec.load_host_abi()
    UK = zigu.adapter("ukernel_abi").UK

    # Thousands of steps host-side: at least 200 sequences of the profile's step count.
    cur = settings()
    run_state_machine_as_test(make_machine(abi, UK), settings=settings(cur, max_examples=max(cur.max_examples, 200), deadline=None))


@pytest.mark.vmm_requires("abi")
def test_abi_fuzz_in_guest(shared_machine) -> None:
    """docs/zigu-abi.md, rules 1-6 and 9, in the guest: random call sequences through the
    guest's ABI channel, each result predicted by the document's model."""
    UK = zigu.adapter("ukernel_abi").UK
    abi = shared_machine.channel("abi")
    cur = settings()
    run_state_machine_as_test(make_machine(abi, UK),
                              settings=settings(cur, max_examples=min(cur.max_examples, 10),
                                                stateful_step_count=min(cur.stateful_step_count, 25), deadline=None))
    assert abi.call("ping") == "pong", "the kernel must survive the fuzz run"
