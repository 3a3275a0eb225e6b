/* quark-equalization.c: activation equalization, as Brevitas computes it
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-equalization.h"
#include "quark-error.h"
#include "kernels/quark-kernels.h"
#include "algorithms/smoothquant/quark-smoothquant-private.h"

#include <math.h>

/* Brevitas's threshold under which a range leaves its channel alone */
#define RANGE_EPSILON 1e-9f

/**
 * quark_equalization_scale:
 * @sinks: (array length=n_sinks): the weights of the linear layers that
 *   read one input (the region's sinks), each [rows, columns] with the same
 *   columns
 * @n_sinks: their number
 * @abs_max: per input feature, max |x| over the calibration tokens of the
 *   float model (float32 [columns]; quark_calibration_get_input_abs_max()
 *   gives it)
 * @alpha: how much of the range moves, from 0 to 1 (Brevitas's and AMD
 *   Quark's default is 0.5)
 * @error: return location for a #GError
 *
 * The scale of Brevitas's activation equalization (`_cross_layer_equalization`
 * with activations), in float32: with w_j the largest |w| in column j over
 * all the sinks and a_j = @abs_max[j], s_j = w_j^(1−α) / a_j^α, and
 * s_j = 1 where w_j or a_j is at most 10⁻⁹. The input is then multiplied
 * by s (the multiplication folded into what produces it,
 * quark_equalization_fold_source()) and the sinks' columns by 1/s
 * (quark_equalization_fold_sink()), which leaves the float model unchanged
 * and gives every input channel the same ratio of activation range to
 * weight range when α is 0.5.
 *
 * With α = 0.5 the powers are square roots, correctly rounded as torch's
 * are, and s is Brevitas's bit for bit. Other powers are computed in
 * double precision and rounded once; torch's vectorized powf (SLEEF's,
 * within one unit in the last place) can differ from them by a few units
 * in the last place of s.
 *
 * Returns: (transfer full): s, float32 [columns], or %NULL with
 *   %QUARK_ERROR_INVALID_ARGUMENT when the shapes do not fit or @alpha is
 *   not in [0, 1]
 */
QuarkTensor *
quark_equalization_scale (QuarkTensor **sinks, guint n_sinks, QuarkTensor *abs_max, double alpha, GError **error)
{
  g_autofree float *a = NULL, *wmax = NULL;
  gsize cols = 0;
  gint64 shape[1];

  g_return_val_if_fail (sinks != NULL && n_sinks > 0, NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (abs_max), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!(alpha >= 0 && alpha <= 1))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "activation equalization: alpha %g is not in "
                   "[0, 1]", alpha);
      return NULL;
    }
  if ((wmax = _quark_smoothquant_ranges (sinks, n_sinks, abs_max, "activation equalization", &cols, &a,
                                         error)) == NULL)
    return NULL;
  for (gsize j = 0; j < cols; j++)
    {
      float w = wmax[j], x = a[j];

      /* (NaN ranges are not "at most ε" in Brevitas either: they stay NaN
       * and the caller refuses them) */
      if (w <= RANGE_EPSILON || x <= RANGE_EPSILON)
        {
          a[j] = 1.0f;
          continue;
        }
      if (alpha == 0.5)
        a[j] = sqrtf (w) / sqrtf (x);
      else
        a[j] = (float) (pow (w, 1 - (double) (float) alpha) / pow (x, (double) (float) alpha));
    }
  shape[0] = (gint64) cols;
  return quark_tensor_new_from_floats ("equalization_scale", shape, 1, a, cols, error);
}

/* @v rounded to @dtype in place (float32: as it is) */
static gboolean
round_to (QuarkDType dtype, float *v, gsize n)
{
  g_autofree guint8 *tmp = NULL;

  if (dtype == QUARK_DTYPE_F32)
    return TRUE;
  tmp = g_malloc (MAX (n * quark_dtype_get_element_size (dtype), 1));
  return quark_kernel_convert_from_f32 (dtype, v, tmp, n) && quark_kernel_convert_to_f32 (dtype, tmp, v, n);
}

/* @tensor's values times @factor along @axis, each product rounded to
 * @tensor's dtype; @reciprocal takes 1/s (rounded to the dtype) for s */
static QuarkTensor *
fold (QuarkTensor *tensor, QuarkTensor *scale, guint axis, gboolean reciprocal, GError **error)
{
  QuarkDType dtype = quark_tensor_get_dtype (tensor);
  g_autofree float *v = NULL, *s = NULL;
  g_autofree guint8 *data = NULL;
  g_autoptr(GBytes) bytes = NULL;
  gsize n = 0, m = 0, channels, inner = 1;
  guint n_dims;
  const gint64 *shape = quark_tensor_get_shape (tensor, &n_dims);

  if (!(dtype == QUARK_DTYPE_F32 || dtype == QUARK_DTYPE_BF16 || dtype == QUARK_DTYPE_F16) ||
      n_dims < axis + 1 || n_dims > 2)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: activation equalization folds into "
                   "float32, bfloat16 or float16 tensors of %s, not %s with %u dimensions",
                   quark_tensor_get_name (tensor), axis ? "two dimensions" : "one or two dimensions",
                   quark_dtype_get_name (dtype), n_dims);
      return NULL;
    }
  channels = (gsize) shape[axis];
  if ((s = quark_tensor_to_floats (scale, &m, error)) == NULL || (v = quark_tensor_to_floats (tensor, &n, error)) == NULL)
    return NULL;
  if (m != channels)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: %" G_GSIZE_FORMAT " scales for %"
                   G_GSIZE_FORMAT " channels", quark_tensor_get_name (tensor), m, channels);
      return NULL;
    }
  /* Brevitas casts the scale to the model's dtype and takes its
   * reciprocal there */
  if (!round_to (dtype, s, m))
    goto unsupported;
  if (reciprocal)
    {
      for (gsize j = 0; j < m; j++)
        s[j] = 1.0f / s[j];
      if (!round_to (dtype, s, m))
        goto unsupported;
    }
  if (axis == 0 && n_dims == 2)
    inner = (gsize) shape[1];
  for (gsize i = 0; i < n; i++)
    v[i] *= s[axis ? i % channels : i / inner];
  data = g_malloc (MAX (n * quark_dtype_get_element_size (dtype), 1));
  if (!quark_kernel_convert_from_f32 (dtype, v, data, n))
    goto unsupported;
  bytes = g_bytes_new_take (g_steal_pointer (&data), n * quark_dtype_get_element_size (dtype));
  return quark_tensor_new (quark_tensor_get_name (tensor), dtype, shape, n_dims, bytes, error);

unsupported:
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_DTYPE, "%s: cannot convert %s values",
               quark_tensor_get_name (tensor), quark_dtype_get_name (dtype));
  return NULL;
}

/**
 * quark_equalization_fold_sink:
 * @weight: a sink's weight [rows, columns] (float32, bfloat16 or float16)
 * @scale: s from quark_equalization_scale(), [columns]
 * @error: return location for a #GError
 *
 * The sink's side of the fold: column j multiplied by 1/s_j. As in
 * Brevitas, s is first rounded to @weight's dtype, its reciprocal is taken
 * and rounded there, and each product is rounded there.
 *
 * Returns: (transfer full): the new weight, same name, shape and dtype, or
 *   %NULL with %QUARK_ERROR_INVALID_ARGUMENT when the shapes do not fit
 */
QuarkTensor *
quark_equalization_fold_sink (QuarkTensor *weight, QuarkTensor *scale, GError **error)
{
  g_return_val_if_fail (QUARK_IS_TENSOR (weight), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (scale), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return fold (weight, scale, 1, TRUE, error);
}

/**
 * quark_equalization_fold_source:
 * @tensor: what produces the sinks' input: a normalization's weight
 *   [channels], or a linear layer's weight [channels, columns] or bias
 *   [channels] (float32, bfloat16 or float16)
 * @scale: s from quark_equalization_scale(), [channels]
 * @error: return location for a #GError
 *
 * The source's side of the fold: channel j (row j of a weight) multiplied
 * by s_j, with s rounded to @tensor's dtype and each product rounded there,
 * as Brevitas does. This is the multiplication that Brevitas inserts before
 * the sinks, moved into the layer before them so that the checkpoint needs
 * no extra operation.
 *
 * Returns: (transfer full): the new tensor, same name, shape and dtype, or
 *   %NULL with %QUARK_ERROR_INVALID_ARGUMENT when the shapes do not fit
 */
QuarkTensor *
quark_equalization_fold_source (QuarkTensor *tensor, QuarkTensor *scale, GError **error)
{
  g_return_val_if_fail (QUARK_IS_TENSOR (tensor), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (scale), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return fold (tensor, scale, 0, FALSE, error);
}
