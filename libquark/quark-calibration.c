/* quark-calibration.c: activation statistics
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-calibration.h"
#include "quark-enum-types.h"
#include "quark-error.h"
#include "kernels/quark-kernels.h"

#include <math.h>

/**
 * QuarkCalibration:
 *
 * Running statistics of activations, fed batch after batch by the runtime
 * that executes the model, and read by quantizers to fix static activation
 * scales.
 *
 * libquark does not run models: a PyTorch forward hook, or an inference
 * engine in C, passes each layer's input or output to
 * [method@Quark.Calibration.observe]. Only running statistics are kept, so
 * memory does not grow with the number of batches. This version keeps the
 * running minimum and maximum (min of mins, max of maxes) per layer and role.
 *
 * All methods may be called from several threads at once.
 */

typedef struct {
  float min;
  float max;
  guint64 n_batches;
} Stats;

struct _QuarkCalibration
{
  GObject parent_instance;

  GMutex lock;
  GHashTable *stats;   /* "role/layer" -> Stats */
};

G_DEFINE_FINAL_TYPE (QuarkCalibration, quark_calibration, G_TYPE_OBJECT)

static void
quark_calibration_finalize (GObject *object)
{
  QuarkCalibration *self = QUARK_CALIBRATION (object);

  g_hash_table_unref (self->stats);
  g_mutex_clear (&self->lock);

  G_OBJECT_CLASS (quark_calibration_parent_class)->finalize (object);
}

static void
quark_calibration_class_init (QuarkCalibrationClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = quark_calibration_finalize;
}

static void
quark_calibration_init (QuarkCalibration *self)
{
  g_mutex_init (&self->lock);
  self->stats = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
}

static char *
stats_key (const char *layer_name, QuarkRole role)
{
  return g_strdup_printf ("%d/%s", (int) role, layer_name);
}

/**
 * quark_calibration_new:
 *
 * Makes an empty set of statistics.
 *
 * Returns: (transfer full): a new calibration
 */
QuarkCalibration *
quark_calibration_new (void)
{
  return g_object_new (QUARK_TYPE_CALIBRATION, NULL);
}

/**
 * quark_calibration_observe:
 * @self: a #QuarkCalibration
 * @layer_name: the layer's full name
 * @role: %QUARK_ROLE_INPUT or %QUARK_ROLE_OUTPUT
 * @activation: one batch of the activation (a float tensor)
 * @error: return location for a #GError
 *
 * Adds one batch to the statistics of a layer's input or output.
 *
 * Returns: %TRUE on success; %FALSE with %QUARK_ERROR_INVALID_TENSOR if the
 *   batch holds NaN or infinity, or %QUARK_ERROR_UNSUPPORTED_DTYPE if it does
 *   not convert to float
 */
gboolean
quark_calibration_observe (QuarkCalibration  *self,
                           const char        *layer_name,
                           QuarkRole          role,
                           QuarkTensor       *activation,
                           GError           **error)
{
  g_autofree float *values = NULL;
  g_autofree char *key = NULL;
  gsize n;
  float lo, hi;
  Stats *stats;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), FALSE);
  g_return_val_if_fail (layer_name != NULL, FALSE);
  g_return_val_if_fail (QUARK_IS_TENSOR (activation), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  values = quark_tensor_to_floats (activation, &n, error);
  if (values == NULL)
    return FALSE;
  if (!quark_kernel_min_max_f32 (values, n, &lo, &hi))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR,
                   "tensor %s: activation of layer %s holds NaN or infinity",
                   quark_tensor_get_name (activation), layer_name);
      return FALSE;
    }

  key = stats_key (layer_name, role);
  g_mutex_lock (&self->lock);
  stats = g_hash_table_lookup (self->stats, key);
  if (stats == NULL)
    {
      stats = g_new0 (Stats, 1);
      stats->min = INFINITY;
      stats->max = -INFINITY;
      g_hash_table_insert (self->stats, g_steal_pointer (&key), stats);
    }
  stats->min = MIN (stats->min, lo);
  stats->max = MAX (stats->max, hi);
  stats->n_batches++;
  g_mutex_unlock (&self->lock);
  return TRUE;
}

/**
 * quark_calibration_get_min_max:
 * @self: a #QuarkCalibration
 * @layer_name: the layer's full name
 * @role: the role
 * @min: (out) (optional): the running minimum
 * @max: (out) (optional): the running maximum
 *
 * Reads the running minimum and maximum of a layer's input or output.
 *
 * Returns: %TRUE if at least one batch was observed for @layer_name and @role
 */
gboolean
quark_calibration_get_min_max (QuarkCalibration *self,
                               const char       *layer_name,
                               QuarkRole         role,
                               float            *min,
                               float            *max)
{
  g_autofree char *key = NULL;
  Stats *stats;
  gboolean found;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), FALSE);
  g_return_val_if_fail (layer_name != NULL, FALSE);

  key = stats_key (layer_name, role);
  g_mutex_lock (&self->lock);
  stats = g_hash_table_lookup (self->stats, key);
  found = stats != NULL;
  if (min)
    *min = found ? stats->min : INFINITY;
  if (max)
    *max = found ? stats->max : -INFINITY;
  g_mutex_unlock (&self->lock);
  return found;
}

/**
 * quark_calibration_get_n_batches:
 * @self: a #QuarkCalibration
 * @layer_name: the layer's full name
 * @role: the role
 *
 * Counts the batches observed for a layer's input or output.
 *
 * Returns: the number of batches
 */
guint64
quark_calibration_get_n_batches (QuarkCalibration *self,
                                 const char       *layer_name,
                                 QuarkRole         role)
{
  g_autofree char *key = NULL;
  Stats *stats;
  guint64 n;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (self), 0);
  g_return_val_if_fail (layer_name != NULL, 0);

  key = stats_key (layer_name, role);
  g_mutex_lock (&self->lock);
  stats = g_hash_table_lookup (self->stats, key);
  n = stats ? stats->n_batches : 0;
  g_mutex_unlock (&self->lock);
  return n;
}
