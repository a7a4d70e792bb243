#!/bin/sh
# Keel build VM: PID 1 (docs/vm.md). Mounts what every run needs, runs the run script
# the host wrote into the tools share, reports its exit code on the second serial port
# (the report protocol of crate qemu: KEEL-REPORT-BEGIN, `@@ name` sections,
# KEEL-REPORT-END) and powers the machine off. It never returns: if it did, the kernel would panic, and
# the VM would stop anyway (panic=-1 and QEMU's -no-reboot).
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
# an initramfs has moved /proc, /sys and /dev here already; without one they are mounted
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mountpoint -q /dev/pts || mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
modprobe -a 9pnet_virtio 9p 2>/dev/null
echo KEEL-REPORT-BEGIN >/dev/ttyS1

stop() {
	printf '@@ exit\n%s\nKEEL-REPORT-END\n' "$1" >/dev/ttyS1
	sync
	umount -a -r 2>/dev/null
	sync
	echo o >/proc/sysrq-trigger
	# wait for the power-off without touching the disks again (no exec, no lookups)
	while :; do :; done
}

mkdir -p /keel/tools
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro tools /keel/tools; then
	echo "keel vm: cannot mount the tools share (is 9p in the kernel or its modules in /lib/modules?)"
	stop 125
fi
/bin/sh /keel/tools/run
stop $?
