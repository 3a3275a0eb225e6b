/* quark-calibration.c: activation statistics
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-input-file-private.h"
#include "quark-model-private.h"
#include "quark-moments-private.h"
#include "quark-safetensors.h"

#include "quark-calibration.h"
#include "quark-enum-types.h"
#include "quark-error.h"
#include "quark-json.h"
#include "kernels/quark-kernels.h"

#include <math.h>

/**
 * QuarkCalibration:
 *
 * A calibration session: running statistics of activations, fed batch after
 * batch by the runtime that executes the model, and read by quantizers to
 * fix static activation scales.
 *
 * libquark does not run models: a PyTorch forward hook, or an inference
 * engine in C, passes each layer's input or output to
 * [method@Quark.Calibration.observe] (from Python, a numpy array will do).
 * Only running statistics are kept, so memory does not depend on the number
 * of batches: per layer and role about 33 KiB, plus two floats per channel
 * for per-channel specs.
 *
 * For each layer and role the session keeps:
 *
 * - the running minimum and maximum (min of mins, max of maxes);
 * - the exponential moving average of each batch's minimum and maximum
 *   (averaging constant 0.01, as PyTorch's MovingAverageMinMaxObserver);
 * - a histogram of 2048 bins for positive and negative values over a range
 *   that doubles as needed (bins merge pairwise, so the histogram does not
 *   depend on batch order or size), read by the histogram percentile, MSE
 *   and KL observers;
 * - the running mean of each batch's exact percentiles (|x| at q, and the
 *   signed interval at 100 − q and q), Brevitas's calibration statistic;
 *   a session made for a config computes these only for layers whose spec
 *   uses the percentile observer, because they sort each batch;
 * - per-channel minimum and maximum along the spec's `ch_axis`, for
 *   per-channel static specs (a session made for a config only).
 *
 * [method@Quark.Calibration.compute_range] turns the statistics into the
 * range a spec's observer selects; quantizers take it from there. Statistics
 * can be saved with [method@Quark.Calibration.save] and loaded back, so
 * calibration and quantization can run in different processes.
 *
 * All methods may be called from several threads at once.
 */

#define PERCENTILE_DEFAULT 99.999   /* Brevitas's activation presets */
#define EMA_CONSTANT 0.01f

typedef struct {
  char *layer;
  QuarkRole role;
  guint64 n_batches;
  guint64 n_values;
  float min, max;
  float ema_min, ema_max;
  double pct_q;                /* 0: per-batch percentiles not collected */
  guint64 pct_batches;
  float pct_abs, pct_lo, pct_hi;
  float pct_span, pct_neg;     /* high - min (low, 0), and min (low, 0) */
  guint64 stat_batches;        /* the config's batch statistic: its running mean */
  float stat, stat_zp;
  float stat_zp_last;          /* the last batch's zero-point statistic */
  QuarkKernelHist *hist;
  int ch_axis;                 /* -1: no per-channel statistics */
  gsize n_channels;
  float *ch_min, *ch_max;
  QuarkMoments *moments;       /* inputs, when the session collects them */
} Entry;

struct _QuarkCalibration
{
  GObject parent_instance;

  QuarkQuantizationConfig *config;
  QuarkModel *model;
  GMutex lock;
  GHashTable *entries;   /* "role/layer" -> Entry */
  gboolean second_moments;
  gboolean gram_matrix;  /* second moments with the Gram matrix (the default) */
  gboolean cross_moments;
};

enum {
  PROP_0,
  PROP_CONFIG,
  PROP_MODEL,
  PROP_SECOND_MOMENTS,
  PROP_GRAM_MATRIX,
  PROP_CROSS_MOMENTS,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (QuarkCalibration, quark_calibration, G_TYPE_OBJECT)

static void
entry_free (gpointer data)
{
  Entry *e = data;
  g_free (e->layer);
  g_free (e->hist);
  g_free (e->ch_min);
  g_free (e->ch_max);
  _quark_moments_free (e->moments);
  g_free (e);
}

static Entry *
entry_new (const char *layer, QuarkRole role)
{
  Entry *e = g_new0 (Entry, 1);
  e->layer = g_strdup (layer);
  e->role = role;
  e->min = e->ema_min = INFINITY;
  e->max = e->ema_max = -INFINITY;
  e->hist = g_new (QuarkKernelHist, 1);
  quark_kernel_hist_init (e->hist);
  e->ch_axis = -1;
  return e;
}

static void
quark_calibration_finalize (GObject *object)
{
  QuarkCalibration *self = QUARK_CALIBRATION (object);

  g_hash_table_unref (self->entries);
  g_mutex_clear (&self->lock);
  g_clear_object (&self->config);
  g_clear_object (&self->model);

  G_OBJECT_CLASS (quark_calibration_parent_class)->finalize (object);
}

static void
quark_calibration_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  QuarkCalibration *self = QUARK_CALIBRATION (object);

  switch (prop_id)
    {
    case PROP_CONFIG: g_value_set_object (value, self->config); break;
    case PROP_MODEL: g_value_set_object (value, self->model); break;
    case PROP_SECOND_MOMENTS: g_value_set_boolean (value, quark_calibration_get_second_moments_enabled (self)); break;
    case PROP_GRAM_MATRIX: g_value_set_boolean (value, quark_calibration_get_gram_matrix_enabled (self)); break;
    case PROP_CROSS_MOMENTS: g_value_set_boolean (value, quark_calibration_get_cross_moments_enabled (self)); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
quark_calibration_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  QuarkCalibration *self = QUARK_CALIBRATION (object);

  switch (prop_id)
    {
    case PROP_CONFIG: self->config = g_value_dup_object (value); break;
    case PROP_MODEL: self->model = g_value_dup_object (value); break;
    case PROP_SECOND_MOMENTS: quark_calibration_set_second_moments_enabled (self, g_value_get_boolean (value)); break;
    case PROP_GRAM_MATRIX: quark_calibration_set_gram_matrix_enabled (self, g_value_get_boolean (value)); break;
    case PROP_CROSS_MOMENTS: quark_calibration_set_cross_moments_enabled (self, g_value_get_boolean (value)); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
quark_calibration_class_init (QuarkCalibrationClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = quark_calibration_finalize;
  object_class->get_property = quark_calibration_get_property;
  object_class->set_property = quark_calibration_set_property;

  /**
   * QuarkCalibration:config:
   *
   * The config whose static activation specs this session calibrates: it
   * decides per layer whether per-batch percentiles and per-channel
   * statistics are collected, and at which percentile.
   */
  properties[PROP_CONFIG] =
    g_param_spec_object ("config", "Config", "The config being calibrated for",
                         QUARK_TYPE_QUANTIZATION_CONFIG,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  /**
   * QuarkCalibration:model:
   *
   * The model being calibrated; its weights' shapes give the layer types
   * that `layer_type_quant_config` entries match.
   */
  properties[PROP_MODEL] =
    g_param_spec_object ("model", "Model", "The model being calibrated",
                         QUARK_TYPE_MODEL,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  /**
   * QuarkCalibration:second-moments:
   *
   * Whether the session also learns the second moments of every layer's
   * input: the Gram matrix H = Σ x xᵀ over the tokens x (rows of the
   * batch's last dimension) in float64, the token count, and per feature
   * Σx, Σx² and max |x|, which GPTQ, AWQ and SmoothQuant read. A layer with
   * n input features takes n² · 8 bytes (a 4096-wide input 128 MiB, a
   * 14336-wide down_proj 1.5 GiB). FALSE by default.
   */
  properties[PROP_SECOND_MOMENTS] =
    g_param_spec_boolean ("second-moments", NULL, NULL, FALSE,
                          G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /**
   * QuarkCalibration:gram-matrix:
   *
   * Whether the second moments a layer input starts learning include the
   * Gram matrix (TRUE by default). Without it only the token count and the
   * per-feature Σx, Σx², Σ|x| and max |x| are learned, in memory linear in
   * the features: what an importance matrix (llama.cpp's imatrix: Σx² and
   * the token count) and AWQ's activation statistic need, not GPTQ.
   */
  properties[PROP_GRAM_MATRIX] =
    g_param_spec_boolean ("gram-matrix", NULL, NULL, TRUE,
                          G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /**
   * QuarkCalibration:cross-moments:
   *
   * Whether a runtime that runs the float model beside the partly
   * quantized one (quark_executor_calibrate_sequential()) also gives the
   * session, for every layer input x, the cross moments C = Σ r xᵀ of the
   * float model's input r at the same token against x
   * (quark_calibration_observe_cross()), which GPTQ's input error
   * correction reads. Another n² · 8 bytes per layer input. FALSE by
   * default.
   */
  properties[PROP_CROSS_MOMENTS] =
    g_param_spec_boolean ("cross-moments", NULL, NULL, FALSE,
                          G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
quark_calibration_init (QuarkCalibration *self)
{
  g_mutex_init (&self->lock);
  self->entries = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, entry_free);
  self->gram_matrix = TRUE;
}

static char *
entry_key (const char *layer_name, QuarkRole role)
{
  return g_strdup_printf ("%d/%s", (int) role, layer_name);
}

static const char *
role_nick (QuarkRole role)
{
  g_autoptr(GEnumClass) klass = g_type_class_ref (QUARK_TYPE_ROLE);
  GEnumValue *v = g_enum_get_value (klass, role);
  return v ? v->value_nick : "?";   /* nicks are static strings */
}

/**
 * quark_calibration_new:
 *
 * Makes an empty session that is not tied to a config: it keeps every
 * statistic except per-channel ones, and per-batch percentiles at 99.999.
 *
 * Returns: (transfer full): a new calibration
 */
QuarkCalibration *
quark_calibration_new (void)
{
  return g_object_new (QUARK_TYPE_CALIBRATION, NULL);
}

/**
 * quark_calibration_new_for_config:
 * @config: the config to calibrate for
 * @model: (nullable): the model, for layer types
 *
 * Makes a calibration session for @config: per layer, it collects what the
 * layer's static input and output specs need.
 *
 * Returns: (transfer full): a new calibration
 */
QuarkCalibration *
quark_calibration_new_for_config (QuarkQuantizationConfig *config,
                                  QuarkModel              *model)
{
  g_return_val_if_fail (QUARK_IS_QUANTIZATION_CONFIG (config), NULL);
  g_return_val_if_fail (model == NULL || QUARK_IS_MODEL (model), NULL);

  return g_object_new (QUARK_TYPE_CALIBRATION, "config", config, "model", model, NULL);
}

/* The spec @config gives a layer's @role, or NULL. */
static QuarkTensorSpec *
lookup_spec (QuarkCalibration *self, const char *layer_name, QuarkRole role)
{
  g_autofree char *weight = NULL;
  const char *layer_type = NULL;

  if (self->config == NULL)
    return NULL;
  if (self->model)
    {
      QuarkTensor *w;
      weight = g_strconcat (layer_name, ".weight", NULL);
      w = quark_model_get_tensor (self->model, weight);
      if (w)
        layer_type = quark_tensor_guess_layer_type (w);
    }
  return quark_quantization_config_get_tensor_spec (self->config, layer_name, layer_type, role);
}

/* What one batch contributes, computed outside the lock. */
typedef struct {
  float min, max;
  float pct_abs, pct_lo, pct_hi, pct_span, pct_neg;
  gboolean has_stat;
  float stat, stat_zp;
  float *ch_min, *ch_max;
  gsize n_channels;
} Batch;

static gboolean
observe (QuarkCalibration  *self,
         const char        *layer_name,
         QuarkRole          role,
         const float       *values,
         gsize              n_values,
         const gint64      *shape,
         guint              n_dims,
         const QuarkMoments *shared,
         GError           **error)
{
  g_autoptr(QuarkTensorSpec) spec = NULL;
  g_autofree char *key = NULL;
  double pct_q = 0;
  int axis = -1;
  Batch b = { INFINITY, -INFINITY, 0, 0, 0, 0, 0, FALSE, 0, 0, NULL, NULL, 0 };
  gsize outer = 1, inner = 1;
  guint64 count = 1;
  Entry *e;
  gboolean ok = TRUE;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), FALSE);
  g_return_val_if_fail (layer_name != NULL, FALSE);
  g_return_val_if_fail (values != NULL || n_values == 0, FALSE);
  g_return_val_if_fail (shape != NULL || n_dims == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (role != QUARK_ROLE_INPUT && role != QUARK_ROLE_OUTPUT)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "layer %s: only inputs and outputs are calibrated, not the %s", layer_name, role_nick (role));
      return FALSE;
    }
  for (guint d = 0; d < n_dims; d++)
    count = shape[d] < 0 ? 0 : count * (guint64) shape[d];
  if (shape != NULL && count != n_values)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "layer %s: the %s batch's shape holds %" G_GUINT64_FORMAT " values, not %" G_GSIZE_FORMAT,
                   layer_name, role_nick (role), count, n_values);
      return FALSE;
    }
  if (!quark_kernel_min_max_f32 (values, n_values, &b.min, &b.max))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR,
                   "layer %s: the %s batch holds NaN or infinity", layer_name, role_nick (role));
      return FALSE;
    }

  /* what this layer's spec needs */
  spec = lookup_spec (self, layer_name, role);
  if (self->config == NULL)
    pct_q = PERCENTILE_DEFAULT;
  else if (spec && !quark_tensor_spec_get_is_dynamic (spec))
    {
      if (quark_tensor_spec_get_observer (spec) == QUARK_OBSERVER_PERCENTILE)
        pct_q = quark_tensor_spec_get_percentile (spec);
      if (quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_CHANNEL)
        {
          axis = quark_tensor_spec_get_ch_axis (spec);
          if (axis < 0)
            axis += (int) MAX (n_dims, 1);
          if (axis < 0 || axis >= (int) n_dims)
            {
              g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR,
                           "layer %s: the %s spec is per channel along axis %d, but the batch has %u dimensions",
                           layer_name, role_nick (role), quark_tensor_spec_get_ch_axis (spec), n_dims);
              return FALSE;
            }
        }
    }

  if (spec && self->config && !quark_tensor_spec_get_is_dynamic (spec) && n_values > 0)
    {
      /* the zero-point statistic goes in as the previous batch's (NaN for
       * the first) and comes out as this one's */
      g_autofree char *k = entry_key (layer_name, role);
      Entry *prev;
      g_mutex_lock (&self->lock);
      prev = g_hash_table_lookup (self->entries, k);
      b.stat_zp = prev && prev->stat_batches > 0 ? prev->stat_zp_last : NAN;
      g_mutex_unlock (&self->lock);
      b.has_stat = quark_quantization_config_batch_statistic (self->config, spec, values, n_values, &b.stat,
                                                              &b.stat_zp);
    }
  if (pct_q > 0 && n_values > 0)
    {
      g_autofree float *scratch = g_new (float, n_values);
      b.pct_abs = quark_kernel_abs_percentile_f32 (values, n_values, pct_q, scratch);
      quark_kernel_percentile_interval_f32 (values, n_values, 100.0 - pct_q, pct_q, scratch, &b.pct_lo, &b.pct_hi);
      /* Brevitas's PercentileInterval and NegativePercentileOrZero */
      b.pct_neg = fminf (b.pct_lo, 0.0f);
      b.pct_span = b.pct_hi - b.pct_neg;
    }
  if (axis >= 0)
    {
      for (int d = 0; d < axis; d++)
        outer *= (gsize) shape[d];
      for (guint d = (guint) axis + 1; d < n_dims; d++)
        inner *= (gsize) shape[d];
      b.n_channels = (gsize) shape[axis];
      b.ch_min = g_new (float, MAX (b.n_channels, 1));
      b.ch_max = g_new (float, MAX (b.n_channels, 1));
      quark_kernel_channel_min_max_f32 (values, outer, b.n_channels, inner, b.ch_min, b.ch_max);
    }

  key = entry_key (layer_name, role);
  g_mutex_lock (&self->lock);
  e = g_hash_table_lookup (self->entries, key);
  if (e == NULL)
    {
      e = entry_new (layer_name, role);
      e->pct_q = pct_q;
      e->ch_axis = axis;
      e->n_channels = b.n_channels;
      if (axis >= 0)
        {
          e->ch_min = g_memdup2 (b.ch_min, MAX (b.n_channels, 1) * sizeof (float));
          e->ch_max = g_memdup2 (b.ch_max, MAX (b.n_channels, 1) * sizeof (float));
        }
      g_hash_table_insert (self->entries, g_steal_pointer (&key), e);
    }
  else if (axis >= 0)
    {
      if (e->ch_axis != axis || e->n_channels != b.n_channels)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR,
                       "layer %s: the %s batch has %" G_GSIZE_FORMAT " channels along axis %d, earlier batches %"
                       G_GSIZE_FORMAT, layer_name, role_nick (role), b.n_channels, axis, e->n_channels);
          ok = FALSE;
        }
      else
        for (gsize c = 0; c < b.n_channels; c++)
          {
            e->ch_min[c] = fminf (e->ch_min[c], b.ch_min[c]);
            e->ch_max[c] = fmaxf (e->ch_max[c], b.ch_max[c]);
          }
    }
  if (ok)
    {
      if (n_values > 0)
        {
          if (e->n_values == 0)
            {
              e->ema_min = b.min;
              e->ema_max = b.max;
            }
          else
            {
              e->ema_min = e->ema_min + EMA_CONSTANT * (b.min - e->ema_min);
              e->ema_max = e->ema_max + EMA_CONSTANT * (b.max - e->ema_max);
            }
          e->min = fminf (e->min, b.min);
          e->max = fmaxf (e->max, b.max);
          if (e->pct_q > 0)
            {
              /* Brevitas's true running mean: c batches folded in so far */
              guint64 c = e->pct_batches;
              if (c == 0)
                {
                  e->pct_abs = b.pct_abs;
                  e->pct_lo = b.pct_lo;
                  e->pct_hi = b.pct_hi;
                  e->pct_span = b.pct_span;
                  e->pct_neg = b.pct_neg;
                }
              else
                {
                  float f = (float) ((double) c / (double) (c + 1));
                  float d = (float) (c + 1);
                  e->pct_abs = e->pct_abs * f + b.pct_abs / d;
                  e->pct_lo = e->pct_lo * f + b.pct_lo / d;
                  e->pct_hi = e->pct_hi * f + b.pct_hi / d;
                  e->pct_span = e->pct_span * f + b.pct_span / d;
                  e->pct_neg = e->pct_neg * f + b.pct_neg / d;
                }
              e->pct_batches++;
            }
          if (b.has_stat)
            {
              /* the same running mean */
              guint64 c = e->stat_batches;
              float f = (float) ((double) c / (double) (c + 1));
              float d = (float) (c + 1);
              e->stat = c == 0 ? b.stat : e->stat * f + b.stat / d;
              e->stat_zp = c == 0 ? b.stat_zp : e->stat_zp * f + b.stat_zp / d;
              e->stat_zp_last = b.stat_zp;
              e->stat_batches++;
            }
          quark_kernel_hist_add (e->hist, values, n_values);
        }
      e->n_batches++;
      e->n_values += n_values;
    }
  if (ok && self->second_moments && role == QUARK_ROLE_INPUT && n_values > 0)
    {
      gsize features = n_dims > 0 ? (gsize) shape[n_dims - 1] : n_values;
      if (e->moments == NULL)
        {
          if ((e->moments = _quark_moments_new (features, shared ? shared->gram != NULL : self->gram_matrix,
                                                error)) == NULL)
            {
              g_prefix_error (error, "layer %s: ", layer_name);
              ok = FALSE;
            }
        }
      else if (e->moments->n_features != features)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR,
                       "layer %s: the input batch has %" G_GSIZE_FORMAT " features in its last dimension, earlier "
                       "batches %" G_GSIZE_FORMAT, layer_name, features, e->moments->n_features);
          ok = FALSE;
        }
      if (ok && shared)
        _quark_moments_merge (e->moments, shared);
      else if (ok)
        _quark_moments_add (e->moments, values, n_values / features);
    }
  g_mutex_unlock (&self->lock);
  g_free (b.ch_min);
  g_free (b.ch_max);
  return ok;
}

/**
 * quark_calibration_observe_floats:
 * @self: a #QuarkCalibration
 * @layer_name: the layer's full name, such as `model.layers.0.mlp.down_proj`
 * @role: %QUARK_ROLE_INPUT or %QUARK_ROLE_OUTPUT
 * @values: (array length=n_values): the batch, row-major
 * @n_values: the number of values
 * @shape: (array length=n_dims) (nullable): the batch's shape (needed for
 *   per-channel statistics; %NULL means one dimension)
 * @n_dims: the number of dimensions
 * @error: return location for a #GError
 *
 * Adds one batch of float32 values to the statistics of a layer's input or
 * output.
 *
 * Returns: %TRUE on success; %FALSE with %QUARK_ERROR_INVALID_TENSOR if the
 *   batch holds NaN or infinity or does not have the channels of earlier
 *   batches, or %QUARK_ERROR_INVALID_ARGUMENT for another role or a shape
 *   that does not match @n_values
 */
gboolean
quark_calibration_observe_floats (QuarkCalibration  *self,
                                  const char        *layer_name,
                                  QuarkRole          role,
                                  const float       *values,
                                  gsize              n_values,
                                  const gint64      *shape,
                                  guint              n_dims,
                                  GError           **error)
{
  return observe (self, layer_name, role, values, n_values, shape, n_dims, NULL, error);
}

/**
 * quark_calibration_observe_floats_shared:
 * @self: a #QuarkCalibration
 * @layer_names: (array zero-terminated=1): layers that all take this batch
 *   as their input or output, such as q_proj, k_proj and v_proj
 * @role: %QUARK_ROLE_INPUT or %QUARK_ROLE_OUTPUT
 * @values: (array length=n_values): the batch, row-major
 * @n_values: the number of values
 * @shape: (array length=n_dims) (nullable): the batch's shape
 * @n_dims: the number of dimensions
 * @error: return location for a #GError
 *
 * Like quark_calibration_observe_floats() for each of @layer_names, with
 * the batch's second moments computed once for all of them (and outside
 * the session's lock) when [property@Quark.Calibration:second-moments] is
 * set. The result is the same as observing the batch for each layer.
 *
 * Returns: %TRUE on success; %FALSE with a #QuarkError (layers before the
 *   one at fault have seen the batch)
 */
gboolean
quark_calibration_observe_floats_shared (QuarkCalibration   *self,
                                         const char * const *layer_names,
                                         QuarkRole           role,
                                         const float        *values,
                                         gsize               n_values,
                                         const gint64       *shape,
                                         guint               n_dims,
                                         GError            **error)
{
  g_autoptr(QuarkMoments) moments = NULL;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), FALSE);
  g_return_val_if_fail (layer_names != NULL, FALSE);
  g_return_val_if_fail (values != NULL || n_values == 0, FALSE);
  g_return_val_if_fail (shape != NULL || n_dims == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (layer_names[0] != NULL && layer_names[1] != NULL && quark_calibration_get_second_moments_enabled (self) &&
      role == QUARK_ROLE_INPUT && n_values > 0)
    {
      gsize features = n_dims > 0 ? (gsize) shape[n_dims - 1] : n_values;
      if (features > 0 && n_values % features == 0 &&
          (moments = _quark_moments_new (features, quark_calibration_get_gram_matrix_enabled (self), NULL)) != NULL)
        _quark_moments_add (moments, values, n_values / features);
    }
  for (guint i = 0; layer_names[i]; i++)
    if (!observe (self, layer_names[i], role, values, n_values, shape, n_dims, moments, error))
      return FALSE;
  return TRUE;
}

/**
 * quark_calibration_observe:
 * @self: a #QuarkCalibration
 * @layer_name: the layer's full name
 * @role: %QUARK_ROLE_INPUT or %QUARK_ROLE_OUTPUT
 * @activation: one batch of the activation (a float tensor of any float
 *   dtype)
 * @error: return location for a #GError
 *
 * Adds one batch to the statistics of a layer's input or output. See
 * quark_calibration_observe_floats().
 *
 * Returns: %TRUE on success; %FALSE with a #QuarkError
 */
gboolean
quark_calibration_observe (QuarkCalibration  *self,
                           const char        *layer_name,
                           QuarkRole          role,
                           QuarkTensor       *activation,
                           GError           **error)
{
  g_autofree float *values = NULL;
  const gint64 *shape;
  guint n_dims;
  gsize n;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), FALSE);
  g_return_val_if_fail (layer_name != NULL, FALSE);
  g_return_val_if_fail (QUARK_IS_TENSOR (activation), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  values = quark_tensor_to_floats (activation, &n, error);
  if (values == NULL)
    return FALSE;
  shape = quark_tensor_get_shape (activation, &n_dims);
  return quark_calibration_observe_floats (self, layer_name, role, values, n, n_dims ? shape : NULL, n_dims, error);
}

/* Looks an entry up; call with the lock held. */
static Entry *
find_entry (QuarkCalibration *self, const char *layer_name, QuarkRole role)
{
  g_autofree char *key = entry_key (layer_name, role);
  return g_hash_table_lookup (self->entries, key);
}

/**
 * quark_calibration_get_min_max:
 * @self: a #QuarkCalibration
 * @layer_name: the layer's full name
 * @role: the role
 * @min: (out) (optional): the running minimum
 * @max: (out) (optional): the running maximum
 *
 * Reads the running minimum and maximum of a layer's input or output.
 *
 * Returns: %TRUE if at least one value was observed for @layer_name and @role
 */
gboolean
quark_calibration_get_min_max (QuarkCalibration *self,
                               const char       *layer_name,
                               QuarkRole         role,
                               float            *min,
                               float            *max)
{
  Entry *e;
  gboolean found;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), FALSE);
  g_return_val_if_fail (layer_name != NULL, FALSE);

  g_mutex_lock (&self->lock);
  e = find_entry (self, layer_name, role);
  found = e != NULL && e->n_values > 0;
  if (min)
    *min = found ? e->min : INFINITY;
  if (max)
    *max = found ? e->max : -INFINITY;
  g_mutex_unlock (&self->lock);
  return found;
}

/**
 * quark_calibration_get_n_batches:
 * @self: a #QuarkCalibration
 * @layer_name: the layer's full name
 * @role: the role
 *
 * Counts the batches observed for a layer's input or output.
 *
 * Returns: the number of batches
 */
guint64
quark_calibration_get_n_batches (QuarkCalibration *self,
                                 const char       *layer_name,
                                 QuarkRole         role)
{
  Entry *e;
  guint64 n;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), 0);
  g_return_val_if_fail (layer_name != NULL, 0);

  g_mutex_lock (&self->lock);
  e = find_entry (self, layer_name, role);
  n = e ? e->n_batches : 0;
  g_mutex_unlock (&self->lock);
  return n;
}

static gint
compare_names (gconstpointer a, gconstpointer b)
{
  return g_strcmp0 (*(char * const *) a, *(char * const *) b);
}

/**
 * quark_calibration_list_layers:
 * @self: a #QuarkCalibration
 * @role: the role
 *
 * Lists the layers with statistics for @role, sorted.
 *
 * Returns: (transfer full) (array zero-terminated=1): the layer names
 */
char **
quark_calibration_list_layers (QuarkCalibration *self,
                               QuarkRole         role)
{
  g_autoptr(GPtrArray) names = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer value;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), NULL);

  g_mutex_lock (&self->lock);
  g_hash_table_iter_init (&iter, self->entries);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    if (((Entry *) value)->role == role)
      g_ptr_array_add (names, g_strdup (((Entry *) value)->layer));
  g_mutex_unlock (&self->lock);
  g_ptr_array_sort (names, compare_names);
  g_ptr_array_add (names, NULL);
  return (char **) g_ptr_array_free (g_steal_pointer (&names), FALSE);
}

/**
 * quark_calibration_get_channel_min_max:
 * @self: a #QuarkCalibration
 * @layer_name: the layer's full name
 * @role: the role
 * @axis: (out) (optional): the channel axis
 * @mins: (out) (array length=n_channels) (transfer full) (optional): the
 *   per-channel minima
 * @maxs: (out) (array length=n_channels) (transfer full) (optional): the
 *   per-channel maxima
 * @n_channels: (out): the number of channels
 *
 * Reads the per-channel statistics, which a session made for a config
 * collects for per-channel static specs.
 *
 * Returns: %TRUE if there are per-channel statistics for @layer_name and
 *   @role
 */
gboolean
quark_calibration_get_channel_min_max (QuarkCalibration  *self,
                                       const char        *layer_name,
                                       QuarkRole          role,
                                       int               *axis,
                                       float            **mins,
                                       float            **maxs,
                                       gsize             *n_channels)
{
  Entry *e;
  gboolean found;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), FALSE);
  g_return_val_if_fail (layer_name != NULL, FALSE);
  g_return_val_if_fail (n_channels != NULL, FALSE);

  g_mutex_lock (&self->lock);
  e = find_entry (self, layer_name, role);
  found = e != NULL && e->ch_axis >= 0 && e->n_values > 0;
  *n_channels = found ? e->n_channels : 0;
  if (axis)
    *axis = found ? e->ch_axis : -1;
  if (mins)
    *mins = found ? g_memdup2 (e->ch_min, MAX (e->n_channels, 1) * sizeof (float)) : NULL;
  if (maxs)
    *maxs = found ? g_memdup2 (e->ch_max, MAX (e->n_channels, 1) * sizeof (float)) : NULL;
  g_mutex_unlock (&self->lock);
  return found;
}

/**
 * quark_calibration_get_batch_statistic:
 * @self: a #QuarkCalibration
 * @layer_name: the layer
 * @role: %QUARK_ROLE_INPUT or %QUARK_ROLE_OUTPUT
 * @statistic: (out) (optional): the running mean of the batches' statistic
 * @zero_point_statistic: (out) (optional): and of their zero-point statistic
 *
 * Reads the running mean (Brevitas's, in float32) of the statistic the
 * session's config computed from each batch
 * (quark_quantization_config_batch_statistic()).
 *
 * Returns: %TRUE if the session kept one for the layer
 */
gboolean
quark_calibration_get_batch_statistic (QuarkCalibration *self,
                                       const char       *layer_name,
                                       QuarkRole         role,
                                       float            *statistic,
                                       float            *zero_point_statistic)
{
  g_autofree char *key = NULL;
  Entry *e;
  gboolean found;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), FALSE);
  g_return_val_if_fail (layer_name != NULL, FALSE);

  key = entry_key (layer_name, role);
  g_mutex_lock (&self->lock);
  e = g_hash_table_lookup (self->entries, key);
  found = e != NULL && e->stat_batches > 0;
  if (statistic)
    *statistic = found ? e->stat : 0;
  if (zero_point_statistic)
    *zero_point_statistic = found ? e->stat_zp : 0;
  g_mutex_unlock (&self->lock);
  return found;
}

/**
 * quark_calibration_get_batch_percentiles:
 * @self: a #QuarkCalibration
 * @layer_name: the layer's full name
 * @role: the role
 * @percentile: (out) (optional): q, the percentile they were taken at
 * @abs_percentile: (out) (optional): the mean of each batch's q-th
 *   percentile of |x|
 * @low: (out) (optional): the mean of each batch's (100 − q)-th percentile
 * @high: (out) (optional): the mean of each batch's q-th percentile
 * @span: (out) (optional): the mean of each batch's high − min (low, 0)
 *   (Brevitas's PercentileInterval)
 * @negative_low: (out) (optional): the mean of each batch's min (low, 0)
 *   (Brevitas's NegativePercentileOrZero)
 *
 * Reads the running means of the per-batch exact percentiles, in
 * Brevitas's float32 arithmetic (numerics.md B8). A session made for a
 * config collects them for specs with the percentile observer; a session
 * without a config always, at 99.999.
 *
 * Returns: %TRUE if they were collected for @layer_name and @role
 */
gboolean
quark_calibration_get_batch_percentiles (QuarkCalibration *self,
                                         const char       *layer_name,
                                         QuarkRole         role,
                                         double           *percentile,
                                         float            *abs_percentile,
                                         float            *low,
                                         float            *high,
                                         float            *span,
                                         float            *negative_low)
{
  Entry *e;
  gboolean found;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), FALSE);
  g_return_val_if_fail (layer_name != NULL, FALSE);

  g_mutex_lock (&self->lock);
  e = find_entry (self, layer_name, role);
  found = e != NULL && e->pct_q > 0 && e->pct_batches > 0;
  if (percentile)
    *percentile = found ? e->pct_q : 0;
  if (abs_percentile)
    *abs_percentile = found ? e->pct_abs : 0;
  if (low)
    *low = found ? e->pct_lo : 0;
  if (high)
    *high = found ? e->pct_hi : 0;
  if (span)
    *span = found ? e->pct_span : 0;
  if (negative_low)
    *negative_low = found ? e->pct_neg : 0;
  g_mutex_unlock (&self->lock);
  return found;
}

/* The codes a spec quantizes to, for the range searches. */
static gboolean
spec_grid (QuarkTensorSpec *spec, QuarkKernelGrid *grid)
{
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);

  memset (grid, 0, sizeof *grid);
  grid->symmetric = quark_tensor_spec_get_symmetric (spec);
  if (quark_dtype_is_integer (dtype))
    {
      gint64 lo, hi;
      quark_dtype_get_integer_range (dtype, quark_tensor_spec_get_narrow_range (spec), &lo, &hi);
      grid->qmin = (int32_t) lo;
      grid->qmax = (int32_t) hi;
      return TRUE;
    }
  grid->fp = quark_fp_format_for_dtype (dtype);
  return grid->fp != NULL;
}

/**
 * quark_calibration_compute_range:
 * @self: a #QuarkCalibration
 * @layer_name: the layer's full name
 * @role: %QUARK_ROLE_INPUT or %QUARK_ROLE_OUTPUT
 * @spec: the static spec to calibrate
 * @min: (out): the low end of the range
 * @max: (out): the high end of the range
 * @error: return location for a #GError
 *
 * Selects the range of a layer's input or output as @spec's observer
 * defines it (see #QuarkObserver): the running min/max, their moving
 * average, the running mean of the per-batch exact percentiles, a histogram
 * percentile, or the histogram searches for the smallest squared error
 * (MSE) or divergence (KL). Symmetric specs get a range symmetric about
 * zero for the percentile, MSE and KL observers. Turning the range into a
 * scale and zero point is the quantizer's business.
 *
 * Returns: %TRUE on success; %FALSE with %QUARK_ERROR_NEEDS_CALIBRATION
 *   naming the layer when nothing was observed for it, or
 *   %QUARK_ERROR_UNSUPPORTED_SCHEME when the statistics the observer needs
 *   were not collected or it does not apply to @spec
 */
gboolean
quark_calibration_compute_range (QuarkCalibration  *self,
                                 const char        *layer_name,
                                 QuarkRole          role,
                                 QuarkTensorSpec   *spec,
                                 float             *min,
                                 float             *max,
                                 GError           **error)
{
  QuarkObserver observer;
  QuarkKernelGrid grid;
  gboolean symmetric, ok = TRUE;
  double lo = 0, hi = 0;
  Entry *e;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), FALSE);
  g_return_val_if_fail (layer_name != NULL, FALSE);
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (spec), FALSE);
  g_return_val_if_fail (min != NULL && max != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  observer = quark_tensor_spec_get_observer (spec);
  symmetric = quark_tensor_spec_get_symmetric (spec);
  g_mutex_lock (&self->lock);
  e = find_entry (self, layer_name, role);
  if (e == NULL || e->n_values == 0)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION,
                   "layer %s: no %s activations were observed to calibrate its static spec",
                   layer_name, role_nick (role));
      ok = FALSE;
      goto out;
    }
  lo = e->min;
  hi = e->max;
  switch (observer)
    {
    case QUARK_OBSERVER_MIN_MAX:
      break;
    case QUARK_OBSERVER_MOVING_AVERAGE_MIN_MAX:
      lo = e->ema_min;
      hi = e->ema_max;
      break;
    case QUARK_OBSERVER_PERCENTILE:
      if (e->pct_q != quark_tensor_spec_get_percentile (spec))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "layer %s: the %s spec's percentile observer needs per-batch percentiles at %g, "
                       "but the statistics hold %s", layer_name, role_nick (role),
                       quark_tensor_spec_get_percentile (spec),
                       e->pct_q > 0 ? "another percentile" : "none (calibrate with a session for this config)");
          ok = FALSE;
          goto out;
        }
      if (symmetric)
        lo = -(hi = e->pct_abs);
      else
        {
          lo = e->pct_lo;
          hi = e->pct_hi;
        }
      break;
    case QUARK_OBSERVER_HISTOGRAM_PERCENTILE:
      if (symmetric)
        lo = -(hi = quark_kernel_hist_abs_percentile (e->hist, quark_tensor_spec_get_percentile (spec)));
      else
        quark_kernel_hist_interval (e->hist, quark_tensor_spec_get_percentile (spec), &lo, &hi);
      break;
    case QUARK_OBSERVER_MSE:
      if (!spec_grid (spec, &grid))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "layer %s: the MSE observer does not apply to %s", layer_name,
                       quark_dtype_get_name (quark_tensor_spec_get_dtype (spec)));
          ok = FALSE;
          goto out;
        }
      quark_kernel_hist_mse_range (e->hist, &grid, &lo, &hi);
      break;
    case QUARK_OBSERVER_KL:
      {
        double t;
        unsigned levels;
        if (!spec_grid (spec, &grid) || grid.fp != NULL)
          {
            g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                         "layer %s: the KL observer needs an integer spec, not %s", layer_name,
                         quark_dtype_get_name (quark_tensor_spec_get_dtype (spec)));
            ok = FALSE;
            goto out;
          }
        /* one-sided data on an unsigned grid uses every level */
        levels = (!symmetric && e->min >= 0) ? (unsigned) (grid.qmax - grid.qmin + 1)
                                             : (unsigned) ((grid.qmax - grid.qmin + 1) / 2);
        t = quark_kernel_hist_kl_threshold (e->hist, levels);
        if (symmetric)
          {
            lo = -t;
            hi = t;
          }
        else
          {
            lo = fmax (e->min, -t);
            hi = fmin (e->max, t);
          }
      }
      break;
    default:
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "layer %s: observer %d does not calibrate activations", layer_name, (int) observer);
      ok = FALSE;
      goto out;
    }
out:
  g_mutex_unlock (&self->lock);
  if (ok)
    {
      /* a histogram's top bin may reach 2^128, just above FLT_MAX */
      *min = (float) CLAMP (lo, -G_MAXFLOAT, G_MAXFLOAT);
      *max = (float) CLAMP (hi, -G_MAXFLOAT, G_MAXFLOAT);
    }
  return ok;
}

/* ---- saving and loading ----------------------------------------------------- */

#define FORMAT_NAME "libquark-calibration"
#define FORMAT_VERSION 1

static void
add_counts (JsonBuilder *b, const char *name, const guint64 *counts)
{
  json_builder_set_member_name (b, name);
  json_builder_begin_array (b);
  for (guint i = 0; i < QUARK_KERNEL_HIST_BINS; i++)
    json_builder_add_int_value (b, (gint64) counts[i]);
  json_builder_end_array (b);
}

static void
add_floats (JsonBuilder *b, const char *name, const float *v, gsize n)
{
  json_builder_set_member_name (b, name);
  json_builder_begin_array (b);
  for (gsize i = 0; i < n; i++)
    json_builder_add_double_value (b, v[i]);
  json_builder_end_array (b);
}

static void
add_float (JsonBuilder *b, const char *name, float v)
{
  json_builder_set_member_name (b, name);
  if (isfinite (v))
    json_builder_add_double_value (b, v);
  else
    json_builder_add_null_value (b);
}

static gint
compare_entries (gconstpointer a, gconstpointer b)
{
  const Entry *x = *(Entry * const *) a, *y = *(Entry * const *) b;
  int c = g_strcmp0 (x->layer, y->layer);
  return c ? c : (int) x->role - (int) y->role;
}

/**
 * quark_calibration_save:
 * @self: a #QuarkCalibration
 * @filename: (type filename): where to write
 * @error: return location for a #GError
 *
 * Writes the statistics as JSON (format `libquark-calibration`, version 1;
 * docs/calibration.md describes it). The file is written under a temporary
 * name and renamed, so it is either complete or absent.
 *
 * Returns: %TRUE on success; %FALSE with %QUARK_ERROR_IO
 */
/* The second moments' file beside the statistics file: NAME.json ->
 * NAME.moments.safetensors */
static char *
moments_file_name (const char *filename)
{
  g_autofree char *base = g_path_get_basename (filename);
  if (g_str_has_suffix (base, ".json"))
    base[strlen (base) - 5] = '\0';
  return g_strconcat (base, ".moments.safetensors", NULL);
}

gboolean
quark_calibration_save (QuarkCalibration  *self,
                        const char        *filename,
                        GError           **error)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonNode) root = NULL;
  g_autoptr(GPtrArray) sorted = g_ptr_array_new ();
  g_autoptr(GError) local_error = NULL;
  g_autofree char *text = NULL;
  g_autoptr(QuarkModel) moments = NULL;
  GHashTableIter iter;
  gpointer value;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), FALSE);
  g_return_val_if_fail (filename != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "format");
  json_builder_add_string_value (b, FORMAT_NAME);
  json_builder_set_member_name (b, "version");
  json_builder_add_int_value (b, FORMAT_VERSION);
  json_builder_set_member_name (b, "entries");
  json_builder_begin_array (b);

  g_mutex_lock (&self->lock);
  g_hash_table_iter_init (&iter, self->entries);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_ptr_array_add (sorted, value);
  g_ptr_array_sort (sorted, compare_entries);
  for (guint i = 0; i < sorted->len; i++)
    {
      Entry *e = g_ptr_array_index (sorted, i);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "layer");
      json_builder_add_string_value (b, e->layer);
      json_builder_set_member_name (b, "role");
      json_builder_add_string_value (b, role_nick (e->role));
      json_builder_set_member_name (b, "batches");
      json_builder_add_int_value (b, (gint64) e->n_batches);
      json_builder_set_member_name (b, "values");
      json_builder_add_int_value (b, (gint64) e->n_values);
      add_float (b, "min", e->min);
      add_float (b, "max", e->max);
      add_float (b, "moving_average_min", e->ema_min);
      add_float (b, "moving_average_max", e->ema_max);
      if (e->pct_q > 0)
        {
          json_builder_set_member_name (b, "batch_percentile");
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "q");
          json_builder_add_double_value (b, e->pct_q);
          json_builder_set_member_name (b, "batches");
          json_builder_add_int_value (b, (gint64) e->pct_batches);
          add_float (b, "abs", e->pct_abs);
          add_float (b, "low", e->pct_lo);
          add_float (b, "high", e->pct_hi);
          add_float (b, "span", e->pct_span);
          add_float (b, "negative_low", e->pct_neg);
          json_builder_end_object (b);
        }
      if (e->stat_batches > 0)
        {
          json_builder_set_member_name (b, "batch_statistic");
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "batches");
          json_builder_add_int_value (b, (gint64) e->stat_batches);
          add_float (b, "value", e->stat);
          add_float (b, "zero_point", e->stat_zp);
          add_float (b, "last_zero_point", e->stat_zp_last);
          json_builder_end_object (b);
        }
      json_builder_set_member_name (b, "histogram");
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "range_exp");
      if (e->hist->range_exp == INT32_MIN)
        json_builder_add_null_value (b);
      else
        json_builder_add_int_value (b, e->hist->range_exp);
      json_builder_set_member_name (b, "zeros");
      json_builder_add_int_value (b, (gint64) e->hist->zeros);
      add_counts (b, "positive", e->hist->pos);
      add_counts (b, "negative", e->hist->neg);
      json_builder_end_object (b);
      if (e->ch_axis >= 0)
        {
          json_builder_set_member_name (b, "channels");
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "axis");
          json_builder_add_int_value (b, e->ch_axis);
          add_floats (b, "min", e->ch_min, e->n_channels);
          add_floats (b, "max", e->ch_max, e->n_channels);
          json_builder_end_object (b);
        }
      json_builder_end_object (b);
    }
  for (guint i = 0; i < sorted->len; i++)
    {
      Entry *e = g_ptr_array_index (sorted, i);
      if (e->moments == NULL)
        continue;
      if (moments == NULL)
        moments = quark_model_new ();
      _quark_moments_to_model (e->moments, e->layer, moments);
    }
  g_mutex_unlock (&self->lock);
  json_builder_end_array (b);
  if (moments)
    {
      /* the second moments go beside, in binary: written first, so that a
       * statistics file never names a sidecar that is not complete */
      g_autofree char *dir = g_path_get_dirname (filename);
      g_autofree char *name = moments_file_name (filename);
      g_autofree char *path = g_build_filename (dir, name, NULL);

      if (!_quark_model_write_safetensors_file (moments, path, error))
        return FALSE;
      json_builder_set_member_name (b, "second_moments");
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "file");
      json_builder_add_string_value (b, name);
      json_builder_end_object (b);
    }
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  text = quark_json_to_string (root, FALSE);
  if (!g_file_set_contents (filename, text, -1, &local_error))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s", local_error->message);
      return FALSE;
    }
  return TRUE;
}

/**
 * quark_calibration_set_second_moments_enabled:
 * @self: a #QuarkCalibration
 * @enabled: whether to learn second moments from now on
 *
 * Sets [property@Quark.Calibration:second-moments].
 */
void
quark_calibration_set_second_moments_enabled (QuarkCalibration *self, gboolean enabled)
{
  g_return_if_fail (QUARK_IS_CALIBRATION (self));

  g_mutex_lock (&self->lock);
  enabled = !!enabled;
  if (self->second_moments == enabled)
    {
      g_mutex_unlock (&self->lock);
      return;
    }
  self->second_moments = enabled;
  g_mutex_unlock (&self->lock);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_SECOND_MOMENTS]);
}

/**
 * quark_calibration_get_second_moments_enabled:
 * @self: a #QuarkCalibration
 *
 * Whether the session learns second moments.
 *
 * Returns: [property@Quark.Calibration:second-moments]
 */
gboolean
quark_calibration_get_second_moments_enabled (QuarkCalibration *self)
{
  gboolean enabled;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), FALSE);
  g_mutex_lock (&self->lock);
  enabled = self->second_moments;
  g_mutex_unlock (&self->lock);
  return enabled;
}

/**
 * quark_calibration_set_gram_matrix_enabled:
 * @self: a #QuarkCalibration
 * @enabled: whether second moments learned from now on include the Gram
 *   matrix
 *
 * Sets [property@Quark.Calibration:gram-matrix]. Layer inputs that have
 * started learning keep what they have.
 */
void
quark_calibration_set_gram_matrix_enabled (QuarkCalibration *self, gboolean enabled)
{
  g_return_if_fail (QUARK_IS_CALIBRATION (self));

  g_mutex_lock (&self->lock);
  enabled = !!enabled;
  if (self->gram_matrix == enabled)
    {
      g_mutex_unlock (&self->lock);
      return;
    }
  self->gram_matrix = enabled;
  g_mutex_unlock (&self->lock);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_GRAM_MATRIX]);
}

/**
 * quark_calibration_get_gram_matrix_enabled:
 * @self: a #QuarkCalibration
 *
 * Whether second moments learned from now on include the Gram matrix.
 *
 * Returns: [property@Quark.Calibration:gram-matrix]
 */
gboolean
quark_calibration_get_gram_matrix_enabled (QuarkCalibration *self)
{
  gboolean enabled;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), FALSE);
  g_mutex_lock (&self->lock);
  enabled = self->gram_matrix;
  g_mutex_unlock (&self->lock);
  return enabled;
}

static Entry *find_moments (QuarkCalibration *self, const char *layer_name, GError **error);

/**
 * quark_calibration_set_cross_moments_enabled:
 * @self: a #QuarkCalibration
 * @enabled: whether runtimes should give the session cross moments
 *
 * Sets [property@Quark.Calibration:cross-moments].
 */
void
quark_calibration_set_cross_moments_enabled (QuarkCalibration *self, gboolean enabled)
{
  g_return_if_fail (QUARK_IS_CALIBRATION (self));

  g_mutex_lock (&self->lock);
  enabled = !!enabled;
  if (self->cross_moments == enabled)
    {
      g_mutex_unlock (&self->lock);
      return;
    }
  self->cross_moments = enabled;
  g_mutex_unlock (&self->lock);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CROSS_MOMENTS]);
}

/**
 * quark_calibration_get_cross_moments_enabled:
 * @self: a #QuarkCalibration
 *
 * Whether runtimes should give the session cross moments.
 *
 * Returns: [property@Quark.Calibration:cross-moments]
 */
gboolean
quark_calibration_get_cross_moments_enabled (QuarkCalibration *self)
{
  gboolean enabled;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), FALSE);
  g_mutex_lock (&self->lock);
  enabled = self->cross_moments;
  g_mutex_unlock (&self->lock);
  return enabled;
}

/**
 * quark_calibration_observe_cross:
 * @self: a #QuarkCalibration
 * @layer_names: (array zero-terminated=1): the layers that share the input
 * @reference: the float model's input of the layers, float32 [tokens,
 *   features]
 * @input: the input the layers see in the model being quantized, the same
 *   tokens in the same order, float32 [tokens, features]
 * @error: return location for a #GError
 *
 * Adds Σ r xᵀ over the rows r of @reference and x of @input to the cross
 * moments of each layer's input: C[i][j] accumulates r_i · x_j in float64.
 * The layers must have second moments of @input already (observe it
 * first with [property@Quark.Calibration:second-moments] set). Cross
 * moments are kept in memory only: they are not saved with the statistics,
 * and a merge keeps them only when both sessions have them.
 *
 * Returns: %TRUE on success; %FALSE with %QUARK_ERROR_INVALID_TENSOR when
 *   the shapes differ from each other or from the layer's input, or are not
 *   float32 [tokens, features]; %QUARK_ERROR_INVALID_ARGUMENT when a layer
 *   has no second moments
 */
gboolean
quark_calibration_observe_cross (QuarkCalibration *self, const char * const *layer_names, QuarkTensor *reference,
                                 QuarkTensor *input, GError **error)
{
  g_autoptr(QuarkMoments) product = NULL;
  gsize tokens, features;
  gboolean ok = TRUE;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), FALSE);
  g_return_val_if_fail (layer_names != NULL && layer_names[0] != NULL, FALSE);
  g_return_val_if_fail (QUARK_IS_TENSOR (reference), FALSE);
  g_return_val_if_fail (QUARK_IS_TENSOR (input), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (quark_tensor_get_dtype (reference) != QUARK_DTYPE_F32 || quark_tensor_get_dtype (input) != QUARK_DTYPE_F32 ||
      quark_tensor_get_n_dims (reference) != 2 || quark_tensor_get_n_dims (input) != 2 ||
      quark_tensor_get_dim (reference, 0) != quark_tensor_get_dim (input, 0) ||
      quark_tensor_get_dim (reference, 1) != quark_tensor_get_dim (input, 1))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR,
                   "layer %s: cross moments take two float32 batches of the same shape [tokens, features]",
                   layer_names[0]);
      return FALSE;
    }
  tokens = (gsize) quark_tensor_get_dim (input, 0);
  features = (gsize) quark_tensor_get_dim (input, 1);
  if (tokens == 0)
    return TRUE;
  if ((product = _quark_moments_new (features, FALSE, error)) == NULL ||
      !_quark_moments_add_cross (product, quark_tensor_peek_data (reference, NULL),
                                 quark_tensor_peek_data (input, NULL), tokens, error))
    return FALSE;
  g_mutex_lock (&self->lock);
  for (guint i = 0; ok && layer_names[i]; i++)
    {
      Entry *e = find_moments (self, layer_names[i], error);
      ok = e != NULL;
      if (ok && e->moments->n_features != features)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR,
                       "layer %s: the batch has %" G_GSIZE_FORMAT " features, the layer's input %" G_GSIZE_FORMAT,
                       layer_names[i], features, e->moments->n_features);
          ok = FALSE;
        }
    }
  for (guint i = 0; ok && layer_names[i]; i++)
    if (!_quark_moments_add_cross_of (find_entry (self, layer_names[i], QUARK_ROLE_INPUT)->moments, product))
      {
        g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED, "layer %s: no memory for the cross moments",
                     layer_names[i]);
        ok = FALSE;
      }
  g_mutex_unlock (&self->lock);
  return ok;
}

/**
 * quark_calibration_get_cross_moments:
 * @self: a #QuarkCalibration
 * @layer_name: the layer whose input is asked for
 * @n_tokens: (out) (optional): the number of tokens the cross moments saw
 * @error: return location for a #GError
 *
 * The cross moments of a layer's input given by
 * quark_calibration_observe_cross().
 *
 * Returns: (transfer full): C = Σ r xᵀ, a float64 tensor [features,
 *   features] (C[i][j]: reference feature i against input feature j), or
 *   %NULL with %QUARK_ERROR_INVALID_ARGUMENT when the session has none for
 *   @layer_name
 */
QuarkTensor *
quark_calibration_get_cross_moments (QuarkCalibration *self, const char *layer_name, guint64 *n_tokens,
                                     GError **error)
{
  QuarkTensor *cross = NULL;
  Entry *e;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), NULL);
  g_return_val_if_fail (layer_name != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  g_mutex_lock (&self->lock);
  e = find_entry (self, layer_name, QUARK_ROLE_INPUT);
  if (e == NULL || e->moments == NULL || e->moments->cross == NULL)
    g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                 "layer %s: the session has no cross moments of its input (sequential calibration learns them "
                 "while cross-moments is set)", layer_name);
  else
    {
      cross = _quark_moments_cross (e->moments, layer_name);
      if (n_tokens)
        *n_tokens = e->moments->n_cross;
    }
  g_mutex_unlock (&self->lock);
  return cross;
}

static QuarkTensor *
vector_tensor (const char *name, QuarkDType dtype, gconstpointer data, gsize n, gsize element)
{
  gint64 shape[1] = { (gint64) n };
  g_autoptr(GBytes) bytes = g_bytes_new (data, n * element);
  return quark_tensor_new (name, dtype, shape, 1, bytes, NULL);
}

/* The entry of a layer's input that has second moments; the lock held */
static Entry *
find_moments (QuarkCalibration *self, const char *layer_name, GError **error)
{
  Entry *e = find_entry (self, layer_name, QUARK_ROLE_INPUT);

  if (e == NULL || e->moments == NULL || e->moments->n_tokens == 0)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "layer %s: the session has no second moments of its input (they are learned while "
                   "second-moments is set)", layer_name);
      return NULL;
    }
  return e;
}

/**
 * quark_calibration_get_second_moments:
 * @self: a #QuarkCalibration
 * @layer_name: the layer whose input is asked for
 * @n_tokens: (out) (optional): the number of tokens (rows) seen
 * @mean: (out) (optional) (transfer full): per feature, Σx / tokens (float64)
 * @mean_square: (out) (optional) (transfer full): per feature, Σx² / tokens
 *   (float64)
 * @abs_max: (out) (optional) (transfer full): per feature, max |x| (float32)
 * @error: return location for a #GError
 *
 * The second moments of a layer's input, learned while
 * [property@Quark.Calibration:second-moments] was set.
 *
 * Returns: (transfer full): the Gram matrix Σ x xᵀ, a symmetric float64
 *   tensor [features, features], or %NULL with %QUARK_ERROR_INVALID_ARGUMENT
 *   when the session has none for @layer_name
 */
QuarkTensor *
quark_calibration_get_second_moments (QuarkCalibration *self, const char *layer_name, guint64 *n_tokens,
                                      QuarkTensor **mean, QuarkTensor **mean_square, QuarkTensor **abs_max,
                                      GError **error)
{
  QuarkTensor *gram;
  Entry *e;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), NULL);
  g_return_val_if_fail (layer_name != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  g_mutex_lock (&self->lock);
  if ((e = find_moments (self, layer_name, error)) == NULL)
    {
      g_mutex_unlock (&self->lock);
      return NULL;
    }
  if (e->moments->gram == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "layer %s: the session learned the per-feature sums of its input, not the Gram matrix "
                   "(gram-matrix was unset)", layer_name);
      g_mutex_unlock (&self->lock);
      return NULL;
    }
  gram = _quark_moments_gram (e->moments, layer_name);
  if (n_tokens)
    *n_tokens = e->moments->n_tokens;
  if (mean || mean_square)
    {
      gsize n = e->moments->n_features;
      g_autofree double *m = g_new (double, n), *sq = g_new (double, n);
      for (gsize c = 0; c < n; c++)
        {
          m[c] = e->moments->sum[c] / (double) e->moments->n_tokens;
          sq[c] = e->moments->sum_sq[c] / (double) e->moments->n_tokens;
        }
      if (mean)
        *mean = vector_tensor ("mean", QUARK_DTYPE_F64, m, n, sizeof (double));
      if (mean_square)
        *mean_square = vector_tensor ("mean_square", QUARK_DTYPE_F64, sq, n, sizeof (double));
    }
  if (abs_max)
    *abs_max = vector_tensor ("abs_max", QUARK_DTYPE_F32, e->moments->abs_max, e->moments->n_features, sizeof (float));
  g_mutex_unlock (&self->lock);
  return gram;
}

typedef enum { SUM_SQUARES, MEAN_ABS, MEAN, ABS_MAX } MomentsVector;

/* Σx², Σ|x| / tokens, Σx / tokens or max |x| (float32) of a layer
 * input's second moments */
static QuarkTensor *
moments_vector (QuarkCalibration *self, const char *layer_name, MomentsVector which, guint64 *n_tokens,
                GError **error)
{
  static const char * const names[] = { "sum_squares", "mean_abs", "mean", "abs_max" };
  QuarkTensor *result;
  g_autofree double *m = NULL;
  Entry *e;
  gsize n;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), NULL);
  g_return_val_if_fail (layer_name != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  g_mutex_lock (&self->lock);
  if ((e = find_moments (self, layer_name, error)) == NULL)
    {
      g_mutex_unlock (&self->lock);
      return NULL;
    }
  n = e->moments->n_features;
  if (which == ABS_MAX)
    {
      result = vector_tensor (names[which], QUARK_DTYPE_F32, e->moments->abs_max, n, sizeof (float));
      g_mutex_unlock (&self->lock);
      return result;
    }
  m = g_new (double, n);
  for (gsize c = 0; c < n; c++)
    m[c] = which == SUM_SQUARES ? e->moments->sum_sq[c]
         : which == MEAN_ABS ? e->moments->sum_abs[c] / (double) e->moments->n_tokens
         : e->moments->sum[c] / (double) e->moments->n_tokens;
  result = vector_tensor (names[which], QUARK_DTYPE_F64, m, n, sizeof (double));
  if (n_tokens)
    *n_tokens = e->moments->n_tokens;
  g_mutex_unlock (&self->lock);
  return result;
}

/**
 * quark_calibration_get_input_mean_abs:
 * @self: a #QuarkCalibration
 * @layer_name: the layer whose input is asked for
 * @error: return location for a #GError
 *
 * The mean magnitude of each feature of a layer's input, Σ|x| / tokens,
 * learned with the second moments (AWQ's activation statistic).
 *
 * Returns: (transfer full): a float64 tensor [features], or %NULL with
 *   %QUARK_ERROR_INVALID_ARGUMENT when the session has no second moments
 *   for @layer_name
 */
QuarkTensor *
quark_calibration_get_input_mean_abs (QuarkCalibration *self, const char *layer_name, GError **error)
{
  return moments_vector (self, layer_name, MEAN_ABS, NULL, error);
}

/**
 * quark_calibration_get_input_abs_max:
 * @self: a #QuarkCalibration
 * @layer_name: the layer whose input is asked for
 * @error: return location for a #GError
 *
 * The largest magnitude each feature of a layer's input reached, max |x|
 * over every token observed, learned with the second moments (with or
 * without the Gram matrix): SmoothQuant's and activation equalization's
 * statistic.
 *
 * Returns: (transfer full): a float32 tensor [features], or %NULL with
 *   %QUARK_ERROR_INVALID_ARGUMENT when the session has no second moments
 *   for @layer_name
 */
QuarkTensor *
quark_calibration_get_input_abs_max (QuarkCalibration *self, const char *layer_name, GError **error)
{
  return moments_vector (self, layer_name, ABS_MAX, NULL, error);
}

/**
 * quark_calibration_get_input_mean:
 * @self: a #QuarkCalibration
 * @layer_name: the layer whose input is asked for
 * @error: return location for a #GError
 *
 * The mean of each feature of a layer's input, Σx / tokens, learned with
 * the second moments (with or without the Gram matrix): what bias
 * correction needs, without the copy of a Gram matrix that
 * quark_calibration_get_second_moments() makes (8 · features² bytes).
 *
 * Returns: (transfer full): a float64 tensor [features], or %NULL with
 *   %QUARK_ERROR_INVALID_ARGUMENT when the session has no second moments
 *   for @layer_name
 */
QuarkTensor *
quark_calibration_get_input_mean (QuarkCalibration *self, const char *layer_name, GError **error)
{
  return moments_vector (self, layer_name, MEAN, NULL, error);
}

/**
 * quark_calibration_get_input_sum_squares:
 * @self: a #QuarkCalibration
 * @layer_name: the layer whose input is asked for
 * @n_tokens: (out) (optional): the number of tokens (rows) seen
 * @error: return location for a #GError
 *
 * Per feature of a layer's input, the sum of squares Σx² over the tokens,
 * learned with the second moments (with or without the Gram matrix):
 * llama.cpp's importance-matrix statistic.
 *
 * Returns: (transfer full): a float64 tensor [features], or %NULL with
 *   %QUARK_ERROR_INVALID_ARGUMENT when the session has no second moments
 *   for @layer_name
 */
QuarkTensor *
quark_calibration_get_input_sum_squares (QuarkCalibration *self, const char *layer_name, guint64 *n_tokens,
                                         GError **error)
{
  return moments_vector (self, layer_name, SUM_SQUARES, n_tokens, error);
}

/**
 * quark_calibration_merge_second_moments:
 * @self: a #QuarkCalibration
 * @other: another session, such as one saved by another process
 * @error: return location for a #GError
 *
 * Adds the second moments of every layer input of @other to those of
 * @self, as if @self had seen @other's batches too: Gram matrices, token
 * counts and sums add, maxima take the larger. Layers @self has not seen
 * are added. Other statistics are not merged.
 *
 * Returns: %TRUE on success; %FALSE with %QUARK_ERROR_INVALID_TENSOR when a
 *   layer's input has different widths in the two (@self is then unchanged)
 */
gboolean
quark_calibration_merge_second_moments (QuarkCalibration *self, QuarkCalibration *other, GError **error)
{
  GHashTableIter iter;
  gpointer key, value;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), FALSE);
  g_return_val_if_fail (QUARK_IS_CALIBRATION (other), FALSE);
  g_return_val_if_fail (self != other, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  g_mutex_lock (&self->lock);
  g_mutex_lock (&other->lock);
  g_hash_table_iter_init (&iter, other->entries);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      Entry *from = value, *into = g_hash_table_lookup (self->entries, key);
      if (from->moments && into && into->moments && into->moments->n_features != from->moments->n_features)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR,
                       "layer %s: its input has %" G_GSIZE_FORMAT " features here and %" G_GSIZE_FORMAT " in the "
                       "other session", from->layer, into->moments->n_features, from->moments->n_features);
          g_mutex_unlock (&other->lock);
          g_mutex_unlock (&self->lock);
          return FALSE;
        }
    }
  g_hash_table_iter_init (&iter, other->entries);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      Entry *from = value, *into;
      if (from->moments == NULL)
        continue;
      if ((into = g_hash_table_lookup (self->entries, key)) == NULL)
        {
          into = entry_new (from->layer, from->role);
          g_hash_table_insert (self->entries, g_strdup (key), into);
        }
      if (into->moments == NULL)
        into->moments = _quark_moments_new (from->moments->n_features, from->moments->gram != NULL, NULL);
      if (into->moments)
        {
          _quark_moments_merge_cross (into->moments, from->moments);
          _quark_moments_merge (into->moments, from->moments);
        }
    }
  self->second_moments = self->second_moments || other->second_moments;
  g_mutex_unlock (&other->lock);
  g_mutex_unlock (&self->lock);
  return TRUE;
}

/* Strict readers: each error names the JSON path. */

static gboolean
bad (GError **error, const char *path, const char *what)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: %s", path, what);
  return FALSE;
}

static gboolean
read_int (JsonObject *o, const char *path, const char *name, gint64 min, gint64 max, gboolean nullable,
          gboolean *is_null, gint64 *out, GError **error)
{
  g_autofree char *p = quark_json_path_join (path, name);
  JsonNode *n = json_object_get_member (o, name);

  if (n == NULL)
    return bad (error, p, "missing");
  if (nullable && JSON_NODE_HOLDS_NULL (n))
    {
      *is_null = TRUE;
      return TRUE;
    }
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return bad (error, p, "expected an integer");
  *out = json_node_get_int (n);
  if (*out < min || *out > max)
    return bad (error, p, "out of range");
  if (is_null)
    *is_null = FALSE;
  return TRUE;
}

static gboolean
read_float_node (JsonNode *n, const char *p, gboolean nullable, float null_value, float *out, GError **error)
{
  double v;

  if (nullable && JSON_NODE_HOLDS_NULL (n))
    {
      *out = null_value;
      return TRUE;
    }
  if (!JSON_NODE_HOLDS_VALUE (n) ||
      (json_node_get_value_type (n) != G_TYPE_DOUBLE && json_node_get_value_type (n) != G_TYPE_INT64))
    return bad (error, p, "expected a number");
  v = json_node_get_value_type (n) == G_TYPE_DOUBLE ? json_node_get_double (n) : (double) json_node_get_int (n);
  if (!isfinite ((float) v))
    return bad (error, p, "out of the range of float32");
  *out = (float) v;
  return TRUE;
}

static gboolean
read_float (JsonObject *o, const char *path, const char *name, gboolean nullable, float null_value,
            float *out, GError **error)
{
  g_autofree char *p = quark_json_path_join (path, name);
  JsonNode *n = json_object_get_member (o, name);

  if (n == NULL)
    return bad (error, p, "missing");
  return read_float_node (n, p, nullable, null_value, out, error);
}

static JsonArray *
read_array (JsonObject *o, const char *path, const char *name, guint length, GError **error)
{
  g_autofree char *p = quark_json_path_join (path, name);
  JsonNode *n = json_object_get_member (o, name);

  if (n == NULL || !JSON_NODE_HOLDS_ARRAY (n))
    {
      bad (error, p, n == NULL ? "missing" : "expected a list");
      return NULL;
    }
  if (length && json_array_get_length (json_node_get_array (n)) != length)
    {
      g_autofree char *what = g_strdup_printf ("expected %u elements", length);
      bad (error, p, what);
      return NULL;
    }
  return json_node_get_array (n);
}

static JsonObject *
read_object (JsonNode *n, const char *p, GError **error)
{
  if (n == NULL || !JSON_NODE_HOLDS_OBJECT (n))
    {
      bad (error, p, n == NULL ? "missing" : "expected an object");
      return NULL;
    }
  return json_node_get_object (n);
}

static gboolean
read_counts (JsonObject *o, const char *path, const char *name, guint64 *counts, GError **error)
{
  g_autofree char *p = quark_json_path_join (path, name);
  JsonArray *a = read_array (o, path, name, QUARK_KERNEL_HIST_BINS, error);

  if (a == NULL)
    return FALSE;
  for (guint i = 0; i < QUARK_KERNEL_HIST_BINS; i++)
    {
      JsonNode *n = json_array_get_element (a, i);
      if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64 || json_node_get_int (n) < 0)
        {
          g_autofree char *pi = quark_json_path_index (p, i);
          return bad (error, pi, "expected a count");
        }
      counts[i] = (guint64) json_node_get_int (n);
    }
  return TRUE;
}

static gboolean
read_float_list (JsonArray *a, const char *p, float *out, GError **error)
{
  for (guint i = 0; i < json_array_get_length (a); i++)
    {
      g_autofree char *pi = quark_json_path_index (p, i);
      if (!read_float_node (json_array_get_element (a, i), pi, FALSE, 0, &out[i], error))
        return FALSE;
    }
  return TRUE;
}

static Entry *
read_entry (JsonNode *node, const char *path, GError **error)
{
  static const char * const members[] = {
    "layer", "role", "batches", "values", "min", "max", "moving_average_min", "moving_average_max",
    "batch_percentile", "batch_statistic", "histogram", "channels", NULL
  };
  static const char * const pct_members[] = { "q", "batches", "abs", "low", "high", "span", "negative_low", NULL };
  static const char * const stat_members[] = { "batches", "value", "zero_point", "last_zero_point", NULL };
  static const char * const hist_members[] = { "range_exp", "zeros", "positive", "negative", NULL };
  static const char * const ch_members[] = { "axis", "min", "max", NULL };
  JsonObject *o = read_object (node, path, error), *sub;
  JsonNode *n;
  const char *layer, *role_name;
  GEnumValue *role;
  gint64 v;
  gboolean is_null;
  Entry *e;

  if (o == NULL || !quark_json_check_members (o, path, members, error))
    return NULL;
  n = json_object_get_member (o, "layer");
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    {
      g_autofree char *p = quark_json_path_join (path, "layer");
      bad (error, p, "expected a string");
      return NULL;
    }
  layer = json_node_get_string (n);
  n = json_object_get_member (o, "role");
  role_name = n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING
              ? json_node_get_string (n) : NULL;
  {
    g_autoptr(GEnumClass) klass = g_type_class_ref (QUARK_TYPE_ROLE);
    role = role_name ? g_enum_get_value_by_nick (klass, role_name) : NULL;
  }
  if (role == NULL || (role->value != QUARK_ROLE_INPUT && role->value != QUARK_ROLE_OUTPUT))
    {
      g_autofree char *p = quark_json_path_join (path, "role");
      bad (error, p, "expected \"input\" or \"output\"");
      return NULL;
    }
  e = entry_new (layer, role->value);
  if (!read_int (o, path, "batches", 0, G_MAXINT64, FALSE, NULL, &v, error))
    goto fail;
  e->n_batches = (guint64) v;
  if (!read_int (o, path, "values", 0, G_MAXINT64, FALSE, NULL, &v, error))
    goto fail;
  e->n_values = (guint64) v;
  if (!read_float (o, path, "min", TRUE, INFINITY, &e->min, error) ||
      !read_float (o, path, "max", TRUE, -INFINITY, &e->max, error) ||
      !read_float (o, path, "moving_average_min", TRUE, INFINITY, &e->ema_min, error) ||
      !read_float (o, path, "moving_average_max", TRUE, -INFINITY, &e->ema_max, error))
    goto fail;
  if (e->n_values > 0 && !(e->min <= e->max))
    {
      bad (error, path, "min is above max");
      goto fail;
    }

  if ((n = json_object_get_member (o, "batch_percentile")))
    {
      g_autofree char *p = quark_json_path_join (path, "batch_percentile");
      float q;
      if (!(sub = read_object (n, p, error)) || !quark_json_check_members (sub, p, pct_members, error) ||
          !read_float (sub, p, "q", FALSE, 0, &q, error) ||
          !read_int (sub, p, "batches", 0, G_MAXINT64, FALSE, NULL, &v, error) ||
          !read_float (sub, p, "abs", FALSE, 0, &e->pct_abs, error) ||
          !read_float (sub, p, "low", FALSE, 0, &e->pct_lo, error) ||
          !read_float (sub, p, "high", FALSE, 0, &e->pct_hi, error) ||
          !read_float (sub, p, "span", FALSE, 0, &e->pct_span, error) ||
          !read_float (sub, p, "negative_low", FALSE, 0, &e->pct_neg, error))
        goto fail;
      if (!(q > 0 && q <= 100))
        {
          g_autofree char *pq = quark_json_path_join (p, "q");
          bad (error, pq, "expected a percentile in (0, 100]");
          goto fail;
        }
      /* q is written from a double: read it back at full precision */
      e->pct_q = json_node_get_value_type (json_object_get_member (sub, "q")) == G_TYPE_DOUBLE
                 ? json_object_get_double_member (sub, "q") : q;
      e->pct_batches = (guint64) v;
    }
  if ((n = json_object_get_member (o, "batch_statistic")))
    {
      g_autofree char *p = quark_json_path_join (path, "batch_statistic");
      if (!(sub = read_object (n, p, error)) || !quark_json_check_members (sub, p, stat_members, error) ||
          !read_int (sub, p, "batches", 1, G_MAXINT64, FALSE, NULL, &v, error) ||
          !read_float (sub, p, "value", FALSE, 0, &e->stat, error) ||
          !read_float (sub, p, "zero_point", FALSE, 0, &e->stat_zp, error) ||
          !read_float (sub, p, "last_zero_point", FALSE, 0, &e->stat_zp_last, error))
        goto fail;
      e->stat_batches = (guint64) v;
    }

  {
    g_autofree char *p = quark_json_path_join (path, "histogram");
    if (!(sub = read_object (json_object_get_member (o, "histogram"), p, error)) ||
        !quark_json_check_members (sub, p, hist_members, error) ||
        /* float32 data needs 2^-148 .. 2^128 */
        !read_int (sub, p, "range_exp", -148, 128, TRUE, &is_null, &v, error))
      goto fail;
    e->hist->range_exp = is_null ? INT32_MIN : (int32_t) v;
    if (!read_int (sub, p, "zeros", 0, G_MAXINT64, FALSE, NULL, &v, error))
      goto fail;
    e->hist->zeros = (guint64) v;
    if (!read_counts (sub, p, "positive", e->hist->pos, error) ||
        !read_counts (sub, p, "negative", e->hist->neg, error))
      goto fail;
  }

  if ((n = json_object_get_member (o, "channels")))
    {
      g_autofree char *p = quark_json_path_join (path, "channels");
      g_autofree char *pmin = quark_json_path_join (p, "min");
      g_autofree char *pmax = quark_json_path_join (p, "max");
      JsonArray *mins, *maxs;
      if (!(sub = read_object (n, p, error)) || !quark_json_check_members (sub, p, ch_members, error) ||
          !read_int (sub, p, "axis", 0, 63, FALSE, NULL, &v, error) ||
          !(mins = read_array (sub, p, "min", 0, error)))
        goto fail;
      e->ch_axis = (int) v;
      e->n_channels = json_array_get_length (mins);
      if (!(maxs = read_array (sub, p, "max", (guint) e->n_channels, error)))
        goto fail;
      if (e->n_channels == 0)
        {
          bad (error, pmin, "expected at least one channel");
          goto fail;
        }
      e->ch_min = g_new (float, e->n_channels);
      e->ch_max = g_new (float, e->n_channels);
      if (!read_float_list (mins, pmin, e->ch_min, error) || !read_float_list (maxs, pmax, e->ch_max, error))
        goto fail;
    }
  return e;

fail:
  entry_free (e);
  return NULL;
}

/* Reads a parsed statistics file; errors are prefixed with @source. */
/* The second moments named by the statistics file's "second_moments"
 * member, from the file beside it */
static gboolean
load_moments (QuarkCalibration *self, JsonNode *node, const char *source, const char *directory, GError **error)
{
  static const char * const members[] = { "file", NULL };
  g_autoptr(GError) local_error = NULL;
  g_autoptr(QuarkModel) model = NULL;
  g_autofree char *path = NULL;
  JsonObject *o;
  JsonNode *file;
  GHashTableIter iter;
  gpointer value;

  if (!(o = read_object (node, "second_moments", &local_error)) ||
      !quark_json_check_members (o, "second_moments", members, &local_error))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: %s", source, local_error->message);
      return FALSE;
    }
  file = json_object_get_member (o, "file");
  if (file == NULL || json_node_get_value_type (file) != G_TYPE_STRING ||
      strchr (json_node_get_string (file), '/') != NULL || json_node_get_string (file)[0] == '.')
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                   "%s: second_moments.file: expected the name of a file in the same directory", source);
      return FALSE;
    }
  if (directory == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "%s: the second moments are in %s beside the statistics file: load the file by its name",
                   source, json_node_get_string (file));
      return FALSE;
    }
  path = g_build_filename (directory, json_node_get_string (file), NULL);
  if ((model = quark_model_load (path, NULL, error)) == NULL)
    return FALSE;
  g_hash_table_iter_init (&iter, self->entries);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      Entry *e = value;
      g_autofree char *sum = g_strdup_printf ("%s.sum", e->layer);
      if (e->role != QUARK_ROLE_INPUT || quark_model_get_tensor (model, sum) == NULL)
        continue;
      if ((e->moments = _quark_moments_from_model (model, e->layer, path, error)) == NULL)
        return FALSE;
    }
  self->second_moments = TRUE;
  return TRUE;
}

static QuarkCalibration *
load_from_node (JsonNode *root, const char *source, const char *directory, GError **error)
{
  static const char * const members[] = { "format", "version", "entries", "second_moments", NULL };
  g_autoptr(QuarkCalibration) self = quark_calibration_new ();
  g_autoptr(GError) local_error = NULL;
  JsonObject *o;
  JsonArray *entries;
  JsonNode *n;
  gint64 version;

  if (!(o = read_object (root, "(root)", &local_error)) ||
      !quark_json_check_members (o, "", members, &local_error))
    goto fail;
  n = json_object_get_member (o, "format");
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING ||
      g_strcmp0 (json_node_get_string (n), FORMAT_NAME) != 0)
    {
      bad (&local_error, "format", "expected \"" FORMAT_NAME "\" (this is not a libquark statistics file)");
      goto fail;
    }
  if (!read_int (o, "", "version", G_MININT64, G_MAXINT64, FALSE, NULL, &version, &local_error))
    goto fail;
  if (version != FORMAT_VERSION)
    {
      g_autofree char *what = g_strdup_printf ("version %" G_GINT64_FORMAT " is not supported (this libquark reads %d)",
                                               version, FORMAT_VERSION);
      bad (&local_error, "version", what);
      goto fail;
    }
  if (!(entries = read_array (o, "", "entries", 0, &local_error)))
    goto fail;
  for (guint i = 0; i < json_array_get_length (entries); i++)
    {
      g_autofree char *p = quark_json_path_index ("entries", i);
      g_autofree char *key = NULL;
      Entry *e = read_entry (json_array_get_element (entries, i), p, &local_error);
      if (e == NULL)
        goto fail;
      key = entry_key (e->layer, e->role);
      if (g_hash_table_contains (self->entries, key))
        {
          entry_free (e);
          bad (&local_error, p, "a second entry for the same layer and role");
          goto fail;
        }
      g_hash_table_insert (self->entries, g_steal_pointer (&key), e);
    }
  if ((n = json_object_get_member (o, "second_moments")) != NULL &&
      !load_moments (self, n, source, directory, error))
    return NULL;
  return g_steal_pointer (&self);

fail:
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: %s", source, local_error->message);
  return NULL;
}

/* A parse error becomes QUARK_ERROR_INVALID_FILE; QUARK_ERROR_IO stays. */
static void
parse_failed (GError *local_error, GError **error)
{
  if (local_error->domain == QUARK_ERROR)   /* IO, not found, size limit */
    g_propagate_error (error, local_error);
  else
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s", local_error->message);
      g_error_free (local_error);
    }
}

/**
 * quark_calibration_load:
 * @filename: (type filename): a file written by quark_calibration_save()
 * @error: return location for a #GError
 *
 * Reads saved statistics. The result is not tied to a config; observing
 * more batches adds to what was loaded.
 *
 * Returns: (transfer full): the statistics, or %NULL with
 *   %QUARK_ERROR_INVALID_FILE naming the file and the JSON path at fault
 *   (or %QUARK_ERROR_IO if it cannot be read)
 */
QuarkCalibration *
quark_calibration_load (const char  *filename,
                        GError     **error)
{
  g_autoptr(JsonNode) root = NULL;
  GError *local_error = NULL;

  g_return_val_if_fail (filename != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  root = _quark_input_read_json (filename, QUARK_INPUT_MAX_CALIBRATION_SIZE, "calibration statistics",
                                 &local_error);
  if (root == NULL)
    {
      parse_failed (local_error, error);
      return NULL;
    }
  {
    g_autofree char *directory = g_path_get_dirname (filename);
    return load_from_node (root, filename, directory, error);
  }
}

/**
 * quark_calibration_load_from_bytes:
 * @bytes: the contents of a statistics file
 * @source: (nullable): a name for error messages, such as a file or URL
 * @error: return location for a #GError
 *
 * Like quark_calibration_load(), from memory.
 *
 * Returns: (transfer full): the statistics, or %NULL with
 *   %QUARK_ERROR_INVALID_FILE naming @source and the JSON path at fault
 */
QuarkCalibration *
quark_calibration_load_from_bytes (GBytes      *bytes,
                                   const char  *source,
                                   GError     **error)
{
  g_autoptr(JsonNode) root = NULL;
  GError *local_error = NULL;
  gsize size;
  const char *data;

  g_return_val_if_fail (bytes != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (source == NULL)
    source = "statistics";
  data = g_bytes_get_data (bytes, &size);
  root = quark_json_parse (data ? data : "", (gssize) size, source, &local_error);
  if (root == NULL)
    {
      parse_failed (local_error, error);
      return NULL;
    }
  return load_from_node (root, source, NULL, error);
}
