# SPDX-License-Identifier: BSD-2-Clause
"""Venvs made with Debian's python3 -m venv and Debian's pure-Python
packages, and the tools that pack and inspect them (sqvenvfs-pack,
sqvenvfs-inspect, whose paths meson sets in SQVENVFS_PACK and
SQVENVFS_INSPECT)."""

import os
import shutil
import subprocess

from .harness import check, check_error, require, run, skip
from .mounts import refuse

__all__ = [
    "SYS_PYTHON", "DIST", "PACK", "INSPECT", "require_python_venv",
    "require_pack_tools", "site_packages", "copy_pkg", "CONSOLE_SCRIPT",
    "add_console_script", "make_venv", "pack", "inspect", "refuse_image"
]

SYS_PYTHON = "/usr/bin/python3"
DIST = "/usr/lib/python3/dist-packages"
PACK = os.environ.get("SQVENVFS_PACK", "sqvenvfs-pack")
INSPECT = os.environ.get("SQVENVFS_INSPECT", "sqvenvfs-inspect")


def require_python_venv():
    """skip() when Debian's python3-venv is missing; fail (not skip) when it
    is there but does not import: that is a broken machine or a bug, and
    must not pass as "cannot run here"."""
    require(os.access(SYS_PYTHON, os.X_OK), f"{SYS_PYTHON} is not installed")
    r = subprocess.run([SYS_PYTHON, "-c", "import venv, ensurepip"],
                       capture_output=True, text=True)
    if r.returncode == 0:
        return
    # Debian ships ensurepip (and the venv wheels) in python3-venv only.
    if "No module named 'ensurepip'" in r.stderr:
        skip("Debian's python3-venv is not installed (no ensurepip module)")
    raise AssertionError(f"{SYS_PYTHON} -c 'import venv, ensurepip' exited "
                         f"{r.returncode}: {r.stderr.strip()}")


def require_pack_tools():
    """skip() unless the tools tests can make venvs and images: python3-venv,
    mksquashfs, and the Debian packages make_venv() copies."""
    require_python_venv()
    require(shutil.which("mksquashfs"), "mksquashfs (squashfs-tools) missing")
    for pkg in ("pyflakes", "toml", "six.py"):
        require(os.path.exists(os.path.join(DIST, pkg)),
                f"{DIST}/{pkg} missing (python3-pyflakes, python3-toml, "
                "python3-six)")


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
    """sqvenvfs-pack ARGS (see run())."""
    return run([PACK, *args], check=check, env=env)


def inspect(*args, check=True, **kw):
    """sqvenvfs-inspect ARGS (see run())."""
    return run([INSPECT, *args], check=check, **kw)


def refuse_image(label, img, mnt, want):
    """A damaged image refused everywhere: the mount (also -f; refuse():
    one line naming every string in want, nothing mounted at mnt, no
    daemon left), `sqvenvfs-inspect info` the same way, and `verify`
    exits 1 naming the image."""
    refuse(f"{label}: the mount", [img, mnt], want, mnt=mnt)
    refuse(f"{label}: the mount with -f", ["-f", img, mnt], want, mnt=mnt)
    r = subprocess.run([INSPECT, "info", img], capture_output=True, text=True)
    check_error(f"{label}: info", r, want, prefix="sqvenvfs-inspect: ")
    r = subprocess.run([INSPECT, "verify", img], capture_output=True, text=True)
    check(r.returncode == 1 and img in r.stderr, f"{label}: verify fails",
          r.stderr.strip())
