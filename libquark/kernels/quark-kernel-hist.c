/* quark-kernel-hist.c: streaming histograms for activation calibration
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-kernels.h"

#include <math.h>
#include <string.h>

/*
 * The histogram covers (0, R) for |x|, R = 2^range_exp, in
 * QUARK_KERNEL_HIST_BINS equal bins, separately for positive and negative
 * values; exact zeros are counted apart. R is the smallest power of two
 * strictly above every |x| seen. When a batch needs a larger R, the range
 * doubles and neighbouring bins merge pairwise; because R is a power of two
 * and the bin count too, a value's bin at the doubled range is exactly its
 * old bin halved. So the histogram does not depend on the order of the
 * batches or on how the data was split into batches: it equals the one
 * computed in one pass with the final R.
 */

#define NB QUARK_KERNEL_HIST_BINS

/**
 * quark_kernel_hist_init: (skip)
 * @h: a histogram
 *
 * Empties @h.
 */
void
quark_kernel_hist_init (QuarkKernelHist *h)
{
  memset (h, 0, sizeof *h);
  h->range_exp = INT32_MIN;
}

static void
merge_pairs (uint64_t *bins, int times)
{
  if (times >= 12)
    {
      uint64_t sum = 0;
      for (size_t i = 0; i < NB; i++)
        sum += bins[i];
      memset (bins, 0, NB * sizeof *bins);
      bins[0] = sum;
      return;
    }
  for (int t = 0; t < times; t++)
    {
      for (size_t j = 0; j < NB / 2; j++)
        bins[j] = bins[2 * j] + bins[2 * j + 1];
      memset (bins + NB / 2, 0, NB / 2 * sizeof *bins);
    }
}

/**
 * quark_kernel_hist_add: (skip)
 * @h: a histogram
 * @x: @n finite floats
 * @n: the number of elements
 *
 * Adds @x to @h, widening its range first if needed.
 */
void
quark_kernel_hist_add (QuarkKernelHist *h, const float *x, size_t n)
{
  float amax = 0.0f;
  int needed;

  for (size_t i = 0; i < n; i++)
    amax = fmaxf (amax, fabsf (x[i]));
  if (amax > 0.0f)
    {
      /* amax = m · 2^e with m in [0.5, 1): 2^e > amax strictly */
      frexpf (amax, &needed);
      if (h->range_exp == INT32_MIN)
        h->range_exp = needed;
      else if (needed > h->range_exp)
        {
          merge_pairs (h->pos, needed - h->range_exp);
          merge_pairs (h->neg, needed - h->range_exp);
          h->range_exp = needed;
        }
    }
  for (size_t i = 0; i < n; i++)
    {
      double a;
      size_t bin;
      if (x[i] == 0.0f)
        {
          h->zeros++;
          continue;
        }
      /* exact: a power-of-two multiple of a binary32 value, in binary64 */
      a = ldexp (fabs ((double) x[i]), QUARK_KERNEL_HIST_BITS - h->range_exp);
      bin = (size_t) a;
      if (bin >= NB)
        bin = NB - 1;   /* unreachable: |x| < R */
      if (x[i] > 0.0f)
        h->pos[bin]++;
      else
        h->neg[bin]++;
    }
}

/**
 * quark_kernel_hist_bin_width: (skip)
 * @h: a histogram
 *
 * Returns: the width of one bin, R / bins (0 when only zeros were seen)
 */
double
quark_kernel_hist_bin_width (const QuarkKernelHist *h)
{
  return h->range_exp == INT32_MIN ? 0.0 : ldexp (1.0, h->range_exp - QUARK_KERNEL_HIST_BITS);
}

/**
 * quark_kernel_hist_merge: (skip)
 * @h: a histogram
 * @other: another histogram
 *
 * Adds @other's counts to @h (as if @h had seen @other's data too).
 */
void
quark_kernel_hist_merge (QuarkKernelHist *h, const QuarkKernelHist *other)
{
  QuarkKernelHist o = *other;

  if (o.range_exp != INT32_MIN)
    {
      if (h->range_exp == INT32_MIN)
        h->range_exp = o.range_exp;
      else if (o.range_exp > h->range_exp)
        {
          merge_pairs (h->pos, o.range_exp - h->range_exp);
          merge_pairs (h->neg, o.range_exp - h->range_exp);
          h->range_exp = o.range_exp;
        }
      else if (o.range_exp < h->range_exp)
        {
          merge_pairs (o.pos, h->range_exp - o.range_exp);
          merge_pairs (o.neg, h->range_exp - o.range_exp);
        }
    }
  for (size_t i = 0; i < NB; i++)
    {
      h->pos[i] += o.pos[i];
      h->neg[i] += o.neg[i];
    }
  h->zeros += o.zeros;
}

/* The value below which @target of the counts lie, walking @bins upwards
 * and interpolating linearly inside the bin where the target falls. */
static double
walk (const uint64_t *a, const uint64_t *b, double target, double width)
{
  double cum = 0;

  for (size_t i = 0; i < NB; i++)
    {
      double c = (double) a[i] + (b ? (double) b[i] : 0.0);
      if (c > 0 && cum + c >= target)
        return (i + (target - cum) / c) * width;
      cum += c;
    }
  return NB * width;
}

/**
 * quark_kernel_hist_abs_percentile: (skip)
 * @h: a histogram
 * @percentile: q in [0, 100]
 *
 * The q-th percentile of the non-zero |x| (zeros are skipped, as in AMD
 * Quark's percentile observer), interpolated linearly inside its bin.
 *
 * Returns: the statistic, 0 if every value was zero
 */
double
quark_kernel_hist_abs_percentile (const QuarkKernelHist *h, double percentile)
{
  double total = 0;

  for (size_t i = 0; i < NB; i++)
    total += (double) h->pos[i] + (double) h->neg[i];
  if (total == 0)
    return 0.0;
  return walk (h->pos, h->neg, percentile / 100.0 * total, quark_kernel_hist_bin_width (h));
}

/**
 * quark_kernel_hist_interval: (skip)
 * @h: a histogram
 * @percentile: q in [0, 100]
 * @lo: (out): the low end
 * @hi: (out): the high end
 *
 * The central q % of the non-zero values: (100 − q) / 2 % of them lie below
 * @lo and as many above @hi.
 */
void
quark_kernel_hist_interval (const QuarkKernelHist *h, double percentile, double *lo, double *hi)
{
  double width = quark_kernel_hist_bin_width (h), n_pos = 0, n_neg = 0, tail, total;

  for (size_t i = 0; i < NB; i++)
    {
      n_pos += (double) h->pos[i];
      n_neg += (double) h->neg[i];
    }
  total = n_pos + n_neg;
  *lo = *hi = 0.0;
  if (total == 0)
    return;
  tail = (100.0 - percentile) / 200.0 * total;
  /* the low end: among the negatives when they hold more than the tail */
  if (n_neg > tail)
    *lo = -walk (h->neg, NULL, n_neg - tail, width);
  else
    *lo = walk (h->pos, NULL, tail - n_neg, width);
  if (n_pos > tail)
    *hi = walk (h->pos, NULL, n_pos - tail, width);
  else
    *hi = -walk (h->neg, NULL, tail - n_pos, width);
}

/* The expected squared error of one value @c on the grid @g. */
static double
grid_error (const QuarkKernelGrid *g, double lo, double hi, double c)
{
  if (g->fp != NULL)
    {
      double amax = fmax (fabs (lo), fabs (hi));
      double fmax_ = quark_fp_format_max (g->fp);
      double s = amax / fmax_, y, step;
      int e;
      if (s == 0)
        return c * c;
      y = fabs (c) / s;
      if (y > fmax_)
        return (fabs (c) - amax) * (fabs (c) - amax);
      /* the spacing of the format around y */
      frexp (y, &e);
      e = (e - 1 < 1 - g->fp->bias) ? 1 - g->fp->bias : e - 1;
      step = ldexp (s, e - g->fp->mbits);
      return step * step / 12.0;
    }
  else
    {
      double span = (double) g->qmax - (double) g->qmin;
      double s = (hi - lo) / span, lo_q, hi_q;
      if (s <= 0)
        return c * c;
      /* the representable range on the candidate grid */
      lo_q = lo;
      hi_q = hi;
      if (c < lo_q - s / 2)
        return (c - lo_q) * (c - lo_q);
      if (c > hi_q + s / 2)
        return (c - hi_q) * (c - hi_q);
      return s * s / 12.0;
    }
}

/**
 * quark_kernel_hist_mse_range: (skip)
 * @h: a histogram
 * @grid: the quantization grid
 * @lo: (inout): the observed minimum, replaced by the chosen one
 * @hi: (inout): the observed maximum, replaced by the chosen one
 *
 * Shrinks the range [@lo, @hi] (symmetric grids: [−amax, amax]) by the
 * factor k / bins, k = 1 … bins, and keeps the factor with the smallest
 * expected squared error over the histogram: values inside the range cost
 * the rounding noise of their step (step² / 12), values outside their
 * distance to the range's end. Ties keep the wider range.
 */
void
quark_kernel_hist_mse_range (const QuarkKernelHist *h, const QuarkKernelGrid *grid, double *lo, double *hi)
{
  double width = quark_kernel_hist_bin_width (h);
  double base_lo = *lo, base_hi = *hi, best = INFINITY;

  if (width == 0)
    return;
  if (grid->symmetric || grid->fp)
    {
      double amax = fmax (fabs (base_lo), fabs (base_hi));
      base_lo = -amax;
      base_hi = amax;
    }
  base_lo = fmin (base_lo, 0.0);
  base_hi = fmax (base_hi, 0.0);
  for (size_t k = NB; k >= 1; k--)
    {
      double f = (double) k / NB, clo = base_lo * f, chi = base_hi * f, err = 0;
      for (size_t i = 0; i < NB && err < best; i++)
        {
          double c = (i + 0.5) * width;
          if (h->pos[i])
            err += (double) h->pos[i] * grid_error (grid, clo, chi, c);
          if (h->neg[i])
            err += (double) h->neg[i] * grid_error (grid, clo, chi, -c);
        }
      if (err < best)
        {
          best = err;
          *lo = clo;
          *hi = chi;
        }
    }
}

/**
 * quark_kernel_hist_kl_threshold: (skip)
 * @h: a histogram
 * @levels: quantization levels on one side (128 for int8, 256 for uint8)
 *
 * The entropy calibration of TensorRT on the |x| histogram: for each
 * candidate threshold (the upper edge of bin i, i = @levels … bins), the
 * reference distribution P is the histogram up to i with everything above
 * folded into its last bin, Q is the histogram up to i without that tail,
 * requantized to @levels levels (each level's mass spread evenly over its
 * non-empty bins); both are normalised, empty Q bins count as 10^-12, and
 * the threshold with the smallest KL(P ‖ Q) wins (ties: the wider).
 *
 * Returns: the threshold, 0 if every value was zero
 */
double
quark_kernel_hist_kl_threshold (const QuarkKernelHist *h, unsigned levels)
{
  double width = quark_kernel_hist_bin_width (h);
  static const double eps = 1e-12;
  double h_abs[NB], best = INFINITY, threshold = 0.0, tail = 0.0, total = 0.0;
  double p[NB], q[NB];

  if (width == 0)
    return 0.0;
  for (size_t i = 0; i < NB; i++)
    {
      h_abs[i] = (double) h->pos[i] + (double) h->neg[i];
      total += h_abs[i];
    }
  if (total == 0)
    return 0.0;
  if (levels < 2 || levels > NB)
    return NB * width;
  /* tail = the mass at or above bin i, updated as i shrinks */
  for (size_t i = NB; i >= levels; i--)
    {
      double kl = 0, p_sum = 0, q_sum = 0;
      if (i < NB)
        tail += h_abs[i];
      memcpy (p, h_abs, i * sizeof *p);
      p[i - 1] += tail;
      for (size_t b = 0; b < i; b++)
        p_sum += p[b];
      /* Q: h_abs[0..i) without the outliers, requantized to @levels
       * levels, each level's mass spread over its non-empty bins */
      for (unsigned l = 0; l < levels; l++)
        {
          size_t start = (size_t) ((double) l * i / levels);
          size_t stop = l == levels - 1 ? i : (size_t) ((double) (l + 1) * i / levels);
          double mass = 0, nonzero = 0;
          for (size_t b = start; b < stop; b++)
            {
              mass += h_abs[b];
              nonzero += h_abs[b] > 0;
            }
          for (size_t b = start; b < stop; b++)
            {
              q[b] = h_abs[b] > 0 ? mass / nonzero : 0;
              q_sum += q[b];
            }
        }
      if (p_sum == 0 || q_sum == 0)
        continue;
      for (size_t b = 0; b < i; b++)
        {
          double pb = p[b] / p_sum, qb = q[b] / q_sum;
          if (pb > 0)
            kl += pb * log (pb / fmax (qb, eps));
        }
      if (kl < best)
        {
          best = kl;
          threshold = (double) i * width;
        }
    }
  return threshold;
}
