/* quark-format-fp8.c: FP8 checkpoints with quant_method "fp8"
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "../quark-format-private.h"
#include "quark-json.h"

#include <string.h>

/* The layout of DeepSeek-V3-style FP8 checkpoints, which transformers'
 * fine-grained FP8 loader and vLLM's fp8 path read:
 *
 * - per-block weights (the DeepSeek form): LAYER.weight float8_e4m3fn
 *   [O, I], LAYER.weight_scale_inv float32 [ceil(O/bo), ceil(I/bi)] (the
 *   factor that multiplies the codes back, despite its name),
 *   `weight_block_size: [bo, bi]`, activations quantized dynamically;
 * - per-tensor weights: LAYER.weight and LAYER.weight_scale (float32, one
 *   value), and with a static per-tensor FP8 input spec LAYER.input_scale
 *   (`activation_scheme` "static"), else "dynamic";
 * - quantization_config: quant_method "fp8", activation_scheme,
 *   weight_block_size (or null), fmt "e4m3", ignored_layers and
 *   modules_to_not_convert (the Linear layers left in float: vLLM reads the
 *   first name, transformers the second).
 *
 * Reading back, the inputs are quantized as vLLM's fp8 path does
 * (fp8_read_activation()). */

struct _QuarkFormatFp8
{
  QuarkCheckpointFormat parent_instance;
  int block[2];             /* set by prepare(): 0 for per-tensor weights */
  gboolean static_inputs;   /* set by prepare() */
};

G_DECLARE_FINAL_TYPE (QuarkFormatFp8, _quark_format_fp8, QUARK, FORMAT_FP8, QuarkCheckpointFormat)
G_DEFINE_FINAL_TYPE (QuarkFormatFp8, _quark_format_fp8, QUARK_TYPE_CHECKPOINT_FORMAT)

#define FORMAT_NAME "fp8"

static gboolean
fp8_check_spec (QuarkTensorSpec *spec, const char *what, const char *name, GError **error)
{
  QuarkQScheme qscheme = quark_tensor_spec_get_qscheme (spec);

  if (quark_tensor_spec_get_dtype (spec) != QUARK_DTYPE_F8_E4M3 ||
      (qscheme != QUARK_QSCHEME_PER_BLOCK && qscheme != QUARK_QSCHEME_PER_TENSOR) ||
      quark_tensor_spec_get_scale_format (spec) != QUARK_SCALE_FORMAT_FLOAT32)
    {
      g_autofree char *text = quark_tensor_spec_to_string (spec);
      g_autofree char *detail = g_strdup_printf ("the spec %s (fp8_e4m3 weights per block or per tensor)", text);
      return _quark_format_unsupported (error, FORMAT_NAME, what, name, detail);
    }
  return TRUE;
}

static gboolean
fp8_prepare (QuarkCheckpointFormat *format, GError **error)
{
  QuarkFormatFp8 *self = (QuarkFormatFp8 *) format;
  g_auto(GStrv) layers = quark_checkpoint_format_get_layers (format);
  const char *first = NULL;
  gboolean seen = FALSE;

  for (guint i = 0; layers[i]; i++)
    {
      g_autoptr(QuarkTensorSpec) w = quark_checkpoint_format_get_layer_spec (format, layers[i], QUARK_ROLE_WEIGHT);
      g_autoptr(QuarkTensorSpec) in = quark_checkpoint_format_get_layer_spec (format, layers[i], QUARK_ROLE_INPUT);
      g_autoptr(QuarkTensorSpec) out = quark_checkpoint_format_get_layer_spec (format, layers[i], QUARK_ROLE_OUTPUT);
      int block[2] = { 0, 0 };
      gboolean static_in;

      if (w == NULL)
        continue;
      if (!fp8_check_spec (w, "layer", layers[i], error))
        return FALSE;
      if (out)
        return _quark_format_unsupported (error, FORMAT_NAME, "layer", layers[i], "output (KV-cache) quantization");
      if (in && quark_tensor_spec_get_dtype (in) != QUARK_DTYPE_F8_E4M3)
        return _quark_format_unsupported (error, FORMAT_NAME, "layer", layers[i], "a non-FP8 input spec");
      static_in = in && !quark_tensor_spec_get_is_dynamic (in);
      if (static_in && quark_tensor_spec_get_qscheme (in) != QUARK_QSCHEME_PER_TENSOR)
        return _quark_format_unsupported (error, FORMAT_NAME, "layer", layers[i],
                                          "a static input spec that is not per tensor");
      if (quark_tensor_spec_get_qscheme (w) == QUARK_QSCHEME_PER_BLOCK)
        {
          quark_tensor_spec_get_block_size (w, &block[0], &block[1]);
          if (static_in)
            return _quark_format_unsupported (error, FORMAT_NAME, "layer", layers[i],
                                              "per-block weights with static inputs (block checkpoints quantize "
                                              "activations dynamically)");
        }
      if (seen && (block[0] != self->block[0] || block[1] != self->block[1] || static_in != self->static_inputs))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "layers %s and %s are quantized differently; the fp8 format has one scheme per model",
                       first, layers[i]);
          return FALSE;
        }
      self->block[0] = block[0];
      self->block[1] = block[1];
      self->static_inputs = static_in;
      seen = TRUE;
      first = layers[i];
    }
  return _quark_format_check_fused (format, FORMAT_NAME, error);
}

static gboolean
fp8_check_weight (QuarkCheckpointFormat *self, const char *name, const gint64 *shape, guint n_dims,
                  QuarkTensorSpec *spec, GError **error)
{
  if (!fp8_check_spec (spec, "tensor", name, error))
    return FALSE;
  if (n_dims != 2)
    return _quark_format_unsupported (error, FORMAT_NAME, "tensor", name, "a weight that is not 2-D");
  return TRUE;
}

static gboolean
fp8_write_weight (QuarkCheckpointFormat *format, const char *name, QuarkTensorSpec *spec, QuarkModel *logical,
                  QuarkModel *out, GError **error)
{
  g_autofree char *layer = _quark_format_layer_of (name);
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  gboolean block = quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_BLOCK;
  g_autofree char *out_scale = g_strconcat (layer, block ? ".weight_scale_inv" : ".weight_scale", NULL);
  QuarkTensor *codes = quark_model_get_tensor (logical, name);
  QuarkTensor *scale = quark_model_get_tensor (logical, scale_name);
  const gint64 *shape = quark_tensor_get_shape (codes, NULL);
  gsize n;
  float *s;
  gint64 sshape[2];
  guint s_dims = 1;

  if (scale == NULL || (s = quark_tensor_to_floats (scale, &n, error)) == NULL)
    return scale != NULL ? FALSE : _quark_format_unsupported (error, FORMAT_NAME, "tensor", name, "a weight without scales");
  if (block)
    {
      int bo = 0, bi = 0;
      quark_tensor_spec_get_block_size (spec, &bo, &bi);
      sshape[0] = (shape[0] + bo - 1) / bo;
      sshape[1] = (shape[1] + bi - 1) / bi;
      s_dims = 2;
    }
  else
    sshape[0] = 1;
  return quark_model_add_tensor (out, codes, error) &&
         _quark_format_add_owned (out, _quark_format_new_tensor (out_scale, QUARK_DTYPE_F32, sshape, s_dims, s,
                                                                 n * sizeof (float), error), error);
}

static gboolean
fp8_write_activation (QuarkCheckpointFormat *self, const char *layer, QuarkRole role, QuarkTensorSpec *spec,
                      QuarkTensor *scale, QuarkTensor *zero_point, QuarkModel *out, GError **error)
{
  g_autofree char *name = g_strconcat (layer, ".input_scale", NULL);
  gint64 one[1] = { 1 };
  gsize n;
  float *s;

  if (role != QUARK_ROLE_INPUT || quark_tensor_get_n_elements (scale) != 1)
    return _quark_format_unsupported (error, FORMAT_NAME, "layer", layer, "this activation spec");
  if ((s = quark_tensor_to_floats (scale, &n, error)) == NULL)
    return FALSE;
  return _quark_format_add_owned (out, _quark_format_new_tensor (name, QUARK_DTYPE_F32, one, 1, s, sizeof (float),
                                                                 error), error);
}

static JsonNode *
fp8_build_quantization_config (QuarkCheckpointFormat *format, GError **error)
{
  QuarkFormatFp8 *self = (QuarkFormatFp8 *) format;
  JsonObject *qc = json_object_new ();
  JsonArray *skipped = _quark_format_unquantized_linears (format);

  json_object_set_string_member (qc, "quant_method", "fp8");
  json_object_set_string_member (qc, "fmt", "e4m3");
  json_object_set_string_member (qc, "activation_scheme", self->static_inputs ? "static" : "dynamic");
  if (self->block[0] > 0)
    {
      JsonArray *b = json_array_new ();
      json_array_add_int_element (b, self->block[0]);
      json_array_add_int_element (b, self->block[1]);
      json_object_set_array_member (qc, "weight_block_size", b);
    }
  else
    json_object_set_null_member (qc, "weight_block_size");
  json_object_set_array_member (qc, "ignored_layers", json_array_ref (skipped));
  json_object_set_array_member (qc, "modules_to_not_convert", skipped);
  return _quark_format_take_object (qc);
}

/* ---- reading ------------------------------------------------------------- */

/* weight_block_size into @block ({0, 0} when null or absent) */
static gboolean
read_block_size (JsonObject *qc, int block[2], GError **error)
{
  JsonNode *bs = json_object_get_member (qc, "weight_block_size");

  block[0] = block[1] = 0;
  if (bs && JSON_NODE_HOLDS_ARRAY (bs))
    {
      JsonArray *a = json_node_get_array (bs);
      if (json_array_get_length (a) != 2 || (block[0] = (int) json_array_get_int_element (a, 0)) <= 0 ||
          (block[1] = (int) json_array_get_int_element (a, 1)) <= 0)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                       "quantization_config.weight_block_size: expected two positive sizes");
          return FALSE;
        }
    }
  return TRUE;
}

/* A layer's input as vLLM's fp8 path (fp8.py) quantizes it: with
 * activation_scheme "static", per tensor with LAYER.input_scale; else
 * dynamically, per token group of the block's columns
 * (per_token_group_quant_fp8) with weight_block_size, per tensor
 * without. Layers without FP8 weights have none. */
static gboolean
fp8_read_activation (QuarkCheckpointFormat *self, QuarkModel *checkpoint, const char *layer, QuarkRole role,
                     QuarkTensorSpec **spec, QuarkTensor **scale, QuarkTensor **zero_point, GError **error)
{
  JsonObject *qc = _quark_format_quantization_config (checkpoint, error);
  g_autofree char *wname = g_strconcat (layer, ".weight", NULL);
  g_autofree char *sname = g_strconcat (layer, ".input_scale", NULL);
  QuarkTensor *w, *s;
  int block[2];

  if (qc == NULL || !read_block_size (qc, block, error))
    return FALSE;
  if (role != QUARK_ROLE_INPUT)
    return TRUE;        /* (libquark writes no KV cache in this format) */
  if ((w = quark_model_get_tensor (checkpoint, wname)) == NULL || quark_tensor_get_dtype (w) != QUARK_DTYPE_F8_E4M3)
    return TRUE;
  if (g_strcmp0 (json_object_get_string_member_with_default (qc, "activation_scheme", "dynamic"), "static") == 0)
    {
      if ((s = quark_model_get_tensor (checkpoint, sname)) == NULL || quark_tensor_get_n_elements (s) != 1)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                       "layer %s: activation_scheme is static, but %s is missing or not one value", layer, sname);
          return FALSE;
        }
      *spec = quark_tensor_spec_new (QUARK_DTYPE_F8_E4M3, QUARK_QSCHEME_PER_TENSOR);
      *scale = g_object_ref (s);
      return TRUE;
    }
  *spec = g_object_new (QUARK_TYPE_TENSOR_SPEC, "dtype", QUARK_DTYPE_F8_E4M3,
                        "qscheme", block[0] > 0 ? QUARK_QSCHEME_PER_GROUP : QUARK_QSCHEME_PER_TENSOR,
                        "ch-axis", -1, "group-size", block[0] > 0 ? block[1] : 0, "is-dynamic", TRUE, NULL);
  return TRUE;
}

static QuarkModel *
fp8_dequantize_model (QuarkCheckpointFormat *self, QuarkModel *checkpoint, GError **error)
{
  g_autoptr(QuarkModel) out = quark_model_new ();
  JsonObject *qc = _quark_format_quantization_config (checkpoint, error);
  int block[2];

  if (qc == NULL || !read_block_size (qc, block, error))
    return NULL;
  for (guint i = 0; i < quark_model_get_n_tensors (checkpoint); i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (checkpoint, i);
      const char *name = quark_tensor_get_name (t);
      g_autofree char *inv = g_strconcat (name, "_scale_inv", NULL);
      g_autofree char *plain = g_strconcat (name, "_scale", NULL);
      QuarkTensor *scale;

      if (g_str_has_suffix (name, ".weight_scale_inv") || g_str_has_suffix (name, ".weight_scale") ||
          g_str_has_suffix (name, ".input_scale"))
        continue;
      scale = quark_model_get_tensor (checkpoint, block[0] > 0 ? inv : plain);
      if (g_str_has_suffix (name, ".weight") && quark_tensor_get_dtype (t) == QUARK_DTYPE_F8_E4M3 && scale)
        {
          g_autoptr(QuarkTensorSpec) spec = NULL;
          g_autoptr(QuarkTensor) x = NULL;
          g_autoptr(QuarkTensor) s32 = NULL;
          g_autofree float *s = NULL;
          gsize n;
          gint64 n1[1];

          if (quark_tensor_get_n_dims (t) != 2)
            {
              g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: expected 2 dimensions", name);
              return NULL;
            }
          if (block[0] > 0)
            {
              gint32 b[2] = { block[0], block[1] };
              spec = quark_tensor_spec_new (QUARK_DTYPE_F8_E4M3, QUARK_QSCHEME_PER_BLOCK);
              g_object_set (spec, "block-size", g_variant_new_fixed_array (G_VARIANT_TYPE_INT32, b, 2, sizeof (gint32)),
                            NULL);
            }
          else
            spec = quark_tensor_spec_new (QUARK_DTYPE_F8_E4M3, QUARK_QSCHEME_PER_TENSOR);
          if ((s = quark_tensor_to_floats (scale, &n, error)) == NULL)
            return NULL;
          n1[0] = (gint64) n;
          if ((s32 = quark_tensor_new_from_floats (quark_tensor_get_name (scale), n1, 1, s, n, error)) == NULL)
            return NULL;
          x = quark_tensor_spec_dequantize (spec, t, s32, NULL, error);
          if (x == NULL || !quark_model_add_tensor (out, x, error))
            return NULL;
          continue;
        }
      if (!quark_model_add_tensor (out, t, error))
        return NULL;
    }
  quark_model_set_metadata (out, quark_model_get_metadata (checkpoint));
  return g_steal_pointer (&out);
}

static void
_quark_format_fp8_class_init (QuarkFormatFp8Class *klass)
{
  QuarkCheckpointFormatClass *format_class = QUARK_CHECKPOINT_FORMAT_CLASS (klass);

  format_class->name = "fp8";
  format_class->description = "FP8 E4M3 with quant_method fp8, per block or per tensor (DeepSeek-V3 style; "
                              "vLLM's fp8 path, transformers)";
  format_class->prepare = fp8_prepare;
  format_class->check_weight = fp8_check_weight;
  format_class->write_weight = fp8_write_weight;
  format_class->write_activation = fp8_write_activation;
  format_class->build_quantization_config = fp8_build_quantization_config;
  format_class->quant_method = "fp8";
  format_class->dequantize_model = fp8_dequantize_model;
  format_class->read_activation = fp8_read_activation;
  format_class->fake_quantize_activation = _quark_format_fake_quantize_input;
}

static void
_quark_format_fp8_init (QuarkFormatFp8 *self)
{
}
