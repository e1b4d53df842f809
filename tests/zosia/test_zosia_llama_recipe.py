"""The llama.cpp build recipe without compiling: pins, cache keys, variant naming.

A fake cmake/strip records the commands, so the produce step (flags, targets, the -sse42
suffix, caching) is checked in milliseconds; the real 4-8 min build runs in image builds.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import llama_build
import pytest


def test_versions_pin_sdist_and_variants() -> None:
    v = llama_build.load_versions()
    assert len(v["llama_cpp_python"]["sha256"]) == 64
    assert llama_build.variants(v) == ["avx2", "sse42"]
    for name, var in v["llama_variants"].items():
        flags = var["cmake_flags"]
        assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AVX512=OFF" in flags, name
        assert "-DCMAKE_EXE_LINKER_FLAGS=-static" in flags, name
        assert "llama-completion" in var["targets"], name
    assert "-DGGML_AVX2=OFF" in v["llama_variants"]["sse42"]["cmake_flags"]
    assert llama_build.llama_key("avx2") != llama_build.llama_key("sse42")


def test_produce_builds_once_with_suffix(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_VMM_CACHE", str(tmp_path / "cache"))
    sdist = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    completion = "int main() {\n    llama_backend_free();\n\n    return 0;\n}\n"
    with tarfile.open(sdist, "w:gz") as tf:
        for rel, text in (("CMakeLists.txt", "project(x)\n"),
                          ("tools/completion/completion.cpp", completion)):
            data = text.encode()
            info = tarfile.TarInfo(f"llama_cpp_python-0.3.36/vendor/llama.cpp/{rel}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    patched: list[str] = []
    monkeypatch.setattr(llama_build, "fetch_sdist", lambda versions=None: sdist)
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
        calls.append(cmd)
        if "-S" in cmd:  # configure: the log-flush patch must already be in the source
            src = Path(cmd[cmd.index("-S") + 1])
            patched.append((src / "tools/completion/completion.cpp").read_text())
        if "--build" in cmd:
            bld = Path(cmd[cmd.index("--build") + 1])
            for t in cmd[cmd.index("--target") + 1:]:
                (bld / "bin").mkdir(parents=True, exist_ok=True)
                (bld / "bin" / t).write_bytes(b"binary " + t.encode())
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(llama_build.subprocess, "run", fake_run)
    d = llama_build.build_llama("sse42")
    assert sorted(p.name for p in (d / "bin").iterdir()) == ["llama-completion-sse42"]
    assert json.loads((d / "build.json").read_text())["variant"] == "sse42"
    cfg = next(c for c in calls if "-S" in c)
    assert "-DGGML_AVX2=OFF" in cfg
    assert any(c[:2] == ["strip", "--strip-all"] for c in calls)
    assert "common_log_pause(common_log_main());" in patched[0]
    n = len(calls)
    assert llama_build.build_llama("sse42") == d  # cached: nothing runs again
    assert len(calls) == n


def test_aarch64_variant_is_a_static_neon_cross_build() -> None:
    v = llama_build.load_versions()
    assert llama_build.variants(v, arch="aarch64") == ["neon"]
    neon = v["llama_variants"]["neon"]
    flags = neon["cmake_flags"]
    # The ARMv8.0-A baseline: NEON is mandatory there, SVE/dotprod are not (TCG -cpu max and
    # Apple Silicon both run it); one binary only (the cold build is CI's long pole).
    assert "-DGGML_CPU_ARM_ARCH=armv8-a" in flags and "-DGGML_NATIVE=OFF" in flags
    assert "-DCMAKE_SYSTEM_PROCESSOR=aarch64" in flags and "-DCMAKE_EXE_LINKER_FLAGS=-static" in flags
    assert "-DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++" in flags
    assert neon["targets"] == ["llama-completion"] and neon["strip"] == "aarch64-linux-gnu-strip"
    assert len({llama_build.llama_key(n) for n in ("avx2", "sse42", "neon")}) == 3


def test_manifest_of_an_sse42_only_image_names_what_it_ships() -> None:
    """build.py --llama-variants sse42: zosia.json lists only the shipped binary, makes it the
    default, and names no llama-bench (an avx2-build target)."""
    import importlib.util

    path = Path(llama_build.__file__).with_name("build.py")  # not PyPA's `build`, which shadows it
    spec = importlib.util.spec_from_file_location("zosia_build", path)
    assert spec is not None and spec.loader is not None
    zosia_build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zosia_build)
    kernel = {"release": "6.1.0-test", "package": "linux-image-test", "package_version": "1"}
    info = zosia_build.manifest_x86_64(kernel, {"llama-completion-sse42"})
    assert info["llama_binaries"] == {"sse42": "bin/llama-completion-sse42"}
    assert info["llama_completion"] == "bin/llama-completion-sse42"
    assert info["perf_native_example"][0] == "bin/llama-completion-sse42"
    assert "llama_bench" not in info
    every = zosia_build.manifest_x86_64(kernel)
    assert set(every["llama_binaries"]) == {"avx2", "sse42"} and every["llama_bench"] == "bin/llama-bench"
