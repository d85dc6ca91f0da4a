#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""The daemon's options as libfuse and mount(8) spell them: options after
the positional arguments (mount.fuse3's order), what mount(8) and
mount.fuse3 pass (rw, dev, suid, _netdev, x-systemd.*, ...) accepted while
the mount stays read-only, nosuid and nodev; libfuse's standard options
(fsname, subtype, max_read, noexec, noatime, auto_unmount) honoured; a
stack given as one comma-separated source; each mistake refused in one
line, also an ordinary user's refusal that fusermount3 explains."""

import contextlib
import errno
import os
import subprocess
import sys

import sqvtest as t

NOBODY = 65534


def mountinfo(mnt):
    """(per-mount options, fs type, source, super options) of mnt."""
    m = t.mounts_at(mnt)
    return (m[-1].options, m[-1].fstype, m[-1].source,
            m[-1].super_options) if m else None


def memory_bytes():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


@contextlib.contextmanager
def fuse_device_open_to_all():
    """/dev/fuse at 0666, as distributions ship it, restored afterwards."""
    old = os.stat("/dev/fuse").st_mode & 0o777
    os.chmod("/dev/fuse", 0o666)
    try:
        yield
    finally:
        os.chmod("/dev/fuse", old)


def unmount_any(mnt):
    subprocess.run(["umount", mnt], capture_output=True)
    t.wait_daemons_gone(mnt)


def main():
    t.require_mount_capability()
    if os.geteuid() != 0:
        t.skip("needs root: mounts with libfuse's kernel flags and a test user")
    with t.tempdir() as d:
        os.chmod(d, 0o755)
        srcs = []
        for name in ("base", "top"):
            src = os.path.join(d, name)
            os.makedirs(os.path.join(src, "pkg"))
            with open(os.path.join(src, "pkg", f"{name}.py"), "w") as f:
                f.write(f"NAME = {name!r}\n" * 2000)
            srcs.append(src)
        base = t.mksquashfs(srcs[0], os.path.join(d, "base.sqfs"))
        top = t.mksquashfs(srcs[1], os.path.join(d, "top.sqfs"))
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)

        # ---- refusals: one line each, nothing left behind ----
        t.refuse("-o cache_size without a value", [base, mnt, "-o", "cache_size"],
                 ["cache_size", "needs a value"], mnt=mnt)
        t.refuse("-o threads without a value", ["-o", "threads", base, mnt],
                 ["threads", "needs a value"], mnt=mnt)
        t.refuse("a flag given a value", ["-o", "auto_unmount=1", base, mnt],
                 ["auto_unmount=1", "takes no value"], mnt=mnt)
        mem = memory_bytes()
        t.check(mem is not None, "MemTotal is in /proc/meminfo")
        too_big = f"{(mem >> 30) * 2 + 2}G"
        t.refuse("cache_size above the machine's memory",
                 ["-o", f"cache_size={too_big}", base, mnt],
                 [f"cache_size={too_big}", "memory"], mnt=mnt)
        t.refuse("blkdev", ["-o", "blkdev", base, mnt],
                 ["blkdev", "not block devices"], mnt=mnt)
        t.refuse("remount", ["-o", "remount", base, mnt], ["remount"], mnt=mnt)
        t.refuse("loop", ["-o", "loop", base, mnt], ["loop", "not needed"],
                 mnt=mnt)
        t.refuse("an unknown option", ["-o", "ro,frobnicate", base, mnt],
                 ["frobnicate", "unknown option"], mnt=mnt)
        t.refuse("an empty name in a stack", [f"{base},,{top}", mnt],
                 ["empty image name"], mnt=mnt)
        t.refuse("a missing image in a stack",
                 [f"{base},{os.path.join(d, 'nope.sqfs')}", mnt],
                 ["nope.sqfs", "does not exist"], mnt=mnt)

        # ---- what mount(8) and mount.fuse3 send: accepted, stays safe ----
        passed = ("rw,dev,suid,exec,noatime,_netdev,nofail,"
                  "x-systemd.automount,x-systemd.idle-timeout=60,defaults,"
                  "auto,user,users,nouser,owner,group,comment=test,nonempty,"
                  "default_permissions,threads=2")
        # mount.fuse3's order: source, mount point, then -o.
        r = t.cli([base, mnt, "-o", passed])
        t.check(r.returncode == 0 and r.stderr == "",
                f"mount(8)'s options are accepted: {r.stderr.strip()!r}")
        info = mountinfo(mnt)
        t.check(info is not None, "mounted with mount(8)'s options")
        if info:
            opts, typ, src, sopts = info
            t.check({"ro", "nosuid", "nodev", "noatime"} <= opts,
                    f"rw, suid and dev leave it ro,nosuid,nodev; noatime "
                    f"is honoured ({sorted(opts)})")
            t.check("noexec" not in opts, "exec: no noexec")
            t.check(typ == "fuse.sqvenvfs" and src == base,
                    f"type fuse.sqvenvfs, source the image ({typ} {src})")
            try:
                open(os.path.join(mnt, "pkg", "new.py"), "w").close()
                t.check(False, "a write is refused")
            except OSError as e:
                t.check(e.errno == errno.EROFS, f"a write gets EROFS ({e})")
            t.unmount(mnt)
        t.check(not t.is_mounted(mnt) and t.wait_daemons_gone(mnt),
                "unmounted, daemon gone")

        # ---- libfuse's own options ----
        r = t.cli(["-o", "noexec,fsname=envs\\,torch,subtype=pyenv,"
                   "max_read=65536,allow_other", base, mnt])
        t.check(r.returncode == 0, f"libfuse's options mount ({r.stderr.strip()})")
        info = mountinfo(mnt)
        t.check(info is not None, "mounted with libfuse's options")
        if info:
            opts, typ, src, sopts = info
            t.check("noexec" in opts, "noexec is honoured")
            t.check(src == "envs,torch", f"fsname= names the source, with an "
                    f"escaped comma ({src!r})")
            t.check(typ == "fuse.pyenv", f"subtype= names the type ({typ})")
            t.check("max_read=65536" in sopts and "allow_other" in sopts,
                    f"max_read= and allow_other reach the kernel ({sorted(sopts)})")
            data = open(os.path.join(mnt, "pkg", "base.py")).read()
            t.check(data == "NAME = 'base'\n" * 2000,
                    "reads are right with max_read=65536")
            unmount_any(mnt)
        t.check(not t.is_mounted(mnt), "umount(8) unmounts it")

        # ---- a stack as one source, bottom first ----
        r = t.cli([f"{base},{top}", mnt])
        t.check(r.returncode == 0, f"a comma-separated stack mounts "
                f"({r.stderr.strip()})")
        if t.is_mounted(mnt):
            names = sorted(os.listdir(os.path.join(mnt, "pkg")))
            t.check(names == ["base.py", "top.py"],
                    f"both layers are there ({names})")
            info = mountinfo(mnt)
            t.check(info and info[2] == f"{base},{top}",
                    f"the source is the stack ({info and info[2]})")
            t.unmount(mnt)

        # ---- auto_unmount: kill -9 leaves no stale mount ----
        # The earlier daemons on mnt must be gone first, or the kill below
        # could hit one still exiting (slow under ASan's leak check) rather
        # than the auto_unmount one.
        t.check(t.wait_daemons_gone(mnt), "the earlier daemons have exited")
        r = t.cli(["-o", "auto_unmount", base, mnt])
        t.check(r.returncode == 0, f"mounts with auto_unmount ({r.stderr.strip()})")
        pid = t.kill_daemon_of(mnt)
        t.check(pid is not None, "auto_unmount: found the daemon to kill")
        t.check(t.wait_unmounted(mnt),
                "auto_unmount: after kill -9 the mount is gone")
        try:
            os.listdir(mnt)
            fine = True
        except OSError:
            fine = False
        t.check(fine, "auto_unmount: the mount point answers (no ENOTCONN)")
        r = t.cli([base, mnt])
        t.check(r.returncode == 0, f"auto_unmount: mounts again at once "
                f"({r.stderr.strip()})")
        if t.is_mounted(mnt):
            t.unmount(mnt)

        # ---- an ordinary user's refusal: one line, not fusermount3's too ----
        with fuse_device_open_to_all():
            t.refuse("an ordinary user on a mount point that is not theirs",
                     [base, mnt], ["mnt", "no write access"], user=NOBODY,
                     mnt=mnt)
            own = os.path.join(d, "own")
            os.mkdir(own)
            os.chown(own, NOBODY, NOBODY)
            conf = open("/etc/fuse.conf").read() if os.path.exists(
                "/etc/fuse.conf") else ""
            if not any(l.strip() == "user_allow_other" for l in conf.splitlines()):
                t.refuse("allow_other for an ordinary user",
                         ["-o", "allow_other", base, own],
                         ["own", "user_allow_other"], user=NOBODY, mnt=own)
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
