#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""The installed systemd user unit under a real `systemd --user`.

PID 1 here need not be systemd: a user manager runs in a private mount
namespace with /run/systemd/system present, in a cgroup the user owns
(user.slice/user-UID.slice/user@UID.service, in every hierarchy systemd
uses), with XDG_RUNTIME_DIR set; `systemctl --user` reaches it over
$XDG_RUNTIME_DIR/systemd/private without D-Bus. The unit is the one
`meson install` installs, its daemon path under the install root, and
NAME.conf is written as docs/guide-workstation.md says. Checks:

  start     `systemctl --user start` returns only once the mount is usable
  status    active, with the daemon's status "serving"
  kill -9   the daemon is restarted and the stale mount cleared first
  stop      unmounts
  enable    the next manager start mounts it without being asked
  failed    a missing image, and a missing NAME.conf, end "failed", not in
            restarts every 2 s for ever

Exit 77 only when the machine cannot run a user manager at all (not root,
systemd missing); SQVENVFS_TEST_NO_SKIP=1 turns that into a failure.
"""
import argparse
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback

from deploytest import (FAILED, check, daemons, finish, installed, log, meson_install,
                        mountinfo, run, skip, test_user, wait_for)

TEST_USER = "sqvunit"
SYSTEMD = "/lib/systemd/systemd"


def cgroup_dirs(uid):
    """Where user@UID.service goes in each hierarchy systemd uses here."""
    leaf = f"user.slice/user-{uid}.slice/user@{uid}.service"
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return [os.path.join("/sys/fs/cgroup", leaf)]  # unified only
    roots = [r for r in ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified")
             if os.path.isdir(r)]
    return [os.path.join(r, leaf) for r in roots]


class Manager:
    """One `systemd --user` of the test user, in its own mount namespace."""

    def __init__(self, top, pw):
        self.top, self.pw = top, pw
        self.home = os.path.join(top, "home")
        self.runtime = os.path.join(top, "run")
        self.log = os.path.join(top, "manager.log")
        self.proc = None
        self.fuse = None  # the FUSE device node the namespace sees as /dev/fuse

    def start(self):
        pw = self.pw
        cgs = cgroup_dirs(pw.pw_uid)
        for d in cgs:
            os.makedirs(d, exist_ok=True)
            for dirpath, dirs, files in os.walk(d):
                for n in [dirpath] + [os.path.join(dirpath, f) for f in files]:
                    os.chown(n, pw.pw_uid, pw.pw_gid)
        join = " && ".join(f"echo $$ > {d}/cgroup.procs" for d in cgs)
        script = (f"mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system && "
                  f"mount --bind {self.fuse} /dev/fuse && "
                  f"{join} && exec setpriv --reuid={pw.pw_uid} --regid={pw.pw_gid} "
                  f"--init-groups env -i HOME={self.home} XDG_RUNTIME_DIR={self.runtime} "
                  f"USER={TEST_USER} LOGNAME={TEST_USER} PATH=/usr/bin:/bin {SYSTEMD} --user")
        out = open(self.log, "a")
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                      script], stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_for(lambda: self.proc.poll() is not None or
                 self.systemctl("is-system-running").stdout.strip() in ("running", "degraded"),
                 "the user manager to start")
        if self.proc.poll() is not None:
            raise RuntimeError(f"systemd --user exited with {self.proc.returncode}: "
                               f"{open(self.log).read()}")

    def as_user(self, cmd):
        """cmd as the test user, inside the manager's mount namespace."""
        return run(["nsenter", "-m", "-t", str(self.proc.pid), "setpriv",
                    f"--reuid={self.pw.pw_uid}", f"--regid={self.pw.pw_gid}", "--init-groups",
                    "env", f"XDG_RUNTIME_DIR={self.runtime}", f"HOME={self.home}"] + cmd)

    def systemctl(self, *args):
        return self.as_user(["systemctl", "--user", *args])

    def prop(self, unit, name):
        return self.systemctl("show", "-P", name, unit).stdout.strip()

    def mounts_at(self, path):
        """Types of the mounts at path in the manager's namespace."""
        return [t for mp, t, line in mountinfo(self.proc.pid) if mp == path]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def install(args, root):
    found = meson_install(args.build_root, root)
    return (installed(found, "sqvenvfs@.service", "/systemd/user"),
            installed(found, "sqvenvfs", "/bin/"))


def make_image(top, name, text):
    src = os.path.join(top, "src-" + name)
    os.makedirs(os.path.join(src, "pkg"))
    with open(os.path.join(src, "pkg", "hello.txt"), "w") as f:
        f.write(text)
    img = os.path.join(top, "images", name + ".sqfs")
    r = run(["mksquashfs", src, img, "-noappend", "-no-progress", "-quiet"])
    if r.returncode != 0:
        raise RuntimeError(f"mksquashfs: {r.stderr}")
    os.chmod(img, 0o644)
    return img


def tests(m, top, pw, unit, daemon):
    prefix_bin = os.path.dirname(daemon)
    home = m.home
    udir = os.path.join(home, ".config", "systemd", "user")
    cdir = os.path.join(home, ".config", "sqvenvfs")
    os.makedirs(udir)
    os.makedirs(cdir)
    # The installed unit; only its daemon path changes (the install root).
    with open(unit) as f:
        text = f.read()
    installed_bin = prefix_bin[len(top) + len("/root"):]
    with open(os.path.join(udir, "sqvenvfs@.service"), "w") as f:
        f.write(text.replace(installed_bin + "/sqvenvfs", daemon))
    os.makedirs(os.path.join(top, "images"))
    bottom = make_image(top, "bottom", "from the bottom image\n")
    topimg = make_image(top, "top", "from the top image\n")
    mp = os.path.join(home, "venvs", "env")  # missing: the unit creates it
    with open(os.path.join(cdir, "env.conf"), "w") as f:
        f.write(f'IMAGES="{bottom} {topimg}"\nMOUNTPOINT={mp}\nOPTIONS="-o threads=2"\n')
    with open(os.path.join(cdir, "bad.conf"), "w") as f:
        f.write(f'IMAGES="{top}/images/missing.sqfs"\nMOUNTPOINT={home}/venvs/bad\n')
    for dirpath, dirs, files in os.walk(home):
        for n in [dirpath] + [os.path.join(dirpath, x) for x in files]:
            os.chown(n, pw.pw_uid, pw.pw_gid)
    hello = os.path.join(mp, "pkg", "hello.txt")
    unit_name = "sqvenvfs@env.service"

    m.start()
    # --- start returns once the mount is usable ---------------------------
    r = m.systemctl("start", unit_name)
    seen = m.as_user(["cat", hello])
    check(r.returncode == 0 and seen.stdout == "from the top image\n",
          f"start returns with the mount usable: rc {r.returncode} {r.stderr.strip()!r}, "
          f"read {seen.stdout!r} {seen.stderr.strip()!r}")
    # --- status -------------------------------------------------------------
    state = (m.prop(unit_name, "ActiveState"), m.prop(unit_name, "StatusText"))
    check(state == ("active", "serving"), f"status: active, 'serving': {state}")
    st = m.systemctl("status", unit_name)
    check("ExecStartPre" in st.stdout and "status=1/FAILURE" not in st.stdout,
          f"status shows no failed ExecStartPre on a clean start: {st.stdout!r}")
    # --- kill -9: restarted, stale mount cleared --------------------------
    pid = int(m.prop(unit_name, "MainPID"))
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: m.prop(unit_name, "ActiveState") == "active" and
             m.prop(unit_name, "MainPID") not in ("0", str(pid)),
             "the unit to be restarted after SIGKILL")
    seen = m.as_user(["cat", hello])
    check(seen.stdout == "from the top image\n" and m.mounts_at(mp) == ["fuse.sqvenvfs"],
          f"SIGKILL: restarted, one live mount (the stale one cleared): {m.mounts_at(mp)} "
          f"{seen.stderr.strip()!r}")
    # --- stop ---------------------------------------------------------------
    r = m.systemctl("stop", unit_name)
    check(r.returncode == 0 and not m.mounts_at(mp) and not daemons(daemon, pw.pw_uid),
          f"stop unmounts and the daemon is gone: {m.mounts_at(mp)}")
    # --- enable: mounted at the next manager start ---------------------------
    r = m.systemctl("enable", unit_name)
    check(r.returncode == 0, f"enable: {r.stderr.strip()!r}")
    m.stop()
    m.start()
    wait_for(lambda: m.prop(unit_name, "ActiveState") in ("active", "failed"),
             "the enabled unit to start with the manager")
    seen = m.as_user(["cat", hello])
    check(m.prop(unit_name, "ActiveState") == "active" and
          seen.stdout == "from the top image\n",
          f"enable: the next manager start mounts it: {seen.stderr.strip()!r}")
    m.systemctl("disable", "--now", unit_name)
    # --- a permanent error ends "failed" -------------------------------------
    for name, why in (("bad", "a missing image"), ("nothing", "a missing NAME.conf")):
        u = f"sqvenvfs@{name}.service"
        r = m.systemctl("start", u)
        check(r.returncode != 0, f"{why}: start fails")
        wait_for(lambda: m.prop(u, "ActiveState") == "failed", f"{u} to end failed", 90)
        restarts = m.prop(u, "NRestarts")
        # Failed for good: no restart is pending any more.
        time.sleep(3)
        check(m.prop(u, "ActiveState") == "failed" and m.prop(u, "NRestarts") == restarts,
              f"{why}: the unit ends 'failed' and stays so ({restarts} restarts)")
    check(not daemons(daemon, pw.pw_uid), "no daemon is left")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-root", required=True)
    args = ap.parse_args()
    if os.geteuid() != 0:
        skip("needs root to make the user manager's namespace and cgroup")
    for prog in ("meson", "systemctl", "unshare", "nsenter", "setpriv", "mksquashfs",
                 "fusermount3", "useradd"):
        if not shutil.which(prog):
            skip(f"{prog} is not installed (see .ci/packages/deploy.txt)")
    if not os.access(SYSTEMD, os.X_OK):
        skip(f"{SYSTEMD} is missing (Debian package systemd)")
    if not os.path.isdir("/run/systemd"):
        skip("/run/systemd does not exist")
    if not cgroup_dirs(0):
        skip("no cgroup hierarchy for systemd (/sys/fs/cgroup)")
    if not os.path.exists("/dev/fuse"):
        skip("/dev/fuse does not exist")
    pw = test_user(TEST_USER)

    top = tempfile.mkdtemp(prefix="sqv-user-", dir="/tmp")
    os.chmod(top, 0o755)
    m = Manager(top, pw)
    daemon = None
    try:
        os.makedirs(m.home)
        os.makedirs(m.runtime, mode=0o700)
        os.chown(m.runtime, pw.pw_uid, pw.pw_gid)
        unit, daemon = install(args, os.path.join(top, "root"))
        # The user mounts through fusermount3, which opens /dev/fuse as
        # the user: a node of mode 0666 for the manager's namespace, so the
        # real one's mode is neither changed nor depended on.
        m.fuse = os.path.join(top, "fuse")
        os.mknod(m.fuse, stat.S_IFCHR | 0o666, os.stat("/dev/fuse").st_rdev)
        os.chmod(m.fuse, 0o666)
        tests(m, top, pw, unit, daemon)
    except Exception:
        traceback.print_exc()
        FAILED.append("exception")
    finally:
        m.stop()
        if FAILED and os.path.exists(m.log):
            log("----- systemd --user output\n" + open(m.log, errors="replace").read())
        for pid in daemons(daemon, pw.pw_uid) if daemon else []:
            os.kill(pid, signal.SIGKILL)
        for d in cgroup_dirs(pw.pw_uid):
            subs = sorted((p for p, _, _ in os.walk(d)), key=len, reverse=True)
            for sub in subs + [os.path.dirname(d), os.path.dirname(os.path.dirname(d))]:
                try:
                    os.rmdir(sub)  # only what is empty: ours
                except OSError:
                    pass
        shutil.rmtree(top, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
