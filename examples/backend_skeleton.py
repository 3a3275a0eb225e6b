# backend_skeleton.py: a complete libquark backend written in Python, the
# starting point of docs/writing-backends.md (which shows this file as it
# is; the test suite registers it and quantizes, writes and verifies a model
# with it).
#
# The "py-skeleton" backend quantizes every 2-D floating-point `*.weight` to
# int8 with one symmetric scale per output channel (amax / 127, rounded to
# nearest even), written as `W` (int8) and `W_scale` (float32, one per row).
# Its config has one option, `exclude`: layer-name patterns left in float.
#
#   import backend_skeleton
#   backend_skeleton.register()
#   config = Quark.Registry.get_default().config_from_string('{"backend": "py-skeleton"}')
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import gi
gi.require_version('Quark', '1.0')
from gi.repository import GObject, Quark  # noqa: E402
import numpy as np  # noqa: E402


class SkeletonConfig(GObject.Object, Quark.QuantizationConfig):
    """The config: its GObject properties are its JSON members."""
    __gtype_name__ = 'PySkeletonConfig'
    exclude = GObject.Property(type=GObject.TYPE_STRV)

    def do_lookup_spec(self, level, key, role):
        # what generic code asks: every weight not excluded is int8 per channel
        if level != Quark.SpecLevel.GLOBAL or role != Quark.Role.WEIGHT:
            return False, None
        return True, Quark.TensorSpec.new(Quark.DType.INT8, Quark.QScheme.PER_CHANNEL)

    def excludes(self, layer):
        return any(Quark.pattern_match(p, layer) for p in (self.props.exclude or []))


class SkeletonQuantizer(GObject.Object, Quark.ModelQuantizer):
    __gtype_name__ = 'PySkeletonQuantizer'
    config = GObject.Property(type=Quark.QuantizationConfig,
                              flags=GObject.ParamFlags.READWRITE | GObject.ParamFlags.CONSTRUCT_ONLY)

    def do_quantize_model(self, model, calibration, cancellable):
        out = Quark.Model.new()
        n = model.get_n_tensors()
        for i in range(n):
            t = model.get_tensor_at(i)
            name = t.get_name()
            layer = name[:-len('.weight')] if name.endswith('.weight') else None
            if (layer and len(t.get_shape()) == 2 and Quark.dtype_is_quantizable(t.get_dtype())
                    and not self.props.config.excludes(layer)):
                x = t.to_float_array()
                scale = np.abs(x).max(axis=1) / np.float32(127)
                scale[scale == 0] = 1
                codes = np.clip(np.rint(x / scale[:, None]), -127, 127).astype(np.int8)
                out.add_tensor(Quark.tensor_from_array(name, codes))
                out.add_tensor(Quark.tensor_from_array(name + '_scale', scale.astype(np.float32)))
            else:
                out.add_tensor(t)
            self.report_progress(i + 1, n, name)
        # no metadata set: libquark writes the input's config.json with
        # {"quantization_config": {"backend": "py-skeleton", ...}}
        return out

    def do_dequantize_model(self, quantized):
        """What `quark verify` reads back: W * W_scale."""
        out = Quark.Model.new()
        for i in range(quantized.get_n_tensors()):
            t = quantized.get_tensor_at(i)
            name = t.get_name()
            scale = quantized.get_tensor(name + '_scale')
            if name.endswith('.weight_scale'):
                continue
            if scale is None or t.get_dtype() != Quark.DType.INT8:
                out.add_tensor(t)
                continue
            x = t.to_numpy().astype(np.float32) * scale.to_numpy()[:, None]
            out.add_tensor(Quark.tensor_from_array(name, x))
        return out


def register(registry=None):
    """Adds the backend to the registry (the default one unless given)."""
    backend = Quark.Backend.new('py-skeleton', SkeletonConfig.__gtype__, SkeletonQuantizer.__gtype__)
    backend.set_description('Skeleton in Python: int8 per-channel weights')
    backend.set_version('1.0')
    (registry or Quark.Registry.get_default()).add_backend(backend)
    return backend
