/* fuzz-calibration.c: the calibration statistics loader, and every observer
 * over what it loaded (histograms with arbitrary counts and ranges).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "fuzz.h"

#include <math.h>

static QuarkTensorSpec *
spec (QuarkDType dtype, gboolean symmetric, QuarkObserver observer)
{
  return g_object_new (QUARK_TYPE_TENSOR_SPEC, "dtype", dtype, "qscheme", QUARK_QSCHEME_PER_TENSOR,
                       "symmetric", symmetric, "observer", observer, "percentile", 99.9, NULL);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static GPtrArray *specs;
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(QuarkCalibration) calibration = NULL;
  g_autoptr(GError) error = NULL;

  fuzz_set_up ();
  if (specs == NULL)
    {
      const QuarkObserver observers[] = { QUARK_OBSERVER_MIN_MAX, QUARK_OBSERVER_MOVING_AVERAGE_MIN_MAX,
                                          QUARK_OBSERVER_PERCENTILE, QUARK_OBSERVER_HISTOGRAM_PERCENTILE,
                                          QUARK_OBSERVER_MSE, QUARK_OBSERVER_KL };
      specs = g_ptr_array_new_with_free_func (g_object_unref);
      for (guint i = 0; i < G_N_ELEMENTS (observers); i++)
        {
          g_ptr_array_add (specs, spec (QUARK_DTYPE_I8, TRUE, observers[i]));
          g_ptr_array_add (specs, spec (QUARK_DTYPE_U8, FALSE, observers[i]));
          g_ptr_array_add (specs, spec (QUARK_DTYPE_F8_E4M3, TRUE, observers[i]));
        }
    }
  bytes = g_bytes_new (data, size);
  calibration = quark_calibration_load_from_bytes (bytes, "fuzz.json", &error);
  g_assert ((calibration == NULL) != (error == NULL));
  if (calibration == NULL)
    return 0;
  for (QuarkRole role = QUARK_ROLE_INPUT; role <= QUARK_ROLE_OUTPUT; role++)
    {
      g_auto(GStrv) layers = quark_calibration_list_layers (calibration, role);
      for (guint l = 0; layers[l]; l++)
        {
          g_autofree float *mins = NULL, *maxs = NULL;
          gsize n;
          for (guint i = 0; i < specs->len; i++)
            {
              g_autoptr(GError) range_error = NULL;
              float lo, hi;
              if (quark_calibration_compute_range (calibration, layers[l], role, g_ptr_array_index (specs, i),
                                                   &lo, &hi, &range_error))
                g_assert (!isnan (lo) && !isnan (hi));
              else
                g_assert (range_error != NULL);
            }
          quark_calibration_get_channel_min_max (calibration, layers[l], role, NULL, &mins, &maxs, &n);
        }
    }
  return 0;
}
