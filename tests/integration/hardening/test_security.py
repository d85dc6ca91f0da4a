#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""What a mount grants: a setuid-root program and a device node stored in
an image grant nothing (the mount is ro, nosuid, nodev, whatever the
mounting user or the options say), and without -o allow_other no other
user can even look into the mount (root's own mount included)."""

import os
import shutil
import subprocess
import sys

import sqvtest as t

NOBODY = 65534


def as_nobody(*cmd):
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups", *cmd],
                          capture_output=True, text=True)


def mount_opts(mnt):
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        if f[4] == mnt:
            return set(f[5].split(","))
    return set()


def main():
    t.require_mount_capability()
    if os.geteuid() != 0:
        t.skip("needs root to store a setuid-root program and a device node")
    with t.tempdir() as d:
        src = os.path.join(d, "src")
        os.mkdir(src)
        shutil.copy("/usr/bin/id", os.path.join(src, "id-setuid"))
        os.chown(os.path.join(src, "id-setuid"), 0, 0)
        os.chmod(os.path.join(src, "id-setuid"), 0o4755)
        os.mknod(os.path.join(src, "null"), 0o666 | 0o020000, os.makedev(1, 3))
        img = t.mksquashfs(src, os.path.join(d, "img.sqfs"))
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)
        os.chmod(mnt, 0o755)
        # Even asked for suid/dev, the mount must not give them.
        for opts in ([], ["-o", "allow_other"]):
            with t.mounted([img], mnt, opts):
                mo = mount_opts(mnt)
                t.check({"ro", "nosuid", "nodev"} <= mo,
                        f"{opts}: mounted ro,nosuid,nodev ({sorted(mo)})")
                st = os.stat(os.path.join(mnt, "id-setuid"))
                t.check(st.st_mode & 0o4000 and st.st_uid == 0,
                        f"{opts}: the setuid bit is shown as stored")
                if opts:
                    r = as_nobody(os.path.join(mnt, "id-setuid"), "-u")
                    t.check(r.returncode == 0 and r.stdout.strip() == str(NOBODY),
                            f"{opts}: a setuid-root program runs as the caller "
                            f"({r.stdout.strip()!r} {r.stderr.strip()!r})")
                try:
                    with open(os.path.join(mnt, "null"), "rb"):
                        pass
                    opened = "opened"
                except OSError as e:
                    opened = e.strerror
                t.check(opened == "Permission denied",
                        f"{opts}: a stored device node cannot be opened ({opened})")
                r = as_nobody("ls", mnt)
                if opts:
                    t.check(r.returncode == 0,
                            "allow_other: another user can list the mount")
                else:
                    t.check(r.returncode != 0 and
                            "Permission denied" in r.stderr,
                            f"default: another user cannot see into root's "
                            f"mount ({r.stderr.strip()!r})")
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
