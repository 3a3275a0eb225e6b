/* bench-kernels: throughput of libquark's kernels on BF16 weights (and
 * one row on the same values in float16), as a fraction of memcpy
 * bandwidth measured in the same run on one thread.
 *
 * Usage: bench-kernels [ROWS COLS [REPEATS]]   (default 4096 4096 15)
 * Prints one JSON object per line: kernel, seconds (best of REPEATS),
 * elements per second, bytes moved (input read + output written) per second,
 * and that rate over memcpy's (bytes read + written per second), memcpy
 * timed in rounds alternating with the kernel's; then memcpy's best.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <quark/quark-kernels.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  const guint16 *bf16;
  gsize rows, cols;
  const guint16 *f16;  /* the same values in float16 */
  float *row;          /* one row of binary32 */
  guint8 *out;         /* codes */
  guint8 *packed;
  float *scales;
  guint8 *mx_scales;
} Bench;

static gsize
run_int8_per_channel (Bench *b)
{
  for (gsize r = 0; r < b->rows; r++)
    {
      float amax;
      QuarkKernelIntParams p = { .qmin = -128, .qmax = 127 };
      const guint16 *row = b->bf16 + r * b->cols;
      quark_kernel_abs_max_bf16 (row, b->cols, &amax);
      p.scale = fmaxf (amax / 127.5f, 0x1p-23f);
      p.inv_scale = 1.0f / p.scale;
      b->scales[r] = p.scale;
      quark_kernel_quantize_int_bf16 (row, b->cols, &p, QUARK_DTYPE_I8, b->out + r * b->cols);
    }
  return b->rows * b->cols + b->rows * 4;
}

/* As the row path takes float16: each row widened to binary32 (into a
 * buffer that stays in cache), then the binary32 kernels */
static gsize
run_f16_int8_per_channel (Bench *b)
{
  for (gsize r = 0; r < b->rows; r++)
    {
      float amax;
      QuarkKernelIntParams p = { .qmin = -128, .qmax = 127 };
      quark_kernel_convert_to_f32 (QUARK_DTYPE_F16, b->f16 + r * b->cols, b->row, b->cols);
      quark_kernel_abs_max_f32 (b->row, b->cols, &amax);
      p.scale = fmaxf (amax / 127.5f, 0x1p-23f);
      p.inv_scale = 1.0f / p.scale;
      b->scales[r] = p.scale;
      quark_kernel_quantize_int_f32 (b->row, b->cols, &p, QUARK_DTYPE_I8, b->out + r * b->cols);
    }
  return b->rows * b->cols + b->rows * 4;
}

static gsize
run_fp8_per_channel (Bench *b)
{
  const QuarkFpFormat *fmt = quark_fp_format_for_dtype (QUARK_DTYPE_F8_E4M3);
  for (gsize r = 0; r < b->rows; r++)
    {
      float amax, s;
      quark_kernel_abs_max_bf16 (b->bf16 + r * b->cols, b->cols, &amax);
      s = amax / 448.0f;
      if (s == 0)
        s = 0x1p-23f;
      b->scales[r] = s;
      quark_kernel_fp_quantize_bf16 (fmt, b->bf16 + r * b->cols, b->cols, s, b->out + r * b->cols);
    }
  return b->rows * b->cols + b->rows * 4;
}

static gsize
run_int4_group128 (Bench *b)
{
  gsize groups = b->cols / 128;
  QuarkKernelIntParams p = { .qmin = -8, .qmax = 7 };
  for (gsize r = 0; r < b->rows; r++)
    {
      const guint16 *row = b->bf16 + r * b->cols;
      float *scales = b->scales + r * groups;
      quark_kernel_group_abs_max_bf16 (row, b->cols, 128, scales);
      for (gsize g = 0; g < groups; g++)
        scales[g] = fmaxf (scales[g] / 7.5f, 0x1p-23f);
      quark_kernel_quantize_pack_int4_groups_bf16 (row, b->cols, 128, &p, scales, NULL, QUARK_DTYPE_INT4, TRUE,
                                                   (gint32 *) (b->packed + r * b->cols / 2));
    }
  return b->rows * b->cols / 2 + b->rows * groups * 4;
}

/* Asymmetric (AWQ's scheme): each group's minimum and maximum, a scale
 * and a zero point, unsigned codes packed along the rows */
static gsize
run_uint4_group128 (Bench *b)
{
  gsize groups = b->cols / 128;
  QuarkKernelIntParams p = { .qmin = 0, .qmax = 15 };
  float *zps = b->row;
  for (gsize r = 0; r < b->rows; r++)
    {
      const guint16 *row = b->bf16 + r * b->cols;
      float *scales = b->scales + r * groups;
      quark_kernel_group_min_max_bf16 (row, b->cols, 128, zps, scales);
      for (gsize g = 0; g < groups; g++)
        {
          float lo = fminf (zps[g], 0.0f), s = fmaxf ((fmaxf (scales[g], 0.0f) - lo) / 15.0f, 0x1p-23f);
          scales[g] = s;
          zps[g] = fminf (fmaxf (nearbyintf (-lo / s), 0.0f), 15.0f);
        }
      quark_kernel_quantize_pack_int4_groups_bf16 (row, b->cols, 128, &p, scales, zps, QUARK_DTYPE_UINT4, TRUE,
                                                   (gint32 *) (b->packed + r * b->cols / 2));
    }
  return b->rows * b->cols / 2 + b->rows * groups * 8;
}

/* The same codes in AMD Quark's layout (packed along the output channels,
 * [cols, rows / 8] words), as the quark backend makes them for that
 * format: the codes of 128 rows into a buffer that stays in cache, then
 * packed from it (quark_kernel_pack_int4_columns_block) */
static gsize
run_int4_group128_columns (Bench *b)
{
  gsize groups = b->cols / 128;
  QuarkKernelIntParams p = { .qmin = -8, .qmax = 7 };
  for (gsize r0 = 0; r0 < b->rows; r0 += 128)
    {
      gsize n = MIN (b->rows - r0, 128);
      for (gsize r = r0; r < r0 + n; r++)
        {
          const guint16 *row = b->bf16 + r * b->cols;
          float *scales = b->scales + r * groups;
          quark_kernel_group_abs_max_bf16 (row, b->cols, 128, scales);
          for (gsize g = 0; g < groups; g++)
            scales[g] = fmaxf (scales[g] / 7.5f, 0x1p-23f);
          quark_kernel_quantize_int_groups_bf16 (row, b->cols, 128, &p, scales, NULL, QUARK_DTYPE_INT4,
                                                 b->out + (r - r0) * b->cols);
        }
      quark_kernel_pack_int4_columns_block ((const gint8 *) b->out, r0, n, b->rows, b->cols, TRUE,
                                            (gint32 *) b->packed);
    }
  return b->rows * b->cols / 2 + b->rows * groups * 4;
}

static gsize
run_mxfp4 (Bench *b)
{
  QuarkMxParams p = { QUARK_DTYPE_FP4_E2M1, QUARK_MX_SCALE_EVEN, 32, TRUE };
  gsize blocks = (b->cols + 31) / 32;
  quark_kernel_mx_quantize_packed_bf16 (&p, b->bf16, b->rows, b->cols, b->packed, b->mx_scales);
  return b->rows * b->cols / 2 + b->rows * blocks;
}

static double
best_time (gsize (*fn) (Bench *), Bench *b, int repeats, gsize *out_bytes)
{
  double best = INFINITY;
  for (int i = 0; i < repeats; i++)
    {
      gint64 t0 = g_get_monotonic_time ();
      *out_bytes = fn (b);
      best = MIN (best, (g_get_monotonic_time () - t0) / 1e6);
    }
  return best;
}

int
main (int argc, char **argv)
{
  gsize rows = argc > 2 ? g_ascii_strtoull (argv[1], NULL, 10) : 4096;
  gsize cols = argc > 2 ? g_ascii_strtoull (argv[2], NULL, 10) : 4096;
  int repeats = argc > 3 ? atoi (argv[3]) : 15;
  gsize n = rows * cols, in_bytes = n * 2;
  g_autofree guint16 *bf16 = g_new (guint16, n);
  g_autofree guint16 *f16 = g_new (guint16, n);
  g_autofree guint8 *copy = g_malloc (in_bytes);
  g_autoptr(GRand) rand = g_rand_new_with_seed (1);
  Bench b = { bf16, rows, cols, f16, g_new (float, cols), g_malloc (MAX (n, cols)), g_malloc (n / 2 + 16),
              g_new (float, rows * (cols / 32 + 1)), g_malloc (rows * (cols / 32 + 1)) };
  static const struct { const char *name; gsize (*fn) (Bench *); } kernels[] = {
    { "bf16_to_int8_per_channel", run_int8_per_channel },
    { "bf16_to_fp8_e4m3_per_channel", run_fp8_per_channel },
    { "bf16_to_int4_per_group_128_packed", run_int4_group128 },
    { "bf16_to_int4_per_group_128_columns", run_int4_group128_columns },
    { "bf16_to_uint4_per_group_128_packed", run_uint4_group128 },
    { "bf16_to_mxfp4_packed", run_mxfp4 },
    { "f16_to_int8_per_channel", run_f16_int8_per_channel },
  };
  double memcpy_best = INFINITY, memcpy_rate;

  if (cols % 128 || rows % 8)
    {
      fprintf (stderr, "bench-kernels: COLS must be a multiple of 128, ROWS of 8\n");
      return 2;
    }
  for (gsize i = 0; i < n; i++)
    {
      float f = (float) ((g_rand_double (rand) + g_rand_double (rand) + g_rand_double (rand) - 1.5) * 0.05);
      guint32 bits;
      memcpy (&bits, &f, 4);
      bf16[i] = (guint16) (bits >> 16);
    }
  /* the same values in float16 (exact but for those under 2^-14, which
   * lose low bits as subnormals) */
  for (gsize i = 0; i < n; i += cols)
    {
      quark_kernel_convert_to_f32 (QUARK_DTYPE_BF16, bf16 + i, b.row, cols);
      quark_kernel_convert_from_f32 (QUARK_DTYPE_F16, b.row, f16 + i, cols);
    }

  /* Each kernel is timed in rounds alternating with memcpy, and compared
   * with the best memcpy of its own rounds: on a shared machine the load
   * drifts, and a ratio of times measured apart would drift with it. */
  for (guint k = 0; k < G_N_ELEMENTS (kernels); k++)
    {
      gsize out_bytes = 0;
      double t = INFINITY, m = INFINITY, rate, m_rate;
      for (int i = 0; i < repeats; i++)
        {
          gint64 t0 = g_get_monotonic_time ();
          memcpy (copy, bf16, in_bytes);
          m = MIN (m, (g_get_monotonic_time () - t0) / 1e6);
          t = MIN (t, best_time (kernels[k].fn, &b, 1, &out_bytes));
        }
      memcpy_best = MIN (memcpy_best, m);
      /* memcpy reads and writes in_bytes */
      m_rate = 2.0 * in_bytes / m;
      rate = (in_bytes + out_bytes) / t;
      printf ("{\"kernel\": \"%s\", \"seconds\": %.6f, \"elements_per_second\": %.4e, "
              "\"bytes_per_second\": %.4e, \"memcpy_seconds\": %.6f, \"fraction_of_memcpy\": %.3f}\n",
              kernels[k].name, t, n / t, rate, m, rate / m_rate);
    }
  memcpy_rate = 2.0 * in_bytes / memcpy_best;
  printf ("{\"kernel\": \"memcpy\", \"seconds\": %.6f, \"bytes_per_second\": %.4e, \"elements\": %" G_GSIZE_FORMAT "}\n",
          memcpy_best, memcpy_rate, n);

  g_free (b.row);
  g_free (b.out);
  g_free (b.packed);
  g_free (b.scales);
  g_free (b.mx_scales);
  return 0;
}
