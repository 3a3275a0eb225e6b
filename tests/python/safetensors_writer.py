# A reference safetensors writer for the Python tests, written from the
# format reference (not through libquark): the header as compact JSON padded
# with spaces to a multiple of 8, then the tensors' bytes in order.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import json
import struct


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: (dtype string, numpy array)}, in file order."""
    header = {}
    if metadata is not None:
        header['__metadata__'] = metadata
    offset = 0
    blobs = []
    for name, (dtype, array) in tensors.items():
        data = array.tobytes()
        header[name] = {'dtype': dtype, 'shape': list(array.shape), 'data_offsets': [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * (-len(text) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)) + text + b''.join(blobs))
