#!/usr/bin/python3
# SPDX-License-Identifier: BSD-2-Clause
"""sqvenvfs-pack: pack a Python venv (or conda prefix) into a squashfs image
that works when mounted at any path, or into a delta image over a stack of
base images.

What it promises:
  - VENV_DIR is only read, never written (its interpreter runs with -S -B);
  - everything happens in a private staging copy under TMPDIR (or /dev/shm
    when it fits), removed at the end whatever happens;
  - the image is written under a hidden temporary name beside IMAGE and
    renamed only when complete: a failed or interrupted run leaves no IMAGE;
  - the same input gives a byte-identical image (mtimes, owners, order and
    the creation time are all fixed by the input, or by SOURCE_DATE_EPOCH).

Standard library only: it runs on Debian's /usr/bin/python3 and drives the
venv's own interpreter (for compileall) and mksquashfs as subprocesses.
"""

import argparse
import hashlib
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time

PROG = "sqvenvfs-pack"
VERSION = "@VERSION@"

WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
NAME_MAX = 255
COMPRESSORS = ("zstd", "lz4", "xz", "gzip")


class PackError(Exception):
    """One line for the user: 'thing: reason'."""


class Interrupted(BaseException):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, _frame):
    raise Interrupted(signum)


# --------------------------------------------------------------------------
# Output: progress on a terminal only, warnings and errors always.

class Out:
    def __init__(self, quiet, verbose):
        self.quiet = quiet
        self.verbose = verbose
        self.tty = sys.stderr.isatty() and not quiet
        self._last = 0.0
        self._shown = False

    def progress(self, msg, force=False):
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        sys.stderr.write("\r\033[K" + msg[:200])
        sys.stderr.flush()
        self._shown = True

    def end_progress(self):
        if self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._shown = False

    def warn(self, msg):
        self.end_progress()
        print(f"{PROG}: warning: {msg}", file=sys.stderr)

    def info(self, msg):
        if not self.quiet:
            self.end_progress()
            print(msg)

    def detail(self, msg):
        if self.verbose and not self.quiet:
            self.end_progress()
            print(msg)


# --------------------------------------------------------------------------
# The dump format shared with `sqvenvfs-inspect dump`: one line per path,
# tab-separated: PATH TYPE MODE UID GID SIZE MTIME TARGET HASH.
# Bytes outside 0x20..0x7e, and the backslash, are written as \xHH.

def escape(b):
    out = []
    for c in b:
        if c == 0x5C or c < 0x20 or c > 0x7E:
            out.append("\\x%02x" % c)
        else:
            out.append(chr(c))
    return "".join(out)


def unescape(s):
    if "\\" not in s:
        return s.encode()
    out = bytearray()
    i = 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1:i + 2] == "x":
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        else:
            out += s[i].encode()
            i += 1
    return bytes(out)


class Entry:
    __slots__ = ("type", "mode", "uid", "gid", "size", "mtime", "target",
                 "hash")

    def __init__(self, type_, mode, uid, gid, size, mtime, target, hash_):
        self.type = type_
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.mtime = mtime
        self.target = target
        self.hash = hash_


def parse_dump(text):
    tree = {}
    for n, line in enumerate(text.splitlines(), 1):
        f = line.split("\t")
        if len(f) != 9:
            raise PackError(f"sqvenvfs-inspect dump: line {n}: "
                            f"expected 9 fields, got {len(f)}")
        tree[unescape(f[0])] = Entry(f[1], int(f[2], 8), int(f[3]),
                                     int(f[4]), int(f[5]), int(f[6]),
                                     unescape(f[7]) if f[7] else None,
                                     None if f[8] == "-" else f[8])
    return tree


def type_letter(m):
    if stat.S_ISREG(m):
        return "f"
    if stat.S_ISDIR(m):
        return "d"
    if stat.S_ISLNK(m):
        return "l"
    if stat.S_ISCHR(m):
        return "c"
    if stat.S_ISBLK(m):
        return "b"
    if stat.S_ISFIFO(m):
        return "p"
    return "s"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# --------------------------------------------------------------------------
# Inputs

def parse_size(s):
    m = re.fullmatch(r"(\d+)([KkMm]?)", s)
    if not m:
        raise PackError(f"--block-size {s}: not a size (e.g. 128K, 1M)")
    n = int(m.group(1)) * {"": 1, "k": 1024, "m": 1 << 20}[m.group(2).lower()]
    if n < 4096 or n > (1 << 20) or n & (n - 1):
        raise PackError(f"--block-size {s}: must be a power of two "
                        "from 4K to 1M")
    return n


def parse_levels(s):
    try:
        levels = sorted({int(x) for x in s.split(",") if x != ""})
    except ValueError:
        levels = []
    if not levels or any(x not in (0, 1, 2) for x in levels):
        raise PackError(f"--optimize {s}: give levels among 0,1,2 "
                        "(for example 0 or 0,1,2)")
    return levels


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


def find_mksquashfs():
    p = os.environ.get("SQVENVFS_MKSQUASHFS")
    if p:
        if not (os.path.isfile(p) and os.access(p, os.X_OK)):
            raise PackError(f"{p}: SQVENVFS_MKSQUASHFS is not an executable")
        return p
    p = shutil.which("mksquashfs")
    if not p:
        raise PackError("mksquashfs: not found (install Debian's "
                        "squashfs-tools, or set SQVENVFS_MKSQUASHFS)")
    return p


def find_inspect():
    p = os.environ.get("SQVENVFS_INSPECT")
    if p:
        return p
    here = os.path.dirname(os.path.realpath(__file__))
    for cand in (os.path.join(here, "sqvenvfs-inspect"),):
        if os.access(cand, os.X_OK):
            return cand
    p = shutil.which("sqvenvfs-inspect")
    if not p:
        raise PackError("sqvenvfs-inspect: not found beside sqvenvfs-pack "
                        "nor on PATH (needed to check and seal the image)")
    return p


def tree_size(root):
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                pass
    return total


def count_tree(root):
    files = links = 0
    dirs = 1
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            m = os.lstat(os.path.join(dirpath, n)).st_mode
            if stat.S_ISLNK(m):
                links += 1
            elif stat.S_ISDIR(m):
                dirs += 1
            else:
                files += 1
    return files, dirs, links


def pick_tmpdir(explicit, need):
    if explicit:
        return explicit
    if os.environ.get("TMPDIR"):
        return os.environ["TMPDIR"]
    try:
        st = os.statvfs("/dev/shm")
        if (os.access("/dev/shm", os.W_OK) and
                st.f_bavail * st.f_frsize > 2 * need + (256 << 20)):
            return "/dev/shm"
    except OSError:
        pass
    return tempfile.gettempdir()


# --------------------------------------------------------------------------
# Staging: a copy of the venv we are free to change.

class Stage:
    def __init__(self, out, src, dst, needles):
        self.out = out
        self.src = src
        self.dst = dst
        self.needles = needles      # venv path spellings, as bytes
        self.mtimes = {}            # staged dir path -> source mtime_ns
        self.pinned = []            # files whose bytes name the venv path
        self.skipped = []
        self.files = self.dirs = self.links = 0
        self.bytes = 0
        self._links = {}            # (dev, ino) -> staged path

    def copy(self):
        # VENV_DIR itself may be a symlink to the directory: follow it
        self._copy_dir(self.src, self.dst, os.stat(self.src))

    def _copy_dir(self, s, d, st):
        os.mkdir(d, 0o700)
        self.mtimes[d] = st.st_mtime_ns
        self.dirs += 1
        with os.scandir(s) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            sp = os.path.join(s, e.name)
            dp = os.path.join(d, e.name)
            if e.name.startswith(WH_PREFIX):
                raise PackError(f"{sp}: names starting with .wh. are "
                                "whiteouts in layered images: rename it")
            try:
                est = os.lstat(sp)
            except OSError as ex:
                raise PackError(f"{sp}: {ex.strerror}")
            m = est.st_mode
            if stat.S_ISDIR(m):
                self._copy_dir(sp, dp, est)
            elif stat.S_ISREG(m):
                self._copy_file(sp, dp, est)
            elif stat.S_ISLNK(m):
                os.symlink(os.readlink(sp), dp)
                os.utime(dp, ns=(est.st_mtime_ns, est.st_mtime_ns),
                         follow_symlinks=False)
                self.links += 1
            elif stat.S_ISFIFO(m):
                os.mkfifo(dp, stat.S_IMODE(m))
                os.utime(dp, ns=(est.st_mtime_ns, est.st_mtime_ns))
                self.files += 1
            else:
                self.skipped.append(sp)
                self.out.warn(f"{sp}: skipped (a socket or device node)")
        os.chmod(d, stat.S_IMODE(st.st_mode))

    def _copy_file(self, s, d, st):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self._links:
            os.link(self._links[key], d)
            self.files += 1
            return
        keep = max(len(n) for n in self.needles) - 1
        hit = False
        try:
            with open(s, "rb") as fi, open(d, "wb") as fo:
                tail = b""
                while True:
                    b = fi.read(1 << 20)
                    if not b:
                        break
                    fo.write(b)
                    if not hit:
                        w = tail + b
                        hit = any(n in w for n in self.needles)
                        tail = w[-keep:] if keep else b""
        except OSError as ex:
            raise PackError(f"{ex.filename or s}: {ex.strerror}")
        os.chmod(d, stat.S_IMODE(st.st_mode))
        os.utime(d, ns=(st.st_mtime_ns, st.st_mtime_ns))
        if st.st_nlink > 1:
            self._links[key] = d
        if hit:
            self.pinned.append(d)
        self.files += 1
        self.bytes += st.st_size
        self.out.progress(f"copying: {self.files} files, "
                          f"{self.bytes / 2**20:.0f} MiB")


# --------------------------------------------------------------------------
# Relocation: what ties the venv to the directory it was made in.

SHEBANG_MAX = 4096


def replace_file(path, data):
    """Give path new contents, keeping mode and mtime (a new inode, so a hard
    link elsewhere in the staging copy keeps the old bytes)."""
    st = os.lstat(path)
    tmp = path + ".sqv-tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, stat.S_IMODE(st.st_mode))
    os.utime(tmp, ns=(st.st_mtime_ns, st.st_mtime_ns))
    os.replace(tmp, path)


def inside(p, roots):
    for r in roots:
        if p == r or p.startswith(r + "/"):
            return r
    return None


class Relocator:
    def __init__(self, out, stage, venv_paths):
        self.out = out
        self.stage = stage
        self.root = stage.dst
        self.venv_paths = venv_paths    # str spellings of VENV_DIR
        self.rewritten = []             # (relpath, what)
        self.warnings = []              # (relpath, why)
        self.handled = set()

    def rel(self, p):
        return os.path.relpath(p, self.root)

    def staged_of(self, abspath):
        r = inside(abspath, self.venv_paths)
        return os.path.join(self.root, os.path.relpath(abspath, r))

    def run(self):
        bindir = os.path.join(self.root, "bin")
        if os.path.isdir(bindir):
            for name in sorted(os.listdir(bindir)):
                p = os.path.join(bindir, name)
                if os.path.isfile(p) and not os.path.islink(p):
                    self.shebang(p)
            self.activate(bindir)
        self.pth_files()
        self.symlinks()
        self.pyvenv_cfg()
        self.leftovers()

    # bin/ scripts -------------------------------------------------------

    def shebang(self, p):
        with open(p, "rb") as f:
            head = f.read(SHEBANG_MAX)
        if not head.startswith(b"#!"):
            return
        with open(p, "rb") as f:
            data = f.read()
        nl = data.find(b"\n")
        if nl < 0:
            return
        line = data[2:nl].decode("utf-8", "surrogateescape").strip()
        rest = data[nl + 1:]
        # pip's form for long paths: #!/bin/sh + '''exec' /venv/bin/python "$0" "$@"
        if line in ("/bin/sh", "/bin/bash") and rest.startswith(b"'''exec' "):
            nl2 = rest.find(b"\n")
            m = re.match(r"'''exec' (?:\"([^\"]+)\"|(\S+))(.*)$",
                         rest[:nl2].decode("utf-8", "surrogateescape"))
            if not m:
                return
            interp = m.group(1) or m.group(2)
            args = m.group(3).replace(' "$0" "$@"', "").strip()
            after = rest[nl2 + 1:]
            if after.startswith(b"' '''\n"):
                after = after[len(b"' '''\n"):]
            body = after
        else:
            parts = line.split(None, 1)
            if not parts:
                return
            interp = parts[0]
            args = parts[1] if len(parts) > 1 else ""
            body = rest
        if not inside(interp, self.venv_paths):
            return
        self.handled.add(p)
        base = os.path.basename(interp)
        if not base.startswith("python"):
            self.warnings.append((self.rel(p), f"shebang {interp} points into "
                                  "the venv but is not Python: not rewritten"))
            return
        target = self.staged_of(interp)
        relinterp = os.path.relpath(target, os.path.dirname(p))
        argstr = (" " + args) if args else ""
        header = ("#!/bin/sh\n"
                  "'''exec' \"$(dirname -- \"$(realpath -- \"$0\")\")/"
                  f"{relinterp}\"{argstr} \"$0\" \"$@\"\n"
                  "' '''\n").encode()
        replace_file(p, header + body)
        self.rewritten.append((self.rel(p), "shebang"))

    # activate scripts --------------------------------------------------

    ACTIVATE = {
        "activate": (
            r"^VIRTUAL_ENV=(.*)$",
            # bash and zsh know the file being sourced; other shells keep
            # the path the venv was made at.
            '# sqvenvfs-pack: the venv is wherever this file is.\n'
            'if [ -n "${BASH_VERSION:-}" ]; then\n'
            '    _sqv_here="${BASH_SOURCE[0]}"\n'
            'elif [ -n "${ZSH_VERSION:-}" ]; then\n'
            '    eval \'_sqv_here="${(%):-%x}"\'\n'
            'else\n'
            '    _sqv_here={ORIG}/bin/activate\n'
            'fi\n'
            'VIRTUAL_ENV="$(cd "$(dirname -- "$_sqv_here")/.." && pwd)"\n'
            'unset _sqv_here'),
        "activate.csh": (
            r"^setenv VIRTUAL_ENV (.*)$",
            '# sqvenvfs-pack: the venv is wherever this file is (tcsh).\n'
            'set _sqv_src = ($_)\n'
            'if ( $#_sqv_src >= 2 ) then\n'
            '    setenv VIRTUAL_ENV "`cd $_sqv_src[2]:h/.. && pwd`"\n'
            'else\n'
            '    setenv VIRTUAL_ENV {ORIG}\n'
            'endif\n'
            'unset _sqv_src'),
        "activate.fish": (
            r"^set -gx VIRTUAL_ENV (.*)$",
            '# sqvenvfs-pack: the venv is wherever this file is.\n'
            'set -gx VIRTUAL_ENV (command realpath (dirname (status -f))/..)'),
    }

    def activate(self, bindir):
        for name, (pattern, repl) in self.ACTIVATE.items():
            p = os.path.join(bindir, name)
            if not os.path.isfile(p) or os.path.islink(p):
                continue
            with open(p, "rb") as f:
                text = f.read().decode("utf-8", "surrogateescape")
            done = False

            def sub(m):
                nonlocal done
                val = m.group(1).strip()
                if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
                    val = val[1:-1]
                if val not in self.venv_paths:
                    return m.group(0)
                done = True
                return repl.replace("{ORIG}", shell_quote(val))

            new = re.sub(pattern, sub, text, count=1, flags=re.M)
            if done:
                self.handled.add(p)
                replace_file(p, new.encode("utf-8", "surrogateescape"))
                self.rewritten.append((self.rel(p), "VIRTUAL_ENV"))

    # .pth files -------------------------------------------------------

    def pth_files(self):
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            if not os.path.basename(dirpath) == "site-packages":
                continue
            for n in sorted(filenames):
                if n.endswith(".pth"):
                    self.pth(os.path.join(dirpath, n))

    def pth(self, p):
        if os.path.islink(p):
            return
        with open(p, "rb") as f:
            lines = f.read().decode("utf-8", "surrogateescape").split("\n")
        changed = False
        for i, line in enumerate(lines):
            s = line.rstrip("\r")
            if s.startswith(("import ", "import\t")):
                if any(v in s for v in self.venv_paths):
                    self.warnings.append((self.rel(p), "an import line names "
                                          "the venv path: not rewritten"))
                continue
            if not s.startswith("/"):
                continue
            if inside(os.path.normpath(s), self.venv_paths):
                target = self.staged_of(os.path.normpath(s))
                lines[i] = os.path.relpath(target, os.path.dirname(p))
                changed = True
            else:
                self.warnings.append((self.rel(p), f"adds {s}, outside the "
                                      "venv: it will not be in the image"))
        self.handled.add(p)
        if changed:
            replace_file(p, "\n".join(lines).encode("utf-8",
                                                    "surrogateescape"))
            self.rewritten.append((self.rel(p), ".pth path"))

    # symlinks with an absolute target inside the venv ---------------------

    def symlinks(self):
        for dirpath, dirnames, filenames in os.walk(self.root):
            for n in dirnames + filenames:
                p = os.path.join(dirpath, n)
                if not os.path.islink(p):
                    continue
                t = os.readlink(p)
                if t.startswith("/") and inside(os.path.normpath(t),
                                                self.venv_paths):
                    new = os.path.relpath(self.staged_of(os.path.normpath(t)),
                                          dirpath)
                    st = os.lstat(p)
                    os.unlink(p)
                    os.symlink(new, p)
                    os.utime(p, ns=(st.st_mtime_ns, st.st_mtime_ns),
                             follow_symlinks=False)
                    self.rewritten.append((self.rel(p), "symlink target"))

    def pyvenv_cfg(self):
        p = os.path.join(self.root, "pyvenv.cfg")
        if not os.path.isfile(p):
            return
        self.handled.add(p)
        for k, v in read_cfg(p[:-len("/pyvenv.cfg")]).items():
            if k == "command":
                continue    # a record of how the venv was made; unused
            if inside(v, self.venv_paths):
                self.warnings.append(("pyvenv.cfg", f"{k} = {v} points into "
                                      "the venv: Python needs it absolute"))

    def leftovers(self):
        for p in self.stage.pinned:
            if p in self.handled or not os.path.exists(p):
                continue
            if "/__pycache__/" in p and p.endswith(".pyc"):
                continue    # recompiled below; a stale one is harmless
            with open(p, "rb") as f:
                head = f.read(8192)
            if head.startswith(b"\x7fELF"):
                why = "compiled-in path to the venv: cannot be rewritten"
            elif b"\0" in head:
                why = "binary file naming the venv path: not rewritten"
            else:
                why = "text naming the venv path: not rewritten"
            self.warnings.append((self.rel(p), why))


def shell_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


# --------------------------------------------------------------------------
# Byte-compilation

def byte_compile(out, python, root, ddir, levels, jobs):
    """Compile every module under root with the venv's own interpreter into
    unchecked-hash pycs: valid whatever the mtimes in the image, so nothing
    ever tries to rewrite them. Returns (count of failures, first failure)."""
    cmd = [python, "-S", "-B", "-m", "compileall", "-f",
           "-j", str(jobs), "--invalidation-mode", "unchecked-hash",
           "-s", root]
    if ddir:
        cmd += ["-p", ddir]
    for lv in levels:
        cmd += ["-o", str(lv)]
    if len(levels) > 1:
        cmd.append("--hardlink-dupes")
    cmd.append(root)
    out.progress("byte-compiling ...", force=True)
    proc = subprocess.Popen(cmd, env=python_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    done = 0
    try:
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith("Compiling "):
                done += 1
                out.progress(f"byte-compiling: {done} modules")
            elif not line.startswith("Listing "):
                lines.append(line)
        proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    text = "\n".join(lines)
    failed = [l for l in lines if l.startswith("***")]
    if proc.returncode != 0 and not failed:
        raise PackError(f"{python} -m compileall: exit {proc.returncode}: "
                        + (text.strip().splitlines() or [""])[-1])
    first = None
    if failed:
        m = re.match(r"\*\*\*\s+(?:File \"(.*)\", line|Error compiling '(.*)')",
                     failed[0])
        first = (m.group(1) or m.group(2)) if m else failed[0]
        if first.startswith(root + "/"):
            first = first[len(root) + 1:]
    return len(failed), first


PYC_RE = re.compile(r"^(.+?)\.[^.]+(?:\.opt-[12])?\.pyc$")


def fix_times(stage, root, epoch, clamp):
    """Make every mtime a function of the input: pycs get their source's,
    directories their source directory's (new ones their parent's), and with
    SOURCE_DATE_EPOCH nothing is newer than it. Returns the newest mtime."""
    newest = 0
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for n in filenames + [d for d in dirnames
                              if os.path.islink(os.path.join(dirpath, d))]:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            t = st.st_mtime_ns
            if (os.path.basename(dirpath) == "__pycache__"
                    and stat.S_ISREG(st.st_mode)):
                m = PYC_RE.match(n)
                if m:
                    srcp = os.path.join(os.path.dirname(dirpath),
                                        m.group(1) + ".py")
                    try:
                        t = os.stat(srcp).st_mtime_ns
                    except OSError:
                        pass
            t = min(t, clamp * 10**9) if clamp is not None else t
            if t != st.st_mtime_ns:
                os.utime(p, ns=(t, t), follow_symlinks=False)
            newest = max(newest, t)
    # directories, deepest first (children already fixed)
    dirs = []
    for dirpath, dirnames, _ in os.walk(root):
        dirs.append(dirpath)
    for d in reversed(dirs):
        t = stage.mtimes.get(d)
        if t is None:
            parent = os.path.dirname(d)
            t = stage.mtimes.get(parent, os.lstat(parent).st_mtime_ns)
            stage.mtimes[d] = t
        t = min(t, clamp * 10**9) if clamp is not None else t
        os.utime(d, ns=(t, t))
        newest = max(newest, t)
    return newest // 10**9


# --------------------------------------------------------------------------
# Delta against a stack of base images

def staged_entry(p, all_root, want_hash):
    st = os.lstat(p)
    t = type_letter(st.st_mode)
    size = st.st_size if t in "fl" else 0
    if t in "cb":
        size = st.st_rdev
    target = os.fsencode(os.readlink(p)) if t == "l" else None
    h = sha256_file(p) if (t == "f" and want_hash) else None
    uid, gid = (0, 0) if all_root else (st.st_uid, st.st_gid)
    return Entry(t, stat.S_IMODE(st.st_mode), uid, gid, size,
                 int(st.st_mtime), target, h)


def same_entry(a, b, p):
    """Whether staged entry a at path p equals base entry b, so the base can
    show it: type, mode, owner, mtime, and size, symlink target or content
    (SHA-256) all equal. Comparing mtimes too keeps the merged view exact."""
    if (a.type != b.type or a.mode != b.mode or a.uid != b.uid
            or a.gid != b.gid or a.mtime != b.mtime):
        return False
    if a.type == "d":
        return True
    if a.type == "l":
        return a.target == b.target
    if a.type == "f":
        if a.size != b.size or b.hash is None:
            return False
        return sha256_file(p) == b.hash
    return a.size == b.size


class Delta:
    def __init__(self, out, root, base, all_root):
        self.out = out
        self.root = root
        self.base = base         # bytes path ("/a/b") -> Entry
        self.all_root = all_root
        self.children = {}
        for path in base:
            if path == b"/":
                continue
            parent, _, name = path.rpartition(b"/")
            self.children.setdefault(parent or b"/", []).append(name)
        self.added = self.changed = self.removed = self.kept = 0
        self.opaque = 0
        self.added_paths = []
        self._memo = {}

    def run(self):
        rootst = os.lstat(self.root)
        self._dir(self.root, b"/", force=False)
        os.utime(self.root, ns=(rootst.st_mtime_ns, rootst.st_mtime_ns))

    def _dir(self, d, path, force):
        """Prune d (staged path, base path `path`, a directory in both) of
        what the base already shows; add whiteouts. Returns True when d
        must stay in the delta."""
        dst = os.lstat(d)
        names = sorted(os.listdir(d))
        for n in names:
            if n.startswith(WH_PREFIX):
                raise PackError(f"{os.path.join(d, n)[len(self.root):]}: "
                                "names starting with .wh. are reserved for "
                                "whiteouts in layered images")
        bnames = set(self.children.get(path, []))
        snames = {os.fsencode(n) for n in names}
        removed = sorted(bnames - snames)
        keep = False
        # a directory that lost entries and keeps nothing of the base (no
        # file below it is unchanged), or whose whiteout names would be too
        # long, is replaced wholesale: opaque, no whiteouts
        if removed and (any(len(WH_PREFIX) + len(r) > NAME_MAX
                            for r in removed) or not self._shares(d, path)):
            self._mark_opaque(d)
            return True
        for n in names:
            p = os.path.join(d, n)
            bp = (path.rstrip(b"/") + b"/" + os.fsencode(n))
            b = self.base.get(bp)
            if b is None:
                self._count_added(p)
                keep = True
                continue
            a = staged_entry(p, self.all_root, False)
            if a.type == "d" and b.type == "d":
                if self._dir(p, bp, False):
                    keep = True
                elif a.mode == b.mode and a.uid == b.uid and a.gid == b.gid \
                        and a.mtime == b.mtime:
                    os.rmdir(p)
                    self.kept += 1
                else:
                    keep = True
                continue
            if a.type != "d" and self._same(a, b, p):
                os.unlink(p)
                self.kept += 1
                continue
            if a.type == "d":
                self._count_added(p)
            else:
                self.changed += 1
                self.added_paths.append(p)
            keep = True
        for r in removed:
            wh = os.path.join(d, WH_PREFIX + os.fsdecode(r))
            with open(wh, "wb"):
                pass
            os.chmod(wh, 0o644)
            os.utime(wh, ns=(dst.st_mtime_ns, dst.st_mtime_ns))
            self.removed += 1
            keep = True
        os.utime(d, ns=(dst.st_mtime_ns, dst.st_mtime_ns))
        return keep

    def _shares(self, d, path):
        """Whether anything below staged directory d is identical to the
        base's entry at the same path (so the base's copy is still used)."""
        for n in os.listdir(d):
            p = os.path.join(d, n)
            bp = path.rstrip(b"/") + b"/" + os.fsencode(n)
            b = self.base.get(bp)
            if b is None:
                continue
            a = staged_entry(p, self.all_root, False)
            if a.type == "d" and b.type == "d":
                if self._shares(p, bp):
                    return True
            elif self._same(a, b, p):
                return True
        return False

    def _same(self, a, b, p):
        key = (p, b.hash)
        if key not in self._memo:
            self._memo[key] = same_entry(a, b, p)
        return self._memo[key]

    def _mark_opaque(self, d):
        dst = os.lstat(d)
        wh = os.path.join(d, WH_OPAQUE)
        with open(wh, "wb"):
            pass
        os.chmod(wh, 0o644)
        os.utime(wh, ns=(dst.st_mtime_ns, dst.st_mtime_ns))
        os.utime(d, ns=(dst.st_mtime_ns, dst.st_mtime_ns))
        self.opaque += 1
        for n in os.listdir(d):
            if n != WH_OPAQUE:
                self._count_added(os.path.join(d, n))

    def _count_added(self, p):
        self.added += 1
        self.added_paths.append(p)


# --------------------------------------------------------------------------
# --hot: lay the image out hot-first from read traces (docs/tools.md).
#
# A trace (sqvenvfs -o record=FILE) lists the files a workload read, in the
# order it first read them. mksquashfs -sort writes file data by priority,
# highest first, so the traced files get priorities in trace order above
# every other file's 0: their data blocks come first in the image. Tails of
# small files go into fragment blocks, filled in the same order: the hot
# files' tails fill the first fragments, written as soon as they are full,
# among the hot data; only the last, partly filled hot fragment comes after
# the first cold blocks. The hot range recorded in the image covers it.
#
# The record (.sqvenvfs-hot in the root, lib/hot.h) is one block of
# incompressible bytes with the lowest priority: mksquashfs stores it
# uncompressed, after all other data, so its text can be written into the
# finished image in place, without moving a byte of anything else.

HOT_NAME = ".sqvenvfs-hot"
HOT_MAGIC = "sqvenvfs-hot 1"
TRACE_MAGIC = "sqvenvfs-trace 1"
MAX_RANGES = 256          # lib/hot.h SQV_HOT_MAX_RANGES
GAP = 256 * 1024          # cold bytes worth reading to save a request
PRIO_TOP = 32767
PRIO_RECORD = -32768


def read_trace(path):
    """[(path bytes, size)] of one trace, in its order."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise PackError(f"{path}: {e.strerror}")
    if not data:
        raise PackError(f"{path}: empty file, not a read trace")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise PackError(f"{path}: not a read trace (not text)")
    lines = text.split("\n")
    if lines[0] != TRACE_MAGIC:
        what = "a newer trace format" if lines[0].startswith(
            "sqvenvfs-trace ") else "not a read trace"
        raise PackError(f"{path}: {what} (first line {lines[0][:40]!r}, "
                        f"expected {TRACE_MAGIC!r})")
    if lines[-1] != "":
        raise PackError(f"{path}: truncated (the last line is cut)")
    out = []
    end = None
    for n, ln in enumerate(lines[1:-1], start=2):
        if ln.startswith("#"):
            continue
        if end is not None:
            raise PackError(f"{path}: line {n}: text after the 'end' line")
        if ln.startswith("end "):
            try:
                end = int(ln[4:])
            except ValueError:
                raise PackError(f"{path}: line {n}: a bad 'end' line")
            continue
        f = ln.split("\t")
        try:
            if len(f) != 3:
                raise ValueError("not three tab-separated fields")
            name = unescape(f[0])
            size = int(f[1])
            ranges = []
            for r in f[2].split(","):
                a, b = (int(x) for x in r.split("+"))
                if a < 0 or b <= 0:
                    raise ValueError("a bad byte range")
                ranges.append((a, b))
            if not name or name.startswith(b"/") or size < 0:
                raise ValueError("a bad path or size")
        except ValueError as e:
            raise PackError(f"{path}: line {n}: {e}")
        out.append((name, size, ranges))
    if end is None:
        raise PackError(f"{path}: truncated (no 'end' line)")
    if end != len(out):
        raise PackError(f"{path}: truncated ('end {end}' but {len(out)} "
                        "files)")
    return out


def read_traces(paths):
    """The traces' files, first-touch order of the first trace, then what
    the next ones add; each file once, with the byte ranges of all."""
    seen = {}
    for p in paths:
        for name, size, ranges in read_trace(p):
            if name in seen:
                seen[name][1].extend(ranges)
            else:
                seen[name] = (size, list(ranges))
    if not seen:
        raise PackError(f"{','.join(paths)}: the trace names no file")
    return [(n, size, ranges) for n, (size, ranges) in seen.items()]


class Plan:
    """Which traced files are in the staged tree, and the sort file."""

    def __init__(self, traces, entries):
        self.traces = traces
        self.entries = entries
        self.hot = []            # staged relative paths (bytes), in order
        self.missing = 0         # not in the tree
        self.changed = 0         # another size: a stale trace
        self.unsortable = 0      # a newline in the name: -sort cannot say it
        self.in_base = 0         # matched, but left to the base by a delta
        self.ranges = {}         # hot file -> byte ranges the workload read

    def match(self, root, label):
        """Keep the traced files that are regular files of root with the
        traced size. Fails when most of the trace does not fit root: a
        trace of another image."""
        for name, size, ranges in self.entries:
            p = os.path.join(os.fsencode(root), name)
            try:
                st = os.lstat(p)
            except OSError:
                self.missing += 1
                continue
            if not os.path.isfile(p) or os.path.islink(p):
                self.missing += 1
            elif st.st_size != size:
                self.changed += 1
            else:
                self.hot.append(name)
                self.ranges[name] = ranges
        if len(self.hot) * 2 < len(self.entries):
            raise PackError(
                f"{','.join(self.traces)}: {len(self.hot)} of "
                f"{len(self.entries)} traced files match {label} (a trace "
                "of another image?)")

    def keep_present(self, root):
        """After a delta dropped unchanged files: those still staged."""
        kept = [n for n in self.hot
                if os.path.isfile(os.path.join(os.fsencode(root), n))]
        self.in_base += len(self.hot) - len(kept)
        self.hot = kept

    def write_sort(self, root, sort_path, block_size, epoch):
        """The -sort file, and the record's placeholder in root."""
        broot = os.fsencode(os.path.abspath(root))
        rec = os.path.join(broot, HOT_NAME.encode())
        if os.path.lexists(rec):
            raise PackError(f"{HOT_NAME}: the tree already has one in its "
                            "root (a file of this name is reserved)")
        # The root's mtime is part of the tree: adding the record must not
        # change it.
        st = os.stat(broot)
        with open(rec, "wb") as f:
            f.write(placeholder(block_size))
        os.utime(rec, (epoch, epoch))
        os.utime(broot, ns=(st.st_atime_ns, st.st_mtime_ns))
        with open(sort_path, "wb") as f:
            prio = PRIO_TOP
            for name in self.hot:
                if b"\n" in name:
                    self.unsortable += 1
                    continue
                f.write(sort_escape(os.path.join(broot, name)) +
                        b" %d\n" % prio)
                prio = max(prio - 1, 1)
            f.write(sort_escape(rec) + b" %d\n" % PRIO_RECORD)


def sort_escape(p):
    """mksquashfs's sort file reads a backslash as "take the next byte"."""
    out = bytearray()
    for c in p:
        if c in b" \t\\":
            out.append(0x5C)
        out.append(c)
    return bytes(out)


def placeholder(n):
    """n bytes no compressor shrinks, the same every time (reproducible)."""
    out = bytearray()
    seed = b"sqvenvfs-hot placeholder"
    i = 0
    while len(out) < n:
        out += hashlib.sha256(seed + i.to_bytes(8, "little")).digest()
        i += 1
    return bytes(out[:n])


def parse_extents(text):
    """{path bytes: ([block (offset, size, uncompressed)], fragment or
    None)} from inspect extents; blocks in file order, a hole (0, 0)."""
    def one(e):
        a, b = e.rstrip("u").split("+")
        return int(a), int(b), e.endswith("u")
    out = {}
    for ln in text.split("\n"):
        if not ln:
            continue
        path, blocks, frag = ln.split("\t")
        out[unescape(path)] = ([one(e) for e in blocks.split(",")]
                               if blocks != "-" else [],
                               one(frag) if frag != "-" else None)
    return out


def read_extents(blocks, frag, ranges, block_size):
    """The stored blocks (and fragment) that hold the byte ranges read:
    a file read only in part (a library mapped by the loader) brings only
    the blocks that were read into the hot range."""
    out = set()
    for off, n in ranges:
        last = (off + n - 1) // block_size
        for i in range(off // block_size, min(last, len(blocks) - 1) + 1):
            if blocks[i][1]:
                out.add(blocks[i])
        if last >= len(blocks) and frag:
            out.add(frag)
    return out


def ranges_of(extents, gap=GAP, most=MAX_RANGES):
    """Sorted, merged (offset, length) ranges covering extents; gaps of up
    to gap bytes are read through, and more are merged until at most
    `most` ranges remain."""
    spans = sorted({(a, a + n) for a, n, _ in extents})
    merged = []
    for a, b in spans:
        if merged and a <= merged[-1][1] + gap:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    while len(merged) > most:
        i = min(range(len(merged) - 1),
                key=lambda k: merged[k + 1][0] - merged[k][1])
        merged[i][1] = merged[i + 1][1]
        del merged[i + 1]
    return [(a, b - a) for a, b in merged]


def write_record(image, inspect, plan, block_size):
    """Find where the hot files went in image and write the record in
    place. Returns (hot files placed, hot range bytes, number of ranges)."""
    r = subprocess.run([inspect, "extents", image], capture_output=True,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        msg = r.stderr.decode("utf-8", "replace").strip().splitlines()
        raise PackError(f"sqvenvfs-inspect extents: "
                        f"{msg[0] if msg else 'exit %d' % r.returncode}")
    ext = parse_extents(r.stdout.decode("ascii"))
    blocks, frag = ext.get(HOT_NAME.encode(), ([], None))
    if len(blocks) != 1 or frag or not blocks[0][2] or \
            blocks[0][1] != block_size:
        raise PackError(f"{image}: mksquashfs did not store {HOT_NAME} as "
                        "one uncompressed block; cannot record the hot range")
    rec = blocks
    hot = set()
    for n in plan.hot:
        if n in ext:
            hot |= read_extents(*ext[n], plan.ranges[n], block_size)
    rs = ranges_of(hot)
    text = (f"{HOT_MAGIC}\n# {len(plan.hot)} files, "
            f"{sum(n for _, n, _ in hot)} stored bytes read\n" +
            "".join(f"range {a} {n}\n" for a, n in rs) + "end\n").encode()
    if len(text) > block_size:
        raise PackError(f"{HOT_NAME}: {len(rs)} ranges do not fit one block")
    fd = os.open(image, os.O_WRONLY)
    try:
        os.pwrite(fd, text, rec[0][0])
    finally:
        os.close(fd)
    return len(plan.hot), sum(n for _, n in rs), len(rs)


# --------------------------------------------------------------------------
# The image

def run_mksquashfs(out, mksquashfs, src, dst, args, epoch, jobs, extra=()):
    cmd = [mksquashfs, src, dst, "-noappend", "-no-recovery", "-reproducible",
           "-comp", args.comp, *extra]
    if args.level is not None:
        cmd += ["-Xcompression-level", str(args.level)]
    cmd += ["-b", str(args.block_size), "-mkfs-time", str(epoch),
            "-no-xattrs", "-processors", str(jobs)]
    if not args.keep_owner:
        cmd.append("-all-root")
    # Not -quiet: it also hides the line mksquashfs prints when it leaves a
    # path out (check_image reads what it says).
    cmd += ["-no-progress"]
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    out.progress(f"writing the image ({args.comp}) ...", force=True)
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        o, e = proc.communicate()
    except BaseException:
        try:
            proc.terminate()
            proc.wait(timeout=10)
        except BaseException:
            proc.kill()
            proc.wait()
        raise
    if proc.returncode != 0:
        lines = [l for l in (e or b"").decode("utf-8", "replace").splitlines()
                 if l.strip()]
        why = lines[0] if lines else f"exit {proc.returncode}"
        for l in lines:
            if re.search(r"No space|ENOSPC|Failed to write|error", l, re.I):
                why = l
                break
        raise PackError(f"mksquashfs: {why.strip()}")
    finish_image(out, src, dst, (o or b"").decode("utf-8", "replace") + "\n"
                 + (e or b"").decode("utf-8", "replace"))


# --------------------------------------------------------------------------
# After mksquashfs: nothing left out, nothing warned about, then sealed.
#
# mksquashfs skips a path it cannot stat or read with one line on stdout
# ("Cannot stat dir/file ... because File name too long, ignoring", or
# "... creating empty file") and exits 0; under -quiet that line is not even
# printed. A silently incomplete image would reach users as a missing
# module, so either is an error here.

# What mksquashfs prints when it leaves something out or down. The
# summary's own lines (sizes, counts, the uid and gid names, indented)
# never match.
MKSQUASHFS_WARNING = re.compile(
    r"ignoring|[Ww]arning|Cannot |[Ff]ailed|[Ss]kipping|creating empty file|"
    r"[Ee]rror|[Uu]nrecognised")


def shorten(text, keep=160):
    return text if len(text) <= keep else text[:60] + " ... " + text[-90:]


def check_mksquashfs_output(text):
    """Refuse an image whose mksquashfs run printed a warning."""
    for line in text.splitlines():
        if line.startswith((" ", "\t")) or not MKSQUASHFS_WARNING.search(line):
            continue
        raise PackError(f"mksquashfs: {shorten(line.strip())}")


def tree_paths(src):
    """Every path under src, as the dump spells them (b"/a/b"). os.fwalk
    works from directory descriptors: a path longer than PATH_MAX is still
    seen, where a walk by path would skip it."""
    out = {b"/"}
    top = os.fsencode(src)
    for dirpath, dirnames, filenames, _fd in os.fwalk(top):
        rel = dirpath[len(top):]
        for name in dirnames + filenames:
            out.add(rel + b"/" + name)
    return out


def check_complete(inspect, src, image):
    """Refuse an image that lacks a path of src."""
    r = subprocess.run([inspect, "dump", "--raw", image],
                       stdin=subprocess.DEVNULL, capture_output=True)
    if r.returncode != 0:
        msg = r.stderr.decode("utf-8", "replace").strip().splitlines()
        raise PackError("cannot read back the new image: " +
                        (msg[0] if msg else f"exit {r.returncode}"))
    stored = parse_dump(r.stdout.decode("ascii"))
    missing = sorted(tree_paths(src) - set(stored))
    if missing:
        first = os.fsdecode(missing[0])
        raise PackError(f"mksquashfs left out {len(missing)} path(s) of "
                        f"the tree, the first: {shorten(first)}")


def seal_image(inspect, image):
    """Append the image's block digest table (docs/digests.md)."""
    r = subprocess.run([inspect, "seal", image], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, errors="replace")
    if r.returncode != 0:
        msg = r.stderr.strip().splitlines()
        raise PackError(msg[0] if msg else
                        f"sqvenvfs-inspect seal: exit {r.returncode}")


def finish_image(out, src, image, mksquashfs_output):
    check_mksquashfs_output(mksquashfs_output)
    inspect = find_inspect()
    out.progress("checking the image ...", force=True)
    check_complete(inspect, src, image)
    seal_image(inspect, image)


def publish(tmp_image, image, label, force):
    """Make the finished tmp_image IMAGE, all at once: never a partial
    IMAGE, and never over an existing one without force."""
    with open(tmp_image, "rb+") as f:
        os.fsync(f.fileno())
    if force:
        os.replace(tmp_image, image)
    else:
        try:
            os.link(tmp_image, image)
        except FileExistsError:
            raise PackError(f"{label}: appeared while packing "
                            "(use --force to replace it)")
        except OSError:
            if os.path.lexists(image):
                raise PackError(f"{label}: exists")
            os.replace(tmp_image, image)
        else:
            os.unlink(tmp_image)
    try:
        dfd = os.open(os.path.dirname(image), os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
    except OSError:
        pass


def temp_image(image, label, force):
    """Check IMAGE can be written; a hidden temporary file beside it."""
    if os.path.isdir(image):
        raise PackError(f"{label}: is a directory")
    if os.path.lexists(image) and not force:
        raise PackError(f"{label}: exists (use --force to replace it)")
    outdir = os.path.dirname(image)
    if not os.path.isdir(outdir):
        raise PackError(f"{outdir}: no such directory")
    try:
        fd, tmp = tempfile.mkstemp(
            dir=outdir, prefix="." + os.path.basename(image) + ".",
            suffix=".partial")
        os.close(fd)
    except OSError as e:
        raise PackError(f"{outdir}: cannot write: {e.strerror}")
    return tmp


def relayout(args, out, plan, cleanup):
    """--hot TRACE OLD.sqfs NEW.sqfs: the same tree, hot-first, without the
    venv: unpack OLD, pack it again with OLD's compression, block size,
    creation time and owners."""
    old = os.path.abspath(args.venv)
    image = os.path.abspath(args.image)
    if args.base:
        raise PackError("--base: not with an image to re-lay out (give "
                        "the venv to make a delta)")
    if os.path.realpath(old) == os.path.realpath(image):
        raise PackError(f"{args.image}: is also the image to re-lay out")
    comp, level, block_size, epoch = image_params(old)
    mksquashfs = find_mksquashfs()
    unsquashfs = shutil.which("unsquashfs")
    if not unsquashfs:
        raise PackError("unsquashfs: not found (install Debian's "
                        "squashfs-tools)")
    inspect = find_inspect()
    r = subprocess.run([inspect, "dump", old], stdin=subprocess.DEVNULL,
                       capture_output=True)
    if r.returncode != 0:
        msg = r.stderr.decode("utf-8", "replace").strip().splitlines()
        raise PackError(msg[0].split(": ", 1)[-1] if msg else
                        f"{args.venv}: cannot read it")
    owners = {(e.uid, e.gid) for e in
              parse_dump(r.stdout.decode("ascii")).values()}
    all_root = owners <= {(0, 0)}
    if not all_root and os.geteuid() != 0:
        raise PackError(f"{args.venv}: has files not owned by root; "
                        "re-laying it out keeps owners, which needs root")
    tmp_image = temp_image(image, args.image, args.force)
    cleanup.append(tmp_image)
    tmpbase = pick_tmpdir(args.tmpdir, 3 * os.path.getsize(old))
    try:
        stage_top = tempfile.mkdtemp(prefix="sqvenvfs-pack.", dir=tmpbase)
    except OSError as e:
        raise PackError(f"{tmpbase}: cannot make a staging directory: "
                        f"{e.strerror}")
    cleanup.append(stage_top)
    root = os.path.join(stage_top, "root")
    out.progress(f"unpacking {args.venv} ...", force=True)
    r = subprocess.run([unsquashfs, "-no-progress", "-no-xattrs", "-d", root,
                        old], stdin=subprocess.DEVNULL, capture_output=True)
    if r.returncode != 0:
        msg = [ln for ln in r.stderr.decode("utf-8", "replace").splitlines()
               if ln.strip()]
        raise PackError(f"unsquashfs {args.venv}: "
                        f"{msg[0] if msg else 'exit %d' % r.returncode}")
    rec = os.path.join(root, HOT_NAME)
    if os.path.lexists(rec):
        st = os.stat(root)
        os.unlink(rec)  # OLD's own record: replaced below
        os.utime(root, ns=(st.st_atime_ns, st.st_mtime_ns))
    plan.match(root, args.venv)
    sort_file = os.path.join(stage_top, "sort")
    plan.write_sort(root, sort_file, block_size, epoch)
    params = argparse.Namespace(comp=comp, level=level, block_size=block_size,
                                keep_owner=not all_root)
    run_mksquashfs(out, mksquashfs, root, tmp_image, params, epoch,
                   args.jobs, ["-sort", sort_file])
    hot = write_record(tmp_image, inspect, plan, block_size)
    # The record was written into the image: digest it afresh.
    seal_image(inspect, tmp_image)
    publish(tmp_image, image, args.image, args.force)
    cleanup.remove(tmp_image)
    out.end_progress()
    out.info(f"{PROG}: {args.image}: {args.venv} laid out hot-first "
             f"({human(os.path.getsize(image))}, {comp}, "
             f"{block_size // 1024} KiB blocks)")
    hot_summary(out, plan, hot, "the image")
    return 0


def hot_summary(out, plan, hot, where):
    files, nbytes, nranges = hot
    notes = [f"{plan.missing} not in {where}", f"{plan.changed} changed"]
    if plan.in_base:
        notes.append(f"{plan.in_base} in the base")
    if plan.unsortable:
        notes.append(f"{plan.unsortable} unsortable")
    out.info(f"  hot: {files} files first ({', '.join(notes)}; ignored); "
             f"hot range {human(nbytes)} in {nranges} range(s)")


def image_params(path):
    """(compression, level or None, block size, creation time) of a
    squashfs image, from its superblock and compression options."""
    comps = {1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"}
    try:
        with open(path, "rb") as f:
            sb = f.read(96)
            opts = f.read(2 + 64)
    except OSError as e:
        raise PackError(f"{path}: {e.strerror}")
    if len(sb) < 96 or sb[:4] != b"hsqs":
        raise PackError(f"{path}: not a squashfs image")
    (_, _, mtime, block_size, _, comp, _, flags, _, major) = \
        struct.unpack_from("<IIIIIHHHHH", sb)
    if major != 4 or comp not in comps or comps[comp] not in COMPRESSORS:
        raise PackError(f"{path}: a squashfs image this tool cannot write "
                        f"again (version {major}, compression {comp})")
    level = None
    if flags & 0x0400 and comps[comp] in ("zstd", "gzip") and len(opts) >= 6:
        # an uncompressed metadata block: a 2-byte header, then the options,
        # which for both start with the compression level
        level = struct.unpack_from("<i", opts, 2)[0]
    return comps[comp], level, block_size, mtime


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def main(argv):
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Pack a Python venv (or conda prefix) into a squashfs "
                    "image that works mounted at any path; with --base, "
                    "write only what differs from a stack of base images.")
    ap.add_argument("venv", metavar="VENV_DIR",
                    help="the venv; with --hot, may be an image instead "
                         "(OLD.sqfs NEW.sqfs: re-lay it out)")
    ap.add_argument("image", metavar="IMAGE")
    ap.add_argument("--hot", metavar="TRACE[,TRACE...]",
                    help="write the files these read traces (sqvenvfs -o "
                         "record=) name first, and record the hot range "
                         "that the daemon prefetches")
    ap.add_argument("--base", action="append", default=[], metavar="IMAGE",
                    help="base image (repeat, bottom first): write a delta")
    ap.add_argument("--comp", choices=COMPRESSORS, default="zstd",
                    help="compressor (default zstd)")
    ap.add_argument("--level", type=int, default=None,
                    help="compression level (zstd 1-22, default 3; "
                         "gzip 1-9)")
    ap.add_argument("--block-size", default="128K",
                    help="data block size, 4K to 1M (default 128K)")
    ap.add_argument("--optimize", default="0", metavar="LEVELS",
                    help="byte-compile for these optimisation levels, "
                         "e.g. 0,1,2 (default 0)")
    ap.add_argument("--no-compile", action="store_true",
                    help="do not byte-compile")
    ap.add_argument("--mount-point", metavar="PATH",
                    help="where the image will usually be mounted: the path "
                         "recorded in pycs (default: paths relative to the "
                         "venv, so pycs do not depend on where it was made)")
    ap.add_argument("--keep-owner", action="store_true",
                    help="keep file owners (default: all owned by root)")
    ap.add_argument("--tmpdir", metavar="DIR",
                    help="staging directory (default TMPDIR, or /dev/shm "
                         "when it has room)")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                    help="parallel processes (default: number of CPUs)")
    ap.add_argument("-f", "--force", action="store_true",
                    help="replace IMAGE if it exists")
    ap.add_argument("-q", "--quiet", action="store_true",
                    help="print only warnings and errors")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="list every file rewritten or added")
    ap.add_argument("--version", action="version",
                    version=f"{PROG} {VERSION}")
    args = ap.parse_args(argv)

    out = Out(args.quiet, args.verbose)
    t0 = time.monotonic()
    tmp_image = None
    stage_top = None
    cleanup = []   # what relayout leaves to remove, whatever happens
    try:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, _on_signal)
        args.block_size = parse_size(args.block_size)
        levels = parse_levels(args.optimize)
        if args.level is not None:
            if args.comp == "zstd" and not 1 <= args.level <= 22:
                raise PackError(f"--level {args.level}: zstd takes 1 to 22")
            if args.comp == "gzip" and not 1 <= args.level <= 9:
                raise PackError(f"--level {args.level}: gzip takes 1 to 9")
            if args.comp in ("lz4", "xz"):
                raise PackError(f"--level: not supported with {args.comp}")
        elif args.comp == "zstd":
            args.level = 3
        if args.jobs < 1:
            raise PackError(f"--jobs {args.jobs}: must be at least 1")
        plan = None
        if args.hot:
            # Read the traces first: a bad one fails before the long work.
            traces = [t for t in args.hot.split(",") if t]
            if not traces:
                raise PackError("--hot: give one or more trace files")
            plan = Plan(traces, read_traces(traces))
            if os.path.isfile(args.venv):
                return relayout(args, out, plan, cleanup)

        venv = os.path.abspath(args.venv)
        kind = venv_kind(venv)
        origin = made_at(venv)
        venv_paths = sorted({venv, os.path.realpath(venv)} |
                            ({origin} if origin else set()), key=len,
                            reverse=True)
        image = os.path.abspath(args.image)
        if inside(image, venv_paths) or inside(os.path.realpath(image),
                                               venv_paths):
            raise PackError(f"{args.image}: must not be inside {args.venv}")
        mksquashfs = find_mksquashfs()
        base = None
        if args.base:
            for b in args.base:
                if not os.path.isfile(b):
                    raise PackError(f"{b}: no such image")
                if os.path.realpath(b) == os.path.realpath(image):
                    raise PackError(f"{b}: is also the output IMAGE")
        if args.base or plan is not None:
            inspect = find_inspect()
        python = None
        tag = version = None
        cfg = read_cfg(venv)
        if not args.no_compile:
            python = find_interpreter(venv)
            if not python:
                raise PackError(f"{venv}/bin/python3: missing; cannot "
                                "byte-compile (use --no-compile)")
            tag, version = interpreter_info(python)
        version = version or cfg.get("version") or cfg.get("version_info")

        tmp_image = temp_image(image, args.image, args.force)

        # Read the base stack first: a bad base fails before the long work.
        if args.base:
            out.progress("reading base images ...", force=True)
            r = subprocess.run([inspect, "dump", "--hash"] + args.base,
                               stdin=subprocess.DEVNULL, capture_output=True)
            if r.returncode != 0:
                msg = r.stderr.decode("utf-8", "replace").strip()
                msg = msg.splitlines()[0] if msg else \
                    f"sqvenvfs-inspect dump: exit {r.returncode}"
                if msg.startswith("sqvenvfs-inspect: "):
                    msg = msg[len("sqvenvfs-inspect: "):]
                raise PackError(f"--base: {msg}")
            base = parse_dump(r.stdout.decode("ascii"))

        need = tree_size(venv)
        tmpbase = pick_tmpdir(args.tmpdir, need)
        try:
            stage_top = tempfile.mkdtemp(prefix="sqvenvfs-pack.", dir=tmpbase)
        except OSError as e:
            raise PackError(f"{tmpbase}: cannot make a staging directory: "
                            f"{e.strerror}")
        root = os.path.join(stage_top, "root")
        stage = Stage(out, venv, root, [os.fsencode(v) for v in venv_paths])
        stage.copy()
        out.progress("relocating ...", force=True)
        reloc = Relocator(out, stage, venv_paths)
        reloc.run()

        nfail = 0
        if not args.no_compile:
            nfail, first = byte_compile(out, python, root,
                                        args.mount_point, levels, args.jobs)
            if nfail:
                out.warn(f"{nfail} file(s) could not be byte-compiled "
                         f"(syntax errors for this Python), first: {first}")

        clamp = None
        if os.environ.get("SOURCE_DATE_EPOCH"):
            try:
                clamp = int(os.environ["SOURCE_DATE_EPOCH"])
                if clamp < 0 or clamp >= 2**32:
                    raise ValueError
            except ValueError:
                raise PackError("SOURCE_DATE_EPOCH: not a time in seconds "
                                "(0 to 4294967295)")
        newest = fix_times(stage, root, None, clamp)
        nfiles, ndirs, nlinks = count_tree(root)
        size_view = tree_size(root)
        epoch = clamp if clamp is not None else max(0, min(newest, 2**32 - 1))

        if plan is not None:
            plan.match(root, args.venv)

        delta = None
        if base is not None:
            out.progress("comparing with the base images ...", force=True)
            delta = Delta(out, root, base, not args.keep_owner)
            delta.run()

        size_before = tree_size(root)
        extra = []
        if plan is not None:
            plan.keep_present(root)
            sort_file = os.path.join(stage_top, "sort")
            plan.write_sort(root, sort_file, args.block_size, epoch)
            extra = ["-sort", sort_file]
        run_mksquashfs(out, mksquashfs, root, tmp_image, args, epoch,
                       args.jobs, extra)
        hot = None
        if plan is not None:
            hot = write_record(tmp_image, inspect, plan, args.block_size)
            # The record was written into the image: digest it afresh.
            seal_image(inspect, tmp_image)
        size_after = os.path.getsize(tmp_image)
        publish(tmp_image, image, args.image, args.force)
        tmp_image = None

        # Report
        for rel, what in reloc.rewritten:
            out.detail(f"rewritten: {rel} ({what})")
        shown = 0
        for rel, why in reloc.warnings:
            if shown == 20 and not args.verbose:
                out.warn(f"... and {len(reloc.warnings) - 20} more "
                         "(see --verbose)")
                break
            out.warn(f"{rel}: {why}")
            shown += 1
        kinds = {}
        for _, what in reloc.rewritten:
            kinds[what] = kinds.get(what, 0) + 1
        dt = time.monotonic() - t0
        what = f"{kind}" + (f", Python {version}" if version else "")
        out.info(f"{PROG}: {args.image}: packed {args.venv} ({what})")
        if origin and origin not in (venv, os.path.realpath(venv)):
            out.info(f"  made at: {origin} (its paths rewritten too)")
        out.info(f"  entries: {nfiles} files, {ndirs} directories, "
                 f"{nlinks} symlinks ({human(size_view)})")
        if delta is not None:
            out.info(f"  delta over {len(args.base)} base image(s): "
                     f"{delta.added} added, {delta.changed} changed, "
                     f"{delta.removed} removed (whiteouts), {delta.opaque} "
                     f"replaced directories (opaque), {delta.kept} unchanged")
            for p in delta.added_paths:
                out.detail(f"in delta: {os.path.relpath(p, root)}")
        out.info("  relocated: " + (", ".join(
            f"{n} {k}" for k, n in sorted(kinds.items())) or "nothing needed")
            + (f"; {len(reloc.warnings)} warning(s)" if reloc.warnings else ""))
        if not args.no_compile:
            out.info(f"  byte-compiled for {tag}, optimisation "
                     f"{','.join(map(str, levels))} (unchecked-hash pycs)"
                     + (f"; {nfail} failed" if nfail else ""))
        comp = args.comp + (f" level {args.level}" if args.level else "")
        out.info(f"  size: {human(size_before)} staged -> {human(size_after)} "
                 f"image ({comp}, {args.block_size // 1024} KiB blocks) "
                 f"in {dt:.1f} s")
        if hot is not None:
            hot_summary(out, plan, hot, "the venv")
        if kind == "venv" and cfg.get("home"):
            out.info(f"  needs: the base interpreter in {cfg['home']} "
                     "on the machine that mounts it")
        return 0
    except PackError as e:
        out.end_progress()
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except Interrupted as e:
        out.end_progress()
        print(f"{PROG}: interrupted by {signal.Signals(e.signum).name}; "
              "nothing written", file=sys.stderr)
        return 128 + e.signum
    except OSError as e:
        out.end_progress()
        print(f"{PROG}: {e.filename or 'error'}: {e.strerror}",
              file=sys.stderr)
        return 1
    finally:
        # cleanup must survive a second signal
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        if tmp_image:
            try:
                os.unlink(tmp_image)
            except OSError:
                pass
        if stage_top:
            shutil.rmtree(stage_top, ignore_errors=True)
        for p in cleanup:
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                try:
                    os.unlink(p)
                except OSError:
                    pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
