#!/usr/bin/python3
# Quantize one weight with the quark backend and print its integers: the
# C example quantize-tensor.c, in Python (the output is the same).
#   python3 quantize-tensor.py
import struct

import gi
gi.require_version('Quark', '1.0')
from gi.repository import Quark  # noqa: E402

registry = Quark.Registry.get_default()
config = registry.config_from_string(
    '{"backend": "quark", "global_quant_config": {"weight": {"dtype": "int8", "qscheme": "per_channel"}}}', -1)
model = Quark.Model.new()
model.add_tensor(Quark.Tensor.new_from_floats('fc.weight', [2, 4],
                                              [1.27, -1.27, 0.5, 0.3, 0.004, 0.125, -0.05, 0.635]))
out = registry.new_quantizer(config).quantize_model(model, None, None)

codes = struct.unpack('8b', out.get_tensor('fc.weight').get_data().get_data())
scales = struct.unpack('<2f', out.get_tensor('fc.weight_scale').get_data().get_data())
for row in range(2):
    print('row %d: scale %.9g, codes %d %d %d %d' % ((row, scales[row]) + codes[4 * row:4 * row + 4]))
