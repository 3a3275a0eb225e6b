#!/usr/bin/env python3
# GGUF against llama.cpp on the same machine, in the same run: for each file
# type, the time of
#   quark:  quark quantize MODEL -o out.gguf --export-format gguf --type T
#           (Hugging Face directory to the quantized file, conversion included)
#   llama:  llama-quantize F32.gguf out.gguf T  (from an already converted F32
#           GGUF: llama.cpp's convert_hf_to_gguf.py is not counted)
# best of N runs each, both with the machine's threads, and the ratio
# llama / quark (above 1: libquark is faster), plus the peak memory of each.
# The whole files are compared byte for byte, so a speed never hides a
# difference.
#
# Usage: /usr/bin/python3 bench/bench-gguf.py BUILDDIR MODEL LLAMA_CPP_BIN [TYPE ...]
import hashlib
import os
import subprocess
import sys
import tempfile
import time

builddir, model, llama_bin = sys.argv[1:4]
types = sys.argv[4:] or ['Q8_0', 'Q4_0', 'Q4_K_M', 'Q6_K']
quark = os.path.join(builddir, 'tools', 'quark')
env = dict(os.environ, QUARK_BACKEND_PATH=os.path.join(builddir, 'libquark', 'backends', 'quark'),
           QUARK_BACKEND_SYSTEM_PATH='')
RUNS = 3


def timed(cmd):
    """Best wall time of RUNS runs, and the peak resident memory (KiB) of
    the command itself (GNU time's %M)."""
    best, peak = float('inf'), 0
    for _ in range(RUNS):
        t0 = time.perf_counter()
        r = subprocess.run(['/usr/bin/time', '-f', 'PEAK %M'] + cmd, check=True, capture_output=True, text=True,
                           env=env)
        best = min(best, time.perf_counter() - t0)
        peak = max(peak, int([x for x in r.stderr.splitlines() if x.startswith('PEAK ')][-1].split()[1]))
    return best, peak


def content(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


with tempfile.TemporaryDirectory() as tmp:
    f32 = os.path.join(tmp, 'f32.gguf')
    subprocess.run([quark, 'quantize', model, '-o', f32, '--export-format', 'gguf', '--type', 'F32'], check=True,
                   capture_output=True, env=env)
    print('%-8s %10s %10s %8s %12s %12s %s' % ('type', 'quark s', 'llama s', 'ratio', 'quark MB', 'llama MB',
                                               'same bytes'))
    for t in types:
        ours, theirs = os.path.join(tmp, 'ours.gguf'), os.path.join(tmp, 'theirs.gguf')
        qs, qm = timed([quark, 'quantize', model, '-o', ours, '--export-format', 'gguf', '--type', t, '--force'])
        ls, lm = timed([os.path.join(llama_bin, 'llama-quantize'), f32, theirs, t])
        same = content(ours) == content(theirs)
        print('%-8s %10.2f %10.2f %8.2f %12.0f %12.0f %s' % (t, qs, ls, ls / qs, qm / 1024, lm / 1024,
                                                             'yes' if same else 'NO'))
