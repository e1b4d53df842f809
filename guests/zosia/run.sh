#!/usr/bin/env bash
# Boot the zosia image under QEMU with the serial console on this terminal.
#
#   guests/zosia/run.sh [--arch x86_64|aarch64] [OUT_DIR]
#
#   --arch x86_64   (default) QEMU microvm; OUT_DIR defaults to guests/zosia/out
#   --arch aarch64  QEMU virt (GICv3, PL011, virtio-mmio), the seeds' target; OUT_DIR
#                   defaults to guests/zosia/out-aarch64. Built if missing (seconds once
#                   llama.cpp and the kernel are in ~/.cache/pytest-vmm).
#
# Environment (the seed's knobs first):
#   RAM_MB=512            guest memory
#   APPEND_EXTRA=         extra kernel arguments, e.g. 'zosia.perf=1 zosia.perf.tokens=64'
#   QEMU_ACCEL=auto       auto | kvm | tcg | hvf. auto: x86_64 uses kvm only on hardware KVM
#                         (kvm_intel or kvm_amd loaded; tcg on PVM, whose CPL0 emulation
#                         can't run Linux in useful time, or without /dev/kvm); aarch64 uses
#                         hvf on macOS arm64, kvm on arm64 Linux with /dev/kvm, else tcg.
#   QEMU_CPU=             CPU model; default host under kvm/hvf, max under tcg (aarch64:
#                         max,pauth-impdef=on)
#   CPUS=                 vCPUs; default 1 under TCG (MTTCG with 2 vCPUs on a shared
#                         2-core host is slower, and llama.cpp's spinning threads starve
#                         each other), nproc capped at 2 otherwise
#   UEFI=0                aarch64: 1 boots through the UEFI firmware (qemu-efi-aarch64,
#                         as the seed does) instead of loading the kernel directly
#   UEFI_FIRMWARE=/usr/share/qemu-efi-aarch64/QEMU_EFI.fd
#   QEMU_MACHINE=         x86_64: microvm (default; virtio-mmio found through ACPI) | pc
#   DISK=OUT/model.ext2   model disk; DISK=none boots without one (stub prompt)
#   QEMU=                 qemu-system-x86_64 / qemu-system-aarch64
#   DRY_RUN=1             print the command instead of running it
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ARCH=x86_64
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    --arch) ARCH="${2:?--arch needs x86_64 or aarch64}"; shift 2 ;;
    --arch=*) ARCH="${1#*=}"; shift ;;
    -*) echo "zosia: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) OUT="$1"; shift ;;
  esac
done
case "$ARCH" in
  x86_64) OUT="${OUT:-$HERE/out}" ;;
  aarch64|arm64) ARCH=aarch64; OUT="${OUT:-$HERE/out-aarch64}" ;;
  *) echo "zosia: --arch $ARCH: expected x86_64 or aarch64" >&2; exit 2 ;;
esac
if [ ! -f "$OUT/zosia.json" ]; then
  echo "zosia: building the $ARCH image into $OUT" >&2
  python3 "$HERE/build.py" --arch "$ARCH" --out "$OUT" >&2
fi

RAM_MB="${RAM_MB:-512}"
CPUS="${CPUS:-}"
QEMU_ACCEL="${QEMU_ACCEL:-auto}"
DISK="${DISK:-$OUT/model.ext2}"
APPEND_EXTRA="${APPEND_EXTRA:-}"
UEFI="${UEFI:-0}"
UEFI_FIRMWARE="${UEFI_FIRMWARE:-/usr/share/qemu-efi-aarch64/QEMU_EFI.fd}"
HOST_ARCH="$(uname -m)"
HOST_OS="$(uname -s)"

# Kernel, initrd and base command line come from zosia.json (one source of truth with the
# plugin); the image says which architecture it is.
read -r KERNEL INITRD IMAGE_ARCH BASE_APPEND < <(python3 -c 'import json, sys
j = json.load(open(sys.argv[1]))
print(j["kernel"], j["initrd"], j.get("arch", "x86_64"), j["append"])' "$OUT/zosia.json")
if [ "$IMAGE_ARCH" != "$ARCH" ]; then
  echo "zosia: $OUT holds the $IMAGE_ARCH image, not $ARCH (pass another OUT_DIR)" >&2
  exit 2
fi
APPEND="$BASE_APPEND"

if [ "$ARCH" = aarch64 ]; then
  QEMU="${QEMU:-qemu-system-aarch64}"
  if [ "$QEMU_ACCEL" = auto ]; then
    case "$HOST_OS/$HOST_ARCH" in
      Darwin/arm64) QEMU_ACCEL=hvf ;;
      Linux/aarch64) if [ -w /dev/kvm ]; then QEMU_ACCEL=kvm; else QEMU_ACCEL=tcg; fi ;;
      *) QEMU_ACCEL=tcg ;;
    esac
  fi
  # pauth-impdef=on: TCG emulates pointer authentication (which Debian's kernel uses) with
  # a cheap IMPLEMENTATION DEFINED hash instead of QARMA5 (QEMU docs/system/arm/
  # cpu-features.rst); kernel start to /init is ~3.5x faster here (5.4 s -> 1.5 s).
  if [ "$QEMU_ACCEL" = tcg ]; then CPU="${QEMU_CPU:-max,pauth-impdef=on}"; else CPU="${QEMU_CPU:-host}"; fi
  MACHINE="${QEMU_MACHINE:-virt,gic-version=3}"
  BLK=virtio-blk-device
else
  QEMU="${QEMU:-qemu-system-x86_64}"
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
  MACHINE="${QEMU_MACHINE:-microvm}"
  # The host TSC rate: under TCG on a busy host the guest's own calibration can hang.
  KHZ=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo 2>/dev/null || true)
  APPEND="$APPEND tsc_early_khz=${KHZ:-2000000}"
  if [ "$MACHINE" = microvm ]; then
    BLK=virtio-blk-device
    APPEND="$APPEND pci=off"  # microvm has no PCI; skip the probe and its warning
  else
    BLK=virtio-blk-pci
  fi
fi
[ -n "$APPEND_EXTRA" ] && APPEND="$APPEND $APPEND_EXTRA"

if [ -z "$CPUS" ]; then
  if [ "$QEMU_ACCEL" = tcg ]; then
    CPUS=1
  else
    n=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
    CPUS=$(( n < 2 ? n : 2 ))
  fi
fi

args=(-M "$MACHINE" -accel "$QEMU_ACCEL" -cpu "$CPU" -m "$RAM_MB" -smp "$CPUS"
      -nodefaults -no-user-config -nographic -no-reboot
      # signal=off: Ctrl-C goes to the guest (llama.cpp interjects) instead of killing QEMU.
      -chardev stdio,id=console,signal=off -serial chardev:console
      -kernel "$OUT/$KERNEL" -initrd "$OUT/$INITRD" -append "$APPEND")
if [ "$ARCH" = aarch64 ] && [ "$UEFI" = 1 ]; then
  [ -f "$UEFI_FIRMWARE" ] || { echo "zosia: $UEFI_FIRMWARE not found (apt-get install qemu-efi-aarch64)" >&2; exit 2; }
  # The firmware boots -kernel (the Image's EFI stub) with -initrd/-append via fw_cfg.
  args+=(-bios "$UEFI_FIRMWARE")
fi
if [ "$DISK" != none ]; then
  args+=(-drive "id=model,file=$DISK,format=raw,if=none,readonly=on" -device "$BLK,drive=model")
fi

if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "$QEMU" "${args[@]}"; echo
  exit 0
fi
exec "$QEMU" "${args[@]}"
