// Quantize one weight with the quark backend and print its integers: the
// C example quantize-tensor.c, in JavaScript (the output is the same).
//   gjs -m quantize-tensor.js
import Quark from 'gi://Quark?version=1.0';

const registry = Quark.Registry.get_default();
const config = registry.config_from_string(
    '{"backend": "quark", "global_quant_config": {"weight": {"dtype": "int8", "qscheme": "per_channel"}}}', -1);
const model = Quark.Model.new();
model.add_tensor(Quark.Tensor.new_from_floats('fc.weight', [2, 4],
    [1.27, -1.27, 0.5, 0.3, 0.004, 0.125, -0.05, 0.635]));
const out = registry.new_quantizer(config).quantize_model(model, null, null);

const codeBytes = out.get_tensor('fc.weight').get_data().toArray();
const codes = new Int8Array(codeBytes.buffer, codeBytes.byteOffset, codeBytes.length);
const scaleBytes = out.get_tensor('fc.weight_scale').get_data().toArray();
const scales = new DataView(scaleBytes.buffer, scaleBytes.byteOffset, scaleBytes.length);
for (let row = 0; row < 2; row++) {
    // C's %.9g: nine significant digits, no trailing zeros
    const scale = Number.parseFloat(scales.getFloat32(4 * row, true).toPrecision(9));
    print(`row ${row}: scale ${scale}, codes ${Array.from(codes.slice(4 * row, 4 * row + 4)).join(' ')}`);
}
