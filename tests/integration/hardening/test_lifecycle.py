#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Lifecycle faults beyond test_errors.py's kill -9 and SIGTERM/SIGINT:
SIGHUP and SIGPIPE are ignored (the mount keeps serving); a lazy unmount
under the daemon ends it cleanly (exit 0) and the mount point can then be
removed; a mount point cannot be removed while mounted and the mount keeps
serving; --unmount works after the mount point's parent was renamed; too
few file descriptors or too little memory give one clear line and exit 1,
never a crash or a half mount."""

import errno
import os
import signal
import subprocess
import sys

import sqvtest as t

SANITIZED = "ASAN_OPTIONS" in os.environ or "UBSAN_OPTIONS" in os.environ


def reads(mnt):
    try:
        return open(os.path.join(mnt, "file0")).read() == "content 0\n"
    except OSError:
        return False


def signal_masks(pid):
    """{"SigIgn": set of signals, "SigCgt": ..., "ShdPnd": ...} of pid, as
    /proc/PID/status lists them."""
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("SigIgn", "SigCgt", "ShdPnd"):
            mask = int(v, 16)
            out[k] = {sig for sig in signal.Signals if mask >> (sig - 1) & 1}
    return out


def wait_exit(proc, timeout=t.DEADLINE):
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def main():
    t.require_mount_capability()
    with t.tempdir() as d:
        src = os.path.join(d, "src")
        os.mkdir(src)
        for i in range(50):
            with open(os.path.join(src, f"file{i}"), "w") as f:
                f.write(f"content {i}\n")
        img = t.mksquashfs(src, os.path.join(d, "img.sqfs"))
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)

        # ---- SIGHUP, SIGPIPE ----
        with t.foreground([img], mnt) as fg:
            t.check(fg.mounted(), "mounted")
            # Deterministic, not "sleep and see": SIGHUP must be ignored
            # (the kernel then drops it when it is sent); SIGPIPE is
            # ignored or caught (libfuse catches it with a handler that
            # does nothing). A caught signal counts as handled once it is
            # no longer pending; then the daemon must still serve.
            m = signal_masks(fg.proc.pid)
            ign = sorted(s.name for s in m["SigIgn"])
            t.check(signal.SIGHUP in m["SigIgn"], f"SIGHUP is ignored ({ign})")
            t.check(signal.SIGPIPE in m["SigIgn"] | m["SigCgt"],
                    "SIGPIPE is ignored or caught")
            for sig in (signal.SIGHUP, signal.SIGPIPE, signal.SIGHUP):
                fg.proc.send_signal(sig)
                t.check(t.wait_for(lambda: sig not in
                                   signal_masks(fg.proc.pid)["ShdPnd"]),
                        f"{sig.name}: delivered (no longer pending)")
                t.check(fg.alive() and reads(mnt),
                        f"{sig.name}: the daemon lives on, the mount keeps "
                        "serving")
            # ---- the mount point cannot be removed while mounted ----
            try:
                os.rmdir(mnt)
                removed = "removed"
            except OSError as e:
                removed = errno.errorcode.get(e.errno)
            t.check(removed == "EBUSY",
                    f"rmdir of the mount point: EBUSY ({removed})")
            t.check(reads(mnt), "after the rmdir attempt: still serving")
            # ---- a lazy unmount under the daemon ----
            subprocess.run(["umount", "-l", mnt], check=True)
            rc = wait_exit(fg.proc)
            t.check(rc == 0, f"lazy unmount: the daemon exits 0 by itself ({rc})")
            os.rmdir(mnt)
            t.check(not os.path.exists(mnt),
                    "after the lazy unmount: the mount point can be removed")
            os.mkdir(mnt)
            t.check(fg.stderr().strip() == "",
                    f"nothing logged ({fg.stderr().strip()!r})")

        # ---- the parent of the mount point renamed while mounted ----
        parent = os.path.join(d, "p1")
        os.makedirs(os.path.join(parent, "m"))
        t.mount([img], os.path.join(parent, "m"))
        moved = os.path.join(d, "p2")
        os.rename(parent, moved)
        m2 = os.path.join(moved, "m")
        t.check(reads(m2), "parent renamed: the mount serves at its new path")
        r = t.cli(["--unmount", m2])
        t.check(r.returncode == 0, f"--unmount at the new path ({r.stderr.strip()})")
        t.check(t.wait_unmounted(m2), "unmounted")

        # ---- too few file descriptors ----
        layers = []
        for i in range(12):
            ld = os.path.join(d, f"layer{i}")
            os.mkdir(ld)
            with open(os.path.join(ld, f"l{i}"), "w") as f:
                f.write("x")
            layers.append(t.mksquashfs(ld, os.path.join(d, f"layer{i}.sqfs")))
        # 0-2 are the standard streams; the rest is too few for 12 images.
        t.check_error("RLIMIT_NOFILE=10", subprocess.run(
            ["prlimit", "--nofile=10", t.SQVENVFS, *layers, mnt],
            capture_output=True, text=True), "open files", status=1)
        t.check(not t.is_mounted(mnt), "RLIMIT_NOFILE: nothing mounted")

        # ---- too little memory (not under a sanitizer, which needs a
        # huge address space) ----
        if not SANITIZED:
            wide = os.path.join(d, "wide")
            os.mkdir(wide)
            fd = os.open(wide, os.O_RDONLY | os.O_DIRECTORY)
            for i in range(200000):
                os.symlink("target-of-some-length", f"entry-{i:07d}", dir_fd=fd)
            os.close(fd)
            wimg = t.mksquashfs(wide, os.path.join(d, "wide.sqfs"), comp="lz4")
            for limit_mib in (24,):
                r = subprocess.run(
                    ["prlimit", f"--as={limit_mib << 20}", t.SQVENVFS, wimg,
                     mnt], capture_output=True, text=True)
                if r.returncode == 0:
                    t.cli(["--unmount", mnt])
                t.check_error(f"RLIMIT_AS={limit_mib} MiB", r, [], status=1)
                t.check(not t.is_mounted(mnt),
                        f"RLIMIT_AS={limit_mib} MiB: nothing mounted")
        else:
            print("note: the out-of-memory part runs in the plain build only")
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
