# SPDX-License-Identifier: BSD-2-Clause
"""One sqvenvfs-edit run, outside the namespaces: check the inputs, make
the work directory and the temporary DELTA, start editns.py inside a new
user+mount+PID namespace (util-linux `unshare`), wait for it, then either
give the temporary DELTA its name or remove it. Whatever happens (COMMAND
fails, a signal, a full disk), cleanup() leaves nothing: the work
directory goes (unless --keep-work), the temporary DELTA goes, and the
namespace, its mounts and its processes end with the process that
unshare started, which the kernel guarantees."""

import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from .editns import EXIT_FAIL
from .errors import Interrupted, PackError
from .delta import find_inspect
from .imagefile import TempImage
from .seal import finish_image
from .mksquashfs import find_mksquashfs
from .out import change_counts, human

PR_SET_PDEATHSIG = 1
# What the kernel overlay and fuse-overlayfs read as separators in their
# options: a path holding one cannot be given to them.
OPTION_CHARS = ",:\\\n"


def _die_with_parent():
    # unshare dies if we die (even by SIGKILL); its --kill-child then
    # ends the namespace
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def remove_tree(path):
    """rm -rf that also enters directories without permissions (overlayfs
    leaves its work directory mode 000; COMMAND may chmod too)."""
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                try:
                    os.chmod(p, 0o700)
                except OSError:
                    pass
    shutil.rmtree(path, ignore_errors=True)


def find_program(name, env_var, bindir, build_subdir=None):
    p = os.environ.get(env_var)
    if p:
        if not (os.path.isfile(p) and os.access(p, os.X_OK)):
            raise PackError(f"{p}: {env_var} is not an executable")
        return p
    cands = [os.path.join(bindir, name)]
    if build_subdir:
        # the build tree: tools/ and daemon/ side by side
        cands.append(os.path.join(os.path.dirname(bindir), build_subdir,
                                  name))
    for c in cands:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return shutil.which(name)


class Edit:
    def __init__(self, out, args, command, bindir, launcher, prog):
        self.out = out
        self.args = args
        self.command = command
        self.bindir = bindir
        self.launcher = launcher
        self.prog = prog
        self.top = None
        self.tmp = None
        self.proc = None
        self.status_r = None
        self.summary = None
        self.t0 = time.monotonic()

    def check_inputs(self):
        args = self.args
        if not self.command:
            raise PackError("COMMAND: missing (give it after --)")
        if len(args.paths) < 2:
            raise PackError("give at least one IMAGE and the DELTA to write")
        self.images = [os.path.abspath(i) for i in args.paths[:-1]]
        delta = os.path.abspath(args.paths[-1])
        for shown, i in zip(args.paths, self.images):
            if not os.path.exists(i):
                raise PackError(f"{shown}: no such image")
            if not os.path.isfile(i):
                raise PackError(f"{shown}: not a file")
            if os.path.realpath(i) == os.path.realpath(delta):
                raise PackError(f"{shown}: is also the DELTA to write")
        self.tmp = TempImage(delta, args.paths[-1], args.force)
        self.tmp.check()
        if args.at is not None:
            self.at = os.path.abspath(args.at)
            if not os.path.isdir(self.at):
                raise PackError(f"--at {args.at}: no such directory (make "
                                "it, or leave --at out)")
        work = args.work or os.environ.get("TMPDIR") or \
            tempfile.gettempdir()
        if not os.path.isdir(work):
            raise PackError(f"--work {work}: no such directory")
        self.work = os.path.abspath(work)
        for what, p in (("--work", self.work), ("--at", args.at and self.at),
                        *(("IMAGE", i) for i in self.images)):
            if p and any(c in p for c in OPTION_CHARS):
                raise PackError(f"{what} {p}: overlayfs cannot take a path "
                                "holding ',', ':' or '\\'")
        self.unshare = shutil.which("unshare")
        if not self.unshare:
            raise PackError("unshare: not found (Debian package util-linux)")
        self.sqvenvfs = find_program("sqvenvfs", "SQVENVFS", self.bindir,
                                     "daemon")
        if not self.sqvenvfs:
            raise PackError("sqvenvfs: not found beside sqvenvfs-edit "
                            "nor on PATH")
        self.mksquashfs = find_mksquashfs()
        self.inspect = find_inspect(self.bindir)
        self.fuse_overlayfs = shutil.which("fuse-overlayfs")
        if args.overlay == "fuse" and not self.fuse_overlayfs:
            raise PackError("--overlay fuse: fuse-overlayfs is not "
                            "installed (Debian package fuse-overlayfs)")

    def make_work(self):
        try:
            self.top = tempfile.mkdtemp(prefix="sqvenvfs-edit.",
                                        dir=self.work)
            for d in ("lower", "upper", "ovl-work"):
                os.mkdir(os.path.join(self.top, d), 0o700)
            if self.args.at is None:
                self.at = os.path.join(self.top, "env")
                os.mkdir(self.at, 0o700)
        except OSError as e:
            raise PackError(f"--work {self.work}: cannot make the work "
                            f"directory: {e.strerror}")

    def params(self, stderr_fd, status_fd):
        a = self.args
        return {
            "prog": self.prog, "quiet": a.quiet, "verbose": a.verbose,
            "top": self.top, "at": self.at, "images": self.images,
            "command": self.command, "overlay": a.overlay,
            "sqvenvfs": self.sqvenvfs, "fuse_overlayfs": self.fuse_overlayfs,
            "unshare": self.unshare, "mksquashfs": self.mksquashfs,
            "uid": os.getuid(), "gid": os.getgid(),
            "tmp_image": self.tmp.path, "comp": a.comp, "level": a.level,
            "block_size": a.block_size, "levels": a.levels,
            "no_compile": a.no_compile, "mount_point": a.mount_point,
            "jobs": a.jobs, "stderr_fd": stderr_fd, "status_fd": status_fd,
        }

    def run(self):
        """The exit status; the verdict (a failure's one line) printed."""
        self.check_inputs()
        self.make_work()
        self.tmp.create()
        fd = os.dup(2)
        self.status_r, status_w = os.pipe()
        try:
            ppath = os.path.join(self.top, "params.json")
            with open(ppath, "w") as f:
                json.dump(self.params(fd, status_w), f)
            uerr = open(os.path.join(self.top, "unshare.err"), "wb")
            cmd = [self.unshare, "--user", "--map-root-user", "--mount",
                   "--propagation", "private", "--pid", "--fork",
                   "--kill-child", "--", sys.executable, self.launcher,
                   "--ns-inner", ppath]
            with uerr:
                self.proc = subprocess.Popen(
                    cmd, stderr=uerr, pass_fds=(fd, status_w),
                    preexec_fn=_die_with_parent)
        finally:
            os.close(fd)
            os.close(status_w)
        status = self.wait()
        return self.verdict(status)

    def wait(self):
        """Read the verdict until the namespace ends. A signal to us is
        passed on to its first process, which then has time to stop
        COMMAND and pack nothing; after 30 s it is killed."""
        signum = None
        deadline = None
        data = bytearray()
        while True:
            try:
                ready, _, _ = select.select([self.status_r], [], [], 1.0)
                if ready:
                    b = os.read(self.status_r, 1 << 16)
                    if not b:
                        break
                    data += b
                elif deadline is not None and time.monotonic() > deadline:
                    self.proc.kill()    # --kill-child ends the namespace
            except Interrupted as e:
                signum = e.signum
                self.forward(signum)
                deadline = time.monotonic() + 30
        self.rc = self.proc.wait()
        try:
            return json.loads(data)
        except ValueError:
            if signum is not None:
                raise Interrupted(signum)
            return None

    def forward(self, signum):
        try:
            with open(os.path.join(self.top, "inner.pid")) as f:
                os.kill(int(f.read()), signum)
        except (OSError, ValueError):
            self.proc.send_signal(signal.SIGKILL)

    def verdict(self, st):
        if st is None:
            # the namespace never ran our code: unshare's own complaint
            try:
                with open(os.path.join(self.top, "unshare.err"), "rb") as f:
                    why = f.read().decode("utf-8", "replace").strip()
            except OSError:
                why = ""
            why = why.splitlines()[-1] if why else f"exit {self.rc}"
            raise PackError(f"user namespace: {why} (sqvenvfs-edit needs "
                            "unprivileged user namespaces)")
        if st["code"] != 0:
            self.out.error(st["message"])
            return st["code"]
        self.summary = st["summary"]
        # Checked and sealed out here, not in the namespaces: there the
        # procfs is the host's while the pids are the namespace's, which a
        # sanitizer-built sqvenvfs-inspect cannot run under.
        finish_image(self.out, self.inspect, os.path.join(self.top, "upper"),
                     self.tmp.path)
        self.size = self.tmp.size()
        self.tmp.commit()
        return 0

    def report(self):
        s, out, args = self.summary, self.out, self.args
        for rel, what in s["rewritten"]:
            out.detail(f"rewritten: {rel} ({what})")
        for rel, why in s["warnings"][:20]:
            out.warn(f"{rel}: {why}")
        for rel, why in s["dropped"]:
            out.warn(f"{rel}: left out ({why})")
        for rel in s["paths"]:
            out.detail(f"in delta: {rel}")
        dt = time.monotonic() - self.t0
        out.info(f"{self.prog}: {args.paths[-1]}: the change over "
                 f"{len(self.images)} image(s)")
        out.info(f"  overlay: {s['overlay']}")
        out.info("  change: " + change_counts(s["added"], s["changed"],
                                              s["removed"], s["opaque"]))
        kinds = {}
        for _, what in s["rewritten"]:
            kinds[what] = kinds.get(what, 0) + 1
        out.info("  relocated: " + (", ".join(
            f"{n} {k}" for k, n in sorted(kinds.items())) or "nothing needed")
            + (f"; {len(s['warnings'])} warning(s)" if s["warnings"] else ""))
        if s["tag"]:
            out.info(f"  byte-compiled for {s['tag']}, optimisation "
                     f"{','.join(map(str, args.levels))} (unchecked-hash "
                     "pycs)" + (f"; {s['nfail']} failed" if s["nfail"]
                                else ""))
        out.info(f"  size: {human(s['size'])} changed -> {human(self.size)} "
                 f"image ({s['squash']}) in {dt:.1f} s")
        if args.keep_work:
            out.info(f"  work directory kept: {self.top}")

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.status_r is not None:
            os.close(self.status_r)
            self.status_r = None
        if self.tmp is not None:
            self.tmp.discard()
        if self.top and os.path.isdir(self.top):
            if self.args.keep_work:
                for n in ("params.json", "inner.pid"):
                    try:
                        os.unlink(os.path.join(self.top, n))
                    except OSError:
                        pass
            else:
                remove_tree(self.top)


def exit_status_doc():
    return (f"exit status: 0 DELTA written; COMMAND's own status when it "
            f"fails (128+N if killed by signal N); {EXIT_FAIL} "
            "sqvenvfs-edit failed or was called wrongly; 126/127 COMMAND not executable/not "
            "found; 128+N interrupted by signal N. Nothing is written "
            "unless the status is 0.")
