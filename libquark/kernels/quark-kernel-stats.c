/* quark-kernel-stats.c: weight observers (percentiles, MSE search)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline void
swap_floats (float *a, size_t i, size_t j)
{
  float t = a[i];
  a[i] = a[j];
  a[j] = t;
}

/* k-th smallest (0-based) of a[0..n), exact: a quickselect (median of
 * three pivots, three-way partition, O(n) expected), which leaves
 * a[0..k) <= a[k] <= a[k+1..n) */
static float
select_kth (float *a, size_t n, size_t k)
{
  size_t lo = 0, hi = n;   /* the k-th is in a[lo..hi) */

  while (hi - lo > 1)
    {
      size_t mid = lo + (hi - lo) / 2, lt = lo, gt = hi, i = lo;
      float x = a[lo], y = a[mid], z = a[hi - 1];
      float pivot = x < y ? (y < z ? y : x < z ? z : x) : (x < z ? x : y < z ? z : y);

      /* a[lo..lt) < pivot, a[lt..i) == pivot, a[gt..hi) > pivot */
      while (i < gt)
        {
          if (a[i] < pivot)
            swap_floats (a, lt++, i++);
          else if (a[i] > pivot)
            swap_floats (a, i, --gt);
          else
            i++;
        }
      if (k < lt)
        hi = lt;
      else if (k >= gt)
        lo = gt;
      else
        return pivot;
    }
  return a[k];
}

/**
 * quark_kernel_abs_percentile_f32: (skip)
 * @x: @n floats, all finite
 * @n: the number of elements (at least 1)
 * @percentile: q in [0, 100]
 * @scratch: room for @n floats
 *
 * The exact percentile of |x| as Brevitas' AbsPercentile defines it: the
 * k-th smallest |x| (1-based) with k = floor (0.01 · q · n + 0.5), computed
 * in binary64 and clamped to [1, n]. For q = 99.999 and n ≤ 50000 this is
 * the maximum.
 *
 * Returns: the statistic
 */
float
quark_kernel_abs_percentile_f32 (const float *x,
                                 size_t       n,
                                 double       percentile,
                                 float       *scratch)
{
  double kd = floor (0.01 * percentile * (double) n + 0.5);
  size_t k;

  if (n == 0)
    return 0.0f;
  k = kd < 1 ? 1 : kd > (double) n ? n : (size_t) kd;
  for (size_t i = 0; i < n; i++)
    scratch[i] = fabsf (x[i]);
  return select_kth (scratch, n, k - 1);
}

/**
 * quark_kernel_abs_histogram_percentile_f32: (skip)
 * @x: @n floats, all finite
 * @n: the number of elements
 * @percentile: q in [0, 100]
 * @bins: the number of histogram bins
 *
 * A histogram percentile of |x| in the style of AMD Quark's percentile
 * observer: zeros are skipped, the non-zero |x| fill @bins equal right-closed
 * bins over (0, max |x|], and the result is the upper edge of the first bin at which
 * the cumulative count reaches q % of the non-zero count. AMD Quark does not
 * document its bin edges; this is libquark's definition, not a bit-compatible
 * copy.
 *
 * Returns: the statistic (0 when every element is zero)
 */
float
quark_kernel_abs_histogram_percentile_f32 (const float *x,
                                           size_t       n,
                                           double       percentile,
                                           unsigned     bins)
{
  float amax = 0.0f;
  size_t nonzero = 0, *hist, cumulative = 0;
  double target;
  float result;

  if (bins == 0)
    return 0.0f;
  for (size_t i = 0; i < n; i++)
    amax = fmaxf (amax, fabsf (x[i]));
  if (amax == 0.0f)
    return 0.0f;
  hist = calloc (bins, sizeof *hist);
  for (size_t i = 0; i < n; i++)
    {
      float a = fabsf (x[i]);
      size_t b;
      if (a == 0.0f)
        continue;
      /* right-closed bins (lo, hi]: the upper edge covers the bin's values */
      b = (size_t) ceil ((double) a / (double) amax * bins) - 1;
      if (b >= bins)
        b = bins - 1;
      hist[b]++;
      nonzero++;
    }
  target = 0.01 * percentile * (double) nonzero;
  result = amax;
  for (unsigned b = 0; b < bins; b++)
    {
      cumulative += hist[b];
      if ((double) cumulative >= target)
        {
          result = (float) ((double) amax * (b + 1) / bins);
          break;
        }
    }
  free (hist);
  return result;
}

/**
 * quark_kernel_mse_search_int_f32: (skip)
 * @x: @n floats, all finite
 * @n: the number of elements
 * @init: the starting statistic (the absolute maximum)
 * @threshold: the divisor that turns a statistic into a scale (s = c / T)
 * @qmin: smallest code
 * @qmax: largest code
 * @divide: quantize as x / s (Brevitas) rather than x · fl (1 / s) (AMD Quark,
 *   PyTorch)
 *
 * Brevitas' MSE grid search for a symmetric integer scale: candidates
 * c_i = fl (fl (init / 20) · i) for i = 2 … 20 in order, each quantized with
 * s = fl (c_i / T) and half-even rounding, loss Σ (x − x̂)² accumulated in
 * binary64; a candidate replaces the best only when its loss is strictly
 * smaller. (PyTorch sums in binary32 in its own order, so near-ties may
 * resolve differently.)
 *
 * Returns: the best statistic c
 */
float
quark_kernel_mse_search_int_f32 (const float *x,
                                 size_t       n,
                                 float        init,
                                 float        threshold,
                                 int32_t      qmin,
                                 int32_t      qmax,
                                 bool         divide)
{
  float base = init / 20.0f;
  float best = init;
  double best_loss = INFINITY;

  for (int i = 2; i <= 20; i++)
    {
      float c = base * (float) i;
      float s = c / threshold;
      float inv = 1.0f / s;
      double loss = 0;

      if (!(s > 0.0f))
        continue;
      for (size_t k = 0; k < n; k++)
        {
          float t = divide ? x[k] / s : x[k] * inv;
          float q = rintf (t);
          float x_hat;
          if (q < (float) qmin)
            q = (float) qmin;
          if (q > (float) qmax)
            q = (float) qmax;
          x_hat = q * s;
          loss += ((double) x[k] - x_hat) * ((double) x[k] - x_hat);
        }
      if (loss < best_loss)
        {
          best_loss = loss;
          best = c;
        }
    }
  return best;
}

/**
 * quark_kernel_percentile_interval_f32: (skip)
 * @x: @n floats, all finite
 * @n: the number of elements (at least 1)
 * @low_percentile: q_lo in [0, 100]
 * @high_percentile: q_hi in [0, 100]
 * @scratch: room for @n floats
 * @low: (out): the k_lo-th smallest x, k_lo = ceil (0.01 · q_lo · n)
 * @high: (out): the k_hi-th smallest x, k_hi = floor (0.01 · q_hi · n + 0.5)
 *
 * Brevitas' PercentileInterval ends (signed values; both indices 1-based,
 * computed in binary64 and clamped to [1, n]).
 */
void
quark_kernel_percentile_interval_f32 (const float *x,
                                      size_t       n,
                                      double       low_percentile,
                                      double       high_percentile,
                                      float       *scratch,
                                      float       *low,
                                      float       *high)
{
  double klo = ceil (0.01 * low_percentile * (double) n);
  double khi = floor (0.01 * high_percentile * (double) n + 0.5);

  if (n == 0)
    {
      *low = *high = 0.0f;
      return;
    }
  memcpy (scratch, x, n * sizeof *x);
  {
    size_t ilo = (klo < 1 ? 1 : klo > (double) n ? n : (size_t) klo) - 1;
    size_t ihi = (khi < 1 ? 1 : khi > (double) n ? n : (size_t) khi) - 1;
    /* the larger first: the smaller is then among the elements before it */
    if (ilo <= ihi)
      {
        *high = select_kth (scratch, n, ihi);
        *low = ilo == ihi ? *high : select_kth (scratch, ihi, ilo);
      }
    else
      {
        *low = select_kth (scratch, n, ilo);
        *high = select_kth (scratch, ilo, ihi);
      }
  }
}
