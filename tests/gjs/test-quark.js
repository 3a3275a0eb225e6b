// GJS binding test: gi://Quark against the build tree.
//
// SPDX-License-Identifier: LGPL-2.1-or-later
import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import Quark from 'gi://Quark?version=1.0';
import System from 'system';

let failures = 0;
let count = 0;

function check(name, fn) {
    count++;
    try {
        fn();
        print(`ok ${count} ${name}`);
    } catch (e) {
        failures++;
        print(`not ok ${count} ${name}`);
        for (const line of `${e}\n${e.stack ?? ''}`.split('\n'))
            print(`# ${line}`);
    }
}

function assert(cond, what) {
    if (!cond)
        throw new Error(`assertion failed: ${what}`);
}

const registry = Quark.Registry.get_default();
const Q1 = [1.27, -1.27, 0.5, 0.3, 0.004, 0.125, -0.05, 0.635];
const Q1_CODES = [127, -128, 50, 30, 0, 13, -5, 64];

print('1..13');

check('quark backend listed with metadata', () => {
    const names = registry.list_backends().map(b => b.get_name());
    assert(names.includes('quark'), `backends ${names}`);
    const quark = registry.lookup_backend('quark');
    assert(quark.version === Quark.VERSION_S, `version ${quark.version}`);
    assert(quark.description.includes('AMD Quark'), 'description');
    assert(quark.supports_dtype(Quark.DType.INT8), 'int8 supported');
});

check('exact integers and scale', () => {
    const config = registry.config_from_string(
        '{"backend": "quark", "global_quant_config": {"weight": {"dtype": "int8", "qscheme": "per_tensor"}}}', -1);
    const model = Quark.Model.new();
    model.add_tensor(Quark.Tensor.new_from_floats('fc.weight', [2, 4], Q1));
    const quantizer = registry.new_quantizer(config);
    let progressed = 0;
    quantizer.connect('progress', (q, done, total) => {
        progressed = done;
    });
    const out = quantizer.quantize_model(model, null, null);
    assert(progressed === 8, `progress ${progressed}`);
    const bytes = out.get_tensor('fc.weight').get_data().toArray();
    const codes = Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, bytes.length));
    assert(JSON.stringify(codes) === JSON.stringify(Q1_CODES), `codes ${codes}`);
    const scaleBytes = out.get_tensor('fc.weight_scale').get_data().toArray();
    const bits = new DataView(scaleBytes.buffer, scaleBytes.byteOffset, 4).getUint32(0, true);
    assert(bits === 0x3C23328F, `scale bits ${bits.toString(16)}`);
});

check('unknown key error names the key', () => {
    let caught = null;
    try {
        registry.config_from_string(
            '{"backend": "quark", "global_quant_config": {"weight": {"dtype": "int8", "bits": 8}}}', -1);
    } catch (e) {
        caught = e;
    }
    assert(caught !== null, 'an error was thrown');
    assert(caught.matches(Quark.ConfigError, Quark.ConfigError.UNKNOWN_KEY), `domain/code of ${caught}`);
    assert(caught.message.startsWith('global_quant_config.weight.bits: unknown key'), caught.message);
});

check('async quantization on the main loop', () => {
    const config = registry.config_from_string(
        '{"backend": "quark", "global_quant_config": {"weight": {"dtype": "int8"}}}', -1);
    const model = Quark.Model.new();
    model.add_tensor(Quark.Tensor.new_from_floats('a.weight', [2, 4], Q1));
    model.add_tensor(Quark.Tensor.new_from_floats('b.weight', [2, 4], Q1));
    const quantizer = registry.new_quantizer(config);
    const items = [];
    quantizer.connect('progress', (q, done, total, item) => items.push(item));
    const loop = GLib.MainLoop.new(null, false);
    let out = null;
    quantizer.quantize_model_async(model, null, null, (q, res) => {
        out = q.quantize_model_finish(res);
        loop.quit();
    });
    loop.run();
    assert(out !== null && out.get_n_tensors() === 6, 'result');
    assert(JSON.stringify(items) === '["a.weight","b.weight"]', `items ${items}`);
});

check('calibration session from JS arrays', () => {
    const session = Quark.Calibration.new();
    session.observe_floats('fc', Quark.Role.INPUT, [1, -2], [2]);
    session.observe_floats('fc', Quark.Role.INPUT, [4, 0.5], [2]);
    const spec = Quark.TensorSpec.new(Quark.DType.INT8, Quark.QScheme.PER_TENSOR);
    spec.observer = Quark.Observer.PERCENTILE;
    spec.percentile = 99.999;
    // Brevitas's running mean of the per-batch statistics 2 and 4
    const [ok, lo, hi] = session.compute_range('fc', Quark.Role.INPUT, spec);
    assert(ok && lo === -3 && hi === 3, `range ${lo} ${hi}`);
    assert(JSON.stringify(session.list_layers(Quark.Role.INPUT)) === '["fc"]', 'layers');
});

check('the brevitas backend from JS', () => {
    const config = registry.config_from_string(
        '{"backend": "brevitas", "global_quant_config": {"weight": {"preset": "Int8WeightPerTensorFloat"}}}', -1);
    const model = Quark.Model.new();
    model.add_tensor(Quark.Tensor.new_from_floats('fc.weight', [2, 4],
        [0.5, -1.27, 0.3, 0.004, 0.25, 0.1, -0.05, 0.125]));
    const out = registry.new_quantizer(config).quantize_model(model, null, null);
    const bytes = out.get_tensor('fc.weight').get_data().toArray();
    const codes = Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, bytes.length));
    // numerics.md V5: 0.125 / s = 12.5 exactly in float32, so 12
    assert(JSON.stringify(codes) === '[50,-127,30,0,25,10,-5,12]', `codes ${codes}`);
});

check('cancellation is Gio.IOErrorEnum.CANCELLED, as in GIO', () => {
    const quantizer = registry.new_quantizer(registry.config_for_preset(null, 'int8_per_channel_wo'));
    const model = Quark.Model.new();
    model.add_tensor(Quark.Tensor.new_from_floats('fc.weight', [2, 4], Q1));
    const cancellable = new Gio.Cancellable();
    cancellable.cancel();
    let caught = null;
    try {
        quantizer.quantize_model(model, null, cancellable);
    } catch (e) {
        caught = e;
    }
    assert(caught !== null && caught.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED), `${caught}`);
});

check('presets in one call, aliases and suggestions', () => {
    const config = registry.config_for_preset(null, 'w_fp8_a_fp8');
    assert(config.get_backend_name() === 'quark', 'an AMD Quark scheme name is an alias');
    let caught = null;
    try {
        registry.config_for_preset('quark', 'int4_wo128');
    } catch (e) {
        caught = e;
    }
    assert(caught !== null && caught.matches(Quark.ConfigError, Quark.ConfigError.INVALID_VALUE), `${caught}`);
    assert(caught.message.includes('did you mean "int4_wo_128"?'), caught.message);
});

check('a missing model is Quark.Error.NOT_FOUND', () => {
    let caught = null;
    try {
        Quark.Model.load('/nonexistent/model', null);
    } catch (e) {
        caught = e;
    }
    assert(caught !== null && caught.matches(Quark.Error, Quark.Error.NOT_FOUND), `${caught}`);
});

const TINY_LLAMA = GLib.getenv('G_TEST_SRCDIR') + '/data/runtime/tiny-llama';

check('the tokenizer of a model, both ways', () => {
    const tokenizer = Quark.Tokenizer.new_from_file(TINY_LLAMA);
    const ids = tokenizer.encode('a bad cab', -1, false);
    // bytes a=2, space=Ġ=28, b=3, d=5, c=4 (tokens 2 up are a-z, then space)
    assert(JSON.stringify(Array.from(ids)) === JSON.stringify([2, 28, 3, 2, 5, 28, 4, 2, 3]), `ids ${ids}`);
    assert(tokenizer.decode(ids, false) === 'a bad cab', 'decode');
    assert(tokenizer.get_bos_id() === 0 && tokenizer.get_eos_id() === 1, 'bos/eos');
});

check('perplexity on the main loop, with progress, equals the blocking call', () => {
    const executor = Quark.Executor.new_from_path(TINY_LLAMA);
    const ids = [];
    for (let i = 0; i < 100; i++)
        ids.push((i * 7) % 40);
    const [ok, ppl, , , n] = executor.evaluate(null, ids, 32, 32, null);
    assert(ok && n === 96, `scored ${n}`);
    const seen = [];
    executor.connect('progress', (e, done, total) => seen.push([done, total]));
    const loop = GLib.MainLoop.new(null, false);
    let result = null;
    executor.evaluate_async(null, ids, 32, 32, null, (e, res) => {
        result = e.evaluate_finish(res);
        loop.quit();
    });
    loop.run();
    assert(result[0] && result[1] === ppl && result[4] === 96, `async ${result}`);
    assert(seen.length > 0 && seen[seen.length - 1][0] === 100 && seen[seen.length - 1][1] === 100,
        `progress ${JSON.stringify(seen)}`);
});

function floatsOf(tensor) {
    const bytes = tensor.get_data().toArray();
    return Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4));
}

check('AWQ searches with a rounding function written in JavaScript', () => {
    const values = [0.9, -0.2, 0.05, 0.4, -0.7, 0.3, -0.15, 0.6];
    const w = Quark.Tensor.new_from_floats('w', [2, 4], values);
    const eye = new Float64Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
    const gram = Quark.Tensor.new('gram', Quark.DType.FLOAT64, [4, 4], new GLib.Bytes(new Uint8Array(eye.buffer)));
    const mean = Quark.Tensor.new('mean', Quark.DType.FLOAT64, [4],
        new GLib.Bytes(new Uint8Array(new Float64Array([2.0, 0.5, 1.0, 4.0]).buffer)));
    // a grid of quarters, as a backend's rounding would be
    let calls = 0;
    const round = t => {
        calls++;
        return Quark.Tensor.new_from_floats(t.get_name(), [2, 4], floatsOf(t).map(x => Math.round(x * 4) / 4));
    };
    let [scale, ratio] = Quark.awq_search_scale([w], gram, mean, 1, round);
    assert(ratio === 0 && floatsOf(scale).every(s => s === 1) && calls === 1, `alpha 0: ${floatsOf(scale)}`);
    [scale, ratio] = Quark.awq_search_scale([w], gram, mean, 4, round);
    assert(calls === 5 && floatsOf(scale).length === 4, `searched ${calls}`);
    // with H = I the output error is the squared distance, computed here too
    const rounded = floatsOf(round(w));
    const want = values.reduce((acc, x, i) => acc + (x - rounded[i]) ** 2, 0);
    const got = Quark.awq_output_error(w, Quark.Tensor.new_from_floats('a', [2, 4], rounded), gram);
    assert(Math.abs(got - want) < 1e-6, `error ${got} against ${want}`);
    const q = floatsOf(Quark.rotation_matrix(4, false, 0));
    assert(q.every(x => Math.abs(Math.abs(x) - 0.5) < 1e-7), `hadamard ${q}`);
});

check('activations quantized from JavaScript: Brevitas uncalibrated, AMD Quark per token', () => {
    let config = registry.config_from_string(
        '{"backend": "brevitas", "global_quant_config": {"input_tensors": {"preset": "Int8ActPerTensorFloat"}}}', -1);
    let quantizer = registry.new_quantizer(config);
    let spec = config.get_tensor_spec('fc', 'Linear', Quark.Role.INPUT);
    const x = Quark.Tensor.new_from_floats('x', [2, 4], [0.5, -0.25, 1.0, -2.0, 0.0078125, 0.01, 0.99, 0.3]);
    // uncalibrated: s = 1/128, codes rint (x * 128) clamped to [-128, 127]
    const [ok, scale, zp] = quantizer.get_activation_params(spec, null, null, Quark.Role.INPUT);
    assert(ok && floatsOf(scale)[0] === 1 / 128, `scale ${floatsOf(scale)}`);
    let out = quantizer.quantize_activation(x, spec, scale, zp);
    const codes = Array.from(new Int8Array(out.get_tensor('x').get_data().toArray()));
    assert(codes.join() === '64,-32,127,-128,1,1,127,38', `codes ${codes}`);
    assert(spec.get_quant_order() === Quark.QuantOrder.BREVITAS, 'order');

    config = registry.config_from_string('{"backend": "quark", "global_quant_config": {"input_tensors": ' +
        '{"dtype": "int8", "qscheme": "per_channel", "ch_axis": 0, "is_dynamic": true}}}', -1);
    quantizer = registry.new_quantizer(config);
    spec = config.get_tensor_spec('fc', 'Linear', Quark.Role.INPUT);
    out = quantizer.quantize_activation(x, spec, null, null);
    assert(out.get_tensor('x_scale').get_n_elements() === 2, 'one scale per token');
    let threw = false;
    try {
        quantizer.quantize_activation(x, spec, out.get_tensor('x_scale'), null);
    } catch (e) {
        threw = e.matches(Quark.Error, Quark.Error.INVALID_ARGUMENT);
    }
    assert(threw, 'a dynamic spec refuses given scales');
});

System.exit(failures ? 1 : 0);
