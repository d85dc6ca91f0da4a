#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""The manual pages as built: each renders with no warning from
`groff -man -ww -z`, each program's --help and its page list the same
options (and, for sqvenvfs, the same -o mount options), the pages of
programs have an EXIT STATUS section, and `meson install` puts every page
in MANDIR/manN.

usage: test_man.py BUILD_DIR PAGE... -- NAME=PROGRAM..."""

import json
import os
import re
import shutil
import subprocess
import sys

import sqvtest as t


def roff_sections(path):
    """{section title: [definition-list terms]} of a page made by scdoc: a
    term is a text line followed by '.RS 4'."""
    lines = open(path, encoding="utf-8").read().splitlines()
    sections, title = {}, ""
    for i, line in enumerate(lines):
        if line.startswith(".SH "):
            title = line[4:].strip().strip('"')
            sections.setdefault(title, [])
        elif (not line.startswith(".") and i + 1 < len(lines)
              and lines[i + 1].startswith(".RS")):
            text = re.sub(r"\\f[BIRP]", "", line).replace("\\&", "")
            sections.setdefault(title, []).append(text.replace("\\\\", "\\"))
    return sections


def split_items(left):
    return [x for x in re.split(r",\s*", left.strip()) if x]


def dash_name(item):
    """'-j JOBS' -> '-j'; '--sqvenv=IMAGE' -> '--sqvenv'."""
    return re.split(r"[ =]", item.strip())[0]


def mount_name(item):
    """'threads=N' -> 'threads='; 'exec' -> 'exec'."""
    item = item.strip()
    return item[: item.index("=") + 1] if "=" in item else item


def help_options(text):
    """(dash options, -o mount options) listed by a --help text. An option
    line starts with two spaces; its options end at the first run of two
    spaces. Mount options are listed after a heading that names them."""
    dash, mount = set(), set()
    in_mount = False
    for line in text.splitlines():
        if line and not line.startswith(" "):
            in_mount = "mount options" in line.lower() or (
                in_mount and line.rstrip().endswith(":"))
            continue
        if not re.match(r"^ {1,6}\S", line):
            continue  # a wrapped description
        left = re.split(r"\s{2,}", line.strip())[0]
        for item in split_items(left):
            if item.startswith("-"):
                dash.add(dash_name(item))
            elif in_mount:
                mount.add(mount_name(item))
    return dash, mount


def page_options(sections):
    dash = {dash_name(i) for term in sections.get("OPTIONS", [])
            for i in split_items(term) if i.startswith("-")}
    mount = {mount_name(i) for term in sections.get("MOUNT OPTIONS", [])
             for i in split_items(term)}
    return dash, mount


def main():
    args = sys.argv[1:]
    sep = args.index("--")
    build, pages, progs = args[0], args[1:sep], dict(
        a.split("=", 1) for a in args[sep + 1:])
    if not shutil.which("groff"):
        t.skip("groff is not installed (Debian package groff-base)")
    by_name = {os.path.basename(p).rsplit(".", 1)[0]: p for p in pages}

    for page in pages:
        r = subprocess.run(["groff", "-man", "-ww", "-z", page],
                           capture_output=True, text=True)
        t.check(r.returncode == 0 and r.stderr == "",
                f"{os.path.basename(page)}: groff -ww -z says nothing "
                f"({r.stderr.strip()!r})")
        r = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbu", page],
                           capture_output=True, text=True)
        t.check("NAME" in r.stdout and "SEE ALSO" in r.stdout,
                f"{os.path.basename(page)}: renders with NAME and SEE ALSO")

    for name, prog in progs.items():
        page = by_name.get(name)
        t.check(page is not None, f"{name}: has a manual page")
        if page is None:
            continue
        sections = roff_sections(page)
        t.check("EXIT STATUS" in sections and sections["EXIT STATUS"],
                f"{name}: the page lists its exit statuses")
        r = subprocess.run([prog, "--help"], capture_output=True, text=True)
        text = r.stdout or r.stderr
        hdash, hmount = help_options(text)
        pdash, pmount = page_options(sections)
        t.check(hdash == pdash,
                f"{name}: --help and the page list the same options "
                f"(only in --help: {sorted(hdash - pdash)}, only in the "
                f"page: {sorted(pdash - hdash)})")
        t.check(hmount == pmount,
                f"{name}: --help and the page list the same mount options "
                f"(only in --help: {sorted(hmount - pmount)}, only in the "
                f"page: {sorted(pmount - hmount)})")
        if name == "sqvenvfs":
            t.check(len(hmount) > 40 and "--foreground" in hdash,
                    f"sqvenvfs: the option lists were read "
                    f"({len(hdash)} options, {len(hmount)} mount options)")

    # What `meson install` does with them.
    r = subprocess.run(["meson", "introspect", "--installed", build],
                       capture_output=True, text=True)
    installed = json.loads(r.stdout) if r.returncode == 0 else {}
    t.check(bool(installed), f"meson introspect --installed ({r.stderr.strip()})")
    for page in pages:
        base = os.path.basename(page)
        dest = installed.get(os.path.realpath(page)) or installed.get(page, "")
        section = base.rsplit(".", 1)[1]
        t.check(dest.endswith(f"/man/man{section}/{base}"),
                f"{base} is installed to MANDIR/man{section} ({dest})")
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
