#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""The hot-set workflow as users run it (docs/tools.md, "Hot-first
images"): record a cold import with -o record=, repack with
sqvenvfs-pack --hot (from the venv, and from the old image alone), mount.

Checks: the hot image's tree equals the unsorted image's through sqvenvfs,
sqvenvfs-inspect and the kernel's squashfs (which alone shows the record);
the record is hidden from a mount; the traced files come first; the
prefetch reads the hot range in a few large reads and the import then uses
them (and --stats --human says so); a chunk above an eighth of cache_size
is held to it; prefetch=0 turns it off; a damaged hot block stops the prefetch with
one log line while the mount keeps serving and that file reads EIO; a cold
import on the stand-in reads the image in at most 50 + hot bytes / 4 MiB
reads; the guard against a wrong trace stops a prefetch whose blocks the
workload does not use, but not one whose workload uses them and reads some
cold data too; a sealed image's prefetched block is checked against its
digest; bad traces are refused in one line, with nothing
written."""

import errno
import os
import re
import shutil
import subprocess
import time

import sqvtest as t

PACK = os.environ.get("SQVENVFS_PACK", "sqvenvfs-pack")
INSPECT = os.environ.get("SQVENVFS_INSPECT", "sqvenvfs-inspect")
LATFS = os.environ.get("SQVBENCH_LATFS", "")
PY = "/usr/bin/python3"
SP = "lib/python3.11/site-packages"
HOT_NAME = ".sqvenvfs-hot"


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, **kw)


def make_venv(v):
    r = sh([PY, "-m", "venv", "--without-pip", v])
    if r.returncode != 0:
        t.skip(f"python3 -m venv: {r.stderr.strip()[:200]}")
    sp = os.path.join(v, SP)
    rnd = __import__("random").Random(7)
    # hotpkg: what the recorded import reads; coldpkg and otherpkg: not.
    for pkg, n in (("coldpkg", 60), ("hotpkg", 30), ("otherpkg", 30)):
        os.makedirs(os.path.join(sp, pkg))
        with open(os.path.join(sp, pkg, "__init__.py"), "w") as f:
            for i in range(n):
                f.write(f"from . import m{i}\n")
        for i in range(n):
            with open(os.path.join(sp, pkg, f"m{i}.py"), "w") as f:
                f.write(f"# {pkg} module {i}\n")
                for k in range(rnd.randint(20, 2000)):
                    f.write(f"V{k} = {rnd.random()!r}\n")
        # a large data file, as an extension module would be; it
        # compresses (to one half), as code does
        with open(os.path.join(sp, pkg, "data.bin"), "wb") as f:
            f.write(rnd.randbytes(64 << 10) * 48)
        with open(os.path.join(sp, pkg, "__init__.py"), "a") as f:
            f.write("import os\nwith open(os.path.join(os.path.dirname("
                    "__file__), 'data.bin'), 'rb') as _f:\n"
                    "    DATA = _f.read()\n")


def pack(*args):
    return sh([PACK, "-q", *args])


def dump(*images):
    r = sh([INSPECT, "dump", "--hash", *images])
    t.check(r.returncode == 0, f"inspect dump {images}: {r.stderr.strip()}")
    return r.stdout


def extents(image):
    """{path: ([block offsets], [fragment offsets])}"""
    out = {}
    for ln in sh([INSPECT, "extents", image]).stdout.splitlines():
        p, b, f = ln.split("\t")
        out[p] = tuple([int(e.rstrip("u").split("+")[0])
                        for e in field.split(",")] if field != "-" else []
                       for field in (b, f))
    return out


def record_ranges(image, pos):
    """The hot ranges written in the record block at pos."""
    with open(image, "rb") as f:
        f.seek(pos)
        text = f.read(4096).split(b"end\n")[0].decode()
    lines = text.splitlines()
    t.check(lines[0] == "sqvenvfs-hot 1", f"record magic: {lines[0]!r}")
    return [tuple(map(int, ln.split()[1:])) for ln in lines
            if ln.startswith("range ")]


def wait_stat(mnt, key, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = t.stats(mnt)
        if s.get(key):
            return s
        time.sleep(0.05)
    return t.stats(mnt)


def import_in(mnt, mod="hotpkg"):
    r = sh([os.path.join(mnt, "bin", "python3"), "-c",
            f"import {mod}; print(len({mod}.DATA))"])
    return r


def refused(label, args, want, outimg, d):
    before = set(os.listdir(d))
    r = pack(*args)
    lines = r.stderr.strip().splitlines()
    t.check(r.returncode != 0 and len(lines) == 1 and want in lines[0],
            f"{label}: exit {r.returncode}, one line with {want!r}: "
            f"{r.stderr.strip()!r}")
    t.check(not os.path.exists(outimg), f"{label}: no image written")
    t.check(set(os.listdir(d)) == before, f"{label}: nothing left behind "
            f"({sorted(set(os.listdir(d)) - before)})")


def outstanding(s):
    """Prefetched blocks nobody has asked for yet, from --stats."""
    return (s["prefetch_blocks"] - s["prefetch_used_blocks"] -
            s["prefetch_unused_evicted"])


def read_bytes(path, n=None):
    with open(path, "rb") as f:
        return len(f.read() if n is None else f.read(n))


def guard(d, mnt):
    """The guard against a wrong trace, with a 16 MiB hot file and a 4 MiB
    cache (cache_size=4M, which the prefetch's room is half of). The prefetch
    may hold 16 blocks nobody asked for (half of cache_size, in 128 KiB
    blocks: random data is stored uncompressed); the cache passes over them
    when it evicts. The guard stops the prefetch when, while it waits, the
    readers have missed the cache 9 times (a quarter of the cache) and more
    often than they used its blocks."""
    v = os.path.join(d, "gvenv")
    r = sh([PY, "-m", "venv", "--without-pip", v])
    t.check(r.returncode == 0, f"venv: {r.stderr.strip()}")
    big = os.path.join(v, SP, "big")
    os.makedirs(big)
    rnd = __import__("random").Random(11)
    for name, mib in (("hot.bin", 16), ("cold.bin", 4)):
        with open(os.path.join(big, name), "wb") as f:
            f.write(rnd.randbytes(mib << 20))
    plain = os.path.join(d, "gplain.sqfs")
    r = pack(v, plain)
    t.check(r.returncode == 0, f"pack: {r.stderr.strip()}")
    trace = os.path.join(d, "guard.trace")
    t.mount([plain], mnt, ["-o", f"record={trace}"])
    read_bytes(os.path.join(mnt, SP, "big", "hot.bin"))
    t.unmount(mnt)
    t.wait_until(lambda: os.path.exists(trace), "the trace")
    t.wait_daemons_gone(mnt)
    ghot = os.path.join(d, "ghot.sqfs")
    r = pack("--hot", trace, v, ghot)
    t.check(r.returncode == 0, f"pack --hot: {r.stderr.strip()}")
    hot_file = os.path.join(mnt, SP, "big", "hot.bin")
    cold_file = os.path.join(mnt, SP, "big", "cold.bin")
    opts = ["-o", "cache_size=4M"]

    # a workload the trace does not describe: only cold data is read
    with t.foreground([ghot], mnt, opts) as fg:
        t.check(fg.mounted(), "the hot image mounts")
        t.wait_until(lambda: outstanding(t.stats(mnt)) >= 10,
                     "the prefetch to fill its share of the cache")
        read_bytes(cold_file)
        s = wait_stat(mnt, "prefetch_done")
        t.check(s["prefetch_done"] == 1 and s["prefetch_bytes"] < 16 << 20,
                f"wrong workload: the prefetch stopped before the end of "
                f"the hot range ({s['prefetch_bytes']} B)")
        fg.stop()
        t.check("a trace of another workload" in fg.stderr(),
                "wrong workload: one log line says why",
                fg.stderr()[-500:])

    # the recorded workload, slower than the storage as an import is (each
    # 512 KiB waits for the prefetch to be ahead of it), with a read of
    # cold data in the middle: 32 misses, fewer than the blocks used by
    # then, and its blocks take the place of used ones, not prefetched
    def ahead():
        s = t.stats(mnt)
        return outstanding(s) >= 4 or s["prefetch_done"]

    with t.foreground([ghot], mnt, opts) as fg:
        t.check(fg.mounted(), "the hot image mounts")
        got = 0
        with open(hot_file, "rb") as f:
            for piece in range(32):
                if piece == 16:
                    t.wait_until(lambda: outstanding(t.stats(mnt)) >= 10,
                                 "the prefetch to fill its share")
                    first = t.stats(mnt)
                    read_bytes(cold_file)
                    mid = t.stats(mnt)
                t.wait_until(ahead, "the prefetch to be ahead of the reader")
                got += len(f.read(512 << 10))
        t.check(got == 16 << 20, "the hot file reads whole")
        s = wait_stat(mnt, "prefetch_done")
        t.check(first["prefetch_unused_evicted"] == 0,
                "a reader behind the prefetch finds every prefetched block "
                "(the cache passes over them, where it would evict them "
                "before the blocks just used): "
                f"{first['prefetch_unused_evicted']} evicted unused")
        t.check(mid["cache_misses"] - first["cache_misses"] >= 32 and
                mid["prefetch_unused_evicted"] == 0,
                "the cold read missed the cache "
                f"{mid['cache_misses'] - first['cache_misses']} times and "
                "pushed no prefetched block out: "
                f"{mid['prefetch_unused_evicted']} evicted unused")
        t.check(s["prefetch_done"] == 1 and s["prefetch_failed"] == 0 and
                s["prefetch_bytes"] >= 16 << 20,
                f"right workload: the prefetch went to the end of the hot "
                f"range ({s['prefetch_bytes']} B; {s['prefetch_blocks']} "
                f"blocks, {s['prefetch_used_blocks']} used, "
                f"{s['prefetch_unused_evicted']} evicted unused)")
        fg.stop()
        t.check("a trace of another workload" not in fg.stderr(),
                "right workload: no stop for a wrong trace",
                fg.stderr()[-500:])

    # a verified (sealed) hot image: a prefetched block is checked against
    # its digest when read. hot.bin is random, so its blocks are stored
    # uncompressed and no decompressor would notice a changed byte.
    sealed = os.path.join(d, "gsealed.sqfs")
    shutil.copy(ghot, sealed)
    r = sh([INSPECT, "seal", sealed])
    t.check(r.returncode == 0, f"seal: {r.stderr.strip()}")
    first = extents(sealed)[f"{SP}/big/hot.bin"][0][0]
    with open(sealed, "r+b") as f:
        f.seek(first + 100)
        byte = f.read(1)
        f.seek(first + 100)
        f.write(bytes([byte[0] ^ 0xff]))
    with t.foreground([sealed], mnt) as fg:
        t.check(fg.mounted(), "the sealed hot image mounts")
        s = wait_stat(mnt, "prefetch_done")
        t.check(s["prefetch_blocks"] >= 128,
                f"the prefetch put hot.bin's blocks in the cache: {s}")
        try:
            with open(hot_file, "rb") as f:
                f.read(4096)
            got = 0
        except OSError as e:
            got = e.errno
        t.check(got == errno.EIO,
                f"a prefetched block that fails its digest reads EIO ({got})")
        fg.stop()


def main():
    t.require_mount_capability()
    if os.geteuid() != 0:
        t.skip("needs root (kernel squashfs loop mounts)")
    with t.tempdir() as d:
        os.chmod(d, 0o755)
        venv = os.path.join(d, "venv")
        make_venv(venv)
        plain = os.path.join(d, "plain.sqfs")
        r = pack(venv, plain)
        t.check(r.returncode == 0, f"pack: {r.stderr.strip()}")
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)

        # 1. record
        trace = os.path.join(d, "import.trace")
        t.mount([plain], mnt, ["-o", f"record={trace}"])
        r = import_in(mnt)
        t.check(r.returncode == 0 and r.stdout.strip() == str(3 << 20),
                f"import from the plain image: {r.stderr.strip()[-300:]}")
        t.unmount(mnt)
        deadline = time.monotonic() + 60
        while not os.path.exists(trace) and time.monotonic() < deadline:
            time.sleep(0.05)
        t.wait_daemons_gone(mnt)
        text = open(trace).read()
        traced = [ln.split("\t")[0] for ln in text.splitlines()[1:-1]]
        t.check(f"{SP}/hotpkg/data.bin" in traced and
                not any("/coldpkg/" in p for p in traced),
                "the trace names hotpkg's files and none of coldpkg's")

        # 2. repack, from the venv and from the old image alone
        hot = os.path.join(d, "hot.sqfs")
        r = pack("--hot", trace, venv, hot)
        t.check(r.returncode == 0, f"pack --hot VENV: {r.stderr.strip()}")
        relaid = os.path.join(d, "relaid.sqfs")
        r = sh([PACK, "--hot", trace, plain, relaid])
        t.check(r.returncode == 0, f"pack --hot OLD NEW: {r.stderr.strip()}")
        t.check("hot:" in r.stdout, f"the summary reports the hot set: "
                f"{r.stdout.strip()[-300:]}")

        base = dump(plain)
        t.check(base and dump(hot) == base,
                "inspect: the hot image's tree equals the unsorted one's")
        t.check(dump(relaid) == base,
                "inspect: the re-laid-out image's tree equals it too")

        def counts(img):
            out = t.inspect("info", img).stdout
            return ([ln for ln in out.splitlines()
                     if ln.strip().startswith(("entries:", "file data:"))],
                    "hot-first:    yes" in out)
        t.check(counts(hot) == (counts(plain)[0], True)
                and not counts(plain)[1],
                "inspect info: the hot image counts the entries and file "
                "data of the unsorted one (its record apart) and says it "
                f"is hot-first ({counts(hot)}, {counts(plain)})")
        # That name on something that is no record (here a directory),
        # which the mount hides all the same: not counted, not hot-first.
        fake = os.path.join(d, "fake")
        os.makedirs(os.path.join(fake, HOT_NAME, "x"))
        for p in (os.path.join(fake, HOT_NAME, "x", "f"),
                  os.path.join(fake, "a")):
            with open(p, "w") as f:
                f.write("a\n")
        fake_img = os.path.join(d, "fake.sqfs")
        r = sh(["mksquashfs", fake, fake_img, "-quiet", "-noappend",
                "-no-progress"])
        t.check(r.returncode == 0, f"mksquashfs: {r.stderr.strip()}")
        out = t.inspect("info", fake_img).stdout
        t.check("entries:      1 files, 0 directories" in out and
                "hot-first:    no" in out,
                f"inspect info: a {HOT_NAME} directory is neither counted "
                f"nor taken for a record: {out}")
        ext = extents(hot)
        t.check(HOT_NAME in ext, "the image carries the record (raw view)")
        hot_blocks = [p for k in traced for p in ext.get(k, ([], []))[0]]
        hot_all = hot_blocks + [p for k in traced
                                for p in ext.get(k, ([], []))[1]]
        cold_blocks = ext[f"{SP}/coldpkg/data.bin"][0]
        t.check(hot_blocks and max(hot_blocks) < min(cold_blocks),
                "the traced files' blocks come before cold data")
        ranges = record_ranges(hot, ext[HOT_NAME][0][0])
        t.check(ranges and all(any(a <= p < a + n for a, n in ranges)
                               for p in hot_all),
                f"every traced block and fragment is in the hot range "
                f"{ranges}")

        # 3. through sqvenvfs: same tree, record hidden
        with t.mounted([plain], mnt):
            want = t.dump_tree(mnt)
        for img in (hot, relaid):
            with t.mounted([img], mnt):
                t.compare_trees(want, t.dump_tree(mnt),
                                f"sqvenvfs {os.path.basename(img)}")
                t.check(HOT_NAME not in os.listdir(mnt),
                        "the record is not listed")
                try:
                    os.stat(os.path.join(mnt, HOT_NAME))
                    hidden = False
                except FileNotFoundError:
                    hidden = True
                t.check(hidden, "the record cannot be looked up")

        # 4. the kernel's squashfs: the same tree, plus the record
        kmnt = os.path.join(d, "kmnt")
        os.mkdir(kmnt)
        trees = {}
        for img in (plain, hot):
            r = sh(["mount", "-t", "squashfs", "-o", "loop,ro", img, kmnt])
            if r.returncode != 0:
                t.skip(f"kernel squashfs loop mount: {r.stderr.strip()}")
            try:
                trees[img] = t.dump_tree(kmnt)
            finally:
                sh(["umount", kmnt])
        rec = trees[hot].pop(HOT_NAME, None)
        t.check(rec is not None, "the kernel shows the record as a file")
        t.compare_trees(trees[plain], trees[hot], "kernel squashfs")
        r = sh(["unsquashfs", "-l", hot])
        t.check(r.returncode == 0, "unsquashfs reads the hot image")

        # 5. prefetch at mount
        with t.mounted([hot], mnt):
            s = wait_stat(mnt, "prefetch_done")
            t.check(s["prefetch_done"] == 1 and s["prefetch_failed"] == 0,
                    f"the prefetch finished: {s}")
            t.check(s["hot_bytes"] > (1 << 20) and s["prefetch_reads"] >= 1
                    and s["prefetch_reads"] <= s["hot_bytes"] // (1 << 20) + 2,
                    f"hot range {s['hot_bytes']} B in "
                    f"{s['prefetch_reads']} reads of up to 4 MiB")
            before = s["backing_reads"]
            r = import_in(mnt)
            t.check(r.returncode == 0, f"import: {r.stderr.strip()[-300:]}")
            s = t.stats(mnt)
            t.check(s["prefetch_used_blocks"] > 0,
                    f"the import used prefetched blocks: {s}")
            t.check(s["backing_reads"] - before <= 5,
                    f"the import read the image {s['backing_reads'] - before}"
                    " times after the prefetch")
            # --stats --human tells the same prefetch (test_stats checks
            # the other lines).
            h = t.cli(["--stats", "--human", mnt]).stdout
            m = re.search(r"^Prefetch: +([0-9,]+) reads?, [^(]+ \(hot range "
                          r"[^)]+\); ([0-9,]+) of ([0-9,]+) blocks used$", h,
                          re.M)
            got = m and tuple(int(x.replace(",", "")) for x in m.groups())
            t.check(got == (s["prefetch_reads"], s["prefetch_used_blocks"],
                            s["prefetch_blocks"]),
                    f"--stats --human: the prefetch's reads and blocks used "
                    f"{got}", h)
        # the prefetch's buffer comes out of cache_size: a chunk above an
        # eighth of it is held to that eighth (1 MiB of 8 MiB here)
        with t.mounted([hot], mnt, ["-o", "cache_size=8M,prefetch=1G"]):
            s = wait_stat(mnt, "prefetch_done")
            t.check(s["prefetch_done"] == 1 and s["prefetch_reads"] >= 2 and
                    s["prefetch_bytes"] <= s["prefetch_reads"] * (1 << 20),
                    f"prefetch=1G with cache_size=8M: {s['prefetch_reads']} "
                    f"reads of {s['prefetch_bytes']} B, none above 1 MiB")
        with t.mounted([hot], mnt, ["-o", "prefetch=0"]):
            r = import_in(mnt)
            s = t.stats(mnt)
            t.check(s["prefetch_reads"] == 0 and s["prefetch_blocks"] == 0,
                    "prefetch=0: no prefetch")

        # 5b. the guard against a wrong trace
        guard(d, mnt)

        # 6. a damaged hot block: one line, the mount serves, EIO there
        bad = os.path.join(d, "bad.sqfs")
        shutil.copy(hot, bad)
        victim = f"{SP}/hotpkg/data.bin"
        pos = extents(hot)[victim][0][1]
        with open(bad, "r+b") as f:
            f.seek(pos)
            f.write(b"\xff" * 16)  # no longer a zstd frame
        p = subprocess.Popen([t.SQVENVFS, "-f", bad, mnt],
                             stderr=subprocess.PIPE, text=True)
        try:
            t.check(t.wait_mounted(mnt), "the damaged image mounts")
            s = wait_stat(mnt, "prefetch_done")
            t.check(s["prefetch_failed"] == 1, "the prefetch stopped")
            with open(os.path.join(mnt, SP, "coldpkg", "m1.py")) as f:
                t.check(f.read().startswith("# coldpkg"),
                        "the mount keeps serving")
            try:
                with open(os.path.join(mnt, victim), "rb") as f:
                    f.read()
                got = 0
            except OSError as e:
                got = e.errno
            t.check(got == errno.EIO, f"the damaged file reads EIO ({got})")
        finally:
            t.unmount(mnt)
            _, err = p.communicate(timeout=60)
        lines = [ln for ln in err.splitlines() if "prefetch" in ln]
        t.check(len(lines) == 1 and "prefetch stopped" in lines[0],
                f"one log line for the prefetch: {lines}")

        # 7. a cold import on the stand-in
        if not LATFS:
            t.skip("SQVBENCH_LATFS not set")
        shared = os.path.join(d, "shared")
        os.mkdir(shared)
        shutil.copy(hot, os.path.join(shared, "hot.sqfs"))
        smnt = os.path.join(d, "smnt")
        os.mkdir(smnt)
        r = sh([LATFS, "-o", "meta_delay_us=1000,read_delay_us=1000,"
                "read_bw_mbps=1000", shared, smnt])
        t.check(r.returncode == 0, f"stand-in: {r.stderr.strip()}")
        try:
            with t.mounted([os.path.join(smnt, "hot.sqfs")], mnt):
                s = wait_stat(mnt, "prefetch_done")
                r = import_in(mnt)
                t.check(r.returncode == 0, "import from the stand-in")
                s = t.stats(mnt)
                limit = 50 + s["hot_bytes"] // (4 << 20)
                t.check(s["backing_reads"] <= limit,
                        f"the image read {s['backing_reads']} times <= "
                        f"50 + hot bytes / 4 MiB = {limit}")
                lat = dict(ln.split() for ln in os.getxattr(
                    smnt, "user.latfs.stats").decode().splitlines())
                print(f"stand-in saw {lat['reads']} read requests, "
                      f"{lat['read_bytes']} bytes; sqvenvfs made "
                      f"{s['backing_reads']} reads of the image")
        finally:
            sh(["umount", smnt])

        # 8. bad traces
        out = os.path.join(d, "out")
        os.mkdir(out)
        newimg = os.path.join(out, "new.sqfs")
        empty = os.path.join(d, "empty.trace")
        open(empty, "w").close()
        refused("empty trace", ["--hot", empty, venv, newimg], "empty",
                newimg, out)
        trunc = os.path.join(d, "trunc.trace")
        with open(trunc, "w") as f:
            f.write(text[:text.rindex("end ")])
        refused("truncated trace", ["--hot", trunc, venv, newimg],
                "truncated", newimg, out)
        other = os.path.join(d, "other.trace")
        with open(other, "w") as f:
            f.write("sqvenvfs-trace 1\n")
            for i in range(10):
                f.write(f"{SP}/numpy/mod{i}.py\t100\t0+100\n")
            f.write("end 10\n")
        refused("trace of another image", ["--hot", other, venv, newimg],
                "another image", newimg, out)
        refused("trace of another image, repack", ["--hot", other, plain,
                                                   newimg],
                "another image", newimg, out)
        stray = os.path.join(d, "stray.trace")
        body = [ln for ln in text.splitlines()[1:-1]]
        with open(stray, "w") as f:
            f.write("sqvenvfs-trace 1\n" + "\n".join(body) +
                    f"\n{SP}/gone.py\t10\t0+10\nend {len(body) + 1}\n")
        r = sh([PACK, "--hot", f"{trace},{stray}", venv, newimg])
        t.check(r.returncode == 0 and "1 not in the venv" in r.stdout,
                f"a traced file missing from the venv is ignored and "
                f"counted: {r.stdout.strip()[-300:]} {r.stderr.strip()}")

        # 9. a delta takes --hot too: what the base holds is counted
        with open(os.path.join(venv, SP, "hotpkg", "m1.py"), "a") as f:
            f.write("CHANGED = 1\n")
        delta = os.path.join(d, "delta.sqfs")
        r = sh([PACK, "--hot", trace, "--base", plain, venv, delta])
        t.check(r.returncode == 0 and "in the base" in r.stdout,
                f"pack --hot --base: {r.stdout.strip()[-300:]} "
                f"{r.stderr.strip()}")
        t.check(HOT_NAME in extents(delta),
                "the delta carries its own record")
        with t.mounted([plain, delta], mnt):
            with open(os.path.join(mnt, SP, "hotpkg", "m1.py")) as f:
                t.check(f.read().endswith("CHANGED = 1\n"),
                        "base + hot delta show the changed file")
            t.check(HOT_NAME not in os.listdir(mnt),
                    "no record shows in the stack")
    t.finish()


if __name__ == "__main__":
    main()
