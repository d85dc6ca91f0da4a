#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""bash completion for sqvenvfs, sqvenvfs-pack and sqvenvfs-edit:
bash-completion loads
the files on demand from a completions directory as they are installed,
and completing options, -o mount options (also after a comma), image paths,
mounted sqvenvfs mount points, pack's and edit's --comp values, pack's
--hot trace (any file) and its input after it (a venv or an image), edit's
--overlay values and edit's COMMAND after "--" gives what --help lists and
what is on disk. `meson install` puts the files in
bash-completion's completions directory.

usage: test_completion.py BUILD_DIR COMPLETION_FILE..."""

import json
import os
import re
import shutil
import subprocess
import sys

import sqvtest as t

# Loads a completion the way bash-completion does when TAB is first pressed
# for a command, then calls it on the words given and prints COMPREPLY.
# compopt only works inside a real completion; here it is a no-op.
HARNESS = r'''
source /usr/share/bash-completion/bash_completion
compopt() { :; }
comp() {
    __load_completion "$1" || { echo "no completion for $1"; return; }
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
    COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
    local spec f
    spec=$(complete -p "$1") || return
    f=${spec##*-F }; f=${f%% *}
    "$f" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    printf '%s\n' "${COMPREPLY[@]}" | sort -u | tr '\n' ' '; echo
}
'''


def complete(env, cwd, *words):
    script = HARNESS + "comp " + " ".join(f"'{w}'" for w in words) + "\n"
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script],
                       capture_output=True, text=True, env=env, cwd=cwd)
    return set(r.stdout.split()), r.stderr.strip()


def main():
    if not os.path.exists("/usr/share/bash-completion/bash_completion"):
        t.skip("bash-completion is not installed")
    build, files = sys.argv[1], sys.argv[2:]
    t.require_mount_capability()
    with t.tempdir() as d:
        # A completions directory as `meson install` makes it, found through
        # XDG_DATA_DIRS as bash-completion searches it.
        share = os.path.join(d, "share")
        comp_dir = os.path.join(share, "bash-completion", "completions")
        os.makedirs(comp_dir)
        for f in files:
            shutil.copy(f, comp_dir)
        bindir = os.path.join(d, "bin")
        os.mkdir(bindir)
        os.symlink(os.path.realpath(t.SQVENVFS), os.path.join(bindir, "sqvenvfs"))
        os.symlink(os.environ["SQVENVFS_PACK"],
                   os.path.join(bindir, "sqvenvfs-pack"))
        # sqvenvfs-edit is built beside sqvenvfs-pack
        os.symlink(os.path.join(os.path.dirname(os.environ["SQVENVFS_PACK"]),
                                "sqvenvfs-edit"),
                   os.path.join(bindir, "sqvenvfs-edit"))
        env = dict(os.environ, XDG_DATA_DIRS=share,
                   BASH_COMPLETION_USER_DIR=os.path.join(d, "none"),
                   PATH=bindir + os.pathsep + os.environ["PATH"])

        work = os.path.join(d, "work")
        os.makedirs(os.path.join(work, "badir"))
        src = os.path.join(d, "src")
        os.mkdir(src)
        open(os.path.join(src, "f"), "w").close()
        t.mksquashfs(src, os.path.join(work, "base.sqfs"))
        open(os.path.join(work, "bad.txt"), "w").close()

        def want(words, expect, label):
            got, err = complete(env, work, *words)
            t.check(got == set(expect), f"{label}: {' '.join(words)!r} -> "
                    f"{sorted(got)} (want {sorted(expect)}) {err}")
            return got

        want(["sqvenvfs", "--fo"], ["--foreground"], "a long option")
        help_text = t.cli(["--help"]).stdout
        longs = {w for line in help_text.splitlines()
                 if re.match(r"^ +-", line)
                 for w in re.findall(r"--[a-z][a-z-]*",
                                     re.split(r"\s{2,}", line.strip())[0])}
        t.check({"--foreground", "--unmount", "--stats"} <= longs,
                f"read the long options of --help ({sorted(longs)})")
        want(["sqvenvfs", "--"], longs, "every long option of --help")
        want(["sqvenvfs", "-o", "cache_"], ["cache_size="], "a mount option")
        want(["sqvenvfs", "-o", "threads=4,auto_"], ["threads=4,auto_unmount"],
             "a mount option after a comma")
        got, _ = complete(env, work, "sqvenvfs", "-o", "")
        t.check({"threads=", "cache_size=", "auto_unmount", "fsname=",
                 "nofail", "noatime"} <= got and
                not {"blkdev", "loop", "remount"} & got,
                f"all accepted mount options, none of the refused ({len(got)})")
        want(["sqvenvfs", "ba"], ["base.sqfs", "badir"],
             "images and directories, not other files")
        want(["sqvenvfs-pack", "--b"], ["--base", "--block-size"],
             "pack's options")
        want(["sqvenvfs-pack", "--comp", ""], ["zstd", "lz4", "xz", "gzip"],
             "pack's compressors")
        want(["sqvenvfs-pack", "--base", "ba"], ["base.sqfs", "badir"],
             "a base image")
        want(["sqvenvfs-pack", "ba"], ["badir"], "VENV_DIR is a directory")
        want(["sqvenvfs-pack", "badir", "ba"], ["base.sqfs", "badir"],
             "then the image")
        want(["sqvenvfs-pack", "--hot", "ba"], ["bad.txt", "base.sqfs",
                                                "badir"], "a trace: any file")
        want(["sqvenvfs-pack", "--hot", "t", "ba"], ["base.sqfs", "badir"],
             "with --hot, a venv or an image to re-lay out")
        want(["sqvenvfs-pack", "--hot=t", "ba"], ["base.sqfs", "badir"],
             "also after --hot=TRACE")
        want(["sqvenvfs-pack", "--hot", "t", "base.sqfs", "ba"],
             ["base.sqfs", "badir"], "then the image")

        want(["sqvenvfs-edit", "--ov"], ["--overlay"], "edit's options")
        want(["sqvenvfs-edit", "--overlay", ""], ["auto", "kernel", "fuse"],
             "edit's overlays")
        want(["sqvenvfs-edit", "--comp", "l"], ["lz4"], "edit's compressors")
        want(["sqvenvfs-edit", "--work", "ba"], ["badir"],
             "the work directory is a directory")
        want(["sqvenvfs-edit", "base.sqfs", "ba"], ["base.sqfs", "badir"],
             "images, then DELTA")
        want(["sqvenvfs-edit", "base.sqfs", "new.sqfs", "--", "sqvenvfs-pa"],
             ["sqvenvfs-pack"], "COMMAND after -- is a command")
        want(["sqvenvfs-edit", "base.sqfs", "new.sqfs", "--", "sqvenvfs-pack",
              "--co"], ["--comp"], "and COMMAND's arguments complete as its own")

        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)
        with t.mounted([os.path.join(work, "base.sqfs")], mnt):
            got, err = complete(env, work, "sqvenvfs", "--unmount", "")
            t.check(mnt in got, f"--unmount offers mounted sqvenvfs mount "
                    f"points ({sorted(got)}) {err}")
            t.check("/proc" not in got, "--unmount offers no other mounts")

    r = subprocess.run(["meson", "introspect", "--installed", build],
                       capture_output=True, text=True)
    installed = json.loads(r.stdout) if r.returncode == 0 else {}
    for f in files:
        dest = installed.get(os.path.realpath(f), "")
        t.check(dest.endswith("/share/bash-completion/completions/" +
                              os.path.basename(f)),
                f"meson installs {os.path.basename(f)} in bash-completion's "
                f"completions directory ({dest})")
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
