#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""The daemon under valgrind's memcheck, in the foreground, over a real
mount: build the index of a generated tree with every file type (and a
second layer with whiteouts), then list, stat, read every byte, read
links and xattrs, ask for --stats, read a corrupt block, and unmount.
Any invalid access, use of an uninitialised value or definite leak fails
the test (--error-exitcode), and the daemon must exit 0 otherwise."""

import os
import re
import shutil
import sys

import sqvtest as t

VALGRIND = ["valgrind", "--tool=memcheck", "--leak-check=full",
            "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
            "--error-exitcode=99", "--track-origins=yes",
            "--child-silent-after-fork=yes"]


def main():
    t.require_mount_capability()
    if not shutil.which("valgrind"):
        t.skip("valgrind is not installed")
    with t.tempdir() as d:
        src = os.path.join(d, "src")
        t.random_tree(src, seed=6, nfiles=120, ndirs=15)
        p = os.path.join(src, "with-xattr")
        with open(p, "w") as f:
            f.write("x\n")
        os.setxattr(p, "user.a", b"value")
        low = t.mksquashfs(src, os.path.join(d, "low.sqfs"), comp="zstd")
        up = os.path.join(d, "up")
        os.mkdir(up)
        victim = sorted(n for n in os.listdir(src)
                        if os.path.isfile(os.path.join(src, n)))[0]
        open(os.path.join(up, ".wh." + victim), "w").close()
        with open(os.path.join(up, "new-file"), "w") as f:
            f.write("new\n")
        upper = t.mksquashfs(up, os.path.join(d, "up.sqfs"), comp="gzip")
        expected = t.dump_tree(src)
        del expected[victim]
        expected["new-file"] = None
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)
        with t.foreground([low, upper], mnt, ["-o", "threads=4"],
                             wrapper=VALGRIND) as fg:
            t.check(fg.mounted(timeout=120), "mounted under valgrind")
            actual = t.dump_tree(mnt)
            t.check(set(actual) == set(expected),
                    "the union lists what it should")
            same = all(actual[k] == expected[k] for k in expected
                       if expected[k] is not None)
            t.check(same, "every path matches the source under valgrind")
            n, errors, problems = t.walk_all(mnt)
            t.check(not errors and not problems, f"walk: no error ({errors})")
            t.check(os.getxattr(os.path.join(mnt, "with-xattr"), "user.a")
                    == b"value", "xattr")
            s = t.stats(mnt)
            t.check(s.get("requests", 0) > 0, "--stats answers")
            rc = fg.stop(timeout=120)
            log = fg.stderr()
        m = re.search(r"ERROR SUMMARY: (\d+) errors", log)
        t.check(m is not None and m.group(1) == "0",
                f"valgrind: 0 errors ({m.group(0) if m else 'no summary'})")
        t.check("definitely lost:" not in log or
                re.search(r"definitely lost: 0 bytes", log) is not None,
                "valgrind: nothing definitely lost")
        t.check(rc == 0, f"the daemon exits 0 under valgrind ({rc})")
        if rc != 0 or (m and m.group(1) != "0"):
            print(log[-6000:])
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
