/* fuzz-roundtrip.c: safetensors bytes through quantization to the
 * checkpoint writer and back through the reader.
 *
 * Byte 0 picks one of the quark backend's presets; byte 1 holds options:
 * bit 0 allow-nonfinite, bit 1 adds a tensor whose name collides with a
 * name the quantizer generates (the first 2-D weight's `_scale`), bit 2
 * a second shard (a small shard limit), bit 3 two threads. The rest is read
 * as a safetensors file. Whatever the input, quantization either fails with
 * a GError and leaves nothing, or writes a checkpoint that reads back with
 * quark_model_load(): one tensor per name, every tensor the writer says it
 * wrote.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "fuzz.h"

#include <glib/gstdio.h>
#include <stdlib.h>
#include <unistd.h>

static GPtrArray *configs;
static char *work;

static void
remove_work (void)
{
  g_rmdir (work);
}

static void
set_up (void)
{
  QuarkRegistry *registry;
  QuarkBackend *backend;
  g_auto(GStrv) presets = NULL;

  if (configs)
    return;
  fuzz_set_up ();
  registry = quark_registry_get_default ();
  backend = quark_registry_get_backend (registry, "quark", NULL);
  g_assert (backend != NULL);
  configs = g_ptr_array_new_with_free_func (g_object_unref);
  presets = quark_backend_list_presets (backend);
  for (guint i = 0; presets[i]; i++)
    {
      QuarkQuantizationConfig *config = quark_backend_new_config_for_preset (backend, presets[i], NULL);
      g_assert (config != NULL);
      g_ptr_array_add (configs, config);
    }
  work = g_dir_make_tmp ("quark-fuzz-roundtrip-XXXXXX", NULL);
  g_assert (work != NULL);
  atexit (remove_work);
}

/* The first 2-D tensor named *.weight, whose scale's name is taken. */
static void
add_collision (QuarkModel *model)
{
  for (guint i = 0; i < quark_model_get_n_tensors (model); i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (model, i);
      const char *name = quark_tensor_get_name (t);
      if (g_str_has_suffix (name, ".weight") && quark_tensor_get_n_dims (t) == 2)
        {
          g_autofree char *scale = g_strconcat (name, "_scale", NULL);
          float one = 1.0f;
          g_autoptr(GBytes) bytes = g_bytes_new (&one, sizeof one);
          g_autoptr(QuarkTensor) extra = quark_tensor_new (scale, QUARK_DTYPE_F32, NULL, 0, bytes, NULL);
          if (extra)
            quark_model_add_tensor (model, extra, NULL);
          return;
        }
    }
}

static void
assert_nothing_left (void)
{
  g_autoptr(GDir) dir = g_dir_open (work, 0, NULL);
  g_assert (dir != NULL);
  g_assert_null (g_dir_read_name (dir));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(QuarkModel) model = NULL;
  g_autoptr(QuarkModelQuantizer) quantizer = NULL;
  g_autoptr(QuarkCheckpointWriter) writer = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *out = NULL;
  guint8 options;
  gboolean ok;

  set_up ();
  if (size < 2)
    return 0;
  options = data[1];
  bytes = g_bytes_new (data + 2, size - 2);
  model = quark_model_new_from_safetensors_bytes (bytes, "fuzz.safetensors", NULL);
  if (model == NULL || quark_model_get_n_tensors (model) > 64)
    return 0;
  if (options & 2)
    add_collision (model);

  quantizer = quark_registry_new_quantizer (quark_registry_get_default (),
                                            g_ptr_array_index (configs, data[0] % configs->len), NULL);
  g_assert (quantizer != NULL);
  g_object_set (quantizer, "allow-nonfinite", (gboolean) (options & 1), "threads", (options & 8) ? 2u : 1u, NULL);

  out = g_build_filename (work, "out", NULL);
  writer = quark_checkpoint_writer_new (out, (options & 4) ? 256 : 0, FALSE, &error);
  g_assert_no_error (error);
  ok = quark_model_quantizer_quantize_model_to_writer (quantizer, model, NULL, writer, NULL, &error) &&
       quark_checkpoint_writer_finish (writer, NULL, &error);
  g_assert (ok == (error == NULL));
  if (!ok)
    {
      quark_checkpoint_writer_abort (writer);
      assert_nothing_left ();
      return 0;
    }
  {
    g_autoptr(QuarkModel) back = quark_model_load (out, NULL, &error);
    g_assert_no_error (error);
    g_assert (back != NULL);
    /* every input tensor is in the output under its name */
    for (guint i = 0; i < quark_model_get_n_tensors (model); i++)
      g_assert (quark_model_get_tensor (back, quark_tensor_get_name (quark_model_get_tensor_at (model, i))) != NULL);
  }
  g_clear_object (&writer);
  {
    g_autoptr(GDir) dir = g_dir_open (out, 0, NULL);
    const char *name;
    while (dir && (name = g_dir_read_name (dir)) != NULL)
      {
        g_autofree char *path = g_build_filename (out, name, NULL);
        g_unlink (path);
      }
  }
  g_rmdir (out);
  assert_nothing_left ();
  return 0;
}
