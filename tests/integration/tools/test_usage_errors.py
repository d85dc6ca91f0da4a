# SPDX-License-Identifier: BSD-2-Clause
"""The exit status of each program for a bad option or value, as its
manual page's EXIT STATUS says: sqvenvfs 2, sqvenvfs-pack 2,
sqvenvfs-edit 125 (never 2, which could be COMMAND's own status),
sqvenvfs-inspect 2; and 1 where the page says a failure is 1 (a missing
file or directory). Every one is a single line naming the option and
why, with nothing written and nothing mounted."""

import os
import subprocess

import sqvtest as t

EDIT = os.environ.get("SQVENVFS_EDIT", "sqvenvfs-edit")
SANITIZED = "ASAN_OPTIONS" in os.environ or "UBSAN_OPTIONS" in os.environ


def memory_bytes():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def expect(label, cmd, status, want, prefix, made=()):
    r = t.run(cmd, check=False)
    t.check_error(label, r, want, prefix=prefix, status=status)
    for p in made:
        t.check(not os.path.lexists(p), f"{label}: {p} not written")


def test(tmp, cleanups):
    t.require_pack_tools()
    t.require_mount_capability()
    venv = t.make_venv(os.path.join(tmp, "venv"), pkgs=("toml",))
    src = os.path.join(tmp, "src")
    os.makedirs(os.path.join(src, "pkg"))
    with open(os.path.join(src, "pkg", "m.py"), "w") as f:
        f.write("X = 1\n")
    img = t.mksquashfs(src, os.path.join(tmp, "img.sqfs"))
    out = os.path.join(tmp, "out.sqfs")
    mnt = os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    missing = os.path.join(tmp, "missing")
    dangling = os.path.join(tmp, "dangling.sqfs")
    os.symlink(missing, dangling)

    # ---- sqvenvfs-pack: usage errors exit 2 (sqvenvfs-pack(1)) ----
    pack_usage = [
        (["--level", "99"], ["--level 99", "zstd takes 1 to 22"]),
        (["--level", "0"], ["--level 0", "zstd takes 1 to 22"]),
        (["--comp", "gzip", "--level", "10"],
         ["--level 10", "gzip takes 1 to 9"]),
        (["--comp", "lz4", "--level", "3"],
         ["--level 3", "not supported with lz4"]),
        (["--level", "high"], ["--level", "invalid int value"]),
        (["--comp", "brotli"], ["--comp", "invalid choice"]),
        (["--block-size", "3K"], ["--block-size 3K", "from 4K to 1M"]),
        (["--block-size", "2M"], ["--block-size 2M", "from 4K to 1M"]),
        (["--block-size", "big"], ["--block-size big", "not a size"]),
        (["-j", "0"], ["--jobs 0", "at least 1"]),
        (["--jobs", "-3"], ["--jobs -3", "at least 1"]),
        (["-j", "many"], ["--jobs", "invalid int value"]),
        (["--optimize", "5"], ["--optimize 5", "levels among 0,1,2"]),
        (["--optimize", "0,x"], ["--optimize 0,x", "levels among 0,1,2"]),
        (["--hot", ","], ["--hot", "one or more trace files"]),
        (["--mount-point", "venv"], ["--mount-point venv", "not an absolute"]),
        (["--checksum"], ["--checksum", "--base"]),
        (["--frobnicate"], ["--frobnicate", "unrecognized"]),
    ]
    for opts, want in pack_usage:
        expect(f"pack {' '.join(opts)}", [t.PACK, *opts, venv, out], 2, want,
               "sqvenvfs-pack: ", made=[out])
    expect("pack without IMAGE", [t.PACK, venv], 2, ["IMAGE", "required"],
           "sqvenvfs-pack: ", made=[out])
    # Re-laying out an image keeps how it was made: the options that say
    # how to pack a venv are refused, not silently ignored.
    trace = os.path.join(tmp, "m.trace")
    with open(trace, "w") as f:
        f.write("sqvenvfs-trace 1\npkg/m.py\t6\t0+6\nend 1\n")
    for opts in (["--comp", "zstd"], ["--level", "5"], ["--block-size", "64K"],
                 ["--optimize", "1"], ["--no-compile"], ["--mount-point", "/x"],
                 ["--strict"], ["--checksum", "--base", img]):
        expect(f"pack --hot T {opts[0]} IMAGE", [t.PACK, "--hot", trace, *opts,
                                                  img, out], 2,
               [opts[0], "only for packing a venv"], "sqvenvfs-pack: ",
               made=[out])
    # ... while what is missing on disk is a failure, 1
    pack_fail = [
        (["--tmpdir", missing], [missing, "staging directory"]),
        (["--base", missing], [f"--base: {missing}", "no such image"]),
        (["--base", venv], [f"--base: {venv}", "a directory, not an image"]),
        (["--base", dangling], [f"--base: {dangling}",
                                "no such image (a dangling symlink)"]),
        (["--hot", missing], [missing, "No such file"]),
    ]
    for opts, want in pack_fail:
        expect(f"pack {opts[0]} (missing)", [t.PACK, *opts, venv, out], 1,
               want, "sqvenvfs-pack: ", made=[out])

    # ---- sqvenvfs-edit: every usage error is 125 (sqvenvfs-edit(1)) ----
    edit_usage = [
        (["--level", "99"], ["--level 99", "zstd takes 1 to 22"]),
        (["--level", "high"], ["--level", "invalid int value"]),
        (["--comp", "brotli"], ["--comp", "invalid choice"]),
        (["--block-size", "3K"], ["--block-size 3K", "power of two"]),
        (["-j", "0"], ["--jobs 0", "at least 1"]),
        (["-j", "many"], ["--jobs", "invalid int value"]),
        (["--optimize", "5"], ["--optimize 5", "levels among 0,1,2"]),
        (["--overlay", "zfs"], ["--overlay", "invalid choice"]),
        (["--mount-point", "venv"], ["--mount-point venv", "not an absolute"]),
        (["--at", missing], ["--at", "no such directory"]),
        (["--work", missing], ["--work", "no such directory"]),
        (["--checksum"], ["--checksum", "unrecognized"]),
    ]
    for opts, want in edit_usage:
        expect(f"edit {' '.join(opts)}",
               [EDIT, *opts, img, out, "--", "true"], 125, want,
               "sqvenvfs-edit: ", made=[out])
    expect("edit without COMMAND", [EDIT, img, out], 125,
           ["COMMAND", "missing"], "sqvenvfs-edit: ", made=[out])
    expect("edit without arguments", [EDIT], 125, ["IMAGE", "required"],
           "sqvenvfs-edit: ", made=[out])

    # ---- sqvenvfs-inspect: usage errors 2, a bad image or path 1 ----
    inspect_usage = [
        (["--frobnicate", img], ["--frobnicate", "unknown option"]),
        (["ls", "-x", img], ["-x", "unknown option"]),
        (["dump", "--hash=yes", img], ["--hash=yes", "takes no value"]),
        (["info", "-l", img], ["-l", "not an option of info"]),
        (["ls", "--hash", img], ["--hash", "not an option of ls"]),
        (["info", "--raw", img], ["--raw", "not an option of info"]),
        (["verify", "--raw", img], ["--raw", "not an option of verify"]),
        (["--raw", img], ["--raw", "not an option of info"]),
        (["stat", img], ["stat", "a path"]),
        (["extents", img, img], ["extents", "one image"]),
        ([], ["give one or more images"]),
        # a mistyped command, not "verfiy: No such file or directory"
        (["verfiy", img], ["verfiy", "neither a command", "nor a file"]),
    ]
    for args, want in inspect_usage:
        expect(f"inspect {' '.join(os.path.basename(a) for a in args)}",
               [t.INSPECT, *args], 2, want, "sqvenvfs-inspect: ")
    expect("inspect a missing image", [t.INSPECT, missing], 1,
           [missing, "No such file"], "sqvenvfs-inspect: ")
    # after --, a word is an image, never a mistyped command
    expect("inspect -- verfiy", [t.INSPECT, "--", "verfiy"], 1,
           ["verfiy", "No such file"], "sqvenvfs-inspect: ")
    expect("inspect stat a missing path", [t.INSPECT, "stat", img, "/nope"],
           1, ["/nope", "no such path"], "sqvenvfs-inspect: ")

    # ---- sqvenvfs: usage errors 2, a refused mount 1 (sqvenvfs(1)) ----
    too_big = f"{(memory_bytes() >> 30) * 2 + 2}G"
    daemon_usage = [
        ("threads=0", ["threads=0", "from 1 to"]),
        ("threads=many", ["threads=many", "from 1 to"]),
        ("cache_size=lots", ["cache_size=lots", "not a size"]),
        (f"cache_size={too_big}", [f"cache_size={too_big}", "memory"]),
        ("cache_size", ["cache_size", "needs a value"]),
        ("prefetch=5K", ["prefetch=5K", "1M to 1G"]),
        ("max_read=100", ["max_read=100", "from 4096"]),
        ("record=", ["record=", "needs a file name"]),
        (f"record={missing}/trace", ["record=", "directory does not exist"]),
        (f"record={img}", ["record=", "one of the images"]),
        ("fsname=", ["fsname=", "needs a name"]),
        ("subtype=a/b", ["subtype=a/b", "type name"]),
        ("auto_unmount=1", ["auto_unmount=1", "takes no value"]),
        ("frobnicate", ["frobnicate", "unknown option"]),
    ]
    for opt, want in daemon_usage:
        expect(f"sqvenvfs -o {opt}", [t.SQVENVFS, "-o", opt, img, mnt], 2,
               want, "sqvenvfs: ")
        t.check(not t.is_mounted(mnt), f"sqvenvfs -o {opt}: nothing mounted")
    expect("sqvenvfs --frobnicate", [t.SQVENVFS, "--frobnicate", img, mnt],
           2, ["--frobnicate", "unknown option"], "sqvenvfs: ")
    # libfuse's own refusal, under our prefix alone (not "sqvenvfs: fuse:")
    expect("sqvenvfs -o without a value", [t.SQVENVFS, img, mnt, "-o"], 2,
           ["missing argument after", "-o"], "sqvenvfs: ")
    expect("sqvenvfs a missing image", [t.SQVENVFS, missing, mnt], 1,
           [missing], "sqvenvfs: ")
    # An explicit cache_size that does not fit under the memory limit is a
    # bad value too, as one above the machine's memory: 2, not 1.
    if SANITIZED:
        print("note: the RLIMIT_AS part runs in the plain build only")
    else:
        # The refusal names the size as written (1G), not as 1024M.
        expect("sqvenvfs -o cache_size=1G under RLIMIT_AS 200M",
               ["prlimit", f"--as={200 << 20}", t.SQVENVFS, "-o",
                "cache_size=1G", img, mnt], 2,
               ["-o cache_size=1G does not fit under the memory limit"],
               "sqvenvfs: ")
        # However long the value as written: leading zeros are a size too.
        long_1g = "0" * 40 + "1G"
        expect("sqvenvfs -o cache_size=<40 zeros>1G under RLIMIT_AS 200M",
               ["prlimit", f"--as={200 << 20}", t.SQVENVFS, "-o",
                f"cache_size={long_1g}", img, mnt], 2,
               [f"-o cache_size={long_1g} does not fit under the memory limit"],
               "sqvenvfs: ")
    t.check(not t.is_mounted(mnt), "nothing mounted at the end")
    if t.is_mounted(mnt):
        subprocess.run(["umount", "-l", mnt], capture_output=True)


if __name__ == "__main__":
    t.main(test)
