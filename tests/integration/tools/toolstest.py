# SPDX-License-Identifier: BSD-2-Clause
"""Shared helpers for the sqvenvfs-pack / sqvenvfs-inspect integration tests.

The tests build real venvs with Debian's /usr/bin/python3 (python3-venv),
copy Debian's pure-Python packages into them, pack them with sqvenvfs-pack,
mount them with the real sqvenvfs daemon and look at the result. Paths of
the programs come from the environment meson sets: SQVENVFS, SQVENVFS_PACK,
SQVENVFS_INSPECT.
"""

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import traceback

SYS_PYTHON = "/usr/bin/python3"
DIST = "/usr/lib/python3/dist-packages"

SQVENVFS = os.environ.get("SQVENVFS", "sqvenvfs")
PACK = os.environ.get("SQVENVFS_PACK", "sqvenvfs-pack")
INSPECT = os.environ.get("SQVENVFS_INSPECT", "sqvenvfs-inspect")


FAILURES = []

# How long a test waits for something that must happen: generous for a
# loaded, shared machine; time.monotonic, so a clock change cannot cut it.
DEADLINE = 60.0

if sys.flags.optimize:
    # Under -O (PYTHONOPTIMIZE) Python drops assert statements: refuse to
    # run rather than risk a test that checks less than it says.
    print("FAIL: the tests must not run with PYTHONOPTIMIZE / python -O",
          flush=True)
    sys.exit(1)


class Skip(Exception):
    pass


def check(cond, what, detail=""):
    """Record an expectation: print ok/FAIL with what, and on a failure the
    detail (output, values). The test goes on; main() fails the run."""
    if cond:
        print(f"ok: {what}", flush=True)
    else:
        print(f"FAIL: {what}", flush=True)
        if detail:
            print(f"  {detail}", flush=True)
        FAILURES.append(what)
    return bool(cond)


def skip(why):
    raise Skip(why)


def require(cond, why):
    if not cond:
        skip(why)


def main(test):
    """Run test(tmpdir) with a private temporary directory; exit 77 when
    it cannot run here (1 under SQVENVFS_TEST_NO_SKIP=1), 1 on failure."""
    tmp = tempfile.mkdtemp(prefix="sqvtools-")
    os.chmod(tmp, 0o755)
    cleanups = []
    try:
        test(tmp, cleanups)
    except Skip as e:
        if os.environ.get("SQVENVFS_TEST_NO_SKIP") == "1":
            print(f"FAIL (skip not allowed here): {e}")
            rc = 1
        else:
            print(f"SKIP: {e}")
            rc = 77
    except Exception:
        traceback.print_exc()
        rc = 1
    else:
        if FAILURES:
            print(f"{len(FAILURES)} check(s) failed")
            rc = 1
        else:
            print("all checks passed")
            rc = 0
    finally:
        for fn in reversed(cleanups):
            try:
                fn()
            except Exception:
                traceback.print_exc()
                rc = rc or 1
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(rc)


def wait_for(pred, timeout=DEADLINE):
    """Poll pred() until it is true or timeout seconds have passed; returns
    the last value of pred()."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(0.02)


def check_basics():
    require(os.access(SYS_PYTHON, os.X_OK), f"{SYS_PYTHON} missing")
    r = subprocess.run([SYS_PYTHON, "-c", "import venv, ensurepip"],
                       capture_output=True, text=True)
    # Debian ships ensurepip in python3-venv only: its absence is a skip,
    # any other failure to import is a failure.
    require("No module named 'ensurepip'" not in r.stderr,
            "Debian's python3-venv is not installed (no ensurepip module)")
    if r.returncode != 0:
        raise AssertionError(f"{SYS_PYTHON} -c 'import venv, ensurepip' "
                             f"exited {r.returncode}: {r.stderr.strip()}")
    require(shutil.which("mksquashfs"), "mksquashfs (squashfs-tools) missing")
    for pkg in ("pyflakes", "toml", "six.py"):
        require(os.path.exists(os.path.join(DIST, pkg)),
                f"{DIST}/{pkg} missing (python3-pyflakes, python3-toml, "
                "python3-six)")


def check_fuse():
    require(os.path.exists("/dev/fuse"), "/dev/fuse missing")
    require(os.access("/dev/fuse", os.R_OK | os.W_OK),
            "/dev/fuse not accessible to this user")
    require(shutil.which("fusermount3") or os.geteuid() == 0,
            "fusermount3 missing")


def clean_env(**extra):
    """The environment without PYTHON* settings (PYTHONDONTWRITEBYTECODE in
    particular would hide the bytecode writes the tests look for)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(extra)
    return env


def run(cmd, check=True, **kw):
    if kw.get("env") is None:
        kw["env"] = clean_env()
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} exited {r.returncode}\n"
                             f"stdout: {r.stdout}\nstderr: {r.stderr}")
    return r


def site_packages(venv):
    return os.path.join(venv, "lib", "python3.11", "site-packages")


def copy_pkg(venv, *names):
    """Install Debian's copy of a pure-Python package as pip would leave it
    (module files plus its metadata)."""
    sp = site_packages(venv)
    for n in names:
        src = os.path.join(DIST, n)
        dst = os.path.join(sp, n)
        if os.path.isdir(src):
            shutil.copytree(src, dst, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)


CONSOLE_SCRIPT = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from {module} import {func}
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit({func}())
"""


def add_console_script(venv, name, module, func):
    """A console script exactly as pip writes one: an absolute shebang to the
    venv's interpreter."""
    p = os.path.join(venv, "bin", name)
    with open(p, "w") as f:
        f.write(CONSOLE_SCRIPT.format(
            python=os.path.join(venv, "bin", "python3"), module=module,
            func=func))
    os.chmod(p, 0o755)


def make_venv(path, pkgs=("pyflakes", "pyflakes-2.5.0.egg-info", "toml",
                          "toml-0.10.2.egg-info"), with_pip=False):
    """A venv made where it will not be mounted: Debian's python3 -m venv
    (with pip and setuptools from ensurepip if asked), some Debian packages,
    pip-style console scripts, a module of our own with a console script
    that reports where it runs from."""
    run([SYS_PYTHON, "-m", "venv"] + ([] if with_pip else ["--without-pip"])
        + [path])
    copy_pkg(path, *pkgs)
    sp = site_packages(path)
    os.mkdir(os.path.join(sp, "whereami"))
    with open(os.path.join(sp, "whereami", "__init__.py"), "w") as f:
        f.write("import sys\n\n\ndef main():\n"
                "    import toml\n"
                "    print(sys.prefix)\n"
                "    print(toml.__file__)\n"
                "    return 0\n")
    add_console_script(path, "whereami", "whereami", "main")
    if os.path.exists(os.path.join(sp, "pyflakes")):
        add_console_script(path, "pyflakes", "pyflakes.api", "main")
    return path


def pack(*args, check=True, env=None):
    return run([PACK] + list(args), check=check, env=env)


def inspect(*args, check=True, **kw):
    return run([INSPECT] + list(args), check=check, **kw)


class Mount:
    def __init__(self, images, mnt, cleanups):
        os.makedirs(mnt, exist_ok=True)
        self.mnt = mnt
        r = run([SQVENVFS] + list(images) + [mnt], check=False)
        if r.returncode != 0:
            raise AssertionError(f"sqvenvfs {images} {mnt}: exit "
                                 f"{r.returncode}: {r.stderr.strip()}")
        self.mounted = True
        cleanups.append(self.umount)

    def umount(self):
        if self.mounted:
            self.mounted = False
            r = run([SQVENVFS, "-u", self.mnt], check=False)
            if r.returncode != 0:
                raise AssertionError(f"sqvenvfs -u {self.mnt}: "
                                     f"{r.stderr.strip()}")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def tree(root, mtimes=True):
    """Every path below root: type, mode, owner, size (files), mtime,
    symlink target, content hash. Directory sizes are not compared (they
    are the file system's business)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in [""] + dirnames + filenames:
            p = os.path.join(dirpath, n) if n else dirpath
            rel = "/" + os.path.relpath(p, root) if p != root else "/"
            if rel in out:
                continue
            st = os.lstat(p)
            m = st.st_mode
            rec = [stat.S_IFMT(m), oct(stat.S_IMODE(m)), st.st_uid, st.st_gid]
            if mtimes:
                rec.append(int(st.st_mtime))
            if stat.S_ISREG(m):
                rec += [st.st_size, sha256(p)]
            elif stat.S_ISLNK(m):
                rec.append(os.readlink(p))
            out[rel] = tuple(rec)
    return out


def diff_trees(a, b, what_a="a", what_b="b"):
    lines = []
    for p in sorted(set(a) | set(b)):
        if a.get(p) != b.get(p):
            lines.append(f"{p}: {what_a}={a.get(p)} {what_b}={b.get(p)}")
    return lines
