#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""-o record=FILE: at unmount the daemon writes the files whose data the
kernel asked for, in first-touch order, with their byte ranges, in the
documented trace format (docs/tools.md); names with tab, newline and
backslash round-trip; the trace appears whole (temporary file + rename);
a record= in a directory that does not exist refuses the mount."""

import os

import sqvtest as t


def parse(text):
    try:
        return t.read_trace(text)
    except ValueError as e:
        t.check(False, f"the trace is one whole trace: {e}")
        return []


def main():
    t.require_mount_capability()
    with t.tempdir() as d:
        src = os.path.join(d, "src")
        os.makedirs(os.path.join(src, "pkg", "sub"))
        names = ["pkg/first.py", "tab\there.py", "new\nline.py",
                 "back\\slash.py", "pkg/sub/big.bin", "pkg/untouched.py"]
        for i, n in enumerate(names):
            with open(os.path.join(src, n), "wb") as f:
                if n.endswith("big.bin"):
                    f.write(os.urandom(3 << 20))
                else:
                    f.write(f"# file {i}\n".encode() * 50)
        img = t.mksquashfs(src, os.path.join(d, "img.sqfs"))
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)
        out = os.path.join(d, "traces")
        os.mkdir(out)
        trace = os.path.join(out, "import.trace")

        t.mount([img], mnt, ["-o", f"record={trace}"])
        order = ["pkg/first.py", "new\nline.py", "tab\there.py",
                 "back\\slash.py"]
        for n in order:
            with open(os.path.join(mnt, n), "rb") as f:
                f.read()
        with open(os.path.join(mnt, "pkg/sub/big.bin"), "rb") as f:
            f.read(4096)  # the kernel reads ahead, but not 3 MiB
        with open(os.path.join(mnt, "pkg/first.py"), "rb") as f:
            f.read()      # again: from the page cache, no second entry
        os.stat(os.path.join(mnt, "pkg/untouched.py"))  # metadata only
        t.check(not os.path.exists(trace), "nothing written while mounted")
        t.unmount(mnt)
        # --unmount returns once the daemon has written it and exited.
        t.check(os.path.exists(trace), "the trace is written at unmount")
        t.wait_daemons_gone(mnt)
        t.check(os.listdir(out) == ["import.trace"],
                f"only the trace is left in its directory: {os.listdir(out)}")

        files = parse(open(trace).read())
        got = [f[0] for f in files]
        t.check(got == order + ["pkg/sub/big.bin"],
                f"files in first-touch order, names round-trip: {got!r}")
        for path, size, ranges in files:
            real = os.path.getsize(os.path.join(src, path))
            t.check(size == real, f"{path!r}: size {size} == {real}")
            if path != "pkg/sub/big.bin":
                t.check(ranges == [(0, real)], f"{path!r}: read whole: "
                        f"{ranges}")
        big = [f for f in files if f[0] == "pkg/sub/big.bin"][0]
        covered = sum(n for _, n in big[2])
        t.check(big[2][0][0] == 0 and 4096 <= covered < big[1],
                f"big.bin: from 0, part of the file only: {big[2]}")

        # A second run overwrites the trace as a whole.
        t.mount([img], mnt, ["-o", f"record={trace}"])
        with open(os.path.join(mnt, "pkg/untouched.py"), "rb") as f:
            f.read()
        old = os.stat(trace).st_ino
        t.unmount(mnt)
        t.check(os.stat(trace).st_ino != old, "a new trace replaced the old")
        t.wait_daemons_gone(mnt)
        files = parse(open(trace).read())
        t.check([f[0] for f in files] == ["pkg/untouched.py"],
                "the second trace replaced the first")

        # A trace nobody can write refuses the mount, in one line.
        bad = os.path.join(d, "no-such-dir", "x.trace")
        r = t.cli(["-o", f"record={bad}", img, mnt])
        lines = r.stderr.strip().splitlines()
        t.check(r.returncode != 0 and len(lines) == 1 and
                "record=" in lines[0] and "does not exist" in lines[0],
                f"record= in a missing directory refused: {r.stderr!r}")
        t.check(not t.is_mounted(mnt), "and nothing mounted")

        # The trace would replace FILE at unmount: what that would lose, or
        # where no file can be made, refuses the mount, in one line, and
        # leaves FILE as it was.
        notes = os.path.join(d, "notes.txt")
        with open(notes, "w") as f:
            f.write("not a trace\n")
        link = os.path.join(d, "img-link.sqfs")
        os.symlink(img, link)
        image_bytes = open(img, "rb").read()
        for target, why in ((img, "is one of the images"),
                            (link, "is one of the images"),
                            (out, "names a directory"),
                            (notes, "is not a read trace"),
                            ("/dev/null", "is not a regular file"),
                            ("/proc/sqvenvfs.trace", "cannot create a file")):
            r = t.cli(["-o", f"record={target}", img, mnt])
            lines = r.stderr.strip().splitlines()
            t.check(r.returncode != 0 and len(lines) == 1 and
                    "record=" in lines[0] and why in lines[0],
                    f"record={target} refused ({why}): {r.stderr!r}")
            t.check(not t.is_mounted(mnt), f"record={target}: nothing mounted")
        t.check(open(img, "rb").read() == image_bytes, "the image is intact")
        t.check(open(notes).read() == "not a trace\n", "the file is intact")
        t.check(sorted(os.listdir(d)) == sorted(
            ["src", "img.sqfs", "mnt", "traces", "notes.txt", "img-link.sqfs"]),
            f"no probe file left behind: {sorted(os.listdir(d))}")
    t.finish()


if __name__ == "__main__":
    main()
