"""Command-line options and their ini equivalents (the ``vmm`` option group)."""

from __future__ import annotations

import pytest

DEFAULT_STACKS = "god"
DEFAULT_MIN_TOK_S = 20.0  # the zosia seed's PERF_MIN_TOK_S


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vmm", "pytest-vmm: hypervisor conformance testing")
    group.addoption("--vmm", dest="vmm", metavar="NAME[,NAME...]", default=None,
                    help="stacks to run on: stack names, 'all', or STACK@HYPERVISOR (ini: vmm; default: god)")
    group.addoption("--vmm-list", dest="vmm_list", action="store_true",
                    help="list stacks, hypervisors, capabilities and whether each can boot here, then exit")
    group.addoption("--vmm-accel", dest="vmm_accel", choices=("auto", "kvm", "tcg", "hvf"), default=None,
                    help="accelerator: auto (the stack's and hypervisor's choice), kvm, tcg or hvf (macOS; ini: vmm_accel)")
    group.addoption("--vmm-boot-timeout", dest="vmm_boot_timeout", type=float, metavar="SECONDS", default=None,
                    help="base boot timeout, scaled by the accelerator's multiplier (ini: vmm_boot_timeout; "
                         "default: each stack's own)")
    group.addoption("--vmm-artifacts", dest="vmm_artifacts", metavar="DIR", default=None,
                    help="where per-test console logs and metrics go (ini: vmm_artifacts; default: pytest's basetemp)")
    group.addoption("--vmm-cache", dest="vmm_cache", metavar="DIR", default=None,
                    help="guest image build cache (ini: vmm_cache; default: ~/.cache/pytest-vmm)")
    group.addoption("--vmm-keep-logs", dest="vmm_keep_logs", action="store_true", default=None,
                    help="keep console logs of passing tests too (ini: vmm_keep_logs)")
    group.addoption("--vmm-rebuild", dest="vmm_rebuild", action="store_true",
                    help="rebuild the selected stacks' guest images even if cached")
    group.addoption("--vmm-min-tok-s", dest="vmm_min_tok_s", type=float, metavar="N", default=None,
                    help=f"LLM tokens/s floor for the tok/s suite (ini: vmm_min_tok_s; default {DEFAULT_MIN_TOK_S:g})")
    group.addoption("--vmm-config", dest="vmm_config", metavar="PATH", default=None,
                    help="vmm.toml declaring command-template hypervisors and stacks (ini: vmm_config; "
                         "default: vmm.toml in the rootdir, if there is one)")
    group.addoption("--vmm-matrix", dest="vmm_matrix", metavar="PATH", default=None,
                    help="write the conformance matrix as PATH.json and PATH.md (ini: vmm_matrix)")
    group.addoption("--vmm-fresh", dest="vmm_fresh", action="store_true", default=False,
                    help="boot a fresh guest for every check, also for those marked vmm_shared")
    group.addoption("--vmm-profile", dest="vmm_profile", action="store_true", default=False,
                    help="print where the run's time went by phase (build, boot, check, shutdown) and "
                         "target; always printed at -v")
    group.addoption("--vmm-baseline", dest="vmm_baseline", metavar="PATH", default=None,
                    help="known-divergence baseline (TOML): listed failures report as known, a listed check "
                         "that passes fails the run as stale (ini: vmm_baseline; docs/options.md)")
    group.addoption("--vmm-report", dest="vmm_report", metavar="PATH.html", default=None,
                    help="write a self-contained HTML report: matrix, checks by target, plots (ini: vmm_report)")
    group.addoption("--vmm-metrics", dest="vmm_metrics", metavar="PATH.jsonl", default=None,
                    help="write every recorded metric as JSON lines (ini: vmm_metrics)")
    group.addoption("--vmm-ab-baseline", dest="vmm_ab_baseline", metavar="PATH.jsonl", default=None,
                    help="compare this run's metrics with a stored baseline; a regression fails the run "
                         "(ini: vmm_ab_baseline)")
    group.addoption("--vmm-ab-threshold", dest="vmm_ab_threshold", type=float, metavar="FRACTION", default=None,
                    help="noise threshold for --vmm-ab-baseline (ini: vmm_ab_threshold; default 0.05)")
    group.addoption("--vmm-shard", dest="vmm_shard", metavar="i/N", default=None,
                    help="run only shard i of N; whole targets per shard (ini: vmm_shard)")

    parser.addini("vmm", "default --vmm value", default=DEFAULT_STACKS)
    parser.addini("vmm_accel", "default --vmm-accel", default="auto")
    parser.addini("vmm_boot_timeout", "default --vmm-boot-timeout (seconds)", default="")
    parser.addini("vmm_artifacts", "default --vmm-artifacts", default="")
    parser.addini("vmm_cache", "default --vmm-cache", default="")
    parser.addini("vmm_keep_logs", "keep logs of passing tests", type="bool", default=False)
    parser.addini("vmm_min_tok_s", "default --vmm-min-tok-s", default=str(DEFAULT_MIN_TOK_S))
    parser.addini("vmm_matrix", "default --vmm-matrix", default="")
    parser.addini("vmm_baseline", "default --vmm-baseline", default="")
    parser.addini("vmm_config", "default --vmm-config (relative to the rootdir)", default="")
    parser.addini("vmm_report", "default --vmm-report", default="")
    parser.addini("vmm_metrics", "default --vmm-metrics", default="")
    parser.addini("vmm_ab_baseline", "default --vmm-ab-baseline", default="")
    parser.addini("vmm_ab_threshold", "default --vmm-ab-threshold", default="")
    parser.addini("vmm_shard", "default --vmm-shard", default="")


def get(config: pytest.Config, name: str) -> object:
    """The option if given on the command line, else its ini value (None/'' when unset)."""
    value = config.getoption(name, default=None)
    if value is not None:
        return value
    ini_value = config.getini(name)
    return ini_value if ini_value != "" else None
