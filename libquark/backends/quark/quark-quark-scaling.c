/* quark-quark-scaling.c: the quark backend's AWQ and SmoothQuant (the
 * algorithms are in libquark/algorithms/; this is where they meet the
 * model)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-quark-scaling.h"

#include <math.h>
#include <string.h>

/* AMD Quark leaves the clipping of q and k alone (their product goes
 * through a softmax, which a per-layer output error does not see) */
static const char * const no_clip[] = { "q_", "k_", "query", "key", "Wqkv", NULL };

typedef struct {
  QuarkTensor *column_scale, *row_divisor, *clip;
} Fold;

struct _QuarkQuarkScalingPlan {
  GHashTable *folds;            /* tensor name → Fold */
  const char *algorithm;        /* for messages */
};

typedef struct {
  QuarkQuarkQuantizer *quantizer;
  QuarkCheckpointFormat *format;
  QuarkModel *model;
} RoundData;

static void
fold_free (gpointer data)
{
  Fold *f = data;
  g_clear_object (&f->column_scale);
  g_clear_object (&f->row_divisor);
  g_clear_object (&f->clip);
  g_free (f);
}

void
quark_quark_scaling_plan_free (QuarkQuarkScalingPlan *plan)
{
  if (plan == NULL)
    return;
  g_hash_table_unref (plan->folds);
  g_free (plan);
}

static Fold *
fold_for (QuarkQuarkScalingPlan *plan, const char *name)
{
  Fold *f = g_hash_table_lookup (plan->folds, name);
  if (f == NULL)
    {
      f = g_new0 (Fold, 1);
      g_hash_table_insert (plan->folds, g_strdup (name), f);
    }
  return f;
}

/* The weight's own layer's spec and its original dtype's scale dtype */
static QuarkTensor *
round_weight (QuarkTensor *weight, gpointer user_data, GError **error)
{
  RoundData *d = user_data;
  const char *name = quark_tensor_get_name (weight);
  QuarkTensor *original = quark_model_get_tensor (d->model, name);
  g_autoptr(QuarkTensorSpec) spec = original ? quark_quark_quantizer_weight_spec (d->quantizer, original) : NULL;
  g_autofree char *layer = NULL;

  if (spec == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED, "%s has no weight spec", name);
      return NULL;
    }
  layer = g_strndup (name, strlen (name) - strlen (".weight"));
  return quark_quark_quantizer_round_weight (d->quantizer, weight, spec,
                                             quark_checkpoint_format_get_scale_dtype (d->format, layer, spec,
                                                                                      quark_tensor_get_dtype (original)),
                                             error);
}

QuarkTensor *
quark_quark_scaling_plan_scale_gram (QuarkQuarkScalingPlan *plan, const char *name, QuarkTensor *gram)
{
  Fold *f = plan ? g_hash_table_lookup (plan->folds, name) : NULL;
  g_autofree float *s = NULL;
  g_autofree double *h = NULL;
  gsize n, count;
  g_autoptr(GBytes) bytes = NULL;
  guint n_dims;
  const gint64 *shape;
  const double *in;

  if (f == NULL || f->column_scale == NULL || quark_tensor_get_dtype (gram) != QUARK_DTYPE_F64)
    return g_object_ref (gram);
  s = quark_tensor_to_floats (f->column_scale, &count, NULL);
  n = (gsize) quark_tensor_get_dim (gram, 0);
  if (s == NULL || count != n)
    return g_object_ref (gram);
  /* x' = x / s, so H' = diag (1/s) H diag (1/s) */
  in = quark_tensor_peek_data (gram, NULL);
  h = g_new (double, n * n);
  for (gsize i = 0; i < n; i++)
    for (gsize j = 0; j < n; j++)
      h[i * n + j] = in[i * n + j] / ((double) s[i] * (double) s[j]);
  shape = quark_tensor_get_shape (gram, &n_dims);
  bytes = g_bytes_new_take (g_steal_pointer (&h), n * n * sizeof (double));
  return quark_tensor_new (quark_tensor_get_name (gram), QUARK_DTYPE_F64, shape, n_dims, bytes, NULL);
}

QuarkTensor *
quark_quark_scaling_plan_apply (QuarkQuarkScalingPlan *plan, QuarkTensor *tensor, GError **error)
{
  Fold *f = plan ? g_hash_table_lookup (plan->folds, quark_tensor_get_name (tensor)) : NULL;

  if (f == NULL)
    return g_object_ref (tensor);
  return quark_awq_fold (tensor, f->column_scale, f->row_divisor, f->clip, error);
}

/* The second moments of @layer's input: H, mean |x| and max |x| as asked */
static gboolean
moments_of (QuarkQuarkScalingPlan *plan, QuarkCalibration *calibration, const char *layer, QuarkTensor **gram,
            QuarkTensor **mean_abs, QuarkTensor **abs_max, GError **error)
{
  /* (without the Gram matrix, the vectors alone: no copy of H) */
  g_autoptr(QuarkTensor) h = gram ? quark_calibration_get_second_moments (calibration, layer, NULL, NULL, NULL, abs_max,
                                                                          NULL)
                                  : abs_max ? quark_calibration_get_input_abs_max (calibration, layer, NULL)
                                            : quark_calibration_get_input_mean (calibration, layer, NULL);
  if (h != NULL && gram == NULL && abs_max)
    *abs_max = g_object_ref (h);
  if (h == NULL || (mean_abs && (*mean_abs = quark_calibration_get_input_mean_abs (calibration, layer, NULL)) == NULL))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION,
                   "layer %s: %s needs the second moments of its input (quark quantize --calibration-text, or a "
                   "calibration session with second-moments set)", layer, plan->algorithm);
      return FALSE;
    }
  if (gram)
    *gram = g_steal_pointer (&h);
  return TRUE;
}

gboolean
quark_quark_scaling_plan_input_abs_max (QuarkQuarkScalingPlan *plan, const char *layer,
                                        QuarkCalibration *calibration, float *abs_max)
{
  g_autofree char *name = g_strconcat (layer, ".weight", NULL);
  Fold *f = plan ? g_hash_table_lookup (plan->folds, name) : NULL;
  g_autoptr(QuarkTensor) amax = NULL;
  g_autofree float *a = NULL, *s = NULL;
  gsize n = 0, m = 0;

  if (f == NULL || f->column_scale == NULL || calibration == NULL ||
      !moments_of (plan, calibration, layer, NULL, NULL, &amax, NULL) ||
      (a = quark_tensor_to_floats (amax, &n, NULL)) == NULL ||
      (s = quark_tensor_to_floats (f->column_scale, &m, NULL)) == NULL || n != m)
    return FALSE;
  *abs_max = 0;
  for (gsize j = 0; j < n; j++)
    *abs_max = fmaxf (*abs_max, a[j] / s[j]);
  return TRUE;
}

/* One scaling group of decoder layer @base: its scale searched and noted */
static gboolean
plan_group (QuarkQuarkScalingPlan *plan, const QuarkQuarkScaling *scaling, const QuarkQuarkScalingGroup *group,
            const char *base, QuarkModel *model, QuarkCalibration *calibration, RoundData *round, GError **error)
{
  guint k = g_strv_length (group->layers), present = 0;
  g_autofree QuarkTensor **weights = g_new0 (QuarkTensor *, k);
  g_autofree char *prev_name = g_strdup_printf ("%s.%s.weight", base, group->prev_op);
  g_autofree char *bias_name = g_strdup_printf ("%s.%s.bias", base, group->prev_op);
  g_autofree char *inp = g_strdup_printf ("%s.%s", base, group->inp);
  g_autoptr(QuarkTensor) gram = NULL, mean_abs = NULL, abs_max = NULL, scale = NULL;
  QuarkTensor *prev;
  gboolean quantized = TRUE;
  gsize cols = 0;

  for (guint i = 0; i < k; i++)
    {
      g_autofree char *name = g_strdup_printf ("%s.%s.weight", base, group->layers[i]);
      g_autoptr(QuarkTensorSpec) spec = NULL;
      weights[i] = quark_model_get_tensor (model, name);
      if (weights[i] == NULL)
        continue;
      present++;
      spec = quark_quark_quantizer_weight_spec (round->quantizer, weights[i]);
      quantized = quantized && spec != NULL && quark_tensor_get_n_dims (weights[i]) == 2;
      if (quark_tensor_get_n_dims (weights[i]) == 2)
        cols = (gsize) quark_tensor_get_dim (weights[i], 1);
    }
  if (present == 0)
    return TRUE;        /* a model without these layers (a part of one) */
  if (present < k)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: %s.%s is in the model but not every "
                   "layer of its scaling group", plan->algorithm, base, group->inp);
      return FALSE;
    }
  if (!quantized)
    return TRUE;        /* a layer of the group stays float: nothing to protect */
  prev = quark_model_get_tensor (model, prev_name);
  if (prev == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: the input of %s comes from %s, which is "
                   "not in the model (the scale must be folded into it)", plan->algorithm, inp, prev_name);
      return FALSE;
    }
  if (!((quark_tensor_get_n_dims (prev) == 1 || quark_tensor_get_n_dims (prev) == 2) &&
        (gsize) quark_tensor_get_dim (prev, 0) == cols))
    {
      /* v_proj → o_proj with grouped-query attention: v has fewer rows than
       * o has columns, and one scale per column cannot be folded */
      return TRUE;
    }
  if (scaling->kind == QUARK_QUARK_SCALING_AWQ)
    scale = moments_of (plan, calibration, inp, &gram, &mean_abs, NULL, error)
      ? quark_awq_search_scale (weights, k, gram, mean_abs, scaling->n_grid, round_weight, round, NULL, error) : NULL;
  else
    scale = moments_of (plan, calibration, inp, NULL, NULL, &abs_max, error)
      ? quark_smoothquant_scale (weights, k, abs_max, scaling->alpha, scaling->clamp_min, error) : NULL;
  if (scale == NULL)
    return FALSE;
  for (guint i = 0; i < k; i++)
    {
      Fold *f = fold_for (plan, quark_tensor_get_name (weights[i]));
      if (f->column_scale)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: %s is in two scaling groups",
                       plan->algorithm, quark_tensor_get_name (weights[i]));
          return FALSE;
        }
      f->column_scale = g_object_ref (scale);
    }
  for (guint b = 0; b < 2; b++)
    {
      const char *name = b ? bias_name : prev_name;
      Fold *f;
      if (b && (quark_tensor_get_n_dims (prev) != 2 || quark_model_get_tensor (model, bias_name) == NULL))
        continue;
      f = fold_for (plan, name);
      if (f->row_divisor)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: %s precedes two scaling groups",
                       plan->algorithm, name);
          return FALSE;
        }
      f->row_divisor = g_object_ref (scale);
    }
  return TRUE;
}

/* The clips of one linear layer's weight, scaled as planned */
static gboolean
plan_clip (QuarkQuarkScalingPlan *plan, QuarkTensor *weight, const char *layer, QuarkCalibration *calibration,
           RoundData *round, GError **error)
{
  g_autoptr(QuarkTensorSpec) spec = quark_quark_quantizer_weight_spec (round->quantizer, weight);
  g_autoptr(QuarkTensor) gram = NULL, scaled_gram = NULL, scaled = NULL, clip = NULL;
  guint group = 0;

  if (spec == NULL || quark_tensor_get_n_dims (weight) != 2)
    return TRUE;
  if (quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_GROUP)
    group = (guint) quark_tensor_spec_get_group_size (spec);
  else if (quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_BLOCK)
    return TRUE;        /* blocks span rows: one clip per row and group does not fit */
  if (!moments_of (plan, calibration, layer, &gram, NULL, NULL, error) ||
      (scaled = quark_quark_scaling_plan_apply (plan, weight, error)) == NULL)
    return FALSE;
  scaled_gram = quark_quark_scaling_plan_scale_gram (plan, quark_tensor_get_name (weight), gram);
  clip = quark_awq_search_clip (scaled, group, scaled_gram, 20, 0.5, round_weight, round, error);
  if (clip == NULL)
    return FALSE;
  fold_for (plan, quark_tensor_get_name (weight))->clip = g_steal_pointer (&clip);
  return TRUE;
}

QuarkQuarkScalingPlan *
quark_quark_scaling_plan_new (QuarkQuarkQuantizer *quantizer, const QuarkQuarkScaling *scaling, QuarkModel *model,
                          QuarkCalibration *calibration, QuarkCheckpointFormat *format, GError **error)
{
  g_autoptr(QuarkQuarkScalingPlan) plan = g_new0 (QuarkQuarkScalingPlan, 1);
  g_autoptr(JsonNode) topology = NULL;
  g_autoptr(GPtrArray) groups = NULL;
  g_autofree guint *indices = NULL;
  guint n_layers = 0;
  g_autofree char *prefix = NULL;
  RoundData round = { quantizer, format, model };

  plan->folds = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, fold_free);
  plan->algorithm = scaling->kind == QUARK_QUARK_SCALING_AWQ ? "AWQ" : "SmoothQuant";
  if (calibration == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION,
                   "%s needs the second moments of the layers' inputs (quark quantize --calibration-text, "
                   "or a calibration session with second-moments set)", plan->algorithm);
      return NULL;
    }
  if (scaling->scaling_layers == NULL)
    {
      topology = quark_topology_get_scaling_layers (quark_model_get_metadata (model), &prefix, error);
      if (topology == NULL)
        {
          g_prefix_error (error, "%s (give scaling_layers in its config for other models): ", plan->algorithm);
          return NULL;
        }
    }
  if (scaling->decoder_layers)
    {
      g_free (prefix);
      prefix = g_strdup (scaling->decoder_layers);
    }
  if (prefix == NULL)
    prefix = g_strdup ("model.layers");
  groups = quark_quark_scaling_groups_parse (scaling->scaling_layers ? scaling->scaling_layers : topology,
                                             "scaling_layers", error);
  if (groups == NULL)
    return NULL;
  indices = quark_topology_get_layer_indices (model, prefix, &n_layers);
  for (guint i = 0; i < n_layers; i++)
    {
      g_autofree char *base = g_strdup_printf ("%s.%u", prefix, indices[i]);
      for (guint g = 0; g < groups->len; g++)
        if (!plan_group (plan, scaling, g_ptr_array_index (groups, g), base, model, calibration, &round, error))
          return NULL;
    }
  if (scaling->kind == QUARK_QUARK_SCALING_AWQ && scaling->clip)
    for (guint i = 0; i < n_layers; i++)
      {
        g_autofree char *base = g_strdup_printf ("%s.%u", prefix, indices[i]);
        g_autoptr(GHashTable) done = g_hash_table_new (g_str_hash, g_str_equal);
        for (guint g = 0; g < groups->len; g++)
          {
            const QuarkQuarkScalingGroup *group = g_ptr_array_index (groups, g);
            for (guint k = 0; group->layers[k]; k++)
              {
                g_autofree char *layer = g_strdup_printf ("%s.%s", base, group->layers[k]);
                g_autofree char *name = g_strconcat (layer, ".weight", NULL);
                QuarkTensor *weight = quark_model_get_tensor (model, name);
                gboolean skip = FALSE;

                for (guint m = 0; no_clip[m]; m++)
                  skip = skip || strstr (group->layers[k], no_clip[m]) != NULL;
                if (skip || weight == NULL || g_hash_table_contains (done, group->layers[k]))
                  continue;
                g_hash_table_add (done, group->layers[k]);
                if (!plan_clip (plan, weight, layer, calibration, &round, error))
                  return NULL;
              }
          }
      }
  return g_steal_pointer (&plan);
}
