#!/usr/bin/env python3
# Writes tests/data/runtime/tiny-llama: a 2-layer Llama of random F32
# weights (hidden 32, 4 query and 2 key/value heads of 8, MLP 48, 40
# tokens; seed 0, weights scaled by 2) with a 40-token byte-level
# tokenizer, for the binding tests (GJS, Vala), which cannot write models
# themselves. The Python tests make the same model with
# test_executor.make_model('llama', 'F32', scale=2.0) and check the
# executor against torch on it.
#
# Usage: /usr/bin/python3 tests/data/runtime/make-tiny-llama.py
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'python'))
from test_executor import byte_tokenizer, make_model  # noqa: E402

out = os.path.join(HERE, 'tiny-llama')
make_model(out, 'llama', 'F32', seed=0, scale=2.0)
byte_tokenizer(out)
print(out)
