/* bench-gpfq: GPFQ on one layer, quark_gpfq_update_weight() against the
 * same algorithm written the way its formula reads, in the same run.
 *
 * GPFQ sets column t (in its order) to w_t + Σ_{s<t} L[t][s] (w_s − q_s),
 * L[t][s] = H[t][s] / H[t][t], and rounds it. The baseline takes it one
 * column at a time: the sum is one matrix-vector product (cblas_sgemv over
 * all rows and the columns taken so far, on OpenBLAS's threads), which
 * reads the whole error matrix again for every column. libquark takes
 * blocks of columns, the earlier blocks' part being one matrix product
 * (libquark/algorithms/gpfq/quark-gpfq.c). Both round to nearest with the
 * same scale per row (int4 range, symmetric); the codes are compared (the
 * sums' order differs, so a value within float noise of a midpoint may
 * round apart). Then libquark alone on one processor against all of them
 * (the speedup of the threads; the codes must not change).
 *
 * H is a random symmetric matrix with a positive diagonal (GPFQ divides by
 * the diagonal and factors nothing, so its timing does not depend on H
 * being a Gram matrix).
 *
 * Usage: bench-gpfq [SIZE [REPEATS]]   (default 4096 3: a 4096 × 4096 layer)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#define _GNU_SOURCE
#include <quark/quark.h>

#include <cblas.h>      /* OpenBLAS's: it declares openblas_set_num_threads() too */
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const float *scale;   /* one per row */
} Rounding;

static void
round_int4 (const float *values, gsize n, gsize column, gsize first_row, float *rounded, gpointer data)
{
  const Rounding *r = data;

  for (gsize i = 0; i < n; i++)
    {
      float s = r->scale[first_row + i];
      rounded[i] = fminf (fmaxf (rintf (values[i] / s), -8.0f), 7.0f) * s;
    }
}

/* The formula one column at a time, columns in their own order */
static void
baseline (float *w, gsize rows, gsize cols, const double *h, const Rounding *r)
{
  g_autofree float *l = g_new0 (float, cols * cols), *e = g_new (float, rows * cols), *arg = g_new (float, rows);
  g_autofree float *q = g_new (float, rows), *out = g_new (float, rows * cols);

  for (gsize t = 0; t < cols; t++)
    for (gsize s = 0; s < t; s++)
      l[t * cols + s] = (float) (h[t * cols + s] / h[t * cols + t]);
  for (gsize t = 0; t < cols; t++)
    {
      for (gsize i = 0; i < rows; i++)
        arg[i] = w[i * cols + t];
      if (t > 0)
        cblas_sgemv (CblasRowMajor, CblasNoTrans, (int) rows, (int) t, 1.0f, e, (int) cols, l + t * cols, 1, 1.0f,
                     arg, 1);
      round_int4 (arg, rows, t, 0, q, (gpointer) r);
      for (gsize i = 0; i < rows; i++)
        {
          e[i * cols + t] = w[i * cols + t] - q[i];
          out[i * cols + t] = q[i];
        }
    }
  memcpy (w, out, rows * cols * sizeof (float));
}

static void
on_processors (const cpu_set_t *all, int k)
{
  cpu_set_t set;
  int taken = 0;

  CPU_ZERO (&set);
  for (int c = 0; c < CPU_SETSIZE && taken < k; c++)
    if (CPU_ISSET (c, all))
      {
        CPU_SET (c, &set);
        taken++;
      }
  sched_setaffinity (0, sizeof set, &set);
  openblas_set_num_threads (k);
}

/* Seconds of quark_gpfq_update_weight() on a copy of @w0, left in @w */
static double
time_libquark (const float *w0, float *w, gsize n, QuarkTensor *gram, Rounding *rounding)
{
  g_autoptr(GError) error = NULL;
  gint64 t0;

  memcpy (w, w0, n * n * sizeof (float));
  t0 = g_get_monotonic_time ();
  if (!quark_gpfq_update_weight (w, n, n, gram, FALSE, round_int4, rounding, &error))
    g_error ("%s", error->message);
  return (g_get_monotonic_time () - t0) / 1e6;
}

static double
agree (const float *a, const float *b, gsize n)
{
  gsize same = 0;

  for (gsize i = 0; i < n; i++)
    same += a[i] == b[i];
  return (double) same / (double) n;
}

int
main (int argc, char **argv)
{
  gsize n = argc > 1 ? strtoul (argv[1], NULL, 10) : 4096;
  guint repeats = argc > 2 ? (guint) strtoul (argv[2], NULL, 10) : 3;
  g_autofree float *w0 = g_new (float, n * n), *w = g_new (float, n * n), *scale = g_new (float, n);
  g_autofree float *ours = g_new (float, n * n), *ours_one = g_new (float, n * n);
  g_autofree double *h = g_new (double, n * n);
  g_autoptr(GError) error = NULL;
  g_autoptr(QuarkTensor) gram = NULL;
  double best_many = G_MAXDOUBLE, best_one = G_MAXDOUBLE, best_base = G_MAXDOUBLE;
  GRand *rand = g_rand_new_with_seed (0);
  Rounding rounding = { scale };
  cpu_set_t all;
  int n_cpus;

  if (n < 2 || repeats == 0)
    {
      fprintf (stderr, "usage: bench-gpfq [SIZE [REPEATS]]\n");
      return 2;
    }
  sched_getaffinity (0, sizeof all, &all);
  n_cpus = CPU_COUNT (&all);
  for (gsize i = 0; i < n * n; i++)
    w0[i] = (float) (g_rand_double (rand) - 0.5) * 0.04f;
  for (gsize i = 0; i < n; i++)
    {
      float amax = 0.0f;
      for (gsize j = 0; j < n; j++)
        amax = fmaxf (amax, fabsf (w0[i * n + j]));
      scale[i] = amax / 7.0f;
    }
  for (gsize i = 0; i < n; i++)
    {
      h[i * n + i] = (double) n * (1.0 + g_rand_double (rand));
      for (gsize j = 0; j < i; j++)
        h[i * n + j] = h[j * n + i] = (g_rand_double (rand) - 0.5) * 2.0;
    }
  {
    gint64 shape[2] = { (gint64) n, (gint64) n };
    g_autoptr(GBytes) bytes = g_bytes_new_static (h, n * n * sizeof (double));
    gram = quark_tensor_new ("gram", QUARK_DTYPE_F64, shape, 2, bytes, &error);
    g_assert_no_error (error);
  }

  for (guint k = 0; k < repeats; k++)
    {
      on_processors (&all, 1);
      best_one = MIN (best_one, time_libquark (w0, ours_one, n, gram, &rounding));
      on_processors (&all, n_cpus);
      best_many = MIN (best_many, time_libquark (w0, ours, n, gram, &rounding));
    }
  /* the baseline once per round too, but it is slow: at most 2 rounds */
  for (guint k = 0; k < MIN (repeats, 2u); k++)
    {
      gint64 t0;

      memcpy (w, w0, n * n * sizeof (float));
      t0 = g_get_monotonic_time ();
      baseline (w, n, n, h, &rounding);
      best_base = MIN (best_base, (g_get_monotonic_time () - t0) / 1e6);
    }
  printf ("GPFQ, int4 per row, %zu x %zu weight, %d processors, best of %u\n", n, n, n_cpus, repeats);
  printf ("libquark: %.2f s   one column at a time (sgemv): %.2f s   ratio %.2fx   codes equal: %.2f %%\n",
          best_many, best_base, best_base / best_many, 100.0 * agree (ours, w, n * n));
  printf ("libquark on one processor: %.2f s; on %d: %.2f s, %.2fx one (the same codes: %s)\n", best_one, n_cpus,
          best_many, best_one / best_many, memcmp (ours, ours_one, n * n * sizeof (float)) == 0 ? "yes" : "NO");
  g_rand_free (rand);
  return 0;
}
