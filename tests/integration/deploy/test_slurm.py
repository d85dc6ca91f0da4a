#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""End-to-end test of the Slurm integration on a real single-node Slurm.

Installs the build (meson install --destdir) and starts munged, slurmctld and
slurmd (Debian's slurm-wlm and munge) with all their state in a temporary
directory, configured as docs/guide-slurm-admin.md says: Prolog= and Epilog=
are the installed sqvenvfs-prolog and sqvenvfs-epilog links, plugstack.conf
and the site file are the installed *.example files with only paths changed
(the site file at a conf= path other than the compiled-in default), and
nothing wraps the Prolog. It submits jobs as an unprivileged user. Checks,
in order:

  submission   bad requests are refused by sbatch (and srun) itself, with
               the reason; srun and salloc take the option too
  basic        a job imports a package from the mounted venv; the daemon ran
               as the job's user; afterwards nothing is mounted, no daemon runs
  cancel       a cancelled job is cleaned up, and so is a failed one
  stale        after the user's daemon is killed, the next job on that mount
               point clears the stale mount and mounts again
  share        two concurrent jobs of one user share one mount, which
               outlives the first and goes with the last
  conflict     a different stack at a mount point in use fails only that job,
               with the reason in its output; the node is not drained
  prolog-fail  a failure only the node can see (image removed after
               submission) fails the job clearly and does not drain the node
  staging      an image is copied to the node-local cache once, also when two
               prologs want it at the same time; the mount uses the copy
  forged       the Prolog refuses, on its own, a request that never went
               through the plugin (unreadable image, system path, symlinks)
  lru          the cache stays under its size limit by evicting the least
               recently used copy
  steps        srun --sqvenv inside a job is refused with a message that says
               to give it to sbatch or salloc, in a job without --sqvenv and
               in one with another stack
  many         257 jobs of one user share one mount through the installed
               Prolog and Epilog run as slurmd runs them: the mount stays
               until the last Epilog
  no-init      a daemon that dies between its mount and the kernel's INIT
               fails the job, and leaves no dead mount behind
  broadcast    the guides' broadcast recipe: the installed sqvenvfs-sbcast
               in a batch job sbcasts the image to node-local storage, mounts
               the copy on the node from an srun step, and an srun step imports
               from it; afterwards nothing is mounted and the copy is gone; a
               cancelled one leaves no mount and no daemon; an image that is
               no squashfs image fails the job, saying why

Exit 77 only when Slurm cannot start here at all (not root, packages
missing); SQVENVFS_TEST_NO_SKIP=1 turns that into a failure.
"""
import argparse
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

from deploytest import (FAILED, check, daemons, enter_private_mount_ns, finish, installed,
                        log, meson_install, mountinfo, private_fuse, run, skip, test_user,
                        wait_for)

TEST_USER = "sqvslurm"
PY = "/usr/bin/python3"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mounts_at(path):
    return [(t, line) for mp, t, line in mountinfo() if mp == path]


def mounts_under(path):
    return [mp for mp, t, line in mountinfo() if mp == path or mp.startswith(path + "/")]


class Cluster:
    def __init__(self, top, args):
        self.top = top
        self.args = args
        self.procs = []
        self.etc = os.path.join(top, "etc")
        self.conf = os.path.join(self.etc, "slurm.conf")
        self.site = os.path.join(self.etc, "sqvenvfs-slurm.conf")
        self.state = os.path.join(top, "sqvstate")
        self.stage = os.path.join(top, "stage")
        self.sqvlog = os.path.join(top, "sqvenvfs-slurm.log")
        self.env = dict(os.environ, SLURM_CONF=self.conf)

    def write_site(self, **extra):
        """The installed sqvenvfs-slurm.conf.example, with the settings it
        shows commented out given this test's paths (and the staging size
        limit where a test needs one)."""
        settings = {"daemon": self.args.daemon, "state_dir": self.state,
                    "log_file": self.sqvlog, **extra}
        lines = []
        with open(self.args.examples["sqvenvfs-slurm.conf.example"]) as f:
            for line in f:
                key = line.lstrip("#").split("=", 1)[0].strip()
                if line.startswith("#") and "=" in line and key in settings:
                    line = f"{key} = {settings.pop(key)}\n"
                lines.append(line)
        if settings:
            raise RuntimeError(f"the installed example has no line for {sorted(settings)}")
        with open(self.site, "w") as f:
            f.writelines(lines)

    def start(self):
        top = self.top
        os.makedirs(self.etc)
        for d in ("munge", "ctld", "spool", "logs"):
            os.makedirs(os.path.join(top, d))
        os.chmod(os.path.join(top, "munge"), 0o700)
        key = os.path.join(top, "munge", "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        self.sock = os.path.join(top, "munge", "munge.socket")
        munged = [shutil.which("munged") or "/usr/sbin/munged", "--foreground", "--force",
                  f"--socket={self.sock}", f"--key-file={key}",
                  f"--pid-file={top}/munge/munged.pid", f"--log-file={top}/logs/munged.log",
                  f"--seed-file={top}/munge/seed"]
        self.spawn(munged, "munged")
        wait_for(lambda: os.path.exists(self.sock), "munged's socket", 30)
        # The socket's directory must let the test user reach munged.
        os.chmod(os.path.join(top, "munge"), 0o755)

        host = socket.gethostname().split(".")[0]
        cport, dport = free_port(), free_port()
        # plugstack.conf: the installed example, its plugin path under the
        # install root and conf= naming this test's site file.
        with open(self.args.examples["plugstack.conf.example"]) as f:
            text = f.read()
        if f"conf={self.args.default_site_conf}" not in text:
            raise RuntimeError(f"the installed plugstack example names no conf=: {text!r}")
        text = self.args.relocate(text.replace(f"conf={self.args.default_site_conf}",
                                               f"conf={self.site}"))
        with open(os.path.join(self.etc, "plugstack.conf"), "w") as f:
            f.write(text)
        self.write_site()
        # slurm.conf: this cluster, then the installed example's lines.
        with open(self.args.examples["slurm.conf.example"]) as f:
            sqv_lines = self.args.relocate(f.read())
        conf = f"""ClusterName=sqvtest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.sock}
CredType=cred/munge
SlurmctldPort={cport}
SlurmdPort={dport}
StateSaveLocation={top}/ctld
SlurmdSpoolDir={top}/spool
SlurmctldPidFile={top}/slurmctld.pid
SlurmdPidFile={top}/slurmd.pid
SlurmctldLogFile={top}/logs/slurmctld.log
SlurmdLogFile={top}/logs/slurmd.log
SlurmdDebug=debug
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
MinJobAge=600
PlugStackConfig={self.etc}/plugstack.conf
NodeName=sqvnode NodeHostname={host} NodeAddr=127.0.0.1 CPUs=4 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=sqvnode Default=YES MaxTime=INFINITE State=UP
""" + sqv_lines
        with open(self.conf, "w") as f:
            f.write(conf)
        self.spawn(["slurmctld", "-D", "-i", "-f", self.conf], "slurmctld")
        self.spawn(["slurmd", "-D", "-f", self.conf, "-N", "sqvnode"], "slurmd")

        def idle():
            r = run(["sinfo", "-h", "-o", "%T"], env=self.env)
            return r.returncode == 0 and r.stdout.strip() == "idle"
        wait_for(idle, "the node to become idle", 60)

    def spawn(self, cmd, name):
        out = open(os.path.join(self.top, "logs", f"{name}.out"), "w")
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                             start_new_session=True)
        self.procs.append((name, p))
        time.sleep(0.3)
        if p.poll() is not None:
            raise RuntimeError(f"{name} exited at once with {p.returncode}")

    def stop(self):
        run(["scancel", "--full", "-u", TEST_USER], env=self.env)
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def dump_logs(self):
        for name in ("slurmctld.log", "slurmd.log", "munged.log", "slurmctld.out",
                     "slurmd.out", "munged.out"):
            p = os.path.join(self.top, "logs", name)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    tail = f.readlines()[-40:]
                log(f"----- {name} (tail)\n" + "".join(tail))
        if os.path.exists(self.sqvlog):
            with open(self.sqvlog) as f:
                log("----- sqvenvfs-slurm.log\n" + f.read())

    # --- jobs, as the test user ------------------------------------------

    def as_user(self, cmd, cwd, env=None):
        extra = [f"{k}={v}" for k, v in (env or {}).items()]
        return run(["setpriv", f"--reuid={TEST_USER}", f"--regid={self.gid}",
                    "--init-groups", "--", "env", f"SLURM_CONF={self.conf}"] + extra + cmd,
                   cwd=cwd, env=self.env)

    def sbatch(self, opts, script, cwd, env=None):
        r = self.as_user(["sbatch", "--parsable"] + opts + ["--wrap", script], cwd, env)
        if r.returncode == 0:
            return int(r.stdout.strip().split(";")[0]), r
        return None, r

    def job_state(self, jobid):
        r = run(["squeue", "-h", "-t", "all", "-j", str(jobid), "-o", "%T"], env=self.env)
        return r.stdout.strip()

    def wait_job(self, jobid, timeout=180):
        done = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL",
                "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
        return wait_for(lambda: (s := self.job_state(jobid)) in done and s,
                        f"job {jobid} to finish", timeout)

    def wait_running(self, jobid, flag, timeout=120):
        wait_for(lambda: os.path.exists(flag) or self.job_state(jobid) not in
                 ("PENDING", "CONFIGURING", "RUNNING", ""),
                 f"job {jobid} to start", timeout)
        if not os.path.exists(flag):
            raise RuntimeError(f"job {jobid} ended ({self.job_state(jobid)}) before it started")

    def node_state(self):
        return run(["sinfo", "-h", "-o", "%T"], env=self.env).stdout.strip()

    def count_log(self, text):
        if not os.path.exists(self.sqvlog):
            return 0
        with open(self.sqvlog) as f:
            return sum(text in line for line in f)


def make_venv_image(top, name, value, extra_mb=0):
    """A venv from Debian's python3 holding a package 'sqvprobe'."""
    src = os.path.join(top, "build", name)
    r = run([PY, "-m", "venv", "--without-pip", src])
    if r.returncode != 0:
        raise RuntimeError(f"cannot create a venv with {PY} -m venv (python3-venv missing?): "
                           f"{r.stderr}")
    ver = "python%d.%d" % tuple(int(x) for x in run(
        [PY, "-c", "import sys;print(sys.version_info[0], sys.version_info[1])"]).stdout.split())
    pkg = os.path.join(src, "lib", ver, "site-packages", "sqvprobe")
    os.makedirs(pkg)
    with open(os.path.join(pkg, "__init__.py"), "w") as f:
        f.write(f"VALUE = {value!r}\n")
    if extra_mb:
        with open(os.path.join(src, "payload.bin"), "wb") as f:
            f.write(os.urandom(extra_mb << 20))
    img = os.path.join(top, "images", name + ".sqfs")
    r = run(["mksquashfs", src, img, "-comp", "zstd", "-noappend", "-no-progress", "-quiet"])
    if r.returncode != 0:
        raise RuntimeError(f"mksquashfs: {r.stderr}")
    os.chmod(img, 0o644)
    return img


def user_dir(top, *parts, uid, gid):
    p = os.path.join(top, *parts)
    os.makedirs(p, exist_ok=True)
    os.chown(p, uid, gid)
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-root", required=True, help="the meson build directory")
    ap.add_argument("--prefix", required=True, help="the build's install prefix")
    ap.add_argument("--default-site-conf", required=True,
                    help="the site file's compiled-in path")
    ap.add_argument("--die-shim", required=True,
                    help="LD_PRELOAD shim: the daemon dies before serving INIT")
    args = ap.parse_args()

    if os.geteuid() != 0:
        skip("needs root to start munged, slurmctld and slurmd")
    enter_private_mount_ns()
    for prog in ("meson", "munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo",
                 "mksquashfs", "fusermount3", "setpriv", "useradd"):
        if not shutil.which(prog) and not os.path.exists(f"/usr/sbin/{prog}"):
            skip(f"{prog} is not installed (Debian packages: see .ci/packages/deploy.txt)")
    if not os.path.exists("/dev/fuse"):
        skip("/dev/fuse does not exist")

    pw = test_user(TEST_USER)
    uid, gid = pw.pw_uid, pw.pw_gid

    top = tempfile.mkdtemp(prefix="sqv-slurm-", dir="/tmp")
    os.chmod(top, 0o755)
    cl = Cluster(top, args)
    cl.uid, cl.gid = uid, gid
    try:
        private_fuse(top)
        os.makedirs(os.path.join(top, "images"))
        work = user_dir(top, "work", uid=uid, gid=gid)
        img = make_venv_image(top, "probe", "sqvenvfs-slurm-ok")
        img2 = make_venv_image(top, "other", "other-stack")
        imgs = make_venv_image(top, "staged", "staged-ok", extra_mb=48)
        secret = os.path.join(top, "images", "secret.sqfs")
        shutil.copy(img, secret)
        os.chmod(secret, 0o600)
        notsq = os.path.join(top, "images", "plain.sqfs")
        with open(notsq, "w") as f:
            f.write("not a squashfs image\n" * 10)
        os.chmod(notsq, 0o644)

        install(args, os.path.join(top, "root"))
        cl.start()
        log(f"slurm is up in {top}")
        tests(cl, top, work, uid, gid, img, img2, imgs, secret, notsq)
    except Exception:
        traceback.print_exc()
        FAILED.append("exception")
    finally:
        if FAILED:
            cl.dump_logs()
        try:
            cl.stop()
        finally:
            for mp in reversed(mounts_under(top)):
                run(["umount", "-l", mp])
            for pid in daemons(args.daemon, uid) if getattr(args, "daemon", None) else []:
                os.kill(pid, signal.SIGKILL)
            if os.environ.get("SQV_TEST_KEEP") == "1":
                log(f"state kept in {top} (SQV_TEST_KEEP=1)")
            else:
                shutil.rmtree(top, ignore_errors=True)
    return finish()


def install(args, root):
    """meson install into root (the job's user can reach it: top is 0755)
    and find what the guide has administrators use."""
    found = meson_install(args.build_root, root)
    prefix = args.prefix.rstrip("/")

    def one(name, under):
        return installed(found, name, under)
    args.daemon = one("sqvenvfs", "/bin/")
    args.plugin = one("sqvenvfs.so", "/slurm")
    args.prolog = one("sqvenvfs-prolog", "/sqvenvfs/")
    args.epilog = one("sqvenvfs-epilog", "/sqvenvfs/")
    args.examples = {n: one(n, "/share/sqvenvfs/slurm/") for n in
                     ("slurm.conf.example", "plugstack.conf.example",
                      "sqvenvfs-slurm.conf.example")}
    # Installed files name installed paths: under the install root here.
    args.relocate = lambda text: text.replace(prefix + "/", root + prefix + "/")
    check(os.path.islink(args.prolog) and os.path.islink(args.epilog),
          "the Prolog and Epilog are installed as links to sqvenvfs-slurm")
    helper = os.path.join(os.path.dirname(args.prolog), "sqvenvfs-slurm")
    r = run([helper, "--help"])
    check(r.returncode == 0 and r.stdout.startswith("usage: sqvenvfs-slurm prolog|epilog")
          and "conf=" in r.stdout, f"sqvenvfs-slurm --help: {r.stdout[:80]!r}")
    r = run([helper, "--version"])
    check(r.returncode == 0 and r.stdout.startswith("sqvenvfs-slurm ") and
          len(r.stdout.split()) == 2, f"sqvenvfs-slurm --version: {r.stdout!r}")
    for argv, want in ((["foo"], "sqvenvfs-slurm: foo: not a mode"),
                       (["prolog", "x"], "sqvenvfs-slurm: x: one word only"),
                       ([], "sqvenvfs-slurm: give prolog or epilog")):
        r = run([helper, *argv])
        check(r.returncode == 2 and r.stdout == "" and
              r.stderr.startswith(want) and r.stderr.count("\n") == 1,
              f"sqvenvfs-slurm {' '.join(argv)}: one line saying why, exit 2 "
              f"(exit {r.returncode}): {r.stderr!r}")


def import_script(mp, flag=None, release=None):
    s = f"{mp}/bin/python -c 'import sqvprobe; print(\"VALUE\", sqvprobe.VALUE)' && " \
        f"grep ' {mp} ' /proc/self/mountinfo"
    if flag:
        s += f" && touch {flag} && while [ ! -e {release} ]; do sleep 0.2; done && " \
             f"{mp}/bin/python -c 'import sqvprobe; print(\"AGAIN\", sqvprobe.VALUE)'"
    return s


def output(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def clean_after(cl, mp, uid, what):
    check(not mounts_at(mp), f"{what}: nothing mounted at {mp} after the job")
    check(not daemons(cl.args.daemon, uid), f"{what}: no daemon runs after the job")


def tests(cl, top, work, uid, gid, img, img2, imgs, secret, notsq):
    def mp(name):
        return user_dir(top, "work", name, uid=uid, gid=gid)

    # --- submission checks --------------------------------------------
    os.symlink("/usr/lib", os.path.join(work, "link"))
    os.lchown(os.path.join(work, "link"), uid, gid)
    bad = [
        (f"{top}/images/missing.sqfs:{work}/m", "No such file"),
        (f"{secret}:{work}/m", "not readable"),
        (f"{notsq}:{work}/m", "not a squashfs image"),
        (f"{img}:/usr/lib/sqv", "system path"),
        (f"{img}:{work}/link", "symbolic link"),
        (f"{img}", "IMAGE[,IMAGE...]:MOUNTPOINT"),
        # $BASE,$DELTA with one of them unset: not the other alone
        (f"{img},:{work}/m", "an empty image name"),
        (f",{img}:{work}/m", "an empty image name"),
    ]
    # A mount over the directory the job is submitted from hides its output
    # file: the job would fail without a line.
    bad.append((f"{img}:{work}", "would hide the directory you submit from"))
    for spec, why in bad:
        jid, r = cl.sbatch([f"--sqvenv={spec}", "-o", f"{work}/bad.out"], "true", work)
        check(jid is None and why in r.stderr,
              f"submission of --sqvenv={spec} refused ({why}): {r.stderr.strip()!r}")
    # ... and one over the user's home ($HOME; the test user has none in
    # the password file)
    home = user_dir(top, "home", uid=uid, gid=gid)
    jid, r = cl.sbatch([f"--sqvenv={img}:{home}", "-o", f"{work}/bad.out"],
                       "true", work, env={"HOME": home})
    check(jid is None and "would hide your home directory" in r.stderr,
          f"submission of a mount over the home directory refused: "
          f"{r.stderr.strip()!r}")
    check(cl.job_state("") == "" or not run(["squeue", "-h"], env=cl.env).stdout.strip(),
          "no job was created by refused submissions")

    # --- basic: import from the mount, in place (no staging) ------------
    m1 = mp("m1")
    out = f"{work}/basic.out"
    step = f" && srun -n1 {m1}/bin/python -c 'import sqvprobe; print(\"STEP\", sqvprobe.VALUE)'"
    jid, r = cl.sbatch([f"--sqvenv={img}:{m1}", "-o", out], import_script(m1) + step, work)
    check(jid is not None, f"basic job submitted {r.stderr.strip()}")
    if jid:
        st = cl.wait_job(jid)
        text = output(out)
        check(st == "COMPLETED" and "VALUE sqvenvfs-slurm-ok" in text,
              f"basic: the job imported the package from the mount ({st}): {text!r}")
        check("STEP sqvenvfs-slurm-ok" in text, "basic: an srun step in the job sees the mount")
        check(f"user_id={uid}" in text, "basic: the mount belongs to the job's user "
              "(the daemon ran as that user)")
        clean_after(cl, m1, uid, "basic")

    # --- srun and salloc take the option too -----------------------------
    probe = "bin/python -c 'import sqvprobe; print(\"VALUE\", sqvprobe.VALUE)'"
    for cmd in ("srun", "salloc"):
        m = mp(f"m-{cmd}")
        argv = [cmd, f"--sqvenv={img}:{m}"] + (["srun"] if cmd == "salloc" else []) + \
            ["sh", "-c", f"{m}/{probe}"]
        r = cl.as_user(argv, work)
        check(r.returncode == 0 and "VALUE sqvenvfs-slurm-ok" in r.stdout,
              f"{cmd} --sqvenv: the step imports from the mount (rc {r.returncode}): "
              f"{r.stdout.strip()!r} {r.stderr.strip()!r}")
        wait_for(lambda: not run(["squeue", "-h", "-t", "CG,R,PD"], env=cl.env).stdout.strip(),
                 f"the {cmd} job to finish", 120)
        clean_after(cl, m, uid, cmd)
    r = cl.as_user(["srun", f"--sqvenv={top}/images/missing.sqfs:{work}/m", "true"], work)
    check(r.returncode != 0 and "No such file" in r.stderr,
          f"srun refuses a bad request too: {r.stderr.strip()!r}")

    # --- cancel ---------------------------------------------------------
    m2 = mp("m2")
    flag = f"{work}/cancel.started"
    jid, r = cl.sbatch([f"--sqvenv={img}:{m2}", "-o", f"{work}/cancel.out"],
                       import_script(m2, flag, f"{work}/never"), work)
    if check(jid is not None, f"cancel job submitted {r.stderr.strip()}"):
        cl.wait_running(jid, flag)
        check(len(mounts_at(m2)) == 1, "cancel: mounted while the job runs")
        run(["scancel", str(jid)], env=cl.env)
        st = cl.wait_job(jid)
        check(st == "CANCELLED", f"cancel: job state {st}")
        clean_after(cl, m2, uid, "cancel")

    # --- a job that fails is cleaned up too --------------------------------
    m2f = mp("m2f")
    jid, r = cl.sbatch([f"--sqvenv={img}:{m2f}", "-o", f"{work}/fail.out"],
                       import_script(m2f) + " && exit 3", work)
    if check(jid is not None, f"failing job submitted {r.stderr.strip()}"):
        st = cl.wait_job(jid)
        check(st == "FAILED" and "VALUE sqvenvfs-slurm-ok" in output(f"{work}/fail.out"),
              f"failing job: ran with its mount and failed ({st})")
        clean_after(cl, m2f, uid, "failing job")

    # --- a killed daemon: the next job clears the stale mount -------------
    m6 = mp("m6")
    jid1, r = cl.sbatch([f"--sqvenv={img}:{m6}", "-o", f"{work}/stale1.out"],
                        import_script(m6, f"{work}/stale1.started", f"{work}/stale1.release"),
                        work)
    if check(jid1 is not None, f"stale: first job submitted {r.stderr.strip()}"):
        cl.wait_running(jid1, f"{work}/stale1.started")
        for pid in daemons(cl.args.daemon, uid):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not daemons(cl.args.daemon, uid), "the killed daemon to go", 30)
        check(len(mounts_at(m6)) == 1, "stale: SIGKILL left a stale mount")
        jid2, r = cl.sbatch([f"--sqvenv={img}:{m6}", "-o", f"{work}/stale2.out"],
                            import_script(m6), work)
        if check(jid2 is not None, f"stale: second job accepted at the stale mount point "
                 f"{r.stderr.strip()}"):
            st = cl.wait_job(jid2)
            check(st == "COMPLETED" and "VALUE sqvenvfs-slurm-ok" in output(f"{work}/stale2.out")
                  and cl.count_log("clearing a stale mount") == 1,
                  f"stale: the second job cleared the stale mount and got a fresh one ({st})")
        open(f"{work}/stale1.release", "w").close()
        cl.wait_job(jid1)
        clean_after(cl, m6, uid, "stale")

    # --- staging on from here --------------------------------------------
    cl.write_site(stage_dir=cl.stage, stage_max_size="1G")

    # --- share: two jobs, one mount ---------------------------------------
    m3 = mp("m3")
    jobs = []
    for i in (1, 2):
        # Two images: the top one (img) overrides the bottom one (img2).
        jid, r = cl.sbatch([f"--sqvenv={img2},{img}:{m3}", "-o", f"{work}/share{i}.out"],
                           import_script(m3, f"{work}/share{i}.started",
                                         f"{work}/share{i}.release"), work)
        check(jid is not None, f"share: job {i} submitted {r.stderr.strip()}")
        jobs.append(jid)
    if all(jobs):
        for i, jid in enumerate(jobs, 1):
            cl.wait_running(jid, f"{work}/share{i}.started")
        check(len(mounts_at(m3)) == 1, f"share: one mount for two jobs: {mounts_at(m3)}")
        pids = daemons(cl.args.daemon, uid)
        check(len(pids) == 1, f"share: one daemon for two jobs: {pids}")
        if pids:
            with open(f"/proc/{pids[0]}/cmdline", "rb") as f:
                argv = f.read().decode().split("\0")
            check(len([a for a in argv if a.startswith(cl.stage + "/jobs/")]) == 2,
                  f"staging: the daemon mounts the node-local copies: {argv}")
        st_obj = os.stat(os.path.join(cl.stage, "objects"))
        check(st_obj.st_uid == 0 and st_obj.st_mode & 0o777 == 0o700,
              "staging: the copies' directory is root's alone (0700)")
        for jid in jobs:
            st_j = os.stat(os.path.join(cl.stage, "jobs", str(jid)))
            check(st_j.st_uid == uid and st_j.st_mode & 0o777 == 0o500,
                  f"staging: job {jid}'s links are reachable by its user only (0500)")
        open(f"{work}/share1.release", "w").close()
        st = cl.wait_job(jobs[0])
        check(st == "COMPLETED", f"share: first job {st}")
        check(len(mounts_at(m3)) == 1 and len(daemons(cl.args.daemon, uid)) == 1,
              "share: the mount stays while the second job runs")
        open(f"{work}/share2.release", "w").close()
        st = cl.wait_job(jobs[1])
        text = output(f"{work}/share2.out")
        check(st == "COMPLETED" and "AGAIN sqvenvfs-slurm-ok" in text,
              f"share: second job still imports after the first ended ({st})")
        clean_after(cl, m3, uid, "share")
        check(cl.count_log(f"staged {img} ") == 1 and cl.count_log(f"staged {img2} ") == 1,
              "staging: each image was copied once for the two jobs")

    # --- conflict: another stack at a mount point in use -----------------
    m4 = mp("m4")
    jid1, r = cl.sbatch([f"--sqvenv={img}:{m4}", "-o", f"{work}/hold.out"],
                        import_script(m4, f"{work}/hold.started", f"{work}/hold.release"),
                        work)
    if check(jid1 is not None, f"conflict: holder submitted {r.stderr.strip()}"):
        cl.wait_running(jid1, f"{work}/hold.started")
        jid2, r = cl.sbatch([f"--sqvenv={img2}:{m4}", "-o", f"{work}/conflict.out"],
                            import_script(m4), work)
        if check(jid2 is not None, "conflict: second job submitted"):
            st = cl.wait_job(jid2)
            text = output(f"{work}/conflict.out")
            check(st == "FAILED" and "already in use" in text and "VALUE" not in text,
                  f"conflict: second job failed with the reason in its output ({st}): "
                  f"{text.strip()!r}")
            check(cl.node_state() == "idle" or cl.node_state() == "mixed",
                  f"conflict: the node is not drained ({cl.node_state()})")
        check(len(mounts_at(m4)) == 1, "conflict: the first job's mount is untouched")
        open(f"{work}/hold.release", "w").close()
        st = cl.wait_job(jid1)
        check(st == "COMPLETED" and "AGAIN sqvenvfs-slurm-ok" in output(f"{work}/hold.out"),
              f"conflict: the first job ran to the end ({st})")
        clean_after(cl, m4, uid, "conflict")

    # --- nested: a mount point above one in use --------------------------
    # Mounted over, the inner mount would be hidden from its own job's
    # Epilog and stay behind, dead: the outer job is refused.
    outer = mp("nest")
    inner = os.path.join(outer, "inner")
    jid1, r = cl.sbatch([f"--sqvenv={img}:{inner}", "-o", f"{work}/nest-hold.out"],
                        import_script(inner, f"{work}/nest.started",
                                      f"{work}/nest.release"), work)
    if check(jid1 is not None, f"nested: inner job submitted {r.stderr.strip()}"):
        cl.wait_running(jid1, f"{work}/nest.started")
        jid2, r = cl.sbatch([f"--sqvenv={img}:{outer}", "-o", f"{work}/nest.out"],
                            import_script(outer), work)
        if check(jid2 is not None, f"nested: outer job submitted {r.stderr.strip()}"):
            st = cl.wait_job(jid2)
            text = output(f"{work}/nest.out")
            check(st == "FAILED" and "holds a mount point below it" in text and
                  inner in text and "VALUE" not in text,
                  f"nested: the outer job failed with the reason in its output "
                  f"({st}): {text.strip()!r}")
            # named as Slurm names the node (NodeName), not by hostname
            check(text.startswith("sqvenvfs: sqvnode: job "),
                  f"nested: the reason names the node as Slurm does: {text[:60]!r}")
        check(len(mounts_at(inner)) == 1 and not mounts_at(outer),
              "nested: the inner job's mount is untouched, nothing at the outer")
        open(f"{work}/nest.release", "w").close()
        st = cl.wait_job(jid1)
        check(st == "COMPLETED", f"nested: the inner job ran to the end ({st})")
        clean_after(cl, inner, uid, "nested")
        check(not mounts_under(outer), f"nested: nothing left mounted below {outer}")

    # --- a failure only the node sees: image gone after submission --------
    gone = os.path.join(top, "images", "gone.sqfs")
    shutil.copy(img, gone)
    os.chmod(gone, 0o644)
    m5 = mp("m5")
    jid, r = cl.sbatch([f"--sqvenv={gone}:{m5}", "-o", f"{work}/gone.out", "--hold"],
                       import_script(m5), work)
    if check(jid is not None, f"prolog-fail: job submitted {r.stderr.strip()}"):
        os.unlink(gone)
        run(["scontrol", "release", str(jid)], env=cl.env)
        st = cl.wait_job(jid)
        text = output(f"{work}/gone.out")
        check(st == "FAILED" and "gone.sqfs" in text and "No such file" in text,
              f"prolog-fail: the job failed with the reason ({st}): {text.strip()!r}")
        check(cl.node_state() == "idle", f"prolog-fail: the node is not drained "
              f"({cl.node_state()})")
        clean_after(cl, m5, uid, "prolog-fail")

    # --- staging: two prologs at once copy once ----------------------------
    pair = []
    for i in (1, 2):
        m = mp(f"s{i}")
        jid, r = cl.sbatch([f"--sqvenv={imgs}:{m}", "-o", f"{work}/stage{i}.out"],
                           import_script(m), work)
        pair.append((jid, m))
    for jid, m in pair:
        if check(jid is not None, "staging: job submitted"):
            st = cl.wait_job(jid)
            check(st == "COMPLETED" and "VALUE staged-ok" in output(
                f"{work}/stage{pair.index((jid, m)) + 1}.out"),
                f"staging: job {jid} imported from the staged copy ({st})")
            clean_after(cl, m, uid, "staging")
    check(cl.count_log(f"staged {imgs} ") == 1,
          f"staging: concurrent prologs copied {imgs} once "
          f"({cl.count_log(f'staged {imgs} ')} copies)")
    check(cl.count_log(f"reused staged copy of {imgs}") >= 1,
          "staging: the other prolog reused the copy")
    objdir = os.path.join(cl.stage, "objects")
    check(not [n for n in os.listdir(objdir) if n.startswith(".tmp-")],
          "staging: no partial copy is left")
    check(not os.listdir(os.path.join(cl.stage, "jobs")),
          "staging: the per-job links are gone after the jobs")

    # --- lru: a 3-image workload in a cache that holds two ----------------
    lru_stage = os.path.join(top, "stage-lru")
    size = os.path.getsize(imgs)
    cl.write_site(stage_dir=lru_stage, stage_max_size=str(size * 2 + size // 2))
    l1 = make_venv_image(top, "l1", "l1", extra_mb=48)
    l2 = make_venv_image(top, "l2", "l2", extra_mb=48)
    l3 = make_venv_image(top, "l3", "l3", extra_mb=48)
    ml = mp("lru")
    # A partial copy left by a crashed Prolog: never used, removed when the
    # cache next makes room.
    os.makedirs(os.path.join(lru_stage, "objects"), mode=0o700)
    partial = os.path.join(lru_stage, "objects", ".tmp-0123456789abcdef-1-1.0-1-99999")
    with open(partial, "wb") as f:
        f.write(b"hsqs" + os.urandom(4096))
    for n, im in enumerate((l1, l2, l1, l3)):
        jid, r = cl.sbatch([f"--sqvenv={im}:{ml}", "-o", f"{work}/lru{n}.out"],
                           import_script(ml), work)
        if check(jid is not None, f"lru: job {n} submitted"):
            st = cl.wait_job(jid)
            check(st == "COMPLETED", f"lru: job {n} with {os.path.basename(im)} {st}")
    objs = sorted(os.listdir(os.path.join(lru_stage, "objects")))
    copies = [o for o in objs if o.endswith(".sqfs")]
    total = sum(os.path.getsize(os.path.join(lru_stage, "objects", o)) for o in copies)
    check(len(copies) == 2 and total <= size * 2 + size // 2,
          f"lru: the cache holds two copies within its limit: {copies}")
    check(not os.path.exists(partial) and cl.count_log("removed stale partial copy") == 1,
          "staging: a partial copy left by a crash was removed, never mounted")
    check(cl.count_log(f"staged {l2} ") == 1 and cl.count_log("evicted staged copy") >= 1,
          "lru: a copy was evicted")
    check(cl.count_log(f"staged {l1} ") == 1 and cl.count_log(f"reused staged copy of {l1}") == 1,
          "lru: l1 was reused, not copied again")
    # l2 was least recently used when l3 came: l1's copy must have survived.
    l3job, r = cl.sbatch([f"--sqvenv={l1}:{ml}", "-o", f"{work}/lru-final.out"],
                         import_script(ml), work)
    if l3job:
        cl.wait_job(l3job)
    check(cl.count_log(f"staged {l1} ") == 1,
          "lru: l1 (recently used) survived the eviction; l2 (least recently used) went")

    # --- the Prolog trusts nothing in SPANK_SQVENV ---------------------------
    # A user can put any value in the job-control environment without the
    # plugin's checks; the Prolog must refuse, as the user, on its own.
    cl.write_site(stage_dir=cl.stage, stage_max_size="1G")
    os.symlink("/etc", os.path.join(work, "etc-link"))
    os.lchown(os.path.join(work, "etc-link"), uid, gid)
    forged = [
        (f"{secret}:{work}/forged", "not readable"),
        (f"{img}:/etc", "system path"),
        (f"{img}:{work}/etc-link", "symbolic link"),
        (f"{img}:{work}/etc-link/sub", "symbolic link"),
        (f"{img}:{top}/images", "must be a directory you own"),
        (f"{img}:{work}/../images", ".."),
    ]
    for n, (spec, why) in enumerate(forged):
        jobid = 990000 + n
        env = {"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": str(jobid), "SLURM_JOB_UID": str(uid),
               "SLURM_JOB_GID": str(gid), "SLURM_JOB_USER": TEST_USER,
               "SPANK_SQVENV": spec, "SLURM_CONF": cl.conf}
        r = run([cl.args.prolog], env=env)
        err = output(os.path.join(cl.state, "jobs", f"{jobid}.err"))
        check(r.returncode == 0 and why in err,
              f"forged SPANK_SQVENV={spec}: the Prolog exits 0 and fails the job ({why}): "
              f"{err.strip()!r}")
        run([cl.args.epilog], env=env)
    check(not os.path.exists(os.path.join(work, "forged")) and not mounts_under(top) and
          not daemons(cl.args.daemon, uid), "forged requests: nothing created or mounted")
    check(cl.count_log(f"staged {secret}") == 0, "forged requests: the unreadable image "
          "was not copied")

    bad_site(cl, work, img, mp)
    steps(cl, work, img, img2, mp)
    many(cl, top, img, uid, gid, mp("many"))
    no_init(cl, top, img, uid, gid, mp("no-init"))
    broadcast(cl, top, work, img, secret, notsq, uid, gid)

    check(cl.node_state() == "idle", f"the node is idle at the end ({cl.node_state()})")
    left = [n for n in os.listdir(os.path.join(cl.state, "jobs"))]
    check(not left, f"no job records are left on the node: {left}")
    check(not os.listdir(os.path.join(cl.state, "mounts")), "no mount records are left")


def bad_site(cl, work, img, mp):
    """A bad line in the site file fails every --sqvenv job with the words
    the admin guide quotes, and never drains the node."""
    for line, why in (("bogus = 1", 'unknown setting "bogus"'),
                      ("stage_dir = relative/dir",
                       "stage_dir: not an absolute path: relative/dir"),
                      ("fusermount = /nonexistent/fm",
                       "fusermount: /nonexistent/fm: not a program this node can "
                       "run (No such file or directory)")):
        cl.write_site()
        with open(cl.site, "a") as f:
            f.write(line + "\n")
        lineno = len(open(cl.site).read().splitlines())
        m = mp("bad-site")
        out = f"{work}/bad-site.out"
        jid, r = cl.sbatch([f"--sqvenv={img}:{m}", "-o", out], "true", work)
        if check(jid is not None, f"bad site file: job submitted {r.stderr.strip()}"):
            st = cl.wait_job(jid)
            # the node as Slurm names it (NodeName), not its hostname
            want = (f"sqvenvfs: sqvnode: job {jid} not started: the node's sqvenvfs "
                    f"configuration is broken ({cl.site}:{lineno}: {why}); tell your "
                    f"administrator")
            text = output(out)
            check(st == "FAILED" and text.splitlines()[:1] == [want],
                  f"bad site file ({line}): the job fails with the guide's words, the "
                  f"line and the key ({st}): {text!r}")
            check(cl.node_state() == "idle", f"bad site file: the node is not drained "
                  f"({cl.node_state()})")
    # A bad daemon_options is the site's fault too, said so; a daemon that
    # hangs has its own words in the timeout's reason.
    fake = os.path.join(work, "stuck-daemon")
    with open(fake, "w") as f:
        f.write("#!/bin/sh\necho 'sqvenvfs: stuck before the mount' >&2\n"
                "exec sleep 60\n")
    os.chmod(fake, 0o755)
    for settings, want in (
            ({"daemon_options": "cache_size=bogus"},
             "the node's sqvenvfs configuration is broken (daemon_options = "
             "cache_size=bogus: sqvenvfs: -o cache_size=bogus: not a size"),
            # 10 s: room for the fake daemon's one line on a loaded node
            ({"daemon": fake, "mount_timeout": "10"},
             "timed out after 10 s; the daemon said: sqvenvfs: stuck before "
             "the mount")):
        cl.write_site(**settings)
        m = mp("bad-daemon")
        out = f"{work}/bad-daemon.out"
        jid, r = cl.sbatch([f"--sqvenv={img}:{m}", "-o", out], "true", work)
        if check(jid is not None, f"bad daemon: job submitted {r.stderr.strip()}"):
            st = cl.wait_job(jid)
            text = output(out)
            check(st == "FAILED" and want in text.splitlines()[0] if text else False,
                  f"bad daemon ({settings}): the job's reason says why ({st}): "
                  f"{text!r}")
            clean_after(cl, m, cl.uid, f"bad daemon ({settings})")
    cl.write_site()


def steps(cl, work, img, img2, mp):
    """srun --sqvenv inside a job: a step has no Prolog of its own, so it is
    refused at once, saying where the option belongs."""
    m = mp("steps")
    cases = [
        ("without", [], f"srun --sqvenv={img}:{m} true",
         "srun inside job", "give --sqvenv to sbatch or salloc"),
        ("with another stack", [f"--sqvenv={img}:{m}"], f"srun --sqvenv={img2}:{m} true",
         "already has --sqvenv", "give --sqvenv to sbatch or salloc"),
    ]
    for label, opts, step, *want in cases:
        out = f"{work}/steps-{len(opts)}.out"
        jid, r = cl.sbatch(opts + ["-o", out], f"{step}; echo step-rc=$?", work)
        if not check(jid is not None, f"steps: job {label} --sqvenv submitted {r.stderr}"):
            continue
        st = cl.wait_job(jid)
        text = output(out)
        check(st == "COMPLETED" and "step-rc=0" not in text and "step-rc=" in text and
              all(w in text for w in want) and "Prolog configured" not in text,
              f"steps: srun --sqvenv in a job {label} --sqvenv is refused, saying why "
              f"({st}): {text.strip()!r}")
    clean_after(cl, m, cl.uid, "steps")


def slurmd_env(cl, jobid, uid, gid, spec=None):
    """The environment slurmd gives the Prolog and Epilog: a fresh one."""
    env = {"PATH": "/usr/bin:/bin", "SLURM_CONF": cl.conf, "SLURM_JOB_ID": str(jobid),
           "SLURM_JOBID": str(jobid), "SLURM_JOB_UID": str(uid), "SLURM_JOB_GID": str(gid),
           "SLURM_JOB_USER": TEST_USER, "SLURMD_NODENAME": "sqvnode",
           "SLURM_CLUSTER_NAME": "sqvtest"}
    if spec:
        env["SPANK_SQVENV"] = spec
    return env


def many(cl, top, img, uid, gid, m):
    """More jobs on one mount than the old fixed table of 256 held: a
    256-core node running a job array of one user."""
    n = 257
    first = 880000
    spec = f"{img}:{m}"
    for j in range(first, first + n):
        r = run([cl.args.prolog], env=slurmd_env(cl, j, uid, gid, spec))
        if r.returncode != 0 or os.path.exists(os.path.join(cl.state, "jobs", f"{j}.err")):
            check(False, f"many: Prolog of job {j}: rc {r.returncode} "
                  f"{output(os.path.join(cl.state, 'jobs', f'{j}.err'))!r}")
            break
    check(len(mounts_at(m)) == 1 and len(daemons(cl.args.daemon, uid)) == 1,
          f"many: {n} Prologs, one mount and one daemon")
    for j in range(first, first + n - 1):
        run([cl.args.epilog], env=slurmd_env(cl, j, uid, gid))
    # As the job's user: root has no access to another user's FUSE mount.
    r = cl.as_user([f"{m}/bin/python", "-c", "import sqvprobe; print(sqvprobe.VALUE)"], "/")
    alive = len(mounts_at(m)) == 1 and len(daemons(cl.args.daemon, uid)) == 1
    check(alive and r.stdout.strip() == "sqvenvfs-slurm-ok",
          f"many: after {n - 1} Epilogs the mount still serves job {first + n - 1}: "
          f"{r.stdout.strip()!r} {r.stderr.strip()!r}")
    run([cl.args.epilog], env=slurmd_env(cl, first + n - 1, uid, gid))
    clean_after(cl, m, uid, "many: the last Epilog")


def no_init(cl, top, img, uid, gid, m):
    """A daemon that mounts and dies before it answers the kernel's INIT:
    the mount is in mountinfo but will never serve. The Prolog waits for the
    daemon's READY=1, so the job fails and the dead mount is cleared."""
    # The daemon as the site file names it, run with the shim (where the
    # job's user can read it); exec keeps the pid the Prolog waits on.
    bindir = os.path.join(top, "bin")
    os.makedirs(bindir, exist_ok=True)
    shim = os.path.join(bindir, os.path.basename(cl.args.die_shim))
    shutil.copy(cl.args.die_shim, shim)
    os.chmod(shim, 0o755)
    wrapper = os.path.join(bindir, "sqvenvfs-dies")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nLD_PRELOAD={shim} exec {cl.args.daemon} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    cl.write_site(daemon=wrapper)
    jobid = 870000
    r = run([cl.args.prolog], env=slurmd_env(cl, jobid, uid, gid, f"{img}:{m}"))
    err = output(os.path.join(cl.state, "jobs", f"{jobid}.err"))
    check(r.returncode == 0 and f"mounting at {m} failed" in err and
          "before the mount was usable" in err,
          f"no-init: the Prolog exits 0 and fails the job, saying why: {err.strip()!r}")
    check(not mounts_at(m), f"no-init: no dead mount is left at {m}: {mounts_at(m)}")
    run([cl.args.epilog], env=slurmd_env(cl, jobid, uid, gid))
    clean_after(cl, m, uid, "no-init")
    cl.write_site()


def broadcast_job(cl, top, work, name, images, m, local, command):
    """A batch job that runs the installed sqvenvfs-sbcast as the guides
    show: the images to the node-local directory local, mounted at m, then
    command. It prints, after the wrapper, its exit status and what is
    left in local. Returns (job state, output)."""
    wrapper = os.path.join(os.path.dirname(cl.args.examples["slurm.conf.example"]),
                           "sqvenvfs-sbcast")
    script = os.path.join(work, f"{name}.sh")
    with open(script, "w") as f:
        f.write(f"""#!/bin/sh
PATH={os.path.dirname(cl.args.daemon)}:$PATH
export PATH
{wrapper} -d {local} {images} {m} sh -c '{command}'
echo "wrapper-rc=$?"
ls -A {local} 2>/dev/null | sed "s/^/LEFT /"
""")
    os.chmod(script, 0o755)
    out = f"{work}/{name}.out"
    jid, r = cl.sbatch(["-o", out], script, work)
    if not check(jid is not None, f"broadcast: {name} job submitted {r.stderr.strip()}"):
        return None, ""
    return cl.wait_job(jid), output(out)


def broadcast(cl, top, work, img, secret, notsq, uid, gid):
    """The broadcast recipe of the guides, on this one node: sbcast really
    copies, the node mounts the copy, a step imports from it."""
    wrapper = os.path.join(os.path.dirname(cl.args.examples["slurm.conf.example"]),
                           "sqvenvfs-sbcast")
    check(os.access(wrapper, os.X_OK), "broadcast: sqvenvfs-sbcast is installed with the "
          "Slurm examples, executable")
    # Stands for the node-local disk; the wrapper makes the directory and
    # the mount point on the node.
    local = os.path.join(user_dir(top, "local", uid=uid, gid=gid), "node")
    m = os.path.join(work, "bcast")
    probe = (f'grep " {m} " /proc/self/mountinfo; '
             f'for f in {local}/*; do echo "COPY $(stat -c %i "$f") '
             f'$(sha256sum <"$f" | cut -d" " -f1) $f"; done; '
             f'srun -n1 {m}/bin/python -c "import sqvprobe; print(\\"VALUE\\", '
             f'sqvprobe.VALUE)"')
    st, text = broadcast_job(cl, top, work, "bcast", img, m, local, probe)
    copy = None
    for line in text.splitlines():
        if line.startswith("COPY "):
            _, ino, sha, copy = line.split(" ", 3)
    with open(img, "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    check(st == "COMPLETED" and "wrapper-rc=0" in text and "VALUE sqvenvfs-slurm-ok" in text,
          f"broadcast: an srun step imports from the mounted copy ({st}): {text!r}")
    check(copy is not None and os.path.dirname(copy) == local and
          int(ino) != os.stat(img).st_ino and sha == want,
          f"broadcast: sbcast made a copy of the image in the node-local directory: {copy}")
    check(any(" - fuse.sqvenvfs " in ln and f" {m} " in ln and
              ln.split(" - ")[1].split()[1] == copy for ln in text.splitlines()),
          "broadcast: the mount on the node serves the copy, not the shared image")
    check("LEFT " not in text, "broadcast: the copy is removed at the end")
    clean_after(cl, m, uid, "broadcast")

    # A cancelled job: Slurm ends the holding step, and the daemon with it,
    # which unmounts. (The copy may stay: the site cleans the directory.)
    flag = f"{work}/bcast-cancel.started"
    wrapper_job = os.path.join(work, "bcast-cancel.sh")
    jid = None
    st, text = None, ""
    with open(wrapper_job, "w") as f:
        f.write(f"#!/bin/sh\nPATH={os.path.dirname(cl.args.daemon)}:$PATH\nexport PATH\n"
                f"{wrapper} -d {local} {img} {m} sh -c 'touch {flag}; "
                f"while [ ! -e {work}/never ]; do sleep 0.2; done'\n")
    os.chmod(wrapper_job, 0o755)
    tmpdir = cl.env.get("TMPDIR", "/tmp")

    def wrapper_dirs():
        """The wrapper's temporary directories of this user."""
        return {n for n in os.listdir(tmpdir) if n.startswith("sqvenvfs-sbcast.")
                and os.lstat(os.path.join(tmpdir, n)).st_uid == uid}
    before = wrapper_dirs()
    jid, r = cl.sbatch(["-o", f"{work}/bcast-cancel.out"], wrapper_job, work)
    if check(jid is not None, f"broadcast: cancel job submitted {r.stderr.strip()}"):
        cl.wait_running(jid, flag)
        check(len(mounts_at(m)) == 1 and daemons(cl.args.daemon, uid),
              "broadcast: mounted on the node while the job runs")
        run(["scancel", str(jid)], env=cl.env)
        st = cl.wait_job(jid)
        check(st == "CANCELLED", f"broadcast: cancelled ({st})")
        wait_for(lambda: not mounts_at(m) and not daemons(cl.args.daemon, uid),
                 "the cancelled broadcast job's mount and daemon to go", 60)
        clean_after(cl, m, uid, "broadcast: cancelled")
        # Its SIGKILL follows after KillWait (5 s here): the wrapper's
        # temporary directory must be gone before that.
        check(wrapper_dirs() - before == set(),
              f"broadcast: the cancelled wrapper leaves no temporary directory "
              f"in {tmpdir} ({sorted(wrapper_dirs() - before)})")
    shutil.rmtree(local, ignore_errors=True)

    # An image that sbcast copies but sqvenvfs refuses: the job fails with
    # the reason, nothing runs, nothing stays. One it cannot read: no copy.
    for name, bad, why in (("bcast-bad", notsq, "failed on 1 of 1 nodes"),
                           ("bcast-unreadable", secret, "not a readable file")):
        st, text = broadcast_job(cl, top, work, name, bad, m, local, "echo RAN")
        check("wrapper-rc=1" in text and why in text and "RAN" not in text and
              "LEFT " not in text,
              f"broadcast: {os.path.basename(bad)} fails the wrapper ({why}), the command "
              f"does not run, no copy stays: {text!r}")
        clean_after(cl, m, uid, name)


if __name__ == "__main__":
    sys.exit(main())
