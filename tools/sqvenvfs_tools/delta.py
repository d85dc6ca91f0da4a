# SPDX-License-Identifier: BSD-2-Clause
"""Delta against a stack of base images: read the stack with
`sqvenvfs-inspect dump --hash`, prune from the staging copy what the stack
already shows, add whiteouts and opaque markers for what it lost."""

import os
import shutil
import signal
import stat
import subprocess
import threading

from .dumpfmt import Entry, parse_dump, type_letter
from .errors import TRAPPED, PackError
from .fsutil import sha256_file

WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
NAME_MAX = 255


def find_inspect(bindir):
    """sqvenvfs-inspect: SQVENVFS_INSPECT, else beside the running tool
    (in bindir, the build tree as once installed), else on PATH."""
    p = os.environ.get("SQVENVFS_INSPECT")
    if p:
        return p
    for cand in (os.path.join(bindir, "sqvenvfs-inspect"),):
        if os.access(cand, os.X_OK):
            return cand
    p = shutil.which("sqvenvfs-inspect")
    if not p:
        raise PackError("sqvenvfs-inspect: not found beside sqvenvfs-pack "
                        "nor on PATH (needed to check and seal the image)")
    return p



class BaseRead:
    """The merged tree of the base stack, read by `sqvenvfs-inspect dump
    --hash` beside the staging (on another core; it takes about as long):
    start() runs it, check() fails at once if it already failed (for the
    cheap points before the long work), tree() waits for it, and stop()
    ends and reaps it whatever state it is in. The owner holds the object
    before start(), so that its cleanup always finds the process."""

    def __init__(self, inspect, images):
        self.cmd = [inspect, "dump", "--hash"] + list(images)
        self.proc = None
        self.thread = None
        self.result = None          # (exit status, stdout, stderr)
        self._tree = None

    def start(self):
        # As for mksquashfs: a signal that interrupted Popen itself would
        # leave the process running unknown to us, and one during the
        # thread's start a thread stop() cannot tell started or not: they
        # wait until both are set (the child unblocks them before exec).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, TRAPPED)
        try:
            self.proc = subprocess.Popen(
                self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK,
                                                          mask))
            # its output is read as it comes, or a full pipe would stop it
            thread = threading.Thread(target=self._collect, daemon=True)
            thread.start()
            self.thread = thread
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def _collect(self):
        try:
            out, err = self.proc.communicate()
            self.result = (self.proc.returncode, out, err)
        except OSError as e:
            self.proc.kill()
            self.result = (1, b"", f"reading its output: {e.strerror}"
                           .encode())

    def check(self):
        """Raise the read's error if it has already failed."""
        if self.result is not None and self.result[0] != 0:
            self.tree()

    def tree(self, out=None):
        """bytes path -> Entry; out shows that this waits, if it does."""
        if self._tree is None:
            if out is not None and self.thread.is_alive():
                out.progress("reading base images ...", force=True)
            self.thread.join()
            self._tree = base_tree(*self.result)
        return self._tree

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        if self.thread is not None:
            self.thread.join()
        self.proc.wait()


def base_tree(status, stdout, stderr):
    """The merged tree from what `sqvenvfs-inspect dump --hash` gave, or
    its first line of error as one about --base."""
    if status != 0:
        msg = stderr.decode("utf-8", "replace").strip()
        msg = msg.splitlines()[0] if msg else \
            f"sqvenvfs-inspect dump: exit {status}"
        if msg.startswith("sqvenvfs-inspect: "):
            msg = msg[len("sqvenvfs-inspect: "):]
        raise PackError(f"--base: {msg}")
    return parse_dump(stdout.decode("ascii"))


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


def pyc_names(name, tag, levels):
    """The pyc names in __pycache__ for module file name (str, "x.py")."""
    return [f"{name[:-3]}.{tag}" + (f".opt-{lv}" if lv else "") + ".pyc"
            for lv in levels]


def sources_in_base(out, root, base, all_root, clamp, tag, levels):
    """Before byte-compiling a delta: the sources under root (relative
    paths, bytes) that the base stack holds as they are (type, mode,
    owner, mtime after the SOURCE_DATE_EPOCH clamp, content), with a pyc
    for every level, of the source's mtime as pack makes them, and the set
    of those pycs' base paths. A compile of such a source would give the
    base's pyc again (the compile does not depend on the process), so it
    is left out and the base's pycs show through the delta."""
    found, pycs = [], set()
    # progress against the base's modules, which bound the comparisons
    total = sum(1 for p in base if p.endswith(b".py"))
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and
                       not os.path.islink(os.path.join(dirpath, d))]
        rel = os.path.relpath(dirpath, root)
        bdir = b"" if rel == "." else b"/" + os.fsencode(rel)
        for n in filenames:
            if not n.endswith(".py"):
                continue
            b = base.get(bdir + b"/" + os.fsencode(n))
            if b is None or b.type != "f":
                continue
            seen += 1
            out.progress(f"comparing modules with the base images: {seen} "
                         f"of {total}")
            p = os.path.join(dirpath, n)
            a = staged_entry(p, all_root, False)
            if clamp is not None:
                a.mtime = min(a.mtime, clamp)
            names = [bdir + b"/__pycache__/" + os.fsencode(c)
                     for c in pyc_names(n, tag, levels)]
            if not all(base.get(c) is not None and base[c].type == "f"
                       and base[c].mtime == a.mtime for c in names):
                continue
            if a.type == "f" and same_entry(a, b, p):
                found.append(os.fsencode(os.path.relpath(p, root)))
                pycs.update(names)
    out.progress(f"comparing modules with the base images: {seen} of "
                 f"{total}", force=True)
    return found, pycs


class Delta:
    def __init__(self, out, root, base, all_root, from_base=(), total=0):
        """from_base: base paths the staged copy lacks on purpose (the
        pycs of sources_in_base()): shown by the base, not whiteouts;
        total: the staged entries, which progress counts towards."""
        self.out = out
        self.root = root
        self.base = base         # bytes path ("/a/b") -> Entry
        self.all_root = all_root
        self.from_base = set(from_base)
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
        self.total = total
        self.seen = 0

    def run(self):
        rootst = os.lstat(self.root)
        self._dir(self.root, b"/", force=False)
        os.utime(self.root, ns=(rootst.st_mtime_ns, rootst.st_mtime_ns))
        # what is below a new or opaque directory was dealt with at once
        self.seen = self.total
        self._progress(True)

    def _progress(self, force=False):
        self.out.progress("comparing with the base images: "
                          f"{self.seen} of {self.total} entries", force)

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
        shown = {n for n in bnames - snames
                 if path.rstrip(b"/") + b"/" + n in self.from_base}
        self.kept += len(shown)
        removed = sorted(bnames - snames - shown)
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
            self.seen += 1
            self._progress()
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
        if any(path.rstrip(b"/") + b"/" + n in self.from_base
               for n in self.children.get(path, [])):
            return True
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
