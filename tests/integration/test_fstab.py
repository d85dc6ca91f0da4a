#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""mount(8) and fstab, for real: `mount -t fuse.sqvenvfs IMG DIR` and
`umount DIR` as root; `mount -a -T FILE` on an fstab written here, with a
one-image line and a stack in one source field, twice without stacking
mounts; and an ordinary user mounting and unmounting a `user` line of
/etc/fstab, written as the guides write it (`user,exec`), whose scripts run.

mount(8) drops PATH from the environment, so mount.fuse3's /bin/sh finds
`sqvenvfs` only in the standard directories. The test runs in a private
mount namespace where a tmpfs on /usr/local/sbin (the first of them) holds
a link to the built daemon, /etc/fstab is the test's file and /run/mount
(libmount's utab) is private: nothing of the machine's is touched."""

import os
import shutil
import subprocess
import sys

import sqvtest as t

NOBODY = 65534


def mounts_at(path):
    """(options, fs type, source, super options joined by commas) of each
    mount at path."""
    return [(m.options, m.fstype, m.source, ",".join(sorted(m.super_options)))
            for m in t.mounts_at(path)]


def sh(cmd, user=None):
    return subprocess.run(t.as_user(cmd, user, "--clear-groups"),
                          capture_output=True, text=True)


def unmounted(mnt, label):
    t.check(not mounts_at(mnt), f"{label}: nothing mounted at {mnt}")
    t.check(t.wait_daemons_gone(mnt), f"{label}: the daemon is gone")


def inner():
    sqvenvfs = os.path.realpath(t.SQVENVFS)
    for cmd in (["mount", "--make-rprivate", "/"],
                ["mount", "-t", "tmpfs", "sqvtest", "/usr/local/sbin"],
                ["mount", "-t", "tmpfs", "sqvtest", "/run/mount"]):
        os.makedirs(cmd[-1], exist_ok=True)
        subprocess.run(cmd, check=True)
    os.symlink(sqvenvfs, "/usr/local/sbin/sqvenvfs")
    old_mode = os.stat("/dev/fuse").st_mode & 0o777
    with t.tempdir() as d:
        os.chmod(d, 0o755)
        srcs = {}
        for name in ("base", "top"):
            src = os.path.join(d, name)
            os.makedirs(os.path.join(src, "pkg"))
            with open(os.path.join(src, "pkg", f"{name}.py"), "w") as f:
                f.write(f"NAME = {name!r}\n")
            # A venv's console script: the `user` line must let it run.
            os.makedirs(os.path.join(src, "bin"))
            with open(os.path.join(src, "bin", "hello"), "w") as f:
                f.write("#!/bin/sh\necho hello\n")
            os.chmod(os.path.join(src, "bin", "hello"), 0o755)
            srcs[name] = t.mksquashfs(src, os.path.join(d, f"{name}.sqfs"))
            os.chmod(srcs[name], 0o644)
        base, top = srcs["base"], srcs["top"]
        mnt = {n: os.path.join(d, n) for n in ("m0", "m1", "m2", "m3")}
        for m in mnt.values():
            os.mkdir(m)

        # ---- mount -t fuse.sqvenvfs, umount ----
        r = sh(["mount", "-t", "fuse.sqvenvfs", base, mnt["m0"]])
        t.check(r.returncode == 0, f"mount -t fuse.sqvenvfs IMG DIR "
                f"(mount(8) passes rw) ({r.stderr.strip()})")
        m = mounts_at(mnt["m0"])
        t.check(len(m) == 1 and m[0][1] == "fuse.sqvenvfs" and
                m[0][2] == base and "ro" in m[0][0],
                f"mounted read-only as fuse.sqvenvfs from the image ({m})")
        t.check(os.path.exists(os.path.join(mnt["m0"], "pkg", "base.py")),
                "the image's files are there")
        r = sh(["umount", mnt["m0"]])
        t.check(r.returncode == 0, f"umount DIR ({r.stderr.strip()})")
        unmounted(mnt["m0"], "umount")

        r = sh(["mount", "-t", "fuse.sqvenvfs", f"{base},{top}", mnt["m0"],
                "-o", "noatime"])
        t.check(r.returncode == 0, f"mount -t with a stack as the source "
                f"({r.stderr.strip()})")
        names = sorted(os.listdir(os.path.join(mnt["m0"], "pkg"))) \
            if mounts_at(mnt["m0"]) else []
        t.check(names == ["base.py", "top.py"], f"the stack is mounted ({names})")
        sh(["umount", mnt["m0"]])
        unmounted(mnt["m0"], "umount of the stack")

        missing = os.path.join(d, "missing.sqfs")
        r = sh(["mount", "-t", "fuse.sqvenvfs", missing, mnt["m0"]])
        t.check(r.returncode != 0 and "missing.sqfs: image does not exist"
                in r.stderr, f"a missing image fails mount(8) with the "
                f"daemon's reason ({r.stderr.strip()!r})")
        unmounted(mnt["m0"], "refused mount")

        # ---- an fstab, mount -a -T ----
        fstab = os.path.join(d, "fstab")
        with open(fstab, "w") as f:
            f.write("# written by test_fstab.py\n"
                    f"{base}  {mnt['m1']}  fuse.sqvenvfs  "
                    "ro,nofail,x-systemd.automount  0 0\n"
                    f"{base},{top}  {mnt['m2']}  fuse.sqvenvfs  "
                    "nofail,noatime,_netdev  0 0\n"
                    f"{base}  {mnt['m3']}  fuse.sqvenvfs  user,exec,noauto  0 0\n")
        for attempt in (1, 2):
            r = sh(["mount", "-a", "-T", fstab])
            t.check(r.returncode == 0, f"mount -a -T FILE, run {attempt} "
                    f"({r.stderr.strip()})")
        m1, m2 = mounts_at(mnt["m1"]), mounts_at(mnt["m2"])
        t.check(len(m1) == 1 and len(m2) == 1,
                f"each line mounted once after two runs of mount -a "
                f"({len(m1)}, {len(m2)})")
        t.check(m2 and m2[0][2] == f"{base},{top}" and "noatime" in m2[0][0],
                f"the stack line: its source as written, noatime ({m2})")
        t.check(not mounts_at(mnt["m3"]), "the noauto line is left alone")
        if m2:
            names = sorted(os.listdir(os.path.join(mnt["m2"], "pkg")))
            t.check(names == ["base.py", "top.py"],
                    f"the stack line serves both images ({names})")
        for k in ("m1", "m2"):
            r = sh(["umount", mnt[k]])
            t.check(r.returncode == 0, f"umount {k} ({r.stderr.strip()})")
            unmounted(mnt[k], f"umount {k}")

        # ---- an ordinary user and a `user` line of /etc/fstab ----
        if not shutil.which("fusermount3"):
            t.skip("fusermount3 (package fuse3) is not installed")
        subprocess.run(["mount", "--bind", fstab, "/etc/fstab"], check=True)
        os.chown(mnt["m3"], NOBODY, NOBODY)
        try:
            os.chmod("/dev/fuse", 0o666)
            r = sh(["mount", mnt["m3"]], user=NOBODY)
            t.check(r.returncode == 0, f"an ordinary user mounts a `user` "
                    f"fstab line ({r.stderr.strip()})")
            m3 = mounts_at(mnt["m3"])
            t.check(len(m3) == 1 and f"user_id={NOBODY}" in m3[0][3] and
                    {"ro", "nosuid", "nodev"} <= m3[0][0],
                    f"the mount is the user's, ro, nosuid, nodev ({m3})")
            owners = {os.stat(f"/proc/{p}").st_uid
                      for p in t.daemon_pids(mnt["m3"])}
            t.check(owners == {NOBODY}, f"the daemon runs as the user ({owners})")
            # As README and docs/guide-workstation.md write the line: `user`
            # implies noexec, and the `exec` after it undoes that.
            t.check(m3 and "noexec" not in m3[0][0], f"not noexec ({m3})")
            r = sh([os.path.join(mnt["m3"], "bin", "hello")], user=NOBODY)
            t.check(r.returncode == 0 and r.stdout == "hello\n",
                    f"the image's script runs ({r.returncode}, {r.stderr.strip()})")
            r = sh(["umount", mnt["m3"]], user=NOBODY)
            t.check(r.returncode == 0, f"the user unmounts it with umount "
                    f"({r.stderr.strip()})")
            unmounted(mnt["m3"], "the user's umount")
        finally:
            os.chmod("/dev/fuse", old_mode)
    t.finish()


def main():
    if "--inner" in sys.argv:
        return inner()
    t.require_mount_capability()
    if os.geteuid() != 0:
        t.skip("needs root: a private mount namespace and mount -a")
    for prog in ("unshare", "mount", "umount", "mount.fuse3"):
        if not shutil.which(prog):
            t.skip(f"{prog} is not installed (util-linux, fuse3)")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private",
                        sys.executable, os.path.abspath(__file__), "--inner"])
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
