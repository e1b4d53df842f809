#!/bin/sh
# PID 1 of the ARM64 lane (guests/lane_arm64): Debian's arm64 kernel under QEMU TCG
# (-M virt,virtualization=on), KVM built in (VHE) -> /dev/kvm; then run what this boot was
# told to run and print its exit status (QEMU's virt machine has no isa-debug-exit: the host
# reads "@@lane-exit status=N" off the console).
#
# What to run, first match wins:
#   /lane/run           a script from a payload initramfs appended to the lane image
#   lane.cmd=BASE64     on the kernel command line (a shell command, base64 of its text)
#   lane.server         the lane server (/lane/server.py): many god machines, one boot
#   (nothing)           an interactive shell on the console
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin HOME=/root PYTHONPATH=/lane/god PYTHONDONTWRITEBYTECODE=1 LC_ALL=C.UTF-8
mount -t devtmpfs dev /dev 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs -o mode=1777 tmp /tmp
mkdir -p /dev/pts && mount -t devpts -o ptmxmode=0666 devpts /dev/pts
exec </dev/console >/dev/console 2>&1
read up0 _ </proc/uptime

for m in $(cat /lib/modules/lane/order); do
    insmod /lib/modules/lane/$m.ko 2>/dev/null || echo "lane: insmod $m failed"
done
# The host's file system, read-only, where the lane was started with -virtfs mount_tag=host.
if grep -q 9p /proc/filesystems && mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 host /host 2>/dev/null; then
    :
fi
if [ -c /dev/kvm ]; then
    read up _ </proc/uptime
    echo "lane: /init at ${up0} s, /dev/kvm ready at ${up} s"
else
    echo "lane: error: no /dev/kvm (is EL2 exposed? -M virt,virtualization=on -cpu max)"
fi

lane_exit() {
    echo "@@lane-exit status=$1"
    sync
    poweroff -f
    sleep 5
    echo "lane: poweroff failed"
}

CMD=""
SERVER=""
for word in $(cat /proc/cmdline); do
    case "$word" in
        lane.cmd=*) CMD="${word#lane.cmd=}" ;;
        lane.server) SERVER=1 ;;
    esac
done
cd /root
if [ -f /lane/run ]; then
    sh /lane/run
    lane_exit $?
elif [ -n "$CMD" ]; then
    echo "$CMD" | base64 -d > /tmp/lane-cmd.sh
    sh /tmp/lane-cmd.sh
    lane_exit $?
elif [ -n "$SERVER" ]; then
    python3 -u -S /lane/server.py
    lane_exit $?
else
    echo "lane: no /lane/run and no lane.cmd=; starting a shell"
    setsid cttyhack sh
    lane_exit $?
fi
