/* quark-gpfq.c: GPFQ, greedy path following weight quantization
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-gpfq.h"
#include "../gptq/quark-gptq-private.h"
#include "quark-error.h"
#include "quark-blas-private.h"

#include <math.h>
#include <string.h>

/* The column loop for rows [begin, end): the rows are independent */
typedef struct {
  const float *w;               /* the weight, rows × cols, its own column order */
  const gsize *perm;            /* the order the columns are taken in */
  const float *l;               /* L[t][s] = H[t][s] / H[t][t] (s < t), permuted, row-major */
  const guint8 *live;           /* H[t][t] ≠ 0, permuted */
  float *e;                     /* w − q of the columns taken, rows × cols, permuted */
  float *out;                   /* the rounded weight, rows × cols, its own order */
  gsize cols;
  QuarkGptqRoundFunc round_func;
  gpointer user_data;
} GpfqJob;

static void
gpfq_rows (gpointer data, gsize begin, gsize end, guint worker)
{
  GpfqJob *j = data;
  gsize mr = end - begin, n = j->cols;
  g_autofree float *arg = g_new (float, MAX (mr, 1)), *q = g_new (float, MAX (mr, 1));

  for (gsize t = 0; t < n; t++)
    {
      gsize c = j->perm[t];

      /* arg = w_t + Σ_{s<t} L[t][s] (w_s − q_s); a dead column is 0 */
      for (gsize r = 0; r < mr; r++)
        arg[r] = j->live[t] ? j->w[(begin + r) * n + c] : 0.0f;
      if (t > 0 && j->live[t])
        _quark_blas ()->sgemv (CblasRowMajor, CblasNoTrans, (int) mr, (int) t, 1.0f, j->e + begin * n, (int) n,
                               j->l + t * n, 1, 1.0f, arg, 1);
      j->round_func (arg, mr, c, begin, q, j->user_data);
      for (gsize r = 0; r < mr; r++)
        {
          gsize row = begin + r;
          j->e[row * n + t] = j->w[row * n + c] - q[r];
          j->out[row * n + c] = q[r];
        }
    }
}

/**
 * quark_gpfq_update_weight: (skip)
 * @weight: a float32 weight, row-major [@rows, @cols], replaced by its
 *   rounded values
 * @rows: its output features
 * @cols: its input features
 * @gram: the Gram matrix Σ x xᵀ of the layer's input, float64 [@cols,
 *   @cols], as [method@Quark.Calibration.get_second_moments] gives it
 * @act_order: take the columns in descending order of H's diagonal
 * @round_func: (scope call) (closure user_data): rounds part of a column
 *   the way the caller's quantizer does (as for quark_gptq_update_weight())
 * @user_data: data for @round_func
 * @error: return location for a #GError
 *
 * GPFQ (greedy path following quantization: Lybrand and Saab, 2021; Zhang
 * et al., 2023) in Brevitas's formulation, with the caller's quantizer and
 * parameters fixed beforehand: the columns are taken in their order (or
 * with @act_order by descending H[t][t]); column t is set to
 * w_t + Σ_{s<t} (H[t][s] / H[t][t]) (w_s − q_s), where w are the original
 * weights and q the rounded values of the columns already taken, and then
 * rounded: each column absorbs the output error the earlier ones left,
 * as far as it is correlated with its own input. Input features that were
 * never non-zero (H[t][t] = 0) get 0. No damping.
 *
 * This is GPFQ's objective with the same inputs on both sides; Brevitas's
 * also allows the quantized model's inputs to differ from the float
 * model's (its G = X̃ Xᵀ), which needs both at once and is not computed
 * here (with weight-only quantization of a layer whose input comes from
 * float layers, they are the same).
 *
 * Returns: %TRUE, or %FALSE with %QUARK_ERROR_INVALID_ARGUMENT when @gram
 *   does not fit
 */
gboolean
quark_gpfq_update_weight (float *weight, gsize rows, gsize cols, QuarkTensor *gram, gboolean act_order,
                          QuarkGptqRoundFunc round_func, gpointer user_data, GError **error)
{
  g_autofree gsize *perm = NULL;
  g_autofree float *l = NULL, *e = NULL, *out = NULL;
  g_autofree guint8 *live = NULL;
  const double *g;

  g_return_val_if_fail (weight != NULL || rows * cols == 0, FALSE);
  g_return_val_if_fail (QUARK_IS_TENSOR (gram), FALSE);
  g_return_val_if_fail (round_func != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!_quark_blas_load (error))
    return FALSE;

  if (!_quark_gptq_check_gram (gram, cols, quark_tensor_get_name (gram), error))
    return FALSE;
  if (rows == 0 || cols == 0)
    return TRUE;
  g = quark_tensor_peek_data (gram, NULL);
  /* the order: descending diagonal, or the columns' own */
  perm = g_new (gsize, cols);
  if (!_quark_gptq_column_order (g, cols, act_order, perm))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR, "%s: the Gram matrix is not finite",
                   quark_tensor_get_name (gram));
      return FALSE;
    }
  /* L[t][s] = H[t][s] / H[t][t] for s < t, in the order */
  l = g_new0 (float, cols * cols);
  live = g_new (guint8, cols);
  for (gsize t = 0; t < cols; t++)
    {
      double d = g[perm[t] * cols + perm[t]];
      live[t] = d != 0.0;
      for (gsize s = 0; live[t] && s < t; s++)
        l[t * cols + s] = (float) (g[perm[t] * cols + perm[s]] / d);
    }
  e = g_new (float, rows * cols);
  out = g_new (float, rows * cols);
  {
    GpfqJob job = { weight, perm, l, live, e, out, cols, round_func, user_data };
    _quark_gptq_run_rows (rows, gpfq_rows, &job);
  }
  memcpy (weight, out, rows * cols * sizeof (float));
  return TRUE;
}
