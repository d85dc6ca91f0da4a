#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Make the fuzzers' seed corpora from real images: one small tree (files of
# several sizes, a fragment, a hole, symlinks, a hard link, xattrs, a device
# node, nested directories) in every compression mksquashfs offers, and
# layer stacks with whiteouts and opaque directories.
# Usage: tests/fuzz/make_corpus.sh   (as root, for the device node and
# trusted.* xattrs; writes tests/fuzz/corpus/{image,layers,names}/seed-*)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export SOURCE_DATE_EPOCH=1700000000

tree() {
	d=$1
	mkdir -p "$d/pkg/sub/deeper" "$d/empty"
	printf 'import os\n' >"$d/pkg/__init__.py"
	head -c 5000 /dev/zero | tr '\0' 'x' >"$d/pkg/small.txt"
	# two full 4 KiB blocks and a tail in a fragment
	awk 'BEGIN{for(i=0;i<600;i++)print "line",i}' >"$d/pkg/sub/blocks.txt"
	head -c 9000 /dev/urandom >"$d/pkg/sub/random.bin"
	truncate -s 20000 "$d/pkg/sub/deeper/sparse"
	printf 'end' >>"$d/pkg/sub/deeper/sparse"
	ln -s ../__init__.py "$d/pkg/sub/link"
	ln -s /nowhere "$d/dangling"
	ln "$d/pkg/small.txt" "$d/pkg/hard"
	: >"$d/empty-file"
	mknod "$d/null" c 1 3 2>/dev/null || true
	setfattr -n user.k -v value "$d/pkg/small.txt" 2>/dev/null || true
	setfattr -n trusted.t -v tv "$d/pkg" 2>/dev/null || true
}

mk() { mksquashfs "$1" "$2" -noappend -quiet -no-progress -b 4096 "$@" >/dev/null 2>&1; }

src=$tmp/src
tree "$src"
out=$here/corpus/image
mkdir -p "$out"
for comp in gzip lzo xz lz4 zstd; do
	mksquashfs "$src" "$out/seed-$comp" -noappend -quiet -no-progress \
		-b 4096 -comp "$comp" >/dev/null
done
# uncompressed metadata and data: the fuzzer's bit flips land in plain
# structures instead of in a compressed stream
mksquashfs "$src" "$out/seed-plain" -noappend -quiet -no-progress -b 4096 \
	-noI -noD -noF -noX >/dev/null
mksquashfs "$src" "$out/seed-noxattr" -noappend -quiet -no-progress -b 4096 \
	-comp gzip -no-xattrs -no-fragments >/dev/null

# Layer stacks: base, an upper layer with whiteouts and an opaque directory.
lower=$tmp/lower upper=$tmp/upper
tree "$lower"
mkdir -p "$upper/pkg/sub" "$upper/empty"
: >"$upper/pkg/.wh.small.txt"
: >"$upper/.wh.dangling"
: >"$upper/pkg/sub/.wh..wh..opq"
printf 'new\n' >"$upper/pkg/sub/new.txt"
printf 'over\n' >"$upper/pkg/__init__.py"
printf 'file now\n' >"$upper/empty/x"
for pair in "gzip -noI -noD -noF -noX" "zstd" "lz4"; do
	comp=${pair%% *}
	flags=$(echo "$pair" | cut -s -d' ' -f2-)
	# shellcheck disable=SC2086
	mksquashfs "$lower" "$tmp/l.sqfs" -noappend -quiet -no-progress -b 4096 -comp $comp $flags >/dev/null
	# shellcheck disable=SC2086
	mksquashfs "$upper" "$tmp/u.sqfs" -noappend -quiet -no-progress -b 4096 -comp $comp $flags >/dev/null
	name=seed-2-$comp
	[ -n "$flags" ] && name=$name-plain
	python3 - "$tmp/l.sqfs" "$tmp/u.sqfs" "$here/corpus/layers/$name" <<'PY'
import struct, sys
a, b = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
open(sys.argv[3], "wb").write(bytes([1]) + struct.pack("<I", len(a)) + a + b)
PY
done
python3 - "$tmp/l.sqfs" "$tmp/u.sqfs" "$here/corpus/layers/seed-3-lz4" <<'PY'
import struct, sys
a, b = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
open(sys.argv[3], "wb").write(bytes([2]) + struct.pack("<II", len(b), len(a)) + b + a + b)
PY

out=$here/corpus/names
mkdir -p "$out"
i=0
for n in plain .wh.plain .wh..wh..opq .wh. .wh.. .wh... . .. a/b .hidden; do
	printf '%s' "$n" >"$out/seed-$i"
	i=$((i + 1))
done
printf 'a\0b' >"$out/seed-nul"
