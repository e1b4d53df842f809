"""include/ukernel_abi.h and kernel/abi.zig must agree on every constant, both ways."""
import re
import shutil
import subprocess

import pytest
from zigu_testlib import ZIGU

HEADER = ZIGU / "include" / "ukernel_abi.h"
DEFINE_RE = re.compile(r"^#define\s+(UK_[A-Z0-9_]+)\s+\(?(-?(?:0x[0-9a-fA-F]+|\d+))[LlUu]*\)?(?:\s|$)", re.MULTILINE)


def header_constants() -> dict[str, int]:
    return {m.group(1): int(m.group(2), 0) for m in DEFINE_RE.finditer(HEADER.read_text())}


def zig_source_constants() -> dict[str, int]:
    """Parse the `uk` namespace of abi.zig directly (independent of the built library)."""
    src = (ZIGU / "kernel" / "abi.zig").read_text()
    body = src[src.index("pub const uk = struct {"):]
    body = body[: body.index("\n};")]
    raw = dict(re.findall(r"pub const ([A-Z0-9_]+) = ([^;]+);", body))
    env: dict[str, int] = {}
    for name, expr in raw.items():
        env[name] = eval(expr, {}, dict(env))  # only ints, names and << | in there
    return {"UK_" + k: v for k, v in env.items()}


def test_header_matches_library_table(host_abi):
    import ukernel_abi

    lib = ukernel_abi.constants()
    hdr = header_constants()
    assert len(lib) > 60
    missing_in_header = sorted(set(lib) - set(hdr))
    missing_in_zig = sorted(set(hdr) - set(lib))
    assert not missing_in_header, f"in abi.zig but not in ukernel_abi.h: {missing_in_header}"
    assert not missing_in_zig, f"in ukernel_abi.h but not in abi.zig: {missing_in_zig}"
    diff = {k: (lib[k], hdr[k]) for k in lib if lib[k] != hdr[k]}
    assert not diff, f"values differ (zig, header): {diff}"


def test_header_matches_zig_source_text():
    assert header_constants() == zig_source_constants()


def test_error_codes_are_distinct_and_negative():
    errs = {k: v for k, v in header_constants().items() if k.startswith("UK_ERR_")}
    assert len(set(errs.values())) == len(errs)
    assert all(v < 0 for v in errs.values())
    for need in ("PERMISSION", "BAD_HANDLE", "STALE_HANDLE", "TABLE_FULL", "BAD_POINTER", "BAD_LENGTH", "BAD_KIND"):
        assert f"UK_ERR_{need}" in errs


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_header_compiles_for_host_and_guest(tmp_path):
    (tmp_path / "h.c").write_text('#include "ukernel_abi.h"\nint main(void){return UK_OK;}\n')
    (tmp_path / "g.c").write_text('#define UK_GUEST 1\n#include "ukernel_abi.h"\n'
                                  'long f(void){unsigned h=1; return uk_cap_enter(&h,1)+uk_io_poll(0,0,1);}\n')
    for src, extra in (("h.c", []), ("g.c", ["-c"])):
        subprocess.run(["cc", "-Wall", "-Werror", "-std=c11", "-I", str(ZIGU / "include"), *extra,
                        str(tmp_path / src), "-o", str(tmp_path / (src + ".out"))], check=True)
