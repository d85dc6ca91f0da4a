#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""The daemon's side of the systemd protocol, as sqvenvfs@.service uses it.

Runs `sqvenvfs -f IMAGE MOUNTPOINT` the way systemd runs a Type=notify
service: NOTIFY_SOCKET names a datagram socket this test listens on. Checks
that READY=1 arrives, and that at that moment the mount is already there and
serves the image's content (a unit ordered after ours may use it at once);
that SIGTERM brings STOPPING=1, a clean unmount and exit status 0; and that
with JOURNAL_STREAM naming its stderr the daemon prefixes log lines with a
syslog priority "<N>" (and does not without it).

Then the unit's own command lines (read from sqvenvfs@.service, with the
variables of a NAME.conf expanded as systemd expands them): ExecStartPre and
ExecStart mount a two-image stack; after the daemon is killed (SIGKILL leaves
a stale mount), running them again, as Restart=on-failure does, clears the
stale mount and mounts again.
"""
import argparse
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import sqvtest as t


def drain(sock):
    """Every datagram already queued (its sender has exited)."""
    got = []
    while select.select([sock], [], [], 0)[0]:
        got.append(sock.recv(4096).decode(errors="replace"))
    return got


def recv_until(sock, want, proc, timeout):
    """Collect notification datagrams until one carries `want`."""
    got = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([sock], [], [], 0.2)
        if r:
            msg = sock.recv(4096).decode(errors="replace")
            got.append(msg)
            if want in msg.split("\n"):
                return got, True
        elif proc.poll() is not None:
            # The daemon may have sent its last datagram just before exiting.
            r, _, _ = select.select([sock], [], [], 0)
            if not r:
                break
    return got, False


def env_file(path):
    """KEY=VALUE lines as systemd's EnvironmentFile reads them (quotes stripped)."""
    env = {}
    for line in open(path):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        k, _, v = line.partition("=")
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
            v = v[1:-1]
        env[k.strip()] = v
    return env


def expand(cmdline, env):
    """systemd: ${VAR} is one word, a lone $VAR is split at whitespace."""
    words = []
    for w in cmdline.split():
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", w)
        if m:
            words += env.get(m.group(1), "").split()
        else:
            words.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                                lambda m: env.get(m.group(1), ""), w))
    return words


def unit_commands(a, tmp, img, src):
    pre, start = [], None
    for line in open(a.unit):
        k, _, v = line.strip().partition("=")
        if k == "ExecStartPre":
            pre.append(v)
        elif k == "ExecStart":
            start = v
    # A second image on top that overrides the file: the stack's order.
    top = os.path.join(tmp, "top")
    os.makedirs(os.path.join(top, "pkg"))
    with open(os.path.join(top, "pkg", "hello.txt"), "w") as f:
        f.write("from the top image\n")
    img2 = os.path.join(tmp, "top.sqfs")
    subprocess.run(["mksquashfs", top, img2, "-noappend", "-no-progress", "-quiet"], check=True)
    mp = os.path.join(tmp, "home", ".venv")  # missing: the unit creates it
    conf = os.path.join(tmp, "torch.conf")
    with open(conf, "w") as f:
        f.write(f'IMAGES="{img} {img2}"\nMOUNTPOINT={mp}\nOPTIONS="-o threads=2"\n')
    env = env_file(conf)
    proc = None
    for attempt in ("first start", "restart after SIGKILL"):
        ok = True
        for cmd in pre:
            tolerant = cmd.startswith("-")
            r = subprocess.run(expand(cmd.lstrip("-"), env), capture_output=True, text=True)
            ok &= t.check(r.returncode == 0 or tolerant,
                        f"{attempt}: ExecStartPre={cmd} (rc {r.returncode} {r.stderr.strip()!r})")
        if attempt != "first start":
            t.check(t.mount_type(mp) is None, f"{attempt}: ExecStartPre cleared the stale mount")
        sock_path = os.path.join(tmp, f"unit-{len(attempt)}.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        proc = subprocess.Popen(expand(start, env), env=dict(os.environ, NOTIFY_SOCKET=sock_path),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        msgs, ready = recv_until(sock, "READY=1", proc, 60)
        sock.close()
        try:
            with open(os.path.join(mp, "pkg", "hello.txt")) as f:
                content = f.read()
        except OSError as e:
            content = f"<{e}>"
        t.check(ready and content == "from the top image\n",
                f"{attempt}: ExecStart mounts the stack, top image wins: {content!r} {msgs}")
        if attempt == "first start":
            proc.kill()
            proc.wait()
            t.check(t.mount_type(mp) == "fuse.sqvenvfs", "SIGKILL leaves a stale mount behind")
    proc.send_signal(signal.SIGTERM)
    t.check(proc.wait(60) == 0 and t.mount_type(mp) is None, "stop: SIGTERM unmounts, exit 0")
    return proc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", default="")
    ap.add_argument("--unit", default="")
    a = ap.parse_args()
    if not a.daemon:
        t.skip("the sqvenvfs daemon is not part of this build")
    a.daemon = os.path.abspath(a.daemon)
    for prog in ("mksquashfs",):
        if not shutil.which(prog):
            t.skip(f"{prog} is not installed")
    if not os.path.exists("/dev/fuse") or not os.access("/dev/fuse", os.R_OK | os.W_OK):
        t.skip("/dev/fuse is not usable by this user")

    tmp = tempfile.mkdtemp(prefix="sqv-notify-")
    mp = os.path.join(tmp, "mnt")
    proc = None
    try:
        src = os.path.join(tmp, "src")
        os.makedirs(os.path.join(src, "pkg"))
        with open(os.path.join(src, "pkg", "hello.txt"), "w") as f:
            f.write("ready and serving\n")
        img = os.path.join(tmp, "env.sqfs")
        subprocess.run(["mksquashfs", src, img, "-noappend", "-no-progress", "-quiet"],
                       check=True)
        os.mkdir(mp)

        sock_path = os.path.join(tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        env = dict(os.environ, NOTIFY_SOCKET=sock_path)
        env.pop("JOURNAL_STREAM", None)
        proc = subprocess.Popen([a.daemon, "-f", img, mp], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        msgs, ready = recv_until(sock, "READY=1", proc, 60)
        # Right now, before anything else: is the mount usable?
        fstype = t.mount_type(mp)
        try:
            with open(os.path.join(mp, "pkg", "hello.txt")) as f:
                content = f.read()
        except OSError as e:
            content = f"<{e}>"
        t.check(ready, f"READY=1 received: {msgs}")
        t.check(fstype == "fuse.sqvenvfs",
                f"at READY=1 the mount is there (fstype {fstype})")
        t.check(content == "ready and serving\n",
                f"at READY=1 the mount serves the image: {content!r}")
        t.check(not any("READY=1" in m.split("\n") for m in msgs[:-1]),
                "READY=1 is sent once")
        t.check(proc.poll() is None, "the daemon stays in the foreground (-f)")

        proc.send_signal(signal.SIGTERM)
        msgs, stopping = recv_until(sock, "STOPPING=1", proc, 60)
        t.check(stopping, f"STOPPING=1 received after SIGTERM: {msgs}")
        # Nobody uses the mount: no status may claim someone does.
        first = next((m for m in msgs if "STOPPING=1" in m.split("\n")), "")
        t.check("STATUS=detaching the mount" in first.split("\n"),
                f"STOPPING=1 comes with the status 'detaching the mount', "
                f"not a claim of users still served: {first!r}")
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            rc = None
        err = proc.stderr.read().decode(errors="replace")
        t.check(rc == 0, f"exit status 0 after SIGTERM (got {rc}); stderr {err!r}")
        msgs += drain(sock)
        statuses = [l for m in msgs for l in m.split("\n")
                    if l.startswith("STATUS=")]
        t.check(statuses == ["STATUS=detaching the mount",
                             "STATUS=detached; stopping once no process "
                             "uses it"],
                f"after SIGTERM the statuses say what was done, not that "
                f"anyone is still served: {statuses}")
        t.check(t.mount_type(mp) is None, "nothing mounted after SIGTERM")
        sock.close()

        # JOURNAL_STREAM: what systemd sets when stderr goes to the journal.
        bad = os.path.join(tmp, "missing.sqfs")
        r_fd, w_fd = os.pipe()
        st = os.fstat(w_fd)
        env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        env.pop("NOTIFY_SOCKET", None)
        p = subprocess.Popen([a.daemon, "-f", bad, mp], env=env, stderr=w_fd,
                             stdout=subprocess.DEVNULL)
        os.close(w_fd)
        with os.fdopen(r_fd) as f:
            out = f.read()
        rc = p.wait(60)
        lines = [l for l in out.splitlines() if l]
        t.check(rc != 0 and lines and all(re.match(r"<[0-7]>", l) for l in lines)
                and any(l.startswith("<3>") and "missing.sqfs" in l for l in lines),
                f"with JOURNAL_STREAM, log lines carry a priority: {out!r}")
        env.pop("JOURNAL_STREAM")
        r = subprocess.run([a.daemon, "-f", bad, mp], env=env, capture_output=True, text=True)
        t.check(r.returncode != 0 and r.stderr.startswith("sqvenvfs: ") and "missing.sqfs" in r.stderr,
                f"without it, plain 'sqvenvfs: ...' lines: {r.stderr!r}")

        if a.unit:
            proc = unit_commands(a, tmp, img, src)
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        if t.mount_type(mp):
            subprocess.run(["umount", "-l", mp])
        shutil.rmtree(tmp, ignore_errors=True)
    t.finish()


if __name__ == "__main__":
    sys.exit(main())
