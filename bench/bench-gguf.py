#!/usr/bin/env python3
# GGUF against llama.cpp on the same machine, in the same run: for each file
# type, the time of
#   quark:  quark quantize MODEL -o out.gguf --export-format gguf --type T
#           (Hugging Face directory to the quantized file, conversion included)
#   llama:  llama-quantize F32.gguf out.gguf T  (from an already converted F32
#           GGUF: llama.cpp's convert_hf_to_gguf.py is not counted)
# best of N runs each, both with the machine's threads (or --threads N for
# both), and the ratio llama / quark (above 1: libquark is faster), plus the
# peak memory of each (resident, and anonymous: what the process allocates
# beyond the mapped input); and libquark with its searches one sub-block at a
# time (QUARK_GGUF_SCALAR=1: the scalar reference of the vector code), with
# the ratio scalar / quark.
# The whole files are compared byte for byte, so a speed never hides a
# difference.
#
# Usage: /usr/bin/python3 bench/bench-gguf.py BUILDDIR MODEL LLAMA_CPP_BIN [--threads N] [--runs N] [TYPE[:pure] ...]
# (TYPE:pure: every 2-D weight in TYPE, --pure for both tools; MXFP4_MOE:pure
# is MXFP4 everywhere)
import hashlib
import os
import subprocess
import sys
import tempfile
import time

builddir, model, llama_bin = sys.argv[1:4]
args = sys.argv[4:]
threads = None
RUNS = 3
while args[:1] in (['--threads'], ['--runs']):
    if args[0] == '--threads':
        threads = args[1]
    else:
        RUNS = int(args[1])
    args = args[2:]
types = args or ['Q8_0', 'Q4_0', 'Q4_K_M', 'Q6_K']
quark = os.path.join(builddir, 'tools', 'quark')
env = dict(os.environ, QUARK_BACKEND_PATH=os.path.join(builddir, 'libquark', 'backends', 'quark'),
           QUARK_BACKEND_SYSTEM_PATH='')


def anon_kib(pid):
    """The process's anonymous resident memory (RssAnon, KiB): its own
    allocations, not the pages of files it maps (a mapped input counts in
    RSS but is the page cache's)."""
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('RssAnon:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_once(cmd, extra_env, sample):
    """Wall time, rusage and (when @sample) the peak anonymous memory of one
    run. Sampling reads /proc/PID/status every 5 ms, which costs the
    sampled process kernel time (measured: 2 s more system time for a 9 s
    Q3_K_M run read every 2 ms), so timed runs are not sampled."""
    anon = 0
    err = tempfile.TemporaryFile()     # (a pipe nobody reads would stop a chatty command)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=dict(env, **(extra_env or {})))
    if sample:
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            anon = max(anon, anon_kib(p.pid))
            time.sleep(0.005)
    else:
        _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        err.seek(0)
        raise SystemExit('%s failed: %s' % (' '.join(cmd), err.read().decode(errors='replace')[-2000:]))
    return seconds, usage, anon


def timed(cmd, extra_env=None, sample=True):
    """Best wall time of RUNS runs, the peak resident memory (KiB, the
    kernel's ru_maxrss of the child) and the least user CPU time, unsampled;
    then, with @sample, one more run for the peak anonymous memory (RssAnon)
    of the command itself. (User time is the work itself: on a virtual
    machine the kernel's time to hand out fresh pages for an output in
    /dev/shm varies from run to run by seconds.)"""
    best, peak, anon, user = float('inf'), 0, 0, float('inf')
    for _ in range(RUNS):
        seconds, usage, _ = run_once(cmd, extra_env, False)
        best = min(best, seconds)
        user = min(user, usage.ru_utime)
        peak = max(peak, usage.ru_maxrss)
    if sample:
        anon = run_once(cmd, extra_env, True)[2]
    return best, peak, anon, user


def content(path):
    """The file's digest, read a megabyte at a time: a whole file read into
    this process would count in the next command's peak resident memory
    (the kernel carries a process's peak across fork and exec)."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


with tempfile.TemporaryDirectory() as tmp:
    f32 = os.path.join(tmp, 'f32.gguf')
    subprocess.run([quark, 'quantize', model, '-o', f32, '--export-format', 'gguf', '--type', 'F32'], check=True,
                   capture_output=True, env=env)
    print('threads: %s' % (threads or 'the machine\'s'))
    print('%-8s %9s %9s %7s %9s %9s %7s %9s %7s %9s %9s %9s %9s %s' % (
        'type', 'quark s', 'llama s', 'ratio', 'q user s', 'l user s', 'ratio', 'scalar s', 'ratio', 'quark MB',
        'llama MB', 'q anon', 'l anon', 'same bytes'))
    jobs = ['-j', threads] if threads else []
    for name in types:
        t, pure = name.split(':')[0], name.endswith(':pure')
        ours, theirs, scalar = (os.path.join(tmp, x + '.gguf') for x in ('ours', 'theirs', 'scalar'))
        cmd = [quark, 'quantize', model, '--export-format', 'gguf', '--type', t, '--force', *jobs,
               *(['--pure'] if pure else [])]
        qs, qm, qa, qu = timed(cmd + ['-o', ours])
        ss, _, _, _ = timed(cmd + ['-o', scalar], {'QUARK_GGUF_SCALAR': '1'}, sample=False)
        ls, lm, la, lu = timed([os.path.join(llama_bin, 'llama-quantize'), *(['--pure'] if pure else []), f32, theirs, t,
                        *([threads] if threads else [])])
        same = content(ours) == content(theirs) == content(scalar)
        print('%-8s %9.2f %9.2f %7.2f %9.2f %9.2f %7.2f %9.2f %7.2f %9.0f %9.0f %9.0f %9.0f %s' % (
            name, qs, ls, ls / qs, qu, lu, lu / qu, ss, ss / qs, qm / 1024, lm / 1024, qa / 1024, la / 1024,
            'yes' if same else 'NO'))
