#!/bin/sh
# Makes a minimal busybox rootfs (Debian's busybox-static) in DIR.
# usage: tests/jail/make-rootfs.sh DIR
set -eu
dir=$1
mkdir -p "$dir/bin" "$dir/proc" "$dir/sys" "$dir/dev" "$dir/tmp" "$dir/etc" "$dir/root"
cp /bin/busybox "$dir/bin/busybox"
for app in $("$dir/bin/busybox" --list); do
	[ -e "$dir/bin/$app" ] || ln -s busybox "$dir/bin/$app"
done
echo "root:x:0:0:root:/root:/bin/sh" >"$dir/etc/passwd"
echo "root:x:0:" >"$dir/etc/group"
