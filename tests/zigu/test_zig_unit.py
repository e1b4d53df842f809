"""`zig build test` runs the Zig unit tests and prints a summary line CI can read."""
import re
import subprocess
import sys

from zigu_testlib import ZIGU


def test_zig_build_test(zigu_build):
    r = subprocess.run(["nice", sys.executable, "-m", "ziglang", "build", "test"], cwd=ZIGU,
                       capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    lines = re.findall(r"zig: (\d+) passed, (\d+) failed", out)
    assert r.returncode == 0, out[-3000:]
    assert lines, out[-3000:]
    assert all(int(f) == 0 and int(p) > 0 for p, f in lines), lines
