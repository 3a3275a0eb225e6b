/* quark-awq.c: AWQ, activation-aware scaling and clipping of weights
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-awq.h"
#include "quark-error.h"
#include "quark-blas-private.h"

#include <math.h>
#include <string.h>

/**
 * SECTION:quark-awq
 * @Title: AWQ
 * @Short_description: activation-aware weight scaling and clipping
 *
 * AWQ (Lin et al., as AMD Quark and AutoAWQ implement it) protects the
 * input channels that carry the most activation: the linear layers that
 * share an input are multiplied column by column by s (and whatever
 * produces that input, a norm or a linear layer, is divided by s, so the
 * float model computes the same thing), which changes how their weights
 * round. The scale is searched on a grid, s = mean|x|^α for α = i / n_grid,
 * and the α whose rounding gives the smallest output error wins. Then, per
 * output row and group of columns, the weight's range is clipped where
 * that lowers the output error.
 *
 * Both searches need the output error of an approximation Ŵ of a weight W
 * over the calibration tokens, Σ_x ‖(W − Ŵ) x‖², which is
 * tr ((W − Ŵ) H (W − Ŵ)ᵀ) with H = Σ x xᵀ, the Gram matrix a calibration
 * session learns with second moments: it is computed exactly from H, with
 * no activations stored. The rounding itself is the caller's, through a
 * #QuarkAwqRoundFunc, so any weight format can be searched.
 */

#define MIN_SCALE 1e-4f

static float *
floats_of (QuarkTensor *t, gsize expected, const char *what, GError **error)
{
  gsize n = 0;
  g_autofree float *v = quark_tensor_to_floats (t, &n, error);

  if (v == NULL)
    return NULL;
  if (n != expected)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: %s has %" G_GSIZE_FORMAT " elements, "
                   "expected %" G_GSIZE_FORMAT, quark_tensor_get_name (t), what, n, expected);
      return NULL;
    }
  return g_steal_pointer (&v);
}

static gboolean
matrix_dims (QuarkTensor *t, gsize *rows, gsize *cols, GError **error)
{
  if (quark_tensor_get_n_dims (t) != 2)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: AWQ takes weights of two dimensions",
                   quark_tensor_get_name (t));
      return FALSE;
    }
  *rows = (gsize) quark_tensor_get_dim (t, 0);
  *cols = (gsize) quark_tensor_get_dim (t, 1);
  return TRUE;
}

/* The Gram matrix in float32, checked to be [n, n] */
static float *
gram_floats (QuarkTensor *gram, gsize n, GError **error)
{
  if (quark_tensor_get_n_dims (gram) != 2 || (gsize) quark_tensor_get_dim (gram, 0) != n ||
      (gsize) quark_tensor_get_dim (gram, 1) != n)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: the Gram matrix is not %" G_GSIZE_FORMAT
                   " x %" G_GSIZE_FORMAT " as the weights' input", quark_tensor_get_name (gram), n, n);
      return NULL;
    }
  return floats_of (gram, n * n, "the Gram matrix", error);
}

/* Σ over rows of d H dᵀ, d = a − w, rows of @n values; in blocks of rows */
static double
error_of (const float *w, const float *a, gsize rows, gsize n, const float *h)
{
  const gsize block = 256;
  g_autofree float *d = g_new (float, MIN (rows, block) * n), *e = g_new (float, MIN (rows, block) * n);
  double total = 0;

  for (gsize r0 = 0; r0 < rows; r0 += block)
    {
      gsize k = MIN (block, rows - r0);
      for (gsize i = 0; i < k * n; i++)
        d[i] = a[r0 * n + i] - w[r0 * n + i];
      _quark_blas ()->ssymm (CblasRowMajor, CblasRight, CblasUpper, (int) k, (int) n, 1.0f, h, (int) n, d, (int) n,
                             0.0f, e, (int) n);
      for (gsize i = 0; i < k * n; i++)
        total += (double) d[i] * e[i];
    }
  return total;
}

static float *
round_floats (QuarkTensor *like, const float *values, gsize rows, gsize cols, QuarkAwqRoundFunc round_func,
              gpointer user_data, GError **error)
{
  gint64 shape[2] = { (gint64) rows, (gint64) cols };
  g_autoptr(QuarkTensor) in = quark_tensor_new_from_floats (quark_tensor_get_name (like), shape, 2, values,
                                                            rows * cols, error);
  g_autoptr(QuarkTensor) out = NULL;

  if (in == NULL || (out = round_func (in, user_data, error)) == NULL)
    return NULL;
  return floats_of (out, rows * cols, "the rounded weight", error);
}

/**
 * quark_awq_output_error:
 * @weight: a weight [rows, columns]
 * @approximation: another tensor of the same shape, such as @weight
 *   quantized and dequantized
 * @gram: the Gram matrix Σ x xᵀ of the layer's input [columns, columns]
 *   (quark_calibration_get_second_moments())
 * @error: return location for a #GError
 *
 * The output error of @approximation against @weight over the tokens @gram
 * was learned on, Σ_x ‖(W − Ŵ) x‖² = tr ((W − Ŵ) H (W − Ŵ)ᵀ), computed in
 * float32 products with a float64 sum.
 *
 * Returns: the error, or -1 with %QUARK_ERROR_INVALID_ARGUMENT when the
 *   shapes do not fit
 */
double
quark_awq_output_error (QuarkTensor *weight, QuarkTensor *approximation, QuarkTensor *gram, GError **error)
{
  g_autofree float *w = NULL, *a = NULL, *h = NULL;
  gsize rows, cols;

  g_return_val_if_fail (QUARK_IS_TENSOR (weight), -1);
  g_return_val_if_fail (QUARK_IS_TENSOR (approximation), -1);
  g_return_val_if_fail (QUARK_IS_TENSOR (gram), -1);
  g_return_val_if_fail (error == NULL || *error == NULL, -1);

  if (!_quark_blas_load (error))
    return -1;

  if (!matrix_dims (weight, &rows, &cols, error) ||
      (w = floats_of (weight, rows * cols, "the weight", error)) == NULL ||
      (a = floats_of (approximation, rows * cols, "the approximation", error)) == NULL ||
      (h = gram_floats (gram, cols, error)) == NULL)
    return -1;
  return error_of (w, a, rows, cols, h);
}

/**
 * quark_awq_search_scale:
 * @weights: (array length=n_weights): the weights of the linear layers that
 *   share one input, each [rows, columns] with the same columns
 * @n_weights: their number
 * @gram: the Gram matrix of their input [columns, columns]
 * @mean_abs: per input feature, the mean of |x| over the calibration tokens
 *   (quark_calibration_get_input_mean_abs())
 * @n_grid: the number of points searched (AMD Quark's: 20)
 * @round_func: (scope call) (closure user_data): rounds a weight as it will
 *   be quantized
 * @user_data: data for @round_func
 * @best_ratio: (out) (optional): the exponent α that won
 * @error: return location for a #GError
 *
 * AWQ's search for the per-input-channel scale of a group of linear layers,
 * on AMD Quark's grid: for α = i / @n_grid (i = 0 … @n_grid − 1), in
 * float32, s = max (mean|x|^α, 10⁻⁴), then s /= √(max s · min s); each
 * weight W becomes Ŵ = Q (W · diag s) / s with Q @round_func, and the α
 * whose summed output error (quark_awq_output_error()) is smallest wins
 * (the first among equals). α = 0 gives s = 1, round-to-nearest itself.
 *
 * Returns: (transfer full): the scale s, float32 [columns], or %NULL with
 *   @error set (%QUARK_ERROR_INVALID_ARGUMENT when shapes do not fit or
 *   every error is NaN; @round_func's errors)
 */
QuarkTensor *
quark_awq_search_scale (QuarkTensor **weights, guint n_weights, QuarkTensor *gram, QuarkTensor *mean_abs,
                        guint n_grid, QuarkAwqRoundFunc round_func, gpointer user_data, double *best_ratio,
                        GError **error)
{
  g_autofree float *h = NULL, *x = NULL, *s = NULL, *best = NULL;
  g_autofree gsize *rows = NULL;
  float **w;
  gsize cols = 0, largest = 0;
  double best_error = INFINITY, ratio_found = -1;
  gint64 shape[1];
  gboolean ok = TRUE;

  g_return_val_if_fail (weights != NULL && n_weights > 0, NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (gram), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (mean_abs), NULL);
  g_return_val_if_fail (round_func != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!_quark_blas_load (error))
    return NULL;

  if (n_grid == 0)
    {
      g_set_error_literal (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "AWQ: the grid has no points");
      return NULL;
    }
  rows = g_new0 (gsize, n_weights);
  w = g_new0 (float *, n_weights);
  for (guint i = 0; ok && i < n_weights; i++)
    {
      gsize c;
      ok = matrix_dims (weights[i], &rows[i], &c, error);
      if (ok && i > 0 && c != cols)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: %" G_GSIZE_FORMAT " input features, "
                       "%s has %" G_GSIZE_FORMAT, quark_tensor_get_name (weights[i]), c,
                       quark_tensor_get_name (weights[0]), cols);
          ok = FALSE;
        }
      cols = c;
      ok = ok && (w[i] = floats_of (weights[i], rows[i] * cols, "the weight", error)) != NULL;
      largest = MAX (largest, rows[i]);
    }
  ok = ok && (h = gram_floats (gram, cols, error)) != NULL && (x = floats_of (mean_abs, cols, "mean |x|", error));
  if (ok)
    {
      g_autofree float *scaled = g_new (float, largest * cols);
      s = g_new (float, cols);
      for (guint g = 0; ok && g < n_grid; g++)
        {
          float ratio = (float) g / (float) n_grid, lo = INFINITY, hi = -INFINITY, norm;
          double total = 0;

          for (gsize c = 0; c < cols; c++)
            {
              s[c] = fmaxf (powf (x[c], ratio), MIN_SCALE);
              lo = fminf (lo, s[c]);
              hi = fmaxf (hi, s[c]);
            }
          norm = sqrtf (hi * lo);
          for (gsize c = 0; c < cols; c++)
            s[c] /= norm;
          for (guint i = 0; ok && i < n_weights; i++)
            {
              g_autofree float *q = NULL;
              for (gsize r = 0; r < rows[i]; r++)
                for (gsize c = 0; c < cols; c++)
                  scaled[r * cols + c] = w[i][r * cols + c] * s[c];
              q = round_floats (weights[i], scaled, rows[i], cols, round_func, user_data, error);
              if (q == NULL)
                {
                  ok = FALSE;
                  break;
                }
              for (gsize r = 0; r < rows[i]; r++)
                for (gsize c = 0; c < cols; c++)
                  q[r * cols + c] /= s[c];
              total += error_of (w[i], q, rows[i], cols, h);
            }
          if (ok && total < best_error)
            {
              best_error = total;
              ratio_found = ratio;
              g_free (best);
              best = g_memdup2 (s, cols * sizeof (float));
            }
        }
    }
  for (guint i = 0; i < n_weights; i++)
    g_free (w[i]);
  g_free (w);
  if (!ok)
    return NULL;
  if (best == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: AWQ's output error is NaN at every "
                   "point of the grid (non-finite weights or statistics)", quark_tensor_get_name (weights[0]));
      return NULL;
    }
  if (best_ratio)
    *best_ratio = ratio_found;
  shape[0] = (gint64) cols;
  return quark_tensor_new_from_floats ("awq_scale", shape, 1, best, cols, error);
}

/**
 * quark_awq_search_clip:
 * @weight: a weight [rows, columns] (already scaled)
 * @group_size: the columns of a quantization group, 0 for whole rows
 * @gram: the Gram matrix of the layer's input [columns, columns] (of the
 *   scaled input when @weight is scaled)
 * @n_grid: the grid's resolution (AMD Quark's: 20)
 * @max_shrink: the largest fraction of the range taken off (AMD Quark's:
 *   0.5)
 * @round_func: (scope call) (closure user_data): rounds a weight as it will
 *   be quantized
 * @user_data: data for @round_func
 * @error: return location for a #GError
 *
 * AWQ's clipping search: for each output row and group of columns, with
 * m its largest |w|, the clip c = m · (1 − i / @n_grid) for i = 0 … ⌈@max_shrink ·
 * @n_grid⌉ − 1 whose rounding Q (clamp (w, −c, c)) gives the smallest
 * output error of that row and group (the group's block of @gram, as AMD
 * Quark measures each group's share of the output on its own; the first,
 * widest, clip among equals).
 *
 * Returns: (transfer full): the clips, float32 [rows, groups], for
 *   quark_awq_fold(); or %NULL with @error set
 */
QuarkTensor *
quark_awq_search_clip (QuarkTensor *weight, guint group_size, QuarkTensor *gram, guint n_grid, double max_shrink,
                       QuarkAwqRoundFunc round_func, gpointer user_data, GError **error)
{
  g_autofree float *w = NULL, *h = NULL, *org = NULL, *best = NULL, *clamped = NULL, *e = NULL;
  g_autofree double *best_error = NULL;
  gsize rows, cols, groups, g;
  guint steps;
  gint64 shape[2];

  g_return_val_if_fail (QUARK_IS_TENSOR (weight), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (gram), NULL);
  g_return_val_if_fail (round_func != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!_quark_blas_load (error))
    return NULL;

  if (!matrix_dims (weight, &rows, &cols, error))
    return NULL;
  g = group_size ? group_size : cols;
  if (cols % g != 0 || n_grid == 0 || !(max_shrink > 0 && max_shrink < 1))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: AWQ's clipping takes groups that divide the "
                   "%" G_GSIZE_FORMAT " columns, a grid of at least one point and a shrink in (0, 1)",
                   quark_tensor_get_name (weight), cols);
      return NULL;
    }
  groups = cols / g;
  steps = (guint) ceil (max_shrink * n_grid);
  if ((w = floats_of (weight, rows * cols, "the weight", error)) == NULL || (h = gram_floats (gram, cols, error)) == NULL)
    return NULL;
  org = g_new (float, rows * groups);
  best = g_new (float, rows * groups);
  best_error = g_new (double, rows * groups);
  clamped = g_new (float, rows * cols);
  e = g_new (float, rows * g);
  for (gsize r = 0; r < rows; r++)
    for (gsize k = 0; k < groups; k++)
      {
        float m = 0;
        for (gsize c = k * g; c < (k + 1) * g; c++)
          m = fmaxf (m, fabsf (w[r * cols + c]));
        org[r * groups + k] = best[r * groups + k] = m;
        best_error[r * groups + k] = INFINITY;
      }
  for (guint i = 0; i < steps; i++)
    {
      float shrink = 1.0f - (float) i / (float) n_grid;
      g_autofree float *q = NULL;

      for (gsize r = 0; r < rows; r++)
        for (gsize k = 0; k < groups; k++)
          {
            float c = org[r * groups + k] * shrink;
            for (gsize j = k * g; j < (k + 1) * g; j++)
              clamped[r * cols + j] = fminf (fmaxf (w[r * cols + j], -c), c);
          }
      if ((q = round_floats (weight, clamped, rows, cols, round_func, user_data, error)) == NULL)
        return NULL;
      for (gsize j = 0; j < rows * cols; j++)
        q[j] -= w[j];
      for (gsize k = 0; k < groups; k++)
        {
          /* e = d_k · H_kk, d_k the group's columns of every row */
          _quark_blas ()->sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) rows, (int) g, (int) g, 1.0f,
                                 q + k * g, (int) cols, h + k * g * cols + k * g, (int) cols, 0.0f, e, (int) g);
          for (gsize r = 0; r < rows; r++)
            {
              double err = 0;
              for (gsize j = 0; j < g; j++)
                err += (double) q[r * cols + k * g + j] * e[r * g + j];
              if (err < best_error[r * groups + k])
                {
                  best_error[r * groups + k] = err;
                  best[r * groups + k] = org[r * groups + k] * shrink;
                }
            }
        }
    }
  shape[0] = (gint64) rows;
  shape[1] = (gint64) groups;
  return quark_tensor_new_from_floats ("awq_clip", shape, 2, best, rows * groups, error);
}

/**
 * quark_awq_fold:
 * @tensor: a weight [rows, columns], or a vector [rows] (a norm's weight, a
 *   bias)
 * @column_scale: (nullable): multiplies each column (float [columns]; not
 *   for vectors)
 * @row_divisor: (nullable): divides each row (float [rows])
 * @clip: (nullable): clips each row and group of columns to ±clip (float
 *   [rows, groups], groups dividing the columns; not for vectors)
 * @error: return location for a #GError
 *
 * Applies AWQ's (and SmoothQuant's) transformations to a tensor, in
 * float32 and in this order: w · s[column] / d[row], then clamped. Scaling
 * the linear layers that read an input by s and dividing what produces
 * that input (a norm's weight, or the rows and bias of a linear layer) by
 * the same s leaves the float model's output unchanged up to float32
 * rounding.
 *
 * Returns: (transfer full): a float32 tensor with @tensor's name and shape,
 *   or %NULL with %QUARK_ERROR_INVALID_ARGUMENT when the shapes do not fit
 */
QuarkTensor *
quark_awq_fold (QuarkTensor *tensor, QuarkTensor *column_scale, QuarkTensor *row_divisor, QuarkTensor *clip,
                GError **error)
{
  g_autofree float *v = NULL, *s = NULL, *d = NULL, *c = NULL;
  guint n_dims;
  const gint64 *shape;
  gsize rows, cols, n, groups = 1, g;

  g_return_val_if_fail (QUARK_IS_TENSOR (tensor), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  shape = quark_tensor_get_shape (tensor, &n_dims);
  if (n_dims != 1 && n_dims != 2)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: folds take vectors and matrices",
                   quark_tensor_get_name (tensor));
      return NULL;
    }
  rows = (gsize) shape[0];
  cols = n_dims == 2 ? (gsize) shape[1] : 1;
  if (n_dims == 1 && (column_scale || clip))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: a vector has no columns to scale or clip",
                   quark_tensor_get_name (tensor));
      return NULL;
    }
  if (clip)
    {
      if (quark_tensor_get_n_dims (clip) != 2 || (gsize) quark_tensor_get_dim (clip, 0) != rows ||
          quark_tensor_get_dim (clip, 1) < 1 || cols % (gsize) quark_tensor_get_dim (clip, 1) != 0)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: the clips are not [%" G_GSIZE_FORMAT
                       ", groups] with groups dividing %" G_GSIZE_FORMAT, quark_tensor_get_name (tensor), rows, cols);
          return NULL;
        }
      groups = (gsize) quark_tensor_get_dim (clip, 1);
    }
  g = cols / groups;
  if ((v = floats_of (tensor, rows * cols, "the tensor", error)) == NULL ||
      (column_scale && (s = floats_of (column_scale, cols, "the column scale", error)) == NULL) ||
      (row_divisor && (d = floats_of (row_divisor, rows, "the row divisor", error)) == NULL) ||
      (clip && (c = floats_of (clip, rows * groups, "the clips", error)) == NULL))
    return NULL;
  n = rows * cols;
  for (gsize r = 0; r < rows; r++)
    for (gsize j = 0; j < cols; j++)
      {
        float x = v[r * cols + j];
        if (s)
          x *= s[j];
        if (d)
          x /= d[r];
        if (c)
          x = fminf (fmaxf (x, -c[r * groups + j / g]), c[r * groups + j / g]);
        v[r * cols + j] = x;
      }
  return quark_tensor_new_from_floats (quark_tensor_get_name (tensor), shape, n_dims, v, n, error);
}
