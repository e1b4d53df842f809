"""Deterministic checks of every zigu ABI rule, written once against the backend-neutral
driver surface shared by ``ukernel_abi.HostAbi`` (in-process library) and
``ukernel_channel.GuestAbi`` (the running kernel). Used by tests/zigu and
suites/test_abi_caps.py. Each check starts a fresh workload context.
"""
from __future__ import annotations

from ukernel_abi import UK

GATED = {  # call number -> kind it needs
    "SYS_LOG_WRITE": "CAP_LOG",
    "SYS_TIME_NOW": "CAP_TIME",
    "SYS_TIME_SLEEP": "CAP_TIME",
    "SYS_TASK_YIELD": "CAP_TASK",
    "SYS_TASK_ID": "CAP_TASK",
    "SYS_IO_PIPE": "CAP_IO",
    "SYS_IO_READ": "CAP_IO",
    "SYS_IO_WRITE": "CAP_IO",
    "SYS_IO_CLOSE": "CAP_IO",
    "SYS_IO_POLL": "CAP_IO",
    "SYS_NET_OPEN": "CAP_NET",
    "SYS_RANDOM_GET": "CAP_RANDOM",
}
KINDS = ["CAP_LOG", "CAP_TIME", "CAP_TASK", "CAP_IO", "CAP_NET", "CAP_RANDOM"]


def bit(kind: int) -> int:
    return 1 << kind


def check_starts_closed(abi) -> None:
    assert abi.reset(UK.WL_TRUSTED) == UK.OK
    assert abi.active() == 0, "a fresh workload must have no active capability"
    for nr in GATED:
        assert abi.syscall(getattr(UK, nr), 0, 0, 0) == UK.ERR_PERMISSION, nr


def check_gate_opens_only_for_entered_kind(abi) -> None:
    """For every kind: acquired-but-not-entered is denied; entered opens exactly that kind."""
    for kname in KINDS:
        kind = getattr(UK, kname)
        assert abi.reset(UK.WL_TRUSTED) == UK.OK
        h = abi.acquire(kind)
        assert h > 0, (kname, h)
        for nr, need in GATED.items():
            assert abi.syscall(getattr(UK, nr), 0, 0, 0) == UK.ERR_PERMISSION, (kname, nr, "not entered yet")
        assert abi.enter([h]) == bit(kind)
        for nr, need in GATED.items():
            r = abi.syscall(getattr(UK, nr), 0, 0, 0)
            if need == kname:
                assert r != UK.ERR_PERMISSION, (kname, nr, r)
            else:
                assert r == UK.ERR_PERMISSION, (kname, nr, r)


def check_release_deactivates(abi) -> None:
    assert abi.reset(UK.WL_DEFAULT) == UK.OK
    h = abi.acquire(UK.CAP_LOG)
    assert abi.enter([h]) == bit(UK.CAP_LOG)
    assert abi.log(b"x") == 1
    assert abi.release(h) == UK.OK
    assert abi.active() == 0
    assert abi.log(b"x") == UK.ERR_PERMISSION
    # two handles of one kind: the kind stays active while one entered handle lives
    h1, h2 = abi.acquire(UK.CAP_LOG), abi.acquire(UK.CAP_LOG)
    assert abi.enter([h1, h2]) == bit(UK.CAP_LOG)
    assert abi.release(h1) == UK.OK
    assert abi.active() == bit(UK.CAP_LOG)
    assert abi.release(h2) == UK.OK
    assert abi.active() == 0
    # enter replaces the active set; an empty set drops everything
    ht, hi = abi.acquire(UK.CAP_TIME), abi.acquire(UK.CAP_IO)
    assert abi.enter([ht, hi]) == bit(UK.CAP_TIME) | bit(UK.CAP_IO)
    assert abi.enter([hi]) == bit(UK.CAP_IO)
    assert abi.now() == UK.ERR_PERMISSION
    assert abi.enter([]) == 0


def check_policies(abi) -> None:
    expect = {UK.WL_DEFAULT: UK.POLICY_DEFAULT, UK.WL_TRUSTED: UK.POLICY_TRUSTED,
              UK.WL_MINIMAL: UK.POLICY_MINIMAL, UK.WL_SANDBOX: UK.POLICY_SANDBOX}
    for wl, pol in expect.items():
        assert abi.reset(wl) == UK.OK
        assert abi.policy() == pol
        for kname in KINDS:
            kind = getattr(UK, kname)
            r = abi.acquire(kind)
            if pol & bit(kind):
                assert r > 0, (wl, kname, r)
                assert abi.release(r) == UK.OK
            else:
                assert r == UK.ERR_DENIED, (wl, kname, r)
    assert abi.reset(UK.WL_COUNT) == UK.ERR_INVALID


def check_bad_kind(abi) -> None:
    assert abi.reset(UK.WL_TRUSTED) == UK.OK
    for k in (0, UK.CAP_KIND_MAX + 1, 255, 0xFFFFFFFF):
        assert abi.acquire(k) == UK.ERR_BAD_KIND, k


def check_stale_and_forged_handles(abi) -> None:
    assert abi.reset(UK.WL_DEFAULT) == UK.OK
    h1 = abi.acquire(UK.CAP_LOG)
    assert abi.kind(h1) == UK.CAP_LOG
    assert abi.release(h1) == UK.OK
    assert abi.kind(h1) == UK.ERR_STALE_HANDLE  # released
    assert abi.release(h1) == UK.ERR_STALE_HANDLE  # double release
    assert abi.enter([h1]) == UK.ERR_STALE_HANDLE
    h2 = abi.acquire(UK.CAP_LOG)  # recycles the slot with a new generation
    assert h2 & UK.HANDLE_SLOT_MASK == h1 & UK.HANDLE_SLOT_MASK and h2 != h1
    assert abi.kind(h1) == UK.ERR_STALE_HANDLE  # recycled
    assert abi.enter([h1]) == UK.ERR_STALE_HANDLE
    assert abi.active() == 0
    forged = [0, h2 + (1 << UK.HANDLE_GEN_SHIFT), (1 << UK.HANDLE_GEN_SHIFT) | UK.CAP_TABLE_SIZE,
              (5 << UK.HANDLE_GEN_SHIFT) | 200, 0xFFFFFFFF, h2 & UK.HANDLE_SLOT_MASK]
    for f in forged:
        assert abi.kind(f) == UK.ERR_BAD_HANDLE, hex(f)
        assert abi.release(f) == UK.ERR_BAD_HANDLE, hex(f)
    assert abi.syscall(UK.SYS_CAP_KIND, 1 << 40) == UK.ERR_BAD_HANDLE
    # a bad handle anywhere in the list: nothing changes
    assert abi.enter([h2]) == bit(UK.CAP_LOG)
    assert abi.enter([h2, h1]) == UK.ERR_STALE_HANDLE
    assert abi.active() == bit(UK.CAP_LOG)
    # handles of a previous workload are stale in the next one
    assert abi.reset(UK.WL_DEFAULT) == UK.OK
    assert abi.kind(h2) == UK.ERR_STALE_HANDLE


def check_table_exhaustion(abi) -> None:
    assert abi.reset(UK.WL_DEFAULT) == UK.OK
    hs = [abi.acquire(UK.CAP_TIME) for _ in range(UK.CAP_TABLE_SIZE)]
    assert all(h > 0 for h in hs) and len(set(hs)) == len(hs)
    assert abi.acquire(UK.CAP_LOG) == UK.ERR_TABLE_FULL
    assert abi.acquire(UK.CAP_LOG) == UK.ERR_TABLE_FULL
    assert abi.release(hs[7]) == UK.OK
    h = abi.acquire(UK.CAP_LOG)
    assert h > 0 and h not in hs
    assert abi.acquire(UK.CAP_LOG) == UK.ERR_TABLE_FULL
    assert abi.enter(hs[:7] + [h]) == bit(UK.CAP_TIME) | bit(UK.CAP_LOG)
    assert abi.enter([0] * (UK.CAP_TABLE_SIZE + 1)) == UK.ERR_BAD_LENGTH


def check_bad_pointers_and_lengths(abi) -> None:
    assert abi.reset(UK.WL_TRUSTED) == UK.OK
    hs = [abi.acquire(getattr(UK, k)) for k in ("CAP_LOG", "CAP_IO", "CAP_RANDOM")]
    assert abi.enter(hs) > 0
    for p in abi.bad_pointers():
        assert abi.syscall(UK.SYS_LOG_WRITE, p, 4) == UK.ERR_BAD_POINTER, hex(p)
        assert abi.syscall(UK.SYS_CAP_ENTER, p, 1) == UK.ERR_BAD_POINTER, hex(p)
        assert abi.syscall(UK.SYS_IO_PIPE, p) == UK.ERR_BAD_POINTER, hex(p)
        assert abi.syscall(UK.SYS_RANDOM_GET, p, 8) == UK.ERR_BAD_POINTER, hex(p)
        assert abi.syscall(UK.SYS_IO_POLL, p, 1, 0) == UK.ERR_BAD_POINTER, hex(p)
    # a range that starts in workload memory but runs off its end
    assert abi.syscall(UK.SYS_LOG_WRITE, (1 << 64) - 8, 16) == UK.ERR_BAD_POINTER
    ok = abi.scratch(0)
    assert abi.syscall(UK.SYS_LOG_WRITE, ok, UK.LOG_MAX + 1) == UK.ERR_BAD_LENGTH
    assert abi.syscall(UK.SYS_RANDOM_GET, ok, UK.RANDOM_MAX + 1) == UK.ERR_BAD_LENGTH
    assert abi.syscall(UK.SYS_IO_POLL, ok, UK.IO_POLL_MAX + 1, 0) == UK.ERR_BAD_LENGTH
    assert abi.syscall(UK.SYS_CAP_ENTER, ok, UK.CAP_TABLE_SIZE + 1) == UK.ERR_BAD_LENGTH
    assert abi.syscall(UK.SYS_LOG_WRITE, 0, 0) == 0  # zero length needs no pointer
    rc, data = abi.random(16)
    assert rc == 16 and len(data) == 16
    assert abi.syscall(9999) == UK.ERR_NOSYS
    assert abi.net_open(80) == UK.ERR_PERMISSION  # NET not entered
    hn = abi.acquire(UK.CAP_NET)
    assert abi.enter(hs + [hn]) > 0
    assert abi.net_open(0) == UK.ERR_INVALID
    assert abi.net_open(80) == UK.ERR_NO_DEVICE


def check_io_poll(abi) -> None:
    assert abi.reset(UK.WL_DEFAULT) == UK.OK
    assert abi.poll([], 0) == (UK.ERR_PERMISSION, [])
    assert abi.enter([abi.acquire(UK.CAP_IO), abi.acquire(UK.CAP_TIME)]) == bit(UK.CAP_IO) | bit(UK.CAP_TIME)
    rc, rd, wr = abi.pipe()
    assert rc == 0 and rd >= 0 and wr >= 0 and rd != wr
    # not ready: timeout 0 returns at once, a timeout waits at least that long
    assert abi.poll([(rd, UK.POLLIN)], 0) == (0, [0])
    t0 = abi.now()
    assert abi.poll([(rd, UK.POLLIN)], 30_000_000) == (0, [0])
    assert abi.now() - t0 >= 30_000_000
    assert abi.poll([(rd, UK.POLLIN)], -1)[0] == UK.ERR_WOULD_BLOCK  # would wait forever
    assert abi.poll([(rd, UK.POLLIN)], UK.IO_POLL_TIMEOUT_MAX_NS + 1)[0] == UK.ERR_INVALID
    assert abi.read(rd, 8) == (UK.ERR_WOULD_BLOCK, b"")
    # writable end is ready for POLLOUT
    assert abi.poll([(wr, UK.POLLOUT), (rd, UK.POLLIN)], 0) == (1, [UK.POLLOUT, 0])
    assert abi.write(wr, b"hello") == 5
    assert abi.poll([(rd, UK.POLLIN)], 1_000_000_000) == (1, [UK.POLLIN])
    assert abi.read(rd, 3) == (3, b"hel")
    assert abi.read(rd, 10) == (2, b"lo")
    # fill the pipe: POLLOUT clears, WOULD_BLOCK
    assert abi.write(wr, b"x" * 300) == 300
    assert abi.write(wr, b"y" * 300) == UK.IO_PIPE_CAPACITY - 300
    assert abi.write(wr, b"z") == UK.ERR_WOULD_BLOCK
    assert abi.poll([(wr, UK.POLLOUT)], 0) == (0, [0])
    # bad descriptors: POLLNVAL in poll, ERR_BAD_FD in calls; negative fds ignored
    assert abi.poll([(15, UK.POLLIN), (-1, UK.POLLIN)], 0) == (1, [UK.POLLNVAL, 0])
    assert abi.read(15, 1)[0] == UK.ERR_BAD_FD
    assert abi.close(99) == UK.ERR_BAD_FD
    assert abi.read(wr, 1)[0] == UK.ERR_INVALID  # wrong direction
    # close the writer: reader drains, then HUP + EOF
    assert abi.close(wr) == UK.OK
    rc, _ = abi.read(rd, 4096)
    assert rc == UK.IO_PIPE_CAPACITY
    assert abi.poll([(rd, UK.POLLIN)], 0) == (1, [UK.POLLHUP])
    assert abi.read(rd, 4) == (0, b"")
    assert abi.close(rd) == UK.OK
    # close the reader: writer gets ERR_CLOSED
    rc, rd, wr = abi.pipe()
    assert abi.close(rd) == UK.OK
    assert abi.write(wr, b"a") == UK.ERR_CLOSED
    assert abi.poll([(wr, UK.POLLOUT)], 0) == (1, [UK.POLLERR])
    # descriptor table exhaustion and recovery
    assert abi.close(wr) == UK.OK
    pipes = []
    while True:
        rc, a, b = abi.pipe()
        if rc < 0:
            assert rc == UK.ERR_TABLE_FULL
            break
        pipes.append((a, b))
    assert len(pipes) == UK.IO_MAX_FDS // 2
    assert abi.close(pipes[0][0]) == 0 and abi.close(pipes[0][1]) == 0
    assert abi.pipe()[0] == 0


ALL = [check_starts_closed, check_gate_opens_only_for_entered_kind, check_release_deactivates,
       check_policies, check_bad_kind, check_stale_and_forged_handles, check_table_exhaustion,
       check_bad_pointers_and_lengths, check_io_poll]
