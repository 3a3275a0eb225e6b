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
  float *w;                     /* the weight, rows × cols, its own column order: each block's
                                 * columns are read once, then replaced by their rounded values */
  const gsize *perm;            /* the order the columns are taken in */
  const float *l;               /* L[t][s] = H[t][s] / H[t][t] (s < t), permuted, row-major */
  const guint8 *live;           /* H[t][t] ≠ 0, permuted */
  float *e;                     /* w − q of the columns taken, rows × cols, permuted */
  gsize cols;
  QuarkGptqRoundFunc round_func;
  gpointer user_data;
} GpfqJob;

/* columns taken together (the earlier blocks' part of each argument is
 * one matrix product), and rows of a thread's share that take a block's
 * columns together */
#define GPFQ_BLOCK 128
#define GPFQ_TILE 32

/* Column t's argument is w_t + Σ_{s<t} L[t][s] e_s (e = w − q). Taken one
 * column at a time that sum is a matrix-vector product over all earlier
 * columns, which reads the thread's whole error matrix for every column
 * (memory-bound: gigabytes per layer). Here the columns go in blocks of
 * GPFQ_BLOCK: the earlier blocks' part of a block's arguments is one matrix
 * product, E[:, :b0] · L[b0:b1, :b0]ᵀ, and the block's own part is added
 * column by column as each is rounded, GPFQ_TILE rows at a time (that
 * tile's part of the block stays in the first-level cache). The sums are
 * the same terms in another order. The block's weights, arguments, errors
 * and rounded values live in two small row-major buffers (mr × the block's
 * width) and go to the rows of E and of the weight once per tile, rather
 * than a row (a page) apart for every column. A block's columns of the
 * weight are read before any of them is written, and no later block reads
 * them, so the rounded values go straight into the weight. */
static void
gpfq_rows (gpointer data, gsize begin, gsize end, guint worker)
{
  GpfqJob *j = data;
  gsize mr = end - begin, n = j->cols;
  /* wb: the block's weights, each replaced by its error once rounded;
   * a: its arguments, each replaced by its rounded value */
  g_autofree float *wb = g_new (float, mr * MIN (n, GPFQ_BLOCK)), *a = g_new (float, mr * MIN (n, GPFQ_BLOCK));
  g_autofree float *neg = g_new (float, GPFQ_BLOCK * GPFQ_BLOCK);       /* −L of the block, transposed */
  float arg[GPFQ_TILE], q[GPFQ_TILE], e[GPFQ_TILE];

  if (mr == 0)
    return;
  for (gsize b0 = 0; b0 < n; b0 += GPFQ_BLOCK)
    {
      gsize b1 = MIN (n, b0 + GPFQ_BLOCK), bw = b1 - b0;

      for (gsize r = 0; r < mr; r++)
        for (gsize k = 0; k < bw; k++)
          wb[r * bw + k] = j->w[(begin + r) * n + j->perm[b0 + k]];
      memcpy (a, wb, mr * bw * sizeof (float));
      if (b0 > 0)
        _quark_blas ()->sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) mr, (int) bw, (int) b0, 1.0f,
                               j->e + begin * n, (int) n, j->l + b0 * n, (int) n, 1.0f, a, (int) bw);
      /* neg[t][u] = −L[b0 + u][b0 + t] for u > t: row t spreads column
       * t's error over the block's later columns (a − e · (−L) adds
       * e · L with the same rounding) */
      for (gsize t = 0; t < bw; t++)
        for (gsize u = t + 1; u < bw; u++)
          neg[t * bw + u] = -j->l[(b0 + u) * n + b0 + t];

      for (gsize r0 = 0; r0 < mr; r0 += GPFQ_TILE)
        {
          gsize r1 = MIN (mr, r0 + GPFQ_TILE), tn = r1 - r0;

          for (gsize t = 0; t < bw; t++)
            {
              /* a column never non-zero is 0 */
              for (gsize r = r0; r < r1; r++)
                arg[r - r0] = j->live[b0 + t] ? a[r * bw + t] : 0.0f;
              j->round_func (arg, tn, j->perm[b0 + t], begin + r0, q, j->user_data);
              for (gsize r = r0; r < r1; r++)
                {
                  e[r - r0] = wb[r * bw + t] - q[r - r0];
                  wb[r * bw + t] = e[r - r0];
                  a[r * bw + t] = q[r - r0];
                }
              if (t + 1 < bw)
                _quark_gptq_sub_outer (a + r0 * bw + t + 1, bw, tn, e, neg + t * bw + t + 1, bw - t - 1);
            }
          for (gsize r = r0; r < r1; r++)
            {
              gsize row = begin + r;
              memcpy (j->e + row * n + b0, wb + r * bw, bw * sizeof (float));
              for (gsize k = 0; k < bw; k++)
                j->w[row * n + j->perm[b0 + k]] = a[r * bw + k];
            }
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
  g_autoptr(PoolFloats) l = NULL;
  g_autoptr(PoolFloats) e = NULL;
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
  /* the lower triangle of L and the errors, from the buffer pool (the
   * upper triangle is never read) */
  if ((l = _quark_gptq_pool_try_new (cols, cols, sizeof (float))) == NULL ||
      (e = _quark_gptq_pool_try_new (rows, cols, sizeof (float))) == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED, "%s: out of memory for GPFQ's %zu × %zu factors",
                   quark_tensor_get_name (gram), rows, cols);
      return FALSE;
    }
  /* L[t][s] = H[t][s] / H[t][t] for s < t, in the order; a dead column's
   * row is 0 */
  live = g_new (guint8, cols);
  for (gsize t = 0; t < cols; t++)
    {
      double d = g[perm[t] * cols + perm[t]];
      live[t] = d != 0.0;
      for (gsize s = 0; s < t; s++)
        l[t * cols + s] = live[t] ? (float) (g[perm[t] * cols + perm[s]] / d) : 0.0f;
    }
  {
    GpfqJob job = { weight, perm, l, live, e, cols, round_func, user_data };
    _quark_gptq_run_rows (rows, gpfq_rows, &job);
  }
  return TRUE;
}
