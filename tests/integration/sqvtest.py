"""Helpers for sqvenvfs's integration tests: real images, real mounts.

Every test runs as its own process (one meson test each). A test that this
machine cannot run calls skip(), which exits 77, or 1 when CI has set
SQVENVFS_TEST_NO_SKIP=1 so that a missing capability is never silently green.
"""

import contextlib
import hashlib
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

SQVENVFS = os.environ.get("SQVENVFS", "sqvenvfs")
FAILURES = []

# How long a test waits for something that must happen (a mount to appear,
# a daemon to exit). Generous: a shared, loaded 2-core machine can take
# seconds; waiting ends as soon as the thing happens, so a healthy run never
# waits this long, and running out of it fails with a message, never quietly.
DEADLINE = 60.0

if sys.flags.optimize:
    # Under -O (PYTHONOPTIMIZE) Python drops assert statements: refuse to
    # run rather than risk a test that checks less than it says.
    print("FAIL: the tests must not run with PYTHONOPTIMIZE / python -O",
          flush=True)
    sys.exit(1)


def skip(reason):
    print(f"SKIP: {reason}", flush=True)
    if os.environ.get("SQVENVFS_TEST_NO_SKIP") == "1":
        print("SQVENVFS_TEST_NO_SKIP=1: a skip is a failure here", flush=True)
        sys.exit(1)
    sys.exit(77)


def check(cond, what):
    """Record a failed expectation without stopping the test."""
    if cond:
        print(f"ok: {what}", flush=True)
    else:
        print(f"FAIL: {what}", flush=True)
        FAILURES.append(what)


def finish():
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed", flush=True)
        sys.exit(1)
    print("all checks passed", flush=True)
    sys.exit(0)


def require_mount_capability():
    if not os.path.exists("/dev/fuse"):
        skip("no /dev/fuse on this machine")
    if os.geteuid() != 0 and not shutil.which("fusermount3"):
        skip("not root and no fusermount3")
    if not shutil.which("mksquashfs"):
        skip("mksquashfs (squashfs-tools) is not installed")


SYS_PYTHON = "/usr/bin/python3"


def require_python_venv():
    """Skip when Debian's python3-venv is missing; fail (not skip) when it
    is there but does not import: that is a broken machine or a bug, and
    must not pass as "cannot run here"."""
    if not os.access(SYS_PYTHON, os.X_OK):
        skip(f"{SYS_PYTHON} is not installed")
    r = subprocess.run([SYS_PYTHON, "-c", "import venv, ensurepip"],
                       capture_output=True, text=True)
    if r.returncode == 0:
        return
    # Debian ships ensurepip (and the venv wheels) in python3-venv only.
    if "No module named 'ensurepip'" in r.stderr:
        skip("Debian's python3-venv is not installed (no ensurepip module)")
    print(f"FAIL: {SYS_PYTHON} -c 'import venv, ensurepip' exited "
          f"{r.returncode}: {r.stderr.strip()}", flush=True)
    sys.exit(1)


@contextlib.contextmanager
def tempdir(prefix="sqvtest-"):
    d = tempfile.mkdtemp(prefix=prefix)
    try:
        yield d
    finally:
        # Never leave a mount behind, even when the test failed midway.
        for line in reversed(open("/proc/self/mountinfo").read().splitlines()):
            mnt = line.split()[4].encode().decode("unicode_escape")
            if mnt.startswith(d + "/"):
                subprocess.run(["umount", "-l", mnt], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


def mksquashfs(src, image, comp="zstd", extra=()):
    cmd = ["mksquashfs", src, image, "-comp", comp, "-noappend",
           "-no-progress", "-quiet", *extra]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return image


def run(args, **kw):
    """Run sqvenvfs with args; returns the CompletedProcess."""
    return subprocess.run([SQVENVFS, *args], capture_output=True, text=True,
                          **kw)


def is_mounted(path):
    path = os.path.realpath(path)
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        if f[4].encode().decode("unicode_escape") == path:
            return True
    return False


def wait_for(pred, timeout=DEADLINE):
    """Poll pred() until it is true or timeout seconds (time.monotonic, so
    a clock change cannot cut or stretch it) have passed; returns the last
    value of pred()."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(0.02)


def wait_mounted(mnt, timeout=DEADLINE):
    """True once mnt shows up as a mount point (a daemon started with -f)."""
    return wait_for(lambda: is_mounted(mnt), timeout)


def wait_unmounted(mnt, timeout=DEADLINE):
    """True once mnt is no longer a mount point."""
    return wait_for(lambda: not is_mounted(mnt), timeout)


def daemon_pids(path=None):
    """Pids of sqvenvfs processes; with path, only those whose command line
    names it (other tests' daemons on this machine are not ours)."""
    out = subprocess.run(["pgrep", "-x", "sqvenvfs"], capture_output=True,
                         text=True).stdout
    pids = {int(p) for p in out.split()}
    if path is None:
        return pids
    mine = set()
    for pid in pids:
        try:
            args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if any(os.fsencode(path) in a for a in args):
            mine.add(pid)
    return mine


def as_user(cmd, user, groups="--init-groups"):
    """cmd run as user (a name or uid) with that user's groups."""
    if user is None:
        return cmd
    return ["setpriv", f"--reuid={user}", f"--regid={user}", groups, *cmd]


def mount(images, mnt, opts=(), user=None):
    cmd = as_user([SQVENVFS, *opts, *images, mnt], user)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"mount failed ({r.returncode}): {r.stderr.strip()}")
    return r


def unmount(mnt, user=None):
    cmd = as_user([SQVENVFS, "--unmount", mnt], user)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"unmount failed: {r.stderr.strip()}")
    # The daemon exits once the kernel has let go of the mount.
    if not wait_unmounted(mnt):
        raise RuntimeError(f"{mnt} still mounted {DEADLINE:.0f} s after "
                           "--unmount succeeded")


@contextlib.contextmanager
def mounted(images, mnt, opts=(), user=None):
    mount(images, mnt, opts, user)
    try:
        yield mnt
    finally:
        if is_mounted(mnt):
            unmount(mnt, user)
        check(wait_daemons_gone(mnt), f"the daemon of {mnt} exits after "
              "its unmount")


def wait_daemons_gone(path, timeout=DEADLINE):
    """True once no sqvenvfs process names path on its command line."""
    return wait_for(lambda: not daemon_pids(path), timeout)


def cache_drops():
    """How often anyone wrote to /proc/sys/vm/drop_caches since boot."""
    with open("/proc/vmstat") as f:
        for line in f:
            if line.startswith("drop_pagecache "):
                return int(line.split()[1])
    return 0


def undisturbed(fn, what, tries=5):
    """fn() run until no other process dropped the kernel's caches while it
    ran (tests and benchmarks on a shared machine do): a measurement of
    warm caches that was made partly cold says nothing. Returns fn()'s
    value; fails the test when every try was disturbed."""
    for _ in range(tries):
        before = cache_drops()
        v = fn()
        if cache_drops() == before:
            return v
        print(f"note: {what}: the kernel's caches were dropped meanwhile; "
              "again", flush=True)
    check(False, f"{what}: an undisturbed run in {tries} tries (another "
          "process keeps dropping the kernel's caches)")
    return v


def stats(mnt):
    r = run(["--stats", mnt])
    if r.returncode != 0:
        raise RuntimeError(f"--stats failed: {r.stderr.strip()}")
    out = {}
    for line in r.stdout.splitlines():
        k, v = line.split()
        out[k] = int(v)
    return out


# ---- trees ---------------------------------------------------------------

ODD_NAMES = ["plain", "with space", "ünïcödé-名前", "tab\tname", "new\nline",
             "-dash", ".hidden", "a" * 255, "quote'\"", "semi;colon",
             "back\\slash", "percent%s", "star*"]


def random_tree(root, seed, nfiles=300, ndirs=40, max_depth=12):
    """A tree with odd names, deep directories, empty, small and large
    files, symlinks and hard links. Returns the list of created paths."""
    rng = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    dirs = [root]
    # a deep chain
    d = root
    for i in range(max_depth):
        d = os.path.join(d, f"deep{i}")
        os.mkdir(d)
        dirs.append(d)
    for i in range(ndirs):
        parent = rng.choice(dirs)
        name = rng.choice(ODD_NAMES)[:200] + f"-d{i}"
        p = os.path.join(parent, name)
        os.mkdir(p)
        dirs.append(p)
    files = []
    for i in range(nfiles):
        parent = rng.choice(dirs)
        name = (rng.choice(ODD_NAMES)[:240] + f"-{i}")[:255]
        p = os.path.join(parent, name)
        kind = rng.random()
        if kind < 0.1:
            size = 0
        elif kind < 0.8:
            size = rng.randint(1, 9000)
        elif kind < 0.97:
            size = rng.randint(9000, 400_000)
        else:
            size = rng.randint(1_000_000, 3_000_000)
        with open(p, "wb") as f:
            # Half compressible text, half random bytes.
            if rng.random() < 0.5:
                f.write(rng.randbytes(size))
            else:
                line = b"".join(rng.choice([b"import os\n", b"x = 1\n",
                                            b"def f():\n    pass\n"])
                                for _ in range(64))
                f.write((line * (size // len(line) + 1))[:size])
        os.chmod(p, rng.choice([0o644, 0o600, 0o755, 0o444, 0o4755, 0o640]))
        os.utime(p, (rng.randint(0, 2**31 - 1),) * 2)
        files.append(p)
    # a sparse file with a hole in the middle
    p = os.path.join(root, "sparse")
    with open(p, "wb") as f:
        f.write(b"head")
        f.seek(5 * 1024 * 1024)
        f.write(b"tail")
    files.append(p)
    for i in range(30):
        target = rng.choice(files + dirs)
        link = os.path.join(rng.choice(dirs), f"link-{i}")
        os.symlink(os.path.relpath(target, os.path.dirname(link)), link)
    os.symlink("/absolute/dangling/target", os.path.join(root, "dangling"))
    for i in range(10):
        target = rng.choice(files)
        os.link(target, os.path.join(rng.choice(dirs), f"hard-{i}"))
    for d in dirs:
        os.utime(d, (rng.randint(0, 2**31 - 1),) * 2)
    return files


def file_hash(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dump_tree(root, with_ino=False):
    """{relative path: (type, mode, uid, gid, size, mtime, target/hash, nlink)}"""
    out = {}
    inos = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            fmt = stat.S_IFMT(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                extra = file_hash(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                extra = None
            size = st.st_size if stat.S_ISREG(st.st_mode) or \
                stat.S_ISLNK(st.st_mode) else None
            nlink = st.st_nlink if not stat.S_ISDIR(st.st_mode) else None
            out[rel] = (fmt, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        size, int(st.st_mtime), extra, nlink)
            if with_ino and not stat.S_ISDIR(st.st_mode):
                inos[rel] = st.st_ino
    return (out, inos) if with_ino else out


def compare_trees(expected, actual, label):
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    check(not missing, f"{label}: no path missing ({missing[:5]})")
    check(not extra, f"{label}: no unexpected path ({extra[:5]})")
    diffs = [(p, expected[p], actual[p]) for p in expected
             if p in actual and expected[p] != actual[p]]
    for p, e, a in diffs[:5]:
        print(f"  {p!r}:\n    expected {e}\n    actual   {a}")
    check(not diffs, f"{label}: every path has the same type, mode, owner, "
          f"size, mtime, target and content ({len(diffs)} differ)")


def pid_gone(pid):
    """True once every thread of pid has exited, so its file descriptors are
    closed (also while it waits, a zombie, to be reaped)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            st = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return True
    return st["State"].split()[0] == "Z" and int(st["Threads"]) <= 1


def kill_daemon_of(mnt, sig=signal.SIGKILL):
    """Kill the daemon serving mnt (found by its command line)."""
    for pid in daemon_pids(mnt):
        os.kill(pid, sig)
        return pid
    return None
