#!/usr/bin/env python3
# Perplexity of docs-llama (../shared/models/docs-llama) quantized with
# round-to-nearest and with each algorithm, all through the `quark` tool
# and nothing else: `quark quantize --calibration-text` on the model's
# calibration text (data/calib.txt) and `quark eval` on its held-out text
# (data/dev.txt, documents as BOS + text + EOS, windows of 512). Prints a
# Markdown table: perplexity, its change from float, and the share of
# round-to-nearest's change that each algorithm removes.
#
# Usage: /usr/bin/python3 bench/quality-docs-llama.py [BUILDDIR] [--documents N]
#            [--calibration-tokens N] [--schemes int4_g128,uint4_g128,int4_channel,int3_g128]
# (schemes named bv_… use the brevitas backend)
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEPARATOR = '\n\n<|document|>\n\n'

ap = argparse.ArgumentParser()
ap.add_argument('builddir', nargs='?', default=os.path.join(ROOT, 'build'))
ap.add_argument('--model', default=os.path.join(ROOT, '..', 'shared', 'models', 'docs-llama'))
ap.add_argument('--documents', type=int, default=0, help='score only the first N held-out documents (0: all)')
ap.add_argument('--calibration-tokens', type=int, default=65536)
ap.add_argument('--schemes', default='int4_g128,uint4_g128,int4_channel,int3_g128')
ap.add_argument('--algorithms', default='gptq,awq,awq+gptq',
                help='comma-separated methods; a method combines algorithms with +; smooth@A sets alpha, '
                     'gptq@D damp_percent; gptq-act: groups in activation order; gptq-rs: GPTQ with '
                     'refine_scales; gptq-ec: with correct_input_error; gptq-ecrs: both; gptq-ecdyn: '
                     'correct_input_error with groups in column order (desc_act false); gptq-ts, gptq-ects: '
                     'true_sequential (attention, then MLP), without and with correct_input_error')
args = ap.parse_args()

QUARK = os.path.join(os.path.abspath(args.builddir), 'tools', 'quark')
os.environ.setdefault('QUARK_BACKEND_PATH', os.pathsep.join(
    os.path.join(os.path.abspath(args.builddir), 'libquark', 'backends', b) for b in ('quark', 'brevitas')))
SCHEMES = {
    'int4_g128': {'dtype': 'int4', 'qscheme': 'per_group', 'group_size': 128, 'ch_axis': -1, 'symmetric': True},
    'uint4_g128': {'dtype': 'uint4', 'qscheme': 'per_group', 'group_size': 128, 'ch_axis': -1, 'symmetric': False},
    'int4_channel': {'dtype': 'int4', 'qscheme': 'per_channel', 'ch_axis': 0, 'symmetric': True},
    'int3_g128': {'dtype': 'int3', 'qscheme': 'per_group', 'group_size': 128, 'ch_axis': -1, 'symmetric': True},
    'mxfp4': {'dtype': 'fp4', 'qscheme': 'per_group', 'group_size': 32, 'ch_axis': -1, 'symmetric': True,
              'scale_format': 'e8m0', 'scale_calculation_mode': 'even'},
    # NVFP4 weights (compressed-tensors' NVFP4A16), written as nvfp4-pack-quantized
    'nvfp4': {'dtype': 'fp4', 'qscheme': 'per_group', 'group_size': 16, 'ch_axis': -1, 'symmetric': True,
              'scale_format': 'e4m3'},
    # W8A8: the int8 preset, per-tensor weights and static per-tensor inputs
    'w8a8_int8': {'dtype': 'int8', 'qscheme': 'per_tensor', 'symmetric': True, 'is_dynamic': False},
}
# W4A4 NVFP4 (compressed-tensors' NVFP4 preset): NVFP4 weights and inputs
SCHEMES['nvfp4_w4a4'] = SCHEMES['nvfp4']
# the brevitas backend's weight quantizers (its methods: gptq, gptq-ao with
# act_order, bias_correction, as its algo_config names them, and ae, ae@A:
# activation equalization with alpha A, from its pre_quant_opt_config)
BREVITAS = {
    'bv_int4_channel': {'preset': 'Int8WeightPerChannelFloat', 'bit_width': 4},
    'bv_int4_g128': {'preset': 'IntWeightSymmetricGroupQuant', 'group_size': 128},
    # W8A8: int8 weights per channel, static int8 inputs per tensor
    'bv_w8a8': {'preset': 'Int8WeightPerChannelFloat'},
}
SCHEMES.update(BREVITAS)
# schemes whose inputs are quantized too, and their input specs (static
# int8; NVFP4's group scales dynamic under a calibrated global scale)
WITH_INPUTS = {'w8a8_int8': SCHEMES['w8a8_int8'], 'nvfp4_w4a4': dict(SCHEMES['nvfp4'], is_dynamic=True),
               'bv_w8a8': {'preset': 'Int8ActPerTensorFloat'}}


# AWQ's groups fed by a norm only (no v -> o, up -> down: what a split of
# each decoder layer into q/k/v, o, gate/up and down leaves possible)
NORM_GROUPS = [{'prev_op': 'input_layernorm', 'layers': ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'],
                'inp': 'self_attn.q_proj'},
               {'prev_op': 'post_attention_layernorm', 'layers': ['mlp.gate_proj', 'mlp.up_proj'],
                'inp': 'mlp.gate_proj'}]


def algo_config(method):
    # 'awq+gptq' -> [{'name': 'awq'}, {'name': 'gptq'}]; 'smooth@0.5' sets
    # SmoothQuant's alpha, 'gptq@0.1' GPTQ's damp_percent; 'gptq-act' is
    # GPTQ with its groups in activation order (static_groups false), which
    # is written in compressed-tensors' layout (weight_g_idx)
    out = []
    for token in method.split('+'):
        if token.partition('@')[0] == 'ae':
            continue
        name, _, value = token.partition('@')
        entry = {'name': 'gptq', 'static_groups': False} if name == 'gptq-act' else \
            {'name': 'gptq', 'act_order': True} if name == 'gptq-ao' else \
            {'name': 'gptq', 'refine_scales': True} if name == 'gptq-rs' else \
            {'name': 'gptq', 'correct_input_error': True} if name == 'gptq-ec' else \
            {'name': 'gptq', 'correct_input_error': True, 'refine_scales': True} if name == 'gptq-ecrs' else \
            {'name': 'gptq', 'correct_input_error': True, 'desc_act': False} if name == 'gptq-ecdyn' else \
            {'name': 'gptq', 'true_sequential': True} if name == 'gptq-ts' else \
            {'name': 'awq', 'model_decoder_layers': 'model.layers', 'scaling_layers': NORM_GROUPS} \
            if name == 'awq-norms' else \
            {'name': 'gptq', 'correct_input_error': True, 'true_sequential': True} if name == 'gptq-ects' else \
            {'name': name}
        key = 'damp_percent' if entry['name'] == 'gptq' else 'alpha'
        out.append(dict(entry, **({key: float(value)} if value else {})))
    return out

tmp = tempfile.mkdtemp(prefix='quality-')
text = os.path.join(args.model, 'data', 'dev.txt')
if args.documents:
    with open(text, encoding='utf-8') as f:
        docs = f.read().split(SEPARATOR)[:args.documents]
    text = os.path.join(tmp, 'dev.txt')
    with open(text, 'w', encoding='utf-8') as f:
        f.write(SEPARATOR.join(docs))
calib = os.path.join(args.model, 'data', 'calib.txt')


def run(*cmd):
    p = subprocess.run([QUARK] + [str(c) for c in cmd], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        sys.exit('quark %s failed:\n%s' % (' '.join(map(str, cmd)), p.stderr))
    return p.stdout


def perplexity(model):
    return json.loads(run('eval', model, '--text', text, '--document-separator', SEPARATOR, '--json'))


base = perplexity(args.model)
print('docs-llama, %d held-out tokens (%d predictions, windows of 512); calibration: %d tokens of calib.txt' %
      (base['tokens'], base['predictions'], args.calibration_tokens))
print()
print('| scheme | method | perplexity | vs float | gap closed | quantize s |')
print('|---|---|---|---|---|---|')
print('| float (BF16) | | %.4f | | | |' % base['perplexity'])
for scheme in args.schemes.split(','):
    rtn = None
    for method in ['rtn'] + [m for m in args.algorithms.split(',') if m]:
        layer = {'weight': SCHEMES[scheme]}
        if scheme in WITH_INPUTS:
            layer['input_tensors'] = WITH_INPUTS[scheme]
        config = {'global_quant_config': layer, 'exclude': ['lm_head']}
        if scheme in BREVITAS:
            config['backend'] = 'brevitas'
        if method != 'rtn' and algo_config(method):
            config['algo_config'] = algo_config(method)
        for token in method.split('+'):
            name, _, value = token.partition('@')
            if name == 'ae':
                config['pre_quant_opt_config'] = [dict({'name': 'activation_equalization'},
                                                       **({'alpha': float(value)} if value else {}))]
        cfg = os.path.join(tmp, '%s-%s.json' % (scheme, method))
        with open(cfg, 'w') as f:
            json.dump(config, f)
        out = os.path.join(tmp, '%s-%s' % (scheme, method))
        # static inputs and algorithms need calibration: the native runtime's
        extra = [] if method == 'rtn' and scheme not in WITH_INPUTS else [
            '--calibration-text', calib, '--calibration-tokens', args.calibration_tokens]
        t0 = time.perf_counter()
        if 'gptq-act' in method or scheme.startswith('nvfp4'):
            extra += ['--export-format', 'compressed-tensors']
        run('quantize', args.model, '-o', out, '--config', cfg, *extra)
        seconds = time.perf_counter() - t0
        ppl = perplexity(out)['perplexity']
        change = ppl / base['perplexity'] - 1
        if method == 'rtn':
            rtn = change
        closed = '' if method == 'rtn' or rtn <= 0 else '%.1f %%' % (100 * (1 - change / rtn))
        print('| %s | %s | %.4f | %+.2f %% | %s | %.1f |' % (scheme, method, ppl, 100 * change, closed, seconds),
              flush=True)
