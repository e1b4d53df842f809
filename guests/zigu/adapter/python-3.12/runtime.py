"""zigu Python runtime adapter: asyncio on top of the kernel's capability ABI.

    python runtime.py WORKLOAD.py [--workload default|trusted|minimal|sandbox] [--caps LOG,TIME,IO]

What it does, in the order a zigu workload would:
  1. starts a fresh workload context with the chosen policy (``uk_host_reset``);
  2. ``cap_acquire``s the capabilities the runtime needs (IO and TIME, plus LOG if allowed)
     and ``cap_enter``s them - nothing is active before that;
  3. installs ``UkEventLoopPolicy``: a ``SelectorEventLoop`` whose selector is ``UkSelector``,
     which turns ``select(timeout)`` into one ``io_poll`` call over ukernel descriptors; the
     loop's self-pipe is a ukernel pipe and ``loop.time()`` is ``time_now``;
  4. runs ``main()`` of the workload module.

Here the ABI is the host-side build of the kernel's own abi.zig (libzigu_abi.so): the same
rules the guest enforces ("run the adapter locally", as the seed puts it).
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import selectors
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.modules.setdefault("runtime", sys.modules[__name__])  # `python runtime.py` + `import runtime`: one module

from ukernel_abi import UK, HostAbi, UkError, check  # noqa: E402

_abi: HostAbi | None = None


def abi() -> HostAbi:
    if _abi is None:
        raise RuntimeError("zigu runtime not started (call runtime.start())")
    return _abi


class UkFile:
    """A ukernel I/O descriptor with the socket-like surface asyncio's loop uses."""

    def __init__(self, fd: int, mode: str):
        self.fd = fd
        self.mode = mode
        self.closed = False

    def fileno(self) -> int:
        if self.closed:
            return -1
        return self.fd

    def setblocking(self, flag: bool) -> None:  # always non-blocking
        pass

    def recv(self, n: int) -> bytes:
        rc, data = abi().read(self.fd, n)
        if rc == UK.ERR_WOULD_BLOCK:
            raise BlockingIOError
        check(rc, "io_read")
        return data

    def send(self, data: bytes) -> int:
        rc = abi().write(self.fd, bytes(data))
        if rc == UK.ERR_WOULD_BLOCK:
            raise BlockingIOError
        return check(rc, "io_write")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            abi().close(self.fd)

    def __repr__(self) -> str:
        return f"<UkFile fd={self.fd} {self.mode}{' closed' if self.closed else ''}>"


def uk_pipe() -> tuple[UkFile, UkFile]:
    rc, rd, wr = abi().pipe()
    check(rc, "io_pipe")
    return UkFile(rd, "r"), UkFile(wr, "w")


class UkSelector(selectors.BaseSelector):
    """selectors API over io_poll: one ABI call per loop iteration."""

    def __init__(self):
        self._map: dict[int, selectors.SelectorKey] = {}
        self.polls = 0

    @staticmethod
    def _fd(fileobj) -> int:
        return fileobj if isinstance(fileobj, int) else fileobj.fileno()

    def register(self, fileobj, events, data=None):
        fd = self._fd(fileobj)
        if fd in self._map:
            raise KeyError(f"{fileobj!r} is already registered")
        if not events or events & ~(selectors.EVENT_READ | selectors.EVENT_WRITE):
            raise ValueError(f"invalid events {events!r}")
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._map[fd] = key
        return key

    def unregister(self, fileobj):
        return self._map.pop(self._fd(fileobj))

    def get_key(self, fileobj):
        try:
            return self._map[self._fd(fileobj)]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None

    def modify(self, fileobj, events, data=None):
        self.unregister(fileobj)
        return self.register(fileobj, events, data)

    def select(self, timeout=None):
        items = []
        keys = list(self._map.values())
        for key in keys:
            ev = 0
            if key.events & selectors.EVENT_READ:
                ev |= UK.POLLIN
            if key.events & selectors.EVENT_WRITE:
                ev |= UK.POLLOUT
            items.append((key.fd, ev))
        timeout_ns = -1 if timeout is None else max(0, int(timeout * 1e9))
        self.polls += 1
        rc, revents = abi().poll(items, timeout_ns)
        if rc == UK.ERR_WOULD_BLOCK:
            # nothing can ever become ready and no timer is due: asyncio would hang forever
            raise RuntimeError("io_poll: infinite wait with nothing that could become ready")
        check(rc, "io_poll")
        ready = []
        for key, rev in zip(keys, revents):
            got = 0
            if rev & (UK.POLLIN | UK.POLLHUP | UK.POLLERR | UK.POLLNVAL):
                got |= selectors.EVENT_READ
            if rev & (UK.POLLOUT | UK.POLLERR | UK.POLLNVAL):
                got |= selectors.EVENT_WRITE
            got &= key.events
            if got:
                ready.append((key, got))
        return ready

    def get_map(self):
        return dict(self._map)

    def close(self):
        self._map.clear()


class UkEventLoop(asyncio.SelectorEventLoop):
    def __init__(self):
        super().__init__(UkSelector())

    def _make_self_pipe(self):  # the wake-up pipe is a ukernel pipe
        self._ssock, self._csock = uk_pipe()
        self._internal_fds += 1
        self._add_reader(self._ssock.fileno(), self._read_from_self)

    def time(self) -> float:
        return check(abi().now(), "time_now") / 1e9


class UkEventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self):
        return UkEventLoop()


def start(workload: str | int = "default", caps: tuple[str, ...] = ("LOG", "TIME", "IO")) -> HostAbi:
    """Fresh workload context, acquire + enter `caps`, install the event loop policy."""
    global _abi
    _abi = HostAbi()
    wl = workload if isinstance(workload, int) else getattr(UK, f"WL_{workload.upper()}")
    check(_abi.reset(wl), "reset")
    handles = [check(_abi.acquire(getattr(UK, f"CAP_{c}")), f"cap_acquire({c})") for c in caps]
    check(_abi.enter(handles), "cap_enter")
    asyncio.set_event_loop_policy(UkEventLoopPolicy())
    return _abi


def log(msg: str) -> int:
    return check(abi().log(msg.encode()), "log_write")


def run(main_coro_fn, **kw):
    start(**kw)
    return asyncio.run(main_coro_fn())


def _load(path: str):
    spec = importlib.util.spec_from_file_location("zigu_workload", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cli(argv=None) -> int:
    ap = argparse.ArgumentParser(description="run a Python workload on the zigu ABI (host-side library)")
    ap.add_argument("workload_file")
    ap.add_argument("--workload", default="default", help="policy: default, trusted, minimal, sandbox")
    ap.add_argument("--caps", default="LOG,TIME,IO")
    args = ap.parse_args(argv)
    mod = _load(args.workload_file)
    try:
        result = run(mod.main, workload=args.workload, caps=tuple(c for c in args.caps.split(",") if c))
    except UkError as e:
        print(f"zigu-runtime: {e}", file=sys.stderr)
        return 2
    text = abi().log_take().decode(errors="replace")
    if text:
        print(text)
    print(f"zigu-runtime: main() -> {result!r}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
