/* quark-gguf-qkx2.h: ggml's make_qkx2_quants on groups of GG_W sub-blocks,
 * one per vector lane (quark-gguf-search.c)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Included by quark-gguf-search.c once per vector width, with these
 * defined: GG_W (the lanes: 16, or 8 for processors without AVX-512),
 * GG_VF and GG_VI (float and int32 vectors of GG_W lanes), GG_SPLAT,
 * GG_TRANSPOSE (GG_W sub-blocks transposed into one vector per element),
 * GG_CODE_OF, GG_ERROR_OF, GG_IF_LT, GG_IF_GT, GG_STORE_CODES, and the
 * names of the two functions made, GG_XG and GG_N. The search is the same
 * sequence of operations per lane at either width, so both give the scalar
 * search's bits.
 */

/* make_qkx2_quants on @G groups of GG_W sub-blocks of @n values (at most
 * 32): sub-block j of group g at x + (GG_W·g + j)·n, with its weights at the
 * same place, its codes into L at the same place, its scale into
 * scales[GG_W·g + j] and its minimum (negated, as the_min) into
 * mins[GG_W·g + j]. Inlined into a copy per
 * (G, n, use_mad) that the callers use, so that its loops have constant
 * bounds and no test of use_mad inside. Each lane's operations are those
 * of the scalar search in its order; with G = 2 or 4 the groups' chains of
 * additions (the sums of a candidate, its error) interleave, so that one
 * group's additions fill the latency of the others'. */
QK_INLINE void
GG_XG (const int G, const int n, int nmax, const float *x, const float *weights, guint8 *L, float *scales,
         float *mins, float rmin, float rdelta, int nstep, const int use_mad)
{
  GG_VF xt[4][32], wt[4][32];
  GG_VF min[4], max[4], sum_w[4], sum_x[4], iscale[4], scale[4], best[4], min0[4], best_iscale[4], best_from[4];
  const GG_VF zero = { 0 }, infinity = GG_SPLAT (INFINITY), top = GG_SPLAT ((float) nmax);

  if (n < 1 || n > 32 || G < 1 || G > 4)
    return;
  #pragma GCC unroll 4
  for (int g = 0; g < G; g++)
    {
      /* the sub-blocks transposed: lane j of xt[g][i] is element i of
       * sub-block j of group g */
      GG_TRANSPOSE (x + GG_W * n * g, n, xt[g]);
      GG_TRANSPOSE (weights + GG_W * n * g, n, wt[g]);
      min[g] = max[g] = xt[g][0];
      sum_w[g] = wt[g][0];
      sum_x[g] = sum_w[g] * xt[g][0];
    }
  for (int i = 1; i < n; i++)
    #pragma GCC unroll 4
    for (int g = 0; g < G; g++)
      {
        min[g] = GG_IF_LT (xt[g][i], min[g], xt[g][i], min[g]);
        max[g] = GG_IF_GT (xt[g][i], max[g], xt[g][i], max[g]);
        sum_w[g] += wt[g][i];
        sum_x[g] += wt[g][i] * xt[g][i];
      }
  #pragma GCC unroll 4
  for (int g = 0; g < G; g++)
    {
      min[g] = GG_IF_GT (min[g], zero, zero, min[g]);
      min0[g] = min[g];   /* flat sub-blocks (max == min) end here in the scalar code */
      iscale[g] = (float) nmax / (max[g] - min[g]);
      scale[g] = 1 / iscale[g];
      best[g] = zero;
    }
  for (int i = 0; i < n; i++)
    #pragma GCC unroll 4
    for (int g = 0; g < G; g++)
      best[g] += wt[g][i] * GG_ERROR_OF (scale[g] * GG_CODE_OF (iscale[g] * (xt[g][i] - min[g]), top) + min[g] - xt[g][i],
                                      use_mad);
  /* the codes are those of the best candidate's scale and of the minimum it
   * was computed from: kept as that pair, the codes made again at the end */
  #pragma GCC unroll 4
  for (int g = 0; g < G; g++)
    {
      best_iscale[g] = iscale[g];
      best_from[g] = min[g];
    }
  for (int is = 0; nstep >= 1 && is <= nstep; is++)
    {
      GG_VF sum_l[4], sum_l2[4], sum_xl[4], cur[4], l[4][32];

      #pragma GCC unroll 4

      for (int g = 0; g < G; g++)
        {
          /* (min is the best candidate's so far, as in the scalar code) */
          iscale[g] = (rmin + rdelta * is + nmax) / (max[g] - min[g]);
          sum_l[g] = sum_l2[g] = sum_xl[g] = cur[g] = zero;
        }
      for (int i = 0; i < n; i++)
        #pragma GCC unroll 4
        for (int g = 0; g < G; g++)
          {
            l[g][i] = GG_CODE_OF (iscale[g] * (xt[g][i] - min[g]), top);
            sum_l[g] += wt[g][i] * l[g][i];
            sum_l2[g] += wt[g][i] * l[g][i] * l[g][i];
            sum_xl[g] += wt[g][i] * l[g][i] * xt[g][i];
          }
      GG_VF d[4], this_scale[4], this_min[4];
      #pragma GCC unroll 4
      for (int g = 0; g < G; g++)
        {
          d[g] = sum_w[g] * sum_l2[g] - sum_l[g] * sum_l[g];
          this_scale[g] = (sum_w[g] * sum_xl[g] - sum_x[g] * sum_l[g]) / d[g];
          this_min[g] = (sum_l2[g] * sum_x[g] - sum_l[g] * sum_xl[g]) / d[g];
          this_scale[g] = GG_IF_GT (this_min[g], zero, sum_xl[g] / sum_l2[g], this_scale[g]);
          this_min[g] = GG_IF_GT (this_min[g], zero, zero, this_min[g]);
        }
      for (int i = 0; i < n; i++)
        #pragma GCC unroll 4
        for (int g = 0; g < G; g++)
          cur[g] += wt[g][i] * GG_ERROR_OF (this_scale[g] * l[g][i] + this_min[g] - xt[g][i], use_mad);
      #pragma GCC unroll 4
      for (int g = 0; g < G; g++)
        {
          /* the scalar code tries the candidate only where D > 0 */
          cur[g] = GG_IF_GT (d[g], zero, cur[g], infinity);
          best_iscale[g] = GG_IF_LT (cur[g], best[g], iscale[g], best_iscale[g]);
          best_from[g] = GG_IF_LT (cur[g], best[g], min[g], best_from[g]);
          scale[g] = GG_IF_LT (cur[g], best[g], this_scale[g], scale[g]);
          min[g] = GG_IF_LT (cur[g], best[g], this_min[g], min[g]);
          best[g] = GG_IF_LT (cur[g], best[g], cur[g], best[g]);
        }
    }
  #pragma GCC unroll 4
  for (int g = 0; g < G; g++)
    {
      GG_VI c[32];
      for (int i = 0; i < n; i++)
        c[i] = __builtin_convertvector (GG_CODE_OF (best_iscale[g] * (xt[g][i] - best_from[g]), top), GG_VI);
      GG_STORE_CODES (n, c, max[g] == min0[g], L + GG_W * n * g);
      for (int j = 0; j < GG_W; j++)
        {
          gboolean flat = max[g][j] == min0[g][j];
          scales[GG_W * g + j] = flat ? 0.f : scale[g][j];
          mins[GG_W * g + j] = -(flat ? min0[g][j] : min[g][j]);
        }
    }
}

/* the copies of the search the callers use: Q4_K and Q5_K (and Q4_1, Q5_1
 * with importance), Q2_K, Q2_K with importance, any other */
QK_INLINE void
GG_N (const int G, int n, int nmax, const float *x, const float *weights, guint8 *L, float *scales, float *mins,
        float rmin, float rdelta, int nstep, int use_mad)
{
  if (n == 32 && !use_mad)
    GG_XG (G, 32, nmax, x, weights, L, scales, mins, rmin, rdelta, nstep, FALSE);
  else if (n == 16 && use_mad)
    GG_XG (G, 16, nmax, x, weights, L, scales, mins, rmin, rdelta, nstep, TRUE);
  else if (n == 16)
    GG_XG (G, 16, nmax, x, weights, L, scales, mins, rmin, rdelta, nstep, FALSE);
  else
    GG_XG (G, n, nmax, x, weights, L, scales, mins, rmin, rdelta, nstep, use_mad);
}

#undef GG_W
#undef GG_VF
#undef GG_VI
#undef GG_SPLAT
#undef GG_TRANSPOSE
#undef GG_CODE_OF
#undef GG_ERROR_OF
#undef GG_IF_LT
#undef GG_IF_GT
#undef GG_STORE_CODES
#undef GG_XG
#undef GG_N
