# SPDX-License-Identifier: BSD-2-Clause
"""The part of sqvenvfs-edit that runs inside its own user, mount and PID
namespaces (started by `unshare`, as the namespace's root, which is the
calling user outside): mount the image stack read-only with sqvenvfs,
put a writable overlay on top at the path where the venv is used, run
COMMAND there as the calling user, take the overlay down, and pack what
COMMAND changed (the overlay's upper directory) into the temporary DELTA
with the code sqvenvfs-pack uses.

It owns the mounts and the processes; the caller (edit.py) owns the
files outside (work directory, temporary image). This process is the PID
namespace's init: when it ends, however it ends, the kernel kills every
process left in the namespace and the mounts go with the namespace."""

import json
import os
import shutil
import signal
import subprocess
import time

from .bytecompile import byte_compile
from .errors import TRAPPED, Interrupted, PackError, ignore_signals
from .mksquashfs import SquashOptions, write_squashfs
from .nsmount import FuseDaemon, kill_strays, sys_mount, unmount
from .out import Out
from .relocate import Relocator
from .times import fix_times, source_date_epoch
from .upper import Upper
from .venvinfo import find_interpreter, interpreter_info

# exit codes, shared with edit.py
EXIT_FAIL = 125
EXIT_NOEXEC = 126
EXIT_NOTFOUND = 127


class CommandFailed(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def work_full(path):
    """A line saying the file system of path is full, or None."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    if free < (64 << 10) or st.f_favail == 0:
        return (f"the work directory's file system is full "
                f"({free // 1024} KiB free)")
    return None


class Inner:
    def __init__(self, p):
        self.p = p                  # the parameters edit.py wrote
        self.out = Out(p["prog"], p["quiet"], p["verbose"])
        self.top = p["top"]
        self.lower = os.path.join(self.top, "lower")
        self.upper = os.path.join(self.top, "upper")
        self.owork = os.path.join(self.top, "ovl-work")
        self.at = p["at"]
        self.sqv = None             # FuseDaemon of the image stack
        self.fovl = None            # FuseDaemon of fuse-overlayfs, if used
        self.kernel_ovl = False         # our overlay is on self.at
        self.used_fuse = False          # fuse-overlayfs wrote the upper
        self.cmd = None             # COMMAND's Popen
        self.overlay = None         # what the messages call the overlay

    # mounts ----------------------------------------------------------------

    def mount_stack(self):
        p = self.p
        self.sqv = FuseDaemon("sqvenvfs", [p["sqvenvfs"], "-f", *p["images"],
                                           self.lower],
                              self.lower, os.path.join(self.top, "sqvenvfs.log"),
                              names_thing=True)
        self.sqv.wait_mounted()
        # The merged view shows the top layer's root directory: the
        # upper's must look like the stack's.
        st = os.stat(self.lower)
        os.chmod(self.upper, st.st_mode & 0o7777)
        os.utime(self.upper, ns=(st.st_mtime_ns, st.st_mtime_ns))

    def mount_overlay(self):
        want = self.p["overlay"]
        opts = (f"lowerdir={self.lower},upperdir={self.upper},"
                f"workdir={self.owork}")
        why = None
        if want == "auto" and not self.upper_has_xattrs():
            # overlayfs would mount, then fail to record an opaque
            # directory; fuse-overlayfs falls back to marker files
            why = "the work directory's file system has no user xattrs"
            want = "fuse"
        if want in ("auto", "kernel"):
            try:
                # userxattr: the only way allowed in a user namespace; it
                # also keeps redirect_dir and metacopy off, so the upper
                # directory is a plain changeset
                sys_mount("sqvenvfs-edit", self.at, "overlay",
                          opts + ",userxattr")
                self.kernel_ovl = True
                self.overlay = "kernel overlayfs in a user namespace"
                return
            except OSError as e:
                why = f"the kernel refused it in a user namespace: {e.strerror}"
                if want == "kernel":
                    raise PackError(f"overlay: the kernel refused overlayfs "
                                    f"in a user namespace: {why}")
        prog = self.p["fuse_overlayfs"]
        if not prog:
            raise PackError("overlay: fuse-overlayfs is not installed "
                            "(Debian package fuse-overlayfs)" +
                            (f", and no kernel overlayfs: {why}" if why
                             else ""))
        self.fovl = FuseDaemon("fuse-overlayfs", [prog, "-f", "-o", opts,
                                                  self.at],
                               self.at, os.path.join(self.top, "ovl.log"))
        self.fovl.wait_mounted()
        self.used_fuse = True
        self.overlay = "fuse-overlayfs" + (f" (no kernel overlayfs: {why})"
                                           if why else "")

    def daemon_pids(self):
        return {d.proc.pid for d in (self.sqv, self.fovl) if d is not None}

    def upper_has_xattrs(self):
        try:
            os.setxattr(self.upper, "user.sqvenvfs-edit", b"probe")
            os.removexattr(self.upper, "user.sqvenvfs-edit")
            return True
        except OSError:
            return False

    def unmount_overlay(self):
        if self.fovl is not None:
            self.fovl.stop()
            self.fovl = None
        elif self.kernel_ovl:
            unmount(self.at)
            self.kernel_ovl = False

    # COMMAND ---------------------------------------------------------------

    def command_env(self):
        env = dict(os.environ)
        for k in ("PYTHONHOME", "__PYVENV_LAUNCHER__"):
            env.pop(k, None)
        env["VIRTUAL_ENV"] = self.at
        env["PATH"] = os.path.join(self.at, "bin") + os.pathsep + \
            env.get("PATH", os.defpath)
        return env

    def run_command(self):
        argv = self.p["command"]
        env = self.command_env()
        exe = shutil.which(argv[0], path=env["PATH"]) if "/" not in argv[0] \
            else argv[0]
        if not exe or not os.path.exists(exe):
            raise CommandFailed(EXIT_NOTFOUND, f"{argv[0]}: command not found "
                                f"(PATH starts with {self.at}/bin)")
        if not os.access(exe, os.X_OK) or os.path.isdir(exe):
            raise CommandFailed(EXIT_NOEXEC, f"{argv[0]}: not executable")
        # A nested user namespace maps the calling user back to itself:
        # COMMAND runs as that user, not as this namespace's root (pip
        # would warn, and files would look root's).
        cmd = [self.p["unshare"], "--user", f"--map-user={self.p['uid']}",
               f"--map-group={self.p['gid']}", "--", exe, *argv[1:]]
        # COMMAND stays in the terminal's process group: Ctrl-C reaches it
        self.cmd = subprocess.Popen(cmd, env=env)
        rc = self.cmd.wait()
        self.cmd = None
        kill_strays(self.daemon_pids())
        if rc == 0:
            return
        shown = " ".join(argv)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        if rc < 0:
            msg = f"COMMAND ({shown}) was killed by " \
                  f"{signal.Signals(-rc).name}"
            code = 128 - rc
        else:
            msg = f"COMMAND ({shown}) exited with status {rc}"
            code = rc
        full = work_full(self.upper)
        raise CommandFailed(code, msg + (f"; {full}" if full else "")
                            + ": no delta written")

    def stop_command(self, signum):
        """Interrupted while COMMAND runs: it had the same signal from the
        terminal, or gets it now; it has a moment to end cleanly."""
        if self.cmd is None:
            return
        try:
            self.cmd.send_signal(signum)
            self.cmd.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.cmd.kill()
            self.cmd.wait()
        except OSError:
            pass
        self.cmd = None

    # the change ------------------------------------------------------------

    def pack_change(self):
        p, out = self.p, self.out
        at_paths = sorted({self.at, os.path.realpath(self.at)}, key=len,
                          reverse=True)
        up = Upper(out, self.upper, [os.fsencode(v) for v in at_paths],
                   self.lower, fuse_markers=self.used_fuse)
        up.drop_stale_pycs()
        up.convert()
        out.progress("relocating ...", force=True)
        reloc = Relocator(out, up, at_paths)
        reloc.run()
        nfail = 0
        tag = None
        if not p["no_compile"]:
            python = find_interpreter(self.lower)
            if not python:
                raise PackError("bin/python3: missing in the images; cannot "
                                "byte-compile (use --no-compile)")
            tag, _ = interpreter_info(python)
            res = byte_compile(out, python, self.upper, p["mount_point"],
                               p["levels"], p["jobs"])
            nfail, first = res.failed, res.first
            if nfail:
                full = work_full(self.upper)
                if full:
                    raise PackError(f"byte-compiling: {full}")
                out.warn(f"{nfail} file(s) could not be byte-compiled "
                         f"(syntax errors for this Python), first: {first}")
        clamp = source_date_epoch()
        newest, tally = fix_times(up, self.upper, None, clamp)
        epoch = clamp if clamp is not None else max(0, min(newest, 2**32 - 1))
        opts = SquashOptions(comp=p["comp"], level=p["level"],
                             block_size=p["block_size"], all_root=True,
                             jobs=p["jobs"], epoch=epoch)
        size = tally.size
        write_squashfs(out, p["mksquashfs"], self.upper, p["tmp_image"], opts)
        return {
            "added": up.added, "changed": up.changed, "removed": up.removed,
            "opaque": up.opaque, "paths": up.added_paths,
            "dropped": up.dropped, "rewritten": reloc.rewritten,
            "warnings": reloc.warnings, "tag": tag, "nfail": nfail,
            "size": size, "squash": opts.describe(),
            "overlay": self.overlay,
        }

    # the run ---------------------------------------------------------------

    def run(self):
        self.mount_stack()
        self.mount_overlay()
        self.out.info(f"{self.p['prog']}: {self.at}: writable, through "
                      f"{self.overlay}")
        self.run_command()
        self.unmount_overlay()
        return self.pack_change()

    def teardown(self):
        if self.cmd is not None:
            self.stop_command(signal.SIGTERM)
        try:
            kill_strays(self.daemon_pids())
        except OSError:
            pass
        for step in (self.unmount_overlay,
                     lambda: self.sqv and self.sqv.stop()):
            try:
                step()
            except OSError:
                pass


def trap_first_signal():
    """Like errors.trap_signals, but only the first signal unwinds: a
    Ctrl-C reaches us from the terminal and again passed on by edit.py,
    and the second must not interrupt the cleanup the first started."""
    def handler(signum, _frame):
        ignore_signals()
        raise Interrupted(signum)
    for s in TRAPPED:
        signal.signal(s, handler)


def write_status(fd, code, message=None, summary=None):
    """The verdict goes to edit.py through a pipe, not a file: it must get
    there when the disk is full too."""
    data = json.dumps({"code": code, "message": message,
                       "summary": summary}).encode()
    while data:
        data = data[os.write(fd, data):]
    os.close(fd)


def main(params_path):
    """Entry point inside the namespaces; returns the exit status, and
    sends the verdict to edit.py, which prints it."""
    with open(params_path) as f:
        p = json.load(f)
    # edit.py's stderr, kept apart from unshare's own
    os.dup2(p["stderr_fd"], 2)
    os.close(p["stderr_fd"])
    top = p["top"]
    # our pid outside (the procfs is the host's), for edit.py to signal
    with open(os.path.join(top, "inner.pid"), "w") as f:
        f.write(os.readlink("/proc/self"))
    inner = Inner(p)
    code, message, summary = EXIT_FAIL, None, None
    t0 = time.monotonic()
    try:
        trap_first_signal()
        summary = inner.run()
        summary["seconds"] = time.monotonic() - t0
        code = 0
    except CommandFailed as e:
        code, message = e.code, str(e)
    except PackError as e:
        message = str(e)
    except Interrupted as e:
        inner.stop_command(e.signum)
        code = 128 + e.signum
        message = (f"interrupted by {signal.Signals(e.signum).name}; "
                   "no delta written")
    except OSError as e:
        message = f"{e.filename or 'error'}: {e.strerror}"
        full = work_full(inner.upper)
        if full:
            message += f" ({full})"
    finally:
        ignore_signals()
        inner.teardown()
    write_status(p["status_fd"], code, message, summary)
    return code
