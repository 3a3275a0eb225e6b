#!/usr/bin/python3
# Quantizing small PyTorch classifiers with libquark, end to end.
#
# Trains an MLP and a CNN on scikit-learn's bundled digits (8x8 images, no
# download), saves each as a safetensors checkpoint, and quantizes it with
# libquark under several schemes. Static activation scales come from a
# calibration session fed by PyTorch forward hooks; the statistics are also
# saved to a file, as a separate `quark quantize --calibration` run would
# use them. Each quantized model is then evaluated in PyTorch with
# libquark's dequantized weights and libquark's activation fake
# quantization (Quark.TensorSpec.fake_quantize with the exported
# input_scale / input_zero_point), and the accuracies are printed next to
# the float model's.
#
#   /usr/bin/python3 examples/digits.py [--json] [--out DIR]
#
# Runs in seconds on a CPU; fixed seeds make it repeatable.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import argparse
import json
import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
from sklearn.datasets import load_digits

import gi
gi.require_version('Quark', '1.0')
gi.require_version('Json', '1.0')
from gi.repository import Json, Quark  # noqa: E402

REGISTRY = Quark.Registry.get_default()


# ---- data and models -----------------------------------------------------------

def digits(seed=0, n_test=500):
    d = load_digits()
    x = (d.images.reshape(-1, 64) / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[:n_test], order[n_test:]
    return (torch.from_numpy(x[train]), torch.from_numpy(y[train]),
            torch.from_numpy(x[test]), torch.from_numpy(y[test]))


class MLP(nn.Module):
    kind = 'digits-mlp'

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class CNN(nn.Module):
    kind = 'digits-cnn'

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x.view(-1, 1, 8, 8)))
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


def train(net, x, y, epochs=40, seed=0):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    net.eval()
    return net


def accuracy(net, x, y):
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean()) * 100


def layers(net):
    return [(name, m) for name, m in net.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


# ---- checkpoints through libquark ----------------------------------------------------

def save_checkpoint(net, directory):
    """Writes the model as model.safetensors + config.json with libquark's writer."""
    writer = Quark.CheckpointWriter.new(directory, 0, True)
    for name, p in net.state_dict().items():
        writer.add(Quark.tensor_from_array(name, p.numpy()))
    writer.set_metadata(Json.from_string(json.dumps({'model_type': net.kind, 'torch_dtype': 'float32'})))
    writer.finish(None)


# ---- schemes: AMD Quark configs -----------------------------------------------------------

INT8_STATIC = {'dtype': 'int8', 'qscheme': 'per_tensor', 'is_dynamic': False, 'symmetric': True}
FP8_STATIC = {'dtype': 'fp8_e4m3', 'qscheme': 'per_tensor', 'is_dynamic': False}


def config(weight, inputs=None, conv_weight='same', conv_inputs='same', exclude=()):
    """A quark-backend config; Conv2d layers may get other specs (or none)."""
    c = {'backend': 'quark', 'global_quant_config': {'weight': weight, 'input_tensors': inputs},
         'exclude': list(exclude)}
    if conv_weight != 'same' or conv_inputs != 'same':
        c['layer_type_quant_config'] = {'Conv2d': {
            'weight': weight if conv_weight == 'same' else conv_weight,
            'input_tensors': inputs if conv_inputs == 'same' else conv_inputs}}
    return c


SCHEMES = [
    # name, config, what the table says
    ('w8a8-int8', config({'dtype': 'int8', 'qscheme': 'per_channel', 'ch_axis': 0}, INT8_STATIC),
     'int8 per-channel weights, int8 static per-tensor inputs'),
    ('w8-int8', config({'dtype': 'int8', 'qscheme': 'per_channel', 'ch_axis': 0}),
     'int8 per-channel weights'),
    # AMD Quark's int4 layout packs eight output channels per word: the
    # 10-class heads stay in float, as LLM recipes keep lm_head
    ('w4-int4-g32', config({'dtype': 'int4', 'qscheme': 'per_group', 'ch_axis': -1, 'group_size': 32},
                           conv_weight={'dtype': 'int4', 'qscheme': 'per_channel', 'ch_axis': 0},
                           exclude=['fc3', 'fc']),
     'int4 per-group-32 weights (convolutions per channel, head in float)'),
    ('w8a8-fp8', config({'dtype': 'fp8_e4m3', 'qscheme': 'per_tensor'}, FP8_STATIC),
     'fp8 e4m3 per-tensor weights, fp8 static per-tensor inputs'),
    # FP4 packs two codes per byte along the last axis, which is 3 for the
    # convolutions: they stay in float (a null layer spec would inherit)
    # the same hooks feed the brevitas backend: Brevitas's W8A8 with an
    # integer bias (input scale x weight scale)
    ('brevitas-w8a8', {'backend': 'brevitas', 'global_quant_config': {
        'weight': {'preset': 'Int8WeightPerChannelFloat'}, 'input_tensors': {'preset': 'Int8ActPerTensorFloat'},
        'bias': {'preset': 'Int32Bias'}}},
     'Brevitas Int8WeightPerChannelFloat, Int8ActPerTensorFloat, Int32Bias'),
    ('w4-mxfp4', config({'dtype': 'fp4', 'qscheme': 'per_group', 'ch_axis': -1, 'group_size': 32,
                         'scale_format': 'e8m0', 'scale_calculation_mode': 'even'}, exclude=['conv1', 'conv2']),
     'OCP MXFP4 weights (convolutions in float)'),
]


def calibrate(net, model, cfg, batches):
    """A calibration session for @cfg, fed from forward pre-hooks."""
    session = Quark.Calibration.new_for_config(cfg, model)

    def observer(name):
        def hook(module, inputs):
            session.observe(name, Quark.Role.INPUT, inputs[0])   # returns None: the input is unchanged
        return hook
    hooks = [m.register_forward_pre_hook(observer(name)) for name, m in layers(net)]
    with torch.no_grad():
        for b in batches:
            net(b)
    for h in hooks:
        h.remove()
    return session


def quantized_copy(net, model, cfg, quantized):
    """@net with libquark's dequantized weights and libquark's fake
    quantization of each static input."""
    quantizer = REGISTRY.new_quantizer(cfg)
    deq = quantizer.dequantize_model(quantized)
    copy = type(net)()
    state = {}
    for name in net.state_dict():
        t = deq.get_tensor(name)
        state[name] = torch.from_numpy(t.to_float_array().copy())
    copy.load_state_dict(state)
    copy.eval()
    weights = {name: model.get_tensor(name + '.weight') for name, _ in layers(net)}
    for name, m in layers(copy):
        layer_type = weights[name].guess_layer_type()
        spec = cfg.get_tensor_spec(name, layer_type, Quark.Role.INPUT)
        scale = quantized.get_tensor(name + '.input_scale')
        if spec is None or scale is None:
            continue
        zero_point = quantized.get_tensor(name + '.input_zero_point')

        def fake_quantize(mod, inp, spec=spec, scale=scale, zero_point=zero_point):
            t = Quark.tensor_from_array('x', inp[0])
            return (torch.from_numpy(spec.fake_quantize(t, scale, zero_point).to_float_array().copy()),)
        m.register_forward_pre_hook(fake_quantize)
    return copy


def run(workdir, epochs=40, seed=0, log=print):
    xtr, ytr, xte, yte = digits(seed)
    calibration_batches = xtr[:1024].split(128)
    results = []
    for kind in (MLP, CNN):
        torch.manual_seed(seed)                  # the initial weights
        net = train(kind(), xtr, ytr, epochs, seed)
        base = accuracy(net, xte, yte)
        ckpt = os.path.join(workdir, net.kind)
        save_checkpoint(net, ckpt)
        model = Quark.Model.load(ckpt, None)
        results.append({'model': net.kind, 'scheme': 'float', 'accuracy': base, 'delta': 0.0,
                        'description': 'float32'})
        log('%-11s %-14s %6.2f %%' % (net.kind, 'float', base))
        for name, text, description in ((s[0], json.dumps(s[1]), s[2]) for s in SCHEMES):
            cfg = REGISTRY.config_from_string(text, -1)
            session = calibrate(net, model, cfg, calibration_batches)
            stats = os.path.join(workdir, '%s-%s.stats.json' % (net.kind, name))
            session.save(stats)
            quantizer = REGISTRY.new_quantizer(cfg)
            quantized = quantizer.quantize_model(model, session, None)
            acc = accuracy(quantized_copy(net, model, cfg, quantized), xte, yte)
            results.append({'model': net.kind, 'scheme': name, 'accuracy': acc, 'delta': acc - base,
                            'description': description, 'config': text, 'stats': stats, 'checkpoint': ckpt})
            log('%-11s %-14s %6.2f %%  (%+.2f)  %s' % (net.kind, name, acc, acc - base, description))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__ or 'digits with libquark')
    parser.add_argument('--out', help='keep checkpoints and statistics here (default: a temporary directory)')
    parser.add_argument('--epochs', type=int, default=40)
    parser.add_argument('--json', action='store_true', help='print the results as JSON')
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    log = (lambda *a: None) if args.json else print
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        results = run(args.out, args.epochs, log=log)
    else:
        with tempfile.TemporaryDirectory() as d:
            results = run(d, args.epochs, log=log)
    if args.json:
        json.dump([{k: v for k, v in r.items() if k in ('model', 'scheme', 'accuracy', 'delta')} for r in results],
                  sys.stdout, indent=1)
        print()


if __name__ == '__main__':
    main()
