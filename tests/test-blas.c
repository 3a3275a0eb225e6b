/* test-blas.c: BLAS and LAPACKE are loaded when first needed, and their
 * absence is an error, not a crash
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Each case runs in a fresh process (g_test_trap_subprocess()): loading is
 * once per process.
 */
#include <quark/quark.h>
#include <math.h>
#include <string.h>

/* Whether the process has a file mapped whose name contains @library's
 * name up to ".so" (libopenblas.so.0 is libopenblasp-r0.3.21.so on Debian) */
static gboolean
mapped (const char *library)
{
  g_autofree char *maps = NULL, *stem = g_strdup (library);
  char *so = strstr (stem, ".so");

  if (so)
    *so = '\0';
  g_assert_true (g_file_get_contents ("/proc/self/maps", &maps, NULL, NULL));
  return strstr (maps, stem) != NULL;
}

static guint
n_threads (void)
{
  g_autofree char *status = NULL;
  const char *line;

  g_assert_true (g_file_get_contents ("/proc/self/status", &status, NULL, NULL));
  line = strstr (status, "\nThreads:");
  g_assert_nonnull (line);
  return (guint) g_ascii_strtoull (line + strlen ("\nThreads:"), NULL, 10);
}

static QuarkTensor *
matrix (const char *name, const float *values)
{
  gint64 shape[2] = { 2, 2 };
  QuarkTensor *t = quark_tensor_new_from_floats (name, shape, 2, values, 4, NULL);

  g_assert_nonnull (t);
  return t;
}

/* AWQ's output error of W = I against 0 with H = diag (1, 3): tr (W H Wᵀ) = 4 */
static double
output_error (GError **error)
{
  static const float identity[4] = { 1, 0, 0, 1 }, zero[4] = { 0 }, h[4] = { 1, 0, 0, 3 };
  g_autoptr(QuarkTensor) w = matrix ("w", identity), a = matrix ("a", zero), gram = matrix ("h", h);

  return quark_awq_output_error (w, a, gram, error);
}

static void
round_to_integers (const float *values, gsize n_values, gsize column, gsize first_row, float *rounded,
                   gpointer user_data)
{
  (void) column;
  (void) first_row;
  (void) user_data;
  for (gsize r = 0; r < n_values; r++)
    rounded[r] = nearbyintf (values[r]);
}

/* GPTQ's column update on a 2 × 2 weight */
static gboolean
gptq_update (GError **error)
{
  float w[4] = { 0.4f, 1.6f, -0.3f, 2.2f };
  double h[4] = { 2, 0.5, 0.5, 1 };
  gint64 shape[2] = { 2, 2 };
  g_autoptr(GBytes) bytes = g_bytes_new (h, sizeof h);
  g_autoptr(QuarkTensor) gram = quark_tensor_new ("h", QUARK_DTYPE_F64, shape, 2, bytes, NULL);

  g_assert_nonnull (gram);
  return quark_gptq_update_weight (w, 2, 2, gram, 0.01, 128, FALSE, round_to_integers, NULL, error);
}

static void
test_loaded_when_needed (void)
{
  if (g_test_subprocess ())
    {
      g_auto(GStrv) libraries = g_strsplit (QUARK_DEFAULT_BLAS_LIBRARIES, ":", -1);
      g_autoptr(GError) error = NULL;
      g_autoptr(QuarkQuantizationConfig) config = NULL;
      g_autoptr(QuarkModelQuantizer) quantizer = NULL;
      g_autoptr(QuarkTensorSpec) spec = NULL;
      g_autoptr(QuarkTensor) weight = NULL;
      g_autoptr(QuarkModel) out = NULL;
      g_autofree float *w = g_new (float, 8 * 128);
      gint64 shape[2] = { 8, 128 };

      g_unsetenv ("QUARK_BLAS_LIBRARIES");
      for (guint i = 0; i < 8 * 128; i++)
        w[i] = (float) ((i * 37) % 101) / 50.0f - 1.0f;
      /* a weight quantized by the quark backend (int4 in groups of 128,
       * round-to-nearest) */
      config = quark_registry_config_for_preset (quark_registry_get_default (), "quark", "int4_wo_128", &error);
      g_assert_no_error (error);
      quantizer = quark_registry_new_quantizer (quark_registry_get_default (), config, &error);
      g_assert_no_error (error);
      spec = quark_quantization_config_get_tensor_spec (config, "fc", "Linear", QUARK_ROLE_WEIGHT);
      weight = quark_tensor_new_from_floats ("fc.weight", shape, 2, w, 8 * 128, &error);
      g_assert_no_error (error);
      out = quark_model_quantizer_quantize_tensor (quantizer, weight, spec, &error);
      g_assert_no_error (error);
      g_assert_nonnull (quark_model_get_tensor (out, "fc.weight_scale"));

      /* libquark and its backends are loaded, and no BLAS with them, nor
       * OpenBLAS's threads */
      for (guint i = 0; libraries[i]; i++)
        g_assert_false (mapped (libraries[i]));
      g_assert_false (mapped ("libgfortran"));
      g_assert_cmpuint (n_threads (), ==, 1);

      g_assert_cmpfloat (output_error (&error), ==, 4.0);
      g_assert_no_error (error);
      for (guint i = 0; libraries[i]; i++)
        g_assert_true (mapped (libraries[i]));
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

static void
test_missing_library (void)
{
  if (g_test_subprocess ())
    {
      g_auto(GStrv) libraries = g_strsplit (QUARK_DEFAULT_BLAS_LIBRARIES, ":", -1);
      g_autofree char *names = g_strconcat (libraries[0], ":libquark-test-no-such-blas.so.0", NULL);
      g_autoptr(GError) error = NULL, again = NULL;

      /* a library that loads, then one that does not */
      g_setenv ("QUARK_BLAS_LIBRARIES", names, TRUE);
      g_assert_cmpfloat (output_error (&error), ==, -1);
      g_assert_error (error, QUARK_ERROR, QUARK_ERROR_NOT_FOUND);
      g_assert_nonnull (strstr (error->message, "libquark-test-no-such-blas.so.0"));
      /* the first is closed again: an unusable set does not stay mapped */
      g_assert_false (mapped (libraries[0]));
      /* the same error from the next function, not a crash */
      g_assert_false (gptq_update (&again));
      g_assert_error (again, QUARK_ERROR, QUARK_ERROR_NOT_FOUND);
      g_assert_cmpstr (again->message, ==, error->message);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

static void
test_missing_routine (void)
{
  if (g_test_subprocess ())
    {
      g_autoptr(GError) error = NULL;

      /* a library that loads and has no CBLAS */
      g_setenv ("QUARK_BLAS_LIBRARIES", "libm.so.6", TRUE);
      g_assert_false (gptq_update (&error));
      g_assert_error (error, QUARK_ERROR, QUARK_ERROR_NOT_FOUND);
      g_assert_nonnull (strstr (error->message, "cblas_sgemm"));
      g_assert_nonnull (strstr (error->message, "libm.so.6"));
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

static void
test_chosen_libraries (void)
{
  if (g_test_subprocess ())
    {
      g_autoptr(GError) error = NULL;

      /* the libraries named, in another order, give the same results */
      g_setenv ("QUARK_BLAS_LIBRARIES", "liblapacke.so.3:libopenblas.so.0", TRUE);
      g_assert_true (gptq_update (&error));
      g_assert_no_error (error);
      g_assert_cmpfloat (output_error (&error), ==, 4.0);
      g_assert_no_error (error);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/blas/loaded-when-needed", test_loaded_when_needed);
  g_test_add_func ("/blas/missing-library", test_missing_library);
  g_test_add_func ("/blas/missing-routine", test_missing_routine);
  g_test_add_func ("/blas/chosen-libraries", test_chosen_libraries);
  return g_test_run ();
}
