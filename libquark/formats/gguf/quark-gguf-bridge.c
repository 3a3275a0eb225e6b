/* quark-gguf-bridge.c: a quantized checkpoint's integer codes carried into
 * GGUF blocks without rounding again
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A weight quantized per group of 32 along its rows is, in libquark's and
 * AMD Quark's checkpoints, codes q, a scale s and a zero point z per group,
 * read back as x = (q - z) · s (one binary32 multiply of an exact integer).
 * llama.cpp's legacy blocks hold 32 elements too:
 *
 *   Q4_0, Q5_0, Q8_0:  x = (n - o) · d     (o = 8, 16, 0; n the stored code)
 *   Q4_1, Q5_1:        x = n · d + m
 *
 * with d and m in binary16. A group becomes a block with the same values,
 * not merely close ones, when
 *
 *   _0 types: d = s is exact in binary16 and n = q - z + o fits the code
 *             (for the symmetric checkpoints that store z = 0);
 *   _1 types: d = s and m = -s · (z - qmin) are exact in binary16, n = q - qmin
 *             (qmin the smallest code of the checkpoint's integer type).
 *
 * Then every dequantized value is the same float: s has at most 11
 * significant bits and |q - z| at most 5 (8 for Q8_0), so (q - z) · s, n · d
 * and n · d + m are all exact in binary32, whether or not the addition is
 * fused. AMD Quark's own GGUF export writes Q4_1 from uint4 per-group-32
 * weights the same way (m = -s · z), rounding s and m to binary16 without
 * saying so; here a group that would need rounding is reported, and the
 * caller chooses: fail (the default), round as AMD Quark does (the codes stay
 * the same; the report says how far the values moved), or write that weight
 * dequantized to F32 (exact, four bytes per element). */
#include "config.h"

#include "../quark-format-private.h"
#include "quark-gguf-bridge.h"
#include "quark-registry.h"
#include "kernels/quark-kernels.h"

#include <math.h>
#include <string.h>

typedef struct {
  char *name;                /* the checkpoint's tensor name */
  QuarkTensor *tensor;       /* float tensors; NULL for quantized weights */
  QuarkTensorSpec *spec;     /* quantized weights */
  QuarkGgufBridgeKind kind;
  guint n_dims;
  gint64 shape[2];           /* the logical (float) shape */
} Source;

/* the stored code n of a checkpoint code: n = q + shift; what the block
 * type holds (codes 0 .. 2^bits - 1; Q8_0 signed bytes) */
typedef struct {
  int bits;          /* 4, 5, 8 */
  gboolean with_min; /* the _1 types */
  int offset;        /* the _0 types: n - o = q - z */
} Target;

static gboolean
target_of (QuarkGgmlType type, Target *t)
{
  switch (type)
    {
    case QUARK_GGML_Q4_0: *t = (Target) { 4, FALSE, 8 }; return TRUE;
    case QUARK_GGML_Q4_1: *t = (Target) { 4, TRUE, 0 }; return TRUE;
    case QUARK_GGML_Q5_0: *t = (Target) { 5, FALSE, 16 }; return TRUE;
    case QUARK_GGML_Q5_1: *t = (Target) { 5, TRUE, 0 }; return TRUE;
    case QUARK_GGML_Q8_0: *t = (Target) { 8, FALSE, 0 }; return TRUE;
    default: return FALSE;
    }
}

struct _QuarkGgufBridge
{
  QuarkModel *checkpoint;
  QuarkCheckpointFormat *reader;
  QuarkGgmlType type;
  Target target;             /* the type's code range and parameters */
  GArray *sources;
};

static void
source_clear (gpointer data)
{
  Source *s = data;
  g_free (s->name);
  g_clear_object (&s->spec);
}

void
_quark_gguf_bridge_free (QuarkGgufBridge *b)
{
  if (b == NULL)
    return;
  g_clear_object (&b->checkpoint);
  g_clear_object (&b->reader);
  g_array_unref (b->sources);
  g_free (b);
}

/* the smallest code of an integer dtype */
static gint32
dtype_min (QuarkDType dtype)
{
  guint bits = quark_dtype_get_bits (dtype);
  return quark_dtype_is_signed (dtype) ? -(gint32) (1u << (bits - 1)) : 0;
}

/* a logical integer tensor's values (codes or zero points) as int32;
 * float-typed zero points must be whole numbers */
static gint32 *
as_int32 (QuarkTensor *t, const char *what, GError **error)
{
  QuarkDType dtype = quark_tensor_get_dtype (t);
  gsize n = (gsize) quark_tensor_get_n_elements (t);
  const guint8 *b = quark_tensor_peek_data (t, NULL);
  gint32 *v = g_new (gint32, MAX (n, 1));

  if (quark_dtype_is_integer (dtype) && quark_dtype_get_element_size (dtype) == 1)
    {
      gboolean is_signed = quark_dtype_is_signed (dtype);
      for (gsize i = 0; i < n; i++)
        v[i] = is_signed ? (gint32) (gint8) b[i] : (gint32) b[i];
      return v;
    }
  if (dtype == QUARK_DTYPE_I32)
    {
      memcpy (v, b, n * sizeof (gint32));
      return v;
    }
  {
    g_autofree float *f = quark_tensor_to_floats (t, &n, error);
    if (f == NULL)
      {
        g_free (v);
        return NULL;
      }
    for (gsize i = 0; i < n; i++)
      {
        if (f[i] != rintf (f[i]) || fabsf (f[i]) > 1e6f)
          {
            g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                         "%s holds %g, not an integer", what, (double) f[i]);
            g_free (v);
            return NULL;
          }
        v[i] = (gint32) f[i];
      }
    return v;
  }
}

static gboolean
f16_exact (double x)
{
  float f = (float) x;
  return (double) f == x && quark_kernel_f16_to_f32 (_quark_ggml_f32_to_f16 (f)) == f;
}

static float
f16_round (double x)
{
  return quark_kernel_f16_to_f32 (_quark_ggml_f32_to_f16 ((float) x));
}

/* One weight's logical tensors: codes [O, I] (one byte each, read in
 * place from @logical, or widened to int32 for wider integer types),
 * scales and zero points [O, I/32] (zero points NULL: symmetric). */
typedef struct {
  QuarkModel *logical;
  const guint8 *bytes;        /* one-byte codes, signed when @bytes_signed */
  gboolean bytes_signed;
  gint32 *codes, *zero;
  float *scale;
  gsize rows, cols, groups;   /* groups per row */
  gint32 qmin, qmax;          /* the codes' integer type's range */
} Weight;

static void
weight_clear (Weight *w)
{
  g_clear_object (&w->logical);
  g_clear_pointer (&w->codes, g_free);
  g_clear_pointer (&w->zero, g_free);
  g_clear_pointer (&w->scale, g_free);
}

/* Reads weight @s; FALSE with @why set (not @error) when its scheme is not
 * one that a block type holds, FALSE with @error set for a damaged file. */
static gboolean
read_weight (QuarkGgufBridge *b, Source *s, Weight *w, char **why, GError **error)
{
  g_autofree char *scale_name = g_strconcat (s->name, "_scale", NULL);
  g_autofree char *zp_name = g_strconcat (s->name, "_zero_point", NULL);
  QuarkDType dtype = quark_tensor_spec_get_dtype (s->spec);
  QuarkTensor *codes, *scale, *zero;
  gsize n;

  memset (w, 0, sizeof *w);
  if (!quark_dtype_is_integer (dtype) || quark_tensor_spec_get_qscheme (s->spec) != QUARK_QSCHEME_PER_GROUP ||
      quark_tensor_spec_get_group_size (s->spec) != 32)
    {
      *why = g_strdup_printf ("%s %s is not integers in groups of 32 (what llama.cpp's blocks hold)",
                              quark_dtype_get_name (dtype),
                              quark_tensor_spec_get_qscheme (s->spec) == QUARK_QSCHEME_PER_GROUP
                                ? (quark_tensor_spec_get_group_size (s->spec) == 32 ? "per group of 32"
                                                                                    : "per group (not of 32)")
                                : "not per group");
      return FALSE;
    }
  w->logical = quark_model_new ();
  if (!quark_checkpoint_format_import_weight (b->reader, b->checkpoint, s->name, s->spec, w->logical, error))
    return FALSE;
  codes = quark_model_get_tensor (w->logical, s->name);
  scale = quark_model_get_tensor (w->logical, scale_name);
  zero = quark_model_get_tensor (w->logical, zp_name);
  if (codes == NULL || scale == NULL || quark_tensor_get_n_dims (codes) != 2)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: its codes or scales are missing",
                   s->name);
      return FALSE;
    }
  w->rows = (gsize) quark_tensor_get_dim (codes, 0);
  w->cols = (gsize) quark_tensor_get_dim (codes, 1);
  w->groups = w->cols / 32;
  w->qmin = dtype_min (dtype);
  w->qmax = w->qmin + (gint32) ((1u << quark_dtype_get_bits (dtype)) - 1);
  if (w->cols % 32 != 0 || (gsize) quark_tensor_get_n_elements (scale) != w->rows * w->groups ||
      (zero && (gsize) quark_tensor_get_n_elements (zero) != w->rows * w->groups))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                   "tensor %s: %zu x %zu codes do not match its %" G_GINT64_FORMAT " scales in groups of 32",
                   s->name, w->rows, w->cols, quark_tensor_get_n_elements (scale));
      return FALSE;
    }
  if (quark_dtype_get_element_size (quark_tensor_get_dtype (codes)) == 1)
    {
      w->bytes = quark_tensor_peek_data (codes, NULL);
      w->bytes_signed = quark_dtype_is_signed (quark_tensor_get_dtype (codes));
    }
  else if ((w->codes = as_int32 (codes, s->name, error)) == NULL)
    return FALSE;
  if ((zero && (w->zero = as_int32 (zero, zp_name, error)) == NULL) ||
      (w->scale = quark_tensor_to_floats (scale, &n, error)) == NULL)
    return FALSE;
  return TRUE;
}

/* whether every code the checkpoint's integer type can hold lands in the
 * block's range in group @g, so that its codes need no reading to check */
static gboolean
group_always_fits (const Target *t, const Weight *w, gsize g)
{
  gint32 z = w->zero ? w->zero[g] : 0;
  gint32 lo = t->bits == 8 ? -128 : 0, hi = t->bits == 8 ? 127 : (1 << t->bits) - 1;
  gint32 shift = t->with_min ? -w->qmin : t->offset - z;

  return w->qmin + shift >= lo && w->qmax + shift <= hi;
}

/* the 32 codes of group @g (row-major over [rows, groups]) as the block
 * stores them, into @n; FALSE when one falls outside the block's range */
static gboolean
group_codes (const Target *t, const Weight *w, gsize g, gint32 *n)
{
  gint32 z = w->zero ? w->zero[g] : 0;
  gsize at = (g / w->groups) * w->cols + (g % w->groups) * 32;
  gint32 lo = t->bits == 8 ? -128 : 0, hi = t->bits == 8 ? 127 : (1 << t->bits) - 1;
  gint32 shift = t->with_min ? -w->qmin : t->offset - z, out = 0;

  /* branch-free: the range check collects the codes outside [lo, hi] */
  if (w->bytes && w->bytes_signed)
    for (guint j = 0; j < 32; j++)
      n[j] = (gint32) (gint8) w->bytes[at + j] + shift;
  else if (w->bytes)
    for (guint j = 0; j < 32; j++)
      n[j] = (gint32) w->bytes[at + j] + shift;
  else
    for (guint j = 0; j < 32; j++)
      n[j] = w->codes[at + j] + shift;
  for (guint j = 0; j < 32; j++)
    out |= (n[j] - lo) | (hi - n[j]);
  return out >= 0;
}

/* the block parameters of group @g: d, and m for the _1 types (exactly, in
 * float64) */
static void
group_params (const Target *t, const Weight *w, gsize g, double *d, double *m)
{
  gint32 z = w->zero ? w->zero[g] : 0;

  *d = w->scale[g];
  *m = t->with_min ? -(double) w->scale[g] * (double) (z - w->qmin) : 0.0;
}

/* Checks a weight: *why stays NULL when every group carries over exactly,
 * else says why not; @fixable: only binary16 rounding stands in the way.
 * FALSE with @error for a damaged file. */
static gboolean
check_weight (QuarkGgufBridge *b, Source *s, char **why, gboolean *fixable, GError **error)
{
  const Target *t = &b->target;
  Weight w;
  gsize inexact = 0, range = 0, total;
  double moved = 0;

  *fixable = FALSE;
  *why = NULL;
  if (!read_weight (b, s, &w, why, error))
    {
      weight_clear (&w);
      return *why != NULL;
    }
  s->shape[0] = (gint64) w.rows;
  s->shape[1] = (gint64) w.cols;
  total = w.rows * w.groups;
  for (gsize g = 0; g < total; g++)
    {
      double d, m;
      gint32 n[32];
      group_params (t, &w, g, &d, &m);
      if (!group_always_fits (t, &w, g) && !group_codes (t, &w, g, n))
        range++;
      else if (!f16_exact (d) || !f16_exact (m))
        {
          /* how far a value moves when d and m are rounded: at most
           * |d' - d| times the largest |n - o|, plus |m' - m| */
          double span = t->with_min ? (1 << t->bits) - 1 : t->bits == 8 ? 128 : t->offset;
          inexact++;
          moved = MAX (moved, fabs (f16_round (d) - d) * span + fabs (f16_round (m) - m));
        }
    }
  weight_clear (&w);
  if (range)
    *why = g_strdup_printf ("%zu of %zu groups have codes that %s cannot hold (%s)", range, total,
                            _quark_ggml_type_lookup (b->type)->name,
                            t->with_min ? "the checkpoint's integer type is wider"
                                       : "their zero point is not the one the type implies");
  else if (inexact)
    {
      *fixable = TRUE;
      *why = g_strdup_printf ("%zu of %zu groups have a scale%s not exact in FP16 (rounding moves values by up "
                              "to %.3g)", inexact, total, t->with_min ? " or minimum" : "", moved);
    }
  return TRUE;
}

/* the float shape of a quantized weight: its logical codes' */
static gboolean
logical_shape (QuarkGgufBridge *b, Source *s, GError **error)
{
  g_autoptr(QuarkModel) logical = quark_model_new ();
  QuarkTensor *codes;

  if (!quark_checkpoint_format_import_weight (b->reader, b->checkpoint, s->name, s->spec, logical, error))
    return FALSE;
  codes = quark_model_get_tensor (logical, s->name);
  if (codes == NULL || quark_tensor_get_n_dims (codes) != 2)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: its codes are not a matrix", s->name);
      return FALSE;
    }
  s->shape[0] = quark_tensor_get_dim (codes, 0);
  s->shape[1] = quark_tensor_get_dim (codes, 1);
  return TRUE;
}

/* the checkpoint's layer of a weight, as its backend config names it */
static QuarkTensorSpec *
weight_spec (QuarkQuantizationConfig *config, QuarkModel *checkpoint, QuarkTensor *t)
{
  const char *name = quark_tensor_get_name (t);
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  g_autofree char *layer = NULL;

  if (!g_str_has_suffix (name, ".weight") || quark_tensor_get_n_dims (t) != 2 ||
      quark_model_get_tensor (checkpoint, scale_name) == NULL)
    return NULL;
  layer = g_strndup (name, strlen (name) - strlen (".weight"));
  return quark_quantization_config_get_tensor_spec (config, layer, "Linear", QUARK_ROLE_WEIGHT);
}

/* NAME_scale / NAME_zero_point of a quantized weight NAME in the plan */
static gboolean
parameter_of_weight (const char *name, GHashTable *weights)
{
  static const char * const suffixes[] = { "_scale", "_zero_point", NULL };
  for (guint i = 0; suffixes[i]; i++)
    if (g_str_has_suffix (name, suffixes[i]))
      {
        g_autofree char *base = g_strndup (name, strlen (name) - strlen (suffixes[i]));
        if (g_hash_table_contains (weights, base))
          return TRUE;
      }
  return FALSE;
}

static void
fail_with (GError **error, GPtrArray *problems)
{
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < problems->len && i < 8; i++)
    g_string_append_printf (s, "\n  %s", (const char *) g_ptr_array_index (problems, i));
  if (problems->len > 8)
    g_string_append_printf (s, "\n  … and %u more", problems->len - 8);
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
               "%u tensors cannot be carried into GGUF without rounding again (--inexact round or dequantize "
               "chooses what to do with them; --requantize quantizes the dequantized model afresh):%s",
               problems->len, s->str);
  g_string_free (s, TRUE);
}

QuarkGgufBridge *
_quark_gguf_bridge_new (QuarkModel *checkpoint, QuarkGgmlType type, QuarkGgufInexact inexact, GPtrArray *report,
                        GError **error)
{
  QuarkRegistry *registry = quark_registry_get_default ();
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autoptr(JsonNode) backend_config = NULL;
  g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GHashTable) weights = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  QuarkGgufBridge *b;
  Target target;

  if (!target_of (type, &target))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "the model is already quantized: its codes carry over to Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0, "
                   "not %s (--requantize dequantizes it and quantizes the result)",
                   _quark_ggml_type_lookup (type) ? _quark_ggml_type_lookup (type)->name : "this type");
      return NULL;
    }
  if ((config = quark_registry_config_for_checkpoint (registry, checkpoint, error)) == NULL)
    return NULL;

  b = g_new0 (QuarkGgufBridge, 1);
  b->checkpoint = g_object_ref (checkpoint);
  b->type = type;
  b->target = target;
  b->sources = g_array_new (FALSE, TRUE, sizeof (Source));
  g_array_set_clear_func (b->sources, source_clear);
  b->reader = quark_registry_format_for_model (registry, checkpoint);
  if (b->reader == NULL)
    b->reader = quark_registry_new_format (registry, "quark", NULL);
  if (b->reader == NULL || !QUARK_CHECKPOINT_FORMAT_GET_CLASS (b->reader)->read_weight)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "the model's codes are in the %s format, which GGUF does not read codes from (it reads AMD "
                   "Quark's layout); --requantize dequantizes it and quantizes the result",
                   b->reader ? quark_checkpoint_format_get_name (b->reader) : "unknown");
      _quark_gguf_bridge_free (b);
      return NULL;
    }
  backend_config = quark_quantization_config_to_json (config);
  quark_checkpoint_format_set_backend_config (b->reader, backend_config);

  /* the quantized weights first, so that their parameters are known */
  for (guint i = 0; i < quark_model_get_n_tensors (checkpoint); i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (checkpoint, i);
      QuarkTensorSpec *spec = weight_spec (config, checkpoint, t);
      if (spec)
        g_hash_table_insert (weights, g_strdup (quark_tensor_get_name (t)), spec);
    }

  for (guint i = 0; i < quark_model_get_n_tensors (checkpoint); i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (checkpoint, i);
      const char *name = quark_tensor_get_name (t);
      QuarkTensorSpec *spec = g_hash_table_lookup (weights, name);
      Source s = { 0 };
      guint n_dims;
      const gint64 *shape = quark_tensor_get_shape (t, &n_dims);

      if (parameter_of_weight (name, weights))
        continue;
      if (spec == NULL && quark_dtype_is_quantizable (quark_tensor_get_dtype (t)) && n_dims >= 1 && n_dims <= 2)
        {
          /* a float tensor the checkpoint left alone: carried as stored */
          s.name = g_strdup (name);
          s.tensor = t;
          s.kind = QUARK_GGUF_BRIDGE_FLOAT;
          s.n_dims = n_dims;
          memcpy (s.shape, shape, n_dims * sizeof (gint64));
          g_array_append_val (b->sources, s);
          continue;
        }
      if (spec == NULL)
        {
          /* activation parameters, or integers GGUF has no place for */
          char *why = g_strdup_printf ("%s: %s %s has no GGUF counterpart (llama.cpp quantizes activations its "
                                       "own way)", name, quark_dtype_get_name (quark_tensor_get_dtype (t)),
                                       g_str_has_suffix (name, "_scale") || g_str_has_suffix (name, "_zero_point")
                                         ? "activation quantization parameters" : "tensor");
          if (inexact == QUARK_GGUF_INEXACT_FAIL)
            g_ptr_array_add (problems, why);
          else
            {
              g_ptr_array_add (report, g_strconcat (why, "; left out", NULL));
              g_free (why);
            }
          continue;
        }

      s.name = g_strdup (name);
      s.spec = g_object_ref (spec);
      s.kind = QUARK_GGUF_BRIDGE_CODES;
      s.n_dims = 2;
      {
        gboolean fixable = FALSE;
        g_autofree char *why = NULL;

        if (!check_weight (b, &s, &why, &fixable, error) || (s.shape[1] == 0 && !logical_shape (b, &s, error)))
          {
            source_clear (&s);
            _quark_gguf_bridge_free (b);
            return NULL;
          }
        if (why && (inexact == QUARK_GGUF_INEXACT_FAIL || (inexact == QUARK_GGUF_INEXACT_ROUND && !fixable)))
          g_ptr_array_add (problems, g_strdup_printf ("%s: %s", name, why));
        else if (why && inexact == QUARK_GGUF_INEXACT_ROUND)
          g_ptr_array_add (report, g_strdup_printf ("%s: %s; rounded as AMD Quark's export does", name, why));
        else if (why)
          {
            s.kind = QUARK_GGUF_BRIDGE_DEQUANTIZED;
            g_ptr_array_add (report, g_strdup_printf ("%s: %s; written dequantized in F32", name, why));
          }
      }
      g_array_append_val (b->sources, s);
      /* checked: its pages leave the resident memory until it is written */
      _quark_gguf_bridge_release (b, b->sources->len - 1);
    }
  if (problems->len)
    {
      fail_with (error, problems);
      _quark_gguf_bridge_free (b);
      return NULL;
    }
  return b;
}

guint
_quark_gguf_bridge_get_n_sources (QuarkGgufBridge *b)
{
  return b->sources->len;
}

QuarkGgufBridgeKind
_quark_gguf_bridge_get_source (QuarkGgufBridge *b, guint i, const char **name, QuarkTensor **tensor,
                               guint *n_dims, const gint64 **shape)
{
  Source *s = &g_array_index (b->sources, Source, i);
  *name = s->name;
  *tensor = s->tensor;
  *n_dims = s->n_dims;
  *shape = s->shape;
  return s->kind;
}

QuarkTensor *
_quark_gguf_bridge_dequantize (QuarkGgufBridge *b, guint i, GError **error)
{
  Source *s = &g_array_index (b->sources, Source, i);
  g_autofree char *scale_name = g_strconcat (s->name, "_scale", NULL);
  g_autofree char *zp_name = g_strconcat (s->name, "_zero_point", NULL);
  g_autoptr(QuarkModel) logical = quark_model_new ();

  if (!quark_checkpoint_format_import_weight (b->reader, b->checkpoint, s->name, s->spec, logical, error))
    return NULL;
  return quark_tensor_spec_dequantize (s->spec, quark_model_get_tensor (logical, s->name),
                                       quark_model_get_tensor (logical, scale_name),
                                       quark_model_get_tensor (logical, zp_name), error);
}

gboolean
_quark_gguf_bridge_write_rows (QuarkGgufBridge *b, guint i, gsize (*row_of) (gsize, gsize, gint64), gint64 heads,
                               guint8 *out, GError **error)
{
  Source *s = &g_array_index (b->sources, Source, i);
  gsize row_size = _quark_ggml_row_size (b->type, (gsize) s->shape[1]);
  gsize block_size = _quark_ggml_row_size (b->type, 32);
  char *unused = NULL;
  Weight w;

  if (!read_weight (b, s, &w, &unused, error))
    {
      if (unused)
        g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: %s", s->name, unused);
      g_free (unused);
      weight_clear (&w);
      return FALSE;
    }
  for (gsize r = 0; r < w.rows; r++)
    {
      gsize from = row_of (r, w.rows, heads);
      guint8 *y = out + r * row_size;
      for (gsize k = 0; k < w.groups; k++)
        {
          gsize g = from * w.groups + k;
          gint32 n[32];
          guint8 codes[32];
          double d, m;

          /* checked in range when the bridge was planned */
          group_codes (&b->target, &w, g, n);
          group_params (&b->target, &w, g, &d, &m);
          for (guint j = 0; j < 32; j++)
            codes[j] = (guint8) n[j];
          _quark_ggml_pack_block (b->type, codes, (float) d, (float) m, y + k * block_size);
        }
    }
  weight_clear (&w);
  return TRUE;
}

/* Done with source @i: the mapped pages of the checkpoint's tensors that
 * stored it (NAME, and NAME_… for its scales, zero points and the like)
 * leave the resident memory, so that a run holds a tensor or two */
void
_quark_gguf_bridge_release (QuarkGgufBridge *b, guint i)
{
  Source *s = &g_array_index (b->sources, Source, i);
  gsize len = strlen (s->name);

  if (s->tensor)
    quark_tensor_release_mapped_pages (s->tensor);
  for (guint k = 0; k < quark_model_get_n_tensors (b->checkpoint); k++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (b->checkpoint, k);
      const char *name = quark_tensor_get_name (t);
      if (strncmp (name, s->name, len) == 0 && (name[len] == '\0' || name[len] == '_'))
        quark_tensor_release_mapped_pages (t);
    }
}
