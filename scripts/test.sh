#!/usr/bin/env bash
# Quick start, command 2: the project's own tests (plugin, god, guests) and the conformance
# suites on every stack, plus god@qemu (god compared with QEMU), god@god-svm (god on the
# real kvm_amd inside QEMU TCG), microkernelia@qemu (MCP through QEMU and god's vhost-user
# vsock back-end), god@qemu-virt (the arm64 probe on QEMU virt, the ARM suites' reference) and
# zosia@qemu-virt (zosia's AArch64 image on QEMU virt). CI runs this.
# The short summary lists skips and xfails first and failures last, so the tail of a
# truncated CI log names what failed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -p no:cacheprovider --vmm=all,god@qemu,god@god-svm,microkernelia@qemu,god@qemu-virt,zosia@qemu-virt \
  --hypothesis-profile=vmm-ci --vmm-baseline=suites/known-divergences.toml -rsxfE "$@"
