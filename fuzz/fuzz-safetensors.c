/* fuzz-safetensors.c: the safetensors header parser and validator
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(QuarkModel) model = NULL;
  g_autoptr(GError) error = NULL;

  fuzz_set_up ();
  bytes = g_bytes_new (data, size);
  model = quark_model_new_from_safetensors_bytes (bytes, "fuzz.safetensors", &error);
  g_assert ((model == NULL) != (error == NULL));
  if (model)
    {
      /* every accepted tensor's bytes are inside the input and readable */
      for (guint i = 0; i < quark_model_get_n_tensors (model); i++)
        {
          QuarkTensor *t = quark_model_get_tensor_at (model, i);
          gsize n = 0;
          const guint8 *p = quark_tensor_peek_data (t, &n);
          volatile guint8 sum = 0;
          for (gsize k = 0; k < n; k++)
            sum ^= p[k];
          (void) sum;
        }
    }
  return 0;
}
