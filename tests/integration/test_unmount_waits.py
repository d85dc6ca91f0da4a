#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""sqvenvfs --unmount returns only once the daemon serving the mount has
finished: the -o record= trace (written by the daemon after the unmount) is
there and whole, and the daemon is gone, the moment --unmount returns, as
the record / repack / mount workflow of README.md reads it. A stopped
daemon does not make --unmount hang: it unmounts without waiting."""

import os
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
            trace = os.path.join(d, f"run{run}.trace")
            t.mount([img], mnt, ["-o", f"record={trace}"])
            pids = t.daemon_pids(mnt)
            os.listdir(mnt)
            for n in names:
                with open(os.path.join(mnt, n), "rb") as f:
                    f.read()
            r = t.cli(["--unmount", mnt])
            # Nothing may run between --unmount's return and these looks.
            got = trace_files(trace)
            gone = all(t.pid_gone(p) for p in pids)
            t.check(r.returncode == 0 and r.stderr == "",
                    f"run {run}: --unmount exit 0, silent ({r.returncode}, "
                    f"{r.stderr.strip()!r})")
            t.check(got == names, f"run {run}: the whole trace is there when "
                    f"--unmount returns ({'missing or cut' if got is None else len(got)})")
            t.check(len(pids) == 1 and gone, f"run {run}: the daemon {pids} "
                    "is gone when --unmount returns")
            t.check(not t.is_mounted(mnt), f"run {run}: nothing mounted")
            t.wait_daemons_gone(mnt)

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
