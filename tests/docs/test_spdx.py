#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""Every source file of the tree says its license in its first lines:
`SPDX-License-Identifier: BSD-2-Clause`, as LICENSE and meson.build do.
A source file is any text file of the tree except documentation (*.md,
LICENSE), the package lists of .ci/packages and the fuzz corpora; build
directories and .git are not the tree.

usage: test_spdx.py SOURCE_ROOT"""

import os
import sys

import sqvtest as t

TAG = "SPDX-License-Identifier: BSD-2-Clause"
HEAD_LINES = 5
# Data, not source: read by programs as they are, no place for a comment.
DATA_DIRS = ("tests/fuzz/corpus", "tests/fuzz/crashers", "tests/fuzz/hostile",
             ".ci/packages")
DOC_NAMES = ("LICENSE",)


def is_build_dir(path):
    return os.path.isdir(os.path.join(path, "meson-private")) or \
        os.path.isdir(os.path.join(path, "meson-info"))


def is_text(path):
    with open(path, "rb") as f:
        chunk = f.read(8192)
    if b"\0" in chunk:
        return False
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def source_files(root):
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") or d == ".ci"
            if d != "__pycache__"
            if not is_build_dir(os.path.join(dirpath, d))
            if os.path.join(rel, d) not in DATA_DIRS)
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if (name.endswith(".md") or name in DOC_NAMES or
                    name.startswith(".") or name.endswith((".pyc", ".pyo")) or
                    os.path.islink(path) or not is_text(path)):
                continue
            yield path


def has_spdx(path):
    with open(path, encoding="utf-8") as f:
        head = [next(f, "") for _ in range(HEAD_LINES)]
    return any(TAG in line for line in head)


def comment_style(path, text):
    """How a comment is written in this file: c, scd or # (hash)."""
    if path.endswith((".c", ".h")):
        return "c"
    if path.endswith(".scd"):
        return "scd"
    return "#"


def main():
    root = sys.argv[1]
    t.check(os.path.isfile(os.path.join(root, "LICENSE")) and
            "BSD 2-Clause" in open(os.path.join(root, "LICENSE")).read(),
            "LICENSE holds the BSD 2-Clause license")
    files = list(source_files(root))
    missing = [os.path.relpath(p, root) for p in files if not has_spdx(p)]
    t.check(len(files) > 50, f"the tree's source files were found ({len(files)})")
    t.check(not missing, f"every source file has '{TAG}' in its first "
            f"{HEAD_LINES} lines; missing in {len(missing)}: {missing[:20]}")
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
