/* bench-quantize: the quark backend's quantize call, as the library API, the
 * CLI and every binding run it (quark_model_quantizer_quantize_tensor() on a
 * BF16 tensor in memory: the row path, codes in tensor buffers), on a tensor
 * larger than the last-level cache, against memcpy of the same bytes in the
 * same run.
 *
 * Usage: bench-quantize [ROWS COLS [REPEATS [SCHEME [DTYPE [VALUES [INPUT]]]]]]   (default 8192 8192 7: 128 MiB;
 * every scheme, or SCHEME "all"; DTYPE BF16 by default, or F16 or F32: the same values, 2 or 4 bytes
 * each; VALUES "uniform3" by default: sums of three uniform draws, whose largest magnitude is three
 * standard deviations, as in small trained models; "laplace", or "t3": Student's t with 3 degrees of
 * freedom, where a few weights lie far out and most of a row is small beside its largest magnitude,
 * as in large models' rows with outliers. FP8's work depends on them: a weight whose code is
 * subnormal, which heavy tails make more common, takes the lane encoder instead of the table,
 * docs/performance.md; INPUT "malloc" by default: the tensor's bytes 16 bytes past a cache line,
 * where glibc's malloc() puts a large block (as it does the copy in a GLib.Bytes made from
 * Python), or "aligned": at a cache line, where the CLI's reads put each row for the kernels;
 * docs/performance.md, Per-group rows between lines)
 * Prints one JSON object per line: scheme, values, input, threads, buffers ("reused": the
 * tensor buffer pool is warm, as from the second tensor of a model on;
 * "fresh": the pool is emptied before each call, so every output page is
 * faulted in), seconds (median of REPEATS rounds, each round timing memcpy
 * and then the call), the bytes moved (input read + codes and scales
 * written) per second, and that rate over memcpy's (bytes read + written
 * per second) per thread; then the same over memcpy on as many threads at
 * once, each copying its share (timed in each round after the call; on
 * one thread, memcpy's): two copies at once share the memory's bandwidth
 * and are not twice as fast as one.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <quark/quark.h>
#include <quark/quark-kernels.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* memcpy on two threads at once, each copying half: the baseline for the
 * call on two threads (the two share the memory's bandwidth, so two
 * copies at once are not twice as fast as one). The helper is started
 * and waiting before the clock starts. */
typedef struct {
  guint8 *dst;
  const guint8 *src;
  gsize n;
  gint ready, go;
} Half;

static gpointer
copy_half (gpointer data)
{
  Half *h = data;
  g_atomic_int_set (&h->ready, 1);
  while (!g_atomic_int_get (&h->go))
    ;
  memcpy (h->dst, h->src, h->n);
  return NULL;
}

static double
parallel_memcpy_seconds (guint8 *dst, const guint8 *src, gsize n)
{
  gsize half = n / 2 - n / 2 % 64;
  Half h = { dst + half, src + half, n - half, 0, 0 };
  GThread *helper = g_thread_new ("memcpy", copy_half, &h);
  gint64 t0;

  while (!g_atomic_int_get (&h.ready))
    ;
  t0 = g_get_monotonic_time ();
  g_atomic_int_set (&h.go, 1);
  memcpy (dst, src, half);
  g_thread_join (helper);
  return (double) (g_get_monotonic_time () - t0) / 1e6;
}

static int
compare_doubles (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

static QuarkTensorSpec *
spec_for (const char *scheme)
{
  QuarkTensorSpec *s;

  if (g_str_equal (scheme, "int8_per_channel"))
    return g_object_new (QUARK_TYPE_TENSOR_SPEC, "dtype", QUARK_DTYPE_I8, "qscheme", QUARK_QSCHEME_PER_CHANNEL,
                         "ch-axis", 0, NULL);
  if (g_str_equal (scheme, "fp8_per_channel"))
    return g_object_new (QUARK_TYPE_TENSOR_SPEC, "dtype", QUARK_DTYPE_F8_E4M3, "qscheme",
                         QUARK_QSCHEME_PER_CHANNEL, "ch-axis", 0, NULL);
  if (g_str_equal (scheme, "int4_per_group_128"))
    return g_object_new (QUARK_TYPE_TENSOR_SPEC, "dtype", QUARK_DTYPE_INT4, "qscheme", QUARK_QSCHEME_PER_GROUP,
                         "ch-axis", -1, "group-size", 128, NULL);
  if (g_str_equal (scheme, "uint4_per_group_128"))   /* asymmetric: minima, maxima and zero points */
    return g_object_new (QUARK_TYPE_TENSOR_SPEC, "dtype", QUARK_DTYPE_UINT4, "qscheme", QUARK_QSCHEME_PER_GROUP,
                         "ch-axis", -1, "group-size", 128, "symmetric", FALSE, NULL);
  s = g_object_new (QUARK_TYPE_TENSOR_SPEC, "dtype", QUARK_DTYPE_FP4_E2M1, "qscheme", QUARK_QSCHEME_PER_GROUP,
                    "ch-axis", -1, "group-size", 32, "scale-format", QUARK_SCALE_FORMAT_E8M0, NULL);
  return s;
}

int
main (int argc, char **argv)
{
  static const char * const schemes[] = { "int8_per_channel", "fp8_per_channel", "int4_per_group_128",
                                          "uint4_per_group_128", "mxfp4", NULL };
  gsize rows = argc > 2 ? strtoul (argv[1], NULL, 10) : 8192, cols = argc > 2 ? strtoul (argv[2], NULL, 10) : 8192;
  guint repeats = argc > 3 ? (guint) strtoul (argv[3], NULL, 10) : 7;
  const char *only = argc > 4 && !g_str_equal (argv[4], "all") ? argv[4] : NULL;
  const char *values = argc > 6 ? argv[6] : "uniform3";
  const char *input = argc > 7 ? argv[7] : "malloc";
  const gsize offset = g_str_equal (input, "aligned") ? 0 : 16;   /* bytes past a cache line */
  guint8 *at;
  QuarkDType dtype = QUARK_DTYPE_BF16;
  gsize n = rows * cols, bytes;
  g_autofree guint16 *bf16 = g_new (guint16, n);
  g_autofree guint8 *x = NULL;
  g_autofree guint8 *copy = NULL;
  g_autoptr(GBytes) data = NULL;
  g_autoptr(QuarkTensor) tensor = NULL;
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autoptr(GError) error = NULL;
  const gint64 shape[2] = { (gint64) rows, (gint64) cols };
  GRand *rand = g_rand_new_with_seed (1);

  const int kind = g_str_equal (values, "uniform3") ? 0 : g_str_equal (values, "laplace") ? 1
                   : g_str_equal (values, "t3") ? 2 : -1;

  if (kind < 0)
    {
      fprintf (stderr, "bench-quantize: VALUES is uniform3, laplace or t3, not %s\n", values);
      return 1;
    }
  if (!g_str_equal (input, "malloc") && !g_str_equal (input, "aligned"))
    {
      fprintf (stderr, "bench-quantize: INPUT is malloc or aligned, not %s\n", input);
      return 1;
    }
  if (only != NULL && !g_strv_contains ((const char * const *) schemes, only))
    {
      g_autofree char *known = g_strjoinv (", ", (char **) schemes);
      fprintf (stderr, "bench-quantize: SCHEME is all or one of %s, not %s\n", known, only);
      return 1;
    }
  for (gsize i = 0; i < n; i++)
    {
      float v;
      guint32 bits;

      if (kind == 0)
        v = (float) (g_rand_double (rand) + g_rand_double (rand) + g_rand_double (rand) - 1.5) * 0.05f;
      else if (kind == 1)
        v = (float) ((g_rand_boolean (rand) ? 0.014 : -0.014) * log (1.0 - g_rand_double (rand)));
      else
        {
          /* a normal draw over the root mean square of three more */
          double z[4];
          for (int k = 0; k < 4; k++)
            z[k] = sqrt (-2.0 * log (1.0 - g_rand_double (rand))) * cos (2 * G_PI * g_rand_double (rand));
          v = (float) (0.012 * z[0] / sqrt ((z[1] * z[1] + z[2] * z[2] + z[3] * z[3]) / 3.0));
        }
      memcpy (&bits, &v, 4);
      bf16[i] = (guint16) (bits >> 16);
    }
  g_rand_free (rand);
  if (argc > 5 && !quark_dtype_from_safetensors (argv[5], &dtype))
    dtype = QUARK_DTYPE_I8;   /* refused below */
  bytes = n * (dtype == QUARK_DTYPE_F32 ? 4 : 2);
  copy = g_malloc (bytes);
  /* the input at the placement INPUT asks for, whatever the allocator gives */
  x = g_malloc (bytes + 2 * 64);
  at = (guint8 *) (((guintptr) x + 63) & ~(guintptr) 63) + offset;
  if (dtype == QUARK_DTYPE_BF16)
    memcpy (at, bf16, bytes);
  else if (dtype == QUARK_DTYPE_F32 || dtype == QUARK_DTYPE_F16)
    {
      /* the same values (bfloat16 widens exactly, and float16 holds these) */
      g_autofree float *wide = g_new (float, n);
      quark_kernel_convert_to_f32 (QUARK_DTYPE_BF16, bf16, wide, n);
      if (dtype == QUARK_DTYPE_F32)
        memcpy (at, wide, bytes);
      else
        quark_kernel_convert_from_f32 (QUARK_DTYPE_F16, wide, at, n);
    }
  else
    {
      fprintf (stderr, "bench-quantize: DTYPE is BF16, F16 or F32, not %s\n", argv[5]);
      return 1;
    }
  g_clear_pointer (&bf16, g_free);
  memset (copy, 1, bytes);
  data = g_bytes_new_static (at, bytes);
  tensor = quark_tensor_new ("w", dtype, shape, 2, data, &error);
  g_assert_no_error (error);
  config = quark_registry_config_from_string (quark_registry_get_default (),
                                              "{\"backend\": \"quark\", \"global_quant_config\": "
                                              "{\"weight\": {\"dtype\": \"int8\"}}}", -1, &error);
  if (config == NULL)
    {
      fprintf (stderr, "bench-quantize: %s (set QUARK_BACKEND_PATH to the build's backends)\n", error->message);
      return 1;
    }

  for (guint si = 0; schemes[si] != NULL; si++)
    for (guint threads = 1; threads <= 2 && (only == NULL || g_str_equal (only, schemes[si])); threads++)
      for (guint fresh = 0; fresh < 2; fresh++)
        {
          g_autoptr(QuarkTensorSpec) spec = spec_for (schemes[si]);
          g_autoptr(QuarkModelQuantizer) quantizer = quark_registry_new_quantizer (quark_registry_get_default (),
                                                                                   config, &error);
          g_autofree double *t_call = g_new (double, repeats), *t_copy = g_new (double, repeats);
          g_autofree double *t_copy2 = g_new (double, repeats);
          gsize out_bytes = 0;
          double call, mem, mem2;

          g_assert_no_error (error);
          g_object_set (quantizer, "threads", threads, NULL);
          for (guint r = 0; r <= repeats; r++)
            {
              g_autoptr(QuarkModel) out = NULL;
              gint64 t0, t1, t2;

              if (fresh)
                quark_buffer_trim ();
              t0 = g_get_monotonic_time ();
              memcpy (copy, x, bytes);
              t1 = g_get_monotonic_time ();
              out = quark_model_quantizer_quantize_tensor (quantizer, tensor, spec, &error);
              t2 = g_get_monotonic_time ();
              g_assert_no_error (error);
              out_bytes = 0;
              for (guint k = 0; k < quark_model_get_n_tensors (out); k++)
                {
                  gsize size;
                  quark_tensor_peek_data (quark_model_get_tensor_at (out, k), &size);
                  out_bytes += size;
                }
              if (r > 0)   /* the first round warms up */
                {
                  t_copy[r - 1] = (double) (t1 - t0) / 1e6;
                  t_call[r - 1] = (double) (t2 - t1) / 1e6;
                }
              if (r > 0 && threads == 2)
                t_copy2[r - 1] = parallel_memcpy_seconds (copy, x, bytes);
            }
          qsort (t_call, repeats, sizeof (double), compare_doubles);
          qsort (t_copy, repeats, sizeof (double), compare_doubles);
          call = t_call[repeats / 2];
          mem = t_copy[repeats / 2];
          if (threads == 2)
            qsort (t_copy2, repeats, sizeof (double), compare_doubles);
          mem2 = threads == 2 ? t_copy2[repeats / 2] : mem;
          printf ("{\"scheme\": \"%s\", \"values\": \"%s\", \"input\": \"%s\", \"threads\": %u, \"buffers\": \"%s\", "
                  "\"seconds\": %.6f, \"memcpy_seconds\": %.6f, \"bytes_per_second\": %.4g, "
                  "\"of_memcpy_per_thread\": %.3f, \"memcpy_same_threads_seconds\": %.6f, "
                  "\"of_memcpy_same_threads\": %.3f}\n",
                  schemes[si], values, input, threads, fresh ? "fresh" : "reused", call, mem,
                  (double) (bytes + out_bytes) / call,
                  ((double) (bytes + out_bytes) / call) / ((double) (2 * bytes) / mem) / threads, mem2,
                  ((double) (bytes + out_bytes) / call) / ((double) (2 * bytes) / mem2));
          fflush (stdout);
        }
  quark_buffer_trim ();
  return 0;
}
