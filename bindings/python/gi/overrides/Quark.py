# PyGObject overrides for libquark: numpy arrays (and torch tensors) where
# the C API takes a QuarkTensor.
#
#   session = Quark.Calibration.new_for_config(config, model)
#   session.observe("model.layers.0.mlp.down_proj", Quark.Role.INPUT, array)
#   weights = quantized.get_tensor("fc.weight").to_numpy()
#
# float32, float16 and float64 arrays keep their dtype; bfloat16 data is
# passed as a uint16 array holding the bit patterns (numpy has no bfloat16),
# or as a torch.bfloat16 tensor. The bytes are copied once, straight into the
# tensor's GLib.Bytes.
#
# Also: Quark.Tensor works with numpy (np.asarray(t), t.shape, t.dtype, a
# repr naming it); Calibration.observe() returns None, so it can be a torch
# forward pre-hook's body; Registry.config_from_string(text) needs no length.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

from gi.repository import GLib

from ..module import get_introspection_module
from ..overrides import override

Quark = get_introspection_module('Quark')

__all__ = []


def _numpy():
    import numpy
    return numpy


# numpy dtype -> Quark.DType member (uint16 arrays hold bfloat16 bits)
_FROM_NUMPY = {
    'float32': 'FLOAT32', 'float16': 'FLOAT16', 'float64': 'FLOAT64', 'uint16': 'BFLOAT16',
    'int8': 'INT8', 'uint8': 'UINT8', 'int16': 'INT16', 'int32': 'INT32', 'int64': 'INT64',
    'uint32': 'UINT32', 'uint64': 'UINT64', 'bool': 'BOOL',
}
# Quark.DType -> the numpy dtype of its stored elements
_TO_NUMPY = {
    Quark.DType.FLOAT32: 'float32', Quark.DType.FLOAT16: 'float16', Quark.DType.FLOAT64: 'float64',
    Quark.DType.BFLOAT16: 'uint16', Quark.DType.INT8: 'int8', Quark.DType.UINT8: 'uint8',
    Quark.DType.INT16: 'int16', Quark.DType.UINT16: 'uint16', Quark.DType.INT32: 'int32',
    Quark.DType.UINT32: 'uint32', Quark.DType.INT64: 'int64', Quark.DType.UINT64: 'uint64',
    Quark.DType.FP8_E4M3: 'uint8', Quark.DType.FP8_E5M2: 'uint8', Quark.DType.E8M0: 'uint8',
    Quark.DType.FP8_E4M3FNUZ: 'uint8', Quark.DType.FP8_E5M2FNUZ: 'uint8', Quark.DType.BOOL: 'bool',
    # narrower codes are held one per byte: integers by value, minifloats as codes
    Quark.DType.FP4: 'uint8', Quark.DType.FP6_E2M3: 'uint8', Quark.DType.FP6_E3M2: 'uint8',
}
for _bits in range(2, 8):
    _TO_NUMPY[getattr(Quark.DType, 'INT%d' % _bits)] = 'int8'
    _TO_NUMPY[getattr(Quark.DType, 'UINT%d' % _bits)] = 'uint8'


def _as_array(value):
    """A C-contiguous numpy array from a numpy array, a torch tensor or a
    sequence; bfloat16 torch tensors become their uint16 bit patterns."""
    np = _numpy()
    if hasattr(value, 'detach') and hasattr(value, 'dtype'):        # a torch tensor
        import torch
        t = value.detach().contiguous().cpu()
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(np.uint16)
        return t.numpy()
    return np.ascontiguousarray(value)


def tensor_from_array(name, array):
    """Makes a Quark.Tensor named @name from a numpy array or torch tensor
    (a uint16 array is read as bfloat16 bit patterns)."""
    np = _numpy()
    a = _as_array(array)
    kind = _FROM_NUMPY.get(a.dtype.name)
    if kind is None:
        raise TypeError('%s: arrays of %s cannot become a Quark.Tensor (use float32, float16, '
                        'bfloat16 bits as uint16, or an integer type)' % (name, a.dtype))
    a = np.ascontiguousarray(a.astype(a.dtype.newbyteorder('<'), copy=False))
    # one copy: from the array's buffer into the GLib.Bytes
    data = GLib.Bytes.new(memoryview(a.reshape(-1)).cast('B')) if a.size else GLib.Bytes.new(b'')
    return Quark.Tensor.new(name, getattr(Quark.DType, kind), [int(d) for d in a.shape], data)


__all__.append('tensor_from_array')


class Tensor(Quark.Tensor):
    @property
    def shape(self):
        """The dimensions, as a tuple (numpy's convention)."""
        return tuple(self.get_shape())

    @property
    def dtype(self):
        """The Quark.DType of the elements."""
        return self.get_dtype()

    def __repr__(self):
        return '<Quark.Tensor %s %s %s>' % (self.get_name(), list(self.get_shape()), self.get_dtype().value_nick)

    def __array__(self, dtype=None, copy=None):
        """np.asarray(tensor): the stored elements, as to_numpy() gives them."""
        a = self.to_numpy()
        return a.astype(dtype) if dtype is not None else a

    def to_numpy(self):
        """The stored elements as a numpy array of the tensor's shape (no
        conversion: BF16 and FP8 come back as their bit patterns; codes of
        fewer than 8 bits, one per byte, as int8 for signed integers and
        uint8 for unsigned integers and FP4/FP6 codes)."""
        np = _numpy()
        kind = _TO_NUMPY.get(self.get_dtype())
        if kind is None:
            raise TypeError('%s: %s has no numpy dtype; use to_float_array()' %
                            (self.get_name(), self.get_dtype().value_nick))
        data = self.get_data().get_data()
        return np.frombuffer(data, dtype=np.dtype(kind).newbyteorder('<')).reshape(tuple(self.get_shape()))

    def to_float_array(self):
        """The values converted to float32, shaped like the tensor."""
        np = _numpy()
        if self.get_dtype() == Quark.DType.FLOAT32:
            return self.to_numpy().astype(np.float32)
        if self.get_dtype() == Quark.DType.FLOAT16:
            return self.to_numpy().astype(np.float32)
        if self.get_dtype() == Quark.DType.BFLOAT16:
            return (self.to_numpy().astype(np.uint32) << 16).view(np.float32)
        return np.array(self.to_floats(), dtype=np.float32).reshape(self.get_shape())


Tensor = override(Tensor)
__all__.append('Tensor')


class Calibration(Quark.Calibration):
    def observe(self, layer_name, role, activation):
        """Adds one batch: a Quark.Tensor, a numpy array or a torch tensor."""
        if not isinstance(activation, Quark.Tensor):
            activation = tensor_from_array(layer_name, activation)
        Quark.Calibration.observe(self, layer_name, role, activation)
        # None, not True: a torch forward pre-hook that returns a value
        # replaces the layer's input with it


Calibration = override(Calibration)
__all__.append('Calibration')


class Registry(Quark.Registry):
    def config_from_string(self, text, length=-1):
        """Loads a config from JSON text (the length is optional)."""
        return Quark.Registry.config_from_string(self, text, length)


Registry = override(Registry)
__all__.append('Registry')
