/* quark-format-awq.c: AutoAWQ's GEMM layout
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "../quark-format-private.h"
#include "quark-json.h"
#include "kernels/quark-kernels.h"

#include <string.h>

/* The layout AutoAWQ's WQLinear_GEMM writes (AMD Quark's AWQ export mode
 * writes it too) and vLLM's awq path reads: 4-bit weights in groups along
 * the input dimension, one group size for the model.
 *
 * - LAYER.qweight int32 [I, O/8]: the unsigned codes transposed, eight
 *   output features per word, element order_map[i] of each eight in nibble
 *   i, order_map = 0 2 4 6 1 3 5 7;
 * - LAYER.qzeros int32 [I/group, O/8]: the unsigned zero points, packed the
 *   same way (a symmetric scheme writes 8);
 * - LAYER.scales float16 [I/group, O] (vLLM's awq path runs in float16);
 * - x = (q - z) * s;
 * - quantization_config: quant_method "awq", version "gemm", bits 4,
 *   group_size, zero_point true, modules_to_not_convert (Linear layers left
 *   in float). */

struct _QuarkFormatAwq
{
  QuarkCheckpointFormat parent_instance;
  int group_size;   /* set by prepare() */
};

G_DECLARE_FINAL_TYPE (QuarkFormatAwq, _quark_format_awq, QUARK, FORMAT_AWQ, QuarkCheckpointFormat)
G_DEFINE_FINAL_TYPE (QuarkFormatAwq, _quark_format_awq, QUARK_TYPE_CHECKPOINT_FORMAT)

#define FORMAT_NAME "awq"

static gboolean
awq_check_spec (QuarkTensorSpec *spec, const char *what, const char *name, GError **error)
{
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);
  int axis = quark_tensor_spec_get_ch_axis (spec);

  if ((dtype != QUARK_DTYPE_INT4 && dtype != QUARK_DTYPE_UINT4) ||
      quark_tensor_spec_get_qscheme (spec) != QUARK_QSCHEME_PER_GROUP || (axis != -1 && axis != 1) ||
      quark_tensor_spec_get_group_size (spec) <= 0 ||
      quark_tensor_spec_get_scale_format (spec) != QUARK_SCALE_FORMAT_FLOAT32)
    {
      g_autofree char *text = quark_tensor_spec_to_string (spec);
      g_autofree char *detail = g_strdup_printf ("the spec %s (AWQ holds int4/uint4 weights in groups along the "
                                                 "input dimension)", text);
      return _quark_format_unsupported (error, FORMAT_NAME, what, name, detail);
    }
  return TRUE;
}

static gboolean
awq_prepare (QuarkCheckpointFormat *format, GError **error)
{
  QuarkFormatAwq *self = (QuarkFormatAwq *) format;
  g_auto(GStrv) layers = quark_checkpoint_format_get_layers (format);
  const char *first = NULL;

  self->group_size = 0;
  for (guint i = 0; layers[i]; i++)
    {
      g_autoptr(QuarkTensorSpec) w = quark_checkpoint_format_get_layer_spec (format, layers[i], QUARK_ROLE_WEIGHT);
      g_autoptr(QuarkTensorSpec) in = quark_checkpoint_format_get_layer_spec (format, layers[i], QUARK_ROLE_INPUT);
      g_autoptr(QuarkTensorSpec) out = quark_checkpoint_format_get_layer_spec (format, layers[i], QUARK_ROLE_OUTPUT);
      int g;

      if (w == NULL)
        continue;
      if (!awq_check_spec (w, "layer", layers[i], error))
        return FALSE;
      if (in || out)
        return _quark_format_unsupported (error, FORMAT_NAME, "layer", layers[i], "activation quantization");
      g = quark_tensor_spec_get_group_size (w);
      if (self->group_size && g != self->group_size)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "layer %s has groups of %d and layer %s of %d; the awq format has one group size per model",
                       first, self->group_size, layers[i], g);
          return FALSE;
        }
      self->group_size = g;
      first = layers[i];
    }
  return _quark_format_check_fused (format, FORMAT_NAME, error);
}

static gboolean
awq_check_weight (QuarkCheckpointFormat *self, const char *name, const gint64 *shape, guint n_dims,
                  QuarkTensorSpec *spec, GError **error)
{
  if (!awq_check_spec (spec, "tensor", name, error))
    return FALSE;
  if (n_dims != 2)
    return _quark_format_unsupported (error, FORMAT_NAME, "tensor", name, "a weight that is not 2-D");
  return _quark_format_need_multiple ("the awq format", name, (gsize) shape[0], 8, "number of output features",
                                      error);
}

static QuarkDType
awq_get_scale_dtype (QuarkCheckpointFormat *self, const char *layer, QuarkTensorSpec *spec, QuarkDType weight_dtype)
{
  return QUARK_DTYPE_F16;
}

/* codes (or zero points) [rows, cols] as unsigned nibbles, transposed to
 * [cols, rows] and packed eight per word along rows, in AutoAWQ's order */
static gint32 *
pack_transposed (QuarkTensor *t, gsize rows, gsize cols, gint32 offset, GError **error)
{
  gsize n;
  gint8 *u = _quark_format_codes_as_int8 (t, offset, &n, error);
  gint32 *words;

  if (u == NULL)
    return NULL;
  words = quark_buffer_alloc (n / 2);
  quark_kernel_pack_int4_columns (u, rows, cols, TRUE, words);
  g_free (u);
  return words;
}

/* AutoAWQ's qweight is AMD Quark's int4 layout in the interleaved order,
 * of unsigned codes: a backend may give the codes so (int4 codes, whose
 * nibbles are then flipped by 8, as well as uint4). */
static QuarkCodeLayout
awq_get_code_layout (QuarkCheckpointFormat *self, const char *name, QuarkTensorSpec *spec, const gint64 *shape,
                     guint n_dims)
{
  return _quark_format_int4_columns_fit (spec, shape, n_dims) ? QUARK_CODE_LAYOUT_INT4_COLUMNS_REORDERED
                                                               : QUARK_CODE_LAYOUT_BYTES;
}

/* Packed int4 codes of the layout above as qweight's unsigned words: each
 * nibble plus 8 (modulo 16: its top bit flipped) */
static gint32 *
flipped_words (QuarkTensor *codes, gsize n_words)
{
  gint32 *words = quark_buffer_alloc (MAX (n_words, 1) * sizeof (gint32));
  const guint32 *src = quark_tensor_peek_data (codes, NULL);

  for (gsize i = 0; i < n_words; i++)
    words[i] = (gint32) (src[i] ^ 0x88888888u);
  return words;
}

static gboolean
awq_write_weight (QuarkCheckpointFormat *format, const char *name, QuarkTensorSpec *spec, QuarkModel *logical,
                  QuarkModel *out, GError **error)
{
  g_autofree char *layer = _quark_format_layer_of (name);
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  g_autofree char *zp_name = g_strconcat (name, "_zero_point", NULL);
  g_autofree char *qweight = g_strconcat (layer, ".qweight", NULL);
  g_autofree char *qzeros = g_strconcat (layer, ".qzeros", NULL);
  g_autofree char *scales = g_strconcat (layer, ".scales", NULL);
  QuarkTensor *codes = quark_model_get_tensor (logical, name);
  QuarkTensor *scale = quark_model_get_tensor (logical, scale_name);
  QuarkTensor *zp = quark_model_get_tensor (logical, zp_name);
  gint32 offset = quark_tensor_spec_get_dtype (spec) == QUARK_DTYPE_INT4 ? 8 : 0;
  gsize rows, cols, groups, n;
  gboolean packed;
  gint32 *w, *z;
  float *st;
  guint16 *half;

  if (quark_tensor_get_n_dims (codes) != 2 || scale == NULL || zp == NULL)
    return _quark_format_unsupported (error, FORMAT_NAME, "tensor", name, "a weight that is not 2-D");
  if (!_quark_format_int4_codes_shape (FORMAT_NAME, name, codes, scale, spec, &packed, &rows, &cols, error))
    return FALSE;
  groups = quark_tensor_get_n_elements (scale) / MAX (rows, 1);
  n = rows * groups;
  if ((st = _quark_format_transposed_floats (scale, rows, groups, error)) == NULL)
    return FALSE;
  half = quark_buffer_alloc (MAX (n, 1) * sizeof (guint16));
  quark_kernel_convert_from_f32 (QUARK_DTYPE_F16, st, half, n);   /* exact: rounded by the backend */
  quark_buffer_free (st);
  if (packed && offset == 0)
    {
      /* uint4: the words as they are, under qweight's name */
      g_autoptr(QuarkTensor) renamed = _quark_format_renamed (codes, qweight, error);
      if (renamed == NULL || !quark_model_add_tensor (out, renamed, error))
        {
          quark_buffer_free (half);
          return FALSE;
        }
      w = NULL;
    }
  else if (packed)
    w = flipped_words (codes, rows * cols / 8);
  else if ((w = pack_transposed (codes, rows, cols, offset, error)) == NULL)
    {
      quark_buffer_free (half);
      return FALSE;
    }
  if ((z = pack_transposed (zp, rows, groups, offset, error)) == NULL)
    {
      quark_buffer_free (w);
      quark_buffer_free (half);
      return FALSE;
    }
  {
    gint64 wshape[2] = { (gint64) cols, (gint64) (rows / 8) };
    gint64 zshape[2] = { (gint64) groups, (gint64) (rows / 8) };
    gint64 sshape[2] = { (gint64) groups, (gint64) rows };
    return (w == NULL || _quark_format_add_owned (out, _quark_format_new_tensor (qweight, QUARK_DTYPE_I32, wshape, 2,
                                                                                 w, rows * cols / 2, error), error)) &&
           _quark_format_add_owned (out, _quark_format_new_tensor (qzeros, QUARK_DTYPE_I32, zshape, 2, z,
                                                                   rows * groups / 2, error), error) &&
           _quark_format_add_owned (out, _quark_format_new_tensor (scales, QUARK_DTYPE_F16, sshape, 2, half, n * 2,
                                                                   error), error);
  }
}

static JsonNode *
awq_build_quantization_config (QuarkCheckpointFormat *format, GError **error)
{
  QuarkFormatAwq *self = (QuarkFormatAwq *) format;
  JsonObject *qc = json_object_new ();

  json_object_set_string_member (qc, "quant_method", "awq");
  json_object_set_string_member (qc, "version", "gemm");
  json_object_set_int_member (qc, "bits", 4);
  json_object_set_int_member (qc, "group_size", self->group_size);
  json_object_set_boolean_member (qc, "zero_point", TRUE);
  json_object_set_array_member (qc, "modules_to_not_convert", _quark_format_unquantized_linears (format));
  return _quark_format_take_object (qc);
}

/* ---- reading ------------------------------------------------------------- */

static gint8 *
unpack_transposed (QuarkTensor *packed, gsize *rows_out, gsize *cols_out)
{
  /* [cols, rows/8] words -> [rows, cols] unsigned nibbles */
  const gint64 *shape = quark_tensor_get_shape (packed, NULL);
  gsize cols = (gsize) shape[0], rows = (gsize) shape[1] * 8;
  g_autofree gint8 *t = g_malloc (MAX (rows * cols, 1));

  quark_kernel_unpack_int4 (quark_tensor_peek_data (packed, NULL), cols, rows, TRUE, FALSE, t);
  *rows_out = rows;
  *cols_out = cols;
  return _quark_format_transpose_codes (t, cols, rows);
}

static QuarkModel *
awq_dequantize_model (QuarkCheckpointFormat *self, QuarkModel *checkpoint, GError **error)
{
  g_autoptr(QuarkModel) out = quark_model_new ();
  JsonObject *qc = _quark_format_quantization_config (checkpoint, error);
  gint64 bits, group;

  if (qc == NULL)
    return NULL;
  bits = json_object_get_int_member_with_default (qc, "bits", json_object_get_int_member_with_default (qc, "w_bit", 0));
  group = json_object_get_int_member_with_default (qc, "group_size",
                                                   json_object_get_int_member_with_default (qc, "q_group_size", 0));
  if (bits != 4 || group <= 0)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                   "quantization_config: AWQ checkpoints of %" G_GINT64_FORMAT " bits in groups of %" G_GINT64_FORMAT
                   " are not read (4 bits, a positive group size)", bits, group);
      return NULL;
    }
  for (guint i = 0; i < quark_model_get_n_tensors (checkpoint); i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (checkpoint, i);
      const char *name = quark_tensor_get_name (t);

      if (g_str_has_suffix (name, ".qzeros") || g_str_has_suffix (name, ".scales"))
        continue;
      if (g_str_has_suffix (name, ".qweight"))
        {
          g_autofree char *layer = g_strndup (name, strlen (name) - strlen (".qweight"));
          g_autofree char *zname = g_strconcat (layer, ".qzeros", NULL);
          g_autofree char *sname = g_strconcat (layer, ".scales", NULL);
          g_autofree char *wname = g_strconcat (layer, ".weight", NULL);
          QuarkTensor *zt = quark_model_get_tensor (checkpoint, zname), *stensor = quark_model_get_tensor (checkpoint, sname);
          g_autofree gint8 *q = NULL, *z = NULL;
          g_autofree float *s = NULL;
          gsize rows, cols, zrows, groups, ns;
          float *x;
          gint64 shape[2];
          g_autoptr(QuarkTensor) w = NULL;

          if (zt == NULL || stensor == NULL || quark_tensor_get_dtype (t) != QUARK_DTYPE_I32 ||
              quark_tensor_get_n_dims (t) != 2 || quark_tensor_get_dtype (zt) != QUARK_DTYPE_I32 ||
              quark_tensor_get_n_dims (zt) != 2)
            {
              g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                           "tensor %s: needs int32 %s and %s beside it", name, zname, sname);
              return NULL;
            }
          q = unpack_transposed (t, &rows, &cols);
          z = unpack_transposed (zt, &zrows, &groups);
          if ((s = quark_tensor_to_floats (stensor, &ns, error)) == NULL)
            return NULL;
          if (zrows != rows || cols != groups * (gsize) group || ns != rows * groups)
            {
              g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                           "tensor %s: its shape does not fit %s, %s and group_size %" G_GINT64_FORMAT, name, zname,
                           sname, group);
              return NULL;
            }
          x = g_new (float, MAX (rows * cols, 1));
          for (gsize o = 0; o < rows; o++)
            for (gsize k = 0; k < cols; k++)
              {
                gsize g = k / (gsize) group;
                x[o * cols + k] = (float) ((gint32) q[o * cols + k] - (gint32) z[o * groups + g]) * s[g * rows + o];
              }
          shape[0] = (gint64) rows;
          shape[1] = (gint64) cols;
          w = _quark_format_new_tensor (wname, QUARK_DTYPE_F32, shape, 2, x, rows * cols * sizeof (float), error);
          if (w == NULL || !quark_model_add_tensor (out, w, error))
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
_quark_format_awq_class_init (QuarkFormatAwqClass *klass)
{
  QuarkCheckpointFormatClass *format_class = QUARK_CHECKPOINT_FORMAT_CLASS (klass);

  format_class->name = "awq";
  format_class->description = "AutoAWQ's GEMM layout, 4-bit groups (vLLM's awq path, transformers)";
  format_class->prepare = awq_prepare;
  format_class->check_weight = awq_check_weight;
  format_class->get_scale_dtype = awq_get_scale_dtype;
  format_class->write_weight = awq_write_weight;
  format_class->get_code_layout = awq_get_code_layout;
  format_class->build_quantization_config = awq_build_quantization_config;
  format_class->quant_method = "awq";
  format_class->dequantize_model = awq_dequantize_model;
}

static void
_quark_format_awq_init (QuarkFormatAwq *self)
{
}
