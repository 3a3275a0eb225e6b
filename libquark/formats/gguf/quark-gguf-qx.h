/* quark-gguf-qx.h: ggml's make_qx_quants (rmse_type 1) on GG_W sub-blocks,
 * one per vector lane (quark-gguf-search.c)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Included by quark-gguf-search.c once per vector width, with
 * quark-gguf-qkx2.h's macros (GG_W, GG_VF, GG_VI, GG_SPLAT, GG_TRANSPOSE,
 * GG_IF_LT, GG_IF_GT, GG_STORE_CODES) and these defined: GG_SPLAT_I,
 * GG_MAX_I, GG_MIN_I, GG_NEAREST_INT, GG_CODE_BETWEEN, GG_ALL_ZERO,
 * GG_SELECT, GG_IF_NE, and the names of the functions made: GG_QX_CODES,
 * GG_QX_SUMS2, GG_QX_START, GG_QX_STORE and GG_QX. The same operations
 * per lane at either width, so both give the scalar search's bits.
 */

/* The codes of the scale 1 / iscale, clamped to [lo, hi], and their
 * weighted sums Σ w·x·l and Σ w·l², per lane */
QK_INLINE void
GG_QX_CODES (int n, GG_VF iscale, const GG_VF *xt, const GG_VF *wt, GG_VI lo, GG_VI hi, GG_VI *l_out,
          GG_VF *sumlx_out, GG_VF *suml2_out)
{
  GG_VF sumlx = { 0 }, suml2 = { 0 };

  for (int i = 0; i < n; i++)
    {
      GG_VI l = GG_MAX_I (GG_MIN_I (GG_NEAREST_INT (iscale * xt[i]), hi), lo);
      GG_VF lf = __builtin_convertvector (l, GG_VF);
      l_out[i] = l;
      sumlx += wt[i] * xt[i] * lf;
      suml2 += wt[i] * lf * lf;
    }
  *sumlx_out = sumlx;
  *suml2_out = suml2;
}

/* qx_codes()'s sums alone, for two scales at once (a search that keeps
 * the best scale and makes its codes once at the end): with w·x
 * precomputed in @wxt (the scalar code's w·x·l is (w·x)·l) and the codes
 * made by code_between(), in float, five operations a code instead of seven,
 * no store of codes that the next round overwrites, and the two scales'
 * chains of additions side by side. The same codes as nearest_int_v's
 * clamped: |iscale · x| is at most about nmax + 1, since no |x| exceeds
 * the |max| that iscale divides (weights that are NaN or infinite are
 * outside, as for code_between()) */
QK_INLINE void
GG_QX_SUMS2 (int n, GG_VF iscale_a, GG_VF iscale_b, const GG_VF *wxt, const GG_VF *xt, const GG_VF *wt,
          GG_VI lo_bits, GG_VI hi_bits, GG_VF *sums)
{
  GG_VF sumlx_a = { 0 }, suml2_a = { 0 }, sumlx_b = { 0 }, suml2_b = { 0 };

  for (int i = 0; i < n; i++)
    {
      GG_VF la = GG_CODE_BETWEEN (iscale_a * xt[i], lo_bits, hi_bits);
      GG_VF lb = GG_CODE_BETWEEN (iscale_b * xt[i], lo_bits, hi_bits);
      sumlx_a += wxt[i] * la;
      suml2_a += wt[i] * la * la;
      sumlx_b += wxt[i] * lb;
      suml2_b += wt[i] * lb * lb;
    }
  sums[0] = sumlx_a;
  sums[1] = suml2_a;
  sums[2] = sumlx_b;
  sums[3] = suml2_b;
}

/* The start that make_qx_quants and make_q3_quants share, per lane: the
 * sub-blocks transposed (weights qw, or x²), the element of largest
 * magnitude (the first of equals), the codes of the scale -nmax / max
 * clamped to [-nmax, nmax) and their weighted sums Σ w·x·l and Σ w·l² */
QK_INLINE void
GG_QX_START (int n, int nmax, const float *x, const float *qw, GG_VF *xt, GG_VF *wt, GG_VI *lt, GG_VF *amax_out,
          GG_VF *max_out, GG_VF *sumlx_out, GG_VF *suml2_out)
{
  const GG_VF zero = { 0 };
  const GG_VI lo = GG_SPLAT_I (-nmax), hi = GG_SPLAT_I (nmax - 1);
  GG_VF amax = zero, max = zero, iscale;

  GG_TRANSPOSE (x, n, xt);
  if (qw)
    GG_TRANSPOSE (qw, n, wt);
  else
    for (int i = 0; i < n; i++)
      wt[i] = xt[i] * xt[i];
  for (int i = 0; i < n; i++)
    {
      GG_VF ax = (GG_VF) ((GG_VI) xt[i] & 0x7fffffff);
      max = GG_IF_LT (amax, ax, xt[i], max);
      amax = GG_IF_LT (amax, ax, ax, amax);
    }
  iscale = (float) -nmax / max;
  GG_QX_CODES (n, iscale, xt, wt, lo, hi, lt, sumlx_out, suml2_out);
  *amax_out = amax;
  *max_out = max;
}

/* codes plus nmax into L, scales into scales; all-zero sub-blocks
 * (max |x| < GROUP_MAX_EPS) get codes 0 and scale 0, as the scalar code
 * returns before any search */
QK_INLINE void
GG_QX_STORE (int n, int nmax, const GG_VI *lt, GG_VF amax, GG_VF scale, gint8 *L, float *scales)
{
  const GG_VF zero = { 0 };
  const GG_VI offset = GG_SPLAT_I (nmax);
  const GG_VI all_zero = GG_ALL_ZERO (amax);
  GG_VF s = GG_SELECT (all_zero, zero, scale);
  GG_VI codes[32];

  memcpy (scales, &s, sizeof s);
  for (int i = 0; i < n; i++)
    codes[i] = lt[i] + offset;
  GG_STORE_CODES (n, codes, all_zero, (guint8 *) L);
}

/* make_qx_quants (rmse_type 1) for the GG_W sub-blocks of @n values at
 * x + j·n (j < GG_W), weighted by qw at the same places or, without, by x²:
 * codes (offset by nmax) into L, the scales into scales[j]; @n at most 32 */
QK_INLINE void
GG_QX (int n, int nmax, const float *x, const float *qw, gint8 *L, float *scales)
{
  GG_VF xt[32], wt[32], wxt[32];
  GG_VI lt[32];
  GG_VF amax, max, best_iscale, sumlx, suml2, scale, best;
  const GG_VF zero = { 0 }, minus_infinity = GG_SPLAT (-INFINITY), magic = GG_SPLAT (QK_ROUND_MAGIC);
  const GG_VI lo = GG_SPLAT_I (-nmax), hi = GG_SPLAT_I (nmax - 1);
  const GG_VI lo_bits = (GG_VI) (magic - GG_SPLAT ((float) nmax));
  const GG_VI hi_bits = (GG_VI) (magic + GG_SPLAT ((float) (nmax - 1)));

  if (n < 1 || n > 32)
    return;
  GG_QX_START (n, nmax, x, qw, xt, wt, lt, &amax, &max, &sumlx, &suml2);
  best_iscale = (float) -nmax / max;   /* qx_start's */
  for (int i = 0; i < n; i++)
    wxt[i] = wt[i] * xt[i];
  scale = GG_IF_NE (suml2, zero, sumlx / suml2, zero);
  best = scale * sumlx;
  /* is = -9 … 9 without 0, two at a time, each pair's outcomes taken in
   * order */
  for (int k = 0; k < 18; k += 2)
    {
      GG_VF iscales[2], sums[4];
      for (int h = 0; h < 2; h++)
        {
          int is = k + h < 9 ? k + h - 9 : k + h - 8;
          iscales[h] = -(nmax + 0.1f * is) / max;
        }
      GG_QX_SUMS2 (n, iscales[0], iscales[1], wxt, xt, wt, lo_bits, hi_bits, sums);
      for (int h = 0; h < 2; h++)
        {
          GG_VF lhs, slx = sums[2 * h], sl2 = sums[2 * h + 1];
          /* Σ w·l² > 0 && (Σ w·x·l)² > best · Σ w·l² */
          lhs = GG_IF_GT (sl2, zero, slx * slx, minus_infinity);
          best_iscale = GG_IF_GT (lhs, best * sl2, iscales[h], best_iscale);
          scale = GG_IF_GT (lhs, best * sl2, slx / sl2, scale);
          best = GG_IF_GT (lhs, best * sl2, scale * slx, best);
        }
    }
  /* the codes of the scale that won, as the scalar code makes them when it
   * wins */
  GG_QX_CODES (n, best_iscale, xt, wt, lo, hi, lt, &sumlx, &suml2);
  GG_QX_STORE (n, nmax, lt, amax, scale, L, scales);
}

#undef GG_W
#undef GG_VF
#undef GG_VI
#undef GG_SPLAT
#undef GG_TRANSPOSE
#undef GG_IF_LT
#undef GG_IF_GT
#undef GG_STORE_CODES
#undef GG_SPLAT_I
#undef GG_MAX_I
#undef GG_MIN_I
#undef GG_NEAREST_INT
#undef GG_CODE_BETWEEN
#undef GG_ALL_ZERO
#undef GG_SELECT
#undef GG_IF_NE
#undef GG_QX_CODES
#undef GG_QX_SUMS2
#undef GG_QX_START
#undef GG_QX_STORE
#undef GG_QX
