# SPDX-License-Identifier: BSD-2-Clause
"""sqvenvfs-edit as an ordinary user, with real mounts: three chained edits
of a packed venv (pip installs a wheel built here, pip uninstalls a package
of the base image, a shell command replaces a directory by a file and a
file by a directory, the last through fuse-overlayfs). After each, the base
plus the deltas, mounted, must equal a full sqvenvfs-pack of an unpacked
copy that had the same commands run on it: listing, types, modes, owners,
sizes, symlink targets and the sha256 of every file. The packages import
and pip's console scripts run from the mount.

Then the failures, each of which must leave nothing (no DELTA, no
temporary file, no work directory, no mount, no process) and say why in
one line: COMMAND exits non-zero, SIGINT in the middle (as a Ctrl-C sends
it, to the whole process group), and a --work too small for the change."""

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time

import sqvtest as t

EDIT = os.environ.get("SQVENVFS_EDIT", "sqvenvfs-edit")


def tree_without_mtimes(root):
    """dump_tree() less the mtime field: an edit and a fresh pack of the
    same tree differ in when the change was made, nothing else."""
    return {p: e[:5] + e[6:] for p, e in t.dump_tree(root).items()}
PROG = "sqvenvfs-edit:"
USER = "sqvenvfs-test"
SP = "lib/python3.11/site-packages"

SETUP = """from setuptools import setup
setup(name={name!r}, version="1.0", packages={packages!r},
      package_data={{{name!r}: ["data.txt"]}},
      entry_points={{"console_scripts": ["{script}={name}:main"]}})
"""


def ensure_user():
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        if not shutil.which("useradd"):
            t.skip("no useradd to create an unprivileged test user")
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", USER], check=True)
        pw = pwd.getpwnam(USER)
    return pw.pw_uid, pw.pw_gid


def build_wheel(d, name, script, with_sub):
    src = os.path.join(d, "src", name)
    pkg = os.path.join(src, name)
    os.makedirs(os.path.join(pkg, "sub") if with_sub else pkg)
    if with_sub:
        os.makedirs(os.path.join(pkg, "keep", "inner"))
    packages = [name] + ([f"{name}.sub", f"{name}.keep", f"{name}.keep.inner"]
                         if with_sub else [])
    with open(os.path.join(src, "setup.py"), "w") as f:
        f.write(SETUP.format(name=name, packages=packages, script=script))
    with open(os.path.join(pkg, "__init__.py"), "w") as f:
        f.write(f"def main():\n    print('{name} runs from', __file__)\n"
                "    return 0\n")
    with open(os.path.join(pkg, "data.txt"), "w") as f:
        f.write(f"data of {name}\n")
    if with_sub:
        for m in ("__init__.py", "one.py", "two.py"):
            with open(os.path.join(pkg, "sub", m), "w") as f:
                f.write(f"WHERE = {m!r}\n")
        for sub in ("keep", os.path.join("keep", "inner")):
            with open(os.path.join(pkg, sub, "__init__.py"), "w") as f:
                f.write(f"WHERE = {sub!r}\n")
    wheels = os.path.join(d, "wheels")
    r = subprocess.run([t.SYS_PYTHON, "-m", "pip", "wheel", "--no-index",
                        "--no-deps", "--no-build-isolation", "-q", "-w",
                        wheels, src], capture_output=True, text=True,
                       env=t.clean_env())
    if r.returncode != 0:
        t.skip(f"cannot build a wheel with Debian's pip (python3-pip, "
               f"python3-setuptools, python3-wheel): {r.stderr.strip()[-300:]}")
    found = [w for w in os.listdir(wheels) if w.startswith(name)]
    return os.path.join(wheels, found[0])


class Env:
    """The test's places and the user's environment."""

    def __init__(self, d, uid, gid):
        self.d = d
        self.uid, self.gid = uid, gid
        self.venv = os.path.join(d, "env", "venv")   # where the venv is used
        self.out = os.path.join(d, "out")            # images, the user's
        self.work = os.path.join(d, "work")          # TMPDIR, the user's
        self.home = os.path.join(d, "home")
        for p in (self.out, self.work, self.home):
            os.makedirs(p)
            os.chown(p, uid, gid)
        self.env = t.clean_env(TMPDIR=self.work, HOME=self.home,
                               PIP_NO_CACHE_DIR="1",
                               PIP_DISABLE_PIP_VERSION_CHECK="1",
                               PIP_NO_INPUT="1", SOURCE_DATE_EPOCH="1700000000")

    def edit(self, images, delta, command, opts=(), **kw):
        cmd = t.as_user([EDIT, *opts, *images, delta, "--", *command],
                        str(self.uid))
        return subprocess.run(cmd, env=self.env, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, **kw)

    def on_copy(self, command):
        """The same command on the unpacked copy (as root, same umask)."""
        env = dict(self.env, VIRTUAL_ENV=self.venv,
                   PATH=os.path.join(self.venv, "bin") + ":" +
                   self.env["PATH"], PIP_ROOT_USER_ACTION="ignore")
        r = subprocess.run(command, env=env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise AssertionError(f"{command} on the copy: {r.stderr}")


def compare(e, images, label):
    """Base + deltas mounted against a full pack of the changed copy."""
    full = os.path.join(e.d, f"full-{label}.sqfs")
    r = t.pack(e.venv, full)
    # pack's summary and inspect's count the same entries (the root is
    # neither's: "187 directories" against 186 before)
    want = re.search(r"entries: (.*) below the root \(", r.stdout)
    got = re.search(r"entries: +(.*) below the root\n", t.inspect(full).stdout)
    t.check(want and got and want.group(1) == got.group(1),
            f"{label}: pack and inspect count the same entries "
            f"({want and want.group(1)!r}, {got and got.group(1)!r})")
    m1 = os.path.join(e.d, f"mnt-stack-{label}")
    m2 = os.path.join(e.d, f"mnt-full-{label}")
    os.makedirs(m1)
    os.makedirs(m2)
    with t.mounted(images, m1), t.mounted([full], m2):
        a, b = tree_without_mtimes(m1), tree_without_mtimes(m2)
        diffs = t.diff_trees(a, b, "stack", "full")
        for line in diffs[:8]:
            print("  " + line)
        t.check(not diffs and len(a) > 100,
                f"{label}: base + deltas = a full pack of the changed copy "
                f"({len(a)} paths, {len(diffs)} differ)")
    return full


def same_change(e, images, edit_run, label):
    """sqvenvfs-pack --base over the same images, from the copy that the
    same command changed, counts the entries added and removed as
    sqvenvfs-edit did, in the same words (pack said "3 added" for a wheel,
    the topmost new entries, where edit said "15 added", every entry).
    "changed" may differ: the copy's mtimes are not the deltas', which
    SOURCE_DATE_EPOCH clamps, and pack compares by mtime."""
    delta = os.path.join(e.d, f"pack-delta-{label}.sqfs")
    r = t.pack(*[a for i in images for a in ("--base", i)], e.venv, delta)
    words = r"(\d+) entries added, \d+ changed, (\d+) removed \(whiteouts\)"
    by_edit = re.search(r"  change: " + words, edit_run.stdout)
    by_pack = re.search(r"base image\(s\): " + words, r.stdout)
    t.check(by_edit and by_pack and by_edit.groups() == by_pack.groups(),
            f"{label}: pack --base and edit count the entries added and "
            f"removed alike ({by_pack and by_pack.groups()}, "
            f"{by_edit and by_edit.groups()})", (r.stdout, edit_run.stdout))


def nothing_left(e, before_out, label, ours=None):
    t.check(os.listdir(e.work) == [],
            f"{label}: no work directory left ({os.listdir(e.work)})")
    t.check(sorted(os.listdir(e.out)) == before_out,
            f"{label}: no DELTA nor temporary file "
            f"({sorted(set(os.listdir(e.out)) - set(before_out))})")
    mounts = [l for l in open("/proc/self/mountinfo")
              if e.d in l and not (ours and f" {ours} " in l)]
    t.check(not mounts, f"{label}: no mount left {mounts[:2]}")
    procs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if os.fsencode(e.work) in cmd or b"sqvenvfs-edit" in cmd:
            procs.append(cmd.replace(b"\0", b" ")[:100])
    t.check(not procs, f"{label}: no process left {procs[:2]}")


def must(r, label):
    """An edit that has to succeed for the rest of the test to mean
    anything: a failure ends the test, with its message."""
    t.check(r.returncode == 0, f"{label} succeeds ({r.returncode}: "
            f"{r.stderr.strip()[-300:]})")
    if r.returncode != 0:
        t.finish()


def one_line(r, label, *words):
    """sqvenvfs-edit's own lines on stderr (COMMAND's are COMMAND's)."""
    lines = [l for l in r.stderr.splitlines() if l.startswith(PROG)]
    t.check(len(lines) == 1 and all(w in lines[0] for w in words),
            f"{label}: one line saying why ({lines})")


def chain(e, wheel_base, wheel_new):
    pip = os.path.join(e.venv, "bin", "pip")
    base = os.path.join(e.out, "base.sqfs")
    t.pack(e.venv, base)
    os.chmod(base, 0o644)
    deltas = []

    # 1: pip installs a wheel, through the kernel's overlayfs
    d1 = os.path.join(e.out, "d1.sqfs")
    r = e.edit([base], d1, ["pip", "install", "--no-index", wheel_new],
               ["--at", e.venv, "--overlay", "kernel"])
    must(r, "edit 1 (pip install)")
    r1 = r
    t.check("kernel overlayfs in a user namespace" in r.stdout,
            "edit 1 says it used the kernel's overlayfs")
    d1b = os.path.join(e.out, "d1-again.sqfs")
    r = e.edit([base], d1b, ["pip", "install", "--no-index", wheel_new],
               ["--at", e.venv])
    must(r, "edit 1 again")
    t.check(t.sha256(d1) == t.sha256(d1b), "the same edit twice gives the "
            "same delta, byte for byte (SOURCE_DATE_EPOCH set)")
    os.unlink(d1b)
    e.on_copy([pip, "install", "--no-index", wheel_new])
    same_change(e, [base], r1, "install")
    deltas.append(d1)
    compare(e, [base, *deltas], "install")
    raw = t.inspect("dump", "--raw", d1).stdout
    t.check(f"/{SP}/sqvtiny_new/sub/two.py\t" in raw and
            f"/{SP}/pip/" not in raw and "/bin/python" not in raw,
            "delta 1 holds the new package and nothing of pip or python")

    mnt = os.path.join(e.d, "mnt-user")
    os.makedirs(mnt)
    os.chown(mnt, e.uid, e.gid)
    with t.mounted([base, d1], mnt, user=str(e.uid)):
        r = subprocess.run(t.as_user([os.path.join(mnt, "bin", "tinynew")],
                                     str(e.uid)), capture_output=True,
                           text=True, env=e.env)
        t.check(r.returncode == 0 and f"runs from {mnt}/{SP}" in r.stdout,
                f"pip's console script runs from the mount ({r.stdout!r} "
                f"{r.stderr[-200:]!r})")
        r = subprocess.run(t.as_user(
            [os.path.join(mnt, "bin", "python3"), "-c",
             "import sqvtiny_new.sub.two as m, sqvtiny_base; print(m.WHERE)"],
            str(e.uid)), capture_output=True, text=True, env=e.env)
        t.check(r.stdout.strip() == "two.py",
                f"the packages import from the mount ({r.stderr[-200:]})")

    # 2: pip uninstalls a package of the base image
    d2 = os.path.join(e.out, "d2.sqfs")
    r = e.edit([base, d1], d2, ["pip", "uninstall", "-y", "sqvtiny_base"],
               ["--at", e.venv])
    must(r, "edit 2 (pip uninstall)")
    e.on_copy([pip, "uninstall", "-y", "sqvtiny_base"])
    same_change(e, [base, *deltas], r, "uninstall")
    deltas.append(d2)
    compare(e, [base, *deltas], "uninstall")
    raw = t.inspect("dump", "--raw", d2).stdout
    t.check(f"/{SP}/.wh.sqvtiny_base\t" in raw and "/bin/.wh.tinybase\t" in raw,
            "delta 2 holds whiteouts of the base's package and script")

    # 3: a directory becomes a file, a file a directory (fuse-overlayfs)
    # ... and makes new directories, and a directory of the images again
    # with one below it that the images have too (keep/inner)
    swap = (f'set -e; cd "$VIRTUAL_ENV/{SP}/sqvtiny_new"; rm -r sub; '
            'echo now a file > sub; rm data.txt; mkdir data.txt; '
            'echo inside > data.txt/inner; mkdir -p brandnew/deeper; '
            'echo new > brandnew/deeper/f; rm -r keep; mkdir -p keep/inner; '
            'echo again > keep/inner/x')
    d3 = os.path.join(e.out, "d3.sqfs")
    r = e.edit([base, d1, d2], d3, ["sh", "-c", swap],
               ["--at", e.venv, "--overlay", "fuse"])
    must(r, "edit 3 (swaps)")
    t.check("fuse-overlayfs" in r.stdout, "edit 3 says it used fuse-overlayfs")
    # fuse-overlayfs marks each directory it creates opaque; only one that
    # hides a directory of the images is, in the delta and the summary:
    # keep/, made again, not the new ones nor keep/inner below it.
    raw = t.inspect("dump", "--raw", d3).stdout
    marks = [l.split("\t")[0] for l in raw.splitlines()
             if l.split("\t")[0].endswith("/.wh..wh..opq")]
    t.check(marks == [f"/{SP}/sqvtiny_new/keep/.wh..wh..opq"],
            "delta 3 has one opaque mark, on keep/ made again: new "
            "directories and keep/inner below that mark replaced nothing",
            marks)
    t.check("1 directories replaced (opaque)" in r.stdout,
            "edit 3 says it replaced one directory", r.stdout)
    e.on_copy(["sh", "-c", swap])
    same_change(e, [base, *deltas], r, "swap")
    deltas.append(d3)
    compare(e, [base, *deltas], "swap")
    return base, deltas


def fuse_new_pycache(e):
    """An import during COMMAND, of a module of the images that has no
    pyc, makes its __pycache__; fuse-overlayfs marks that new directory
    opaque. The stale pyc goes, and the emptied directory with it, as
    through the kernel overlay: nothing is added."""
    site = os.path.join(e.venv, "lib", f"python{sys.version_info[0]}."
                        f"{sys.version_info[1]}", "site-packages")
    pkg = os.path.join(site, "sqvnopyc")
    os.makedirs(pkg)
    with open(os.path.join(pkg, "__init__.py"), "w") as f:
        f.write("X = 1\n")
    img = os.path.join(e.out, "nopyc.sqfs")
    t.pack("--no-compile", e.venv, img)
    shutil.rmtree(pkg)
    os.chmod(img, 0o644)
    delta = os.path.join(e.out, "nopyc-delta.sqfs")
    r = e.edit([img], delta, ["python3", "-c", "import sqvnopyc"],
               ["--at", e.venv, "--overlay", "fuse", "--no-compile"])
    must(r, "an import through fuse-overlayfs")
    raw = t.inspect("dump", "--raw", delta).stdout
    t.check("0 entries added" in r.stdout and "__pycache__" not in raw,
            "an import through fuse-overlayfs adds nothing: its emptied "
            "__pycache__ is not kept", (r.stdout, raw))
    for p in (img, delta):
        os.unlink(p)


def failures(e, base):
    before = sorted(os.listdir(e.out))
    delta = os.path.join(e.out, "fail.sqfs")

    r = e.edit([base], delta, ["sh", "-c", 'echo x > "$VIRTUAL_ENV/x"; exit 3'])
    t.check(r.returncode == 3, f"COMMAND's status is the exit status "
            f"({r.returncode})")
    one_line(r, "COMMAND fails", "exited with status 3", "no delta written")
    nothing_left(e, before, "COMMAND fails")

    ready = os.path.join(e.home, "ready")
    cmd = t.as_user([EDIT, base, delta, "--", "sh", "-c",
                     f'touch {ready}; sleep 60'], str(e.uid))
    p = subprocess.Popen(cmd, env=e.env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(ready) and time.monotonic() < deadline \
            and p.poll() is None:
        time.sleep(0.05)
    t.check(os.path.exists(ready), "COMMAND started")
    os.killpg(p.pid, signal.SIGINT)     # what Ctrl-C does
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
    r = subprocess.CompletedProcess(cmd, p.returncode, out, err)
    t.check(r.returncode == 130, f"SIGINT: exit status 130 ({r.returncode})")
    one_line(r, "SIGINT", "interrupted by SIGINT", "no delta written")
    nothing_left(e, before, "SIGINT")

    # An image that sqvenvfs, inside the namespace, refuses: its line is
    # told under sqvenvfs-edit's prefix alone ("sqvenvfs-edit: sqvenvfs:
    # IMAGE: ..." before).
    junk = os.path.join(e.d, "junk.sqfs")
    with open(junk, "w") as f:
        f.write("not an image\n")
    os.chmod(junk, 0o644)
    r = e.edit([base, junk], delta, ["true"])
    t.check_error("an image sqvenvfs refuses", r, "not a squashfs image",
                  prefix=f"{PROG} {junk}: ", status=125)
    nothing_left(e, before, "an image sqvenvfs refuses")

    tiny = os.path.join(e.d, "tiny")
    os.makedirs(tiny)
    subprocess.run(["mount", "-t", "tmpfs", "-o",
                    f"size=2m,mode=0755,uid={e.uid},gid={e.gid}", "tiny",
                    tiny], check=True)
    try:
        r = e.edit([base], delta, ["sh", "-c", 'head -c 8000000 /dev/zero '
                                   '> "$VIRTUAL_ENV/big"'], ["--work", tiny])
        t.check(r.returncode not in (0, 125) and not os.path.exists(delta),
                f"a full --work: COMMAND's failure ({r.returncode})")
        one_line(r, "a full --work", "file system is full", "no delta written")
        t.check(os.listdir(tiny) == [], f"the small --work is left empty "
                f"({os.listdir(tiny)})")
        nothing_left(e, before, "a full --work", ours=tiny)
    finally:
        subprocess.run(["umount", tiny], check=True)


def main():
    t.require_pack_tools()
    t.require_mount_capability()
    if os.geteuid() != 0:
        t.skip("needs root to create the test user and to open /dev/fuse")
    for prog in ("fusermount3", "fuse-overlayfs", "unshare"):
        if not shutil.which(prog):
            t.skip(f"{prog} is not installed")
    r = subprocess.run([t.SYS_PYTHON, "-c", "import setuptools, wheel, pip"],
                       capture_output=True)
    if r.returncode != 0:
        t.skip("python3-pip, python3-setuptools, python3-wheel are needed")
    uid, gid = ensure_user()
    os.umask(0o022)
    old_mode = os.stat("/dev/fuse").st_mode & 0o777
    with t.tempdir() as d:
        os.chmod(d, 0o755)
        try:
            os.chmod("/dev/fuse", 0o666)
            e = Env(d, uid, gid)
            wheel_base = build_wheel(d, "sqvtiny_base", "tinybase", False)
            wheel_new = build_wheel(d, "sqvtiny_new", "tinynew", True)
            t.run([t.SYS_PYTHON, "-m", "venv", e.venv])
            e.on_copy([os.path.join(e.venv, "bin", "pip"), "install",
                       "--no-index", wheel_base])
            base, _ = chain(e, wheel_base, wheel_new)
            fuse_new_pycache(e)
            failures(e, base)
        finally:
            os.chmod("/dev/fuse", old_mode)
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
