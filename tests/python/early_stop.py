"""Doing something to a `quark quantize` run while it is surely still running.

A run of the tests' models takes a fraction of a second, so "signal it once
its temporary output appears" can land after it has finished (a busy
machine, a descheduled test process), and a test that expects an
interrupted run then sees a complete one. run_caught_early() makes the
timing certain: it stops the run (SIGSTOP) as soon as a temporary output
appears, does the test's action only while the run has written less than
a given number of bytes there (so it has most of its work ahead of it),
then lets it continue. A run caught later is let finish, must succeed,
and the attempt is repeated.
"""

import os
import signal
import subprocess
import time


def new_temporaries(parent, marker, before):
    """The names in @parent that contain @marker and are not in @before."""
    return [n for n in os.listdir(parent) if marker in n and n not in before]


def written_bytes(parent, names):
    """Bytes in the temporary outputs @names (files, or directories and
    everything under them) in @parent."""
    total = 0
    for name in names:
        path = os.path.join(parent, name)
        for root, _, files in os.walk(path) if os.path.isdir(path) else [('', [], [path])]:
            for f in files:
                try:
                    total += os.lstat(os.path.join(root, f)).st_size
                except FileNotFoundError:
                    pass
    return total


def run_caught_early(cmd, parent, limit, action, reset, marker='.quark-tmp', attempts=8, timeout=60, **popen):
    """Runs @cmd until a run is caught early and returns that run's
    (returncode, stdout, stderr).

    Caught early: a new temporary output (a name containing @marker that
    was not there before the run) appeared in @parent, the run was stopped, and fewer than @limit bytes were written
    there; then action(process) runs while it is stopped (a signal is
    delivered when it continues). A run caught late is continued untouched;
    it must exit 0, and reset() restores what it changed (its output)
    before the next attempt."""
    popen.setdefault('stdout', subprocess.PIPE)
    popen.setdefault('stderr', subprocess.PIPE)
    popen.setdefault('stdin', subprocess.DEVNULL)
    popen.setdefault('text', True)
    for _ in range(attempts):
        before = set(os.listdir(parent))
        p = subprocess.Popen(cmd, **popen)
        deadline = time.time() + 30
        while time.time() < deadline and p.poll() is None and not new_temporaries(parent, marker, before):
            time.sleep(0.0005)
        stopped = p.poll() is None
        if stopped:
            p.send_signal(signal.SIGSTOP)
        made = new_temporaries(parent, marker, before) if stopped else []
        early = made != [] and written_bytes(parent, made) < limit
        if early:
            action(p)
        if stopped:
            p.send_signal(signal.SIGCONT)
        stdout, stderr = p.communicate(timeout=timeout)
        if early:
            return p.returncode, stdout, stderr
        assert p.returncode == 0, 'a run caught late failed: %s' % stderr
        reset()
    raise AssertionError('no run was caught before it wrote %d bytes in %d attempts' % (limit, attempts))
