#!/bin/sh
# zosia's guest agent: the agent protocol (docs/agent-protocol.md) in POSIX sh for BusyBox
# ash, on the serial console. /init runs it with zosia.agent=1 instead of llama.cpp.
#
#   request  @><id> <command> [key=value ...] *<cs>
#   reply    @@<id> ok|err ... *<cs>        cs = byte sum of the line before " *", mod 256
#
# What a shell can do: 1-byte port I/O through /dev/port (dd), MMIO through devmem
# (1/2/4/8 bytes), interrupt counts from /proc/interrupts, a clock from /proc/uptime,
# sleeping, and the exit port (0xf4, QEMU's isa-debug-exit) through /dev/port. What it
# cannot (CPUID, 2/4-byte port accesses, IOAPIC/LAPIC/PIT programming, the TSC, UART
# tests that would fight the kernel's 8250 driver) answers err 8 UNSUPPORTED, which the
# plugin turns into a skip naming it.
set -u
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
NAME=zosia

# Printable ASCII, to compute byte sums without a fork per byte: the value of a character
# is 32 + its offset in TABLE.
TABLE=$(awk 'BEGIN { for (i = 32; i < 127; i++) printf "%c", i }')

# SUM <- byte sum of $1 mod 256 (-1 if it holds a byte outside printable ASCII).
bytesum() {
  s=$1
  SUM=0
  while [ -n "$s" ]; do
    rest=${s#?}
    c=${s%"$rest"}
    pre=${TABLE%%"$c"*}
    if [ "${#pre}" -ge "${#TABLE}" ]; then SUM=-1; return; fi
    SUM=$((SUM + 32 + ${#pre}))
    s=$rest
  done
  SUM=$((SUM % 256))
}

# One reply line: the frame, the checksum, \r\n (the console's -onlcr keeps it that way).
reply() {
  bytesum "$1"
  printf '%s *%02x\r\n' "$1" "$SUM"
}
ok() { reply "@@$ID ok${1:+ $1}"; }
fail() { reply "@@$ID err $1 $2"; }

# Agent integers: decimal or 0x hex. NUM <- the value; returns 1 if malformed.
num() {
  case "$1" in
    0x*|0X*) h=${1#0?}; case "$h" in ''|*[!0-9a-fA-F]*) return 1 ;; esac ;;
    ''|*[!0-9]*) return 1 ;;
  esac
  NUM=$(($1))
}

# Argument $1 of the current request as a number (NUM); err 3 naming it when absent/bad.
arg() {
  eval "v=\${A_$1-}"
  if [ -z "$v" ]; then
    [ $# -ge 2 ] && { NUM=$2; return 0; }
    fail 3 "missing argument $1"; return 1
  fi
  num "$v" || { fail 3 "bad number $1=$v"; return 1; }
}

uptime_ns() {
  read -r up _ < /proc/uptime
  # /proc/uptime has 10 ms resolution: "123.45" -> ns.
  sec=${up%.*} frac=${up#*.}
  NS=$(( sec * 1000000000 + ${frac#0} * 10000000 ))
}

cpus=$(grep -c '^processor' /proc/cpuinfo 2>/dev/null || echo 1)
# No TSC from a shell: report the kernel's own rate (tsc_early_khz= or cpu MHz) for info.
tsc_khz=0
for w in $(cat /proc/cmdline); do
  case "$w" in tsc_early_khz=*) tsc_khz=${w#*=} ;; esac
done
if [ "$tsc_khz" = 0 ]; then
  mhz=$(awk -F': *' '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)
  tsc_khz=${mhz:-0}
fi
ARCH=$(uname -m)
# aarch64 (QEMU virt) has no port I/O space and no isa-debug-exit: MMIO only, and an exit
# that can only be a power-off (PSCI SYSTEM_OFF ends QEMU with status 0).
if [ "$ARCH" = aarch64 ]; then CAPS=mmio,exit; else CAPS=port,mmio,exit; fi

# port <- read 1 byte at port $1 (VAL)
port_in() {
  VAL=$(dd if=/dev/port bs=1 skip="$1" count=1 2>/dev/null | od -An -tu1 | tr -d ' \n')
  case "$VAL" in ''|*[!0-9]*) return 1 ;; esac
}
port_out() {
  # shellcheck disable=SC2059 # the octal escape is the point
  printf "\\$(printf %o "$2")" | dd of=/dev/port bs=1 seek="$1" count=1 conv=notrunc 2>/dev/null
}

# The console UART's IER, LCR and MCR are programmed by Linux's 8250 driver (it toggles
# IER's transmit interrupt as it sends): the agent neither reads them as if it owned them
# nor writes them under the driver. SCR, LSR, IIR, MSR stay reachable.
linux_owns() {
  case "$1" in
    1017|1019|1020) fail 8 "Linux's 8250 driver owns the console UART's IER/LCR/MCR ($(printf '0x%x' "$1"))"; return 0 ;;
  esac
  return 1
}

# aarch64: a write into the MMIO range of a device Linux's console driver owns (the PL011 in
# /proc/iomem) would fight the driver: refused with err 8, like the 8250's IER/LCR/MCR on x86.
linux_owns_mmio() {
  [ "$ARCH" = aarch64 ] || return 1
  at=$1
  # "09000000-09000fff : 9000000.pl011 9000000.pl011" (indented when nested)
  while read -r range _ name _; do
    case "$name" in *pl011*) ;; *) continue ;; esac
    lo=$((0x${range%-*})); hi=$((0x${range#*-}))
    if [ "$at" -ge "$lo" ] && [ "$at" -le "$hi" ]; then
      fail 8 "Linux's PL011 driver owns the console UART ($(printf '0x%x' "$lo")-$(printf '0x%x' "$hi"))"
      return 0
    fi
  done < /proc/iomem
  return 1
}

# PSCI (arm64): a shell cannot make SMC/HVC calls; what it can answer comes from Linux, which
# made them: PSCI_VERSION (Linux logs "psci: PSCIvX.Y detected in firmware") and SYSTEM_OFF
# (poweroff -f is Linux's PSCI SYSTEM_OFF; it does not return).
psci_call() {
  case "$1" in
    2214592512)  # 0x84000000 PSCI_VERSION
      v=$(dmesg | sed -n 's/.*psci: PSCIv\([0-9]*\)\.\([0-9]*\) detected.*/\1 \2/p' | head -n 1)
      [ -n "$v" ] || { fail 8 "Linux did not log its PSCI version"; return; }
      set -- $v
      ok "ret=$(printf '0x%x' $(( ($1 << 16) | $2 ))) src=dmesg" ;;
    2214592520)  # 0x84000008 SYSTEM_OFF
      sync; poweroff -f; sleep 1; fail 8 "poweroff did not stop the machine" ;;
    *) fail 8 "a shell cannot make PSCI calls (SMC/HVC from EL1); only PSCI_VERSION and SYSTEM_OFF, through Linux" ;;
  esac
}

# devmem failed: the kernel refusing /dev/mem (RAM under STRICT_DEVMEM) is err 8, else err 5.
devmem_fail() {
  if grep -q 'not permitted' /tmp/devmem.err; then
    fail 8 "the kernel refuses /dev/mem at $1 (RAM or a claimed range: STRICT_DEVMEM)"
  else
    fail 5 "devmem $1: $(head -c 80 /tmp/devmem.err | tr -c 'A-Za-z0-9_.:,/+-' ' ')"
  fi
}

irq_count() {
  # "  4:   123   0   IO-APIC   4-edge   ttyS0": sum the per-CPU columns of the row whose
  # chip pin is the line (IO-APIC "N-edge"/"N-fasteoi"; on arm64 "GICv3  33 Level", the
  # GIC's INTID), else the row numbered N.
  awk -v line="$1" -v n="$cpus" '
    { key = $1; sub(":", "", key) }
    {
      s = 0; for (i = 2; i <= n + 1; i++) s += $i
      pin = $(n + 3); sub("-.*", "", pin)
      if ($(n + 2) ~ /IO-APIC|GIC/ && pin == line) { found = 1; total += s }
      else if (key == line) byrow = s
    }
    END { if (found) print total; else if (byrow != "") print byrow; else print "none" }
  ' /proc/interrupts
}

# The x86 port commands (in/out) of the current request.
handle_port() {
  case "$1" in
    in)
      arg port || return; port=$NUM
      arg width 1 || return
      [ "$NUM" = 1 ] || { fail 8 "only 1-byte port reads (/dev/port reads byte by byte)"; return; }
      [ "$port" -le 65535 ] || { fail 3 "port $port out of range"; return; }
      linux_owns "$port" && return
      port_in "$port" || { fail 5 "read of port $port failed"; return; }
      ok "value=$VAL" ;;
    out)
      arg port || return; port=$NUM
      arg width 1 || return
      [ "$NUM" = 1 ] || { fail 8 "only 1-byte port writes (/dev/port writes byte by byte)"; return; }
      arg value || return
      [ "$port" -le 65535 ] && [ "$NUM" -le 255 ] || { fail 3 "port or value out of range"; return; }
      linux_owns "$port" && return
      port_out "$port" "$NUM" || { fail 5 "write to port $port failed"; return; }
      ok ;;
  esac
}

handle() {
  line=$1
  case "$line" in *@\>*) ;; *) return ;; esac
  req=${line##*@>}
  ID=${req%%[!0-9]*}
  [ -n "$ID" ] || return
  case "$req" in *" *"*) ;; *) fail 1 "missing checksum"; return ;; esac
  want=${req##* \*}
  body="@>${req% \**}"
  bytesum "$body"
  num "0x$want" 2>/dev/null || { fail 1 "bad checksum $want"; return; }
  [ "$NUM" = "$SUM" ] || { fail 1 "checksum mismatch"; return; }
  set -f
  # shellcheck disable=SC2086 # split the request into words
  set -- ${req% \**}
  set +f
  shift
  cmd=${1-}
  [ $# -gt 0 ] && shift
  unset A_port A_width A_value A_addr A_line A_ms A_status A_cpu A_leaf A_fid
  for kv in "$@"; do
    case "$kv" in
      [a-z]*=*) k=${kv%%=*}; case "$k" in *[!a-z_]*) continue ;; esac; eval "A_$k=\${kv#*=}" ;;
    esac
  done
  if [ -n "${A_cpu-}" ] && [ "${A_cpu}" != 0 ]; then
    fail 8 "the shell agent runs on vCPU 0 only"; return
  fi
  case "$cmd" in
    hello) ok "name=$NAME arch=$(uname -m) proto=1 cpus=$cpus tsc_khz=$tsc_khz caps=$CAPS kernel=$(uname -r)" ;;
    ping) ok "cpu=0" ;;
    in|out)
      [ "$ARCH" = x86_64 ] || { fail 8 "no port I/O on $ARCH (x86 only)"; return; }
      handle_port "$cmd" ;;
    rd|wr)
      arg addr || return; addr=$NUM
      arg width || return; width=$NUM
      case "$width" in 1|2|4|8) ;; *) fail 4 "width $width"; return ;; esac
      hex=$(printf '0x%x' "$addr")
      if [ "$cmd" = rd ]; then
        v=$(devmem "$hex" $((width * 8)) 2>/tmp/devmem.err) || { devmem_fail "$hex"; return; }
        ok "value=$(printf '0x%x' "$v")"
      else
        arg value || return
        linux_owns_mmio "$addr" && return
        devmem "$hex" $((width * 8)) "$(printf '0x%x' "$NUM")" 2>/tmp/devmem.err || { devmem_fail "$hex"; return; }
        ok
      fi ;;
    irq_count)
      arg line || return
      c=$(irq_count "$NUM")
      [ "$c" = none ] && { fail 3 "no line $NUM in /proc/interrupts"; return; }
      ok "count=$c src=proc_interrupts" ;;
    clock)
      uptime_ns
      # No TSC from a shell (tsc=0): ns is kernel uptime at 10 ms resolution.
      ok "tsc=0 ns=$NS cpu=0 src=uptime" ;;
    halt)
      arg ms || return
      uptime_ns; t0=$NS
      sleep "$((NUM / 1000)).$(printf '%03d' $((NUM % 1000)))"
      uptime_ns
      ok "ns=$((NS - t0)) wakeups=0 src=sleep" ;;
    exit)
      arg status 0 || return
      [ "$NUM" -le 255 ] || { fail 3 "status $NUM out of range"; return; }
      sync
      if [ "$ARCH" = aarch64 ]; then
        # PSCI SYSTEM_OFF (poweroff -f) is the only way out from Linux userspace: status 0.
        [ "$NUM" = 0 ] || { fail 8 "exit status $NUM: on $ARCH a shell can only power off (status 0)"; return; }
        poweroff -f
        sleep 1
        fail 8 "poweroff did not stop the machine"; return
      fi
      port_out 244 "$NUM"  # 0xf4: isa-debug-exit; QEMU exits (status << 1) | 1
      sleep 1
      fail 8 "the exit port 0xf4 did not stop the machine" ;;
    cpuid) fail 8 "CPUID is not reachable from a shell" ;;
    irq_arm|irq_mask|irq_unmask|irq_hold|vec_count|eoi|counts_reset|ipi)
      fail 8 "a shell cannot program the IOAPIC/LAPIC (Linux owns them)" ;;
    lapic_oneshot|pit_measure|pit_start|pit_read|pit_stop)
      fail 8 "a shell cannot program the PIT/LAPIC timer (Linux owns them)" ;;
    uart_loopback|uart_stats|rx_burst|uart_tx_irq)
      fail 8 "the console UART belongs to Linux's serial driver (8250 / PL011)" ;;
    psci)
      [ "$ARCH" = aarch64 ] || { fail 8 "PSCI is arm64's"; return; }
      arg fid || return
      psci_call "$NUM" ;;
    cpu_on|gic_pmr|gic_eoimode|gicr_waker|cntv_oneshot)
      fail 8 "a shell cannot program the GIC, the generic timer or PSCI CPU_ON (Linux owns them)" ;;
    '') fail 1 "no command" ;;
    *) fail 2 "unknown command $cmd" ;;
  esac
}

# The console: no echo (requests echoed back are harmless, but noise), no \n -> \r\n mapping
# (replies carry their own \r\n), canonical lines, no signals from ^C.
stty -echo -onlcr -isig 2>/dev/null
CR=$(printf '\r')
reply "@@ready proto=1 name=$NAME"
while IFS= read -r line; do
  handle "${line%"$CR"}"
done
echo "zosia: agent: console closed"
