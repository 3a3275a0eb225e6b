/* quark-format-util.c: what the built-in checkpoint formats share
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"
#include "quark-topology.h"

#include "quark-format-private.h"
#include "kernels/quark-kernel-private.h"

#include <math.h>
#include <string.h>

QuarkTensor *
_quark_format_new_tensor (const char *name, QuarkDType dtype, const gint64 *shape, guint n_dims, gpointer data,
                          gsize size, GError **error)
{
  g_autoptr(GBytes) bytes = quark_buffer_to_bytes (data, size);
  return quark_tensor_new (name, dtype, shape, n_dims, bytes, error);
}

gboolean
_quark_format_add_owned (QuarkModel *out, QuarkTensor *tensor, GError **error)
{
  g_autoptr(QuarkTensor) owned = tensor;
  return owned != NULL && quark_model_add_tensor (out, owned, error);
}

QuarkTensor *
_quark_format_renamed (QuarkTensor *t, const char *name, GError **error)
{
  guint n_dims;
  const gint64 *shape = quark_tensor_get_shape (t, &n_dims);
  return quark_tensor_new (name, quark_tensor_get_dtype (t), shape, n_dims, quark_tensor_get_data (t), error);
}

typedef guint8 FormatBytes16 __attribute__ ((vector_size (16)));

/* A 16 x 16 tile of bytes transposed in registers: four rounds that
 * interleave row i with row i + 8 (bytes 0-7 of both into row 2i, bytes
 * 8-15 into row 2i + 1) leave row c holding column c */
static inline void
transpose_tile (const gint8 *src, gsize src_stride, gint8 *dst, gsize dst_stride)
{
  const FormatBytes16 lo = { 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23 };
  const FormatBytes16 hi = { 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31 };
  FormatBytes16 v[16], w[16];

  for (guint r = 0; r < 16; r++)
    memcpy (&v[r], src + r * src_stride, 16);
  for (guint round = 0; round < 4; round++)
    {
      for (guint i = 0; i < 8; i++)
        {
          w[2 * i] = QK_SHUFFLE2 (v[i], v[i + 8], lo);
          w[2 * i + 1] = QK_SHUFFLE2 (v[i], v[i + 8], hi);
        }
      memcpy (v, w, sizeof v);
    }
  for (guint c = 0; c < 16; c++)
    memcpy (dst + c * dst_stride, &v[c], 16);
}

gint8 *
_quark_format_transpose_codes (const gint8 *codes, gsize rows, gsize cols)
{
  gint8 *t = g_malloc (MAX (rows * cols, 1));
  gsize r0 = 0, c0;

  /* in tiles of 16 x 16, then the edges */
  for (; r0 + 16 <= rows; r0 += 16)
    {
      for (c0 = 0; c0 + 16 <= cols; c0 += 16)
        transpose_tile (codes + r0 * cols + c0, cols, t + c0 * rows + r0, rows);
      for (gsize r = r0; r < r0 + 16; r++)
        for (gsize c = c0; c < cols; c++)
          t[c * rows + r] = codes[r * cols + c];
    }
  for (gsize r = r0; r < rows; r++)
    for (gsize c = 0; c < cols; c++)
      t[c * rows + r] = codes[r * cols + c];
  return t;
}

gint8 *
_quark_format_codes_as_int8 (QuarkTensor *t, gint32 offset, gsize *n, GError **error)
{
  QuarkDType dtype = quark_tensor_get_dtype (t);
  gint8 *q;

  *n = (gsize) quark_tensor_get_n_elements (t);
  if (quark_dtype_is_integer (dtype) && quark_dtype_get_element_size (dtype) == 1)
    {
      /* one byte per code: signed types as int8, unsigned as uint8 */
      const guint8 *b = quark_tensor_peek_data (t, NULL);
      gboolean is_signed = quark_dtype_is_signed (dtype);
      q = g_malloc (MAX (*n, 1));
      if (is_signed)
        for (gsize i = 0; i < *n; i++)
          q[i] = (gint8) ((gint32) (gint8) b[i] + offset);
      else
        for (gsize i = 0; i < *n; i++)
          q[i] = (gint8) ((gint32) b[i] + offset);
      return q;
    }
  {
    g_autofree float *v = quark_tensor_to_floats (t, n, error);
    if (v == NULL)
      return NULL;
    q = g_malloc (MAX (*n, 1));
    for (gsize i = 0; i < *n; i++)
      q[i] = (gint8) ((gint32) v[i] + offset);
    return q;
  }
}

float *
_quark_format_transposed_floats (QuarkTensor *t, gsize rows, gsize cols, GError **error)
{
  g_autofree float *copy = NULL;
  const float *x = quark_tensor_peek_data (t, NULL);
  float *out;

  /* float32 scales (what the backends make) are read in place */
  if (quark_tensor_get_dtype (t) != QUARK_DTYPE_F32 || G_BYTE_ORDER != G_LITTLE_ENDIAN ||
      (guintptr) x % G_ALIGNOF (float) != 0)
    {
      gsize n;
      if ((x = copy = quark_tensor_to_floats (t, &n, error)) == NULL)
        return NULL;
    }
  out = quark_buffer_alloc (MAX (rows * cols, 1) * sizeof (float));
  /* 16 rows at a time, so that each output line (16 floats) is written
   * whole while the 16 input rows stay in cache; one row at a time wrote
   * a float to each of cols lines per row */
  for (gsize r0 = 0; r0 < rows; r0 += 16)
    {
      gsize r1 = MIN (r0 + 16, rows);
      for (gsize c = 0; c < cols; c++)
        for (gsize r = r0; r < r1; r++)
          out[c * rows + r] = x[r * cols + c];
    }
  return out;
}

gboolean
_quark_format_need_multiple (const char *format, const char *name, gsize value, gsize multiple, const char *what,
                             GError **error)
{
  if (value % multiple == 0)
    return TRUE;
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
               "tensor %s: the %s (%" G_GSIZE_FORMAT ") must be a multiple of %" G_GSIZE_FORMAT " for %s",
               name, what, value, multiple, format);
  return FALSE;
}

gboolean
_quark_format_int4_columns_fit (QuarkTensorSpec *spec, const gint64 *shape, guint n_dims)
{
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);

  return (dtype == QUARK_DTYPE_INT4 || dtype == QUARK_DTYPE_UINT4) && n_dims == 2 &&
         quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_GROUP && shape[0] > 0 && shape[0] % 8 == 0 &&
         shape[1] > 0;
}

gboolean
_quark_format_int4_codes_shape (const char *format, const char *name, QuarkTensor *codes, QuarkTensor *scale,
                                QuarkTensorSpec *spec, gboolean *packed, gsize *rows, gsize *cols, GError **error)
{
  const gint64 *shape = quark_tensor_get_shape (codes, NULL);

  *packed = quark_tensor_get_dtype (codes) == QUARK_DTYPE_I32;
  *rows = *packed ? (gsize) shape[1] * 8 : (gsize) shape[0];
  *cols = *packed ? (gsize) shape[0] : (gsize) shape[1];
  if (*packed && (quark_tensor_spec_get_qscheme (spec) != QUARK_QSCHEME_PER_GROUP ||
                  quark_tensor_get_n_dims (scale) != 2 || (gsize) quark_tensor_get_dim (scale, 0) != *rows))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "tensor %s: int32 codes of shape [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "] are neither one "
                   "code per element nor the packed layout %s asked for", name, shape[0], shape[1], format);
      return FALSE;
    }
  return TRUE;
}

char *
_quark_format_layer_of (const char *weight_name)
{
  return g_str_has_suffix (weight_name, ".weight")
         ? g_strndup (weight_name, strlen (weight_name) - strlen (".weight")) : g_strdup (weight_name);
}

JsonArray *
_quark_format_unquantized_linears (QuarkCheckpointFormat *format)
{
  g_auto(GStrv) layers = quark_checkpoint_format_get_layers (format);
  JsonArray *list = json_array_new ();

  for (guint i = 0; layers[i]; i++)
    {
      g_autoptr(QuarkTensorSpec) w = quark_checkpoint_format_get_layer_spec (format, layers[i], QUARK_ROLE_WEIGHT);
      if (w == NULL && g_strcmp0 (quark_checkpoint_format_get_layer_type (format, layers[i]), "Linear") == 0)
        json_array_add_string_element (list, layers[i]);
    }
  return list;
}

JsonNode *
_quark_format_take_object (JsonObject *object)
{
  JsonNode *node = json_node_alloc ();
  json_node_init_object (node, object);
  json_object_unref (object);
  return node;
}

gboolean
_quark_format_unsupported (GError **error, const char *format, const char *what, const char *name,
                           const char *detail)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME, "%s %s: %s cannot be written in the %s format",
               what, name, detail, format);
  return FALSE;
}

JsonObject *
_quark_format_quantization_config (QuarkModel *checkpoint, GError **error)
{
  JsonNode *metadata = quark_model_get_metadata (checkpoint), *node;

  node = metadata && JSON_NODE_HOLDS_OBJECT (metadata)
         ? json_object_get_member (json_node_get_object (metadata), "quantization_config") : NULL;
  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "config.json has no quantization_config object");
      return NULL;
    }
  return json_node_get_object (node);
}

/* vLLM fuses q_proj, k_proj and v_proj (qkv_proj) and gate_proj and up_proj
 * (gate_up_proj) into one layer and refuses shards of different schemes
 * ("Found a different quantization configuration for ... vLLM requires all
 * to use the same scheme", quark/utils.py and compressed_tensors/utils.py);
 * a checkpoint that splits them loads nowhere, so it is refused here. */
gboolean
_quark_format_check_fused (QuarkCheckpointFormat *format, const char *format_name, GError **error)
{
  g_auto(GStrv) layers = quark_checkpoint_format_get_layers (format);

  for (guint i = 0; layers[i]; i++)
    {
      g_auto(GStrv) fused = quark_topology_get_fused_layers (layers[i]);
      for (guint k = 0; fused[k]; k++)
        {
          const char *other = fused[k];
          if (g_str_equal (other, layers[i]) || quark_checkpoint_format_get_layer_type (format, other) == NULL)
            continue;
          /* outputs may differ: the KV cache quantizes k_proj and v_proj only */
          for (QuarkRole role = QUARK_ROLE_WEIGHT; role < QUARK_ROLE_OUTPUT; role++)
            {
              g_autoptr(QuarkTensorSpec) a = quark_checkpoint_format_get_layer_spec (format, layers[i], role);
              g_autoptr(QuarkTensorSpec) b = quark_checkpoint_format_get_layer_spec (format, other, role);
              if ((a == NULL) != (b == NULL) || (a && !quark_tensor_spec_equal (a, b)))
                {
                  g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                               "layers %s and %s are quantized differently (%s), but engines fuse them into one "
                               "layer and need one scheme for both; the %s format cannot hold this",
                               layers[i], other, role == QUARK_ROLE_WEIGHT ? "weights" : "inputs", format_name);
                  return FALSE;
                }
            }
        }
    }
  return TRUE;
}

/* The largest magnitude of each of @n_params parameter sets of @l */
typedef struct { const float *x; float amax; } AmaxData;

static void
amax_chunk (gsize offset, gsize len, gpointer data)
{
  AmaxData *d = data;
  for (gsize k = 0; k < len; k++)
    d->amax = fmaxf (d->amax, fabsf (d->x[offset + k]));
}

/* What vLLM's kernels do to a layer's input at run time, in float32: a
 * static spec with its stored scale; dynamic int8 and FP8 with
 * s = amax / 127 (448 for FP8) per tensor, token or group; MX formats by
 * the spec's rule; NVFP4's group scales under the stored global scale, as
 * compressed-tensors defines them (the weights' rules). The
 * fake_quantize_activation of the formats that read their own inputs. */
QuarkTensor *
_quark_format_fake_quantize_input (QuarkCheckpointFormat *self, QuarkTensorSpec *spec, QuarkTensor *x, QuarkTensor *scale,
                             QuarkTensor *zero_point, GError **error)
{
  const char *name = quark_tensor_get_name (x);
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);
  QuarkScaleFormat sf = quark_tensor_spec_get_scale_format (spec);
  g_autofree float *owned = NULL, *params = NULL;
  g_autoptr(QuarkTensorSpec) fixed = NULL;
  g_autoptr(QuarkTensor) p = NULL;
  const float *in;
  gsize n = 0;
  guint n_dims = 0;
  const gint64 *shape = quark_tensor_get_shape (x, &n_dims);
  gsize cols = n_dims ? (gsize) shape[n_dims - 1] : 1, rows;
  QuarkKernelLayout l;
  gint64 pshape[2];

  if (!quark_tensor_spec_get_is_dynamic (spec))
    return quark_tensor_spec_fake_quantize (spec, x, scale, zero_point, error);
  n = (gsize) quark_tensor_get_n_elements (x);
  if (quark_tensor_get_dtype (x) == QUARK_DTYPE_F32)
    in = quark_tensor_peek_data (x, NULL);
  else if ((in = owned = quark_tensor_to_floats (x, &n, error)) == NULL)
    return NULL;
  rows = cols ? n / cols : 0;

  if (sf == QUARK_SCALE_FORMAT_E8M0)
    {
      QuarkMxParams mx = { dtype, quark_tensor_spec_get_scale_calculation_mode (spec),
                           (size_t) quark_tensor_spec_get_group_size (spec), false };
      g_autofree guint8 *codes = g_malloc (MAX (n, 1)), *scales = g_malloc (MAX (n / mx.block_size + 1, 1));
      g_autofree float *out = g_new (float, MAX (n, 1));
      g_autoptr(GBytes) bytes = NULL;
      if (cols % mx.block_size != 0 ||
          !quark_kernel_mx_quantize_f32 (&mx, in, rows, cols, codes, scales) ||
          !quark_kernel_mx_dequantize_f32 (&mx, codes, scales, rows, cols, out))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                       "tensor %s: its rows are not whole MX blocks of %zu", name, mx.block_size);
          return NULL;
        }
      bytes = g_bytes_new_take (g_steal_pointer (&out), n * sizeof (float));
      return quark_tensor_new (name, QUARK_DTYPE_F32, shape, n_dims, bytes, error);
    }

  /* the same spec with float scales computed here */
  fixed = quark_tensor_spec_copy (spec);
  g_object_set (fixed, "is-dynamic", FALSE, "scale-format", QUARK_SCALE_FORMAT_FLOAT32, NULL);
  {
    gint64 view[2] = { (gint64) rows, (gint64) cols };
    if (!quark_kernel_layout_init (&l, view, 2, quark_tensor_spec_get_qscheme (spec),
                                   quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_CHANNEL ? 0 : 1,
                                   quark_tensor_spec_get_group_size (spec)))
      {
        g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "tensor %s: its shape does not fit the spec",
                     name);
        return NULL;
      }
  }
  params = g_new (float, MAX (l.n_params, 1));
  if (sf == QUARK_SCALE_FORMAT_E4M3)
    {
      const float *g = scale ? quark_tensor_peek_data (scale, NULL) : NULL;
      if (g == NULL || quark_tensor_get_dtype (scale) != QUARK_DTYPE_F32 || !(g[0] > 0.0f) || !isfinite (g[0]))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                       "tensor %s: NVFP4 inputs need their global scale (one positive float32)", name);
          return NULL;
        }
      for (gsize k = 0; k < l.n_params; k++)
        {
          AmaxData d = { in, 0.0f };
          guint8 code;
          quark_kernel_layout_foreach_chunk (&l, k, amax_chunk, &d);
          params[k] = quark_kernel_nvfp4_group_scale (d.amax, g[0], &code);
        }
    }
  else
    {
      float qmax = quark_dtype_is_integer (dtype) ? 127.0f
                   : (float) quark_fp_format_max (quark_fp_format_for_dtype (dtype));
      for (gsize k = 0; k < l.n_params; k++)
        {
          AmaxData d = { in, 0.0f };
          quark_kernel_layout_foreach_chunk (&l, k, amax_chunk, &d);
          params[k] = d.amax > 0.0f ? d.amax / qmax : 1.0f;
        }
    }
  pshape[0] = (gint64) rows;
  pshape[1] = (gint64) (l.n_params / MAX (rows, 1));
  {
    g_autoptr(GBytes) pbytes = g_bytes_new_take (g_steal_pointer (&params), l.n_params * sizeof (float));
    p = quark_tensor_new (name, QUARK_DTYPE_F32, pshape,
                          quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_TENSOR ? 0
                          : quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_CHANNEL ? 1 : 2,
                          pbytes, error);
  }
  if (p == NULL)
    return NULL;
  {
    /* in the [rows, cols] view the layout was made for */
    gint64 view[2] = { (gint64) rows, (gint64) cols };
    g_autoptr(GBytes) in_bytes = g_bytes_new_static (in, n * sizeof (float));
    g_autoptr(QuarkTensor) flat = quark_tensor_new (name, QUARK_DTYPE_F32, view, 2, in_bytes, error);
    g_autoptr(QuarkTensor) out = flat ? quark_tensor_spec_fake_quantize (fixed, flat, p, NULL, error) : NULL;
    g_autoptr(QuarkTensor) shaped = NULL;
    if (out == NULL)
      return NULL;
    shaped = quark_tensor_new (name, QUARK_DTYPE_F32, shape, n_dims, quark_tensor_get_data (out), error);
    return g_steal_pointer (&shaped);
  }
}
