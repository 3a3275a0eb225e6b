/* Quantize one weight with the quark backend and print its integers.
 *   cc quantize-tensor.c $(pkg-config --cflags --libs quark-1.0) -o quantize-tensor */
#include <quark/quark.h>

int
main (void)
{
  const float w[] = { 1.27f, -1.27f, 0.5f, 0.3f, 0.004f, 0.125f, -0.05f, 0.635f };
  const gint64 shape[] = { 2, 4 };
  QuarkRegistry *registry = quark_registry_get_default ();
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autoptr(QuarkModelQuantizer) quantizer = NULL;
  g_autoptr(QuarkModel) model = quark_model_new ();
  g_autoptr(QuarkModel) out = NULL;
  g_autoptr(QuarkTensor) tensor = quark_tensor_new_from_floats ("fc.weight", shape, 2, w, 8, &error);
  const gint8 *codes;
  const float *scales;

  config = quark_registry_config_from_string (registry,
    "{\"backend\": \"quark\", \"global_quant_config\":"
    " {\"weight\": {\"dtype\": \"int8\", \"qscheme\": \"per_channel\"}}}", -1, &error);
  if (config == NULL || !quark_model_add_tensor (model, tensor, &error) ||
      (quantizer = quark_registry_new_quantizer (registry, config, &error)) == NULL ||
      (out = quark_model_quantizer_quantize_model (quantizer, model, NULL, NULL, &error)) == NULL)
    {
      g_printerr ("%s\n", error->message);
      return 1;
    }

  codes = quark_tensor_peek_data (quark_model_get_tensor (out, "fc.weight"), NULL);
  scales = quark_tensor_peek_data (quark_model_get_tensor (out, "fc.weight_scale"), NULL);
  for (int row = 0; row < 2; row++)
    g_print ("row %d: scale %.9g, codes %d %d %d %d\n", row, scales[row],
             codes[4 * row], codes[4 * row + 1], codes[4 * row + 2], codes[4 * row + 3]);
  return 0;
}
