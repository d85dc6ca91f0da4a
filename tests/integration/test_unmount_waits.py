#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""sqvenvfs --unmount returns only once the daemon serving the mount has
finished: the -o record= trace (written by the daemon after the unmount) is
there and whole, and the daemon is gone, the moment --unmount returns, as
the record / repack / mount workflow of README.md reads it. A stopped
daemon does not make --unmount hang: it unmounts without waiting."""

import os
import pwd
import re
import shutil
import signal
import subprocess
import time

import sqvtest as t

RUNS = 5
FILES = 40


def trace_files(path):
    """The file lines of a whole trace, None if it is missing or cut."""
    try:
        return [f[0] for f in t.read_trace(open(path).read())]
    except (FileNotFoundError, ValueError):
        return None


def stopped(pid):
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] not in "Tt":
                return False
    return True


def record_and_unmount(label, d, img, mnt, names, user=None):
    """Mount with record= (as user), read names, --unmount as root: the
    trace is whole and the daemon gone the moment --unmount returns."""
    trace = os.path.join(d, re.sub(r"\W+", "_", label) + ".trace")
    t.mount([img], mnt, ["-o", f"record={trace}"], user=user)
    pids = t.daemon_pids(mnt)
    t.run(t.as_user(["cat", *(os.path.join(mnt, n) for n in names)], user))
    r = t.cli(["--unmount", mnt])
    # Nothing may run between --unmount's return and these looks.
    got = trace_files(trace)
    gone = all(t.pid_gone(p) for p in pids)
    t.check(r.returncode == 0 and r.stderr == "",
            f"{label}: --unmount exit 0, silent ({r.returncode}, "
            f"{r.stderr.strip()!r})")
    t.check(got == names, f"{label}: the whole trace is there when "
            f"--unmount returns ({'missing or cut' if got is None else len(got)})")
    t.check(len(pids) == 1 and gone, f"{label}: the daemon {pids} "
            "is gone when --unmount returns")
    t.check(not t.is_mounted(mnt), f"{label}: nothing mounted")
    t.wait_daemons_gone(mnt)


def root_unmounts_users_mount(d, img, mnt, names):
    if os.geteuid() != 0 or not shutil.which("fusermount3"):
        t.log("not root or no fusermount3: root's --unmount of a user's "
              "mount is not tried")
        return
    uid = t.ensure_test_user()
    if uid is None:
        t.log("no useradd: root's --unmount of a user's mount is not tried")
        return
    user = t.TEST_USER
    old_mode = os.stat("/dev/fuse").st_mode & 0o777
    try:
        os.chmod("/dev/fuse", 0o666)
        os.chown(mnt, uid, pwd.getpwnam(user).pw_gid)
        os.chmod(d, 0o777)  # the user's trace goes here
        for run in range(RUNS):
            record_and_unmount(f"root, user's mount, run {run}", d, img, mnt,
                               names, user=user)
    finally:
        os.chmod("/dev/fuse", old_mode)
        os.chmod(d, 0o755)
        os.chown(mnt, 0, 0)


def main():
    t.require_mount_capability()
    with t.tempdir() as d:
        src = os.path.join(d, "src")
        os.makedirs(os.path.join(src, "pkg"))
        names = [f"pkg/m{i:02d}.py" for i in range(FILES)]
        for i, n in enumerate(names):
            with open(os.path.join(src, n), "wb") as f:
                f.write(f"# module {i}\n".encode() * 200)
        img = t.mksquashfs(src, os.path.join(d, "img.sqfs"))
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)

        for run in range(RUNS):
            record_and_unmount(f"run {run}", d, img, mnt, names)

        # Root's --unmount of an ordinary user's mount (a Slurm Epilog's):
        # FUSE lets only that user in, yet --unmount still waits.
        root_unmounts_users_mount(d, img, mnt, names)

        # A stopped daemon cannot answer: --unmount unmounts without
        # waiting for it, within a bound, and says so in one line.
        t.mount([img], mnt)
        pids = t.daemon_pids(mnt)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        # Every thread stopped first: a request a thread took before it
        # stopped is one the kernel waits out, whoever asked.
        t.wait_for(lambda: all(stopped(p) for p in pids))
        try:
            start = time.monotonic()
            r = subprocess.run([t.SQVENVFS, "--unmount", mnt],
                               capture_output=True, text=True, timeout=60)
            took = time.monotonic() - start
            lines = r.stderr.strip().splitlines()
            t.check(r.returncode == 0 and not t.is_mounted(mnt),
                    f"--unmount of a stopped daemon unmounts ({r.returncode}, "
                    f"{r.stderr.strip()!r}, {took:.1f} s)")
            t.check(len(lines) == 1 and "did not answer" in lines[0],
                    f"and says it did not wait, in one line: {lines}")
        except subprocess.TimeoutExpired:
            t.check(False, "--unmount of a stopped daemon: still waiting "
                    "after 60 s")
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        t.check(t.wait_daemons_gone(mnt), "the daemon exits once continued")
    t.finish()


if __name__ == "__main__":
    main()
