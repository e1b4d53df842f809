#!/usr/bin/env bash
# Quick start, command 2: the project's own tests (plugin, god, guests) and the conformance
# suites on every stack, plus god@qemu (god compared with QEMU) and god@god-svm (god on the
# real kvm_amd inside QEMU TCG). CI runs this. (microkernelia@qemu is left out for CI's time
# budget: pytest --vmm=microkernelia@qemu suites runs it.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -p no:cacheprovider --vmm=all,god@qemu,god@god-svm \
  --hypothesis-profile=vmm-ci -rs "$@"
