/* quark-smoothquant.c: SmoothQuant, moving activation outliers into weights
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-smoothquant.h"
#include "quark-smoothquant-private.h"
#include "quark-error.h"

#include <math.h>

/* AMD Quark's floor under a weight column's maximum */
#define MIN_WEIGHT_MAX 1e-5f

/* The two ranges a scale is made of: per column, the largest |w| over
 * @weights (each [rows, columns], the same columns), returned, and
 * @abs_max's values (one per column) in *@activation, both float32
 * [columns]; errors name @algorithm */
float *
_quark_smoothquant_ranges (QuarkTensor **weights, guint n_weights, QuarkTensor *abs_max, const char *algorithm,
                           gsize *n_columns, float **activation, GError **error)
{
  g_autofree float *wmax = NULL, *a = NULL;
  gsize cols = 0, n = 0;

  for (guint i = 0; i < n_weights; i++)
    {
      g_autofree float *w = NULL;
      gsize rows, count;

      g_return_val_if_fail (QUARK_IS_TENSOR (weights[i]), NULL);
      if (quark_tensor_get_n_dims (weights[i]) != 2 ||
          (i > 0 && (gsize) quark_tensor_get_dim (weights[i], 1) != cols))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: %s takes weights of two dimensions "
                       "with the same columns", quark_tensor_get_name (weights[i]), algorithm);
          return NULL;
        }
      rows = (gsize) quark_tensor_get_dim (weights[i], 0);
      if (i == 0)
        {
          cols = (gsize) quark_tensor_get_dim (weights[i], 1);
          wmax = g_new0 (float, MAX (cols, 1));
        }
      if ((w = quark_tensor_to_floats (weights[i], &count, error)) == NULL)
        return NULL;
      for (gsize r = 0; r < rows; r++)
        for (gsize j = 0; j < cols; j++)
          wmax[j] = fmaxf (wmax[j], fabsf (w[r * cols + j]));
    }
  if ((a = quark_tensor_to_floats (abs_max, &n, error)) == NULL)
    return NULL;
  if (n != cols)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: %" G_GSIZE_FORMAT " maxima for %"
                   G_GSIZE_FORMAT " input features", quark_tensor_get_name (abs_max), n, cols);
      return NULL;
    }
  *n_columns = cols;
  *activation = g_steal_pointer (&a);
  return g_steal_pointer (&wmax);
}

/**
 * quark_smoothquant_scale:
 * @weights: (array length=n_weights): the weights of the linear layers that
 *   share one input, each [rows, columns] with the same columns
 * @n_weights: their number
 * @abs_max: per input feature, max |x| over the calibration tokens (float
 *   [columns]; quark_calibration_get_second_moments() gives it)
 * @alpha: the migration strength, from 0 (nothing moves) to 1 (the whole
 *   range moves into the weights); AMD Quark's default is 1
 * @clamp_min: the smallest scale (AMD Quark's `scale_clamp_min`, 10⁻³)
 * @error: return location for a #GError
 *
 * SmoothQuant's per-input-channel scale (Xiao et al., as AMD Quark computes
 * it), in float32: with a_j = max |x_j| and w_j = max (max over the
 * weights' column j of |w|, 10⁻⁵), s_j = max (a_j^α / w_j^(1−α),
 * @clamp_min). The linear layers are then multiplied by s column by column
 * and what produces their input divided by s (quark_awq_fold()), which
 * leaves the float model unchanged and divides the input's channel j by
 * s_j, flattening its outliers so that activations quantize better, at the
 * cost of a wider weight range.
 *
 * Returns: (transfer full): s, float32 [columns], or %NULL with
 *   %QUARK_ERROR_INVALID_ARGUMENT when the shapes do not fit, @alpha is not
 *   in [0, 1] or @clamp_min is not positive
 */
QuarkTensor *
quark_smoothquant_scale (QuarkTensor **weights, guint n_weights, QuarkTensor *abs_max, double alpha,
                         double clamp_min, GError **error)
{
  g_autofree float *a = NULL, *wmax = NULL;
  gsize cols = 0;
  gint64 shape[1];

  g_return_val_if_fail (weights != NULL && n_weights > 0, NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (abs_max), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!(alpha >= 0 && alpha <= 1) || !(clamp_min > 0))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "SmoothQuant: alpha %g is not in [0, 1] or the "
                   "smallest scale %g is not positive", alpha, clamp_min);
      return NULL;
    }
  if ((wmax = _quark_smoothquant_ranges (weights, n_weights, abs_max, "SmoothQuant", &cols, &a, error)) == NULL)
    return NULL;
  for (gsize j = 0; j < cols; j++)
    {
      float w = fmaxf (wmax[j], MIN_WEIGHT_MAX);
      a[j] = fmaxf (powf (a[j], (float) alpha) / powf (w, (float) (1 - alpha)), (float) clamp_min);
    }
  shape[0] = (gint64) cols;
  return quark_tensor_new_from_floats ("smoothquant_scale", shape, 1, a, cols, error);
}
