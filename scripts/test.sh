#!/usr/bin/env bash
# Quick start, command 2: the project's own tests (plugin, god, guests) and the conformance
# suites on every stack, plus god@qemu (god compared with QEMU), microkernelia@qemu (its MCP
# server through god's vhost-user vsock back-end) and god@god-svm (god on the real kvm_amd
# inside QEMU TCG). CI runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -p no:cacheprovider --vmm=all,god@qemu,microkernelia@qemu,god@god-svm \
  --hypothesis-profile=vmm-ci -rs "$@"
