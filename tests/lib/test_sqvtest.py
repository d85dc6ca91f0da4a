#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""The test library's own test: a test's verdict (check, skip, finish,
main, the refusal of python -O), waiting with a deadline, mountinfo with
odd mount point names, and tree dumps that see a change."""

import os
import shutil
import stat
import subprocess
import sys

import sqvtest as t

HERE = os.path.dirname(os.path.abspath(__file__))


def verdict(code, env=None, flags=()):
    """Exit status and output of a small test program using the library."""
    e = dict(os.environ, PYTHONPATH=HERE)
    e.pop("SQVENVFS_TEST_NO_SKIP", None)
    e.update(env or {})
    r = subprocess.run([sys.executable, *flags, "-c",
                        "import sqvtest as t\n" + code],
                       capture_output=True, text=True, env=e)
    return r.returncode, r.stdout + r.stderr


def harness(tmp):
    for code, want, what in (
            ("t.check(True, 'a'); t.finish()", 0, "a passed check passes"),
            ("t.check(0, 'a'); t.check(1, 'b'); t.finish()", 1,
             "one failed check among passing ones fails"),
            ("t.skip('no x')", 77, "a skip exits 77"),
            ("t.main(lambda tmp, c: t.check(False, 'x'))", 1,
             "main: a failed check fails"),
            ("t.main(lambda tmp, c: 1 / 0)", 1, "main: an exception fails"),
            ("t.main(lambda tmp, c: c.append(lambda: 1 / 0))", 1,
             "main: a failed cleanup fails"),
            ("t.main(lambda tmp, c: t.skip('no x'))", 77,
             "main: a skip exits 77"),
            ("t.main(lambda tmp, c: (t.check(False, 'x'), t.skip('y')))", 1,
             "main: a skip after a failed check fails")):
        rc, out = verdict(code)
        t.check(rc == want, f"{what} (exit {rc})", out)
    rc, out = verdict("t.skip('no x')", {"SQVENVFS_TEST_NO_SKIP": "1"})
    t.check(rc == 1 and "no x" in out, "SQVENVFS_TEST_NO_SKIP=1: a skip "
            "fails, naming why", out)
    rc, out = verdict("t.main(lambda tmp, c: c.append(lambda: open("
                      f"{tmp!r} + '/cleaned', 'w').close()) or t.skip('y'))")
    t.check(rc == 77 and os.path.exists(os.path.join(tmp, "cleaned")),
            "main: cleanups run after a skip", out)
    for flags, env in ((["-O"], {}), ([], {"PYTHONOPTIMIZE": "1"})):
        rc, out = verdict("t.finish()", env, flags)
        t.check(rc == 1 and "PYTHONOPTIMIZE" in out,
                f"refuses to run under {flags or env}", out)


def waiting():
    t.check(t.wait_for(lambda: False, timeout=0.2) is False,
            "wait_for: false after its deadline")
    n = []
    t.check(t.wait_for(lambda: n.append(1) or len(n) >= 3) is True,
            "wait_for: true as soon as the condition holds")
    try:
        t.wait_until(lambda: None, "nothing", timeout=0.2)
        raised = ""
    except RuntimeError as e:
        raised = str(e)
    t.check("waiting for nothing" in raised,
            "wait_until: raises naming what it waited for", raised)


def mountinfo(tmp):
    if os.geteuid() != 0:
        t.skip("mounting a tmpfs at odd names needs root")
    names = ["with space", "tab\there", "new\nline", "back\\slash",
             "ünïcödé-名前"]
    for name in names:
        mnt = os.path.join(tmp, "m", name)
        os.makedirs(mnt)
        subprocess.run(["mount", "-t", "tmpfs", "sqvtest-src", mnt],
                       check=True)
        entries = t.mounts_at(mnt)
        t.check(t.is_mounted(mnt) and len(entries) == 1 and
                entries[0].fstype == "tmpfs" and
                entries[0].source == "sqvtest-src",
                f"mountinfo: a mount at {name!r}", entries)
    under = t.mounts_under(os.path.join(tmp, "m"))
    t.check(sorted(under) == sorted(os.path.join(tmp, "m", n) for n in names),
            "mounts_under lists them all", under)
    with t.tempdir() as d:
        os.mkdir(os.path.join(d, "x y"))
        subprocess.run(["mount", "-t", "tmpfs", "none",
                        os.path.join(d, "x y")], check=True)
    t.check(not t.is_mounted(os.path.join(d, "x y")) and
            not os.path.exists(d), "tempdir removes its mounts and itself")
    for mnt in reversed(under):
        subprocess.run(["umount", mnt], check=True)
    t.check(t.mount_type(os.path.join(tmp, "m", names[0])) is None,
            "mount_type: None once unmounted")


def trees(tmp):
    src = os.path.join(tmp, "src")
    t.random_tree(src, seed=1, nfiles=60, ndirs=8, max_depth=3)
    copy = os.path.join(tmp, "copy")
    shutil.copytree(src, copy, symlinks=True)
    a, b = t.dump_tree(src, with_root=True), t.dump_tree(copy, with_root=True)
    t.check("." in a and len(a) > 60, "dump_tree sees the tree and its root")
    # copytree keeps neither hard links, nor the mtimes of symlinks (made
    # now: comparing them would depend on the clock), nor the root's mtime
    same = {p for p in a if a[p][7] in (None, 1) and p != "." and
            not stat.S_ISLNK(a[p][0])}
    t.check(not t.diff_trees({p: a[p] for p in same},
                             {p: b[p] for p in same}),
            "a copy dumps the same")
    f = next(p for p in sorted(same) if a[p][6] and len(str(a[p][6])) == 64)
    with open(os.path.join(copy, f), "ab") as fh:
        fh.write(b"!")
    os.utime(os.path.join(copy, f), (0, a[f][5]))
    d = t.diff_trees(a, t.dump_tree(copy, with_root=True))
    t.check(any(line.startswith(repr(f)) for line in d),
            "a one-byte change shows in the diff", d[:3])


def traces():
    whole = ("sqvenvfs-trace 1\n# a comment\n"
             "a\\x09b\\x0ac\\x5cd\t10\t0+4,8+2\nplain.py\t3\t0+3\nend 2\n")
    got = t.read_trace(whole)
    t.check(got == [("a\tb\nc\\d", 10, [(0, 4), (8, 2)]),
                    ("plain.py", 3, [(0, 3)])],
            "read_trace: names unescaped, sizes and ranges in order", got)
    for bad, why in [(whole[:-1], "no final newline"),
                     (whole.replace("end 2", "end 3"), "end miscounts"),
                     (whole.replace("end 2\n", ""), "no end line"),
                     (whole.replace("trace 1", "trace 9"), "another format"),
                     ("", "empty")]:
        try:
            t.read_trace(bad)
            t.check(False, f"read_trace refuses a trace with {why}")
        except ValueError:
            pass


def main():
    with t.tempdir() as tmp:
        harness(tmp)
        waiting()
        trees(tmp)
        traces()
        mountinfo(tmp)
    t.finish()


if __name__ == "__main__":
    main()
