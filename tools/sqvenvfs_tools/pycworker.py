# SPDX-License-Identifier: BSD-2-Clause
"""Byte-compile a staged tree; run by the venv's own interpreter
(python -S -B pycworker.py ROOT DDIR JOBS LEVELS [IN_BASE]), standard
library only, Python 3.7 or later.

For every .py below ROOT (not following symlinked directories, as
compileall does) and every optimisation level, the pyc this interpreter
would import is made an unchecked-hash pyc:
  - a pyc already there and valid for its source (a timestamp pyc whose
    recorded mtime and size match, or a hash-based one whose hash
    matches) is kept: only its 16-byte header is rewritten, which needs
    the source's hash, not a compile;
  - a missing or stale one is compiled.
So packing a venv pip has already compiled costs a hash per module.

A compiled pyc depends on the source and the interpreter only, not on the
process that compiled it (see canonical()), and every module is compiled
in a pool worker whatever JOBS, so -j changes nothing in the image.

An optional fifth argument names a file of paths relative to ROOT
(NUL-separated): sources that the base images of a delta hold unchanged,
with their pycs. Those are not compiled: their stale or missing pycs are
removed, so that the base's show through (valid ones are kept as above).

Prints "N count" first, then one line per source: "R path" (all its
pycs reused), "C path" (at least one compiled), "B path" (left to the
base images) or "*** Error compiling 'path': why"."""

import importlib.util
import marshal
import os
import py_compile
import stat
import sys
import types

MAGIC = importlib.util.MAGIC_NUMBER
UNCHECKED = (1).to_bytes(4, "little")   # hash-based, do not check source


# Why a code object is made canonical before it is marshalled. marshal
# flags an object for back-references (FLAG_REF) when its reference count
# is above 1 (since 3.11 interned strings always), and compile() interns
# the strings of a frozenset constant by building a new frozenset whenever
# an equal string is already interned in the process, so code objects that
# shared one frozenset then hold one each. Both depend on what else the
# compiling process holds (the modules it imported; the pool's machinery
# with -j > 1), not only on the source: CPython issues 78274 and 129724.
# On Debian's dist-packages, scipy's stats/tests/test_sampling.py compiled
# differently with -j 1 and -j 2; on the 3.8 to 3.10 standard libraries
# most modules did, in a process that had imported a few more modules.
# So: every frozenset becomes one object per value and module, its
# elements inserted in a fixed order (marshal writes them in the set's
# iteration order, which the insertion order can change), and before 3.11 every string is held once more while
# marshalling, so that every string is flagged.

def _key(k):
    """A sort and merge key for a constant: equal for equal constants of
    one type (1, 1.0 and True stay apart, as the compiler keeps them)."""
    t = type(k)
    if t is tuple:
        return ("tuple", tuple(_key(x) for x in k))
    if t is frozenset:
        return ("frozenset", tuple(sorted(_key(x) for x in k)))
    return (t.__name__, repr(k))


def _replace_consts(co, consts):
    if hasattr(co, "replace"):
        return co.replace(co_consts=consts)
    return types.CodeType(      # Python 3.7
        co.co_argcount, co.co_kwonlyargcount, co.co_nlocals,
        co.co_stacksize, co.co_flags, co.co_code, consts, co.co_names,
        co.co_varnames, co.co_filename, co.co_name, co.co_firstlineno,
        co.co_lnotab, co.co_freevars, co.co_cellvars)


def canonical(k, sets):
    """Constant k (a code object, or one of its constants) with every
    frozenset in it replaced by the canonical one (sets: key -> frozenset,
    one per module); k itself when it holds none."""
    t = type(k)
    if t is frozenset:
        key = _key(k)
        if key not in sets:
            sets[key] = frozenset([canonical(x, sets)
                                   for x in sorted(k, key=_key)])
        return sets[key]
    if t is tuple:
        new = tuple(canonical(x, sets) for x in k)
        return k if all(a is b for a, b in zip(new, k)) else new
    if isinstance(k, types.CodeType):
        consts = canonical(k.co_consts, sets)
        return k if consts is k.co_consts else _replace_consts(k, consts)
    return k


def _strings(co, keep):
    """Append every string of code object co (and the code it holds)."""
    keep.extend(co.co_names + co.co_varnames + co.co_freevars +
                co.co_cellvars + (co.co_name, co.co_filename))
    todo = list(co.co_consts)
    while todo:
        k = todo.pop()
        if type(k) is str:
            keep.append(k)
        elif type(k) in (tuple, frozenset):
            todo.extend(k)
        elif isinstance(k, types.CodeType):
            _strings(k, keep)


def marshalled_code(source, dfile, level):
    """The marshalled code of source, the same in any process."""
    code = compile(source, dfile, "exec", dont_inherit=True, optimize=level)
    # Rebinding drops the original: alive, it would add a reference to
    # every object the canonical code still shares with it.
    code = canonical(code, {})
    keep = []
    if sys.version_info < (3, 11):
        _strings(code, keep)
    return marshal.dumps(code)


def write_pyc(src, cfile, dfile, source, st, level):
    """What py_compile.compile(src, cfile, dfile, optimize=level,
    invalidation_mode=UNCHECKED_HASH) writes, but canonical."""
    if os.path.islink(cfile) or (os.path.exists(cfile) and
                                 not os.path.isfile(cfile)):
        raise FileExistsError(f"{cfile}: not a regular file")
    try:
        body = marshalled_code(source, dfile, level)
    except Exception as e:
        raise py_compile.PyCompileError(type(e), e, dfile)
    os.makedirs(os.path.dirname(cfile), exist_ok=True)
    tmp = cfile + ".sqv-tmp"
    # the source's mode, writable by its owner, as py_compile makes it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                 (st.st_mode | 0o200) & 0o666)
    with open(fd, "wb") as f:
        f.write(MAGIC + UNCHECKED + importlib.util.source_hash(source)
                + body)
    os.replace(tmp, cfile)


def sources(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and
                             not os.path.islink(os.path.join(dirpath, d)))
        for n in sorted(filenames):
            if n.endswith(".py"):
                out.append(os.path.join(dirpath, n))
    return out


def read_file(path):
    """The bytes of path and its stat: one open, and a read of the size it
    has (plus the one that finds EOF), lighter than open().read()."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        chunks = []
        want = st.st_size + 1
        while True:
            b = os.read(fd, want)
            if not b:
                return b"".join(chunks), st
            chunks.append(b)
            want = 1 << 20
    finally:
        os.close(fd)


def read_head(path, n):
    """The first n bytes of path (fewer in a shorter file)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        head = b""
        while len(head) < n:
            b = os.read(fd, n - len(head))
            if not b:
                break
            head += b
        return head
    finally:
        os.close(fd)


def reheader(data, source, st):
    """The 16-byte header that makes a pyc an unchecked-hash one if it is
    valid for source (read from a file with stat st), else None. data:
    the pyc's first 16 bytes (or all of it), all that the check reads;
    the rest of the pyc stays as it is."""
    if len(data) < 16 or data[:4] != MAGIC:
        return None
    flags = int.from_bytes(data[4:8], "little")
    h = importlib.util.source_hash(source)
    if flags == 0:
        if (int.from_bytes(data[8:12], "little") !=
                int(st.st_mtime) & 0xFFFFFFFF or
                int.from_bytes(data[12:16], "little") !=
                st.st_size & 0xFFFFFFFF):
            return None
    elif flags in (1, 3):
        if data[8:16] != h:
            return None
    else:
        return None
    return MAGIC + UNCHECKED + h


def new_header(path, header):
    """Give the pyc at path header instead of its own. In place when the
    file is the staging copy's own (a regular file of one name, not
    reached through a symlink), which nothing else sees change; else as a
    new file, so that a hard link or a symlink's target keeps the old
    bytes."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK |
                     os.O_CLOEXEC)
    except OSError:
        fd = None
    if fd is not None:
        try:
            st = os.fstat(fd)
            if (stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and
                    st.st_size >= len(header) and
                    os.pwrite(fd, header, 0) == len(header)):
                return
        finally:
            os.close(fd)
    data, _ = read_file(path)
    replace(path, header + data[len(header):])


def replace(path, data):
    st = os.stat(path)
    tmp = path + ".sqv-tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, st.st_mode & 0o7777)
    os.replace(tmp, path)


def dfile_of(src, root, ddir):
    """The path a compiled pyc records for src: under ddir (the mount
    point) when given."""
    rel = os.path.relpath(src, root)
    return os.path.join(ddir, rel) if ddir else rel


def one(args):
    src, root, ddir, levels, in_base = args
    try:
        source, st = read_file(src)
        # per level: (level, pyc path, its header, new header); the
        # header is all a valid pyc needs read, and a stale one is remade
        have = []
        for lv in levels:
            cfile = importlib.util.cache_from_source(
                src, optimization=lv if lv else "")
            head = None
            try:
                head = read_head(cfile, 16)
            except OSError:
                pass
            have.append((lv, cfile, head, reheader(head, source, st)
                         if head is not None else None))
        based = False
        if in_base and any(h[3] is None for h in have):
            # the base images hold this very source and its pycs: theirs
            # show through where the venv has no valid one, so nothing is
            # compiled (the directory stays, as it would be with them)
            for _, cfile, _, new in have:
                if new is None and os.path.lexists(cfile):
                    os.unlink(cfile)
            os.makedirs(os.path.dirname(have[0][1]), exist_ok=True)
            have = [h for h in have if h[3] is not None]
            based = True
        compiled = False
        prev = None
        for lv, cfile, head, new in have:
            if new is None:
                write_pyc(src, cfile, dfile_of(src, root, ddir), source, st,
                          lv)
                compiled = True
            elif new != head:
                new_header(cfile, new)
            # identical pycs for several levels share one file, as
            # compileall --hardlink-dupes does
            if prev is not None:
                with open(cfile, "rb") as a, open(prev, "rb") as b:
                    same = a.read() == b.read()
                if same and not os.path.samefile(cfile, prev):
                    os.unlink(cfile)
                    os.link(prev, cfile)
            prev = cfile
        return ("B " if based else "C " if compiled else "R ") + src
    except py_compile.PyCompileError as e:
        msg = str(e.msg).strip().splitlines()
        return f"*** Error compiling '{src}': {msg[-1] if msg else ''}"
    except (OSError, ValueError, SyntaxError) as e:
        return f"*** Error compiling '{src}': {e}"


def main():
    sys.stdout.reconfigure(errors="surrogateescape")
    root, ddir, jobs, levels = sys.argv[1:5]
    levels = [int(x) for x in levels.split(",")]
    in_base = set()
    if len(sys.argv) > 5 and sys.argv[5]:
        with open(sys.argv[5], "rb") as f:
            in_base = {os.path.join(root, os.fsdecode(p))
                       for p in f.read().split(b"\0") if p}
    todo = [(s, root, ddir, levels, s in in_base) for s in sources(root)]
    print(f"N {len(todo)}", flush=True)
    # Pool workers even for -j 1: compiling processes that imported the
    # same modules whatever JOBS (3.13 interns a string constant in place
    # or not depending on the modules loaded). In-process only where the
    # pool cannot start (no /dev/shm for its semaphores).
    try:
        from concurrent.futures import ProcessPoolExecutor
        ex = ProcessPoolExecutor(max(1, int(jobs)))
    except (ImportError, OSError):
        ex = None
    if ex is None:
        for t in todo:
            print(one(t), flush=False)
    else:
        with ex:
            for line in ex.map(one, todo, chunksize=16):
                print(line, flush=False)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
