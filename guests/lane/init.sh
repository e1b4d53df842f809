#!/bin/sh
# PID 1 of the lane guest (guests/lane): load kvm_amd on the emulated SVM, then run what
# this boot was told to run, then turn its exit status into QEMU's exit status.
#
# What to run, first match wins:
#   /lane/run           a script from a payload initramfs appended to the lane image
#   lane.cmd=BASE64     on the kernel command line (a shell command, base64 of its text)
#   (nothing)           an interactive shell on the console
# The console is ttyS0 = the host's pexpect console; god's serial console passes through it.
export PATH=/bin:/usr/bin HOME=/root PYTHONPATH=/lane/god PYTHONDONTWRITEBYTECODE=1 LC_ALL=C.UTF-8
mount -t devtmpfs dev /dev 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs -o mode=1777 tmp /tmp
mkdir -p /dev/pts && mount -t devpts -o ptmxmode=0666 devpts /dev/pts
exec </dev/console >/dev/console 2>&1
read up0 _ </proc/uptime

for m in irqbypass kvm ccp kvm_amd; do
    insmod /lib/modules/lane/$m.ko || echo "lane: insmod $m failed"
done
if [ -c /dev/kvm ]; then
    read up _ </proc/uptime
    echo "lane: /init at ${up0} s, /dev/kvm (kvm_amd) ready at ${up} s"
else
    echo "lane: error: no /dev/kvm after loading kvm_amd (is SVM exposed? -cpu max)"
    grep -m1 -o -w -e svm -e npt /proc/cpuinfo | tr '\n' ' '; echo
fi

lane_exit() {
    st=$1
    echo "@@lane-exit status=$st"
    sync
    if [ "$st" -ne 0 ]; then
        # isa-debug-exit at 0xf4: QEMU exits with (value << 1) | 1. An odd status is god's
        # own exit-port status and maps back exactly; an even one (a god error) maps to 255.
        if [ $((st % 2)) -eq 1 ] && [ "$st" -lt 256 ]; then v=$(( (st - 1) / 2 )); else v=127; fi
        printf "\\$(printf '%03o' "$v")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
    fi
    poweroff -f
    sleep 5
    echo "lane: poweroff failed"
}

CMD=""
for word in $(cat /proc/cmdline); do
    case "$word" in lane.cmd=*) CMD="${word#lane.cmd=}" ;; esac
done
cd /root
if [ -f /lane/run ]; then
    sh /lane/run
    lane_exit $?
elif [ -n "$CMD" ]; then
    echo "$CMD" | base64 -d > /tmp/lane-cmd.sh
    sh /tmp/lane-cmd.sh
    lane_exit $?
else
    echo "lane: no /lane/run and no lane.cmd=; starting a shell"
    setsid cttyhack sh
    lane_exit $?
fi
