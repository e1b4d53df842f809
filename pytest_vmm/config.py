"""The user's declarations: hypervisors (command templates) and stacks in a ``vmm.toml``.

Found at ``--vmm-config PATH``, else the ini value ``vmm_config`` (relative to the rootdir),
else ``vmm.toml`` in pytest's rootdir (the directory of pytest.ini/pyproject.toml, or where
pytest runs). ``[hypervisors.NAME]`` tables are read by pytest_vmm/hypervisors/template.py,
``[stacks.NAME]`` tables by pytest_vmm/stacks/declared.py (docs/own-vmm.md, docs/own-guest.md).
Every mistake is a usage error naming the file and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_vmm import options

if TYPE_CHECKING:
    from pytest_vmm.hypervisor import Hypervisor
    from pytest_vmm.registry import Registry
    from pytest_vmm.stack import Stack

CONFIG_FILE = "vmm.toml"
SECTIONS = ("hypervisors", "stacks")


class ConfigError(ValueError):
    """A malformed declaration; the message starts with the file and the dotted key."""


@dataclass
class Table:
    """One ``[section.NAME]`` table with typed getters whose errors name the key."""

    path: Path
    prefix: str  # "hypervisors.myvmm"
    data: dict[str, object]
    read: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.prefix.split(".", 1)[1]

    @property
    def base_dir(self) -> Path:
        """Relative paths in a declaration are relative to the file's directory."""
        return self.path.parent

    def error(self, key: str, message: str) -> ConfigError:
        where = f"{self.prefix}.{key}" if key else self.prefix
        return ConfigError(f"{self.path}: {where}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def _get(self, key: str, kinds: tuple[type, ...], what: str, default: object) -> object:
        self.read.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        # bool is an int in Python; a TOML boolean is never a number here.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise self.error(key, f"expected {what}, got {type(value).__name__} {value!r}")
        return value

    def string(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        if required and key not in self.data:
            raise self.error(key, "missing (required)")
        value = self._get(key, (str,), "a string", default)
        return None if value is None else str(value)

    def strings(self, key: str, default: tuple[str, ...] = (), choices: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self._get(key, (list,), "a list of strings", list(default))
        assert isinstance(value, list)
        if not all(isinstance(v, str) for v in value):
            raise self.error(key, f"expected a list of strings, got {value!r}")
        bad = [v for v in value if choices and v not in choices]
        if bad:
            raise self.error(key, f"unknown value {', '.join(map(repr, bad))}; valid: {', '.join(choices)}")
        return tuple(value)

    def number(self, key: str, default: float, minimum: float = 0) -> float:
        value = self._get(key, (int, float), "a number", default)
        assert isinstance(value, (int, float))
        if value <= minimum:
            raise self.error(key, f"must be greater than {minimum:g}, got {value!r}")
        return float(value)

    def integer(self, key: str, default: int, minimum: int = 1) -> int:
        value = self._get(key, (int,), "an integer", default)
        assert isinstance(value, int)
        if value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        return value

    def command(self, key: str, required: bool = False) -> list[str] | None:
        """A command: a string (split like a shell would, no shell runs it) or a list of words."""
        import shlex

        self.read.add(key)
        if key not in self.data:
            if required:
                raise self.error(key, "missing (required)")
            return None
        value = self.data[key]
        if isinstance(value, str):
            try:
                words = shlex.split(value)
            except ValueError as exc:
                raise self.error(key, f"cannot split the command: {exc}") from None
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            words = list(value)
        else:
            raise self.error(key, f"expected a command string or a list of strings, got {value!r}")
        if not words:
            raise self.error(key, "is empty")
        return words

    def path_value(self, key: str, required: bool = False) -> Path | None:
        value = self.string(key, required=required)
        return None if value is None else (self.base_dir / Path(value).expanduser())

    def check_unknown(self, known: tuple[str, ...]) -> None:
        unknown = sorted(set(self.data) - set(known))
        if unknown:
            raise self.error(unknown[0], f"unknown key; known keys: {', '.join(known)}")


@dataclass
class Declarations:
    path: Path
    hypervisors: list[Hypervisor]  # command-template hypervisors (hypervisors/template.py)
    stacks: list[Stack]  # declared stacks (stacks/declared.py)


def config_path(config: pytest.Config) -> Path | None:
    """The vmm.toml to read, or None when there is none (an explicit path must exist)."""
    given = options.get(config, "vmm_config")
    if given:
        path = Path(str(given)).expanduser()
        if not path.is_absolute():
            path = (Path.cwd() if config.getoption("vmm_config", None) else config.rootpath) / path
        if not path.is_file():
            raise pytest.UsageError(f"--vmm-config / vmm_config: {path} does not exist")
        return path
    default = config.rootpath / CONFIG_FILE
    return default if default.is_file() else None


def load(path: Path) -> Declarations:
    """Parse and validate every declaration of one file."""
    # Imported here: both modules use Table from this one.
    from pytest_vmm.hypervisors.template import parse_hypervisor
    from pytest_vmm.stacks.declared import parse_stack

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown section; sections: "
                          + ", ".join(f"[{s}.NAME]" for s in SECTIONS))
    tables: dict[str, list[Table]] = {}
    for section in SECTIONS:
        entries = data.get(section, {})
        if not isinstance(entries, dict):
            raise ConfigError(f"{path}: {section}: expected tables [{section}.NAME]")
        for name, body in entries.items():
            if not isinstance(body, dict):
                raise ConfigError(f"{path}: {section}.{name}: expected a table [{section}.{name}]")
            if not name or any(c in name for c in "@, ") or name == "all":
                raise ConfigError(f"{path}: {section}.{name}: invalid name (no '@', ',', spaces or 'all')")
            tables.setdefault(section, []).append(Table(path, f"{section}.{name}", body))
    return Declarations(
        path=path,
        hypervisors=[parse_hypervisor(t) for t in tables.get("hypervisors", [])],
        stacks=[parse_stack(t) for t in tables.get("stacks", [])],
    )


def register(config: pytest.Config, registry: Registry) -> Declarations | None:
    """Add the declared hypervisors and stacks to the registry (usage error on any mistake)."""
    path = config_path(config)
    if path is None:
        return None
    try:
        declared = load(path)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    for hypervisor in declared.hypervisors:
        if hypervisor.name in registry.hypervisors:
            raise pytest.UsageError(f"{path}: hypervisors.{hypervisor.name}: a hypervisor of that name is "
                                    f"already registered (built in or by a plugin); choose another name")
        registry.add_hypervisor(hypervisor, any_stack=True)
    for stack in declared.stacks:
        if stack.name in registry.stacks or stack.name in registry.aliases:
            raise pytest.UsageError(f"{path}: stacks.{stack.name}: a stack of that name is already "
                                    f"registered (built in or by a plugin); choose another name")
        registry.add_stack(stack)
    return declared
