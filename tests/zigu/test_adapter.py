"""The asyncio adapter: an event loop whose selector is io_poll, on the host ABI library."""
import ast
import subprocess
import sys

from zigu_testlib import ADAPTER


def run_runtime(zigu_build, *args):
    env = {"ZIGU_ABI_LIB": str(zigu_build / "libzigu_abi.so"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(ADAPTER / "runtime.py"), *args], cwd=ADAPTER,
                          capture_output=True, text=True, timeout=120, env=env)


def test_pipeline_demo(zigu_build):
    r = run_runtime(zigu_build, str(ADAPTER / "examples" / "pipeline.py"))
    assert r.returncode == 0, r.stderr
    line = [l for l in r.stdout.splitlines() if l.startswith("zigu-runtime: main() -> ")][0]
    summary = ast.literal_eval(line.split("-> ", 1)[1])
    assert summary["messages"] == 200 and summary["in_order"]
    assert summary["timeout_seen"], "asyncio.wait_for must time out through io_poll"
    assert summary["io_polls"] > 0
    assert "pipeline done" in r.stdout  # written through the LOG capability


def test_policy_denies_runtime_caps(zigu_build):
    r = run_runtime(zigu_build, str(ADAPTER / "examples" / "pipeline.py"), "--workload", "minimal")
    assert r.returncode == 2
    assert "ERR_DENIED" in r.stderr


def test_without_io_cap_the_loop_cannot_start(zigu_build):
    r = run_runtime(zigu_build, str(ADAPTER / "examples" / "pipeline.py"), "--caps", "LOG,TIME")
    assert r.returncode != 0
    assert "ERR_PERMISSION" in r.stderr


def test_selector_in_process(host_abi):
    import asyncio

    import runtime

    runtime.start("default", caps=("IO", "TIME"))
    try:
        async def main():
            loop = asyncio.get_running_loop()
            assert isinstance(loop._selector, runtime.UkSelector)
            rd, wr = runtime.uk_pipe()
            fut = loop.create_future()
            loop.add_reader(rd, lambda: fut.set_result(rd.recv(10)))
            loop.call_later(0.02, wr.send, b"ping")
            data = await asyncio.wait_for(fut, 2)
            loop.remove_reader(rd)
            return data
        assert asyncio.run(main()) == b"ping"
    finally:
        asyncio.set_event_loop_policy(None)
