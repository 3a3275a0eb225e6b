# An output is on the disk before it gets its name: `quark quantize` flushes
# every file it wrote (fsync) and starts each tensor's write-back as soon as
# it is written (sync_file_range), for safetensors checkpoints and GGUF
# files alike; with --no-sync it does neither, and writes the same bytes.
# The calls are seen through a preload (tests/preload/sync-counter.c) that
# notes each one in a file; the library's setters through GObject
# introspection.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
import os
import subprocess

import gi
import pytest

gi.require_version('Quark', '1.0')
from gi.repository import Quark  # noqa: E402

pytest.importorskip('numpy')
from gguf_fixture import write_kquant_model  # noqa: E402

QUARK = os.environ['QUARK_TOOL']
COUNTER = os.environ.get('QUARK_TEST_SYNC_COUNTER', '')


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp('model')
    write_kquant_model(str(d))
    return d


def quantize_counting(tmp_path, src, out, *args):
    """The output's files (name -> bytes) and the calls noted: {call: count}."""
    if not os.path.exists(COUNTER):
        pytest.skip('the sync-counter preload is not built (QUARK_TEST_SYNC_COUNTER)')
    log = tmp_path / ('calls-%s.log' % os.path.basename(str(out)))
    env = dict(os.environ, LD_PRELOAD=COUNTER, QUARK_TEST_SYNC_LOG=str(log))
    r = subprocess.run([QUARK, 'quantize', str(src), '-o', str(out), '--threads', '2', *args],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env)
    assert r.returncode == 0, r.stderr
    calls = {}
    if log.exists():
        for line in log.read_text().split():
            calls[line] = calls.get(line, 0) + 1
    if os.path.isdir(str(out)):
        files = {name: (out / name).read_bytes() for name in sorted(os.listdir(str(out)))}
    else:
        files = {out.name: out.read_bytes()}
    return files, calls


# the fewest write-backs started: one per tensor written where it stays.
# GGUF: every tensor, at least the 7 weights of each of the 12 layers and
# the embedding and the head. safetensors: tensors of 64 KiB or more (the
# smaller ones are gathered in side files and copied behind the header when
# the shard closes, then flushed with it): int8 per channel, the 5 weights
# of 256 x 256 or more per layer and the two 264 x 256 BF16 ones; int4 g128
# words, only those two.
@pytest.mark.parametrize('args,writebacks', [(['--preset', 'int8_per_channel_wo'], 12 * 5 + 2),
                                             (['--preset', 'int4_wo_128', '--export-format', 'compressed-tensors'], 2),
                                             (['--export-format', 'gguf', '--type', 'Q8_0'], 12 * 7 + 2)],
                         ids=['quark', 'compressed-tensors', 'gguf'])
def test_flushed_before_the_rename_unless_no_sync(tmp_path, model, args, writebacks):
    gguf = 'gguf' in args
    durable, calls = quantize_counting(tmp_path, model, tmp_path / ('d.gguf' if gguf else 'd'), *args)
    # safetensors: the shard, config.json, each copied file (the tokenizer's
    # two), then the directory holding the new name; GGUF: its one file and
    # the directory
    files = 2 if gguf else len(durable) + 1
    assert calls.get('fsync', 0) >= files, calls
    assert calls.get('sync_file_range', 0) >= writebacks, calls

    fast, calls = quantize_counting(tmp_path, model, tmp_path / ('f.gguf' if gguf else 'f'), '--no-sync', *args)
    assert calls == {}
    assert list(fast) == [n.replace('d.gguf', 'f.gguf') for n in durable]
    assert list(fast.values()) == list(durable.values())


def test_no_sync_is_in_the_help():
    r = subprocess.run([QUARK, 'quantize', '--help'], capture_output=True, text=True)
    assert r.returncode == 0
    assert '--no-sync' in r.stdout


def test_library_setters(tmp_path):
    writer = Quark.CheckpointWriter.new(str(tmp_path / 'out'), 0, False)
    assert writer.get_durable() is True
    writer.set_durable(False)
    assert writer.get_durable() is False
    writer.abort()
    fmt = Quark.Registry.get_default().new_format('gguf')
    assert fmt.get_durable() is True
    fmt.set_durable(False)
    assert fmt.get_durable() is False
    fmt.set_durable(True)
    assert fmt.get_durable() is True
