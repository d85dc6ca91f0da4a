#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Verified images (issue 12, point 1): the block digest table.

- A sealed image (`sqvenvfs-inspect seal`) is still a standard squashfs
  image: unsquashfs lists it, squashfuse (and the kernel, as root) mount it
  and read the same bytes.
- One-byte flips spread over the data blocks, the fragment blocks, the
  metadata blocks and the other stored bytes (superblock, table indexes),
  and a few in the digest table itself: each one gives EIO on a read or a
  refused mount, and no read returns a wrong byte. SQVENVFS_TEST_FLIPS
  sets how many (default 120 here; the issue's full form is 400).
- A damaged block gives EIO, exactly one log line and corrupt_blocks 1,
  however often it is read.
- `sqvenvfs-inspect verify` says which block is damaged; `digest` prints
  one stable digest of the image, the same with or without the table.
- An image without a table is served as before (no check)."""

import hashlib
import os
import random
import shutil
import struct
import subprocess
import sys

import sqvtest as t

INSPECT = os.environ.get("SQVENVFS_INSPECT", "sqvenvfs-inspect")
KINDS = {1: "data", 2: "fragment", 3: "metadata", 4: "raw"}


def make_tree(src, seed):
    rng = random.Random(seed)
    os.makedirs(os.path.join(src, "pkg", "sub"))
    files = {}
    for i in range(60):
        d = ["", "pkg", os.path.join("pkg", "sub")][i % 3]
        name = os.path.join(d, f"f{i:03d}")
        kind = i % 4
        if kind == 0:      # small: lands in a fragment
            data = (b"x = %d\n" % i) * rng.randint(1, 300)
        elif kind == 1:    # several compressible blocks
            data = b"".join(b"line %d of file %d\n" % (k, i)
                            for k in range(rng.randint(8000, 20000)))
        elif kind == 2:    # random: blocks stored uncompressed
            data = rng.randbytes(rng.randint(140_000, 300_000))
        else:              # a tail in a fragment after full blocks
            data = rng.randbytes(rng.randint(1, 2000)) * 80
        with open(os.path.join(src, name), "wb") as f:
            f.write(data)
        files[name] = hashlib.sha256(data).hexdigest()
    os.symlink("f000", os.path.join(src, "link"))
    return files


def table(path):
    """[(pos, len, kind)] from the image's digest table."""
    with open(path, "rb") as f:
        f.seek(-64, os.SEEK_END)
        foot = f.read(64)
        magic, _v, _a, _used, off, n = struct.unpack("<8sIIQQQ", foot[:40])
        if magic != b"SQVDIGST":
            return None, None
        f.seek(off)
        raw = f.read(32 * n)
    out = []
    for i in range(n):
        pos, ln, kind = struct.unpack("<QIH", raw[32 * i:32 * i + 14])
        out.append((pos, ln, kind))
    return out, off


def read_all(mnt, files):
    """(files read right, files that gave EIO, files read wrong, other
    errors)."""
    right = eio = wrong = 0
    other = []
    for name, digest in files.items():
        try:
            with open(os.path.join(mnt, name), "rb") as f:
                got = hashlib.sha256(f.read()).hexdigest()
            if got == digest:
                right += 1
            else:
                wrong += 1
        except OSError as e:
            if e.errno == 5:
                eio += 1
            else:
                other.append(f"{name}: {e}")
    return right, eio, wrong, other


def flip(path, pos, xor):
    with open(path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ xor]))


def pick_flips(entries, table_off, file_size, n, rng):
    """n positions: spread over each kind of entry, and a few in the table."""
    by_kind = {}
    for pos, ln, kind in entries:
        by_kind.setdefault(kind, []).append((pos, ln))
    share = {1: 0.35, 2: 0.25, 3: 0.25, 4: 0.10}
    picks = []
    for kind, frac in share.items():
        if kind not in by_kind:
            continue
        for _ in range(max(1, int(n * frac))):
            pos, ln = rng.choice(by_kind[kind])
            picks.append((pos + rng.randrange(ln), KINDS[kind]))
    while len(picks) < n:
        picks.append((rng.randrange(table_off, file_size), "table"))
    return picks[:n]


def main():
    t.require_mount_capability()
    nflips = int(os.environ.get("SQVENVFS_TEST_FLIPS", "120"))
    with t.tempdir() as d:
        os.chmod(d, 0o755)
        src = os.path.join(d, "src")
        files = make_tree(src, 12)
        plain = t.mksquashfs(src, os.path.join(d, "plain.sqfs"))
        img = os.path.join(d, "sealed.sqfs")
        shutil.copy(plain, img)
        r = subprocess.run([INSPECT, "seal", img], capture_output=True, text=True)
        t.check(r.returncode == 0 and r.stderr == "", f"seal ({r.stderr.strip()})")
        entries, table_off = table(img)
        t.check(entries is not None, "the sealed image ends with a digest table")
        if entries is None:
            t.finish()
        size = os.path.getsize(img)
        used = os.path.getsize(plain)
        kinds = {KINDS[k]: sum(1 for e in entries if e[2] == k) for k in KINDS}
        print(f"table: {len(entries)} entries {kinds}, {size - used} bytes "
              f"after a {used}-byte image")
        covered = sum(e[1] for e in entries)
        last = entries[-1][0] + entries[-1][1]
        t.check(entries[0][0] == 0 and covered == last and
                all(a[0] + a[1] == b[0] for a, b in zip(entries, entries[1:])),
                "the entries cover the image without a gap or an overlap")
        t.check(kinds["data"] > 0 and kinds["fragment"] > 0 and kinds["metadata"] > 0,
                "data, fragment and metadata blocks are all listed")

        # ---- still a standard squashfs image ----
        r = subprocess.run(["unsquashfs", "-l", img], capture_output=True, text=True)
        t.check(r.returncode == 0 and "f000" in r.stdout, "unsquashfs lists it")
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)
        if shutil.which("squashfuse"):
            r = subprocess.run(["squashfuse", img, mnt], capture_output=True, text=True)
            if r.returncode == 0:
                res = read_all(mnt, files)
                subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
                t.check(res[0] == len(files), f"squashfuse serves it ({res})")
            else:
                t.check(False, f"squashfuse mounts it ({r.stderr.strip()})")
        if os.geteuid() == 0:
            r = subprocess.run(["mount", "-t", "squashfs", "-o", "loop,ro", img, mnt],
                               capture_output=True, text=True)
            if r.returncode == 0:
                res = read_all(mnt, files)
                subprocess.run(["umount", mnt], capture_output=True)
                t.check(res[0] == len(files), f"the kernel serves it ({res})")
            else:
                print(f"note: no kernel squashfs mount here ({r.stderr.strip()})")

        # ---- inspect: digest, verify ----
        r1 = subprocess.run([INSPECT, "digest", img, plain], capture_output=True, text=True)
        lines = r1.stdout.split("\n")
        t.check(r1.returncode == 0 and len(lines) >= 2 and
                lines[0].split()[0] == lines[1].split()[0] and
                lines[0].startswith("xxh3-128:"),
                f"digest: one line per image, the same with and without the table ({r1.stdout!r})")
        r = subprocess.run([INSPECT, "verify", img], capture_output=True, text=True)
        t.check(r.returncode == 0 and "match their digests" in r.stdout,
                f"verify: ok ({r.stdout.strip()} {r.stderr.strip()})")

        # ---- one damaged data block: EIO, one log line, corrupt_blocks ----
        data_entry = next(e for e in entries if e[2] == 1)
        damaged = os.path.join(d, "damaged.sqfs")
        shutil.copy(img, damaged)
        flip(damaged, data_entry[0] + data_entry[1] // 2, 0x01)
        with t.foreground([damaged], mnt) as fg:
            t.check(fg.mounted(), "a damaged data block: mounted")
            first = read_all(mnt, files)
            again = read_all(mnt, files)
            st = t.stats(mnt)
            fg.stop()
            log = [l for l in fg.stderr().splitlines() if l.strip()]
        t.check(first[1] >= 1 and first[2] == 0 and not first[3] and
                again[1] == first[1],
                f"a damaged data block: EIO every time, nothing wrong ({first}, {again})")
        t.check(st["corrupt_blocks"] >= 1, f"corrupt_blocks counted ({st['corrupt_blocks']})")
        t.check(len(log) == 1 and "does not match its digest" in log[0] and
                str(data_entry[0]) in log[0],
                f"one log line naming the offset ({log})")
        r = subprocess.run([INSPECT, "verify", damaged], capture_output=True, text=True)
        t.check(r.returncode == 1 and str(data_entry[0]) in r.stderr,
                f"verify names the damaged block ({r.stderr.strip()})")
        r2 = subprocess.run([INSPECT, "digest", damaged], capture_output=True, text=True)
        t.check(r2.stdout.split()[0] != lines[0].split()[0],
                "digest changes with one flipped byte")

        # ---- the same flip in the plain image: served (no table) ----
        plain_damaged = os.path.join(d, "plain-damaged.sqfs")
        shutil.copy(plain, plain_damaged)
        flip(plain_damaged, data_entry[0] + data_entry[1] // 2, 0x01)
        with t.mounted([plain_damaged], mnt):
            res = read_all(mnt, files)
        t.check(res[0] + res[1] + res[2] == len(files) and res[0] >= len(files) - 1,
                f"without a table: served as before, unchecked ({res})")

        # ---- many flips ----
        rng = random.Random(2026)
        flips = pick_flips(entries, table_off, size, nflips, rng)
        work = os.path.join(d, "flip.sqfs")
        shutil.copy(img, work)
        outcome = {}
        wrong_total = 0
        silent = []
        for pos, area in flips:
            xor = rng.randrange(1, 256)
            flip(work, pos, xor)
            r = subprocess.run([t.SQVENVFS, work, mnt], capture_output=True, text=True)
            if r.returncode != 0:
                result = "refused"
            else:
                right, eio, wrong, other = read_all(mnt, files)
                t.unmount(mnt)
                t.wait_daemons_gone(mnt)
                wrong_total += wrong
                if other:
                    silent.append((pos, area, other[:2]))
                result = "eio" if eio else "nothing"
                if wrong or (not eio):
                    silent.append((pos, area, f"{wrong} wrong, {eio} EIO"))
            outcome.setdefault(area, {}).setdefault(result, 0)
            outcome[area][result] += 1
            flip(work, pos, xor)  # back to intact
        print(f"{len(flips)} one-byte flips: {outcome}")
        t.check(wrong_total == 0, f"{len(flips)} flips: 0 files read wrong ({wrong_total})")
        t.check(not silent, f"every flip gives EIO or a refused mount ({silent[:5]})")
        t.check(not t.is_mounted(mnt), "nothing left mounted")
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
