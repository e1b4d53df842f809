#!/usr/bin/env bash
# Install what pytest-vmm needs on a Debian/Ubuntu machine: system packages (apt-get as root,
# otherwise the exact command is printed) and a virtualenv (.venv) with the plugin and god.
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  python3 python3-venv python3-dev gcc g++ make cmake binutils
  qemu-system-x86 busybox-static e2fsprogs cpio xz-utils zstd
  cargo librust-serde-json-dev
  chromium
  acpica-tools
  # arm64: QEMU virt (probe reference, ARM64 lane, zosia aarch64), cross compiler, UEFI, dtc
  qemu-system-arm gcc-aarch64-linux-gnu qemu-efi-aarch64 device-tree-compiler qemu-user-static
  # zosia aarch64: llama.cpp is C++ (cross-compiled static)
  g++-aarch64-linux-gnu
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# Tools may also come from elsewhere (pyenv Python, rustup): only ask for what is really absent.
declare -A provides=([python3]=python3 [gcc]=gcc [g++]=g++
                     [make]=make [cmake]=cmake [binutils]=ld [qemu-system-x86]=qemu-system-x86_64
                     [busybox-static]=busybox [e2fsprogs]=mke2fs [acpica-tools]=iasl [cpio]=cpio [xz-utils]=xz [zstd]=zstd
                     [qemu-system-arm]=qemu-system-aarch64 [gcc-aarch64-linux-gnu]=aarch64-linux-gnu-gcc
                     [g++-aarch64-linux-gnu]=aarch64-linux-gnu-g++
                     [device-tree-compiler]=dtc [qemu-user-static]=qemu-aarch64-static
                    )
still_missing=()
for pkg in "${missing[@]}"; do
  case "$pkg" in
    # Debian splits venv's ensurepip out of python3: test the feature, not the command.
    python3-venv) python3 -c "import ensurepip, venv" >/dev/null 2>&1 || still_missing+=("$pkg") ;;
    python3-dev) python3 -c "import sysconfig, os, sys; sys.exit(not os.path.exists(sysconfig.get_paths()['include'] + '/Python.h'))" \
                   >/dev/null 2>&1 || still_missing+=("$pkg") ;;
    # A crate source, not a command: microkernelia builds against /usr/share/cargo/registry.
    librust-serde-json-dev) [ -d /usr/share/cargo/registry ] && ls /usr/share/cargo/registry | grep -q '^serde_json-' \
                   || still_missing+=("$pkg") ;;
    qemu-efi-aarch64) [ -f /usr/share/qemu-efi-aarch64/QEMU_EFI.fd ] || still_missing+=("$pkg") ;;
    *) command -v "${provides[$pkg]:-$pkg}" >/dev/null 2>&1 || still_missing+=("$pkg") ;;
  esac
done
if ((${#still_missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing ${still_missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${still_missing[@]}" >/dev/null
  else
    echo "bootstrap: missing system packages; run:" >&2
    echo "  sudo apt-get install -y ${still_missing[*]}" >&2
    exit 1
  fi
fi

# guests/linux fetches Debian's kernel with `apt-get download`, which needs package lists.
if [ "$(id -u)" = 0 ] && ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
  apt-get update -qq
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Reinstall only when a pyproject changed (the stamp holds their hash).
shopt -s nullglob
guest_projects=(guests/*/pyproject.toml)
stamp=.venv/.pytest-vmm-installed
want=$(cat pyproject.toml "${guest_projects[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  editable=(-e '.[dev,zigu,zosia,mcp,report]')
  for guest in "${guest_projects[@]}"; do
    editable+=(-e "$(dirname "$guest")")
  done
  .venv/bin/python -m pip install -q "${editable[@]}"
  echo "$want" > "$stamp"
fi

# The MCP suites' pinned npm tools (tools/mcp-conformance: the official conformance tool and
# TypeScript SDK), installed from the committed lockfile when node is here; the suites skip
# with the reason otherwise. Reinstalled only when the lockfile changed.
if command -v npm >/dev/null 2>&1; then
  npm_dir=tools/mcp-conformance
  npm_want=$(sha256sum < "$npm_dir/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$npm_dir/node_modules/.pytest-vmm-installed" 2>/dev/null)" != "$npm_want" ]; then
    if (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error); then
      echo "$npm_want" > "$npm_dir/node_modules/.pytest-vmm-installed"
    else
      echo "bootstrap: npm ci in $npm_dir failed: the MCP conformance and TypeScript client checks will skip" >&2
    fi
  fi
fi
