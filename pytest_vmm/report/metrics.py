"""Metric samples as JSON lines (one record per sample), like ``llama-bench -o jsonl``.

A record: ``{"name", "value", "unit", "target", "dims", "env", ...}``. ``dims`` are the
dimensions samples are paired by in an A/B comparison (besides name and target); ``context``
says where a sample came from (a check's node id) without splitting the pairing; ``env``
describes the run (host, KVM flavour, accelerator, commit).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Self

# Name suffix -> unit, for metrics a check records without one (machine.record("boot_ms", ...)).
# Longest suffix first: "tok_s" is tokens per second, not seconds.
_SUFFIX_UNITS = (("tok_s", "tok/s"), ("_per_s", "/s"), ("_ms", "ms"), ("_us", "us"), ("_ns", "ns"),
                 ("_s", "s"), ("_ppm", "ppm"), ("_percent", "%"), ("_khz", "kHz"), ("_hz", "Hz"))
# Whether a bigger number is better, by unit; None: no direction (a version, an id, a count).
_LOWER_IS_BETTER = {"ms", "us", "ns", "s", "ppm", "%"}


def unit_for(name: str) -> str:
    for suffix, unit in _SUFFIX_UNITS:
        if name == suffix or name.endswith(suffix):
            return unit
    return ""


def higher_is_better(unit: str) -> bool | None:
    if unit.endswith("/s"):
        return True
    if unit in _LOWER_IS_BETTER:
        return False
    return None


@dataclass
class Record:
    name: str
    value: float
    unit: str = ""
    target: str = ""
    dims: dict[str, str] = field(default_factory=dict)
    context: str = ""
    env: dict[str, str] = field(default_factory=dict)
    time: float = 0.0
    higher_is_better: bool | None = None

    def key(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """What samples are paired by: the same metric on the same target and dimensions."""
        return self.name, self.target, tuple(sorted(self.dims.items()))

    def better_direction(self) -> bool | None:
        return self.higher_is_better if self.higher_is_better is not None else higher_is_better(self.unit)

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if v not in ("", {}, None)}
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}  # tolerate added fields
        if "name" not in known or "value" not in known:
            raise ValueError(f"a metric record needs 'name' and 'value': {data}")
        known["value"] = float(known["value"])
        known["dims"] = {str(k): str(v) for k, v in dict(known.get("dims") or {}).items()}
        known["env"] = {str(k): str(v) for k, v in dict(known.get("env") or {}).items()}
        return cls(**known)


_ENV_CACHE: dict[str, str] = {}


def environment(**extra: str) -> dict[str, str]:
    """The run's environment: host, KVM flavour, commit (computed once per process)."""
    if not _ENV_CACHE:
        from pytest_vmm.host import HostInfo

        _ENV_CACHE["host"] = socket.gethostname()
        try:
            _ENV_CACHE["kvm_flavour"] = HostInfo.detect().kvm_flavour
        except Exception:  # noqa: BLE001 - the environment is a label, not a requirement
            _ENV_CACHE["kvm_flavour"] = "unknown"
        _ENV_CACHE["commit"] = _commit()
        _ENV_CACHE["python"] = sys.version.split()[0]
    return {**_ENV_CACHE, **{k: str(v) for k, v in extra.items() if v not in (None, "")}}


def _commit() -> str:
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"][:12]
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def make(name: str, value: float, unit: str | None = None, target: str = "", *,
         context: str = "", env: dict[str, str] | None = None, higher: bool | None = None,
         dims: dict[str, object] | None = None) -> Record:
    return Record(name=name, value=float(value), unit=unit_for(name) if unit is None else unit, target=target,
                  dims={k: str(v) for k, v in (dims or {}).items()}, context=context,
                  env=env if env is not None else environment(), time=round(time.time(), 3),
                  higher_is_better=higher)


class Emitter:
    """Writes records to a JSON-lines file (or stdout for ``-``); benchmarks' ``--json PATH``."""

    def __init__(self, path: str | Path | None, append: bool = False) -> None:
        self.path = path
        self._file: IO[str] | None = None
        if path is None:
            return
        if str(path) == "-":
            self._file = sys.stdout
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a" if append else "w")  # noqa: SIM115 - closed in close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def emit(self, name: str, value: float, unit: str | None = None, target: str = "", **dims: object) -> None:
        if self._file is None:
            return
        self._file.write(make(name, value, unit, target, dims=dims).to_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None and self._file is not sys.stdout:
            self._file.close()
        self._file = None


def add_json_argument(parser: Any) -> None:
    """The ``--json PATH`` flag every benchmark takes ('-' for stdout)."""
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write every sample as a JSON line to PATH ('-': stdout); see docs/reports.md")


def write(path: Path, records: Iterable[Record], append: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w") as out:
        for record in records:
            out.write(record.to_json() + "\n")


def read(path: str | Path) -> list[Record]:
    return list(iter_records(path))


def iter_records(path: str | Path) -> Iterator[Record]:
    with open(path) as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                yield Record.from_dict(json.loads(line))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a metric record: {exc}") from None


# The process-wide emitter benchmarks use: ``open_json(args.json)`` once, then ``emit(...)``
# anywhere (a no-op until opened, so the human output stays the default).
_DEFAULT = Emitter(None)


def open_json(path: str | Path | None, append: bool = False) -> Emitter:
    import atexit

    global _DEFAULT
    _DEFAULT.close()
    _DEFAULT = Emitter(path, append)
    atexit.register(_DEFAULT.close)
    return _DEFAULT


def emit(name: str, value: float, unit: str | None = None, target: str = "", **dims: object) -> None:
    """One sample to the file ``open_json`` opened (the benchmark's ``--json PATH``)."""
    _DEFAULT.emit(name, value, unit, target, **dims)
