#!/usr/bin/env bash
# Boot the zosia image under QEMU with the serial console on this terminal.
#
#   guests/zosia/run.sh [OUT_DIR]          (default: guests/zosia/out, built if missing)
#
# Environment:
#   RAM_MB=512            guest memory
#   CPUS=                 vCPUs; default 1 under TCG (MTTCG with 2 vCPUs on a shared
#                         2-core host is slower, and llama.cpp's spinning threads starve
#                         each other), nproc capped at 2 under KVM
#   QEMU_ACCEL=auto       auto | kvm | tcg. auto = kvm only on hardware KVM (kvm_intel or
#                         kvm_amd loaded); tcg on PVM (its CPL0 emulation can't run Linux
#                         in useful time) or without /dev/kvm.
#   QEMU_MACHINE=microvm  microvm (virtio-mmio, found by the kernel through ACPI) | pc
#   DISK=OUT/model.ext2   model disk; DISK=none boots without one (stub prompt)
#   APPEND_EXTRA=         extra kernel arguments, e.g. 'zosia.perf=1 zosia.perf.tokens=64'
#   QEMU=qemu-system-x86_64
#   DRY_RUN=1             print the command instead of running it
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-}" in -h|--help) sed -n '2,17p' "$0"; exit 0 ;; esac
OUT="${1:-$HERE/out}"
if [ ! -f "$OUT/zosia.json" ]; then
  echo "zosia: building into $OUT" >&2
  python3 "$HERE/build.py" --out "$OUT" >&2
fi

RAM_MB="${RAM_MB:-512}"
CPUS="${CPUS:-}"
QEMU="${QEMU:-qemu-system-x86_64}"
QEMU_MACHINE="${QEMU_MACHINE:-microvm}"
QEMU_ACCEL="${QEMU_ACCEL:-auto}"
DISK="${DISK:-$OUT/model.ext2}"
APPEND_EXTRA="${APPEND_EXTRA:-}"

if [ "$QEMU_ACCEL" = auto ]; then
  if [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
    QEMU_ACCEL=kvm
  else
    QEMU_ACCEL=tcg
  fi
fi
if [ "$QEMU_ACCEL" = kvm ]; then
  # arch-capabilities=off: harmless on hardware KVM, needed where MSR 0x10a can't be set.
  CPU="${QEMU_CPU:-host,arch-capabilities=off}"
else
  # TCG's "max" has AVX2/FMA/F16C (what llama.cpp was built for) and no AVX-512.
  CPU="${QEMU_CPU:-max}"
fi

if [ -z "$CPUS" ]; then
  if [ "$QEMU_ACCEL" = kvm ]; then CPUS=$(( $(nproc) < 2 ? $(nproc) : 2 )); else CPUS=1; fi
fi

# Initrd and base command line come from zosia.json (one source of truth with the plugin).
read -r INITRD BASE_APPEND < <(python3 -c 'import json, sys
j = json.load(open(sys.argv[1]))
print(j["initrd"], j["append"])' "$OUT/zosia.json")
# The host TSC rate: under TCG on a busy host the guest's own calibration can hang.
KHZ=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
APPEND="$BASE_APPEND tsc_early_khz=${KHZ:-2000000}"
[ -n "$APPEND_EXTRA" ] && APPEND="$APPEND $APPEND_EXTRA"

if [ "$QEMU_MACHINE" = microvm ]; then
  BLK=virtio-blk-device
  APPEND="$APPEND pci=off"  # microvm has no PCI; skip the probe and its warning
else
  BLK=virtio-blk-pci
fi
args=(-M "$QEMU_MACHINE" -accel "$QEMU_ACCEL" -cpu "$CPU" -m "$RAM_MB" -smp "$CPUS"
      -nodefaults -no-user-config -nographic -no-reboot
      # signal=off: Ctrl-C goes to the guest (llama.cpp interjects) instead of killing QEMU.
      -chardev stdio,id=console,signal=off -serial chardev:console
      -kernel "$OUT/linux/vmlinux" -initrd "$OUT/$INITRD" -append "$APPEND")
if [ "$DISK" != none ]; then
  args+=(-drive "id=model,file=$DISK,format=raw,if=none,readonly=on" -device "$BLK,drive=model")
fi

if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "$QEMU" "${args[@]}"; echo
  exit 0
fi
exec "$QEMU" "${args[@]}"
