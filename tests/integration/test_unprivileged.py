#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""An ordinary user mounts through fusermount3, reads, asks for --stats and
unmounts; the daemon runs as that user. /dev/fuse is widened to 0666 (as
distributions ship it) for the test if it is not already, and restored."""

import os
import pwd
import shutil
import subprocess
import sys

import sqvtest as t

USER = t.TEST_USER


def main():
    t.require_mount_capability()
    if os.geteuid() != 0:
        t.skip("needs root to create the test user and to open /dev/fuse")
    if not shutil.which("fusermount3"):
        t.skip("fusermount3 (package fuse3) is not installed")
    uid = t.ensure_test_user()
    if uid is None:
        t.skip("no useradd to create an unprivileged test user")
    gid = pwd.getpwnam(USER).pw_gid
    old_mode = os.stat("/dev/fuse").st_mode & 0o777
    try:
        os.chmod("/dev/fuse", 0o666)
        with t.tempdir() as d:
            src = os.path.join(d, "src")
            os.makedirs(os.path.join(src, "pkg"))
            with open(os.path.join(src, "pkg", "mod.py"), "w") as f:
                f.write("VALUE = 42\n")
            img = t.mksquashfs(src, os.path.join(d, "user.sqfs"))
            os.chmod(img, 0o644)
            mnt = os.path.join(d, "mnt")
            os.mkdir(mnt)
            # Over a non-empty directory, like the ~/.venv it was made from.
            open(os.path.join(mnt, "old-venv-file"), "w").close()
            os.chown(mnt, uid, gid)
            t.mount([img], mnt, user=USER)
            try:
                t.check(t.is_mounted(mnt), "the user's mount is up")
                new = t.daemon_pids(mnt)
                owners = {os.stat(f"/proc/{p}").st_uid for p in new}
                t.check(owners == {uid}, f"the daemon runs as the user "
                        f"({owners} vs {uid})")
                r = subprocess.run(
                    t.as_user(["cat", os.path.join(mnt, "pkg", "mod.py")], USER),
                    capture_output=True, text=True)
                t.check(r.stdout == "VALUE = 42\n", "the user reads a file")
                t.check(not os.path.exists(os.path.join(mnt, "old-venv-file")),
                        "the mount covers the non-empty directory")
                r = subprocess.run(t.as_user([t.SQVENVFS, "--stats", mnt], USER),
                                   capture_output=True, text=True)
                t.check(r.returncode == 0 and "requests" in r.stdout,
                        "the user reads the counters")
                # FUSE refuses root itself on a mount without allow_other;
                # an administrator still reads a user's counters.
                users = dict(ln.split() for ln in r.stdout.splitlines())
                r = t.cli(["--stats", mnt])
                root = dict(ln.split() for ln in r.stdout.splitlines())
                t.check(r.returncode == 0 and root.get("files_read") ==
                        users["files_read"] != "0",
                        "root reads the user's counters too "
                        f"({r.returncode}, {r.stderr.strip()!r})")
                t.check(not os.access(os.path.join(mnt, "pkg"), os.R_OK),
                        "root itself still may not enter the user's mount")
                line = [l for l in open("/proc/self/mountinfo")
                        if f" {mnt} " in l][0]
                t.check(f"user_id={uid}" in line and "nosuid" in line and
                        "nodev" in line, "the mount is the user's, nosuid, nodev")
            finally:
                t.unmount(mnt, user=USER)
            t.check(not t.is_mounted(mnt), "the user unmounts it")
            t.check(t.wait_daemons_gone(mnt), "the daemon is gone")
    finally:
        os.chmod("/dev/fuse", old_mode)
    t.check(os.stat("/dev/fuse").st_mode & 0o777 == old_mode,
            "/dev/fuse's mode is restored")
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
