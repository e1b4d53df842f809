#!/usr/bin/env bash
# Quick start, command 2: the project's own tests (plugin, god, guests) and the conformance
# suites on every stack, plus god@qemu (god compared with QEMU), god@god-kirq (god with KVM's
# in-kernel PIC/IOAPIC/PIT beside its own), god@god-svm (god on the
# real kvm_amd inside QEMU TCG), microkernelia@qemu (MCP through QEMU and god's vhost-user
# vsock back-end), microkernelia@god-svm (MCP on god over the real kvm_amd, the vsock carried
# out of the lane by the lane link), god@qemu-virt (the arm64 probe on QEMU virt, the ARM suites' reference),
# god@god-arm64 (the same probe on god's arm64 backend over the real arm64 KVM inside QEMU TCG
# aarch64: one lane for the session) and zosia@qemu-virt (zosia's AArch64 image on QEMU virt).
# CI runs this.
# --durations names the slowest tests, also those on no target that the phase profile sums
# only as a total. The short summary lists skips and xfails first and failures last, so the tail of a
# truncated CI log names what failed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
TARGETS=all,god@qemu,god@god-kirq,god@god-svm,microkernelia@qemu,microkernelia@god-svm,god@qemu-virt,god@god-arm64,zosia@qemu-virt

# A whole run (no arguments) builds the images beside the tests, at the lowest CPU priority:
# from cold caches the long builds (llama.cpp, minutes each) then use the CPU the tests leave
# idle, and a test that needs an image still being built waits on the cache's lock for it.
# Its report (what it built, how long each took) is CACHE/prebuild.log.
prebuild_pid=""
if [ $# -eq 0 ]; then
  .venv/bin/python -m pytest_vmm.prebuild "$TARGETS" >/dev/null 2>&1 &
  prebuild_pid=$!
fi
finish_prebuild() {
  [ -n "$prebuild_pid" ] || return 0
  kill -TERM "$prebuild_pid" 2>/dev/null || true  # still building only if the run ended early
  wait "$prebuild_pid" 2>/dev/null || true
  prebuild_pid=""
}
trap finish_prebuild EXIT

set +e
.venv/bin/python -m pytest -p no:cacheprovider --vmm="$TARGETS" \
  --hypothesis-profile=vmm-ci --vmm-baseline=suites/known-divergences.toml --vmm-profile --durations=15 -rsxfE "$@"
status=$?
set -e
finish_prebuild
exit "$status"
