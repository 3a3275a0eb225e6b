/* quark-gptq-update.c: GPTQ's error update inside a block, a vector at a time
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * When GPTQ has quantized column c of a block, each row's error e (over
 * U[c][c]) goes to the row's later columns of the block:
 * w[k] = w[k] − e · U[c][k]. That is half of the column loop's arithmetic
 * (about 64 products per weight for blocks of 128), and GCC at -O2 leaves
 * the plain loop scalar. Here it runs QK_LANES columns at a time, compiled
 * with the kernels' clones; without contraction (-ffp-contract=off) each
 * lane does the scalar loop's two roundings, product then difference, so
 * the codes are those of the scalar loop bit for bit.
 */
#include "config.h"

#include "quark-gptq-private.h"
#include "../../kernels/quark-kernel-private.h"

QK_MULTIVERSION static void
sub_outer (float *w, size_t stride, size_t rows, const float *e, const float *u, size_t n)
{
  for (size_t r = 0; r < rows; r++)
    {
      float *wr = w + r * stride;
      const qk_vf ev = qk_splat (e[r]);
      size_t k = 0;

      for (; k + QK_LANES <= n; k += QK_LANES)
        {
          qk_vf x = qk_load_f32 (wr + k) - ev * qk_load_f32 (u + k);
          memcpy (wr + k, &x, sizeof x);
        }
      for (; k < n; k++)
        wr[k] -= e[r] * u[k];
    }
}

/* Rows [0, @rows) of @w (@stride floats apart), @n columns each:
 * w[r][k] −= e[r] · u[k] */
void
_quark_gptq_sub_outer (float *w, gsize stride, gsize rows, const float *e, const float *u, gsize n)
{
  sub_outer (w, stride, rows, e, u, n);
}
