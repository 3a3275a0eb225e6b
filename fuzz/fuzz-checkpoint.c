/* fuzz-checkpoint.c: the Quark checkpoint reader. The first byte picks one
 * of the quark backend's presets, the rest is read as a safetensors file and
 * dequantized with it, as `quark verify` reads a checkpoint.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static GPtrArray *quantizers;
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(QuarkModel) model = NULL;
  g_autoptr(QuarkModel) dequantized = NULL;
  g_autoptr(GError) error = NULL;
  QuarkModelQuantizer *quantizer;

  fuzz_set_up ();
  if (quantizers == NULL)
    {
      QuarkRegistry *registry = quark_registry_get_default ();
      QuarkBackend *backend = quark_registry_get_backend (registry, "quark", NULL);
      g_auto(GStrv) presets = NULL;

      g_assert (backend != NULL);
      quantizers = g_ptr_array_new_with_free_func (g_object_unref);
      presets = quark_backend_list_presets (backend);
      for (guint i = 0; presets[i]; i++)
        {
          g_autoptr(QuarkQuantizationConfig) config = quark_backend_new_config_for_preset (backend, presets[i], NULL);
          g_assert (config != NULL);
          g_ptr_array_add (quantizers, quark_registry_new_quantizer (registry, config, NULL));
        }
    }
  if (size < 1)
    return 0;
  quantizer = g_ptr_array_index (quantizers, data[0] % quantizers->len);
  bytes = g_bytes_new (data + 1, size - 1);
  model = quark_model_new_from_safetensors_bytes (bytes, "fuzz.safetensors", NULL);
  if (model == NULL)
    return 0;
  dequantized = quark_model_quantizer_dequantize_model (quantizer, model, &error);
  g_assert ((dequantized == NULL) != (error == NULL));
  return 0;
}
