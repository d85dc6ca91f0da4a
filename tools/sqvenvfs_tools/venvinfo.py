# SPDX-License-Identifier: BSD-2-Clause
"""What VENV_DIR is: a venv or a conda prefix, where it was made, its
interpreter, and how to run that interpreter so it neither writes into
VENV_DIR nor depends on the caller's PYTHON* settings."""

import os
import re
import subprocess

from .errors import PackError

def venv_kind(venv):
    if not os.path.exists(venv):
        raise PackError(f"{venv}: no such directory")
    if not os.path.isdir(venv):
        raise PackError(f"{venv}: not a directory")
    if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
        return "venv"
    if os.path.isdir(os.path.join(venv, "conda-meta")):
        return "conda"
    raise PackError(f"{venv}: not a Python venv (no pyvenv.cfg) "
                    "nor a conda prefix (no conda-meta/)")


def read_cfg(venv):
    cfg = {}
    try:
        with open(os.path.join(venv, "pyvenv.cfg"), encoding="utf-8",
                  errors="replace") as f:
            for line in f:
                k, sep, v = line.partition("=")
                if sep:
                    cfg[k.strip().lower()] = v.strip()
    except OSError:
        pass
    return cfg


def made_at(venv):
    """Where the venv was made, as its bin/activate records it: a venv
    copied or moved elsewhere still names that path, and it is rewritten
    like the venv's own."""
    try:
        with open(os.path.join(venv, "bin", "activate"), "rb") as f:
            text = f.read(1 << 16).decode("utf-8", "surrogateescape")
    except OSError:
        return None
    m = re.search(r"^VIRTUAL_ENV=(.*)$", text, re.M)
    if not m:
        return None
    v = m.group(1).strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        v = v[1:-1]
    if not v.startswith("/") or "$" in v or "`" in v:
        return None
    v = os.path.normpath(v)
    return v if v != "/" else None


def find_interpreter(venv):
    for name in ("python3", "python"):
        p = os.path.join(venv, "bin", name)
        if os.path.exists(p) and os.access(p, os.X_OK):
            return p
    return None


def python_env():
    """Environment for the venv's interpreter: none of the caller's PYTHON*
    settings, and a fixed hash seed so that marshalled sets are stable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    return env


def interpreter_info(python):
    try:
        r = subprocess.run(
            [python, "-S", "-B", "-c",
             "import sys; print(sys.implementation.cache_tag or '-', "
             "sys.version.split()[0])"],
            env=python_env(), stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=120)
    except OSError as e:
        raise PackError(f"{python}: cannot run: {e.strerror}; "
                        "use --no-compile to pack without byte-compiling")
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
        raise PackError(f"{python}: cannot run: {why}; use --no-compile "
                        "to pack without byte-compiling")
    tag, version = r.stdout.split()
    return tag, version
