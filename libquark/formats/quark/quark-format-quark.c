/* quark-format-quark.c: AMD Quark's checkpoint layout
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "../quark-format-private.h"
#include "quark-json.h"
#include "kernels/quark-kernels.h"

#include <string.h>

/* AMD Quark's real_quantized export, as its exporter writes it and vLLM's
 * Quark path reads it (the numerics reference restates the layout):
 *
 * - int8/uint8/FP8 codes as I8/U8/F8_E4M3 tensors of the weight's shape,
 *   NAME_scale float32 (a scalar per tensor, [O] per channel, [O, G] per
 *   group), NAME_zero_point in the code dtype;
 * - int4/uint4 2-D weights as int32 words of eight nibbles: per tensor and
 *   per channel along the input dimension ([O, I/8]); per group the codes
 *   are transposed first ([I, O/8]), the scales are [G, O] and the zero
 *   points [G, O/8]; `export.pack_method` "reorder" (the default) stores the
 *   nibbles of a word in the order 0 2 4 6 1 3 5 7, "order" in order;
 * - FP4 two codes a byte and FP6 four codes in three bytes along the last
 *   axis (U8), MX scales as E8M0 bytes (U8), E5M3 scales as U8 codes;
 * - other bit widths one code per I8/U8 element;
 * - static activation scales LAYER.input_scale / LAYER.output_scale
 *   (float32; zero points in the code dtype).
 *
 * The `quantization_config` is the backend's own description in AMD
 * Quark's schema. */

struct _QuarkFormatQuark
{
  QuarkCheckpointFormat parent_instance;
};

G_DECLARE_FINAL_TYPE (QuarkFormatQuark, _quark_format_quark, QUARK, FORMAT_QUARK, QuarkCheckpointFormat)
G_DEFINE_FINAL_TYPE (QuarkFormatQuark, _quark_format_quark, QUARK_TYPE_CHECKPOINT_FORMAT)

#define FORMAT_NAME "AMD Quark's checkpoint layout"

/* export.pack_method of the backend's config: reorder (the default) or order */
static gboolean
pack_reorder (QuarkCheckpointFormat *self)
{
  JsonNode *config = quark_checkpoint_format_get_backend_config (self);
  JsonObject *o, *exp;

  if (config == NULL || !JSON_NODE_HOLDS_OBJECT (config))
    return TRUE;
  o = json_node_get_object (config);
  if (!json_object_has_member (o, "export") || !JSON_NODE_HOLDS_OBJECT (json_object_get_member (o, "export")))
    return TRUE;
  exp = json_object_get_object_member (o, "export");
  return g_strcmp0 (json_object_get_string_member_with_default (exp, "pack_method", "reorder"), "order") != 0;
}

static gboolean
quark_format_check_weight (QuarkCheckpointFormat *self, const char *name, const gint64 *shape, guint n_dims,
                           QuarkTensorSpec *spec, GError **error)
{
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);
  QuarkQScheme qscheme = quark_tensor_spec_get_qscheme (spec);
  gsize rows = n_dims >= 1 ? (gsize) shape[0] : 1, n = 1, cols;

  if (quark_tensor_spec_get_scale_format (spec) == QUARK_SCALE_FORMAT_E4M3)
    return _quark_format_unsupported (error, FORMAT_NAME, "tensor", name,
                                      "NVFP4 weights (e4m3 scales over a global scale; AMD Quark's NVFP4 "
                                      "layout, weight_scale_2 and input_scale_2, is not written: "
                                      "--export-format compressed-tensors writes NVFP4 weights alone or with "
                                      "NVFP4 inputs)");
  for (guint d = 0; d < n_dims; d++)
    n *= (gsize) shape[d];
  cols = rows ? n / rows : 0;
  /* the int4 layout is for 2-D weights (others: one code a byte) */
  if ((dtype == QUARK_DTYPE_INT4 || dtype == QUARK_DTYPE_UINT4) && n_dims == 2)
    {
      if (qscheme != QUARK_QSCHEME_PER_GROUP &&
          !_quark_format_need_multiple (FORMAT_NAME, name, cols, 8, "number of input features", error))
        return FALSE;
      if ((qscheme == QUARK_QSCHEME_PER_GROUP || qscheme == QUARK_QSCHEME_PER_CHANNEL) &&
          !_quark_format_need_multiple (FORMAT_NAME, name, rows, 8, "number of output channels", error))
        return FALSE;
    }
  if (dtype == QUARK_DTYPE_FP4_E2M1 || dtype == QUARK_DTYPE_FP6_E2M3 || dtype == QUARK_DTYPE_FP6_E3M2)
    return _quark_format_need_multiple (FORMAT_NAME, name, n_dims ? (gsize) shape[n_dims - 1] : 1,
                                        dtype == QUARK_DTYPE_FP4_E2M1 ? 2 : 4, "last dimension", error);
  return TRUE;
}

/* E8M0 scales are stored as bytes. */
static gboolean
add_scale_as_stored (QuarkModel *out, QuarkTensor *scale, GError **error)
{
  guint n_dims;
  const gint64 *shape;

  if (quark_tensor_get_dtype (scale) != QUARK_DTYPE_F8_E8M0)
    return quark_model_add_tensor (out, scale, error);
  shape = quark_tensor_get_shape (scale, &n_dims);
  return _quark_format_add_owned (out, quark_tensor_new (quark_tensor_get_name (scale), QUARK_DTYPE_U8, shape, n_dims,
                                                         quark_tensor_get_data (scale), error), error);
}

static gboolean
export_int4 (QuarkTensor *codes, QuarkTensor *scale, QuarkTensor *zp, QuarkTensorSpec *spec, gboolean reorder,
             QuarkModel *out, GError **error)
{
  const char *name = quark_tensor_get_name (codes);
  const char *scale_name = quark_tensor_get_name (scale), *zp_name = quark_tensor_get_name (zp);
  const gint8 *q = quark_tensor_peek_data (codes, NULL);
  gsize rows, cols;
  gboolean packed;   /* the words of quark_format_get_code_layout (), from the backend */

  if (!_quark_format_int4_codes_shape (FORMAT_NAME, name, codes, scale, spec, &packed, &rows, &cols, error))
    return FALSE;

  if (quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_GROUP)
    {
      /* q [O, I] -> [I, O] -> [I, O/8]; scale [O, G] -> [G, O]; zp -> [G, O/8] */
      gsize groups = (gsize) quark_tensor_get_dim (scale, 1);
      float *s;
      gint32 *words, *zwords;
      gint64 wshape[2] = { (gint64) cols, (gint64) (rows / 8) };
      gint64 sshape[2] = { (gint64) groups, (gint64) rows };
      gint64 zshape[2] = { (gint64) groups, (gint64) (rows / 8) };
      g_autoptr(QuarkTensor) st = NULL;

      s = _quark_format_transposed_floats (scale, rows, groups, error);
      if (s == NULL)
        return FALSE;
      /* (the tensor owns the buffer from here, on every path) */
      if ((st = _quark_format_new_tensor (scale_name, QUARK_DTYPE_F32, sshape, 2, s, groups * rows * sizeof (float),
                                          error)) == NULL)
        return FALSE;
      if (packed)
        {
          if (!quark_model_add_tensor (out, codes, error))
            return FALSE;
        }
      else
        {
          words = quark_buffer_alloc (cols * rows / 2);
          quark_kernel_pack_int4_columns (q, rows, cols, reorder, words);
          if (!_quark_format_add_owned (out, _quark_format_new_tensor (name, QUARK_DTYPE_I32, wshape, 2, words,
                                                                       cols * rows / 2, error), error))
            return FALSE;
        }
      if (!quark_model_add_tensor (out, st, error))
        return FALSE;
      zwords = quark_buffer_alloc (MAX (groups * rows / 8, 1) * sizeof (gint32));
      quark_kernel_pack_int4_columns (quark_tensor_peek_data (zp, NULL), rows, groups, reorder, zwords);
      return _quark_format_add_owned (out, _quark_format_new_tensor (zp_name, QUARK_DTYPE_I32, zshape, 2, zwords,
                                                                     groups * rows / 2, error), error);
    }
  else
    {
      /* per channel / per tensor: q [O, I] -> [O, I/8]; zp [O] -> [O/8] (packed) or a scalar */
      gint32 *words;
      gint64 wshape[2] = { (gint64) rows, (gint64) (cols / 8) };
      words = quark_buffer_alloc (rows * cols / 2);
      quark_kernel_pack_int4 (q, rows, cols, reorder, words);
      if (!_quark_format_add_owned (out, _quark_format_new_tensor (name, QUARK_DTYPE_I32, wshape, 2, words,
                                                                   rows * cols / 2, error), error) ||
          !quark_model_add_tensor (out, scale, error))
        return FALSE;
      if (quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_CHANNEL)
        {
          gint64 zshape[1] = { (gint64) (rows / 8) };
          gint32 *zwords = g_new (gint32, MAX (rows / 8, 1));
          quark_kernel_pack_int4 (quark_tensor_peek_data (zp, NULL), 1, rows, reorder, zwords);
          return _quark_format_add_owned (out, _quark_format_new_tensor (zp_name, QUARK_DTYPE_I32, zshape, 1, zwords,
                                                                         rows / 2, error), error);
        }
      {
        gint32 *z = g_new (gint32, 1);
        *z = ((const gint8 *) quark_tensor_peek_data (zp, NULL))[0];
        return _quark_format_add_owned (out, _quark_format_new_tensor (zp_name, QUARK_DTYPE_I32, NULL, 0, z, 4, error),
                                        error);
      }
    }
}

/* FP4 two per byte, FP6 four per three bytes, along the last axis. */
static gboolean
export_small_float (QuarkTensor *codes, QuarkTensor *scale, QuarkDType dtype, QuarkModel *out, GError **error)
{
  guint n_dims;
  const gint64 *shape = quark_tensor_get_shape (codes, &n_dims);
  gint64 pshape[QUARK_TENSOR_MAX_DIMS];
  gsize n = quark_tensor_get_n_elements (codes), cols = n_dims ? (gsize) shape[n_dims - 1] : 1, size;
  gboolean fp4 = dtype == QUARK_DTYPE_FP4_E2M1;
  guint8 *packed;

  memcpy (pshape, shape, n_dims * sizeof (gint64));
  pshape[n_dims - 1] = (gint64) (fp4 ? cols / 2 : cols * 3 / 4);
  size = fp4 ? n / 2 : n * 3 / 4;
  packed = quark_buffer_alloc (size);
  if (fp4)
    quark_kernel_pack_fp4 (quark_tensor_peek_data (codes, NULL), n, packed);
  else
    quark_kernel_pack_fp6 (quark_tensor_peek_data (codes, NULL), n, packed);
  if (!_quark_format_add_owned (out, _quark_format_new_tensor (quark_tensor_get_name (codes), QUARK_DTYPE_U8, pshape,
                                                               n_dims, packed, size, error), error))
    return FALSE;
  return add_scale_as_stored (out, scale, error);
}

/* Per-group int4 and uint4 weights are stored packed along columns
 * (export_int4 ()): a backend may give their codes so. */
static QuarkCodeLayout
quark_format_get_code_layout (QuarkCheckpointFormat *self, const char *name, QuarkTensorSpec *spec,
                              const gint64 *shape, guint n_dims)
{
  if (_quark_format_int4_columns_fit (spec, shape, n_dims))
    return pack_reorder (self) ? QUARK_CODE_LAYOUT_INT4_COLUMNS_REORDERED : QUARK_CODE_LAYOUT_INT4_COLUMNS;
  return QUARK_CODE_LAYOUT_BYTES;
}

static gboolean
quark_format_export_weight (QuarkCheckpointFormat *self, const char *name, QuarkTensorSpec *spec,
                            QuarkModel *logical, QuarkModel *out, GError **error)
{
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  g_autofree char *zp_name = g_strconcat (name, "_zero_point", NULL);
  QuarkTensor *codes = quark_model_get_tensor (logical, name);
  QuarkTensor *scale = quark_model_get_tensor (logical, scale_name);
  QuarkTensor *zp = quark_model_get_tensor (logical, zp_name);

  if ((dtype == QUARK_DTYPE_INT4 || dtype == QUARK_DTYPE_UINT4) && quark_tensor_get_n_dims (codes) == 2 && scale && zp)
    return export_int4 (codes, scale, zp, spec, pack_reorder (self), out, error);
  if ((dtype == QUARK_DTYPE_FP4_E2M1 || dtype == QUARK_DTYPE_FP6_E2M3 || dtype == QUARK_DTYPE_FP6_E3M2) && scale)
    return export_small_float (codes, scale, dtype, out, error);
  if (quark_dtype_is_sub_byte (dtype))
    {
      /* bit widths with no packed form: one code per I8/U8 element; the bit
       * width is in the config */
      QuarkDType storage = quark_dtype_is_signed (dtype) ? QUARK_DTYPE_I8 : QUARK_DTYPE_U8;
      guint n_dims;
      const gint64 *shape = quark_tensor_get_shape (codes, &n_dims);
      if (!_quark_format_add_owned (out, quark_tensor_new (name, storage, shape, n_dims, quark_tensor_get_data (codes),
                                                           error), error) ||
          (scale && !quark_model_add_tensor (out, scale, error)))
        return FALSE;
      if (zp == NULL)
        return TRUE;
      shape = quark_tensor_get_shape (zp, &n_dims);
      return _quark_format_add_owned (out, quark_tensor_new (zp_name, storage, shape, n_dims,
                                                             quark_tensor_get_data (zp), error), error);
    }
  if (!quark_model_add_tensor (out, codes, error))
    return FALSE;
  if (scale && !add_scale_as_stored (out, scale, error))
    return FALSE;
  return zp == NULL || quark_model_add_tensor (out, zp, error);
}

static JsonNode *
quark_format_build_quantization_config (QuarkCheckpointFormat *self, GError **error)
{
  JsonNode *config = quark_checkpoint_format_get_backend_config (self);

  if (config == NULL || !JSON_NODE_HOLDS_OBJECT (config))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "the quark checkpoint format needs the backend's config in AMD Quark's schema");
      return NULL;
    }
  return quark_json_copy (config);
}

/* ---- reading ------------------------------------------------------------- */

static gboolean
layout_error (GError **error, const char *name, const char *what)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
               "tensor %s: %s does not fit the quantization config", name, what);
  return FALSE;
}

static QuarkTensor *
logical_int4 (const char *name, QuarkTensor *packed, QuarkDType dtype, gboolean reorder, gboolean transpose,
              GError **error)
{
  guint n_dims;
  const gint64 *shape = quark_tensor_get_shape (packed, &n_dims);
  gsize rows = n_dims == 2 ? (gsize) shape[0] : 1;
  gsize cols = (n_dims >= 1 ? (gsize) shape[n_dims - 1] : 1) * 8;
  g_autofree gint8 *codes = NULL;
  gint64 lshape[2];

  if (quark_tensor_get_dtype (packed) != QUARK_DTYPE_I32 || n_dims > 2)
    {
      layout_error (error, name, "the packed int4 layout");
      return NULL;
    }
  codes = g_malloc (MAX (rows * cols, 1));
  quark_kernel_unpack_int4 (quark_tensor_peek_data (packed, NULL), rows, cols, reorder,
                            quark_dtype_is_signed (dtype), codes);
  if (n_dims < 2)
    {
      lshape[0] = (gint64) cols;
      return _quark_format_new_tensor (name, dtype, lshape, 1, g_steal_pointer (&codes), cols, error);
    }
  if (!transpose)
    {
      lshape[0] = (gint64) rows;
      lshape[1] = (gint64) cols;
      return _quark_format_new_tensor (name, dtype, lshape, 2, g_steal_pointer (&codes), rows * cols, error);
    }
  lshape[0] = (gint64) cols;
  lshape[1] = (gint64) rows;
  return _quark_format_new_tensor (name, dtype, lshape, 2, _quark_format_transpose_codes (codes, rows, cols),
                                   rows * cols, error);
}

static QuarkTensor *
transposed_floats (const char *name, QuarkTensor *t, GError **error)
{
  float *x;
  gint64 shape[2];

  if (quark_tensor_get_n_dims (t) != 2)
    {
      layout_error (error, name, "the scale layout");
      return NULL;
    }
  shape[0] = quark_tensor_get_dim (t, 1);
  shape[1] = quark_tensor_get_dim (t, 0);
  if ((x = _quark_format_transposed_floats (t, (gsize) shape[1], (gsize) shape[0], error)) == NULL)
    return NULL;
  return _quark_format_new_tensor (name, QUARK_DTYPE_F32, shape, 2, x,
                                   (gsize) (shape[0] * shape[1]) * sizeof (float), error);
}

static QuarkTensor *
retyped (QuarkTensor *t, QuarkDType dtype, GError **error)
{
  guint n_dims;
  const gint64 *shape = quark_tensor_get_shape (t, &n_dims);
  return quark_tensor_new (quark_tensor_get_name (t), dtype, shape, n_dims, quark_tensor_get_data (t), error);
}

static gboolean
add_logical (QuarkModel *logical, QuarkTensor *t, GError **error)
{
  return _quark_format_add_owned (logical, t, error);
}

static gboolean
quark_format_import_weight (QuarkCheckpointFormat *self, QuarkModel *checkpoint, const char *name,
                            QuarkTensorSpec *spec, QuarkModel *logical, GError **error)
{
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  g_autofree char *zp_name = g_strconcat (name, "_zero_point", NULL);
  QuarkTensor *stored = quark_model_get_tensor (checkpoint, name);
  QuarkTensor *stored_scale = quark_model_get_tensor (checkpoint, scale_name);
  QuarkTensor *stored_zp = quark_model_get_tensor (checkpoint, zp_name);
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);
  gboolean mx = quark_tensor_spec_get_scale_format (spec) == QUARK_SCALE_FORMAT_E8M0;
  gboolean reorder = pack_reorder (self);

  if (stored == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s is missing", name);
      return FALSE;
    }
  if (dtype == QUARK_DTYPE_F16 || dtype == QUARK_DTYPE_BF16)
    return quark_model_add_tensor (logical, stored, error);   /* casts: no scale */
  if (stored_scale == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: %s is missing", name, scale_name);
      return FALSE;
    }

  if ((dtype == QUARK_DTYPE_INT4 || dtype == QUARK_DTYPE_UINT4) && quark_tensor_get_dtype (stored) == QUARK_DTYPE_I32)
    {
      gboolean group = quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_GROUP;
      if (stored_zp == NULL)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: %s is missing", name, zp_name);
          return FALSE;
        }
      if (!add_logical (logical, logical_int4 (name, stored, dtype, reorder, group, error), error) ||
          !(group ? add_logical (logical, transposed_floats (scale_name, stored_scale, error), error)
                  : quark_model_add_tensor (logical, stored_scale, error)))
        return FALSE;
      if (quark_tensor_get_n_dims (stored_zp) == 0)
        {
          gint8 *z = g_malloc (1);
          if (quark_tensor_get_dtype (stored_zp) != QUARK_DTYPE_I32)
            {
              g_free (z);
              return layout_error (error, zp_name, "the zero point's dtype");
            }
          *z = (gint8) ((const gint32 *) quark_tensor_peek_data (stored_zp, NULL))[0];
          return add_logical (logical, _quark_format_new_tensor (zp_name, dtype, NULL, 0, z, 1, error), error);
        }
      return add_logical (logical, logical_int4 (zp_name, stored_zp, dtype, reorder, group, error), error);
    }
  if (dtype == QUARK_DTYPE_FP4_E2M1 || dtype == QUARK_DTYPE_FP6_E2M3 || dtype == QUARK_DTYPE_FP6_E3M2)
    {
      gboolean fp4 = dtype == QUARK_DTYPE_FP4_E2M1;
      guint n_dims;
      const gint64 *shape = quark_tensor_get_shape (stored, &n_dims);
      gint64 lshape[QUARK_TENSOR_MAX_DIMS];
      gsize size, n;
      guint8 *unpacked;

      if (quark_tensor_get_dtype (stored) != QUARK_DTYPE_U8 || n_dims == 0 || (!fp4 && shape[n_dims - 1] % 3))
        return layout_error (error, name, "the packed FP4/FP6 layout");
      quark_tensor_peek_data (stored, &size);
      memcpy (lshape, shape, n_dims * sizeof (gint64));
      lshape[n_dims - 1] = fp4 ? shape[n_dims - 1] * 2 : shape[n_dims - 1] / 3 * 4;
      n = fp4 ? size * 2 : size / 3 * 4;
      unpacked = g_malloc (MAX (n, 1));
      if (fp4)
        quark_kernel_unpack_fp4 (quark_tensor_peek_data (stored, NULL), n, unpacked);
      else
        quark_kernel_unpack_fp6 (quark_tensor_peek_data (stored, NULL), n, unpacked);
      return add_logical (logical, _quark_format_new_tensor (name, dtype, lshape, n_dims, unpacked, n, error), error) &&
             (mx ? add_logical (logical, retyped (stored_scale, QUARK_DTYPE_F8_E8M0, error), error)
                 : quark_model_add_tensor (logical, stored_scale, error));
    }
  if (!(quark_dtype_is_sub_byte (dtype) ? add_logical (logical, retyped (stored, dtype, error), error)
                                        : quark_model_add_tensor (logical, stored, error)) ||
      !(mx ? add_logical (logical, retyped (stored_scale, QUARK_DTYPE_F8_E8M0, error), error)
           : quark_model_add_tensor (logical, stored_scale, error)))
    return FALSE;
  if (stored_zp == NULL)
    return TRUE;
  return quark_dtype_is_sub_byte (dtype) ? add_logical (logical, retyped (stored_zp, dtype, error), error)
                                         : quark_model_add_tensor (logical, stored_zp, error);
}

static void
_quark_format_quark_class_init (QuarkFormatQuarkClass *klass)
{
  QuarkCheckpointFormatClass *format_class = QUARK_CHECKPOINT_FORMAT_CLASS (klass);

  format_class->name = "quark";
  format_class->description = "AMD Quark's real_quantized layout (vLLM's quark path, AMD Quark)";
  format_class->check_weight = quark_format_check_weight;
  format_class->write_weight = quark_format_export_weight;
  format_class->build_quantization_config = quark_format_build_quantization_config;
  format_class->quant_method = "quark";
  format_class->read_weight = quark_format_import_weight;
  format_class->get_code_layout = quark_format_get_code_layout;
}

static void
_quark_format_quark_init (QuarkFormatQuark *self)
{
}
