# SPDX-License-Identifier: BSD-2-Clause
"""Editable installs: packages whose code stays in a source tree outside
the venv, so the image imports it only on the machine that packed it.
Found in every form pip leaves today:
  - dist-info/direct_url.json with "dir_info": {"editable": true}: pip
    writes it for every PEP 660 editable install, whatever the backend;
  - setuptools' __editable__.NAME.pth: an import line with an
    __editable___NAME_finder.py holding MAPPING = {package: path}, or
    plain path lines (editable_mode=compat);
  - NAME.egg-link (legacy `setup.py develop`), with its easy-install.pth
    line.
Each is reported once per package, with the path outside the venv."""

import ast
import json
import os
import re
import urllib.parse
import urllib.request


def site_dirs(venv):
    for dirpath, dirnames, _ in os.walk(venv):
        dirnames.sort()
        if os.path.basename(dirpath) == "site-packages":
            dirnames[:] = []
            yield dirpath


def _outside(path, venv_paths):
    p = os.path.normpath(path)
    return not any(p == v or p.startswith(v + "/") for v in venv_paths)


def _finder_mapping(path):
    """MAPPING from setuptools' generated finder, read without running it."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "MAPPING"
                for t in node.targets):
            try:
                m = ast.literal_eval(node.value)
            except ValueError:
                return {}
            return {str(k): str(v) for k, v in m.items()} \
                if isinstance(m, dict) else {}
    return {}


def _dist_name(filename):
    """'foo-1.0' from '__editable__.foo-1.0.pth' -> 'foo'."""
    return re.split(r"-\d", filename, maxsplit=1)[0]


def _direct_urls(sp):
    for n in sorted(os.listdir(sp)):
        if not n.endswith(".dist-info"):
            continue
        try:
            with open(os.path.join(sp, n, "direct_url.json")) as f:
                d = json.load(f)
        except (OSError, ValueError):
            continue
        if not (isinstance(d, dict) and
                (d.get("dir_info") or {}).get("editable")):
            continue
        url = urllib.parse.urlparse(d.get("url", ""))
        path = urllib.request.url2pathname(url.path) \
            if url.scheme == "file" else d.get("url", "?")
        yield _dist_name(n[:-len(".dist-info")]), path


def _pth_editables(sp, venv_paths):
    """(name, path, pth file) from __editable__ pths and egg-links."""
    for n in sorted(os.listdir(sp)):
        p = os.path.join(sp, n)
        if n.startswith("__editable__.") and n.endswith(".pth"):
            name = _dist_name(n[len("__editable__."):-len(".pth")])
            try:
                with open(p, encoding="utf-8", errors="replace") as f:
                    lines = f.read().splitlines()
            except OSError:
                continue
            for line in lines:
                m = re.match(r"import\s+(__editable___\w+_finder)\b", line)
                if m:
                    finder = os.path.join(sp, m.group(1) + ".py")
                    for pkg, path in sorted(_finder_mapping(finder).items()):
                        if _outside(path, venv_paths):
                            yield pkg, path, p
                elif line.startswith("/") and _outside(line, venv_paths):
                    yield name, line, p
        elif n.endswith(".egg-link"):
            try:
                with open(p, encoding="utf-8", errors="replace") as f:
                    path = (f.read().splitlines() or [""])[0].strip()
            except OSError:
                continue
            if path.startswith("/") and _outside(path, venv_paths):
                yield n[:-len(".egg-link")], path, p


def find_editables(venv, venv_paths):
    """[(package, outside path)] sorted, and the set of .pth files that
    those explain (so they are not warned about twice)."""
    found = {}
    explained = set()
    for sp in site_dirs(venv):
        for name, path, pth in _pth_editables(sp, venv_paths):
            found.setdefault(name, path)
            explained.add(os.path.relpath(pth, venv))
            if pth.endswith(".egg-link"):
                # its path is also a line of easy-install.pth
                explained.add(os.path.relpath(
                    os.path.join(sp, "easy-install.pth"), venv))
        for name, path in _direct_urls(sp):
            if _outside(path, venv_paths):
                # a finder names packages, the dist-info the distribution:
                # keep the finder's more precise entries when present
                if not any(p == path or p.startswith(path + "/")
                           for p in found.values()):
                    found.setdefault(name, path)
    return sorted(found.items()), explained
