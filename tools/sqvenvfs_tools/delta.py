# SPDX-License-Identifier: BSD-2-Clause
"""Delta against a stack of base images: read the stack's listing with
`sqvenvfs-inspect dump`, leave out of staging what it already holds (rsync's
quick check), prune from the staging copy what the stack already shows, add
whiteouts and opaque markers for what it lost. File contents are compared
(`dump --hash`) only where the quick check cannot tell, or with --checksum."""

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



def check_bases(bases, image):
    """--base: each an existing image, none of them the output IMAGE."""
    for b in bases:
        if not os.path.exists(b):
            raise PackError(f"--base: {b}: no such image" +
                            (" (a dangling symlink)" if os.path.islink(b)
                             else ""))
        if os.path.isdir(b):
            raise PackError(f"--base: {b}: a directory, not an image (the "
                            "base is the image it was packed into)")
        if not os.path.isfile(b):
            raise PackError(f"--base: {b}: not a file")
        if os.path.realpath(b) == os.path.realpath(image):
            raise PackError(f"--base: {b}: is also the output IMAGE")


class BaseRead:
    """The merged tree of the base stack, read by `sqvenvfs-inspect dump`
    (with hashes: --hash, which reads every file and takes about as long as
    staging the venv) in a process of its own: start() runs it, check()
    fails at once if it already failed (for the cheap points before the
    long work), tree() waits for it, and stop() ends and reaps it whatever
    state it is in. The owner holds the object before start(), so that its
    cleanup always finds the process."""

    def __init__(self, inspect, images, hashes=True):
        self.cmd = [inspect, "dump"] + (["--hash"] if hashes else []) + \
            list(images)
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

    def tree(self, out=None, what="reading base images"):
        """bytes path -> Entry; out shows that this waits, if it does."""
        if self._tree is None:
            if out is not None and self.thread.is_alive():
                out.progress(what + " ...", force=True)
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


class BaseStack:
    """The base stack of a delta: its listing (type, mode, owner, size,
    mtime and symlink target of every path), and the SHA-256 of its files,
    read only if a comparison needs one: with --checksum, or where
    SOURCE_DATE_EPOCH clamps mtimes (both read at start(), beside the
    staging), or on a file whose quick check cannot decide (on demand)."""

    def __init__(self, out, inspect, images, checksum, clamp):
        self.out = out
        self.inspect = inspect
        self.images = list(images)
        self.checksum = checksum
        self.clamp = clamp
        self.listing = None         # BaseRead without hashes
        self.hashes = None          # BaseRead with them
        self._tree = None
        self.compared = set()       # base paths compared by content

    def start(self):
        if not self.checksum:
            self.listing = BaseRead(self.inspect, self.images, hashes=False)
            self.listing.start()
        if self.checksum or self.clamp is not None:
            self._start_hashes()

    def _start_hashes(self):
        self.hashes = BaseRead(self.inspect, self.images)
        self.hashes.start()

    def check(self):
        """Raise a read's error if it has already failed."""
        for r in (self.listing, self.hashes):
            if r is not None:
                r.check()

    def tree(self):
        """bytes path -> Entry (hash None unless --checksum)."""
        if self._tree is None:
            read = self.listing or self.hashes
            self._tree = read.tree(self.out)
        return self._tree

    def content_hash(self, path):
        """The SHA-256 (hex) of the base's file at path, or None."""
        self.compared.add(path)
        if self.hashes is None:
            self._start_hashes()
        e = self.hashes.tree(self.out, "reading base images' contents") \
            .get(path)
        return e.hash if e is not None else None

    def stop(self):
        for r in (self.listing, self.hashes):
            if r is not None:
                r.stop()


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


def same_entry(a, b, p, content_hash, quick=None):
    """Whether staged entry a at path p equals base entry b, so the base can
    show it: type, mode, owner, mtime, and size, symlink target or content
    all equal. Comparing mtimes too keeps the merged view exact. For a
    file, quick(p, a) may vouch for the content (QuickCheck.vouches);
    otherwise content_hash() gives the base's SHA-256 to compare."""
    if (a.type != b.type or a.mode != b.mode or a.uid != b.uid
            or a.gid != b.gid or a.mtime != b.mtime):
        return False
    if a.type == "d":
        return True
    if a.type == "l":
        return a.target == b.target
    if a.type == "f":
        if a.size != b.size:
            return False
        if quick is not None and quick(p, a):
            return True
        h = content_hash()
        return h is not None and sha256_file(p) == h
    return a.size == b.size


class QuickCheck:
    """rsync's quick check against the base stack's listing: a file whose
    type, mode, owner, size and mtime are those of the base's entry at its
    path is taken as unchanged, unless its mtime falls in or after the
    base's newest second (the base may have been written in the second
    the file changed again) or is clamped by SOURCE_DATE_EPOCH (every
    clamped file shows the same mtime): those are compared by content.

    It applies twice. Before staging, skips() leaves out of the copy the
    venv's files that the base holds as they are (and, for an unchanged
    module, its pycs, which the base holds for its mtime and which compile
    would make again); their base paths collect in `skipped`, for the delta
    to show through. After relocation, vouches() settles the files whose
    staged bytes the tool rewrote (shebangs, activate scripts): their
    mtime is still the venv file's own, so equal mtime and size there mean
    an unchanged input to the same rewrite. A pyc's mtime is its source's,
    not its own, so a staged pyc is always compared by content.

    The rule assumes what the full comparison does not: mtimes that move
    when a file changes, and a delta packed with the base's --mount-point
    and --optimize. --checksum compares every file by content instead."""

    def __init__(self, tree, clamp, tag, levels):
        self.tree = tree
        newest = max((e.mtime for e in tree.values()), default=0)
        self.limit = newest if clamp is None else min(newest, clamp)
        self.tag = tag
        self.levels = levels
        self.skipped = set()    # base paths (bytes) left to the base
        self.sources = 0        # modules skipped with their pycs
        self.files = self.bytes = 0
        self.newest = 0         # of the files skipped (ns), for the epoch
        self.vouched = set()    # staged files vouches() settled
        self._pycs = {}         # base path of a __pycache__ -> names

    def _unchanged(self, path, st, mode):
        b = self.tree.get(path)
        t = st.st_mtime_ns // 10**9
        return (b is not None and b.type == "f" and t < self.limit
                and b.mtime == t and b.size == st.st_size
                and b.mode == mode(stat.S_IMODE(st.st_mode))
                and b.uid == 0 and b.gid == 0)

    def skips(self, src, path, entries, mode):
        """The names of the venv directory src (base path `path`, b"" for
        the root; entries: (DirEntry, lstat) pairs) that staging leaves
        to the base. Only for all-root images: the staged owner is then
        root whoever packs (see Pack.stage_venv)."""
        pycache = path.endswith(b"/__pycache__")
        # a __pycache__'s names were chosen with its modules, in the parent
        names = self._pycs.pop(path, set()) if pycache else set()
        for e, st in entries:
            if pycache or not stat.S_ISREG(st.st_mode):
                continue
            bp = path + b"/" + os.fsencode(e.name)
            if not self._unchanged(bp, st, mode):
                continue
            if e.name.endswith(".py") and self.tag:
                pycs = self._pycs_of(src, path, e.name, st, mode)
                if pycs is None:
                    continue
                self._pycs.setdefault(path + b"/__pycache__",
                                      set()).update(pycs)
                self.skipped.update(path + b"/__pycache__/" +
                                    os.fsencode(c) for c in pycs)
                self.sources += 1
            names.add(e.name)
            self.skipped.add(bp)
        for e, st in entries:
            if e.name in names:
                self.files += 1
                self.bytes += st.st_size
                if not pycache:     # a pyc's time is its module's
                    self.newest = max(self.newest, st.st_mtime_ns)
        return names

    def _pycs_of(self, src, path, name, st, mode):
        """The pyc names of an unchanged module that the base holds, for
        every level, with the module's mtime, and that the venv has with
        the base's size and mode or not at all; None when any is not so
        (the module is staged and compiled as usual). The venv's
        __pycache__ must exist: without it, the base's pycs of removed
        modules would stay unseen by the delta's whiteouts."""
        t = st.st_mtime_ns // 10**9
        cache = os.path.join(src, "__pycache__")
        names = []
        for c in pyc_names(name, self.tag, self.levels):
            b = self.tree.get(path + b"/__pycache__/" + os.fsencode(c))
            if b is None or b.type != "f" or b.mtime != t:
                return None
            try:
                pst = os.lstat(os.path.join(cache, c))
            except FileNotFoundError:
                if not os.path.isdir(cache) or os.path.islink(cache):
                    return None
                pst = None
            except OSError:
                return None
            if pst is not None and (
                    not stat.S_ISREG(pst.st_mode) or pst.st_size != b.size
                    or b.mode != mode(stat.S_IMODE(pst.st_mode))):
                return None
            names.append(c)
        return names

    def vouches(self, p, a):
        """Whether staged file p (entry a, equal in type, mode, owner,
        mtime and size to the base's) is unchanged without reading it."""
        ok = (a.mtime < self.limit and
              os.path.basename(os.path.dirname(p)) != "__pycache__")
        if ok:
            self.vouched.add(p)
        return ok


def pyc_names(name, tag, levels):
    """The pyc names in __pycache__ for module file name (str, "x.py")."""
    return [f"{name[:-3]}.{tag}" + (f".opt-{lv}" if lv else "") + ".pyc"
            for lv in levels]


def sources_in_base(out, root, base, all_root, clamp, tag, levels,
                    quick=None):
    """Before byte-compiling a delta: the sources under root (relative
    paths, bytes) that the base stack holds as they are (type, mode,
    owner, mtime after the SOURCE_DATE_EPOCH clamp, content), with a pyc
    for every level, of the source's mtime as pack makes them, and the set
    of those pycs' base paths. A compile of such a source would give the
    base's pyc again (the compile does not depend on the process), so it
    is left out and the base's pycs show through the delta. base: a
    BaseStack; quick: QuickCheck.vouches, or None to compare contents."""
    found, pycs = [], set()
    tree = base.tree()
    # progress against the base's modules, which bound the comparisons
    total = sum(1 for p in tree if p.endswith(b".py"))
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and
                       not os.path.islink(os.path.join(dirpath, d))]
        rel = os.path.relpath(dirpath, root)
        bdir = b"" if rel == "." else b"/" + os.fsencode(rel)
        for n in filenames:
            if not n.endswith(".py"):
                continue
            bp = bdir + b"/" + os.fsencode(n)
            b = tree.get(bp)
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
            if not all(tree.get(c) is not None and tree[c].type == "f"
                       and tree[c].mtime == a.mtime for c in names):
                continue
            if a.type == "f" and same_entry(
                    a, b, p, lambda: base.content_hash(bp), quick):
                found.append(os.fsencode(os.path.relpath(p, root)))
                pycs.update(names)
    out.progress(f"comparing modules with the base images: {seen} of "
                 f"{total}", force=True)
    return found, pycs


class Delta:
    def __init__(self, out, root, base, all_root, from_base=(), total=0,
                 quick=None):
        """base: a BaseStack; from_base: base paths the staged copy lacks
        on purpose (left out by QuickCheck, or the pycs of
        sources_in_base()): shown by the base, not whiteouts; total: the
        staged entries, which progress counts towards; quick:
        QuickCheck.vouches, or None to compare every file's content."""
        self.out = out
        self.root = root
        self.stack = base
        self.base = base.tree()  # bytes path ("/a/b") -> Entry
        self.quick = quick
        self.all_root = all_root
        self.from_base = set(from_base)
        self.children = {}
        for path in self.base:
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
            self._mark_opaque(d, path)
            return True
        for n in names:
            p = os.path.join(d, n)
            bp = (path.rstrip(b"/") + b"/" + os.fsencode(n))
            self.seen += 1
            self._progress()
            b = self.base.get(bp)
            if b is None:
                self._count_new(p, bp)
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
            if a.type != "d" and self._same(a, b, p, bp):
                os.unlink(p)
                self.kept += 1
                continue
            if a.type == "d":
                self._count_new(p, bp)
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
            elif self._same(a, b, p, bp):
                return True
        return False

    def _same(self, a, b, p, bp):
        if p not in self._memo:
            self._memo[p] = same_entry(
                a, b, p, lambda: self.stack.content_hash(bp), self.quick)
        return self._memo[p]

    def _mark_opaque(self, d, path):
        dst = os.lstat(d)
        wh = os.path.join(d, WH_OPAQUE)
        with open(wh, "wb"):
            pass
        os.chmod(wh, 0o644)
        os.utime(wh, ns=(dst.st_mtime_ns, dst.st_mtime_ns))
        os.utime(d, ns=(dst.st_mtime_ns, dst.st_mtime_ns))
        self.opaque += 1
        for n in sorted(os.listdir(d)):
            if n != WH_OPAQUE:
                self._count_new(os.path.join(d, n),
                                path.rstrip(b"/") + b"/" + os.fsencode(n))

    def _count_new(self, p, bp):
        """Count staged p (base path bp) and everything below it, all in
        the delta, as sqvenvfs-edit counts its change (out.change_counts)."""
        b = self.base.get(bp)
        isdir = os.path.isdir(p) and not os.path.islink(p)
        if isdir and b is not None and b.type == "d":
            pass                    # the way to what changed: neither
        else:
            if b is None or isdir:
                self.added += 1
            else:
                self.changed += 1
            self.added_paths.append(p)
        if isdir:
            for n in sorted(os.listdir(p)):
                self._count_new(os.path.join(p, n),
                                bp.rstrip(b"/") + b"/" + os.fsencode(n))
