#!/usr/bin/env bash
# Quick start, command 1: set everything up, then run the conformance suites on the default
# stack (god). Extra arguments go to pytest, e.g. --vmm=god,god@qemu or --junitxml=report.xml.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest suites -p no:cacheprovider -o testpaths=suites --vmm=god \
  --vmm-baseline=suites/known-divergences.toml "$@"
