# SPDX-License-Identifier: BSD-2-Clause
"""The ways a tool's run ends early: a PackError (one line for the user,
exit 1), a UsageError (one line, the tool's usage status: 2 for
sqvenvfs-pack), or an Interrupted signal (exit 128+N), and the signal
handling that turns SIGINT/SIGTERM/SIGHUP into the last."""

import signal

TRAPPED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class PackError(Exception):
    """One line for the user: 'thing: reason'."""


class UsageError(PackError):
    """The command line is wrong (a bad option value, options that do not
    go together): one line, '--option VALUE: reason'."""


class Interrupted(BaseException):
    # a BaseException, so that no `except Exception` on the way swallows it
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, _frame):
    raise Interrupted(signum)


def trap_signals():
    """From here on a signal unwinds the stack, so every cleanup runs."""
    for s in TRAPPED:
        signal.signal(s, _on_signal)


def ignore_signals():
    """Cleanup must survive a second signal."""
    for s in TRAPPED:
        signal.signal(s, signal.SIG_IGN)
