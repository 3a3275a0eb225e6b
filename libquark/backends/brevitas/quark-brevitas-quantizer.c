/* quark-brevitas-quantizer.c: Brevitas's quantizers over a model, and the
 * two exports (AMD Quark's checkpoint layout, and an integer dump)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "quark-brevitas-quantizer.h"
#include "quark-brevitas-config.h"
#include "quark-brevitas-equalize.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

/**
 * QuarkBrevitasQuantizer:
 *
 * Applies a brevitas config: each layer's weight through its Brevitas
 * quantizer (statistics recomputed from the weight), static input and
 * output scales from calibration statistics with Brevitas's calibration
 * semantics (the running mean of per-batch percentiles, numerics.md B8),
 * and biases quantized with the input scale times the weight scale.
 *
 * #QuarkBrevitasQuantizer:export-format selects the result's layout:
 * "quark" (AMD Quark's checkpoint names; integer codes one per I8, U8, I16
 * or I32 element, FP4/FP6 codes packed as Quark packs them, bit widths in
 * `quantization_config`) or "integers" (every code unpacked, every zero
 * point written, and an `integers.json` that documents each layer's
 * arithmetic for C and FPGA implementations).
 *
 * #QuarkBrevitasQuantizer:threads starts that many worker threads, which
 * quantize the weights of the layers ahead while the run writes the layers
 * before them, when no algorithm and no registry format needs a weight's
 * float values; the results are taken back in model order, so the output
 * does not depend on the number.
 */

struct _QuarkBrevitasQuantizer
{
  GObject parent_instance;
  QuarkQuantizationConfig *config;
  char *export_format;
  guint threads;
};

enum {
  PROP_0,
  PROP_CONFIG,
  PROP_EXPORT_FORMAT,
  PROP_THREADS,
};

static void quantizer_iface_init (QuarkModelQuantizerInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (QuarkBrevitasQuantizer, quark_brevitas_quantizer, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (QUARK_TYPE_MODEL_QUANTIZER, quantizer_iface_init))

static void
quark_brevitas_quantizer_finalize (GObject *object)
{
  QuarkBrevitasQuantizer *self = QUARK_BREVITAS_QUANTIZER (object);
  g_clear_object (&self->config);
  g_free (self->export_format);
  G_OBJECT_CLASS (quark_brevitas_quantizer_parent_class)->finalize (object);
}

static void
quark_brevitas_quantizer_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  QuarkBrevitasQuantizer *self = QUARK_BREVITAS_QUANTIZER (object);

  if (prop_id == PROP_CONFIG)
    g_value_set_object (value, self->config);
  else if (prop_id == PROP_EXPORT_FORMAT)
    g_value_set_string (value, self->export_format);
  else if (prop_id == PROP_THREADS)
    g_value_set_uint (value, self->threads);
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
quark_brevitas_quantizer_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  QuarkBrevitasQuantizer *self = QUARK_BREVITAS_QUANTIZER (object);

  if (prop_id == PROP_CONFIG)
    self->config = g_value_dup_object (value);
  else if (prop_id == PROP_EXPORT_FORMAT)
    {
      g_free (self->export_format);
      self->export_format = g_value_dup_string (value);
    }
  else if (prop_id == PROP_THREADS)
    self->threads = g_value_get_uint (value);
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
quark_brevitas_quantizer_class_init (QuarkBrevitasQuantizerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = quark_brevitas_quantizer_finalize;
  object_class->get_property = quark_brevitas_quantizer_get_property;
  object_class->set_property = quark_brevitas_quantizer_set_property;
  g_object_class_override_property (object_class, PROP_CONFIG, "config");
  g_object_class_install_property (object_class, PROP_EXPORT_FORMAT,
    g_param_spec_string ("export-format", "Export format",
                         "\"quark\" (AMD Quark's checkpoint layout) or \"integers\" (an integer dump)", "quark",
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (object_class, PROP_THREADS,
    g_param_spec_uint ("threads", "Threads",
                       "Worker threads quantizing the weights of the layers ahead while the run writes the layers "
                       "before them, when no algorithm and no registry format needs their float values (the output "
                       "does not depend on it); 1: everything on the calling thread",
                       1, 256, 1, G_PARAM_READWRITE | G_PARAM_CONSTRUCT | G_PARAM_STATIC_STRINGS));
}

static void
quark_brevitas_quantizer_init (QuarkBrevitasQuantizer *self)
{
}

/* ---- tensors ------------------------------------------------------------------ */

static gboolean
add_bytes (QuarkModel *out, const char *name, QuarkDType dtype, const gint64 *shape, guint n_dims,
           gpointer data, gsize size, GError **error)
{
  /* @data: from g_malloc() or the buffer pool */
  g_autoptr(GBytes) bytes = quark_buffer_to_bytes (data, size);
  g_autoptr(QuarkTensor) t = quark_tensor_new (name, dtype, shape, n_dims, bytes, error);
  return t != NULL && quark_model_add_tensor (out, t, error);
}

static gboolean
add_floats (QuarkModel *out, const char *name, const float *v, gsize n, const gint64 *shape, guint n_dims,
            GError **error)
{
  /* from the buffer pool: a model's scales reuse a few buffers */
  float *copy = quark_buffer_alloc (MAX (n, 1) * sizeof (float));

  memcpy (copy, v, n * sizeof (float));
  return add_bytes (out, name, QUARK_DTYPE_F32, shape, n_dims, copy, n * sizeof (float), error);
}

/* The element type integer codes are stored in. */
static QuarkDType
int_storage (int bits, gboolean is_signed)
{
  if (bits <= 8)
    return is_signed ? QUARK_DTYPE_I8 : QUARK_DTYPE_U8;
  if (bits <= 16)
    return is_signed ? QUARK_DTYPE_I16 : QUARK_DTYPE_U16;
  return QUARK_DTYPE_I32;
}

/* The storage type of an integer quantizer's codes */
static QuarkDType
code_storage (const BvSpec *bv)
{
  return int_storage (bv->kind == BV_MX_INT ? 8 : bv->bits, bv->is_signed);
}

/* The low bytes of @n codes (what a cast to guint8 keeps), sixteen at a
 * time in vectors: the backend is built at -O2, where GCC 12 leaves the
 * plain loop scalar */
static void
narrow_to_bytes (const gint32 *v, gsize n, guint8 *out)
{
  typedef gint32 V16i __attribute__ ((vector_size (64)));
  typedef guint8 V16b __attribute__ ((vector_size (16)));
  gsize i = 0;

  for (; i + 16 <= n; i += 16)
    {
      V16i a;
      V16b b;
      memcpy (&a, v + i, sizeof a);
      b = __builtin_convertvector (a, V16b);
      memcpy (out + i, &b, sizeof b);
    }
  for (; i < n; i++)
    out[i] = (guint8) v[i];
}

static gboolean
add_ints (QuarkModel *out, const char *name, QuarkDType dtype, const gint32 *v, gsize n, const gint64 *shape,
          guint n_dims, GError **error)
{
  gsize esize = quark_dtype_get_element_size (dtype);
  /* from the buffer pool: a model's codes reuse a few buffers */
  gpointer data = quark_buffer_alloc (MAX (n, 1) * esize);
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(QuarkTensor) t = NULL;

  if (esize == 1)
    narrow_to_bytes (v, n, data);
  else if (esize == 2)
    for (gsize i = 0; i < n; i++)
      ((guint16 *) data)[i] = (guint16) v[i];
  else
    memcpy (data, v, n * sizeof (gint32));
  bytes = quark_buffer_to_bytes (data, n * esize);
  t = quark_tensor_new (name, dtype, shape, n_dims, bytes, error);
  return t != NULL && quark_model_add_tensor (out, t, error);
}

/* A weight's values in float32, in a pool buffer: bfloat16, float16 and
 * float32 read a block at a time from the file (quark_tensor_read_data():
 * no page of the input's mapping is touched) and widened; other dtypes
 * through quark_tensor_to_floats() */
static float *
read_weight_floats (QuarkTensor *t, gsize *n, GError **error)
{
  QuarkDType dtype = quark_tensor_get_dtype (t);
  gsize count = quark_tensor_get_n_elements (t);
  gsize esize = quark_dtype_get_element_size (dtype);
  gsize block = ((gsize) 1 << 20) / esize;   /* elements per read: 1 MiB */
  g_autofree guint8 *chunk = NULL;
  float *x;

  if ((dtype != QUARK_DTYPE_BF16 && dtype != QUARK_DTYPE_F16 && dtype != QUARK_DTYPE_F32) ||
      count > G_MAXSIZE / sizeof (float))
    return quark_tensor_to_floats (t, n, error);
  x = quark_buffer_alloc (MAX (count, 1) * sizeof (float));
  if (dtype == QUARK_DTYPE_F32)
    {
      if (!quark_tensor_read_data (t, 0, x, count * sizeof (float), error))
        {
          quark_buffer_free (x);
          return NULL;
        }
      *n = count;
      return x;
    }
  chunk = g_malloc (MIN (block, MAX (count, 1)) * esize);
  for (gsize i = 0; i < count; i += block)
    {
      gsize m = MIN (block, count - i);
      if (!quark_tensor_read_data (t, (guint64) i * esize, chunk, m * esize, error))
        {
          quark_buffer_free (x);
          return NULL;
        }
      quark_kernel_convert_to_f32 (dtype, chunk, x + i, m);
    }
  *n = count;
  return x;
}

/* read_weight_floats() of a weight to quantize: %NULL and an error naming
 * the tensor when a value is NaN or infinite */
static float *
weight_floats (QuarkTensor *t, gsize *n, GError **error)
{
  float *x = read_weight_floats (t, n, error);
  float lo, hi;

  if (x != NULL && !quark_kernel_min_max_f32 (x, *n, &lo, &hi))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR,
                   "tensor %s: holds NaN or infinity, which cannot be quantized", quark_tensor_get_name (t));
      g_clear_pointer (&x, quark_buffer_free);
    }
  return x;
}

/* Codes of up to 8 bits, one per byte, in *@codes: the row path's as they
 * are, the general path's 32-bit codes narrowed into a pool buffer */
static void
byte_codes (const BvResult *r, guint8 **codes)
{
  if (*codes != NULL)
    return;
  *codes = quark_buffer_alloc (MAX (r->n, 1));
  narrow_to_bytes (r->codes, r->n, *codes);
}

/* Weight codes in the export's layout. Returns the storage name. */
static gboolean
add_codes (QuarkModel *out, const char *name, const BvSpec *bv, const BvResult *r, guint8 **codes,
           const gint64 *shape, guint n_dims, gboolean pack, const char **storage, GError **error)
{
  gboolean fp = bv->kind == BV_FLOAT || bv->kind == BV_MX_FLOAT;
  gint64 packed_shape[QUARK_TENSOR_MAX_DIMS];
  gsize last = n_dims ? (gsize) shape[n_dims - 1] : 1;
  QuarkDType dtype = fp ? QUARK_DTYPE_U8 : code_storage (bv);

  if (quark_dtype_get_element_size (dtype) > 1)
    {
      *storage = quark_dtype_get_name (dtype);
      return add_ints (out, name, dtype, r->codes, r->n, shape, n_dims, error);
    }
  byte_codes (r, codes);
  if (!fp)
    {
      *storage = quark_dtype_get_name (dtype);
      return add_bytes (out, name, dtype, shape, n_dims, g_steal_pointer (codes), r->n, error);
    }
  memcpy (packed_shape, shape, n_dims * sizeof (gint64));
  if (pack && bv->bits == 4 && n_dims && last % 2 == 0)
    {
      /* FP4: two codes per byte, the even element in the low nibble */
      guint8 *bytes = quark_buffer_alloc (MAX (r->n / 2, 1));
      quark_kernel_pack_fp4 (*codes, r->n, bytes);
      packed_shape[n_dims - 1] = (gint64) last / 2;
      *storage = "fp4 packed two per byte";
      return add_bytes (out, name, QUARK_DTYPE_U8, packed_shape, n_dims, bytes, r->n / 2, error);
    }
  if (pack && bv->bits == 6 && n_dims && last % 4 == 0)
    {
      /* FP6: four codes per three bytes */
      guint8 *bytes = quark_buffer_alloc (MAX (r->n / 4 * 3, 1));
      quark_kernel_pack_fp6 (*codes, r->n, bytes);
      packed_shape[n_dims - 1] = (gint64) last / 4 * 3;
      *storage = "fp6 packed four per three bytes";
      return add_bytes (out, name, QUARK_DTYPE_U8, packed_shape, n_dims, bytes, r->n / 4 * 3, error);
    }
  dtype = bv->family == BV_FP_OCP && bv->ebits == 4 && bv->mbits == 3 ? QUARK_DTYPE_F8_E4M3
        : bv->family == BV_FP_OCP && bv->ebits == 5 && bv->mbits == 2 ? QUARK_DTYPE_F8_E5M2 : QUARK_DTYPE_U8;
  *storage = dtype == QUARK_DTYPE_U8 ? "one format code per byte" : quark_dtype_get_name (dtype);
  return add_bytes (out, name, dtype, shape, n_dims, g_steal_pointer (codes), r->n, error);
}

/* AMD Quark's int4 layout, written by the registry's quark checkpoint
 * format from the logical codes, scales and zero points (the format packs
 * eight codes per int32 word in the AWQ order, transposing per group).
 * Returns TRUE with *handled unset when the shape has no packed form (the
 * caller then stores one code per byte). */
static gboolean
add_int4_quark (QuarkModel *out, const char *name, const BvSpec *bv, const BvResult *r, guint8 **codes,
                const gint64 *shape, gboolean *handled, GError **error)
{
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  g_autofree char *zp_name = g_strconcat (name, "_zero_point", NULL);
  g_autofree char *layer = g_str_has_suffix (name, ".weight") ? g_strndup (name, strlen (name) - strlen (".weight"))
                                                               : g_strdup (name);
  gsize rows = (gsize) shape[0], cols = (gsize) shape[1];
  gboolean group = bv->qscheme == QUARK_QSCHEME_PER_GROUP;
  QuarkDType dtype = bv->is_signed ? QUARK_DTYPE_INT4 : QUARK_DTYPE_UINT4;
  g_autoptr(QuarkCheckpointFormat) format = NULL;
  g_autoptr(QuarkTensorSpec) spec = NULL;
  g_autoptr(QuarkModel) logical = quark_model_new ();
  gint8 *z;

  *handled = FALSE;
  if (group ? rows % 8 || cols % (gsize) bv->group_size : cols % 8 || (bv->qscheme == QUARK_QSCHEME_PER_CHANNEL && rows % 8))
    return TRUE;
  *handled = TRUE;
  format = quark_registry_new_format (quark_registry_get_default (), "quark", error);
  if (format == NULL)
    return FALSE;
  z = g_new (gint8, MAX (r->n_params, 1));
  for (gsize i = 0; i < r->n_params; i++)
    z[i] = (gint8) r->zero_points[i];
  spec = quark_tensor_spec_new (dtype, bv->qscheme);
  if (!add_bytes (logical, zp_name, dtype, r->param_shape, r->param_n_dims, z, r->n_params, error))
    return FALSE;
  return add_bytes (logical, name, dtype, shape, 2, g_steal_pointer (codes), r->n, error) &&
         add_floats (logical, scale_name, r->scales, r->n_params, r->param_shape, r->param_n_dims, error) &&
         quark_checkpoint_format_export_weight (format, layer, "Linear", name, spec, logical, out, error);
}

/* ---- descriptions (the Quark config's bit widths, and integers.json) ------- */

static const char *
granularity_name (QuarkQScheme q)
{
  return q == QUARK_QSCHEME_PER_CHANNEL ? "per_channel" : q == QUARK_QSCHEME_PER_GROUP ? "per_group" : "per_tensor";
}

static JsonObject *
describe (const BvSpec *bv, const char *tensor, const char *scale, const char *zero_point, const char *storage)
{
  JsonObject *o = json_object_new ();
  gint32 qmin = 0, qmax = 0;

  json_object_set_string_member (o, "quantizer", bv_spec_describe (bv));
  json_object_set_member (o, "spec", bv_spec_to_json (bv));
  if (tensor)
    json_object_set_string_member (o, "tensor", tensor);
  if (storage)
    json_object_set_string_member (o, "storage", storage);
  json_object_set_int_member (o, "bit_width", bv->bits);
  if (bv->kind == BV_FLOAT || bv->kind == BV_MX_FLOAT)
    {
      QuarkFpFormat f = bv_fp_format (bv);
      json_object_set_int_member (o, "exponent_bit_width", bv->ebits);
      json_object_set_int_member (o, "mantissa_bit_width", bv->mbits);
      json_object_set_int_member (o, "exponent_bias", f.bias);
      json_object_set_double_member (o, "max", bv_fp_max (bv));
    }
  else
    {
      bv_int_range (bv, &qmin, &qmax);
      json_object_set_boolean_member (o, "signed", bv->is_signed);
      json_object_set_boolean_member (o, "narrow_range", bv->narrow);
      json_object_set_int_member (o, "qmin", qmin);
      json_object_set_int_member (o, "qmax", qmax);
    }
  json_object_set_string_member (o, "granularity", bv->kind == BV_MX_FLOAT || bv->kind == BV_MX_INT
                                 ? "mx_block" : granularity_name (bv->qscheme));
  if (bv->qscheme == QUARK_QSCHEME_PER_GROUP)
    json_object_set_int_member (o, "group_size", bv->group_size);
  if (scale)
    json_object_set_string_member (o, "scale", scale);
  if (zero_point)
    json_object_set_string_member (o, "zero_point", zero_point);
  json_object_set_boolean_member (o, "scale_is_power_of_two", bv->pof2);
  return o;
}

/* ---- activations and biases ------------------------------------------------------ */

/* Static activation scale and zero point from calibration (numerics.md B8): the
 * running mean of the per-batch statistic through the weight-path
 * formula. */
static gboolean
activation_params (const BvSpec *bv, const char *layer, QuarkRole role, QuarkCalibration *calibration,
                   float *scale, gint32 *zero_point, GError **error)
{
  const char *what = role == QUARK_ROLE_INPUT ? "input" : "output";
  double q = 0;
  float abs_pct, span, neg;
  gint32 qmin, qmax;

  if (bv->restrict_type == BV_RESTRICT_UNSCALED)
    {
      bv_uncalibrated_params (bv, scale, zero_point);
      return TRUE;
    }
  if (bv->mse)
    {
      /* the running means of each batch's MSE search */
      float stat, zp_stat;
      if (calibration == NULL || !quark_calibration_get_batch_statistic (calibration, layer, role, &stat, &zp_stat))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION,
                       "layer %s: the %s quantizer %s searches its scale on calibration batches, but there are no "
                       "such statistics for it (calibrate with a session made for this config)", layer, what,
                       bv_spec_describe (bv));
          return FALSE;
        }
      *scale = bv_scale_from_stat (bv, stat, bv_threshold (bv));
      *zero_point = bv->kind == BV_INT && !bv->symmetric ? bv_shifted_zero_point (bv, zp_stat, *scale) : 0;
      return TRUE;
    }
  if (calibration == NULL ||
      !quark_calibration_get_batch_percentiles (calibration, layer, role, &q, &abs_pct, NULL, NULL, &span, &neg))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION,
                   "layer %s: the %s quantizer %s is calibrated, but there are no per-batch statistics for it "
                   "(calibrate with a session made for this config)", layer, what, bv_spec_describe (bv));
      return FALSE;
    }
  if (q != bv->percentile)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION,
                   "layer %s: the %s statistics were taken at percentile %g, the quantizer needs %g",
                   layer, what, q, bv->percentile);
      return FALSE;
    }
  *zero_point = 0;
  if (bv->kind == BV_INT && !bv->symmetric)
    {
      /* PercentileInterval scale, NegativePercentileOrZero zero point */
      bv_int_range (bv, &qmin, &qmax);
      *scale = bv_scale_from_stat (bv, span, bv_threshold (bv));
      *zero_point = bv_shifted_zero_point (bv, neg, *scale);
      return TRUE;
    }
  *scale = bv_scale_from_stat (bv, abs_pct, bv_threshold (bv));
  return TRUE;
}

typedef struct {
  const char *layer;
  const char *layer_type;
  QuarkTensor *weight;
  const BvSpec *w;
  BvResult rw;
  float input_scale;
  gboolean has_input_scale;
  int input_bits;
  JsonObject *info;     /* the layer's description */
  QuarkCheckpointFormat *format;   /* a registry format other than quark's layout, or NULL */
  float *correction;    /* bias correction: what the bias gains, [out_features], or NULL */
} Layer;

/* ---- algo_config ---------------------------------------------------------------------- */

/* Whether algo_config changes this layer's weight or bias */
static gboolean
has_algorithms (QuarkBrevitasQuantizer *self)
{
  const BvAlgorithms *a = quark_brevitas_config_get_algorithms (QUARK_BREVITAS_CONFIG (self->config));
  return a->gptq || a->gpfq || a->bias_correction;
}

/* Before any work: what the algorithms need of a layer. GPTQ and bias
 * correction take Linear layers and the second moments of their input;
 * bias correction from the mean of the input holds only when the input is
 * not quantized (Brevitas's correction subtracts the quantized layer's
 * mean output, which with an input quantizer depends on the quantized
 * inputs, whose mean calibration does not learn) and the output is not
 * quantized either. */
static gboolean
check_algorithms (QuarkBrevitasQuantizer *self, QuarkCalibration *calibration, const char *layer, const char *type,
                  guint n_dims, GError **error)
{
  QuarkBrevitasConfig *config = QUARK_BREVITAS_CONFIG (self->config);
  const BvAlgorithms *a = quark_brevitas_config_get_algorithms (config);
  const char *rewrite = a->gptq ? "gptq" : a->gpfq ? "gpfq" : NULL;
  g_autofree char *what = rewrite && a->bias_correction ? g_strconcat (rewrite, " and bias_correction", NULL)
                                                         : g_strdup (rewrite ? rewrite : "bias_correction");
  g_autoptr(GError) local = NULL;
  g_autoptr(QuarkTensor) sums = NULL;

  if (!has_algorithms (self))
    return TRUE;
  if (!g_str_equal (type, "Linear") || n_dims != 2)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "layer %s: %s in the brevitas backend take Linear layers, not %s (exclude it, or give it a "
                   "layer_quant_config entry of its own)", layer, what, type);
      return FALSE;
    }
  if (a->bias_correction)
    for (QuarkRole role = QUARK_ROLE_INPUT; role <= QUARK_ROLE_OUTPUT; role++)
      if (quark_brevitas_config_get_bv_spec (config, layer, type, role, NULL))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "layer %s: bias_correction needs a layer whose %s is not quantized: with a quantized %s the "
                       "correction depends on statistics of the quantized activations, which calibration does not "
                       "learn", layer, role == QUARK_ROLE_INPUT ? "input" : "output",
                       role == QUARK_ROLE_INPUT ? "input" : "output");
          return FALSE;
        }
  /* (the sums of squares say whether the moments are there, without
   * copying a Gram matrix) */
  if (calibration == NULL ||
      (sums = quark_calibration_get_input_sum_squares (calibration, layer, NULL, &local)) == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION,
                   "layer %s: %s need the second moments of its input (quark quantize --calibration-text, or a "
                   "calibration session with second-moments set)", layer, what);
      return FALSE;
    }
  return TRUE;
}

/* GPTQ's rounding of part of a column: each element with the fixed
 * parameters of its parameter set */
typedef struct {
  const BvSpec *spec;
  const BvResult *r;
} GptqRound;

static void
gptq_round (const float *values, gsize n, gsize column, gsize first_row, float *rounded, gpointer data)
{
  GptqRound *g = data;
  g_autofree float *scales = g_new (float, MAX (n, 1));
  g_autofree gint32 *zero_points = g_new (gint32, MAX (n, 1));

  for (gsize i = 0; i < n; i++)
    {
      gsize p = bv_param_index (g->spec, g->r, first_row + i, column);
      scales[i] = g->r->scales[p];
      zero_points[i] = g->r->zero_points[p];
    }
  bv_fake_quantize_each (g->spec, values, n, scales, zero_points, rounded);
}

/* Brevitas's bias correction of a weight-only layer: the mean over the
 * calibration of float output − quantized output, which for y = W x + b
 * is (W − Ŵ) μ with μ the input's mean */
static float *
bias_correction (const float *w, const float *deq, gsize rows, gsize cols, const double *mean)
{
  float *c = g_new (float, MAX (rows, 1));

  for (gsize o = 0; o < rows; o++)
    {
      double acc = 0.0;
      for (gsize i = 0; i < cols; i++)
        acc += ((double) w[o * cols + i] - (double) deq[o * cols + i]) * mean[i];
      c[o] = (float) acc;
    }
  return c;
}

/* algo_config on a layer whose weight @x has been quantized into L->rw
 * (with the values, L->rw.want_values): GPTQ updates @x column by column
 * with the quantizer's parameters fixed, as Brevitas's parameter_from_stats
 * scaling keeps them (AMD Quark's Brevitas extension initializes its
 * weight quantizers so), and quantizes it again; bias correction computes
 * what the bias gains from the weights before GPTQ (listed first) or after
 * it. */
static gboolean
apply_algorithms (QuarkBrevitasQuantizer *self, Layer *L, QuarkCalibration *calibration, float *x, GError **error)
{
  const BvAlgorithms *a = quark_brevitas_config_get_algorithms (QUARK_BREVITAS_CONFIG (self->config));
  const char *name = quark_tensor_get_name (L->weight);
  gsize rows = (gsize) quark_tensor_get_dim (L->weight, 0), cols = (gsize) quark_tensor_get_dim (L->weight, 1);
  g_autoptr(QuarkTensor) gram = NULL, mean = NULL;
  g_autofree float *copy = NULL;
  const float *w0 = x;          /* the weight before GPTQ or GPFQ rewrite @x */
  const double *mu = NULL;

  /* (bias correction alone reads the input mean, not the Gram matrix) */
  if ((a->gptq || a->gpfq) &&
      (gram = quark_calibration_get_second_moments (calibration, L->layer, NULL, NULL, NULL, NULL, error)) == NULL)
    return FALSE;
  if (a->bias_correction)
    {
      if ((mean = quark_calibration_get_input_mean (calibration, L->layer, error)) == NULL)
        return FALSE;
      mu = quark_tensor_peek_data (mean, NULL);
      if (a->gptq || a->gpfq)
        w0 = copy = g_memdup2 (x, rows * cols * sizeof (float));
      if (a->bias_correction_first || (!a->gptq && !a->gpfq))
        L->correction = bias_correction (w0, L->rw.dequantized, rows, cols, mu);
    }
  if (a->gptq || a->gpfq)
    {
      GptqRound g = { L->w, &L->rw };
      guint block = (guint) ((cols + a->num_blocks - 1) / a->num_blocks);
      gint64 shape[2] = { (gint64) rows, (gint64) cols };

      if (!(a->gptq ? quark_gptq_update_weight (x, rows, cols, gram, a->damp_percent, MAX (block, 1), a->act_order,
                                                gptq_round, &g, error)
                    : quark_gpfq_update_weight (x, rows, cols, gram, a->act_order, gptq_round, &g, error)) ||
          !bv_requantize_weight (L->w, x, shape, 2, name, &L->rw, error))
        {
          g_prefix_error (error, "layer %s: %s: ", L->layer, a->gptq ? "GPTQ" : "GPFQ");
          return FALSE;
        }
      if (a->bias_correction && !a->bias_correction_first)
        L->correction = bias_correction (w0, L->rw.dequantized, rows, cols, mu);
    }
  return TRUE;
}

/* The bias a corrected layer ends with: the model's bias (if it has one)
 * plus the correction, in the bias's dtype (float32 for a new bias) */
static gboolean
add_corrected_bias (Layer *L, QuarkModel *model, QuarkModel *out, GError **error)
{
  g_autofree char *name = g_strconcat (L->layer, ".bias", NULL);
  QuarkTensor *bias = quark_model_get_tensor (model, name);
  gsize rows = (gsize) quark_tensor_get_dim (L->weight, 0), n = rows;
  g_autofree float *b = bias ? quark_tensor_to_floats (bias, &n, error) : g_new0 (float, MAX (rows, 1));
  g_autoptr(QuarkTensor) t = NULL;
  gint64 len = (gint64) rows;

  if (b == NULL)
    return FALSE;
  if (n != rows)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR, "tensor %s: %" G_GSIZE_FORMAT " values for %"
                   G_GSIZE_FORMAT " outputs", name, n, rows);
      return FALSE;
    }
  for (gsize o = 0; o < rows; o++)
    b[o] += L->correction[o];
  if (bias && quark_tensor_get_dtype (bias) != QUARK_DTYPE_F32)
    {
      QuarkDType dtype = quark_tensor_get_dtype (bias);
      gsize size = rows * quark_dtype_get_element_size (dtype);
      guint8 *data = g_malloc (MAX (size, 1));
      g_autoptr(GBytes) bytes = NULL;

      if (!quark_kernel_convert_from_f32 (dtype, b, data, rows))
        {
          g_free (data);
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_DTYPE, "tensor %s: cannot write a corrected %s "
                       "bias", name, quark_dtype_get_name (dtype));
          return FALSE;
        }
      bytes = g_bytes_new_take (data, size);
      t = quark_tensor_new (name, dtype, &len, 1, bytes, error);
    }
  else
    t = quark_tensor_new_from_floats (name, &len, 1, b, rows, error);
  if (t == NULL || !quark_model_add_tensor (out, t, error))
    return FALSE;
  {
    JsonObject *d = json_object_new ();
    json_object_set_string_member (d, "tensor", name);
    json_object_set_string_member (d, "dtype", quark_dtype_get_name (quark_tensor_get_dtype (t)));
    json_object_set_string_member (d, "is", "the float bias (0 where the model had none) plus the mean over the "
                                            "calibration of float output - quantized output");
    json_object_set_object_member (L->info, "bias_correction", d);
  }
  return TRUE;
}

static gboolean
quantize_bias (QuarkBrevitasQuantizer *self, Layer *L, QuarkModel *model, QuarkModel *out, gboolean dump,
               GError **error)
{
  g_autofree char *name = g_strconcat (L->layer, ".bias", NULL);
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  BvSpec *bv = quark_brevitas_config_get_bv_spec (QUARK_BREVITAS_CONFIG (self->config), L->layer, L->layer_type,
                                                  QUARK_ROLE_BIAS, NULL);
  QuarkTensor *bias = quark_model_get_tensor (model, name);
  g_autofree float *b = NULL, *scales = NULL;
  g_auto(BvResult) r = { 0 };
  guint n_dims;
  const gint64 *shape;
  gsize n;

  if (bv == NULL || bias == NULL)
    return TRUE;
  if (!L->has_input_scale)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "layer %s: an integer bias (%s) needs the input's scale, but the layer has no static "
                   "integer input quantizer", L->layer, bv_spec_describe (bv));
      return FALSE;
    }
  b = quark_tensor_to_floats (bias, &n, error);
  if (b == NULL)
    return FALSE;
  shape = quark_tensor_get_shape (bias, &n_dims);
  if (L->rw.n_params != 1 && L->rw.n_params != n)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "layer %s: the bias has %" G_GSIZE_FORMAT " values but the weight %" G_GSIZE_FORMAT " scales",
                   L->layer, n, L->rw.n_params);
      return FALSE;
    }
  /* IntBias: s = input scale · weight scale, signed, not narrow, z = 0 */
  scales = g_new (float, MAX (L->rw.n_params, 1));
  for (gsize c = 0; c < L->rw.n_params; c++)
    scales[c] = L->input_scale * L->rw.scales[c];
  if (!bv_quantize_with_scales (bv, b, shape, n_dims, scales, NULL, L->rw.n_params, &r))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR, "tensor %s: its shape does not fit its scales", name);
      return FALSE;
    }
  if (!add_ints (out, name, dump ? QUARK_DTYPE_I32 : int_storage (bv->bits, TRUE), r.codes, n, shape, n_dims,
                 error) ||
      !add_floats (out, scale_name, scales, L->rw.n_params, shape, L->rw.n_params == 1 ? 0 : n_dims, error))
    return FALSE;
  {
    JsonObject *d = describe (bv, name, scale_name, NULL, dump ? "int32" : quark_dtype_get_name (int_storage (bv->bits, TRUE)));
    json_object_set_string_member (d, "scale_is", "input_scale * weight_scale");
    json_object_set_object_member (L->info, "bias", d);
  }
  if (L->w->kind == BV_INT && L->input_bits > 0)
    {
      /* numerics.md B11: accumulator width, then one more bit with an integer bias */
      gint64 fan_in = (gint64) (quark_tensor_get_n_elements (L->weight) / (guint64) MAX (quark_tensor_get_dim (L->weight, 0), 1));
      double acc = ceil (log2 ((pow (2, L->input_bits) - 1) * (pow (2, L->w->bits) - 1) * (double) fan_in));
      json_object_set_int_member (L->info, "accumulator_bit_width", (gint64) MAX (acc, bv->bits) + 1);
    }
  return TRUE;
}

/* A layer through a registry format (compressed-tensors, awq, fp8, …): the
 * weight's codes, scales and zero points as logical tensors, then the
 * static activation parameters. */
static gboolean
export_layer (QuarkBrevitasQuantizer *self, Layer *L, QuarkCalibration *calibration, QuarkModel *out,
              GError **error)
{
  const char *name = quark_tensor_get_name (L->weight);
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  g_autofree char *zp_name = g_strconcat (name, "_zero_point", NULL);
  g_autoptr(QuarkTensorSpec) spec = quark_quantization_config_get_tensor_spec (self->config, L->layer, L->layer_type,
                                                                               QUARK_ROLE_WEIGHT);
  g_autoptr(QuarkModel) logical = quark_model_new ();
  guint n_dims;
  const gint64 *shape = quark_tensor_get_shape (L->weight, &n_dims);
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);

  if (!add_ints (logical, name, dtype, L->rw.codes, L->rw.n, shape, n_dims, error) ||
      !add_floats (logical, scale_name, L->rw.scales, L->rw.n_params, L->rw.param_shape, L->rw.param_n_dims, error) ||
      (quark_dtype_is_integer (dtype) &&
       !add_ints (logical, zp_name, dtype, L->rw.zero_points, L->rw.n_params, L->rw.param_shape,
                     L->rw.param_n_dims, error)) ||
      !quark_checkpoint_format_export_weight (L->format, L->layer, L->layer_type, name, spec, logical, out, error))
    return FALSE;
  for (QuarkRole role = QUARK_ROLE_INPUT; role <= QUARK_ROLE_OUTPUT; role++)
    {
      BvSpec *a = quark_brevitas_config_get_bv_spec (QUARK_BREVITAS_CONFIG (self->config), L->layer, L->layer_type,
                                                     role, NULL);
      g_autoptr(QuarkTensorSpec) aspec = NULL;
      g_autoptr(QuarkTensor) st = NULL, zt = NULL;
      float s;
      gint32 z;

      if (a == NULL || a->dynamic)
        continue;
      aspec = quark_quantization_config_get_tensor_spec (self->config, L->layer, L->layer_type, role);
      if (!activation_params (a, L->layer, role, calibration, &s, &z, error))
        return FALSE;
      st = quark_tensor_new_from_floats ("scale", NULL, 0, &s, 1, error);
      if (st == NULL)
        return FALSE;
      if (a->kind == BV_INT)
        {
          g_autoptr(QuarkModel) zm = quark_model_new ();
          if (!add_ints (zm, "zero_point", quark_tensor_spec_get_dtype (aspec), &z, 1, NULL, 0, error))
            return FALSE;
          zt = g_object_ref (quark_model_get_tensor (zm, "zero_point"));
        }
      if (!quark_checkpoint_format_export_activation (L->format, L->layer, role, aspec, st, zt, out, error))
        return FALSE;
    }
  return TRUE;
}

/* ---- weights quantized ahead, on worker threads ------------------------------ */

static const char *quantizable_weight_layer (QuarkTensor *t, char **layer);

/* Whether a layer's weight is quantized on its own (weight_codes(), on
 * a worker or on the run's thread): nothing after its quantization (an
 * algorithm, a registry format) needs its float values */
static gboolean
takes_alone (QuarkBrevitasQuantizer *self, QuarkCheckpointFormat *format)
{
  return !has_algorithms (self) && format == NULL;
}

/* Such a weight's codes and parameters: the row path
 * (bv_quantize_weight_rows()) for the weights it takes, else the general
 * path on the weight's float32 values, its codes narrowed to one byte
 * each where they are stored so (the 32-bit ones then dropped). Reads
 * only @t and @spec: workers call it. */
static gboolean
weight_codes (const BvSpec *spec, QuarkTensor *t, BvResult *r, guint8 **codes, GError **error)
{
  const char *name = quark_tensor_get_name (t);
  guint n_dims;
  const gint64 *shape = quark_tensor_get_shape (t, &n_dims);
  g_autoptr(BvBuffer) x = NULL;
  gsize n;

  if (bv_weight_rows_fit (spec, t))
    return bv_quantize_weight_rows (spec, t, code_storage (spec), r, codes, error);
  x = weight_floats (t, &n, error);
  if (x == NULL || !bv_quantize_weight (spec, x, shape, n_dims, name, r, error))
    return FALSE;
  if (spec->kind == BV_FLOAT || spec->kind == BV_MX_FLOAT ||
      quark_dtype_get_element_size (code_storage (spec)) == 1)
    {
      byte_codes (r, codes);
      g_clear_pointer (&r->codes, quark_buffer_free);
    }
  return TRUE;
}

/* One such weight, quantized by a worker while the run goes on with the
 * layers before it. The worker reads only the tensor (quark_tensor_read_data())
 * and its spec, and writes only the job. */
typedef struct {
  const BvSpec *spec;
  QuarkTensor *tensor;
  BvResult r;
  guint8 *codes;
  GError *error;
  gboolean ok, done;
} WeightJob;

static void
weight_job_free (WeightJob *job)
{
  bv_result_clear (&job->r);
  g_clear_pointer (&job->codes, quark_buffer_free);
  g_clear_error (&job->error);
  g_free (job);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WeightJob, weight_job_free)

/* The jobs of a run: at most @limit handed out and not yet taken back,
 * for the weights quantized alone from the tensor the run is at on, in order.
 * The workers are pthreads under a pthread lock rather than a GThreadPool:
 * ThreadSanitizer sees pthread locks (GLib's futexes, and so the pool's
 * queue, it does not). */
typedef struct {
  pthread_t *threads;
  guint n_threads;
  pthread_mutex_t lock;
  pthread_cond_t cond;  /* a job queued or done, or the run ending */
  gboolean stop;        /* the run ends: workers leave, queued jobs are dropped */
  WeightJob **queue;    /* handed out, not started: [head, tail) */
  guint head, tail;
  WeightJob **jobs;     /* by tensor index, until taken back */
  guint n, next, in_flight, limit;
  gboolean ready;       /* ahead_init() was called */
} Ahead;

static void *
ahead_worker (void *data)
{
  Ahead *a = data;

  pthread_mutex_lock (&a->lock);
  for (;;)
    {
      WeightJob *job;
      BvResult r = { 0 };
      guint8 *codes = NULL;
      GError *error = NULL;
      gboolean ok;

      while (!a->stop && a->head == a->tail)
        pthread_cond_wait (&a->cond, &a->lock);
      if (a->stop)
        break;
      job = a->queue[a->head++];
      pthread_mutex_unlock (&a->lock);
      ok = weight_codes (job->spec, job->tensor, &r, &codes, &error);
      pthread_mutex_lock (&a->lock);
      job->ok = ok;
      job->r = r;
      job->codes = codes;
      job->error = error;
      job->done = TRUE;
      pthread_cond_broadcast (&a->cond);
    }
  pthread_mutex_unlock (&a->lock);
  return NULL;
}

static void
ahead_clear (Ahead *a)
{
  if (!a->ready)
    return;
  pthread_mutex_lock (&a->lock);
  a->stop = TRUE;
  pthread_cond_broadcast (&a->cond);
  pthread_mutex_unlock (&a->lock);
  for (guint i = 0; i < a->n_threads; i++)
    pthread_join (a->threads[i], NULL);
  for (guint i = 0; a->jobs && i < a->n; i++)
    if (a->jobs[i])
      weight_job_free (a->jobs[i]);
  g_free (a->jobs);
  g_free (a->queue);
  g_free (a->threads);
  pthread_mutex_destroy (&a->lock);
  pthread_cond_destroy (&a->cond);
  memset (a, 0, sizeof *a);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Ahead, ahead_clear)

/* @threads workers when @threads > 1 (none otherwise, or when none can be
 * started: the run then quantizes every weight itself) */
static void
ahead_init (Ahead *a, guint threads, guint n)
{
  memset (a, 0, sizeof *a);
  pthread_mutex_init (&a->lock, NULL);
  pthread_cond_init (&a->cond, NULL);
  a->ready = TRUE;
  a->n = n;
  if (threads < 2 || n == 0)
    return;
  a->jobs = g_new0 (WeightJob *, n);
  a->queue = g_new0 (WeightJob *, n);
  a->limit = threads + 1;
  a->threads = g_new0 (pthread_t, threads);
  while (a->n_threads < threads && pthread_create (&a->threads[a->n_threads], NULL, ahead_worker, a) == 0)
    a->n_threads++;
}

/* Tensor @t's weight quantizer (@layer and @type set to its layer), or
 * %NULL when it is not a weight this config quantizes */
static const BvSpec *
layer_weight_spec (QuarkBrevitasQuantizer *self, QuarkTensor *t, char **layer, const char **type)
{
  *type = quantizable_weight_layer (t, layer);
  return *type ? quark_brevitas_config_get_bv_spec (QUARK_BREVITAS_CONFIG (self->config), *layer, *type,
                                                    QUARK_ROLE_WEIGHT, NULL)
               : NULL;
}

/* Hands out the jobs of the weights quantized alone from tensor @at on, up to the
 * limit (the specs are looked up here, on the run's thread); none when an
 * algorithm or a registry format takes the weights (takes_alone()) */
static void
ahead_fill (Ahead *a, QuarkBrevitasQuantizer *self, QuarkModel *model, QuarkCheckpointFormat *format,
            GHashTable *quantized_biases, guint at)
{
  if (a->n_threads == 0 || !takes_alone (self, format))
    return;
  a->next = MAX (a->next, at);
  while (a->next < a->n && a->in_flight < a->limit)
    {
      guint j = a->next++;
      QuarkTensor *t = quark_model_get_tensor_at (model, j);
      g_autofree char *layer = NULL;
      const char *type;
      const BvSpec *w;
      WeightJob *job;

      if (g_hash_table_contains (quantized_biases, quark_tensor_get_name (t)))
        continue;
      w = layer_weight_spec (self, t, &layer, &type);
      if (w == NULL)
        continue;
      job = g_new0 (WeightJob, 1);
      job->spec = w;
      job->tensor = t;
      a->jobs[j] = job;
      a->in_flight++;
      pthread_mutex_lock (&a->lock);
      a->queue[a->tail++] = job;
      pthread_cond_broadcast (&a->cond);
      pthread_mutex_unlock (&a->lock);
    }
}

/* Tensor @i's job, once done (the caller owns it), or %NULL */
static WeightJob *
ahead_take (Ahead *a, guint i)
{
  WeightJob *job = a->jobs && i < a->n ? a->jobs[i] : NULL;

  if (job == NULL)
    return NULL;
  pthread_mutex_lock (&a->lock);
  while (!job->done)
    pthread_cond_wait (&a->cond, &a->lock);
  pthread_mutex_unlock (&a->lock);
  a->jobs[i] = NULL;
  a->in_flight--;
  return job;
}

/* ---- layers ------------------------------------------------------------------------ */

/* @job: the weight's codes and parameters from a worker, or %NULL */
static gboolean
quantize_layer (QuarkBrevitasQuantizer *self, Layer *L, QuarkModel *model, QuarkCalibration *calibration,
                WeightJob *job, QuarkModel *out, gboolean dump, GError **error)
{
  const char *name = quark_tensor_get_name (L->weight);
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  g_autofree char *zp_name = g_strconcat (name, "_zero_point", NULL);
  g_autoptr(BvBuffer) x = NULL;
  g_autoptr(BvCodes) codes = NULL;   /* integer codes of up to 8 bits, one per byte */
  guint n_dims;
  const gint64 *shape = quark_tensor_get_shape (L->weight, &n_dims);
  gboolean write_zp;
  const char *storage = NULL;
  gsize n;

  /* weights whose float values nothing else needs: quantized alone (on a
   * worker, or here); the others through a float32 copy that the
   * algorithms and the registry format take after */
  if (job)
    {
      if (!job->ok)
        {
          g_propagate_error (error, g_steal_pointer (&job->error));
          return FALSE;
        }
      L->rw = job->r;
      memset (&job->r, 0, sizeof job->r);
      codes = g_steal_pointer (&job->codes);
    }
  else if (takes_alone (self, L->format))
    {
      if (!weight_codes (L->w, L->weight, &L->rw, &codes, error))
        return FALSE;
    }
  else
    {
      x = weight_floats (L->weight, &n, error);
      if (x == NULL)
        return FALSE;
      L->rw.want_values = quark_brevitas_config_get_algorithms (QUARK_BREVITAS_CONFIG (self->config))->bias_correction;
      if (!bv_quantize_weight (L->w, x, shape, n_dims, name, &L->rw, error) ||
          (has_algorithms (self) && !apply_algorithms (self, L, calibration, x, error)) ||
          (L->correction && !add_corrected_bias (L, model, out, error)))
        return FALSE;
      if (L->format)
        return export_layer (self, L, calibration, out, error);
    }
  write_zp = dump ? L->w->kind == BV_INT : !L->w->symmetric;
  if (!dump && L->w->kind == BV_INT && L->w->bits == 4 && n_dims == 2)
    {
      gboolean handled;
      byte_codes (&L->rw, &codes);
      if (!add_int4_quark (out, name, L->w, &L->rw, &codes, shape, &handled, error))
        return FALSE;
      if (handled)
        {
          JsonObject *d = describe (L->w, name, scale_name, zp_name, L->w->is_signed ? "int4" : "uint4");
          json_object_set_string_member (d, "packing", "eight codes per int32 word, AWQ order 0,2,4,6,1,3,5,7; "
                                                       "per group transposed to [in, out/8]");
          json_object_set_string_member (L->info, "type", L->layer_type);
          json_object_set_object_member (L->info, "weight", d);
          goto activations;
        }
    }
  if (!add_codes (out, name, L->w, &L->rw, &codes, shape, n_dims, !dump, &storage, error))
    return FALSE;
  if (!add_floats (out, scale_name, L->rw.scales, L->rw.n_params, L->rw.param_shape, L->rw.param_n_dims, error) ||
      (write_zp && !add_ints (out, zp_name, int_storage (L->w->bits, L->w->is_signed), L->rw.zero_points,
                              L->rw.n_params, L->rw.param_shape, L->rw.param_n_dims, error)))
    return FALSE;
  json_object_set_string_member (L->info, "type", L->layer_type);
  json_object_set_object_member (L->info, "weight", describe (L->w, name, scale_name, write_zp ? zp_name : NULL, storage));

activations:
  for (QuarkRole role = QUARK_ROLE_INPUT; role <= QUARK_ROLE_OUTPUT; role++)
    {
      const char *what = role == QUARK_ROLE_INPUT ? "input" : "output";
      BvSpec *a = quark_brevitas_config_get_bv_spec (QUARK_BREVITAS_CONFIG (self->config), L->layer, L->layer_type,
                                                     role, NULL);
      g_autofree char *as = g_strdup_printf ("%s.%s_scale", L->layer, what);
      g_autofree char *az = g_strdup_printf ("%s.%s_zero_point", L->layer, what);
      float s;
      gint32 z;
      gboolean azp;

      if (a == NULL)
        continue;
      if (a->dynamic)
        {
          json_object_set_object_member (L->info, what, describe (a, NULL, NULL, NULL, NULL));
          json_object_set_boolean_member (json_object_get_object_member (L->info, what), "dynamic", TRUE);
          continue;
        }
      if (!activation_params (a, L->layer, role, calibration, &s, &z, error))
        return FALSE;
      azp = a->kind == BV_INT && (dump || !a->symmetric);
      if (!add_floats (out, as, &s, 1, NULL, 0, error) ||
          (azp && !add_ints (out, az, int_storage (a->bits, a->is_signed), &z, 1, NULL, 0, error)))
        return FALSE;
      json_object_set_object_member (L->info, what, describe (a, NULL, as, azp ? az : NULL, NULL));
      if (role == QUARK_ROLE_INPUT && a->kind == BV_INT)
        {
          L->input_scale = s;
          L->has_input_scale = TRUE;
          L->input_bits = a->bits;
        }
    }
  return quantize_bias (self, L, model, out, dump, error);
}

/* ---- the model ---------------------------------------------------------------------- */

static const char *
weight_layer (QuarkTensor *t, char **layer)
{
  const char *name = quark_tensor_get_name (t);
  const char *type = quark_tensor_guess_layer_type (t);

  *layer = NULL;
  if (type == NULL || !g_str_has_suffix (name, ".weight") || strstr (name, "embed") != NULL)
    return NULL;
  *layer = g_strndup (name, strlen (name) - strlen (".weight"));
  return type;
}

/* The Quark dtype whose container holds a described tensor's codes. */
static const char *
container_dtype (JsonObject *d)
{
  const char *storage = json_object_has_member (d, "storage") ? json_object_get_string_member (d, "storage") : NULL;
  gint64 bits = json_object_get_int_member (d, "bit_width");

  if (storage && strchr (storage, ' ') == NULL)
    return storage;
  if (json_object_has_member (d, "exponent_bit_width"))
    return bits == 4 ? "fp4" : bits == 6 ? (json_object_get_int_member (d, "exponent_bit_width") == 2 ? "fp6_e2m3"
                                                                                                    : "fp6_e3m2")
                              : json_object_get_int_member (d, "exponent_bit_width") == 5 ? "fp8_e5m2" : "fp8_e4m3";
  return quark_dtype_get_name (int_storage ((int) bits, json_object_get_boolean_member (d, "signed")));
}

static JsonNode *
quark_layout_config (QuarkBrevitasQuantizer *self, JsonObject *layers)
{
  /* AMD Quark's schema, with the layers' container dtypes, and what
   * Brevitas did (bit widths, quantizers) in a member of its own */
  static const char * const keys[] = { "weight", "input", "output", "bias" };
  static const char * const quark_keys[] = { "weight", "input_tensors", "output_tensors", "bias" };
  JsonObject *qc = json_object_new ();
  JsonObject *global = json_object_new ();
  JsonObject *by_name = json_object_new ();
  JsonObject *export = json_object_new ();
  JsonObject *brevitas = json_object_new ();
  g_autoptr(GList) members = json_object_get_members (layers);

  for (GList *l = members; l; l = l->next)
    {
      JsonObject *info = json_object_get_object_member (layers, l->data);
      JsonObject *entry = json_object_new ();
      for (guint k = 0; k < G_N_ELEMENTS (keys); k++)
        {
          JsonObject *d = json_object_has_member (info, keys[k]) ? json_object_get_object_member (info, keys[k]) : NULL;
          JsonObject *spec;
          if (d == NULL)
            {
              json_object_set_null_member (entry, quark_keys[k]);
              continue;
            }
          spec = json_object_new ();
          json_object_set_string_member (spec, "dtype", container_dtype (d));
          json_object_set_string_member (spec, "qscheme", g_str_equal (json_object_get_string_member (d, "granularity"),
                                                                       "mx_block")
                                                          ? "per_group" : json_object_get_string_member (d, "granularity"));
          {
            JsonObject *bs = json_object_get_object_member (d, "spec");
            json_object_set_boolean_member (spec, "symmetric", !json_object_has_member (bs, "symmetric") ||
                                                               json_object_get_boolean_member (bs, "symmetric"));
          }
          if (json_object_has_member (d, "group_size"))
            {
              json_object_set_int_member (spec, "ch_axis", -1);
              json_object_set_int_member (spec, "group_size", json_object_get_int_member (d, "group_size"));
            }
          else if (g_str_equal (json_object_get_string_member (d, "granularity"), "per_channel"))
            json_object_set_int_member (spec, "ch_axis", 0);
          json_object_set_boolean_member (spec, "is_dynamic", json_object_has_member (d, "dynamic"));
          json_object_set_string_member (spec, "round_method", "half_even");
          json_object_set_string_member (spec, "scale_type", "float");
          json_object_set_object_member (entry, quark_keys[k], spec);
        }
      json_object_set_object_member (by_name, l->data, entry);
    }
  json_object_set_string_member (qc, "quant_method", "quark");
  json_object_set_null_member (global, "weight");
  json_object_set_null_member (global, "input_tensors");
  json_object_set_null_member (global, "output_tensors");
  json_object_set_null_member (global, "bias");
  json_object_set_object_member (qc, "global_quant_config", global);
  json_object_set_object_member (qc, "layer_type_quant_config", json_object_new ());
  json_object_set_object_member (qc, "layer_quant_config", by_name);
  json_object_set_array_member (qc, "exclude", json_array_new ());
  json_object_set_array_member (export, "kv_cache_group", json_array_new ());
  json_object_set_string_member (export, "pack_method", "reorder");
  json_object_set_string_member (export, "weight_format", "real_quantized");
  json_object_set_object_member (qc, "export", export);
  json_object_set_object_member (brevitas, "layers", json_object_ref (layers));
  {
    /* the algorithms that ran, in Brevitas's terms (AMD Quark's top-level
     * algo_config names the quark backend's) */
    g_autoptr(JsonNode) cfg = quark_quantization_config_to_json (self->config);
    static const char * const lists[] = { "pre_quant_opt_config", "algo_config" };
    for (guint i = 0; i < G_N_ELEMENTS (lists); i++)
      {
        JsonNode *algos = json_object_get_member (json_node_get_object (cfg), lists[i]);
        if (algos)
          json_object_set_member (brevitas, lists[i], json_node_copy (algos));
      }
  }
  json_object_set_object_member (qc, "brevitas", brevitas);
  /* the libquark config that made the checkpoint, to read it back */
  json_object_set_member (qc, "libquark_config", quark_quantization_config_to_json (self->config));
  return bv_node_take (qc);
}

static JsonNode *
integers_description (QuarkBrevitasQuantizer *self, JsonObject *layers)
{
  JsonObject *o = json_object_new ();
  JsonObject *arith = json_object_new ();

  json_object_set_string_member (o, "format", "libquark-integers");
  json_object_set_int_member (o, "version", 1);
  json_object_set_string_member (o, "quant_method", "brevitas");
  json_object_set_string_member (o, "file", "integers.json");
  json_object_set_string_member (arith, "dequantize", "x = (q - z) * s, in float32; z is 0 when no zero point is given");
  json_object_set_string_member (arith, "quantize_activation",
                                 "q = clamp(round_half_even(x / s + z), qmin, qmax), x / s a float32 division");
  json_object_set_string_member (arith, "linear",
                                 "acc[o] = sum_k (q_w[o,k] - z_w) * (q_x[k] - z_x) + q_b[o]; "
                                 "y[o] = acc[o] * s_x * s_w[o] (s_w per output channel or per tensor)");
  json_object_set_string_member (arith, "minifloat",
                                 "codes are sign, exponent, mantissa bits of the format; value = decode(code) * s");
  json_object_set_string_member (arith, "scale_shapes",
                                 "per_tensor: []; per_channel: [out_channels]; per_group: [rows, groups]; "
                                 "mx_block: [rows, blocks of group_size along the last axis]");
  json_object_set_object_member (o, "arithmetic", arith);
  json_object_set_member (o, "libquark_config", quark_quantization_config_to_json (self->config));
  json_object_set_object_member (o, "layers", json_object_ref (layers));
  return bv_node_take (o);
}

/* A weight to quantize: floating point only; integers, booleans and FP8
 * pass through unchanged. */
static const char *
quantizable_weight_layer (QuarkTensor *t, char **layer)
{
  if (!quark_dtype_is_quantizable (quark_tensor_get_dtype (t)))
    {
      *layer = NULL;
      return NULL;
    }
  return weight_layer (t, layer);
}

static void
layer_clear (Layer *L)
{
  bv_result_clear (&L->rw);
  g_clear_pointer (&L->correction, g_free);
}

/* The tensors one input tensor became, to @writer in their order */
static gboolean
write_chunk (QuarkCheckpointWriter *writer, QuarkModel *chunk, const char *origin, GError **error)
{
  for (guint k = 0; k < quark_model_get_n_tensors (chunk); k++)
    if (!quark_checkpoint_writer_add_with_origin (writer, quark_model_get_tensor_at (chunk, k), origin, error))
      return FALSE;
  return TRUE;
}

/* The model through the config: into the returned model, or, with
 * @writer, each input tensor's output and at the end the metadata to
 * @writer as soon as they are made (the returned model, empty, then only
 * says that the run succeeded), so that the output of one layer at a time
 * is in memory. */
static QuarkModel *
run (QuarkBrevitasQuantizer *self, QuarkModel *model, QuarkCalibration *calibration, GCancellable *cancellable,
     QuarkCheckpointWriter *writer, JsonNode **sidecar, GError **error)
{
  g_autoptr(QuarkModel) out = quark_model_new ();
  g_autoptr(GHashTable) quantized_biases = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr(GStrvBuilder) corrected = g_strv_builder_new ();
  g_autoptr(JsonObject) layers = json_object_new ();
  gboolean dump = g_strcmp0 (self->export_format, "integers") == 0;
  g_autoptr(QuarkCheckpointFormat) format = NULL;
  guint n = quark_model_get_n_tensors (model);
  JsonNode *metadata = quark_model_get_metadata (model), *qc;
  JsonNode *meta;
  g_auto(Ahead) ahead = { 0 };

  /* pre_quant_opt_config changed the float model before calibration */
  if (quark_brevitas_config_get_algorithms (QUARK_BREVITAS_CONFIG (self->config))->equalize &&
      !bv_model_is_equalized (model))
    {
      g_set_error_literal (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                           "the config equalizes the model's activations (pre_quant_opt_config), and this model was "
                           "not equalized: calibrate and quantize the model "
                           "quark_model_quantizer_prepare_model_with_calibration() gives");
      return NULL;
    }
  /* AMD Quark's layout and the integer dump are this backend's own (they
   * describe Brevitas's quantizers); every other registry format takes the
   * logical tensors */
  if (!dump && g_strcmp0 (self->export_format, "quark") != 0)
    {
      format = quark_registry_new_format (quark_registry_get_default (), self->export_format, error);
      if (format == NULL)
        {
          g_prefix_error (error, "export-format: ");
          return NULL;
        }
    }
  /* before any work: every weight fits its quantizer's layout and static
   * activation quantizers have statistics; biases are quantized with their
   * layer (they may come before the weight) */
  for (guint i = 0; i < n; i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (model, i);
      QuarkBrevitasConfig *config = QUARK_BREVITAS_CONFIG (self->config);
      g_autofree char *layer = NULL;
      const char *type = quantizable_weight_layer (t, &layer);
      const BvSpec *w = type ? quark_brevitas_config_get_bv_spec (config, layer, type, QUARK_ROLE_WEIGHT, NULL) : NULL;
      guint n_dims;
      const gint64 *shape = quark_tensor_get_shape (t, &n_dims);

      if (format && type)
        {
          /* the format learns every layer, quantized or left in float */
          g_autoptr(QuarkTensorSpec) ws = quark_checkpoint_format_note_config_layer (format, self->config, layer, type);
          if (ws && quark_brevitas_config_get_bv_spec (config, layer, type, QUARK_ROLE_BIAS, NULL))
            {
              g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                           "layer %s: quantized biases cannot be written in the %s format (use the quark format "
                           "or integers)", layer, self->export_format);
              return NULL;
            }
          if (ws && !quark_checkpoint_format_check_weight (format, quark_tensor_get_name (t), shape, n_dims, ws, error))
            return NULL;
          if (ws && g_str_has_suffix (layer, "k_proj") && quark_checkpoint_format_get_kv_cache_after_rope (format) &&
              quark_brevitas_config_get_bv_spec (config, layer, type, QUARK_ROLE_OUTPUT, NULL))
            {
              g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                           "layer %s: the engines of the %s format quantize the cached keys after RoPE, and the "
                           "brevitas backend calibrates k_proj's output where the layer makes it (use the quark "
                           "backend with kv_cache_post_rope)", layer, self->export_format);
              return NULL;
            }
        }
      if (w == NULL)
        continue;
      if (!bv_check_layout (w, shape, n_dims, quark_tensor_get_name (t), error) ||
          !check_algorithms (self, calibration, layer, type, n_dims, error))
        return NULL;
      /* a corrected bias is written with its layer */
      if (quark_brevitas_config_get_algorithms (config)->bias_correction)
        g_hash_table_add (quantized_biases, g_strconcat (layer, ".bias", NULL));
      for (QuarkRole role = QUARK_ROLE_INPUT; role <= QUARK_ROLE_OUTPUT; role++)
        {
          const BvSpec *a = quark_brevitas_config_get_bv_spec (config, layer, type, role, NULL);
          if (a && !a->dynamic && a->restrict_type != BV_RESTRICT_UNSCALED && calibration == NULL)
            {
              g_set_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION,
                           "layer %s: the %s quantizer %s is calibrated, but no calibration statistics were given",
                           layer, role == QUARK_ROLE_INPUT ? "input" : "output", bv_spec_describe (a));
              return NULL;
            }
        }
      if (quark_brevitas_config_get_bv_spec (config, layer, type, QUARK_ROLE_BIAS, NULL))
        g_hash_table_add (quantized_biases, g_strconcat (layer, ".bias", NULL));
    }
  if (format && !quark_checkpoint_format_prepare (format, error))
    return NULL;
  /* Brevitas's scales are its own float32 values: a format that stores
   * them narrower would change what the codes dequantize to */
  for (guint i = 0; format && i < n; i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (model, i);
      g_autofree char *layer = NULL;
      const char *type = quantizable_weight_layer (t, &layer);
      g_autoptr(QuarkTensorSpec) ws = type ? quark_quantization_config_get_tensor_spec (self->config, layer, type,
                                                                                        QUARK_ROLE_WEIGHT) : NULL;
      QuarkDType sd;

      if (ws == NULL ||
          (sd = quark_checkpoint_format_get_scale_dtype (format, layer, ws, quark_tensor_get_dtype (t))) == QUARK_DTYPE_F32)
        continue;
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "layer %s: the %s format stores these scales as %s, but the brevitas backend keeps Brevitas's "
                   "float32 scales (use a float32 model, the quark format, or the quark backend)",
                   layer, self->export_format, quark_dtype_get_name (sd));
      return NULL;
    }
  ahead_init (&ahead, self->threads, n);
  for (guint i = 0; i < n; i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (model, i);
      g_autofree char *layer = NULL;
      const char *type = NULL;
      /* where this tensor's output goes first */
      g_autoptr(QuarkModel) chunk = writer ? quark_model_new () : g_object_ref (out);
      Layer L = { 0 };
      g_autoptr(WeightJob) job = NULL;
      gboolean ok;

      ahead_fill (&ahead, self, model, format, quantized_biases, i);
      job = ahead_take (&ahead, i);

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        return NULL;
      quark_model_quantizer_report_progress (QUARK_MODEL_QUANTIZER (self), i + 1, n, quark_tensor_get_name (t));
      if (g_hash_table_contains (quantized_biases, quark_tensor_get_name (t)))
        continue;
      L.w = layer_weight_spec (self, t, &layer, &type);
      if (L.w == NULL)
        {
          if (!quark_model_add_tensor (chunk, t, error) ||
              (writer && !write_chunk (writer, chunk, quark_tensor_get_name (t), error)))
            return NULL;
          continue;
        }
      L.layer = layer;
      L.layer_type = type;
      L.weight = t;
      L.format = format;
      L.info = json_object_new ();
      ok = quantize_layer (self, &L, model, calibration, job, chunk, dump, error) &&
           (writer == NULL || write_chunk (writer, chunk, quark_tensor_get_name (t), error));
      if (ok)
        json_object_set_object_member (layers, layer, json_object_ref (L.info));
      if (ok && L.correction)
        g_strv_builder_add (corrected, layer);
      json_object_unref (L.info);
      layer_clear (&L);
      if (!ok)
        return NULL;
      /* the weight is done with: let the kernel drop its mapped pages */
      quark_tensor_release_mapped_pages (t);
    }

  meta = metadata && JSON_NODE_HOLDS_OBJECT (metadata) ? quark_json_copy (metadata)
                                                        : bv_node_take (json_object_new ());
  if (json_object_has_member (json_node_get_object (meta), BV_PREPARED_KEY))
    json_object_remove_member (json_node_get_object (meta), BV_PREPARED_KEY);
  {
    /* biases that bias correction added, declared where the architecture
     * can declare them (transformers' llama: attention_bias, mlp_bias) */
    g_auto(GStrv) layers_with_bias = g_strv_builder_end (corrected);
    g_auto(GStrv) left = layers_with_bias[0] ? quark_topology_declare_biases (meta, (const char * const *) layers_with_bias)
                                             : NULL;
    if (left && left[0])
      g_message ("%u layers gained a bias that the model's config.json cannot declare (the first: %s): libquark's "
                 "runtime runs them, transformers would leave them out", g_strv_length (left), left[0]);
  }
  if (format)
    {
      qc = quark_checkpoint_format_build_quantization_config (format, error);
      if (qc == NULL)
        {
          json_node_unref (meta);
          return NULL;
        }
    }
  else
    qc = dump ? integers_description (self, layers) : quark_layout_config (self, layers);
  if (sidecar)
    *sidecar = dump ? json_node_copy (qc) : NULL;
  json_object_set_member (json_node_get_object (meta), "quantization_config", qc);
  if (writer)
    {
      /* sealed, the writer keeps it without a copy (a few MB of nodes for
       * a large model's layer descriptions); @out is dropped unseen */
      json_node_seal (meta);
      quark_checkpoint_writer_set_metadata (writer, meta);
    }
  else
    quark_model_set_metadata (out, meta);
  json_node_unref (meta);
  return g_steal_pointer (&out);
}

static QuarkModel *
quark_brevitas_quantizer_quantize_model (QuarkModelQuantizer *quantizer, QuarkModel *model,
                                         QuarkCalibration *calibration, GCancellable *cancellable, GError **error)
{
  return run (QUARK_BREVITAS_QUANTIZER (quantizer), model, calibration, cancellable, NULL, NULL, error);
}

static gboolean
quark_brevitas_quantizer_quantize_model_to_writer (QuarkModelQuantizer *quantizer, QuarkModel *model,
                                                   QuarkCalibration *calibration, QuarkCheckpointWriter *writer,
                                                   GCancellable *cancellable, GError **error)
{
  g_autoptr(JsonNode) sidecar = NULL;
  g_autoptr(QuarkModel) out = run (QUARK_BREVITAS_QUANTIZER (quantizer), model, calibration, cancellable, writer,
                                   &sidecar, error);

  /* the tensors and the metadata went to @writer as they were made */
  if (out == NULL)
    return FALSE;
  if (sidecar)
    {
      g_autofree char *text = quark_json_to_string (sidecar, TRUE);
      g_autoptr(GBytes) bytes = g_bytes_new_take (g_strconcat (text, "\n", NULL), strlen (text) + 1);
      if (!quark_checkpoint_writer_add_file (writer, "integers.json", bytes, error))
        return FALSE;
    }
  return TRUE;
}

/* What quantize_tensor and quantize_activation return: NAME (the codes,
 * one per element), NAME_scale and, for integers, NAME_zero_point. */
static gboolean
add_result (QuarkModel *out, const char *name, const BvSpec *bv, const BvResult *r, const gint64 *shape,
            guint n_dims, GError **error)
{
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  g_autofree char *zp_name = g_strconcat (name, "_zero_point", NULL);
  g_autoptr(BvCodes) codes = NULL;
  const char *storage;

  return add_codes (out, name, bv, r, &codes, shape, n_dims, FALSE, &storage, error) &&
         add_floats (out, scale_name, r->scales, r->n_params, r->param_shape, r->param_n_dims, error) &&
         ((bv->kind != BV_INT && bv->kind != BV_MX_INT) ||
          add_ints (out, zp_name, code_storage (bv), r->zero_points, r->n_params, r->param_shape, r->param_n_dims,
                    error));
}

/* One weight-like tensor through the quantizer a spec from this backend's
 * config carries: NAME (codes, unpacked), NAME_scale, NAME_zero_point. */
static QuarkModel *
quark_brevitas_quantizer_quantize_tensor (QuarkModelQuantizer *quantizer, QuarkTensor *tensor,
                                          QuarkTensorSpec *spec, GError **error)
{
  BvSpec *bv = bv_spec_from_tensor_spec (spec);
  g_autoptr(QuarkModel) out = quark_model_new ();
  g_autofree float *x = NULL;
  g_auto(BvResult) r = { 0 };
  const char *name = quark_tensor_get_name (tensor);
  const gint64 *shape;
  guint n_dims;
  gsize n;

  if (bv == NULL || bv->kind == BV_BIAS || bv->role != QUARK_ROLE_WEIGHT)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "tensor %s: the brevitas backend quantizes single tensors with weight specs from its own "
                   "configs (get_tensor_spec)", name);
      return NULL;
    }
  x = quark_tensor_to_floats (tensor, &n, error);
  if (x == NULL)
    return NULL;
  shape = quark_tensor_get_shape (tensor, &n_dims);
  if (!bv_quantize_weight (bv, x, shape, n_dims, name, &r, error) ||
      !add_result (out, name, bv, &r, shape, n_dims, error))
    return NULL;
  return g_steal_pointer (&out);
}

/* ---- activations as an API ---------------------------------------------------- */

static BvSpec *
activation_spec (QuarkTensorSpec *spec, const char *what, GError **error)
{
  BvSpec *bv = bv_spec_from_tensor_spec (spec);

  if (bv == NULL || (bv->role != QUARK_ROLE_INPUT && bv->role != QUARK_ROLE_OUTPUT))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "%s: the brevitas backend quantizes activations with activation specs from its own configs "
                   "(get_tensor_spec for an input or output)", what);
      return NULL;
    }
  return bv;
}

/* Static parameters from the running means of the per-batch statistics
 * (numerics.md B8), or without calibration Brevitas's uncalibrated quantizer: the
 * statistic's buffer starts at 1, so s = 1 / T through the restriction. */
static gboolean
quark_brevitas_quantizer_activation_params (QuarkModelQuantizer *quantizer, QuarkTensorSpec *spec,
                                            QuarkCalibration *calibration, const char *layer_name, QuarkRole role,
                                            QuarkTensor **scale, QuarkTensor **zero_point, GError **error)
{
  BvSpec *bv = activation_spec (spec, layer_name ? layer_name : "activation", error);
  g_autoptr(QuarkModel) zm = quark_model_new ();
  float s;
  gint32 z;

  if (bv == NULL)
    return FALSE;
  if (calibration == NULL)
    bv_uncalibrated_params (bv, &s, &z);
  else if (!activation_params (bv, layer_name, role, calibration, &s, &z, error))
    return FALSE;
  *scale = quark_tensor_new_from_floats ("scale", NULL, 0, &s, 1, error);
  if (*scale == NULL)
    return FALSE;
  if (bv->kind == BV_INT)
    {
      if (!add_ints (zm, "zero_point", int_storage (bv->bits, bv->is_signed), &z, 1, NULL, 0, error))
        return FALSE;
      *zero_point = g_object_ref (quark_model_get_tensor (zm, "zero_point"));
    }
  return TRUE;
}

/* An activation through its quantizer into @r: dynamic scales from the
 * tensor, or the given static ones (the uncalibrated quantizer's without). */
static gboolean
quantize_activation_values (QuarkTensor *tensor, BvSpec *bv, QuarkTensor *scale, QuarkTensor *zero_point,
                            BvResult *r, GError **error)
{
  const char *name = quark_tensor_get_name (tensor);
  g_autofree float *copy = NULL, *scales = NULL, *zpf = NULL;
  g_autofree gint32 *zps = NULL;
  const float *x;
  const gint64 *shape;
  guint n_dims;
  gsize n, n_scales = 0, n_zps = 0;
  float s0;
  gint32 z0;

  /* float32 is read in place; other dtypes widened once */
  if (quark_tensor_get_dtype (tensor) == QUARK_DTYPE_F32)
    {
      x = quark_tensor_peek_data (tensor, NULL);
      n = quark_tensor_get_n_elements (tensor);
    }
  else if ((x = copy = quark_tensor_to_floats (tensor, &n, error)) == NULL)
    return FALSE;
  shape = quark_tensor_get_shape (tensor, &n_dims);
  if (!bv->dynamic)
    {
      if (scale == NULL)
        {
          /* the uncalibrated quantizer (or the unscaled one) */
          bv_uncalibrated_params (bv, &s0, &z0);
          scales = g_memdup2 (&s0, sizeof s0);
          zps = g_memdup2 (&z0, sizeof z0);
          n_scales = 1;
        }
      else
        {
          scales = quark_tensor_to_floats (scale, &n_scales, error);
          if (scales == NULL || (zero_point && (zpf = quark_tensor_to_floats (zero_point, &n_zps, error)) == NULL))
            return FALSE;
          if (n_scales != 1 || (zero_point && n_zps != 1))
            {
              g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                           "tensor %s: the %s quantizer takes one scale and zero point per tensor, not %"
                           G_GSIZE_FORMAT, name, bv_spec_describe (bv), n_scales);
              return FALSE;
            }
          zps = g_new0 (gint32, 1);
          if (zpf)
            zps[0] = (gint32) zpf[0];
        }
    }
  return bv_quantize_activation (bv, x, shape, n_dims, scales, zps, n_scales, name, r, error);
}

static QuarkModel *
quark_brevitas_quantizer_quantize_activation (QuarkModelQuantizer *quantizer, QuarkTensor *tensor,
                                              QuarkTensorSpec *spec, QuarkTensor *scale, QuarkTensor *zero_point,
                                              GError **error)
{
  const char *name = quark_tensor_get_name (tensor);
  BvSpec *bv = activation_spec (spec, name, error);
  g_autoptr(QuarkModel) out = quark_model_new ();
  g_auto(BvResult) r = { 0 };
  const gint64 *shape;
  guint n_dims;

  if (bv == NULL || !quantize_activation_values (tensor, bv, scale, zero_point, &r, error))
    return NULL;
  shape = quark_tensor_get_shape (tensor, &n_dims);
  if (!add_result (out, name, bv, &r, shape, n_dims, error))
    return NULL;
  return g_steal_pointer (&out);
}

/* Brevitas's dequantized values themselves, (q - z) · s as Brevitas forms
 * them (NaN where Brevitas gives NaN). */
static QuarkTensor *
quark_brevitas_quantizer_fake_quantize_activation (QuarkModelQuantizer *quantizer, QuarkTensor *tensor,
                                                   QuarkTensorSpec *spec, QuarkTensor *scale, QuarkTensor *zero_point,
                                                   GError **error)
{
  const char *name = quark_tensor_get_name (tensor);
  BvSpec *bv = activation_spec (spec, name, error);
  g_auto(BvResult) r = { 0 };
  g_autoptr(GBytes) bytes = NULL;
  const gint64 *shape;
  guint n_dims;

  r.want_values = TRUE;
  if (bv == NULL || !quantize_activation_values (tensor, bv, scale, zero_point, &r, error))
    return NULL;
  shape = quark_tensor_get_shape (tensor, &n_dims);
  bytes = g_bytes_new_take (g_steal_pointer (&r.dequantized), r.n * sizeof (float));
  return quark_tensor_new (name, QUARK_DTYPE_F32, shape, n_dims, bytes, error);
}

/* ---- reading the exports back ------------------------------------------------ */

static gboolean
read_error (GError **error, const char *name, const char *what)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: %s", name, what);
  return FALSE;
}

static gint32 *
tensor_ints (QuarkTensor *t, gsize *n)
{
  gsize count = (gsize) quark_tensor_get_n_elements (t);
  gint32 *v = g_new (gint32, MAX (count, 1));
  const guint8 *d = quark_tensor_peek_data (t, NULL);

  for (gsize i = 0; i < count; i++)
    switch (quark_tensor_get_dtype (t))
      {
      case QUARK_DTYPE_I8: v[i] = ((const gint8 *) d)[i]; break;
      case QUARK_DTYPE_I16: v[i] = ((const gint16 *) d)[i]; break;
      case QUARK_DTYPE_U16: v[i] = ((const guint16 *) d)[i]; break;
      case QUARK_DTYPE_I32: v[i] = ((const gint32 *) d)[i]; break;
      default: v[i] = d[i]; break;
      }
  *n = count;
  return v;
}

/* The codes of one weight in its logical [O, ...] order, one int32 per
 * element, with scales and zero points in the layout's parameter order. */
static gboolean
read_weight (const BvSpec *bv, QuarkModel *quantized, gboolean packed, const char *name, gint64 *shape,
             guint *n_dims, BvResult *r, GError **error)
{
  QuarkTensor *codes = quark_model_get_tensor (quantized, name);
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  g_autofree char *zp_name = g_strconcat (name, "_zero_point", NULL);
  QuarkTensor *scale = quark_model_get_tensor (quantized, scale_name);
  QuarkTensor *zp = quark_model_get_tensor (quantized, zp_name);
  const gint64 *stored = quark_tensor_get_shape (codes, n_dims);
  g_autofree float *s = NULL;
  gsize n_s;

  if (scale == NULL)
    return read_error (error, name, "its _scale tensor is missing");
  memcpy (shape, stored, *n_dims * sizeof (gint64));
  s = quark_tensor_to_floats (scale, &n_s, error);
  if (s == NULL)
    return FALSE;
  if (bv->kind == BV_INT && bv->bits == 4 && quark_tensor_get_dtype (codes) == QUARK_DTYPE_I32 && *n_dims == 2)
    {
      /* AMD Quark's int4 words */
      gboolean group = bv->qscheme == QUARK_QSCHEME_PER_GROUP;
      gsize o = group ? (gsize) quark_tensor_get_dim (scale, 1) : (gsize) stored[0];
      gsize i = group ? (gsize) stored[0] : (gsize) stored[1] * 8;
      g_autofree gint8 *q8 = g_new (gint8, MAX (o * i, 1));
      if (group && (gsize) stored[1] * 8 != o)
        return read_error (error, name, "its int4 words do not fit its scales");
      shape[0] = (gint64) o;
      shape[1] = (gint64) i;
      r->n = o * i;
      r->codes = g_new (gint32, MAX (r->n, 1));
      r->n_params = n_s;
      r->scales = g_new (float, MAX (n_s, 1));
      r->zero_points = g_new0 (gint32, MAX (n_s, 1));
      if (group)
        {
          gsize groups = n_s / MAX (o, 1);
          quark_kernel_unpack_int4 (quark_tensor_peek_data (codes, NULL), i, o, TRUE, bv->is_signed, q8);
          for (gsize a = 0; a < o; a++)
            for (gsize b = 0; b < i; b++)
              r->codes[a * i + b] = q8[b * o + a];
          for (gsize a = 0; a < o; a++)
            for (gsize g = 0; g < groups; g++)
              r->scales[a * groups + g] = s[g * o + a];
          if (zp && quark_tensor_get_n_elements (zp) * 8 == n_s)
            {
              g_autofree gint8 *z8 = g_new (gint8, MAX (n_s, 1));
              quark_kernel_unpack_int4 (quark_tensor_peek_data (zp, NULL), groups, o, TRUE, bv->is_signed, z8);
              for (gsize a = 0; a < o; a++)
                for (gsize g = 0; g < groups; g++)
                  r->zero_points[a * groups + g] = z8[g * o + a];
            }
        }
      else
        {
          quark_kernel_unpack_int4 (quark_tensor_peek_data (codes, NULL), o, i, TRUE, bv->is_signed, q8);
          for (gsize k = 0; k < r->n; k++)
            r->codes[k] = q8[k];
          memcpy (r->scales, s, n_s * sizeof (float));
          /* symmetric int4 zero points are 0 */
        }
      return TRUE;
    }
  if (packed && (bv->bits == 4 || bv->bits == 6) && quark_tensor_get_dtype (codes) == QUARK_DTYPE_U8 &&
      *n_dims > 0 && (bv->bits == 4 || shape[*n_dims - 1] % 3 == 0))
    {
      /* FP4 / FP6 packed: the logical last dimension is larger */
      gsize stored_n = (gsize) quark_tensor_get_n_elements (codes);
      gsize n = bv->bits == 4 ? stored_n * 2 : stored_n / 3 * 4;
      g_autofree guint8 *c8 = g_new (guint8, MAX (n, 1));
      gsize need = 1;
      for (guint d = 0; d + 1 < *n_dims; d++)
        need *= (gsize) shape[d];
      if (bv->bits == 4)
        quark_kernel_unpack_fp4 (quark_tensor_peek_data (codes, NULL), n, c8);
      else
        quark_kernel_unpack_fp6 (quark_tensor_peek_data (codes, NULL), n, c8);
      shape[*n_dims - 1] = (gint64) (n / MAX (need, 1));
      r->n = n;
      r->codes = g_new (gint32, MAX (n, 1));
      for (gsize k = 0; k < n; k++)
        r->codes[k] = c8[k];
    }
  else
    r->codes = tensor_ints (codes, &r->n);
  r->n_params = n_s;
  r->scales = g_steal_pointer (&s);
  if (zp)
    {
      gsize n_z;
      r->zero_points = tensor_ints (zp, &n_z);
      if (n_z != r->n_params)
        return read_error (error, zp_name, "does not have one zero point per scale");
    }
  else
    r->zero_points = g_new0 (gint32, MAX (r->n_params, 1));
  return TRUE;
}

typedef struct {
  const BvSpec *bv;
  const BvResult *r;
  QuarkFpFormat fmt;
  gboolean custom;      /* a minifloat of its own: bv_float_decode () */
  float *out;
  gsize p;
} Restore;

static void
restore_chunk (size_t offset, size_t len, void *data)
{
  Restore *d = data;
  float s = d->r->scales[d->p];
  gint32 z = d->r->zero_points[d->p];

  for (gsize i = offset; i < offset + len; i++)
    d->out[i] = d->bv->kind != BV_FLOAT && d->bv->kind != BV_MX_FLOAT ? (float) (d->r->codes[i] - z) * s
                : d->custom ? bv_float_decode (d->bv, (guint16) d->r->codes[i]) * s
                : (float) quark_kernel_fp_decode (&d->fmt, (uint16_t) d->r->codes[i]) * s;
}

/* The weights (and integer biases) of a brevitas export in float32, every
 * other tensor as it is: what quark verify compares with the original. */
/* Whether the export packed a layer's minifloat codes (FP4 two per byte,
 * FP6 four per three bytes), as its description in the checkpoint's
 * quantization_config says ("storage"): whether they fit is a property of
 * the logical shape, which the packed tensor no longer shows. */
static gboolean
packed_codes (JsonObject *qc, const char *layer)
{
  JsonObject *o = qc;
  const char * const path[] = { "brevitas", "layers", layer, "weight" };

  for (guint i = 0; o && i < G_N_ELEMENTS (path); i++)
    {
      JsonNode *n = json_object_get_member (o, path[i]);
      o = n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
    }
  return o && strstr (json_object_get_string_member_with_default (o, "storage", ""), " packed ") != NULL;
}

static QuarkModel *
quark_brevitas_quantizer_dequantize_model (QuarkModelQuantizer *quantizer, QuarkModel *quantized, GError **error)
{
  QuarkBrevitasQuantizer *self = QUARK_BREVITAS_QUANTIZER (quantizer);
  g_autoptr(QuarkModel) out = quark_model_new ();
  JsonNode *meta = quark_model_get_metadata (quantized);
  JsonObject *qc = meta && JSON_NODE_HOLDS_OBJECT (meta) &&
                   json_object_has_member (json_node_get_object (meta), "quantization_config") &&
                   JSON_NODE_HOLDS_OBJECT (json_object_get_member (json_node_get_object (meta), "quantization_config"))
                   ? json_object_get_object_member (json_node_get_object (meta), "quantization_config") : NULL;
  /* the integer dump keeps every code unpacked */
  gboolean dump = qc && g_strcmp0 (json_object_get_string_member_with_default (qc, "format", ""),
                                   "libquark-integers") == 0;

  for (guint t = 0; t < quark_model_get_n_tensors (quantized); t++)
    {
      QuarkTensor *x = quark_model_get_tensor_at (quantized, t);
      const char *name = quark_tensor_get_name (x);
      g_autofree char *layer = NULL;
      const char *type = NULL;
      const BvSpec *bv = NULL;
      g_auto(BvResult) r = { 0 };
      gint64 shape[QUARK_TENSOR_MAX_DIMS];
      guint n_dims;
      QuarkKernelLayout l;
      g_autofree float *values = NULL;

      if ((type = weight_layer (x, &layer)) != NULL)
        bv = quark_brevitas_config_get_bv_spec (QUARK_BREVITAS_CONFIG (self->config), layer, type,
                                                QUARK_ROLE_WEIGHT, NULL);
      else if (g_str_has_suffix (name, ".bias") && quark_dtype_is_integer (quark_tensor_get_dtype (x)))
        {
          g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
          QuarkTensor *scale = quark_model_get_tensor (quantized, scale_name);
          g_autofree float *s = NULL;
          gsize n_s = 0;
          if (scale == NULL || (s = quark_tensor_to_floats (scale, &n_s, error)) == NULL)
            {
              if (scale == NULL)
                read_error (error, name, "an integer bias without its _scale tensor");
              return NULL;
            }
          r.codes = tensor_ints (x, &r.n);
          if (n_s != 1 && n_s != r.n)
            {
              read_error (error, name, "its scales do not fit it");
              return NULL;
            }
          values = g_new (float, MAX (r.n, 1));
          for (gsize i = 0; i < r.n; i++)
            values[i] = (float) r.codes[i] * s[n_s == 1 ? 0 : i];
          if (!add_bytes (out, name, QUARK_DTYPE_F32, quark_tensor_get_shape (x, NULL), quark_tensor_get_n_dims (x),
                          g_steal_pointer (&values), r.n * sizeof (float), error))
            return NULL;
          continue;
        }
      if (bv == NULL)
        {
          /* parameters of quantized tensors are not tensors of the model */
          if (!g_str_has_suffix (name, "_scale") && !g_str_has_suffix (name, "_zero_point") &&
              !quark_model_add_tensor (out, x, error))
            return NULL;
          continue;
        }
      if (!read_weight (bv, quantized, !dump && packed_codes (qc, layer), name, shape, &n_dims, &r, error))
        return NULL;
      if (!quark_kernel_layout_init (&l, shape, n_dims, bv->qscheme,
                                     bv->qscheme == QUARK_QSCHEME_PER_GROUP ? -1 : 0, bv->group_size) ||
          l.n_params != r.n_params || l.n != r.n)
        {
          read_error (error, name, "its codes and scales do not fit its quantizer");
          return NULL;
        }
      values = g_new (float, MAX (r.n, 1));
      for (gsize p = 0; p < l.n_params; p++)
        {
          Restore d = { bv, &r, bv_fp_format (bv), bv_spec_is_custom_float (bv), values, p };
          quark_kernel_layout_foreach_chunk (&l, p, restore_chunk, &d);
        }
      if (!add_bytes (out, name, QUARK_DTYPE_F32, shape, n_dims, g_steal_pointer (&values), r.n * sizeof (float),
                      error))
        return NULL;
    }
  quark_model_set_metadata (out, quark_model_get_metadata (quantized));
  return g_steal_pointer (&out);
}

/* ---- pre_quant_opt_config ------------------------------------------------------ */

static gboolean
quark_brevitas_quantizer_prepare_needs_calibration (QuarkModelQuantizer *quantizer)
{
  QuarkBrevitasQuantizer *self = QUARK_BREVITAS_QUANTIZER (quantizer);
  return quark_brevitas_config_get_algorithms (QUARK_BREVITAS_CONFIG (self->config))->equalize;
}

static QuarkModel *
quark_brevitas_quantizer_prepare_model_with_calibration (QuarkModelQuantizer  *quantizer,
                                                         QuarkModel           *model,
                                                         QuarkCalibration     *calibration,
                                                         GCancellable         *cancellable,
                                                         GError              **error)
{
  QuarkBrevitasQuantizer *self = QUARK_BREVITAS_QUANTIZER (quantizer);
  const BvAlgorithms *a = quark_brevitas_config_get_algorithms (QUARK_BREVITAS_CONFIG (self->config));

  if (!a->equalize)
    return g_object_ref (model);
  return bv_equalize_model (model, calibration, a->equalize_alpha, a->scaling_layers, a->decoder_layers, cancellable,
                            error);
}

static QuarkModel *
quark_brevitas_quantizer_prepare_model (QuarkModelQuantizer  *quantizer,
                                        QuarkModel           *model,
                                        GCancellable         *cancellable,
                                        GError              **error)
{
  if (!quark_brevitas_quantizer_prepare_needs_calibration (quantizer))
    return g_object_ref (model);
  g_set_error_literal (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION,
                       "activation_equalization (pre_quant_opt_config) learns from the float model's activations: "
                       "prepare the model with quark_model_quantizer_prepare_model_with_calibration() and the "
                       "second moments of its layer inputs");
  return NULL;
}

static void
quantizer_iface_init (QuarkModelQuantizerInterface *iface)
{
  iface->quantize_model = quark_brevitas_quantizer_quantize_model;
  iface->quantize_model_to_writer = quark_brevitas_quantizer_quantize_model_to_writer;
  iface->quantize_tensor = quark_brevitas_quantizer_quantize_tensor;
  iface->dequantize_model = quark_brevitas_quantizer_dequantize_model;
  iface->activation_params = quark_brevitas_quantizer_activation_params;
  iface->quantize_activation = quark_brevitas_quantizer_quantize_activation;
  iface->fake_quantize_activation = quark_brevitas_quantizer_fake_quantize_activation;
  iface->prepare_model = quark_brevitas_quantizer_prepare_model;
  iface->prepare_needs_calibration = quark_brevitas_quantizer_prepare_needs_calibration;
  iface->prepare_model_with_calibration = quark_brevitas_quantizer_prepare_model_with_calibration;
}
