# SPDX-License-Identifier: BSD-2-Clause
"""The rewritten activate scripts in every shell Python's venv supports
(issue 16), sourced as a user on a mount whose original path does not
exist: bash with CDPATH, zsh with a printing chpwd hook, fish, tcsh from
bin/, after another command and through an alias, dash by an absolute and
a relative path, dash again once the original path exists (it must still
activate the mount), bash, zsh and dash through a symlink to the script;
ksh (ksh93) by an absolute and a relative path and through a symlink;
bash, zsh, dash and ksh as `. activate` found on PATH, from / and from a
directory holding another venv's activate; the mount's path has a space.
Where a shell cannot know the script's path (the script piped into it, or
eval'd), it fails loudly and changes nothing: dash, tcsh, fish and ksh
piped, ksh eval'd; bash and zsh from / and from another directory, where the script's
directory once came out as the parent of the working directory."""

import os
import re
import shutil
import subprocess

import sqvtest as T

# what each snippet prints: VIRTUAL_ENV, the first PATH entry and the
# python3 the shell now finds, one per line, between markers
SH_REPORT = ('echo "<<$VIRTUAL_ENV>>"; echo "<<${PATH%%:*}>>"; '
             'echo "<<$(command -v python3)>>"')
# ksh93's command -v quotes a path with a space as the shell would read it
KSH_REPORT = ('echo "<<$VIRTUAL_ENV>>"; echo "<<${PATH%%:*}>>"; '
              'eval "_p=$(command -v python3)"; echo "<<$_p>>"')
CSH_REPORT = ('echo "<<$VIRTUAL_ENV>>"\n'
              'echo "<<`echo $PATH | cut -d: -f1`>>"\n'
              'echo "<<`which python3`>>"\n')
FISH_REPORT = ('echo "<<$VIRTUAL_ENV>>"; echo "<<$PATH[1]>>"; '
               'echo "<<"(command -v python3)">>"')
# after a failure: VIRTUAL_ENV, the first PATH entry, the prompt, and the
# shell then exits with the status of the command before the report
SH_UNTOUCHED = ('_rc=$?; echo "<<${VIRTUAL_ENV:-}>>"; echo "<<${PATH%%:*}>>"; '
                'echo "<<${PS1:-}>>"; exit $_rc')


def reported(out):
    # an interactive shell's prompt may precede a line
    return re.findall(r"<<(.*?)>>", out)


def test(tmp, cleanups):
    T.require_pack_tools()
    T.require_mount_capability()
    shells = {s: shutil.which(s) for s in ("bash", "zsh", "fish", "tcsh",
                                           "dash", "ksh")}
    missing = [s for s, p in shells.items() if not p]
    T.require(not missing, f"shells missing: {missing} (.ci/packages/tools.txt)")

    made = os.path.join(tmp, "made")
    venv = T.make_venv(os.path.join(made, "venv"))
    img = os.path.join(tmp, "v.sqfs")
    T.pack(venv, img)
    moved = os.path.join(tmp, "moved")
    os.rename(made, moved)          # the original path no longer exists

    as_user = []
    mopts = []
    if os.geteuid() == 0:
        T.require(shutil.which("setpriv"), "setpriv missing (util-linux)")
        as_user = ["setpriv", "--reuid=65534", "--regid=65534",
                   "--clear-groups"]
        mopts = ["-o", "allow_other"]
    mnt = os.path.join(tmp, "mnt", "my env")
    os.makedirs(mnt)
    home = os.path.join(tmp, "home")
    os.mkdir(home)
    os.chmod(home, 0o777)
    r = T.run([T.SQVENVFS] + mopts + [img, mnt], check=False)
    T.check(r.returncode == 0, f"mount: {r.stderr}")
    cleanups.append(lambda: T.run([T.SQVENVFS, "-u", mnt], check=False))
    want = [mnt, f"{mnt}/bin", f"{mnt}/bin/python3"]

    def shell(name, argv, stdin=None, **env):
        e = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8",
             "XDG_CONFIG_HOME": home, "XDG_DATA_HOME": home}
        e.update(env)
        if stdin is None:
            return T.run(as_user + argv, check=False, env=e)
        return subprocess.run(as_user + argv, input=stdin, env=e,
                              capture_output=True, text=True)

    def expect(what, r, ok=True):
        got = reported(r.stdout)
        if ok:
            T.check(r.returncode == 0 and got == want,
                    f"{what}: exit {r.returncode}, got {got}, want {want}\n"
                    f"stdout {r.stdout!r}\nstderr {r.stderr!r}")
        else:
            # the shell stopped, or its report (SH_UNTOUCHED) shows no
            # VIRTUAL_ENV, the PATH it was given and no venv prompt
            untouched = (not got or got[0] == "" and got[1:2] == ["/usr/bin"]
                         and "(" not in "".join(got[2:]))
            T.check(r.returncode != 0 and "nothing activated" in r.stderr
                    and untouched,
                    f"{what}: should fail loudly: exit {r.returncode}, "
                    f"{got}, {r.stderr!r}")
        print(f"ok: {what}", flush=True)

    # bash: CDPATH has a directory with a bin/ (/usr): `cd bin/..` would go
    # there and print it
    expect("bash, CDPATH, relative", shell(
        "bash", ["bash", "--norc", "--noprofile", "-c",
                 f'cd "{mnt}" && . bin/activate && {SH_REPORT}'],
        CDPATH="/usr:."))
    expect("bash, from /", shell(
        "bash", ["bash", "--norc", "-c",
                 f'cd / && . "{mnt}/bin/activate" && {SH_REPORT}']))
    # zsh with a chpwd hook that prints
    expect("zsh, chpwd hook", shell(
        "zsh", ["zsh", "-f", "-c",
                f'chpwd() {{ echo HOOK; }}; cd "{mnt}" && . bin/activate && '
                f'{SH_REPORT}'], CDPATH="/usr:."))
    # fish, relative from bin/
    expect("fish, from bin/", shell(
        "fish", ["fish", "--no-config", "-c",
                 f'cd "{mnt}/bin"; and source activate.fish; and '
                 f'{FISH_REPORT}']))
    # tcsh: from bin/ after another command on the line, through an alias,
    # and interactive
    script = os.path.join(home, "t.csh")
    with open(script, "w") as f:
        f.write(f'cd "{mnt}/bin"; source activate.csh\n{CSH_REPORT}')
    os.chmod(script, 0o644)
    expect("tcsh, from bin/ after cd on the line",
           shell("tcsh", ["tcsh", "-f", script]))
    with open(script, "w") as f:
        f.write(f'alias act \'source "{mnt}/bin/activate.csh"\'\ncd /\nact\n'
                f'{CSH_REPORT}')
    expect("tcsh, alias", shell("tcsh", ["tcsh", "-f", script]))
    expect("tcsh, interactive", shell(
        "tcsh", ["tcsh", "-f", "-i"],
        stdin=f'cd "{mnt}"\nsource bin/activate.csh\n{CSH_REPORT}'))
    # dash and ksh, the original path absent: absolute and relative (ksh93
    # closes a small sourced file at once: no /proc/PID/fd entry)
    for sh, report in (("dash", SH_REPORT), ("ksh", KSH_REPORT)):
        expect(f"{sh}, absolute", shell(
            sh, [sh, "-c", f'cd / && . "{mnt}/bin/activate" && {report}']))
        expect(f"{sh}, relative", shell(
            sh, [sh, "-c", f'cd "{mnt}/bin" && . ./activate && {report}']))
    # through a symlink to the script, in another directory
    link = os.path.join(home, "act")
    os.symlink(os.path.join(mnt, "bin", "activate"), link)
    for sh, argv in (("bash", ["bash", "--norc", "-c"]),
                     ("zsh", ["zsh", "-f", "-c"]), ("dash", ["dash", "-c"])):
        expect(f"{sh}, through a symlink", shell(
            sh, argv + [f'cd / && . "{link}" && {SH_REPORT}']))
    expect("ksh, through a symlink", shell(
        "ksh", ["ksh", "-c", f'cd / && . "{link}" && {KSH_REPORT}']))
    # `. activate` with the venv's bin/ on PATH, from / and from a
    # directory that holds another venv's activate (which resolving the
    # name against the working directory would find)
    decoy = os.path.join(home, "decoy", "bin")
    os.makedirs(decoy)
    shutil.copy(os.path.join(mnt, "bin", "activate"), decoy)
    for where in ("/", decoy):
        for sh, argv in (("bash", ["bash", "--norc", "-c"]),
                         ("zsh", ["zsh", "-f", "-c"]), ("dash", ["dash", "-c"]),
                         ("ksh", ["ksh", "-c"])):
            report = KSH_REPORT if sh == "ksh" else SH_REPORT
            expect(f"{sh}, . activate found on PATH, from {where}", shell(
                sh, argv + [f'cd "{where}" && . activate && {report}'],
                PATH=f"{mnt}/bin:/usr/bin:/bin"))
    # the original path back: sh must still activate the mount
    os.rename(moved, made)
    expect("dash, original path present", shell(
        "dash", ["dash", "-c", f'cd / && . "{mnt}/bin/activate" && '
                 f'{SH_REPORT}']))
    os.rename(made, moved)

    # piped into the shell, the script has no path: loud failure
    def piped(name, argv, script, report, where=None):
        with open(os.path.join(mnt, "bin", script)) as f:
            text = f.read()
        cd = f'cd "{where}"\n' if where else ""
        return shell(name, argv, stdin=cd + text + "\n" + report + "\n")
    expect("dash, piped", piped("dash", ["dash", "-s"], "activate",
                                SH_REPORT), ok=False)
    expect("tcsh, piped", piped("tcsh", ["tcsh", "-f"], "activate.csh",
                                CSH_REPORT), ok=False)
    expect("fish, piped", piped("fish", ["fish", "--no-config"],
                                "activate.fish", FISH_REPORT), ok=False)
    expect("ksh, piped", piped("ksh", ["ksh", "-s"], "activate",
                               SH_UNTOUCHED), ok=False)
    expect("ksh, eval'd", shell(
        "ksh", ["ksh", "-c", f'eval "$(cat "{mnt}/bin/activate")"; '
                f'{SH_UNTOUCHED}']), ok=False)
    # bash and zsh name no file, or another one (/dev/stdin, the shell):
    # the script's directory must not come out as the working directory's
    # parent. Eval'd in a function, the failed script returns to a report.
    act = os.path.join(mnt, "bin", "activate")
    for where in ("/", home):
        for sh, argv in (("bash", ["bash", "--norc", "--noprofile"]),
                         ("zsh", ["zsh", "-f"])):
            expect(f"{sh}, piped, from {where}", piped(
                sh, argv + ["-s"], "activate", SH_UNTOUCHED, where), ok=False)
            # the pipe made by the user: root's is closed to /dev/stdin
            expect(f"{sh}, . /dev/stdin, from {where}", shell(
                "sh", ["sh", "-c", 'cat "$0" | "$@"', act] + argv +
                ["-c", f'cd "{where}"; . /dev/stdin; {SH_UNTOUCHED}']),
                ok=False)
            ev = f'eval "$(cat "{act}")"'
            expect(f"{sh}, eval'd, from {where}", shell(
                sh, argv + ["-c", f'cd "{where}"; {ev}; {SH_UNTOUCHED}']),
                ok=False)
            expect(f"{sh}, eval'd in a function, from {where}", shell(
                sh, argv + ["-c", f'cd "{where}"; f() {{ {ev}; }}; f; '
                            f'{SH_UNTOUCHED}']), ok=False)


if __name__ == "__main__":
    T.main(test)
