# SPDX-License-Identifier: BSD-2-Clause
"""Byte-compile a staged tree; run by the venv's own interpreter
(python -S -B pycworker.py ROOT DDIR JOBS LEVELS), standard library only,
Python 3.7 or later.

For every .py below ROOT (not following symlinked directories, as
compileall does) and every optimisation level, the pyc this interpreter
would import is made an unchecked-hash pyc:
  - a pyc already there and valid for its source (a timestamp pyc whose
    recorded mtime and size match, or a hash-based one whose hash
    matches) is kept: only its 16-byte header is rewritten, which needs
    the source's hash, not a compile;
  - a missing or stale one is compiled.
So packing a venv pip has already compiled costs a hash per module.

Prints "N count" first, then one line per source: "R path" (all its
pycs reused), "C path" (at least one compiled) or "*** Error compiling
'path': why"."""

import importlib.util
import os
import py_compile
import sys

MAGIC = importlib.util.MAGIC_NUMBER
UNCHECKED = (1).to_bytes(4, "little")   # hash-based, do not check source


def sources(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and
                             not os.path.islink(os.path.join(dirpath, d)))
        for n in sorted(filenames):
            if n.endswith(".py"):
                out.append(os.path.join(dirpath, n))
    return out


def reheader(data, source, st):
    """The pyc bytes as an unchecked-hash pyc if data is valid for source
    (read from a file with stat st), else None."""
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
    return MAGIC + UNCHECKED + h + data[16:]


def replace(path, data):
    st = os.stat(path)
    tmp = path + ".sqv-tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, st.st_mode & 0o7777)
    os.replace(tmp, path)


def one(args):
    src, root, ddir, levels = args
    rel = os.path.relpath(src, root)
    dfile = os.path.join(ddir, rel) if ddir else rel
    try:
        st = os.stat(src)
        with open(src, "rb") as f:
            source = f.read()
        compiled = False
        prev = None
        for lv in levels:
            cfile = importlib.util.cache_from_source(
                src, optimization=lv if lv else "")
            data = None
            try:
                with open(cfile, "rb") as f:
                    data = f.read()
            except OSError:
                pass
            new = reheader(data, source, st) if data is not None else None
            if new is None:
                py_compile.compile(
                    src, cfile, dfile, doraise=True, optimize=lv,
                    invalidation_mode=py_compile.PycInvalidationMode
                    .UNCHECKED_HASH)
                compiled = True
            elif new != data:
                replace(cfile, new)
            # identical pycs for several levels share one file, as
            # compileall --hardlink-dupes does
            if prev is not None:
                with open(cfile, "rb") as a, open(prev, "rb") as b:
                    same = a.read() == b.read()
                if same and not os.path.samefile(cfile, prev):
                    os.unlink(cfile)
                    os.link(prev, cfile)
            prev = cfile
        return ("C " if compiled else "R ") + src
    except py_compile.PyCompileError as e:
        msg = str(e.msg).strip().splitlines()
        return f"*** Error compiling '{src}': {msg[-1] if msg else ''}"
    except (OSError, ValueError, SyntaxError) as e:
        return f"*** Error compiling '{src}': {e}"


def main():
    sys.stdout.reconfigure(errors="surrogateescape")
    root, ddir, jobs, levels = sys.argv[1:5]
    levels = [int(x) for x in levels.split(",")]
    todo = [(s, root, ddir, levels) for s in sources(root)]
    print(f"N {len(todo)}", flush=True)
    if int(jobs) > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(int(jobs)) as ex:
            for line in ex.map(one, todo, chunksize=16):
                print(line, flush=False)
    else:
        for t in todo:
            print(one(t), flush=False)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
