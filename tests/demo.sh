#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# The README's demo: make a small venv, pack it with sqvenvfs-pack, mount it
# somewhere else,
# import from it through the mount, show what that did to the file system
# (--stats --human), unmount.
# Usage: tests/demo.sh [BUILD_DIR]   (default: build)
set -eu
build=${1:-build}
sqvenvfs="$build/daemon/sqvenvfs"
pack="$build/tools/sqvenvfs-pack"
for exe in "$sqvenvfs" "$pack"; do
	[ -x "$exe" ] || { echo "demo: $exe not built (meson compile -C $build)" >&2; exit 1; }
done
py=/usr/bin/python3
work=$(mktemp -d /tmp/sqvenvfs-demo.XXXXXX)
mnt="$work/elsewhere/venv"
cleanup() {
	"$sqvenvfs" --unmount "$mnt" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "== 1. a venv with numpy (from Debian's python3-numpy)"
"$py" -m venv --without-pip "$work/venv"
site=$("$work/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cp -a /usr/lib/python3/dist-packages/numpy "$site/"
echo "   $(find "$work/venv" | wc -l) entries in $work/venv"

echo "== 2. pack it: relocatable, byte-compiled, one squashfs image"
"$pack" "$work/venv" "$work/venv.sqfs" | sed 's/^/   /'

echo "== 3. mount it at another path"
mkdir -p "$mnt"
"$sqvenvfs" "$work/venv.sqfs" "$mnt"
grep " $mnt " /proc/self/mountinfo | awk '{print "   " $5 " type " $(NF-2) " (" $6 ")"}'

echo "== 4. import numpy through the mount, twice"
"$mnt/bin/python" -c "import numpy; print('   numpy', numpy.__version__, 'from', numpy.__file__)"
count() { "$sqvenvfs" --stats "$mnt" | awk -v k="$1" '$1==k{print $2}'; }
req0=$(count requests); ioc0=$(count ioctl)
"$mnt/bin/python" -c "import numpy"
req1=$(count requests); ioc1=$(count ioctl)
echo "   the second import sent $((req1 - req0)) requests to the daemon, $((ioc1 - ioc0)) of them isatty ioctls"

echo "== 5. what the imports did to the file system (sqvenvfs --stats --human)"
"$sqvenvfs" --stats --human "$mnt" | sed 's/^/   /'

echo "== 6. unmount"
"$sqvenvfs" --unmount "$mnt"
echo "   done"
