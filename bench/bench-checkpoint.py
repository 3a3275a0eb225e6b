#!/usr/bin/env python3
# What users run, against a copy: `quark quantize` of a generated Llama-shaped
# checkpoint of BF16 weights (--dtype F16 or F32 for others) in TinyLlama's
# shapes (hidden 2048, MLP 5632, four KV heads of 64, a vocabulary of 32000,
# whose embeddings and head are the largest tensors, 125 MiB each in BF16,
# and 22 layers: 2.05 GiB; --shape llama-3.2-1b or qwen2.5-0.5b for the
# shapes of those models (2.3 and 0.92 GiB, the head tied to the
# embeddings, Qwen2's attention biases; SHAPES below); --vocab V for
# another vocabulary, --layers N or --gib G, as many layers as make G GiB,
# for another size; until 2026-12-07 the default was a vocabulary of 8192
# and 2 GiB; docs-llama's tokenizer, grown to the vocabulary's size, for
# the GGUF conversion; one file, or --shards
# files with an index as transformers writes them) to int8 per
# channel, FP8 per channel, MXFP4, int4 per group of 128 and uint4 (asymmetric,
# AWQ's scheme) per group of 128 (AMD Quark's layout; int4 g128 and int8 also in compressed-tensors' pack-quantized
# words, as "int4 g128 ct" and "int8 ct"; with the brevitas backend its
# int8_weight_per_channel, int4_weight_g128 and mxfp4 presets), timed against
# `cp -r` of the same directory and, where a llama.cpp build is given,
# against `llama-quantize` from a GGUF of the same weights and type (Q8_0, Q4_0,
# MXFP4), all on the same threads, in the same run, with the page cache warm.
# The commands run in rounds, each round alternating all of them (a shared
# machine's load drifts), and the table gives medians with the range, the
# median as a ratio to cp's, minor page faults and peak resident memory (of
# the command itself, by GNU time: /usr/bin/time, Debian's time package). Then the speedup of 2 threads
# over 1 on int4 g128 and on compute-bound work (GGUF Q4_K_M), in at most 3
# rounds, over -j1 and over -j1 held to one processor (taskset), with each
# run's processor time over its wall time: how much of a run overlaps (the
# writer's thread beside the quantizing ones: GGUF's writer, the checkpoint
# writer's copier of the tensors that go out as they are) and how much is
# serial.
#
# The checkpoint lives in --dir: by default /dev/shm when it has room (a
# copy then costs memory bandwidth only, the quantity compared), else
# $TMPDIR; it says which. cp -r runs twice in each round and the second
# copy is timed: on the development machine (a virtual machine) the first
# copy after other work often takes several times longer, the page cache
# waiting for fresh pages, which would flatter every ratio.
#
#
# Outputs go beside the checkpoint, or into --out-dir: a directory on a disk
# measures what users mostly do (a model on tmpfs or in the page cache,
# written to a disk). quark makes its output durable before renaming it into
# place (fsync of every file it wrote; the write-back of each tensor starts
# as soon as it is written), which cp -r does not: on a disk a run then
# waits for the disk to take the output. So the table has a second
# baseline, "cp -r + sync": the copy, then fsync of the copied files
# (coreutils' `sync FILE...`), the same promise as quark's; the "x sync"
# column is the ratio to it. int8 and int4 g128 also run with --no-sync,
# which does not wait for the disk, as cp -r.
#
# Usage: /usr/bin/python3 bench/bench-checkpoint.py BUILDDIR [--shape NAME] [--layers N | --gib G] [--runs N]
#            [--threads T] [--dir DIR] [--out-dir DIR] [--llama-bin DIR]
#            [--dtype BF16|F16|F32] [--shards N] [--vocab V]
import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

# The shapes of three small models of the Llama family, from their
# config.json on the Hugging Face hub: hidden size, MLP size, key/value
# heads and head size, vocabulary, layers, whether the head is the
# embeddings (tie_word_embeddings: no lm_head tensor) and whether the q, k
# and v projections have biases (Qwen2's attention_bias)
SHAPES = {
    'tinyllama': dict(model_type='llama', arch='LlamaForCausalLM', hidden=2048, mlp=5632, kv_heads=4, head=64,
                      vocab=32000, layers=22, tied=False, qkv_bias=False),
    'llama-3.2-1b': dict(model_type='llama', arch='LlamaForCausalLM', hidden=2048, mlp=8192, kv_heads=8, head=64,
                         vocab=128256, layers=16, tied=True, qkv_bias=False),
    'qwen2.5-0.5b': dict(model_type='qwen2', arch='Qwen2ForCausalLM', hidden=896, mlp=4864, kv_heads=2, head=64,
                         vocab=151936, layers=24, tied=True, qkv_bias=True),
}

ap = argparse.ArgumentParser(
    description='quark quantize of a generated checkpoint against cp -r of it (and llama-quantize), '
                'alternating rounds; then 1 thread against --threads (see the comment at the top of this file)')
ap.add_argument('builddir', nargs='?', default='build', help='the meson build directory (default: build)')
ap.add_argument('--shape', choices=sorted(SHAPES), default='tinyllama',
                help='the model whose tensor shapes the checkpoint has (default: tinyllama, 2.05 GiB in BF16)')
ap.add_argument('--gib', type=float, default=None, help='as many layers as make this many GiB')
ap.add_argument('--layers', type=int, default=None, help='this many layers (default: the model\'s)')
ap.add_argument('--runs', type=int, default=5, help='rounds of every command (default: 5; at most 3 for threads)')
ap.add_argument('--threads', type=int, default=2, help='threads of every command (default: 2)')
ap.add_argument('--dir', default=None, help='where the checkpoint goes (default: /dev/shm when it has room)')
ap.add_argument('--out-dir', default=None, help='where the outputs go (default: beside the checkpoint)')
ap.add_argument('--llama-bin', default=os.environ.get('QUARK_LLAMA_CPP_BIN', ''),
                help='a llama.cpp build\'s bin directory, for llama-quantize (default: $QUARK_LLAMA_CPP_BIN)')
ap.add_argument('--dtype', choices=('BF16', 'F16', 'F32'), default='BF16', help='the weights\' type (default: BF16)')
ap.add_argument('--shards', type=int, default=1, help='split the weights into this many files with an index')
ap.add_argument('--vocab', type=int, default=None, help='another vocabulary size (default: the model\'s)')
args = ap.parse_args()

here = os.path.dirname(os.path.abspath(__file__))
quark = os.path.join(args.builddir, 'tools', 'quark')
env = dict(os.environ, QUARK_BACKEND_PATH=os.pathsep.join(os.path.join(args.builddir, 'libquark', 'backends', b)
                                                          for b in ('quark', 'brevitas')),
           QUARK_BACKEND_SYSTEM_PATH='')
tokenizer_dir = os.path.join(here, '..', '..', 'shared', 'models', 'docs-llama')

MODEL = SHAPES[args.shape]
H, F, KV = MODEL['hidden'], MODEL['mlp'], MODEL['kv_heads'] * MODEL['head']
VOCAB = args.vocab or MODEL['vocab']
HEADS = 1 if MODEL['tied'] else 2   # the embeddings, and the head unless tied
ESIZE = 4 if args.dtype == 'F32' else 2
per_layer = 2 * H * H + 2 * KV * H + 3 * H * F
if args.layers:
    layers = args.layers
elif args.gib:
    layers = max(1, int((args.gib * 2 ** 30 / ESIZE - HEADS * VOCAB * H) / per_layer))
else:
    layers = MODEL['layers']


def grow_tokenizer(path):
    """docs-llama's tokenizer grown to the vocabulary's size (the GGUF
    conversion reads every token and merge: several MB of tokenizer.json
    for a vocabulary of 150 000): tokens made of two of its tokens, each
    with its merge."""
    if not os.path.exists(path):
        return
    with open(path, encoding='utf-8') as f:
        tok = json.load(f)
    vocab, merges = tok['model']['vocab'], tok['model']['merges']
    base = list(vocab)
    next_id = 1 + max(list(vocab.values()) + [a['id'] for a in tok.get('added_tokens', [])])
    rng = np.random.default_rng(1)
    while next_id < VOCAB:
        a, b = base[rng.integers(len(base))], base[rng.integers(len(base))]
        if a + b not in vocab:
            vocab[a + b] = next_id
            merges.append([a, b] if merges and isinstance(merges[0], list) else a + ' ' + b)
            next_id += 1
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(tok, f, ensure_ascii=False, indent=2)


def write_checkpoint(path):
    tensors = [('model.embed_tokens.weight', (VOCAB, H))]
    for i in range(layers):
        p = 'model.layers.%d.' % i
        tensors += [(p + 'input_layernorm.weight', (H,)), (p + 'post_attention_layernorm.weight', (H,)),
                    (p + 'self_attn.q_proj.weight', (H, H)), (p + 'self_attn.k_proj.weight', (KV, H)),
                    (p + 'self_attn.v_proj.weight', (KV, H)), (p + 'self_attn.o_proj.weight', (H, H)),
                    (p + 'mlp.gate_proj.weight', (F, H)), (p + 'mlp.up_proj.weight', (F, H)),
                    (p + 'mlp.down_proj.weight', (H, F))]
        if MODEL['qkv_bias']:
            tensors += [(p + 'self_attn.q_proj.bias', (H,)), (p + 'self_attn.k_proj.bias', (KV,)),
                        (p + 'self_attn.v_proj.bias', (KV,))]
    tensors += [('model.norm.weight', (H,))]
    if not MODEL['tied']:
        tensors += [('lm_head.weight', (VOCAB, H))]
    rng = np.random.default_rng(0)
    block = rng.standard_normal(1 << 22).astype(np.float32) * 0.02
    if args.dtype == 'BF16':
        block = (block.view(np.uint32) >> 16).astype(np.uint16)
    elif args.dtype == 'F16':
        block = block.astype(np.float16)
    block = block.tobytes()
    # the shards: consecutive runs of tensors of about equal bytes
    files, weight_map = [], {}
    total = sum(int(np.prod(shape)) for _, shape in tensors) * ESIZE
    for name, shape in tensors:
        k = min(args.shards - 1, sum(int(np.prod(s)) for _, s in sum(files, [])) * ESIZE * args.shards // total)
        while len(files) <= k:
            files.append([])
        files[k].append((name, shape))
    for k, part in enumerate(files):
        fname = ('model.safetensors' if args.shards == 1 else
                 'model-%05d-of-%05d.safetensors' % (k + 1, len(files)))
        header, offset = {'__metadata__': {'format': 'pt'}}, 0
        for name, shape in part:
            size = int(np.prod(shape)) * ESIZE
            header[name] = {'dtype': args.dtype, 'shape': list(shape), 'data_offsets': [offset, offset + size]}
            offset += size
            weight_map[name] = fname
        text = json.dumps(header).encode()
        text += b' ' * (-len(text) % 8)
        with open(os.path.join(path, fname), 'wb') as f:
            f.write(struct.pack('<Q', len(text)) + text)
            for name, shape in part:
                left = int(np.prod(shape)) * ESIZE
                while left:
                    chunk = block[:min(left, len(block))]
                    f.write(chunk)
                    left -= len(chunk)
    if args.shards > 1:
        with open(os.path.join(path, 'model.safetensors.index.json'), 'w') as f:
            json.dump({'metadata': {'total_size': total}, 'weight_map': weight_map}, f)
    config = {'architectures': [MODEL['arch']], 'model_type': MODEL['model_type'], 'hidden_size': H,
              'intermediate_size': F, 'num_attention_heads': H // MODEL['head'],
              'num_key_value_heads': MODEL['kv_heads'], 'head_dim': MODEL['head'],
              'num_hidden_layers': layers, 'vocab_size': VOCAB, 'max_position_embeddings': 2048,
              'rms_norm_eps': 1e-5, 'rope_theta': 10000.0, 'tie_word_embeddings': MODEL['tied'],
              'hidden_act': 'silu', 'torch_dtype': {'BF16': 'bfloat16', 'F16': 'float16', 'F32': 'float32'}[args.dtype],
              'bos_token_id': 0, 'eos_token_id': 1}
    with open(os.path.join(path, 'config.json'), 'w') as f:
        json.dump(config, f)
    for name in ('tokenizer.json', 'tokenizer_config.json'):   # for the GGUF conversion only
        if os.path.exists(os.path.join(tokenizer_dir, name)):
            shutil.copyfile(os.path.join(tokenizer_dir, name), os.path.join(path, name))
    grow_tokenizer(os.path.join(path, 'tokenizer.json'))
    return max(int(np.prod(s)) * ESIZE for _, s in tensors)


def run(cmd, out):
    """Wall seconds, minor page faults, peak RSS (bytes) and processor
    seconds (user + system) of one run. The faults, the peak and the
    processor time are GNU time's (%R, %M, %U + %S), measured from a small
    process: a child of this Python would count Python's own resident
    memory in its peak (exec folds the parent's into it)."""
    if os.path.isdir(out):
        shutil.rmtree(out)
    elif os.path.exists(out):
        os.unlink(out)
    t0 = time.perf_counter()
    r = subprocess.run(['/usr/bin/time', '-f', 'QUARK-BENCH %R %M %U %S'] + cmd, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit('%s failed: %s' % (' '.join(cmd), r.stderr[-2000:]))
    faults, peak_kib, user, system = [x for x in r.stderr.splitlines() if x.startswith('QUARK-BENCH ')][-1].split()[1:]
    return elapsed, int(faults), int(peak_kib) * 1024, float(user) + float(system)


def rounds(commands, n):
    """{label: [(seconds, faults, rss)...]}, the commands alternating."""
    results = {label: [] for label, _, _ in commands}
    for _ in range(n):
        for label, cmd, out in commands:
            if label.startswith('cp -r'):
                run(cmd, out)   # a first copy after other work is often slowed down (see above)
            results[label].append(run(cmd, out))
    return results


def free_space(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


size_needed = 3.5 * (layers * per_layer + HEADS * VOCAB * H) * ESIZE
where = args.dir or ('/dev/shm' if os.path.isdir('/dev/shm') and free_space('/dev/shm') > size_needed
                     else tempfile.gettempdir())
with tempfile.TemporaryDirectory(dir=where) as tmp:
    src = os.path.join(tmp, 'model')
    os.mkdir(src)
    largest = write_checkpoint(src)
    shards = sorted(os.path.join(src, f) for f in os.listdir(src) if f.endswith('.safetensors'))
    size = sum(os.path.getsize(f) for f in shards)
    subprocess.run(['cat'] + shards, stdout=subprocess.DEVNULL, check=True)
    out_tmp = tempfile.TemporaryDirectory(dir=args.out_dir) if args.out_dir else None
    out = os.path.join(out_tmp.name if out_tmp else tmp, 'out')
    j = str(args.threads)
    commands = [('cp -r', ['cp', '-r', src, out], out),
                ('cp -r + sync', ['sh', '-c', 'cp -r "$0" "$1" && sync "$1"/* "$1"', src, out], out)]
    for preset, what, extra in (('int8_per_channel_wo', 'int8', []), ('ptpc_fp8', 'fp8', []),
                                ('mxfp4', 'mxfp4', []), ('int4_wo_128', 'int4 g128', []),
                                ('uint4_wo_128', 'uint4 g128', []),
                                ('int4_wo_128', 'int4 g128 ct', ['--export-format', 'compressed-tensors']),
                                ('int8_per_channel_wo', 'int8 ct', ['--export-format', 'compressed-tensors'])):
        commands.append(('quark ' + what, [quark, 'quantize', src, '-o', out, '--preset', preset, '--threads', j]
                         + extra, out))
    # without waiting for the disk (the same as the above on tmpfs)
    for preset, what in (('int8_per_channel_wo', 'int8'), ('int4_wo_128', 'int4 g128')):
        commands.append(('quark %s --no-sync' % what, [quark, 'quantize', src, '-o', out, '--preset', preset,
                                                      '--threads', j, '--no-sync'], out))
    # the brevitas backend (its workers quantize the row path's weights)
    for preset, what in (('int8_weight_per_channel', 'int8'), ('int4_weight_g128', 'int4 g128'), ('mxfp4', 'mxfp4')):
        commands.append(('quark brevitas ' + what, [quark, 'quantize', src, '-o', out, '--backend', 'brevitas',
                                                    '--preset', preset, '--threads', j], out))
    llama_quantize = os.path.join(args.llama_bin, 'llama-quantize') if args.llama_bin else ''
    have_llama = llama_quantize and os.access(llama_quantize, os.X_OK) and \
        os.path.exists(os.path.join(src, 'tokenizer.json'))
    if have_llama:
        source = os.path.join(tmp, 'source.gguf')   # the checkpoint's type
        subprocess.run([quark, 'quantize', src, '-o', source, '--export-format', 'gguf', '--type', args.dtype], env=env,
                       check=True, capture_output=True)
        outg = os.path.join(os.path.dirname(out), 'out.gguf')
        for t in ('Q8_0', 'Q4_0', 'MXFP4_MOE'):
            commands.append(('llama-quantize ' + t, [llama_quantize, source, outg, t, j], outg))

    print('checkpoint: %.2f GiB of %s weights in %d file(s) in %s (%d layers of %s\'s shapes, a vocabulary of %d), '
          'largest tensor %.0f MiB; outputs in %s; %d threads, %d rounds'
          % (size / 2 ** 30, args.dtype, len(shards), where, layers, args.shape, VOCAB, largest / 2 ** 20,
             os.path.dirname(out), args.threads, args.runs))
    if not have_llama:
        print('llama-quantize: not compared (give --llama-bin DIR of a llama.cpp build, and ../shared for the '
              'tokenizer its GGUF needs)')
    results = rounds(commands, args.runs)
    cp_time = statistics.median(r[0] for r in results['cp -r'])
    sync_time = statistics.median(r[0] for r in results['cp -r + sync'])
    cp_faults = statistics.median(r[1] for r in results['cp -r'])
    rss_target = 2 * largest + 64 * 2 ** 20
    print('%-30s %8s %15s %8s %8s %12s %9s %10s' % ('command', 'median s', 'range', 'x cp', 'x sync', 'page faults',
                                                      'x cp', 'peak MiB'))
    for label, rs in results.items():
        t = [r[0] for r in rs]
        faults = statistics.median(r[1] for r in rs)
        rss = max(r[2] for r in rs)
        print('%-30s %8.2f %7.2f-%-7.2f %8.2f %8.2f %12.0f %9.1f %10.0f%s'
              % (label, statistics.median(t), min(t), max(t), statistics.median(t) / cp_time,
                 statistics.median(t) / sync_time, faults, faults / max(cp_faults, 1), rss / 2 ** 20,
                 '' if not label.startswith('quark') else
                 ('  (<= 2 x largest + 64 MiB)' if rss <= rss_target else '  (> 2 x largest + 64 MiB)')))

    # threads: 1 against --threads on compute-bound work. -j1 is one
    # quantizing thread with the writer's thread beside it; "1 cpu" is -j1
    # held to one processor (taskset), the time without any overlap; the
    # processors column is the run's processor time over its wall time.
    first_cpu = str(min(os.sched_getaffinity(0)))
    scaling = []
    for work, extra, o in (('int4 g128', ['--preset', 'int4_wo_128'], out),
                           ('gguf Q4_K_M', ['--export-format', 'gguf', '--type', 'Q4_K_M'],
                            os.path.join(os.path.dirname(out), 'scale.gguf'))):
        if work.startswith('gguf') and not os.path.exists(os.path.join(src, 'tokenizer.json')):
            continue
        cmd = [quark, 'quantize', src, '-o', o] + extra
        scaling += [(work + ' -j1 1 cpu', ['taskset', '-c', first_cpu] + cmd + ['--threads', '1'], o),
                    (work + ' -j1', cmd + ['--threads', '1'], o),
                    ('%s -j%s' % (work, j), cmd + ['--threads', j], o)]
    results = rounds(scaling, min(args.runs, 3))   # GGUF Q4_K_M is long
    print('%-30s %8s %15s %10s' % ('threads', 'median s', 'range', 'processors'))
    medians = {}
    for label, rs in results.items():
        t = [r[0] for r in rs]
        medians[label] = statistics.median(t)
        print('%-30s %8.2f %7.2f-%-7.2f %10.2f' % (label, medians[label], min(t), max(t),
                                                  statistics.median(r[3] / r[0] for r in rs)))
    for work in ('int4 g128', 'gguf Q4_K_M'):
        if work + ' -j1' in medians:
            many = medians['%s -j%s' % (work, j)]
            print('%s: -j%s is %.2fx -j1 and %.2fx -j1 on one processor' %
                  (work, j, medians[work + ' -j1'] / many, medians[work + ' -j1 1 cpu'] / many))
    if out_tmp:
        out_tmp.cleanup()
