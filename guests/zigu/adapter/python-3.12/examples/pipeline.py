"""Demo workload: asyncio tasks talking over ukernel pipes, scheduled by io_poll.

Run it with:  guests/zigu/scripts/ukernel adapter   (or: python runtime.py examples/pipeline.py)
The last line it logs is the summary the tests check.
"""
import asyncio

import runtime
from ukernel_abi import UK


async def producer(wr: runtime.UkFile, n: int) -> None:
    loop = asyncio.get_running_loop()
    for i in range(n):
        msg = f"msg{i};".encode()
        while True:
            try:
                wr.send(msg)
                break
            except BlockingIOError:  # pipe full: wait for POLLOUT through io_poll
                fut = loop.create_future()
                loop.add_writer(wr, fut.set_result, None)
                try:
                    await fut
                finally:
                    loop.remove_writer(wr)
        if i % 10 == 0:
            await asyncio.sleep(0.001)  # a timer: io_poll with a timeout
    wr.close()  # reader sees POLLHUP then EOF


async def consumer(rd: runtime.UkFile) -> list[str]:
    loop = asyncio.get_running_loop()
    got = b""
    while True:
        fut = loop.create_future()
        loop.add_reader(rd, fut.set_result, None)
        try:
            await fut
        finally:
            loop.remove_reader(rd)
        chunk = rd.recv(256)
        if not chunk:  # EOF
            break
        got += chunk
    return [m for m in got.decode().split(";") if m]


async def idle_reader(rd: runtime.UkFile) -> None:
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.add_reader(rd, fut.set_result, None)
    try:
        await fut
    finally:
        loop.remove_reader(rd)


async def main() -> dict:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    rd, wr = runtime.uk_pipe()
    n = 200
    prod = asyncio.create_task(producer(wr, n))
    msgs = await consumer(rd)
    await prod
    rd.close()
    # readiness with a timeout: nobody writes to this pipe, so io_poll times out
    rd2, wr2 = runtime.uk_pipe()
    timed_out = False
    try:
        await asyncio.wait_for(idle_reader(rd2), timeout=0.05)
    except asyncio.TimeoutError:
        timed_out = True
    rd2.close()
    wr2.close()
    polls = loop._selector.polls
    elapsed = loop.time() - t0
    summary = {"messages": len(msgs), "in_order": msgs == [f"msg{i}" for i in range(n)],
               "timeout_seen": timed_out, "io_polls": polls, "elapsed_s": round(elapsed, 3),
               "active_mask": runtime.abi().active()}
    runtime.log(f"pipeline done {summary}")
    return summary
