# SPDX-License-Identifier: BSD-2-Clause
"""Relocation: rewrite, in the staging copy, what ties the venv to the
directory it was made in (shebangs, activate scripts, .pth paths, absolute
symlinks), and list what still names that directory and cannot be fixed."""

import os
import re
import stat

from .fsutil import inside, replace_file
from .venvinfo import read_cfg

SHEBANG_MAX = 4096


class Candidates:
    """What relocation looks at besides bin/ and pyvenv.cfg, noted by the
    walk that made the tree (Stage, Upper) as it passes: a walk of a big
    tree is most of what relocating it would cost. Every symlink, and
    every regular file named *.pth directly in a site-packages directory
    (where the site module reads them), each in the order of the walk."""

    def __init__(self):
        self.symlinks = []
        self.pth = []

    def note(self, dirpath, name, mode):
        if stat.S_ISLNK(mode):
            self.symlinks.append(os.path.join(dirpath, name))
        elif (stat.S_ISREG(mode) and name.endswith(".pth") and
              os.path.basename(dirpath) == "site-packages"):
            self.pth.append(os.path.join(dirpath, name))


class Relocator:
    def __init__(self, out, stage, venv_paths, explained=()):
        """explained: .pth files (relative paths) already reported as
        editable installs, not warned about again."""
        self.out = out
        self.explained = set(explained)
        self.stage = stage
        self.root = stage.dst
        self.venv_paths = venv_paths    # str spellings of VENV_DIR
        self.rewritten = []             # (relpath, what)
        self.warnings = []              # (relpath, why)
        self.handled = set()
        self.total = self.done = 0      # files looked at, for progress

    def rel(self, p):
        return os.path.relpath(p, self.root)

    def staged_of(self, abspath):
        r = inside(abspath, self.venv_paths)
        return os.path.join(self.root, os.path.relpath(abspath, r))

    def run(self):
        bindir = os.path.join(self.root, "bin")
        has_bin = os.path.isdir(bindir)
        scripts = []
        if has_bin:
            for name in sorted(os.listdir(bindir)):
                p = os.path.join(bindir, name)
                if os.path.isfile(p) and not os.path.islink(p):
                    scripts.append(p)
        found = self.stage.candidates
        self.total = len(scripts) + len(found.pth) + len(found.symlinks)
        for p in scripts:
            self.shebang(p)
            self.step()
        if has_bin:
            self.activate(bindir)
        self.pth_files()
        self.symlinks()
        self.pyvenv_cfg()
        self.leftovers()

    def step(self):
        """One more of the files looked at: progress against them all."""
        self.done += 1
        self.out.progress(f"relocating: {self.done} of {self.total} files "
                          "(scripts, .pth files, symlinks)",
                          self.done == self.total)

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

    # Each activate script finds the venv from its own path, never from
    # the path it was made at (on a compute node that path is absent, or
    # is another tree). bash, zsh and ksh93 name the sourced file; fish
    # has `status -f`; dash and tcsh keep the file they source open, so
    # the shell's /proc/PID/fd shows its path. The path is resolved
    # (symlinks to the script work) with no `cd` (CDPATH, a printing zsh
    # chpwd hook) and counts only if it names the script itself. Where
    # none of these works the script says so and stops before changing
    # PATH.
    ACTIVATE = {
        "activate": (
            r"^VIRTUAL_ENV=(.*)$",
            '# sqvenvfs-pack: the venv is wherever this file is.\n'
            '_sqv_here=\n'
            'if [ -n "${BASH_VERSION:-}" ]; then\n'
            '    _sqv_here="$(realpath -- "${BASH_SOURCE[0]:-}" 2>/dev/null)"\n'
            'elif [ -n "${ZSH_VERSION:-}" ]; then\n'
            '    eval \'_sqv_here="${${(%):-%x}:A}"\'\n'
            # ksh93 reads a small sourced file at once and closes it, so
            # /proc shows nothing; it names the file, absolute, in .sh.file
            'elif case "${KSH_VERSION:-}" in *93*) true;; *) false;; esac; then\n'
            '    eval \'_sqv_here="${.sh.file}"\'\n'
            '    _sqv_here="$(realpath -- "$_sqv_here" 2>/dev/null)"\n'
            'else\n'
            '    for _sqv_fd in /proc/$$/fd/*; do\n'
            '        case "$(readlink -- "$_sqv_fd" 2>/dev/null)" in\n'
            '            */bin/activate) _sqv_here="$(readlink -- "$_sqv_fd")";;\n'
            '        esac\n'
            '    done\n'
            '    unset _sqv_fd\n'
            'fi\n'
            # piped or eval'd, bash names no file or another one (/dev/stdin,
            # the file that ran eval) and zsh names the shell: only this file
            # itself will do
            'case "$_sqv_here" in\n'
            '    */bin/activate) [ -f "$_sqv_here" ] || _sqv_here=;;\n'
            '    *) _sqv_here=;;\n'
            'esac\n'
            '_sqv_here="${_sqv_here%/bin/activate}"\n'
            'if [ -z "$_sqv_here" ]; then\n'
            '    echo "activate: cannot find this file\'s own path in this '
            'shell; source it by its path from bash, zsh, dash or ksh on Linux; '
            'nothing activated" >&2\n'
            '    unset _sqv_here\n'
            '    return 1 2>/dev/null || exit 1\n'
            'fi\n'
            'VIRTUAL_ENV="$_sqv_here"\n'
            'unset _sqv_here'),
        "activate.csh": (
            r"^setenv VIRTUAL_ENV (.*)$",
            '# sqvenvfs-pack: the venv is wherever this file is.\n'
            'set _sqv_here = ""\n'
            'foreach _sqv_fd ( /proc/$$/fd/* )\n'
            '    set _sqv_t = "`readlink $_sqv_fd`"\n'
            '    if ( "$_sqv_t" =~ */bin/activate.csh ) set _sqv_here = "$_sqv_t"\n'
            'end\n'
            'if ( "$_sqv_here" == "" ) then\n'
            # csh cannot send echo to stderr by itself
            '    sh -c \'echo "$1" >&2\' sh "activate.csh: cannot find its '
            'own path in this shell; source it by its path from tcsh on '
            'Linux; nothing activated"\n'
            '    unset _sqv_here _sqv_fd _sqv_t\n'
            '    # an undefined variable stops `source` without leaving the shell\n'
            '    echo $activate_csh_stopped\n'
            'endif\n'
            'setenv VIRTUAL_ENV "$_sqv_here:h:h"\n'
            'unset _sqv_here _sqv_fd _sqv_t'),
        "activate.fish": (
            r"^set -gx VIRTUAL_ENV (.*)$",
            '# sqvenvfs-pack: the venv is wherever this file is.\n'
            'set -l _sqv_here (command realpath -- (status -f) 2>/dev/null)\n'
            'if not string match -q -- "*/bin/activate.fish" "$_sqv_here"\n'
            '    echo "activate.fish: cannot find its own path; source it by '
            'its path; nothing activated" >&2\n'
            '    return 1\n'
            'end\n'
            'set -gx VIRTUAL_ENV (dirname (dirname $_sqv_here))'),
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
        for p in self.stage.candidates.pth:
            self.pth(p)
            self.step()

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
            elif self.rel(p) not in self.explained:
                self.warnings.append((self.rel(p), f"adds {s}, outside the "
                                      "venv: it will not be in the image"))
        self.handled.add(p)
        if changed:
            replace_file(p, "\n".join(lines).encode("utf-8",
                                                    "surrogateescape"))
            self.rewritten.append((self.rel(p), ".pth path"))

    # symlinks with an absolute target inside the venv ---------------------

    def symlinks(self):
        for p in self.stage.candidates.symlinks:
            self.step()
            t = os.readlink(p)
            if t.startswith("/") and inside(os.path.normpath(t),
                                            self.venv_paths):
                new = os.path.relpath(self.staged_of(os.path.normpath(t)),
                                      os.path.dirname(p))
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
