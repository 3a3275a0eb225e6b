/* quark-quark-quantizer.c: the quark backend's quantizer
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * AMD Quark semantics (numerics reference, section 2): statistics are
 * widened to include 0; symmetric integer scales divide the absolute maximum
 * by half the code span (127.5 for int8); asymmetric scales divide the range
 * by the code span and round the zero point half to even; scales are floored
 * at the float32 epsilon; codes are clamp (rne (x * fl (1 / s) + z)).
 */
#include "quark-quark-quantizer.h"
#include "quark-quark-config.h"
#include "quark-quark-rows.h"
#include "quark-quark-scaling.h"

#include <math.h>
#include <string.h>




struct _QuarkQuarkQuantizer
{
  GObject parent_instance;
  QuarkQuantizationConfig *config;
  guint threads;
  gboolean allow_nonfinite;
  char *export_format;
};

enum {
  PROP_0,
  PROP_CONFIG,
  PROP_THREADS,
  PROP_ALLOW_NONFINITE,
  PROP_EXPORT_FORMAT,
};

static void quantizer_iface_init (QuarkModelQuantizerInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (QuarkQuarkQuantizer, quark_quark_quantizer, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (QUARK_TYPE_MODEL_QUANTIZER, quantizer_iface_init))

static void
quark_quark_quantizer_dispose (GObject *object)
{
  g_clear_object (&QUARK_QUARK_QUANTIZER (object)->config);
  g_clear_pointer (&QUARK_QUARK_QUANTIZER (object)->export_format, g_free);
  G_OBJECT_CLASS (quark_quark_quantizer_parent_class)->dispose (object);
}

static void
quark_quark_quantizer_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  if (prop_id == PROP_CONFIG)
    g_value_set_object (value, QUARK_QUARK_QUANTIZER (object)->config);
  else if (prop_id == PROP_THREADS)
    g_value_set_uint (value, QUARK_QUARK_QUANTIZER (object)->threads);
  else if (prop_id == PROP_ALLOW_NONFINITE)
    g_value_set_boolean (value, QUARK_QUARK_QUANTIZER (object)->allow_nonfinite);
  else if (prop_id == PROP_EXPORT_FORMAT)
    g_value_set_string (value, QUARK_QUARK_QUANTIZER (object)->export_format);
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
quark_quark_quantizer_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  if (prop_id == PROP_CONFIG)
    QUARK_QUARK_QUANTIZER (object)->config = g_value_dup_object (value);
  else if (prop_id == PROP_THREADS)
    QUARK_QUARK_QUANTIZER (object)->threads = g_value_get_uint (value);
  else if (prop_id == PROP_ALLOW_NONFINITE)
    QUARK_QUARK_QUANTIZER (object)->allow_nonfinite = g_value_get_boolean (value);
  else if (prop_id == PROP_EXPORT_FORMAT)
    {
      g_free (QUARK_QUARK_QUANTIZER (object)->export_format);
      QUARK_QUARK_QUANTIZER (object)->export_format = g_strdup (g_value_get_string (value) ? g_value_get_string (value)
                                                                                             : "quark");
    }
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
quark_quark_quantizer_class_init (QuarkQuarkQuantizerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = quark_quark_quantizer_dispose;
  object_class->get_property = quark_quark_quantizer_get_property;
  object_class->set_property = quark_quark_quantizer_set_property;
  g_object_class_override_property (object_class, PROP_CONFIG, "config");
  /* worker threads: tensors, and on the row path the rows of each, quantized
   * in parallel (outputs keep model order; docs/performance.md) */
  g_object_class_install_property (object_class, PROP_THREADS,
    g_param_spec_uint ("threads", "Threads", "Threads quantizing tensors and their rows in parallel", 1, 256, 1,
                       G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));
  /* NaN and infinities in weights: an error naming the tensor unless set;
   * when set, NaN quantizes as 0 and +-inf as the tensor's largest finite
   * magnitude (so they saturate), and the statistics see finite values only */
  g_object_class_install_property (object_class, PROP_ALLOW_NONFINITE,
    g_param_spec_boolean ("allow-nonfinite", "Allow non-finite",
                          "Quantize NaN as 0 and infinities as the largest finite magnitude instead of failing",
                          FALSE, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));
  /* the checkpoint format of quantize_model() and quantize_model_to_writer():
   * any format of the registry (quark formats) */
  g_object_class_install_property (object_class, PROP_EXPORT_FORMAT,
    g_param_spec_string ("export-format", "Export format",
                         "The checkpoint format results are written in (a name from the registry's formats)",
                         "quark", G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));
}

static void
quark_quark_quantizer_init (QuarkQuarkQuantizer *self)
{
  self->threads = 1;
  self->export_format = g_strdup ("quark");
}

void
quark_quark_int_params (float                 min_val,
                        float                 max_val,
                        gboolean              symmetric,
                        int32_t               qmin,
                        int32_t               qmax,
                        QuarkKernelIntParams *p)
{
  float scale, zero_point = 0.0f;

  memset (p, 0, sizeof *p);
  p->qmin = qmin;
  p->qmax = qmax;

  if (min_val > max_val)
    {
      /* nothing observed (an empty tensor): unit scale */
      scale = 1.0f;
    }
  else
    {
      float lo = fminf (min_val, 0.0f);
      float hi = fmaxf (max_val, 0.0f);

      if (symmetric)
        {
          float amax = fmaxf (-lo, hi);
          float half_span = (float) ((gint64) qmax - qmin) / 2.0f;
          scale = fmaxf (amax / half_span, QUARK_EPS);
        }
      else
        {
          float span = hi - lo;
          float z;
          scale = fmaxf (span / (float) ((gint64) qmax - qmin), QUARK_EPS);
          z = (float) qmin - rintf (lo / scale);
          zero_point = fminf (fmaxf (z, (float) qmin), (float) qmax);
        }
    }

  p->scale = scale;
  p->inv_scale = 1.0f / scale;
  p->zero_point = zero_point;
}

/* Embedding tables, which AMD Quark's LLM flow leaves in float. */
static gboolean
is_embedding (const char *name)
{
  static const char * const markers[] = { "embed", "wte.", "wpe.", "word_embeddings", "position_embeddings",
                                          "token_type_embeddings", NULL };
  for (guint i = 0; markers[i]; i++)
    if (strstr (name, markers[i]))
      return TRUE;
  return FALSE;
}

/* Maps the trailing ".weight" tensors of quantizable layers (Linear and
 * convolutions) to a layer type by rank, as PyTorch's modules shape their
 * weights; embeddings, norms (1-D) and other tensors are not layers to
 * quantize. */
static const char *
layer_type_for (QuarkTensor *tensor)
{
  if (is_embedding (quark_tensor_get_name (tensor)))
    return NULL;
  return quark_tensor_guess_layer_type (tensor);
}

static gboolean
add_new_tensor (QuarkModel     *out,
                const char     *name,
                QuarkDType      dtype,
                const gint64   *shape,
                guint           n_dims,
                gpointer        data,
                gsize           size,
                GError        **error)
{
  g_autoptr(GBytes) bytes = quark_buffer_to_bytes (data, size);
  g_autoptr(QuarkTensor) tensor = quark_tensor_new (name, dtype, shape, n_dims, bytes, error);

  return tensor != NULL && quark_model_add_tensor (out, tensor, error);
}

typedef struct {
  const float *x;
  float lo, hi;
  gboolean finite;
  const guint16 *xb;   /* the tensor's bfloat16 values, read in place when set */
} StatsData;

static void
stats_chunk (size_t offset, size_t len, void *data)
{
  StatsData *s = data;
  float lo, hi;
  if (!(s->xb ? quark_kernel_min_max_bf16 (s->xb + offset, len, &lo, &hi)
              : quark_kernel_min_max_f32 (s->x + offset, len, &lo, &hi)))
    s->finite = FALSE;
  s->lo = MIN (s->lo, lo);
  s->hi = MAX (s->hi, hi);
}

/* Replaces the min/max range of a symmetric spec with the statistic of
 * its observer (numerics reference 3.6; the histogram form is libquark's). */
static void
apply_observer (QuarkTensorSpec          *spec,
                const QuarkKernelLayout  *l,
                gsize                     p,
                const float              *x,
                float                    *scratch,
                float                    *half_span_or_max,
                int32_t                   qmin,
                int32_t                   qmax,
                StatsData                *stats)
{
  gsize n;
  float *sorted;
  float amax, c;

  if (quark_tensor_spec_get_observer (spec) == QUARK_OBSERVER_MIN_MAX || stats->lo > stats->hi)
    return;
  n = quark_kernel_layout_gather_f32 (l, p, x, scratch);
  amax = fmaxf (-fminf (stats->lo, 0.0f), fmaxf (stats->hi, 0.0f));
  switch (quark_tensor_spec_get_observer (spec))
    {
    case QUARK_OBSERVER_PERCENTILE:
      sorted = g_new (float, MAX (n, 1));
      c = quark_kernel_abs_percentile_f32 (scratch, n, quark_tensor_spec_get_percentile (spec), sorted);
      g_free (sorted);
      break;
    case QUARK_OBSERVER_HISTOGRAM_PERCENTILE:
      c = quark_kernel_abs_histogram_percentile_f32 (scratch, n, quark_tensor_spec_get_percentile (spec), 4200);
      break;
    case QUARK_OBSERVER_MSE:
      c = quark_kernel_mse_search_int_f32 (scratch, n, amax, *half_span_or_max, qmin, qmax, FALSE);
      break;
    case QUARK_OBSERVER_MIN_MAX:
    default:
      return;
    }
  stats->lo = -c;
  stats->hi = c;
}

typedef struct {
  const float *x;
  const guint16 *xb;   /* the same values as bfloat16, when the tensor is */
  QuarkKernelIntParams int_params;
  const QuarkFpFormat *fmt;
  float fp_scale;
  QuarkDType dtype;
  guint8 *codes;
  gsize esize;
} QuantData;

static void
quantize_int_chunk (size_t offset, size_t len, void *data)
{
  QuantData *q = data;
  q->int_params.offset = offset;
  if (q->xb)
    quark_kernel_quantize_int_bf16 (q->xb + offset, len, &q->int_params, q->dtype, q->codes + offset * q->esize);
  else
    quark_kernel_quantize_int_f32 (q->x + offset, len, &q->int_params, q->dtype, q->codes + offset * q->esize);
}

static void
quantize_fp_chunk (size_t offset, size_t len, void *data)
{
  QuantData *q = data;
  if (q->xb)
    quark_kernel_fp_quantize_bf16 (q->fmt, q->xb + offset, len, q->fp_scale, q->codes + offset);
  else
    quark_kernel_fp_quantize_f32 (q->fmt, q->x + offset, len, q->fp_scale, q->codes + offset);
}

/* AMD Quark's power-of-two integer parameters (numerics reference 2.7). */
static void
quark_pow2_int_params (float                 min_val,
                       float                 max_val,
                       gboolean              symmetric,
                       int32_t               qmin,
                       int32_t               qmax,
                       QuarkKernelIntParams *p)
{
  float lo = fminf (min_val, 0.0f), hi = fmaxf (max_val, 0.0f);
  float range, sf, z0, scale, rmin;

  memset (p, 0, sizeof *p);
  if (min_val > max_val)
    lo = hi = 0.0f;
  if (symmetric)
    {
      float amax = fmaxf (-lo, hi);
      lo = -amax;
      hi = amax;
    }
  range = hi - lo;
  sf = range / (float) ((gint64) qmax - qmin);
  if (range == 0.0f)
    sf = 1.0f;
  z0 = truncf ((float) qmin - lo / sf);
  scale = quark_kernel_pow2_scale (sf, QUARK_POW2_ROUND);
  rmin = fminf (((float) qmin - z0) * scale, 0.0f);
  p->zero_point = rintf ((float) qmin - rmin / scale);
  if (symmetric && qmin == 0 && p->zero_point == 127.0f)
    p->zero_point = 128.0f;   /* Quark's symmetric uint8 rule */
  p->zero_point = fminf (fmaxf (p->zero_point, (float) qmin), (float) qmax);
  p->scale = scale;
  p->inv_scale = 1.0f / scale;
  p->qmin = qmin;
  p->qmax = qmax;
}


static int block_dim (QuarkTensorSpec *spec, int which);

/* The parameter layout @spec gives @tensor, or an error naming both. */
static gboolean
spec_layout_init (QuarkTensor *tensor, QuarkTensorSpec *spec, QuarkKernelLayout *l, GError **error)
{
  guint n_dims;
  const gint64 *shape = quark_tensor_get_shape (tensor, &n_dims);
  g_autofree char *text = NULL;

  if (quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_BLOCK
      ? quark_kernel_layout_init_blocks (l, shape, n_dims, block_dim (spec, 0), block_dim (spec, 1))
      : quark_kernel_layout_init (l, shape, n_dims, quark_tensor_spec_get_qscheme (spec),
                                  quark_tensor_spec_get_ch_axis (spec), quark_tensor_spec_get_group_size (spec)))
    return TRUE;
  text = quark_tensor_format_shape (tensor);
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
               "tensor %s: shape %s does not fit the spec's axis (ch_axis %d)", quark_tensor_get_name (tensor), text,
               quark_tensor_spec_get_ch_axis (spec));
  return FALSE;
}

/* Whether @tensor's shape fits @spec and the checkpoint format's layout for
 * it: the spec's axis, whole groups, then the format's own rules (AMD
 * Quark's: multiples of 8 of packed int4, of 2 and 4 of packed FP4 and
 * FP6). The model loop checks every tensor before it quantizes any, so that
 * a layout that cannot be exported fails at once rather than after the
 * work. Sets *@casts for the float16/bfloat16 casts (no layout), else the
 * parameter layout *@l. */
static gboolean
check_export_layout (QuarkTensor *tensor, QuarkTensorSpec *spec, QuarkCheckpointFormat *format, gboolean *casts,
                     QuarkKernelLayout *l, GError **error)
{
  const char *name = quark_tensor_get_name (tensor);
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);
  QuarkQScheme qscheme = quark_tensor_spec_get_qscheme (spec);
  guint n_dims;
  const gint64 *shape = quark_tensor_get_shape (tensor, &n_dims);

  *casts = dtype == QUARK_DTYPE_F16 || dtype == QUARK_DTYPE_BF16;
  if (*casts)
    return TRUE;
  if (!spec_layout_init (tensor, spec, l, error))
    return FALSE;
  /* numerics.md: a ragged last group quantizes, but checkpoints hold whole
   * groups only (engine loaders assume them); MX blocks are zero-padded */
  if (qscheme == QUARK_QSCHEME_PER_GROUP && quark_tensor_spec_get_group_size (spec) > 0 &&
      quark_tensor_spec_get_scale_format (spec) != QUARK_SCALE_FORMAT_E8M0 && n_dims > 0)
    {
      int axis = quark_tensor_spec_get_ch_axis (spec);
      gsize group = (gsize) quark_tensor_spec_get_group_size (spec);
      axis = axis < 0 ? axis + (int) n_dims : axis;
      if (axis >= 0 && axis < (int) n_dims && (gsize) shape[axis] % group != 0)
        {
          /* the way out: the largest smaller power of two that divides it
           * (576, SmolLM's width: 64), or the layer left in float */
          gsize divisor = group;
          g_autofree char *hint = NULL;
          while (divisor > 16 && (divisor & (divisor - 1)) == 0 && (gsize) shape[axis] % divisor != 0)
            divisor /= 2;
          hint = divisor >= 16 && (divisor & (divisor - 1)) == 0 && (gsize) shape[axis] % divisor == 0
                 ? g_strdup_printf ("groups of %" G_GSIZE_FORMAT " divide it (group_size in the config; presets "
                                    "such as int4_wo_%" G_GSIZE_FORMAT " have them), or ", divisor, divisor)
                 : g_strdup ("");
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "tensor %s: the grouped dimension (%" G_GINT64_FORMAT ") must be a multiple of %"
                       G_GSIZE_FORMAT " for a checkpoint (whole groups only): %sleave such layers in float "
                       "(exclude, --exclude)", name, shape[axis], group, hint);
          return FALSE;
        }
    }
  return quark_checkpoint_format_check_weight (format, name, shape, n_dims, spec, error);
}

static int
block_dim (QuarkTensorSpec *spec, int which)
{
  int rows = 0, cols = 0;
  quark_tensor_spec_get_block_size (spec, &rows, &cols);
  return which == 0 ? rows : cols;
}

/* Quantizes @tensor with @spec; adds NAME (codes), NAME_scale and, for
 * integers, NAME_zero_point to @out. */
/* The allow-nonfinite policy: NaN becomes 0, +-inf the largest finite
 * magnitude of @x with its sign. */
static void
replace_nonfinite (float *x, gsize n)
{
  float amax = 0.0f;

  for (gsize i = 0; i < n; i++)
    if (isfinite (x[i]))
      amax = fmaxf (amax, fabsf (x[i]));
  for (gsize i = 0; i < n; i++)
    if (isnan (x[i]))
      x[i] = 0.0f;
    else if (isinf (x[i]))
      x[i] = copysignf (amax, x[i]);
}

/* Gives back a buffer of quark_buffer_alloc() (or g_malloc()) left in a
 * pointer variable (of any type) when it goes out of scope. */
static void
buffer_cleanup (void *variable)
{
  quark_buffer_free (*(gpointer *) variable);
}

/* @size zeroed bytes from the tensor buffer pool: the parameters of a large
 * tensor (a group's scales, an MX block's exponents) are reused from tensor
 * to tensor like its codes, rather than faulted in again from the C heap */
static gpointer
param_buffer (gsize size)
{
  gpointer p = quark_buffer_alloc (MAX (size, 1));
  memset (p, 0, MAX (size, 1));
  return p;
}

/* @n scales, exact in @dtype, as that dtype's bytes */
static gpointer
narrow_scales (const float *scales, gsize n, QuarkDType dtype)
{
  guint16 *bits = quark_buffer_alloc (MAX (n, 1) * sizeof (guint16));
  quark_kernel_convert_from_f32 (dtype, scales, bits, n);
  return bits;
}

/* Whether the row path's units of a 2-D weight of @shape under @spec are
 * its whole rows (per group, or per output channel), each a multiple of
 * @per_word codes long: the codes can then be packed into words along
 * rows as each row is quantized */
static gboolean
codes_along_rows (QuarkTensorSpec *spec, const gint64 *shape, gint64 per_word)
{
  QuarkQScheme qs = quark_tensor_spec_get_qscheme (spec);

  return shape[1] % per_word == 0 &&
         (qs == QUARK_QSCHEME_PER_GROUP ||
          (qs == QUARK_QSCHEME_PER_CHANNEL && quark_tensor_spec_get_ch_axis (spec) == 0));
}

/* Quantizes @tensor with @spec into NAME (codes), NAME_scale and, for
 * integers, NAME_zero_point in @out. Float scales are rounded to
 * @scale_dtype before the codes are computed with them, and stored in it.
 * NVFP4 specs (E4M3 scales) take @global_scale (or, when it is 0, the
 * tensor's own) and write it as NAME_global_scale. With an int4 @layout
 * (the checkpoint format's, quark_checkpoint_format_get_code_layout ()),
 * codes that take the row path are packed into it a block of rows at a
 * time, while the block is in cache, or a row at a time along rows
 * (QUARK_CODE_LAYOUT_UINT4_ROWS: int4's top bits flipped a row at a
 * time), and NAME is that int32 tensor; with QUARK_CODE_LAYOUT_UINT8_ROWS
 * so are 8-bit codes (int8's top bits flipped a row at a time). */
static gboolean
quantize_tensor_with_spec (QuarkTensor        *tensor,
                           QuarkTensorSpec    *spec,
                           gboolean            allow_nonfinite,
                           QuarkDType          scale_dtype,
                           float               global_scale,
                           QuarkQuarkWorkers  *workers,
                           QuarkCodeLayout     layout,
                           QuarkModel         *out,
                           GError            **error)
{
  const char *name = quark_tensor_get_name (tensor);
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);
  gsize esize = quark_dtype_get_element_size (dtype);
  gboolean is_int = quark_dtype_is_integer (dtype);
  gboolean mx = quark_tensor_spec_get_scale_format (spec) == QUARK_SCALE_FORMAT_E8M0;
  gboolean e5m3 = quark_tensor_spec_get_scale_format (spec) == QUARK_SCALE_FORMAT_E5M3;
  gboolean nvfp4 = quark_tensor_spec_get_scale_format (spec) == QUARK_SCALE_FORMAT_E4M3;
  guint8 *e5m3_codes __attribute__ ((cleanup (buffer_cleanup))) = NULL;
  g_autofree float *x = NULL;
  g_autofree char *scale_name = NULL, *zp_name = NULL;
  guint8 *codes __attribute__ ((cleanup (buffer_cleanup))) = NULL;
  float *scales __attribute__ ((cleanup (buffer_cleanup))) = NULL;
  guint8 *zps __attribute__ ((cleanup (buffer_cleanup))) = NULL;
  g_autofree float *scratch = NULL;
  guint n_dims;
  const gint64 *shape = quark_tensor_get_shape (tensor, &n_dims);
  QuarkKernelLayout l;
  const guint16 *xb = NULL;
  gboolean rows, packed, byte_rows, along_rows;
  gsize n;

  /* the common schemes take the row path (quark-quark-rows.c), straight
   * from the tensor's data. Otherwise bfloat16 weights go to the kernels
   * as they are (the same codes as widened, faster; the widening is exact);
   * with the min/max observer no binary32 copy of the tensor is made at
   * all. The allow-nonfinite policy, the other observers and the casts
   * work on a copy. */
  n = (gsize) quark_tensor_get_n_elements (tensor);
  if (dtype == QUARK_DTYPE_F16 || dtype == QUARK_DTYPE_BF16)
    {
      /* Quark's float16/bfloat16 specs are casts (PlaceholderObserver):
       * round to nearest even, no scale */
      guint8 *cast;
      x = quark_tensor_to_floats (tensor, &n, error);
      if (x == NULL)
        return FALSE;
      cast = g_malloc (MAX (n, 1) * 2);
      quark_kernel_convert_from_f32 (dtype, x, cast, n);
      return add_new_tensor (out, name, dtype, shape, n_dims, cast, n * 2, error);
    }
  if (!spec_layout_init (tensor, spec, &l, error))
    return FALSE;
  rows = quark_quark_rows_apply (tensor, spec, allow_nonfinite, &l);
  if (!rows)
    {
      if (quark_tensor_get_dtype (tensor) == QUARK_DTYPE_BF16 && !allow_nonfinite && G_BYTE_ORDER == G_LITTLE_ENDIAN)
        xb = quark_tensor_peek_data (tensor, NULL);
      if (xb == NULL || quark_tensor_spec_get_observer (spec) != QUARK_OBSERVER_MIN_MAX)
        {
          x = quark_tensor_to_floats (tensor, &n, error);
          if (x == NULL)
            return FALSE;
        }
      if (allow_nonfinite)
        replace_nonfinite (x, n);
    }
  /* int4 on the row path packed as it is quantized: per group along
   * columns ([I, O/8] words), per group or output channel along rows
   * ([O, I/8]; UINT4_ROWS: int4's nibbles flipped a row at a time) */
  along_rows = layout == QUARK_CODE_LAYOUT_INT4_ROWS || layout == QUARK_CODE_LAYOUT_UINT4_ROWS;
  packed = rows && (dtype == QUARK_DTYPE_INT4 || dtype == QUARK_DTYPE_UINT4) && n_dims == 2 && shape[0] > 0 &&
           shape[1] > 0 &&
           (along_rows ? codes_along_rows (spec, shape, 8)
            : (layout == QUARK_CODE_LAYOUT_INT4_COLUMNS || layout == QUARK_CODE_LAYOUT_INT4_COLUMNS_REORDERED) &&
              quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_GROUP && l.rows % 8 == 0);
  /* 8-bit codes on the row path as the unsigned bytes of int32 words
   * along rows (UINT8_ROWS) */
  byte_rows = rows && layout == QUARK_CODE_LAYOUT_UINT8_ROWS && G_BYTE_ORDER == G_LITTLE_ENDIAN &&
              (dtype == QUARK_DTYPE_I8 || dtype == QUARK_DTYPE_U8) && n_dims == 2 && shape[0] > 0 && shape[1] > 0 &&
              codes_along_rows (spec, shape, 4);
  if (packed)
    codes = quark_buffer_alloc (n / 2);   /* every word is written */
  else if (rows)
    codes = quark_buffer_alloc (n * esize);   /* every code is written */
  else
    codes = g_malloc0 (MAX (n, 1) * esize);
  scale_name = g_strconcat (name, "_scale", NULL);
  zp_name = g_strconcat (name, "_zero_point", NULL);

  if (mx)
    {
      QuarkMxParams params = { dtype, quark_tensor_spec_get_scale_calculation_mode (spec),
                               (gsize) quark_tensor_spec_get_group_size (spec), TRUE };
      guint8 *bytes __attribute__ ((cleanup (buffer_cleanup))) = param_buffer (l.n_params);
      float lo, hi;

      if (rows)
        {
          if (!quark_quark_rows_quantize (tensor, spec, &l, QUARK_DTYPE_F32, workers, QUARK_CODE_LAYOUT_BYTES, codes,
                                          NULL, NULL, bytes, error))
            return FALSE;
        }
      else if (!(xb ? quark_kernel_min_max_bf16 (xb, n, &lo, &hi) : quark_kernel_min_max_f32 (x, n, &lo, &hi)))
        {
          quark_quark_nonfinite_error (error, name);
          return FALSE;
        }
      else if (xb)
        quark_kernel_mx_quantize_bf16 (&params, xb, l.rows, l.cols, codes, bytes);
      else
        quark_kernel_mx_quantize_f32 (&params, x, l.rows, l.cols, codes, bytes);
      return add_new_tensor (out, name, dtype, shape, n_dims, g_steal_pointer (&codes), n * esize, error) &&
             add_new_tensor (out, scale_name, QUARK_DTYPE_F8_E8M0, l.param_shape, l.param_n_dims,
                             g_steal_pointer (&bytes), l.n_params, error);
    }

  scales = quark_buffer_alloc (MAX (l.n_params, 1) * sizeof (float));   /* every scale is written */
  if (e5m3 || nvfp4)
    e5m3_codes = param_buffer (l.n_params);   /* (the E4M3 codes of NVFP4 too) */
  if (nvfp4 && global_scale <= 0.0f)
    {
      /* the global scale from this tensor alone */
      float lo, hi;
      if (!(xb ? quark_kernel_min_max_bf16 (xb, n, &lo, &hi) : quark_kernel_min_max_f32 (x, n, &lo, &hi)))
        {
          quark_quark_nonfinite_error (error, name);
          return FALSE;
        }
      global_scale = quark_kernel_nvfp4_global_scale (n ? fmaxf (fabsf (lo), fabsf (hi)) : 0.0f);
    }
  if (is_int)
    zps = param_buffer (l.n_params * esize);
  if (quark_tensor_spec_get_observer (spec) != QUARK_OBSERVER_MIN_MAX)
    scratch = g_new (float, MAX (n, 1));

  if (rows && !quark_quark_rows_quantize (tensor, spec, &l, scale_dtype, workers,
                                          packed || byte_rows ? layout : QUARK_CODE_LAYOUT_BYTES, codes, scales, zps,
                                          NULL, error))
    return FALSE;
  for (gsize p = 0; !rows && p < l.n_params; p++)
    {
      StatsData stats = { x, INFINITY, -INFINITY, TRUE, x ? NULL : xb };
      QuantData q = { .x = x, .xb = xb, .dtype = dtype, .codes = codes, .esize = esize };

      quark_kernel_layout_foreach_chunk (&l, p, stats_chunk, &stats);
      if (!stats.finite)
        {
          quark_quark_nonfinite_error (error, name);
          return FALSE;
        }

      if (is_int)
        {
          gint64 min64, max64;
          float half_span;
          quark_dtype_get_integer_range (dtype, quark_tensor_spec_get_narrow_range (spec), &min64, &max64);
          half_span = (float) (max64 - min64) / 2.0f;
          apply_observer (spec, &l, p, x, scratch, &half_span, (int32_t) min64, (int32_t) max64, &stats);
          if (quark_tensor_spec_get_scale_type (spec) == QUARK_SCALE_POW2)
            quark_pow2_int_params (stats.lo, stats.hi, quark_tensor_spec_get_symmetric (spec),
                                   (int32_t) min64, (int32_t) max64, &q.int_params);
          else
            quark_quark_int_params (stats.lo, stats.hi, quark_tensor_spec_get_symmetric (spec),
                                    (int32_t) min64, (int32_t) max64, &q.int_params);
          q.int_params.round = quark_tensor_spec_get_round_method (spec);
          if (scale_dtype != QUARK_DTYPE_F32)
            {
              if (!quark_quark_round_scale (&q.int_params.scale, scale_dtype, name, error))
                return FALSE;
              q.int_params.inv_scale = 1.0f / q.int_params.scale;
            }
          scales[p] = q.int_params.scale;
          quark_quark_store_zero_point (dtype, zps, p, (int32_t) q.int_params.zero_point);
          quark_kernel_layout_foreach_chunk (&l, p, quantize_int_chunk, &q);
        }
      else
        {
          /* FP8/FP6/FP4 with float32 scales: s = amax / max (eps if 0),
           * codes = encode (clamp (x / s, -max, max)) */
          float amax, fmax_value;
          q.fmt = quark_fp_format_for_dtype (dtype);
          fmax_value = (float) quark_fp_format_max (q.fmt);
          apply_observer (spec, &l, p, x, scratch, &fmax_value, 0, 0, &stats);
          amax = stats.lo > stats.hi ? 0.0f : fmaxf (fabsf (stats.lo), fabsf (stats.hi));
          q.fp_scale = amax / (float) quark_fp_format_max (q.fmt);
          if (q.fp_scale == 0.0f)
            q.fp_scale = QUARK_EPS;
          if (nvfp4)
            /* NVFP4: an E4M3 code of g · amax / 6 per group; the elements
             * are x / (decode (code) / g) */
            q.fp_scale = quark_kernel_nvfp4_group_scale (amax, global_scale, &e5m3_codes[p]);
          else if (e5m3)
            {
              /* the scale itself is stored as an unsigned E5M3 code (round
               * to nearest even, saturating); the elements are quantized
               * with the decoded scale, never with a zero one */
              guint8 c = quark_kernel_e5m3_from_f32 (q.fp_scale);
              if (c == 0)
                c = 1;
              e5m3_codes[p] = c;
              q.fp_scale = quark_kernel_e5m3_to_f32 (c);
            }
          else if (!quark_quark_round_scale (&q.fp_scale, scale_dtype, name, error))
            return FALSE;
          scales[p] = q.fp_scale;
          quark_kernel_layout_foreach_chunk (&l, p, quantize_fp_chunk, &q);
        }
    }

  if (nvfp4)
    {
      g_autofree char *global_name = g_strconcat (name, "_global_scale", NULL);
      float *g = g_new (float, 1);
      gint64 one = 1;
      *g = global_scale;
      return add_new_tensor (out, name, dtype, shape, n_dims, g_steal_pointer (&codes), n * esize, error) &&
             add_new_tensor (out, scale_name, QUARK_DTYPE_F8_E4M3, l.param_shape, l.param_n_dims,
                             g_steal_pointer (&e5m3_codes), l.n_params, error) &&
             add_new_tensor (out, global_name, QUARK_DTYPE_F32, &one, 1, g, sizeof (float), error);
    }
  if (packed)
    {
      gint64 wshape[2] = { shape[1], shape[0] / 8 };
      if (along_rows)
        {
          wshape[0] = shape[0];
          wshape[1] = shape[1] / 8;
        }
      if (!add_new_tensor (out, name, QUARK_DTYPE_I32, wshape, 2, g_steal_pointer (&codes), n / 2, error))
        return FALSE;
    }
  else if (byte_rows)
    {
      gint64 wshape[2] = { shape[0], shape[1] / 4 };
      if (!add_new_tensor (out, name, QUARK_DTYPE_I32, wshape, 2, g_steal_pointer (&codes), n, error))
        return FALSE;
    }
  else if (!add_new_tensor (out, name, dtype, shape, n_dims, g_steal_pointer (&codes), n * esize, error))
    return FALSE;
  if (!(e5m3 ? add_new_tensor (out, scale_name, QUARK_DTYPE_U8, l.param_shape, l.param_n_dims,
                               g_steal_pointer (&e5m3_codes), l.n_params, error)
             : scale_dtype != QUARK_DTYPE_F32
             ? add_new_tensor (out, scale_name, scale_dtype, l.param_shape, l.param_n_dims,
                               narrow_scales (scales, l.n_params, scale_dtype), l.n_params * 2, error)
             : add_new_tensor (out, scale_name, QUARK_DTYPE_F32, l.param_shape, l.param_n_dims,
                               g_steal_pointer (&scales), l.n_params * sizeof (float), error)))
    return FALSE;
  if (is_int &&
      !add_new_tensor (out, zp_name, dtype, l.param_shape, l.param_n_dims,
                       g_steal_pointer (&zps), l.n_params * esize, error))
    return FALSE;
  return TRUE;
}

/* The name of a layer's stored activation scale: LAYER.PREFIX_scale, or
 * for a dynamic NVFP4 spec its static global scale LAYER.PREFIX_global_scale */
static char *
activation_scale_name (QuarkTensorSpec *spec, const char *layer, const char *prefix)
{
  return g_strdup_printf (quark_tensor_spec_get_is_dynamic (spec) ? "%s.%s_global_scale" : "%s.%s_scale", layer,
                          prefix);
}

static gboolean
no_calibration_error (GError **error, const char *layer, const char *role)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION,
               "layer %s: the %s spec is static and needs calibration statistics, "
               "but none were given (quark quantize --calibration FILE)", layer, role);
  return FALSE;
}

/* One static (scale, zero point) from a calibrated range. */
static void
activation_params (QuarkTensorSpec *spec, float lo, float hi, float *scale, gint32 *zero_point)
{
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);
  QuarkKernelIntParams p = { 0 };
  gint64 min64, max64;

  *zero_point = 0;
  if (!quark_dtype_is_integer (dtype))
    {
      /* fp8: s = amax / max, no zero point */
      *scale = fmaxf (fabsf (lo), fabsf (hi)) / (float) quark_fp_format_max (quark_fp_format_for_dtype (dtype));
      if (*scale == 0.0f)
        *scale = QUARK_EPS;
      return;
    }
  quark_dtype_get_integer_range (dtype, quark_tensor_spec_get_narrow_range (spec), &min64, &max64);
  if (quark_tensor_spec_get_scale_type (spec) == QUARK_SCALE_POW2)
    quark_pow2_int_params (lo, hi, quark_tensor_spec_get_symmetric (spec), (int32_t) min64, (int32_t) max64, &p);
  else
    quark_quark_int_params (lo, hi, quark_tensor_spec_get_symmetric (spec), (int32_t) min64, (int32_t) max64, &p);
  *scale = p.scale;
  *zero_point = (gint32) p.zero_point;
}

/* Static activation parameters from calibration statistics: LAYER.input_scale
 * (and _zero_point for integers), or output_. Per tensor they are scalars;
 * per channel, one per channel. */
static gboolean
add_activation_params (QuarkTensorSpec   *spec,
                       const char        *layer,
                       QuarkRole          role,
                       QuarkCalibration  *calibration,
                       const float       *abs_max,
                       float              min_scale,
                       QuarkModel        *out,
                       GError           **error)
{
  const char *prefix = role == QUARK_ROLE_INPUT ? "input" : "output";
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);
  gsize esize = quark_dtype_get_element_size (dtype);
  g_autofree char *scale_name = NULL, *zp_name = NULL;
  g_autofree float *scales = NULL, *mins = NULL, *maxs = NULL;
  g_autofree guint8 *zps = NULL;
  gsize n = 1;
  gint64 shape[1];
  guint n_dims = 0;

  if (!quark_tensor_spec_has_static_scale (spec))
    return TRUE;   /* computed at run time; nothing stored */

  if (calibration == NULL)
    return no_calibration_error (error, layer, prefix);
  if (quark_tensor_spec_get_is_dynamic (spec))
    {
      /* NVFP4 (dynamic group scales): the static global scale
       * 448 · 6 / amax from the calibrated range (compressed-tensors'
       * static_minmax observer: the extremes over all batches) */
      g_autofree char *global_name = activation_scale_name (spec, layer, prefix);
      float lo = 0, hi = 0, *g = g_new (float, 1);
      gint64 one = 1;

      if (abs_max)
        hi = *abs_max;
      else if (!quark_calibration_compute_range (calibration, layer, role, spec, &lo, &hi, error))
        {
          g_free (g);
          return FALSE;
        }
      *g = quark_kernel_nvfp4_global_scale (fmaxf (fabsf (lo), fabsf (hi)));
      return add_new_tensor (out, global_name, QUARK_DTYPE_F32, &one, 1, g, sizeof (float), error);
    }
  if (abs_max)
    {
      /* the input was scaled (AWQ, SmoothQuant): its range after the
       * scaling, for the specs a symmetric range determines */
      if (quark_tensor_spec_get_qscheme (spec) != QUARK_QSCHEME_PER_TENSOR ||
          quark_tensor_spec_get_observer (spec) != QUARK_OBSERVER_MIN_MAX ||
          (quark_dtype_is_integer (dtype) && !quark_tensor_spec_get_symmetric (spec)))
        {
          g_autofree char *s = quark_tensor_spec_to_string (spec);
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "layer %s: its input is scaled by the config's algorithm, and a static %s spec on a scaled "
                       "input is not implemented (per-tensor symmetric min-max specs and dynamic specs are)",
                       layer, s);
          return FALSE;
        }
      mins = g_new (float, 1);
      maxs = g_new (float, 1);
      mins[0] = -*abs_max;
      maxs[0] = *abs_max;
    }
  else if (quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_CHANNEL)
    {
      if (!quark_calibration_get_channel_min_max (calibration, layer, role, NULL, &mins, &maxs, &n))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION,
                       "layer %s: the %s spec is static per channel and needs per-channel calibration "
                       "statistics (calibrate with a session made for this config)", layer, prefix);
          return FALSE;
        }
      shape[0] = (gint64) n;
      n_dims = 1;
    }
  else
    {
      mins = g_new (float, 1);
      maxs = g_new (float, 1);
      if (!quark_calibration_compute_range (calibration, layer, role, spec, mins, maxs, error))
        return FALSE;
    }

  scales = g_new (float, n);
  zps = g_malloc0 (n * esize);
  for (gsize c = 0; c < n; c++)
    {
      gint32 zp;
      activation_params (spec, mins[c], maxs[c], &scales[c], &zp);
      scales[c] = fmaxf (scales[c], min_scale);   /* export.min_kv_scale */
      if (quark_dtype_is_integer (dtype))
        quark_quark_store_zero_point (dtype, zps, c, zp);
    }
  scale_name = activation_scale_name (spec, layer, prefix);
  zp_name = g_strdup_printf ("%s.%s_zero_point", layer, prefix);
  if (!add_new_tensor (out, scale_name, QUARK_DTYPE_F32, shape, n_dims, g_steal_pointer (&scales),
                       n * sizeof (float), error))
    return FALSE;
  return !quark_dtype_is_integer (dtype) ||
         add_new_tensor (out, zp_name, dtype, shape, n_dims, g_steal_pointer (&zps), n * esize, error);
}

/* The layer of a weight to quantize: floating-point tensors only, others
 * (integers, booleans, FP8) are copied unchanged. */
static char *
weight_layer_name (QuarkTensor *tensor)
{
  const char *name = quark_tensor_get_name (tensor);

  if (!g_str_has_suffix (name, ".weight") || layer_type_for (tensor) == NULL ||
      !quark_dtype_is_quantizable (quark_tensor_get_dtype (tensor)))
    return NULL;
  return g_strndup (name, strlen (name) - strlen (".weight"));
}

/* Fails when a name the quantized @tensor is written under (its scale and
 * zero point, its layer's activation parameters) is also an input tensor. */
/* A format whose engines quantize the cached keys after RoPE
 * (compressed-tensors) needs the keys' scale calibrated there: the config
 * must say kv_cache_post_rope */
static gboolean
check_kv_cache_place (QuarkQuarkQuantizer *self, QuarkCheckpointFormat *format, GError **error)
{
  g_auto(GStrv) layers = NULL;

  if (!quark_checkpoint_format_get_kv_cache_after_rope (format) ||
      quark_quark_config_get_kv_cache_post_rope (QUARK_QUARK_CONFIG (self->config)))
    return TRUE;
  layers = quark_checkpoint_format_get_layers (format);
  for (guint i = 0; layers[i]; i++)
    {
      g_autoptr(QuarkTensorSpec) out = NULL;
      if (!g_str_has_suffix (layers[i], "k_proj") ||
          (out = quark_checkpoint_format_get_layer_spec (format, layers[i], QUARK_ROLE_OUTPUT)) == NULL)
        continue;
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "layer %s: the engines of the %s format quantize the cached keys after RoPE (vLLM applies k_scale "
                   "there), and this config calibrates them before it: set \"kv_cache_post_rope\": true",
                   layers[i], quark_checkpoint_format_get_name (format));
      return FALSE;
    }
  return TRUE;
}

static gboolean
check_generated_names (QuarkQuarkQuantizer *self, QuarkModel *model, QuarkTensor *tensor, const char *layer,
                       QuarkTensorSpec *spec, QuarkCalibration *calibration, gboolean need_calibration,
                       GError **error)
{
  static const char * const roles[] = { NULL, "input", "output" };
  const char *name = quark_tensor_get_name (tensor);
  const char *needs_calibration = NULL;
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);

  g_ptr_array_add (names, g_strconcat (name, "_scale", NULL));
  if (quark_dtype_is_integer (quark_tensor_spec_get_dtype (spec)))
    g_ptr_array_add (names, g_strconcat (name, "_zero_point", NULL));
  for (QuarkRole role = QUARK_ROLE_INPUT; role <= QUARK_ROLE_OUTPUT; role++)
    {
      g_autoptr(QuarkTensorSpec) act = quark_quantization_config_get_tensor_spec (self->config, layer,
                                                                                 layer_type_for (tensor), role);
      if (act == NULL || !quark_tensor_spec_has_static_scale (act))
        continue;
      if (needs_calibration == NULL)
        needs_calibration = roles[role];
      g_ptr_array_add (names, activation_scale_name (act, layer, roles[role]));
      if (quark_dtype_is_integer (quark_tensor_spec_get_dtype (act)))
        g_ptr_array_add (names, g_strdup_printf ("%s.%s_zero_point", layer, roles[role]));
    }
  for (guint i = 0; i < names->len; i++)
    if (quark_model_get_tensor (model, g_ptr_array_index (names, i)) != NULL)
      {
        g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                     "tensor %s: the quantized %s would be written under that name, which input tensor %s "
                     "already has", (const char *) g_ptr_array_index (names, i), name,
                     (const char *) g_ptr_array_index (names, i));
        return FALSE;
      }
  if (needs_calibration && calibration == NULL && need_calibration)
    return no_calibration_error (error, layer, needs_calibration);
  return TRUE;
}

/* Dynamic groups' parameters, as round-to-nearest computes them */
typedef struct {
  gboolean symmetric, pow2;
  int32_t qmin, qmax;
  QuarkDType scale_dtype;
} GroupParams;

static void
group_params (const float *values, gsize n, float *scale, float *zero_point, gpointer user_data)
{
  const GroupParams *g = user_data;
  QuarkKernelIntParams p;
  float lo = INFINITY, hi = -INFINITY;

  for (gsize i = 0; i < n; i++)
    {
      lo = fminf (lo, values[i]);
      hi = fmaxf (hi, values[i]);
    }
  if (g->pow2)
    quark_pow2_int_params (lo, hi, g->symmetric, g->qmin, g->qmax, &p);
  else
    quark_quark_int_params (lo, hi, g->symmetric, g->qmin, g->qmax, &p);
  /* narrowed to the checkpoint's scale dtype, as round-to-nearest does */
  if (g->scale_dtype != QUARK_DTYPE_F32)
    quark_quark_round_scale (&p.scale, g->scale_dtype, "GPTQ", NULL);
  *scale = p.scale;
  *zero_point = p.zero_point;
}

/* H of @layer's input from the session, as the weight @name sees it: after
 * AWQ, the layer's input is x / s */
static QuarkTensor *
scaled_gram_of (QuarkCalibration *calibration, QuarkQuarkScalingPlan *plan, const char *layer, const char *name,
                GError **error)
{
  g_autoptr(QuarkTensor) gram = NULL;

  if (calibration == NULL ||
      (gram = quark_calibration_get_second_moments (calibration, layer, NULL, NULL, NULL, NULL, NULL)) == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION,
                   "layer %s: GPTQ needs the second moments of its input (quark quantize --calibration-text, or a "
                   "calibration session with second-moments set)", layer);
      return NULL;
    }
  return quark_quark_scaling_plan_scale_gram (plan, name, gram);
}

/* algo_config's GPTQ: the round-to-nearest codes in *@logical replaced by
 * GPTQ's, from the second moments of the layer's input; the scales and zero
 * points stay, but for dynamic groups of integer specs, which replace them
 * too. Nothing to do without a GPTQ entry, for casts or for weights that
 * are not matrices. @known_gram: the scaled H when the caller has it
 * already (NULL: read from @calibration). */
static gboolean
apply_gptq (QuarkQuarkQuantizer *self, QuarkTensor *tensor, const char *layer, QuarkTensorSpec *spec,
            QuarkCalibration *calibration, QuarkQuarkScalingPlan *plan, QuarkTensor *known_gram,
            QuarkModel **logical, GError **error)
{
  const QuarkQuarkGptq *gptq = quark_quark_config_get_gptq (QUARK_QUARK_CONFIG (self->config));
  const char *name = quark_tensor_get_name (tensor);
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL), *zp_name = g_strconcat (name, "_zero_point", NULL);
  g_autoptr(QuarkTensor) scaled_gram = NULL, codes = NULL, new_scale = NULL, new_zp = NULL, g_idx = NULL;
  g_autoptr(QuarkModel) replaced = NULL;
  QuarkTensor *zp;
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);

  /* casts to float16/bfloat16 have nothing to compensate */
  if (gptq == NULL || dtype == QUARK_DTYPE_F16 || dtype == QUARK_DTYPE_BF16 || quark_tensor_get_n_dims (tensor) != 2)
    return TRUE;
  if (known_gram)
    scaled_gram = g_object_ref (known_gram);
  else if ((scaled_gram = scaled_gram_of (calibration, plan, layer, name, error)) == NULL)
    return FALSE;
  zp = quark_model_get_tensor (*logical, zp_name);
  if (zp && quark_tensor_spec_get_symmetric (spec))
    zp = NULL;
  /* dynamic groups for integer specs; minifloat and MX scales stay static */
  if (gptq->static_groups || quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_TENSOR ||
      !quark_dtype_is_integer (dtype))
    codes = quark_gptq_quantize (tensor, spec, quark_model_get_tensor (*logical, name),
                                 quark_model_get_tensor (*logical, scale_name), zp, scaled_gram,
                                 gptq->damp_percent, gptq->block_size, gptq->desc_act, error);
  else
    {
      gint64 qmin, qmax;
      GroupParams g;

      quark_dtype_get_integer_range (dtype, quark_tensor_spec_get_narrow_range (spec), &qmin, &qmax);
      g = (GroupParams) { quark_tensor_spec_get_symmetric (spec),
                          quark_tensor_spec_get_scale_type (spec) == QUARK_SCALE_POW2, (int32_t) qmin, (int32_t) qmax,
                          quark_tensor_get_dtype (quark_model_get_tensor (*logical, scale_name)) };
      if (gptq->desc_act && quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_GROUP)
        /* groups in activation order: each column's group goes with the
         * codes as NAME_g_idx */
        codes = quark_gptq_quantize_act_order (tensor, spec, quark_model_get_tensor (*logical, name),
                                               quark_model_get_tensor (*logical, scale_name), zp, scaled_gram,
                                               gptq->damp_percent, gptq->block_size, group_params, &g, &new_scale,
                                               &new_zp, &g_idx, error);
      else
        codes = quark_gptq_quantize_dynamic (tensor, spec, quark_model_get_tensor (*logical, name),
                                             quark_model_get_tensor (*logical, scale_name), zp, scaled_gram,
                                             gptq->damp_percent, gptq->block_size, group_params, &g, &new_scale,
                                             &new_zp, error);
    }
  if (codes == NULL)
    return FALSE;
  /* libquark's refit of the scales to the codes (groups of consecutive
   * columns only: not with g_idx) */
  if (gptq->refine_scales && g_idx == NULL && quark_dtype_is_integer (dtype) &&
      quark_tensor_spec_get_qscheme (spec) != QUARK_QSCHEME_PER_TENSOR)
    {
      QuarkTensor *refined = quark_gptq_refine_scales (tensor, spec, codes,
                                                       new_scale ? new_scale
                                                                 : quark_model_get_tensor (*logical, scale_name),
                                                       new_zp ? new_zp : zp, scaled_gram, error);
      if (refined == NULL)
        return FALSE;
      g_clear_object (&new_scale);
      new_scale = refined;
    }
  replaced = quark_model_new ();
  for (guint i = 0; i < quark_model_get_n_tensors (*logical); i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (*logical, i);
      const char *tn = quark_tensor_get_name (t);
      QuarkTensor *with = g_str_equal (tn, name) ? codes
                          : new_scale && g_str_equal (tn, scale_name) ? new_scale
                          : new_zp && g_str_equal (tn, zp_name) ? new_zp : t;
      if (!quark_model_add_tensor (replaced, with, error))
        return FALSE;
    }
  if (g_idx && !quark_model_add_tensor (replaced, g_idx, error))
    return FALSE;
  g_object_unref (*logical);
  *logical = g_steal_pointer (&replaced);
  return TRUE;
}

/* GPTQ's correct_input_error (libquark's): the weight *@tensor (after
 * AWQ's scales, when planned) replaced by the one that gives the float
 * model's outputs from the partly quantized model's inputs, from the cross
 * moments that sequential calibration learned (scaled like H by AWQ's
 * scales); the scaled H it read goes to *@scaled_gram for GPTQ. Nothing
 * to do without the option, or for casts and weights that are not
 * matrices. */
static gboolean
correct_input_error (QuarkQuarkQuantizer *self, const char *layer, QuarkTensorSpec *spec,
                     QuarkCalibration *calibration, QuarkQuarkScalingPlan *plan, QuarkTensor **tensor,
                     QuarkTensor **scaled_gram, GError **error)
{
  const QuarkQuarkGptq *gptq = quark_quark_config_get_gptq (QUARK_QUARK_CONFIG (self->config));
  const char *name = quark_tensor_get_name (*tensor);
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);
  g_autoptr(QuarkTensor) cross = NULL, scaled_cross = NULL;
  QuarkTensor *corrected;

  if (gptq == NULL || !gptq->enabled || !gptq->correct_input_error || dtype == QUARK_DTYPE_F16 ||
      dtype == QUARK_DTYPE_BF16 || quark_tensor_get_n_dims (*tensor) != 2)
    return TRUE;
  if (calibration == NULL || (cross = quark_calibration_get_cross_moments (calibration, layer, NULL, NULL)) == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION,
                   "layer %s: GPTQ's correct_input_error needs the cross moments of the float model's input "
                   "against the quantized model's (quark quantize --calibration-text, which learns them layer by "
                   "layer)", layer);
      return FALSE;
    }
  if ((*scaled_gram = scaled_gram_of (calibration, plan, layer, name, error)) == NULL)
    return FALSE;
  scaled_cross = quark_quark_scaling_plan_scale_gram (plan, name, cross);
  if ((corrected = quark_gptq_correct_weight (*tensor, *scaled_gram, scaled_cross, gptq->damp_percent, error)) == NULL)
    return FALSE;
  g_object_unref (*tensor);
  *tensor = corrected;
  return TRUE;
}

/* With GPTQ's correct_input_error, a linear layer the config leaves in
 * float (lm_head, typically) is refit the same way: its weight becomes the
 * one that gives the float model's outputs from the quantized model's
 * inputs, W′ = W + W (C − H)(H + λI)⁻¹, written in the weight's own dtype
 * (rounded to nearest even). Only where sequential calibration learned the
 * layer's cross moments; anything else stays as it is. */
static gboolean
refit_float_layer (QuarkQuarkQuantizer *self, const char *layer, QuarkCalibration *calibration,
                   QuarkTensor **tensor, GError **error)
{
  const QuarkQuarkGptq *gptq = quark_quark_config_get_gptq (QUARK_QUARK_CONFIG (self->config));
  g_autoptr(QuarkTensor) gram = NULL, cross = NULL;
  QuarkTensor *refit;
  QuarkDType dtype;

  if (layer == NULL || gptq == NULL || !gptq->enabled || !gptq->correct_input_error || calibration == NULL ||
      quark_tensor_get_n_dims (*tensor) != 2 ||
      (cross = quark_calibration_get_cross_moments (calibration, layer, NULL, NULL)) == NULL ||
      (gram = quark_calibration_get_second_moments (calibration, layer, NULL, NULL, NULL, NULL, NULL)) == NULL)
    return TRUE;
  /* H and C as learned: AWQ and SmoothQuant leave a group with a float
   * layer alone, so a float layer's input is never scaled (a float
   * producer's rows may be, which the refit, acting on columns, keeps) */
  if ((refit = quark_gptq_correct_weight (*tensor, gram, cross, gptq->damp_percent, error)) == NULL)
    return FALSE;
  dtype = quark_tensor_get_dtype (*tensor);
  if (dtype == QUARK_DTYPE_F16 || dtype == QUARK_DTYPE_BF16)
    {
      g_autoptr(QuarkTensor) wide = refit;
      gsize n;
      const float *x = quark_tensor_peek_data (wide, &n);
      guint n_dims;
      const gint64 *shape = quark_tensor_get_shape (wide, &n_dims);
      guint16 *narrow;
      g_autoptr(GBytes) bytes = NULL;

      n /= sizeof (float);
      for (gsize i = 0; i < n; i++)
        if (!(fabsf (x[i]) <= (dtype == QUARK_DTYPE_F16 ? 65504.0f : 3.38e38f)))
          {
            g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED,
                         "tensor %s: refit to the float model's outputs (correct_input_error), it has a value "
                         "(%g) that %s cannot hold", quark_tensor_get_name (*tensor), (double) x[i],
                         quark_dtype_get_name (dtype));
            return FALSE;
          }
      narrow = g_new (guint16, MAX (n, 1));
      quark_kernel_convert_from_f32 (dtype, x, narrow, n);
      bytes = g_bytes_new_take (narrow, n * sizeof (guint16));
      if ((refit = quark_tensor_new (quark_tensor_get_name (*tensor), dtype, shape, n_dims, bytes, error)) == NULL)
        return FALSE;
    }
  g_object_unref (*tensor);
  *tensor = refit;
  return TRUE;
}

QuarkTensorSpec *
quark_quark_quantizer_weight_spec (QuarkQuarkQuantizer *self, QuarkTensor *tensor)
{
  g_autofree char *layer = weight_layer_name (tensor);
  return layer ? quark_quantization_config_get_tensor_spec (self->config, layer, layer_type_for (tensor),
                                                            QUARK_ROLE_WEIGHT) : NULL;
}

QuarkTensor *
quark_quark_quantizer_round_weight (QuarkQuarkQuantizer *self, QuarkTensor *weight, QuarkTensorSpec *spec,
                                    QuarkDType scale_dtype, GError **error)
{
  const char *name = quark_tensor_get_name (weight);
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL), *zp_name = g_strconcat (name, "_zero_point", NULL);
  g_autoptr(QuarkModel) logical = quark_model_new ();
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);
  QuarkTensor *codes;
  gsize n;
  g_autofree float *values = NULL;

  if (!quantize_tensor_with_spec (weight, spec, self->allow_nonfinite, scale_dtype, 0.0f, NULL,
                                  QUARK_CODE_LAYOUT_BYTES, logical, error))
    return NULL;
  codes = quark_model_get_tensor (logical, name);
  if (dtype != QUARK_DTYPE_F16 && dtype != QUARK_DTYPE_BF16)
    return quark_tensor_spec_dequantize (spec, codes, quark_model_get_tensor (logical, scale_name),
                                         quark_model_get_tensor (logical, zp_name), error);
  /* a cast: the narrowed tensor is the result */
  if ((values = quark_tensor_to_floats (codes, &n, error)) == NULL)
    return NULL;
  {
    guint n_dims;
    const gint64 *shape = quark_tensor_get_shape (weight, &n_dims);
    return quark_tensor_new_from_floats (name, shape, n_dims, values, n, error);
  }
}

/* NVFP4's global scales, one per layer with an E4M3-scale weight spec:
 * g = 448 · 6 / amax over the layer and the layers engines fuse with it
 * (q, k and v; gate and up) that have the same spec, since vLLM takes one
 * global scale for the fused layer. Found before any tensor is written; the
 * algorithms that change weights are refused with such specs. */
static GHashTable *
nvfp4_globals (QuarkQuarkQuantizer *self, QuarkModel *model, gboolean scaling, GError **error)
{
  g_autoptr(GHashTable) amax = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  GHashTable *globals = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  const QuarkQuarkGptq *gptq = quark_quark_config_get_gptq (QUARK_QUARK_CONFIG (self->config));
  guint n = quark_model_get_n_tensors (model);

  for (guint i = 0; i < n; i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (model, i);
      g_autofree char *layer = weight_layer_name (t);
      g_autoptr(QuarkTensorSpec) spec = layer ? quark_quark_quantizer_weight_spec (self, t) : NULL;
      g_autofree float *x = NULL;
      float lo = 0, hi = 0, *v;
      gsize count = (gsize) quark_tensor_get_n_elements (t);
      gboolean finite;

      if (spec == NULL || quark_tensor_spec_get_scale_format (spec) != QUARK_SCALE_FORMAT_E4M3)
        continue;
      if ((gptq && gptq->enabled) || scaling)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "layer %s: NVFP4 weights (e4m3 scales) with GPTQ, AWQ or SmoothQuant are not implemented",
                       layer);
          g_hash_table_unref (globals);
          return NULL;
        }
      /* the range from the data as stored (bfloat16 and float32 without a
       * copy, as quantize_tensor_with_spec () reads them) */
      if (quark_tensor_get_dtype (t) == QUARK_DTYPE_BF16 && G_BYTE_ORDER == G_LITTLE_ENDIAN)
        finite = count == 0 || quark_kernel_min_max_bf16 (quark_tensor_peek_data (t, NULL), count, &lo, &hi);
      else if (quark_tensor_get_dtype (t) == QUARK_DTYPE_F32)
        finite = count == 0 || quark_kernel_min_max_f32 (quark_tensor_peek_data (t, NULL), count, &lo, &hi);
      else if ((x = quark_tensor_to_floats (t, &count, error)) == NULL)
        {
          g_hash_table_unref (globals);
          return NULL;
        }
      else
        finite = count == 0 || quark_kernel_min_max_f32 (x, count, &lo, &hi);
      if (!finite)
        {
          quark_quark_nonfinite_error (error, quark_tensor_get_name (t));
          g_hash_table_unref (globals);
          return NULL;
        }
      quark_tensor_release_mapped_pages (t);
      v = g_new (float, 1);
      *v = fmaxf (fabsf (lo), fabsf (hi));
      g_hash_table_insert (amax, g_strdup (layer), v);
    }
  {
    GHashTableIter it;
    gpointer key, value;
    g_hash_table_iter_init (&it, amax);
    while (g_hash_table_iter_next (&it, &key, &value))
      {
        g_auto(GStrv) fused = quark_topology_get_fused_layers (key);
        float m = *(float *) value, *g = g_new (float, 1);
        for (guint k = 0; fused[k]; k++)
          {
            float *other = g_hash_table_lookup (amax, fused[k]);
            if (other)
              m = fmaxf (m, *other);
          }
        *g = quark_kernel_nvfp4_global_scale (m);
        g_hash_table_insert (globals, g_strdup (key), g);
      }
  }
  return globals;
}

/* A layer's NVFP4 global scale, or 0 */
static float
global_scale_of (GHashTable *globals, const char *layer)
{
  const float *g = globals && layer ? g_hash_table_lookup (globals, layer) : NULL;
  return g ? *g : 0.0f;
}

/* One input tensor to its output tensors, in @chunk. Runs in worker
 * threads: it reads the config and the model, both shared read-only. */
static gboolean
process_tensor (QuarkQuarkQuantizer    *self,
                QuarkTensor            *original,
                QuarkCalibration       *calibration,
                QuarkQuarkScalingPlan  *plan,
                GHashTable             *globals,
                QuarkCheckpointFormat  *format,
                QuarkQuarkWorkers      *workers,
                QuarkModel             *chunk,
                GError                **error)
{
  g_autofree char *layer = weight_layer_name (original);
  g_autoptr(QuarkTensorSpec) spec = quark_quark_quantizer_weight_spec (self, original);
  const char *type = layer_type_for (original);
  /* AWQ's or SmoothQuant's scales (and clips), when planned for this
   * tensor: the weight is quantized from (and a norm replaced by) the
   * transformed float32 tensor */
  g_autoptr(QuarkTensor) tensor = quark_quark_scaling_plan_apply (plan, original, error);
  g_autoptr(QuarkTensor) gram = NULL;   /* H as GPTQ sees it, when the input error correction read it */

  if (tensor == NULL)
    return FALSE;
  if (spec == NULL)
    return refit_float_layer (self, layer, calibration, &tensor, error) &&
           quark_model_add_tensor (chunk, tensor, error);
  if (!correct_input_error (self, layer, spec, calibration, plan, &tensor, &gram, error))
    return FALSE;
  {
    g_autoptr(QuarkModel) logical = quark_model_new ();
    QuarkDType scale_dtype = quark_checkpoint_format_get_scale_dtype (format, layer, spec,
                                                                      quark_tensor_get_dtype (original));
    guint n_dims;
    const gint64 *shape = quark_tensor_get_shape (tensor, &n_dims);
    /* codes straight into the format's layout, unless GPTQ rewrites them */
    QuarkCodeLayout layout = quark_quark_config_get_gptq (QUARK_QUARK_CONFIG (self->config)) != NULL
      ? QUARK_CODE_LAYOUT_BYTES
      : quark_checkpoint_format_get_code_layout (format, quark_tensor_get_name (tensor), spec, shape, n_dims);
    if (!quantize_tensor_with_spec (tensor, spec, self->allow_nonfinite, scale_dtype,
                                    global_scale_of (globals, layer), workers, layout, logical, error) ||
        !apply_gptq (self, tensor, layer, spec, calibration, plan, gram, &logical, error) ||
        !quark_checkpoint_format_export_weight (format, layer, type, quark_tensor_get_name (tensor), spec, logical,
                                                chunk, error))
      return FALSE;
  }
  for (QuarkRole role = QUARK_ROLE_INPUT; role <= QUARK_ROLE_OUTPUT; role++)
    {
      g_autoptr(QuarkTensorSpec) act = quark_quantization_config_get_tensor_spec (self->config, layer, type, role);
      float min_scale = role == QUARK_ROLE_OUTPUT
        ? quark_quark_config_get_min_kv_scale (QUARK_QUARK_CONFIG (self->config), layer) : 0.0f;
      g_autoptr(QuarkModel) params = NULL;
      const char *prefix = role == QUARK_ROLE_INPUT ? "input" : "output";
      float scaled_max;
      gboolean scaled;
      g_autofree char *scale_name = NULL;
      g_autofree char *zp_name = g_strdup_printf ("%s.%s_zero_point", layer, prefix);

      if (act == NULL || !quark_tensor_spec_has_static_scale (act))
        continue;   /* dynamic: computed at run time, nothing stored */
      /* (a dynamic NVFP4 spec's static part: its global scale) */
      scale_name = activation_scale_name (act, layer, prefix);
      /* a static input scaled by AWQ or SmoothQuant: its range after them */
      scaled = role == QUARK_ROLE_INPUT && quark_quark_scaling_plan_input_abs_max (plan, layer, calibration,
                                                                                  &scaled_max);
      params = quark_model_new ();
      if (!add_activation_params (act, layer, role, calibration, scaled ? &scaled_max : NULL, min_scale, params,
                                  error) ||
          !quark_checkpoint_format_export_activation (format, layer, role, act,
                                                      quark_model_get_tensor (params, scale_name),
                                                      quark_model_get_tensor (params, zp_name), chunk, error))
        return FALSE;
    }
  /* the input is done with: let the kernel drop its mapped pages */
  quark_tensor_release_mapped_pages (original);
  return TRUE;
}

typedef struct {
  QuarkQuarkQuantizer *self;
  QuarkTensor *tensor;
  QuarkCalibration *calibration;
  QuarkQuarkScalingPlan *plan;
  GHashTable *globals;
  QuarkCheckpointFormat *format;
  QuarkQuarkWorkers *workers;
  QuarkModel *chunk;
  GError *error;
  gboolean finished;
  GMutex *lock;
  GCond *cond;
} Job;

static void
run_job (gpointer data, gpointer user_data)
{
  Job *job = data;
  gboolean ok = process_tensor (job->self, job->tensor, job->calibration, job->plan, job->globals, job->format,
                                job->workers, job->chunk,
                                &job->error);

  g_assert (ok == (job->error == NULL));
  g_mutex_lock (job->lock);
  job->finished = TRUE;
  g_cond_broadcast (job->cond);
  g_mutex_unlock (job->lock);
}

/* The checks made before any work, for quantizing and for
 * quark_model_quantizer_check_model(): the checkpoint format (returned),
 * told the backend's config; every layer known to it; every spec fitting
 * its tensor's shape and the output layout; no generated name taken; and,
 * when @need_calibration, a session for the static activation specs; the
 * cached keys quantized where the format's engines quantize them.
 * *@all_rows: whether every weight takes the row path. */
static QuarkCheckpointFormat *
checked_format (QuarkQuarkQuantizer *self, QuarkModel *model, QuarkCalibration *calibration,
                gboolean need_calibration, gboolean *all_rows, GError **error)
{
  g_autoptr(QuarkCheckpointFormat) format = NULL;
  g_autoptr(JsonNode) backend_config = NULL;
  guint n_tensors = quark_model_get_n_tensors (model);

  *all_rows = TRUE;
  /* the checkpoint format, told the backend's config in AMD Quark's schema */
  format = quark_registry_new_format (quark_registry_get_default (), self->export_format, error);
  if (format == NULL)
    return NULL;
  backend_config = quark_quantization_config_to_json (self->config);
  quark_checkpoint_format_set_backend_config (format, backend_config);
  {
    const QuarkQuarkGptq *gptq = quark_quark_config_get_gptq (QUARK_QUARK_CONFIG (self->config));
    if (gptq && gptq->desc_act && !gptq->static_groups && !quark_checkpoint_format_stores_column_order (format))
      {
        g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                     "algo_config: GPTQ with desc_act and static_groups false forms the groups in activation "
                     "order, which needs each column's group (g_idx) in the checkpoint; the %s format does not "
                     "store it (--export-format compressed-tensors does), or use static_groups true",
                     quark_checkpoint_format_get_name (format));
        return NULL;
      }
  }

  /* before any work: the format knows every layer, every spec fits its
   * tensor's shape and the output layout, and no generated name is taken */
  for (guint i = 0; i < n_tensors; i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (model, i);
      g_autofree char *layer = weight_layer_name (t);
      g_autoptr(QuarkTensorSpec) spec = NULL;
      QuarkKernelLayout l;
      gboolean casts;

      if (layer == NULL)
        continue;
      spec = quark_checkpoint_format_note_config_layer (format, self->config, layer, layer_type_for (t));
      if (spec == NULL)
        continue;
      if (!check_export_layout (t, spec, format, &casts, &l, error) ||
          !check_generated_names (self, model, t, layer, spec, calibration, need_calibration, error))
        return NULL;
      *all_rows = *all_rows && (casts || quark_quark_rows_apply (t, spec, self->allow_nonfinite, &l));
    }
  if (!quark_checkpoint_format_prepare (format, error) || !check_kv_cache_place (self, format, error))
    return NULL;
  return g_steal_pointer (&format);
}

static gboolean
quark_quark_quantizer_check_model (QuarkModelQuantizer *quantizer, QuarkModel *model, GError **error)
{
  gboolean all_rows;
  g_autoptr(QuarkCheckpointFormat) format = checked_format (QUARK_QUARK_QUANTIZER (quantizer), model, NULL, FALSE,
                                                            &all_rows, error);
  return format != NULL;
}

/* The elements of @tensor's weight that the row path's window counts: 0
 * for a tensor that goes to the output as it is (no spec, nothing that
 * rewrites it), whose output is the input tensor itself and holds no
 * memory of its own; else its elements */
static guint64
window_cost (QuarkQuarkQuantizer *self, QuarkTensor *tensor, QuarkCalibration *calibration,
             QuarkQuarkScalingPlan *plan)
{
  const QuarkQuarkGptq *gptq = quark_quark_config_get_gptq (QUARK_QUARK_CONFIG (self->config));
  g_autoptr(QuarkTensorSpec) spec = quark_quark_quantizer_weight_spec (self, tensor);

  if (spec == NULL && plan == NULL && (gptq == NULL || !gptq->correct_input_error || calibration == NULL))
    return 0;
  return quark_tensor_get_n_elements (tensor);
}

/* The shared loop: each input tensor becomes its output tensors in a small
 * per-tensor model, which goes to @out or to @writer at once, in model
 * order. With several threads: when every weight takes the row path, the
 * tensors are quantized with their rows split between the threads while
 * the ones before them are written. The window of tensors in flight is
 * counted in elements: at most N + 1 times the largest tensor's, so that
 * small tensors keep the threads busy while the writer copies a large one
 * (an embedding, which goes out as it is and counts nothing), and the
 * output in memory stays under that of the N + 1 largest tensors.
 * Otherwise whole tensors are quantized in parallel, up to twice as many
 * in flight as there are threads. */
static gboolean
run_quantization (QuarkModelQuantizer    *quantizer,
                  QuarkModel             *model,
                  QuarkCalibration       *calibration,
                  GCancellable           *cancellable,
                  QuarkModel             *out,
                  QuarkCheckpointWriter  *writer,
                  JsonNode              **metadata_out,
                  GError                **error)
{
  QuarkQuarkQuantizer *self = QUARK_QUARK_QUANTIZER (quantizer);
  g_autoptr(QuarkCheckpointFormat) format = NULL;
  JsonNode *qc;
  guint n_tensors = quark_model_get_n_tensors (model);
  guint window = self->threads > 1 ? 2 * self->threads : 1;
  gboolean all_rows = TRUE;
  g_autoptr(QuarkQuarkWorkers) workers = NULL;
  g_autoptr(QuarkQuarkScalingPlan) plan = NULL;
  g_autoptr(GHashTable) globals = NULL;
  const QuarkQuarkScaling *scaling;
  guint64 total = 0, done = 0;
  g_autofree Job *jobs = g_new0 (Job, MAX (n_tensors, 1));
  GThreadPool *pool = NULL;
  GMutex lock;
  GCond cond;
  guint submitted = 0, emitted = 0;
  /* each tensor's cost (window_cost()) and the order of the output; with
   * the row path's window, their budget and the cost of the tensors in
   * flight */
  g_autofree guint64 *cost = g_new (guint64, MAX (n_tensors, 1));
  g_autofree guint *order = g_new (guint, MAX (n_tensors, 1));
  gboolean windowed;
  guint64 budget = 0, in_flight = 0;
  gboolean ok = TRUE;
  JsonNode *metadata, *meta;

  format = checked_format (self, model, calibration, TRUE, &all_rows, error);
  if (format == NULL)
    return FALSE;

  /* rotation happened before calibration, in prepare_model() */
  metadata = quark_model_get_metadata (model);
  if (quark_quark_config_get_rotation (QUARK_QUARK_CONFIG (self->config)) != NULL &&
      !(metadata && JSON_NODE_HOLDS_OBJECT (metadata) &&
        json_object_has_member (json_node_get_object (metadata), QUARK_QUARK_PREPARED_KEY)))
    {
      g_set_error_literal (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                           "the config rotates the model, and this model was not rotated: quantize (and calibrate) "
                           "the model quark_model_quantizer_prepare_model() gives");
      return FALSE;
    }

  /* AWQ or SmoothQuant: every scale (and clip) found before any tensor is
   * written */
  scaling = quark_quark_config_get_scaling (QUARK_QUARK_CONFIG (self->config));
  if (scaling != NULL && (plan = quark_quark_scaling_plan_new (self, scaling, model, calibration, format, error)) == NULL)
    return FALSE;
  /* NVFP4: the global scales, shared by fused layers */
  if ((globals = nvfp4_globals (self, model, scaling != NULL, error)) == NULL)
    return FALSE;

  /* the order of the output: to a writer, the tensors that go out as they
   * are (which cost nothing) first, then the others, each in model order,
   * so that the writer copies a head that is last in the model (a Llama's)
   * while the threads quantize the layers rather than after them; a model
   * keeps the input's order. The same for any number of threads. The
   * costs are found where the order or the window needs them. */
  windowed = self->threads > 1 && all_rows;
  for (guint i = 0; i < n_tensors; i++)
    {
      order[i] = i;
      if (writer || windowed)
        cost[i] = window_cost (self, quark_model_get_tensor_at (model, i), calibration, plan);
    }
  if (writer)
    {
      guint k = 0;
      for (guint pass = 0; pass < 2; pass++)
        for (guint i = 0; i < n_tensors; i++)
          if ((cost[i] == 0) == (pass == 0))
            order[k++] = i;
    }

  g_mutex_init (&lock);
  g_cond_init (&cond);
  if (windowed)
    {
      guint64 largest = 0;

      workers = quark_quark_workers_new (self->threads);
      window = n_tensors;
      for (guint i = 0; i < n_tensors; i++)
        largest = MAX (largest, cost[i]);
      budget = (guint64) (self->threads + 1) * largest;
      pool = g_thread_pool_new (run_job, NULL, (int) self->threads, FALSE, NULL);
    }
  else if (self->threads > 1)
    pool = g_thread_pool_new (run_job, NULL, (int) self->threads, FALSE, NULL);

  /* progress counts the elements of every tensor */
  for (guint i = 0; i < n_tensors; i++)
    total += quark_tensor_get_n_elements (quark_model_get_tensor_at (model, i));

  while (ok && emitted < n_tensors)
    {
      Job *job;

      /* keep the window full */
      while (submitted < n_tensors && submitted < emitted + window &&
             (!windowed || in_flight == 0 || in_flight + cost[order[submitted]] <= budget))
        {
          Job *j = &jobs[submitted];
          if (windowed)
            in_flight += cost[order[submitted]];
          j->self = self;
          j->tensor = quark_model_get_tensor_at (model, order[submitted++]);
          j->calibration = calibration;
          j->plan = plan;
          j->globals = globals;
          j->format = format;
          j->workers = workers;
          j->chunk = quark_model_new ();
          j->lock = &lock;
          j->cond = &cond;
          if (pool)
            g_thread_pool_push (pool, j, NULL);
          else
            run_job (j, NULL);
        }

      job = &jobs[emitted];
      g_mutex_lock (&lock);
      while (!job->finished)
        g_cond_wait (&cond, &lock);
      g_mutex_unlock (&lock);

      if (job->error)
        {
          g_propagate_error (error, g_steal_pointer (&job->error));
          ok = FALSE;
          break;
        }
      if (g_cancellable_is_cancelled (cancellable))
        {
          g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Operation was cancelled");
          ok = FALSE;
          break;
        }
      for (guint k = 0; ok && k < quark_model_get_n_tensors (job->chunk); k++)
        {
          QuarkTensor *t = quark_model_get_tensor_at (job->chunk, k);
          if (writer ? !quark_checkpoint_writer_add_with_origin (writer, t, quark_tensor_get_name (job->tensor), error)
                     : !quark_model_add_tensor (out, t, error))
            ok = FALSE;
        }
      g_clear_object (&job->chunk);
      if (!ok)
        break;
      if (windowed)
        in_flight -= cost[order[emitted]];
      emitted++;
      done += quark_tensor_get_n_elements (job->tensor);
      quark_model_quantizer_report_progress (quantizer, done, total, quark_tensor_get_name (job->tensor));
    }

  /* wait for the tensors still in flight, keep nothing of them */
  if (pool)
    g_thread_pool_free (pool, FALSE, TRUE);
  for (guint i = 0; i < submitted; i++)
    {
      g_clear_object (&jobs[i].chunk);
      g_clear_error (&jobs[i].error);
    }
  g_mutex_clear (&lock);
  g_cond_clear (&cond);
  if (!ok)
    return FALSE;

  /* metadata: the model's, with the config that produced the result */
  if (metadata && JSON_NODE_HOLDS_OBJECT (metadata))
    {
      meta = quark_json_copy (metadata);
      json_object_remove_member (json_node_get_object (meta), QUARK_QUARK_PREPARED_KEY);
    }
  else
    {
      JsonObject *empty = json_object_new ();
      meta = json_node_init_object (json_node_alloc (), empty);   /* takes its own reference */
      json_object_unref (empty);
    }
  qc = quark_checkpoint_format_build_quantization_config (format, error);
  if (qc == NULL)
    {
      json_node_unref (meta);
      return FALSE;
    }
  json_object_set_member (json_node_get_object (meta), "quantization_config", qc);
  *metadata_out = meta;
  return TRUE;
}

static QuarkModel *
quark_quark_quantizer_quantize_model (QuarkModelQuantizer  *quantizer,
                                      QuarkModel           *model,
                                      QuarkCalibration     *calibration,
                                      GCancellable         *cancellable,
                                      GError              **error)
{
  g_autoptr(QuarkModel) out = quark_model_new ();
  g_autoptr(JsonNode) meta = NULL;

  if (!run_quantization (quantizer, model, calibration, cancellable, out, NULL, &meta, error))
    return NULL;
  quark_model_set_metadata (out, meta);
  return g_steal_pointer (&out);
}

static gboolean
quark_quark_quantizer_quantize_model_to_writer (QuarkModelQuantizer    *quantizer,
                                                QuarkModel             *model,
                                                QuarkCalibration       *calibration,
                                                QuarkCheckpointWriter  *writer,
                                                GCancellable           *cancellable,
                                                GError                **error)
{
  g_autoptr(JsonNode) meta = NULL;

  if (!run_quantization (quantizer, model, calibration, cancellable, NULL, writer, &meta, error))
    return FALSE;
  quark_checkpoint_writer_set_metadata (writer, meta);
  return TRUE;
}

static QuarkModel *
quark_quark_quantizer_quantize_tensor (QuarkModelQuantizer  *quantizer,
                                       QuarkTensor          *tensor,
                                       QuarkTensorSpec      *spec,
                                       GError              **error)
{
  QuarkQuarkQuantizer *self = QUARK_QUARK_QUANTIZER (quantizer);
  g_autoptr(QuarkModel) out = quark_model_new ();
  g_autoptr(QuarkQuarkWorkers) workers = self->threads > 1 ? quark_quark_workers_new (self->threads) : NULL;

  if (!quark_quark_check_spec (spec, QUARK_ROLE_WEIGHT, "spec", error) ||
      !quantize_tensor_with_spec (tensor, spec, self->allow_nonfinite, QUARK_DTYPE_F32, 0.0f, workers,
                                  QUARK_CODE_LAYOUT_BYTES, out, error))
    return NULL;
  return g_steal_pointer (&out);
}

/* ---- activations as an API ------------------------------------------------- */

/* The static parameters of an activation spec: what quantize_model stores
 * as LAYER.input_scale and _zero_point, from the same calibration
 * statistics and observers. */
static gboolean
quark_quark_quantizer_activation_params (QuarkModelQuantizer *quantizer, QuarkTensorSpec *spec,
                                         QuarkCalibration *calibration, const char *layer_name, QuarkRole role,
                                         QuarkTensor **scale, QuarkTensor **zero_point, GError **error)
{
  const char *prefix = role == QUARK_ROLE_INPUT ? "input" : "output";
  g_autoptr(QuarkModel) params = quark_model_new ();
  g_autofree char *scale_name = NULL, *zp_name = NULL;
  QuarkTensor *t;

  if (!quark_quark_check_spec (spec, role, "spec", error) ||
      !add_activation_params (spec, layer_name ? layer_name : "activation", role, calibration, NULL, 0.0f, params,
                              error))
    return FALSE;
  scale_name = activation_scale_name (spec, layer_name ? layer_name : "activation", prefix);
  zp_name = g_strdup_printf ("%s.%s_zero_point", layer_name ? layer_name : "activation", prefix);
  *scale = g_object_ref (quark_model_get_tensor (params, scale_name));
  t = quark_model_get_tensor (params, zp_name);
  *zero_point = t ? g_object_ref (t) : NULL;
  return TRUE;
}

/* The same elements under another name or shape (@shape NULL: the same). */
static QuarkTensor *
retensor (QuarkTensor *t, const char *name, const gint64 *shape, guint n_dims, GError **error)
{
  if (shape == NULL)
    shape = quark_tensor_get_shape (t, &n_dims);
  return quark_tensor_new (name ? name : quark_tensor_get_name (t), quark_tensor_get_dtype (t), shape, n_dims,
                           quark_tensor_get_data (t), error);
}

/* A dynamic activation quantized as a weight [tokens, features] would be
 * (per_channel means per token): the codes (in that 2-D view), scales and
 * zero points in @q, the weight spec used in @as_weight. NVFP4 takes its
 * static @global_scale. */
static gboolean
quantize_dynamic (QuarkQuarkQuantizer *self, QuarkTensor *tensor, QuarkTensorSpec *spec, float global_scale,
                  QuarkModel *q, QuarkTensorSpec **as_weight, GError **error)
{
  guint n_dims = 0;
  const gint64 *shape = quark_tensor_get_shape (tensor, &n_dims);
  gint64 cols = n_dims ? shape[n_dims - 1] : 1;
  gint64 view_shape[2] = { cols ? (gint64) quark_tensor_get_n_elements (tensor) / cols : 0, cols };
  g_autoptr(QuarkTensor) view = retensor (tensor, NULL, view_shape, 2, error);

  *as_weight = quark_tensor_spec_copy (spec);
  g_object_set (*as_weight, "is-dynamic", FALSE, "ch-axis",
                quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_CHANNEL ? 0 : -1, NULL);
  return view != NULL &&
         quantize_tensor_with_spec (view, *as_weight, self->allow_nonfinite, QUARK_DTYPE_F32, global_scale, NULL,
                                    QUARK_CODE_LAYOUT_BYTES, q, error);
}

/* A dynamic NVFP4 spec's static global scale, from @scale (one positive
 * finite float32 value); 0 for other dynamic specs. */
static gboolean
dynamic_global_scale (QuarkTensorSpec *spec, QuarkTensor *scale, const char *name, float *global_scale,
                      GError **error)
{
  const float *g;
  gsize size = 0;

  *global_scale = 0.0f;
  if (!quark_tensor_spec_has_static_scale (spec))
    return TRUE;
  if (scale == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION,
                   "tensor %s: the NVFP4 spec computes its group scales from the tensor, under a static global "
                   "scale (quark_model_quantizer_get_activation_params)", name);
      return FALSE;
    }
  g = quark_tensor_peek_data (scale, &size);
  if (quark_tensor_get_dtype (scale) != QUARK_DTYPE_F32 || quark_tensor_get_n_elements (scale) != 1 ||
      size != sizeof (float) || !(g[0] > 0.0f) || !isfinite (g[0]))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "tensor %s: an NVFP4 global scale is one positive finite float32 value (%s is not)", name,
                   quark_tensor_get_name (scale));
      return FALSE;
    }
  *global_scale = g[0];
  return TRUE;
}

static gpointer
static_scale_missing (const char *name, GError **error)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION,
               "tensor %s: the spec is static and needs its scales (quark_model_quantizer_get_activation_params)",
               name);
  return NULL;
}

/* Activations quantized with AMD Quark's arithmetic: dynamic specs compute
 * their parameters from the tensor (quantize_dynamic()), static ones use
 * the given scales. */
static QuarkModel *
quark_quark_quantizer_quantize_activation (QuarkModelQuantizer *quantizer, QuarkTensor *tensor,
                                           QuarkTensorSpec *spec, QuarkTensor *scale, QuarkTensor *zero_point,
                                           GError **error)
{
  QuarkQuarkQuantizer *self = QUARK_QUARK_QUANTIZER (quantizer);
  const char *name = quark_tensor_get_name (tensor);
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  g_autofree char *zp_name = g_strconcat (name, "_zero_point", NULL);
  g_autoptr(QuarkModel) out = quark_model_new ();
  g_autoptr(QuarkTensor) codes = NULL, s = NULL, z = NULL;
  guint n_dims = 0;
  const gint64 *shape = quark_tensor_get_shape (tensor, &n_dims);

  if (!quark_quark_check_spec (spec, QUARK_ROLE_INPUT, "spec", error))
    return NULL;
  if (quark_tensor_spec_get_is_dynamic (spec))
    {
      g_autoptr(QuarkTensorSpec) as_weight = NULL;
      g_autoptr(QuarkModel) q = quark_model_new ();
      g_autofree char *global_name = g_strconcat (name, "_global_scale", NULL);
      QuarkTensor *g;
      float global_scale;

      if (!dynamic_global_scale (spec, scale, name, &global_scale, error) ||
          !quantize_dynamic (self, tensor, spec, global_scale, q, &as_weight, error))
        return NULL;
      codes = retensor (quark_model_get_tensor (q, name), NULL, shape, n_dims, error);
      if (codes == NULL)
        return NULL;
      s = g_object_ref (quark_model_get_tensor (q, scale_name));
      z = quark_model_get_tensor (q, zp_name) ? g_object_ref (quark_model_get_tensor (q, zp_name)) : NULL;
      /* NVFP4: the global scale beside the E4M3 group scales */
      if ((g = quark_model_get_tensor (q, global_name)) != NULL && !quark_model_add_tensor (out, g, error))
        return NULL;
    }
  else
    {
      if (scale == NULL)
        return static_scale_missing (name, error);
      codes = quark_tensor_spec_quantize (spec, tensor, scale, zero_point, error);
      if (codes == NULL)
        return NULL;
      s = retensor (scale, scale_name, NULL, 0, error);
      z = zero_point ? retensor (zero_point, zp_name, NULL, 0, error) : NULL;
      if (s == NULL || (zero_point && z == NULL))
        return NULL;
    }
  if (!quark_model_add_tensor (out, codes, error) || !quark_model_add_tensor (out, s, error) ||
      (z && !quark_model_add_tensor (out, z, error)))
    return NULL;
  return g_steal_pointer (&out);
}

/* The same, dequantized again: dynamic specs through the weight spec of
 * their [tokens, features] view. */
static QuarkTensor *
quark_quark_quantizer_fake_quantize_activation (QuarkModelQuantizer *quantizer, QuarkTensor *tensor,
                                                QuarkTensorSpec *spec, QuarkTensor *scale, QuarkTensor *zero_point,
                                                GError **error)
{
  QuarkQuarkQuantizer *self = QUARK_QUARK_QUANTIZER (quantizer);
  const char *name = quark_tensor_get_name (tensor);
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  g_autofree char *zp_name = g_strconcat (name, "_zero_point", NULL);
  g_autoptr(QuarkTensorSpec) as_weight = NULL;
  g_autoptr(QuarkModel) q = quark_model_new ();
  g_autoptr(QuarkTensor) flat = NULL, effective = NULL;
  float global_scale;
  guint n_dims = 0;
  const gint64 *shape = quark_tensor_get_shape (tensor, &n_dims);

  if (!quark_quark_check_spec (spec, QUARK_ROLE_INPUT, "spec", error))
    return NULL;
  if (!quark_tensor_spec_get_is_dynamic (spec))
    return scale ? quark_tensor_spec_fake_quantize (spec, tensor, scale, zero_point, error)
                 : static_scale_missing (name, error);
  if (!dynamic_global_scale (spec, scale, name, &global_scale, error) ||
      !quantize_dynamic (self, tensor, spec, global_scale, q, &as_weight, error))
    return NULL;
  if (global_scale > 0.0f)
    {
      /* NVFP4: the effective scales, E4M3 value / global scale */
      QuarkTensor *codes = quark_model_get_tensor (q, scale_name);
      gsize n_scales = quark_tensor_get_n_elements (codes);
      const guint8 *c = quark_tensor_peek_data (codes, NULL);
      float *eff = g_new (float, MAX (n_scales, 1));
      guint nd = 0;
      const gint64 *sshape = quark_tensor_get_shape (codes, &nd);
      g_autoptr(GBytes) bytes = NULL;

      for (gsize k = 0; k < n_scales; k++)
        eff[k] = quark_kernel_nvfp4_scale_to_f32 (c[k], global_scale);
      bytes = g_bytes_new_take (eff, n_scales * sizeof (float));
      if ((effective = quark_tensor_new (scale_name, QUARK_DTYPE_F32, sshape, nd, bytes, error)) == NULL)
        return NULL;
    }
  flat = quark_tensor_spec_dequantize (as_weight, quark_model_get_tensor (q, name),
                                       effective ? effective : quark_model_get_tensor (q, scale_name),
                                       quark_model_get_tensor (q, zp_name), error);
  return flat ? retensor (flat, NULL, shape, n_dims, error) : NULL;
}

/* ---- reading checkpoints back ---------------------------------------------- */

/* One stored weight back to float: the format's logical tensors, then the
 * spec's dequantization. */
static QuarkTensor *
dequantize_weight (QuarkCheckpointFormat *format, QuarkModel *quantized, const char *name, QuarkTensorSpec *spec,
                   GError **error)
{
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  g_autofree char *zp_name = g_strconcat (name, "_zero_point", NULL);
  g_autoptr(QuarkModel) logical = quark_model_new ();
  g_autoptr(GError) local_error = NULL;
  QuarkTensor *result;

  if (!quark_checkpoint_format_import_weight (format, quantized, name, spec, logical, error))
    return NULL;
  result = quark_tensor_spec_dequantize (spec, quark_model_get_tensor (logical, name),
                                         quark_model_get_tensor (logical, scale_name),
                                         quark_model_get_tensor (logical, zp_name), &local_error);
  if (result == NULL)
    g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s", local_error->message);
  return result;
}

static gboolean
is_parameter_of (const char *tensor_name, QuarkModel *quantized)
{
  static const char * const suffixes[] = { "_scale", "_zero_point", NULL };
  for (guint i = 0; suffixes[i]; i++)
    if (g_str_has_suffix (tensor_name, suffixes[i]))
      {
        g_autofree char *base = g_strndup (tensor_name, strlen (tensor_name) - strlen (suffixes[i]));
        if (g_str_has_suffix (base, ".weight") && quark_model_get_tensor (quantized, base))
          return TRUE;
        if (g_str_has_suffix (base, ".input") || g_str_has_suffix (base, ".output"))
          return TRUE;
      }
  return FALSE;
}

static QuarkModel *
quark_quark_quantizer_dequantize_model (QuarkModelQuantizer  *quantizer,
                                        QuarkModel           *quantized,
                                        GError              **error)
{
  QuarkQuarkQuantizer *self = QUARK_QUARK_QUANTIZER (quantizer);
  g_autoptr(QuarkModel) out = quark_model_new ();
  g_autoptr(QuarkCheckpointFormat) format = NULL;
  g_autoptr(JsonNode) backend_config = NULL;

  /* a format that describes its tensors itself (compressed-tensors, as
   * this quantizer writes it with export-format set) reads them back */
  format = quark_registry_format_for_model (quark_registry_get_default (), quantized);
  if (format && quark_checkpoint_format_can_dequantize (format))
    return quark_checkpoint_format_dequantize_model (format, quantized, error);
  g_clear_object (&format);

  /* AMD Quark's layout, with the config's export options (pack_method) */
  format = quark_registry_new_format (quark_registry_get_default (), "quark", error);
  if (format == NULL)
    return NULL;
  backend_config = quark_quantization_config_to_json (self->config);
  quark_checkpoint_format_set_backend_config (format, backend_config);

  for (guint i = 0; i < quark_model_get_n_tensors (quantized); i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (quantized, i);
      const char *name = quark_tensor_get_name (t);
      g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
      g_autoptr(QuarkTensorSpec) spec = NULL;

      if (is_parameter_of (name, quantized))
        continue;
      if (g_str_has_suffix (name, ".weight") && quark_tensor_get_n_dims (t) >= 2 && !is_embedding (name) &&
          (quark_model_get_tensor (quantized, scale_name) != NULL ||
           quark_tensor_get_dtype (t) == QUARK_DTYPE_F16 || quark_tensor_get_dtype (t) == QUARK_DTYPE_BF16))
        {
          g_autofree char *layer = g_strndup (name, strlen (name) - strlen (".weight"));
          const char *type = quark_tensor_get_n_dims (t) == 2 ? "Linear" : quark_tensor_get_n_dims (t) == 4 ? "Conv2d"
                             : quark_tensor_get_n_dims (t) == 3 ? "Conv1d" : "Conv3d";
          spec = quark_quantization_config_get_tensor_spec (self->config, layer, type, QUARK_ROLE_WEIGHT);
          /* float weights that the config leaves alone pass through */
          if (spec && (quark_model_get_tensor (quantized, scale_name) != NULL ||
                       quark_tensor_get_dtype (t) == quark_tensor_spec_get_dtype (spec)))
            {
              g_autoptr(QuarkTensor) x = dequantize_weight (format, quantized, name, spec, error);
              if (x == NULL || !quark_model_add_tensor (out, x, error))
                return NULL;
              continue;
            }
        }
      if (!quark_model_add_tensor (out, t, error))
        return NULL;
    }
  quark_model_set_metadata (out, quark_model_get_metadata (quantized));
  return g_steal_pointer (&out);
}

/* algo_config's rotation: the residual stream rotated by a Hadamard
 * matrix of the hidden size, the result marked as rotated */
static QuarkModel *
quark_quark_quantizer_prepare_model (QuarkModelQuantizer  *quantizer,
                                     QuarkModel           *model,
                                     GCancellable         *cancellable,
                                     GError              **error)
{
  QuarkQuarkQuantizer *self = QUARK_QUARK_QUANTIZER (quantizer);
  const QuarkQuarkRotation *rotation = quark_quark_config_get_rotation (QUARK_QUARK_CONFIG (self->config));
  JsonNode *metadata = quark_model_get_metadata (model);
  g_autoptr(JsonNode) stream = NULL, marked = NULL;
  g_autoptr(QuarkTensor) q = NULL;
  g_autoptr(QuarkModel) rotated = NULL;
  g_autofree char *embedding = NULL;
  QuarkTensor *e;

  if (rotation == NULL)
    return g_object_ref (model);
  if (metadata && JSON_NODE_HOLDS_OBJECT (metadata) &&
      json_object_has_member (json_node_get_object (metadata), QUARK_QUARK_PREPARED_KEY))
    {
      g_set_error_literal (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                           "rotation: the model is already rotated");
      return NULL;
    }
  if ((stream = quark_topology_get_residual_stream (metadata, error)) == NULL)
    {
      g_prefix_error (error, "rotation: ");
      return NULL;
    }
  embedding = g_strconcat (json_object_get_string_member (json_node_get_object (stream), "embedding"), ".weight",
                           NULL);
  e = quark_model_get_tensor (model, embedding);
  if (e == NULL || quark_tensor_get_n_dims (e) != 2)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "rotation: %s is missing or not a matrix",
                   embedding);
      return NULL;
    }
  if ((q = quark_rotation_matrix ((guint) quark_tensor_get_dim (e, 1), rotation->random, rotation->seed,
                                  error)) == NULL ||
      (rotated = quark_rotation_rotate_model (model, stream, q, error)) == NULL)
    return NULL;
  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return NULL;
  marked = quark_json_copy (metadata);
  json_object_set_string_member (json_node_get_object (marked), QUARK_QUARK_PREPARED_KEY, "rotation");
  quark_model_set_metadata (rotated, marked);
  return g_steal_pointer (&rotated);
}

static void
quantizer_iface_init (QuarkModelQuantizerInterface *iface)
{
  iface->prepare_model = quark_quark_quantizer_prepare_model;
  iface->dequantize_model = quark_quark_quantizer_dequantize_model;
  iface->quantize_model_to_writer = quark_quark_quantizer_quantize_model_to_writer;
  iface->check_model = quark_quark_quantizer_check_model;
  iface->quantize_model = quark_quark_quantizer_quantize_model;
  iface->quantize_tensor = quark_quark_quantizer_quantize_tensor;
  iface->activation_params = quark_quark_quantizer_activation_params;
  iface->quantize_activation = quark_quark_quantizer_quantize_activation;
  iface->fake_quantize_activation = quark_quark_quantizer_fake_quantize_activation;
}
