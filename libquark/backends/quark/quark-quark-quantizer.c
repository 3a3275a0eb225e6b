/* quark-quark-quantizer.c: the quark backend's quantizer
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * AMD Quark semantics (numerics reference, section 2): statistics are
 * widened to include 0; symmetric integer scales divide the absolute maximum
 * by half the code span (127.5 for int8); asymmetric scales divide the range
 * by the code span and round the zero point half to even; scales are floored
 * at the float32 epsilon; codes are clamp (rne (x * fl (1 / s) + z)).
 */
#include "quark-quark-quantizer.h"

#include <math.h>
#include <string.h>

#define QUARK_EPS 1.1920928955078125e-07f   /* 2^-23 */

struct _QuarkQuarkQuantizer
{
  GObject parent_instance;
  QuarkQuantizationConfig *config;
};

enum {
  PROP_0,
  PROP_CONFIG,
};

static void quantizer_iface_init (QuarkModelQuantizerInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (QuarkQuarkQuantizer, quark_quark_quantizer, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (QUARK_TYPE_MODEL_QUANTIZER, quantizer_iface_init))

static void
quark_quark_quantizer_dispose (GObject *object)
{
  g_clear_object (&QUARK_QUARK_QUANTIZER (object)->config);
  G_OBJECT_CLASS (quark_quark_quantizer_parent_class)->dispose (object);
}

static void
quark_quark_quantizer_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  if (prop_id == PROP_CONFIG)
    g_value_set_object (value, QUARK_QUARK_QUANTIZER (object)->config);
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
quark_quark_quantizer_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  if (prop_id == PROP_CONFIG)
    QUARK_QUARK_QUANTIZER (object)->config = g_value_dup_object (value);
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
quark_quark_quantizer_class_init (QuarkQuarkQuantizerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = quark_quark_quantizer_dispose;
  object_class->get_property = quark_quark_quantizer_get_property;
  object_class->set_property = quark_quark_quantizer_set_property;
  g_object_class_override_property (object_class, PROP_CONFIG, "config");
}

static void
quark_quark_quantizer_init (QuarkQuarkQuantizer *self)
{
}

void
quark_quark_int_params (float                 min_val,
                        float                 max_val,
                        gboolean              symmetric,
                        int32_t               qmin,
                        int32_t               qmax,
                        QuarkKernelIntParams *p)
{
  float scale, zero_point = 0.0f;

  p->qmin = qmin;
  p->qmax = qmax;

  if (min_val > max_val)
    {
      /* nothing observed (an empty tensor): unit scale */
      scale = 1.0f;
    }
  else
    {
      float lo = fminf (min_val, 0.0f);
      float hi = fmaxf (max_val, 0.0f);

      if (symmetric)
        {
          float amax = fmaxf (-lo, hi);
          float half_span = (float) (qmax - qmin) / 2.0f;
          scale = fmaxf (amax / half_span, QUARK_EPS);
        }
      else
        {
          float span = hi - lo;
          float z;
          scale = fmaxf (span / (float) (qmax - qmin), QUARK_EPS);
          z = (float) qmin - rintf (lo / scale);
          zero_point = fminf (fmaxf (z, (float) qmin), (float) qmax);
        }
    }

  p->scale = scale;
  p->inv_scale = 1.0f / scale;
  p->zero_point = zero_point;
}

/* Maps the trailing ".weight" tensors of quantizable layers to a layer
 * type by rank, as PyTorch's modules shape their weights. */
static const char *
layer_type_for (QuarkTensor *tensor)
{
  switch (quark_tensor_get_n_dims (tensor))
    {
    case 2: return "Linear";
    case 3: return "Conv1d";
    case 4: return "Conv2d";
    case 5: return "Conv3d";
    default: return NULL;
    }
}

static gboolean
add_new_tensor (QuarkModel     *out,
                const char     *name,
                QuarkDType      dtype,
                const gint64   *shape,
                guint           n_dims,
                gpointer        data,
                gsize           size,
                GError        **error)
{
  g_autoptr(GBytes) bytes = g_bytes_new_take (data, size);
  g_autoptr(QuarkTensor) tensor = quark_tensor_new (name, dtype, shape, n_dims, bytes, error);

  return tensor != NULL && quark_model_add_tensor (out, tensor, error);
}

static void
store_zero_point (QuarkDType dtype, gpointer buffer, gsize i, int32_t z)
{
  switch (quark_dtype_get_element_size (dtype))
    {
    case 1: ((guint8 *) buffer)[i] = (guint8) z; break;
    case 2: ((guint16 *) buffer)[i] = (guint16) z; break;
    default: ((gint32 *) buffer)[i] = z; break;
    }
}

/* Quantizes one weight tensor with an integer spec; adds NAME, NAME_scale
 * and NAME_zero_point to @out. */
static gboolean
quantize_weight (QuarkTensor      *tensor,
                 QuarkTensorSpec  *spec,
                 QuarkModel       *out,
                 GError          **error)
{
  const char *name = quark_tensor_get_name (tensor);
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);
  gsize esize = quark_dtype_get_element_size (dtype);
  g_autofree float *x = NULL;
  g_autofree char *scale_name = NULL, *zp_name = NULL;
  gint64 min64, max64;
  gsize n;
  guint n_dims;
  const gint64 *shape = quark_tensor_get_shape (tensor, &n_dims);
  gsize outer = 1, channels = 1, inner = 1;
  gboolean per_channel = quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_CHANNEL;
  g_autofree float *mins = NULL, *maxs = NULL;
  g_autofree float *scales = NULL;
  g_autofree guint8 *codes = NULL;
  g_autofree guint8 *zps = NULL;
  gint64 channel_shape[1];

  x = quark_tensor_to_floats (tensor, &n, error);
  if (x == NULL)
    return FALSE;

  quark_dtype_get_integer_range (dtype, quark_tensor_spec_get_narrow_range (spec), &min64, &max64);

  if (per_channel)
    {
      int axis = quark_tensor_spec_get_ch_axis (spec);
      if (axis < 0)
        axis += (int) n_dims;
      if (axis < 0 || axis >= (int) n_dims)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "tensor %s: channel axis %d is out of range for %u dimensions",
                       name, quark_tensor_spec_get_ch_axis (spec), n_dims);
          return FALSE;
        }
      for (int i = 0; i < axis; i++)
        outer *= shape[i];
      channels = shape[axis];
      for (guint i = axis + 1; i < n_dims; i++)
        inner *= shape[i];
    }
  else
    inner = n;

  mins = g_new (float, MAX (channels, 1));
  maxs = g_new (float, MAX (channels, 1));
  if (!quark_kernel_channel_min_max_f32 (x, outer, channels, inner, mins, maxs))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR,
                   "tensor %s: holds NaN or infinity, which cannot be quantized", name);
      return FALSE;
    }

  scales = g_new (float, MAX (channels, 1));
  zps = g_malloc0 (MAX (channels, 1) * esize);
  codes = g_malloc (MAX (n, 1) * esize);
  for (gsize c = 0; c < channels; c++)
    {
      QuarkKernelIntParams p;

      quark_quark_int_params (mins[c], maxs[c], quark_tensor_spec_get_symmetric (spec),
                              (int32_t) min64, (int32_t) max64, &p);
      scales[c] = p.scale;
      store_zero_point (dtype, zps, c, (int32_t) p.zero_point);
      for (gsize o = 0; o < outer; o++)
        {
          gsize offset = (o * channels + c) * inner;
          quark_kernel_quantize_int_f32 (x + offset, inner, &p, dtype, codes + offset * esize);
        }
    }

  channel_shape[0] = (gint64) channels;
  scale_name = g_strconcat (name, "_scale", NULL);
  zp_name = g_strconcat (name, "_zero_point", NULL);
  return add_new_tensor (out, name, dtype, shape, n_dims, g_steal_pointer (&codes), n * esize, error) &&
         add_new_tensor (out, scale_name, QUARK_DTYPE_F32, channel_shape, per_channel ? 1 : 0,
                         g_steal_pointer (&scales), channels * sizeof (float), error) &&
         add_new_tensor (out, zp_name, dtype, channel_shape, per_channel ? 1 : 0,
                         g_steal_pointer (&zps), channels * esize, error);
}

/* Static activation parameters from calibration statistics. */
static gboolean
add_activation_params (QuarkTensorSpec   *spec,
                       const char        *layer,
                       QuarkRole          role,
                       QuarkCalibration  *calibration,
                       QuarkModel        *out,
                       GError           **error)
{
  const char *prefix = role == QUARK_ROLE_INPUT ? "input" : "output";
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);
  gsize esize = quark_dtype_get_element_size (dtype);
  g_autofree char *scale_name = NULL, *zp_name = NULL;
  g_autofree float *scale = NULL;
  g_autofree guint8 *zp = NULL;
  QuarkKernelIntParams p;
  gint64 min64, max64;
  float lo, hi;

  if (quark_tensor_spec_get_is_dynamic (spec))
    return TRUE;   /* computed at run time; nothing stored */

  if (calibration == NULL || !quark_calibration_get_min_max (calibration, layer, role, &lo, &hi))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_NEEDS_CALIBRATION,
                   "layer %s: the %s spec is static and needs calibration statistics, "
                   "but none were observed for it", layer, prefix);
      return FALSE;
    }

  quark_dtype_get_integer_range (dtype, quark_tensor_spec_get_narrow_range (spec), &min64, &max64);
  quark_quark_int_params (lo, hi, quark_tensor_spec_get_symmetric (spec),
                          (int32_t) min64, (int32_t) max64, &p);
  scale = g_new (float, 1);
  *scale = p.scale;
  zp = g_malloc0 (esize);
  store_zero_point (dtype, zp, 0, (int32_t) p.zero_point);
  scale_name = g_strdup_printf ("%s.%s_scale", layer, prefix);
  zp_name = g_strdup_printf ("%s.%s_zero_point", layer, prefix);
  return add_new_tensor (out, scale_name, QUARK_DTYPE_F32, NULL, 0, g_steal_pointer (&scale),
                         sizeof (float), error) &&
         add_new_tensor (out, zp_name, dtype, NULL, 0, g_steal_pointer (&zp), esize, error);
}

static char *
weight_layer_name (QuarkTensor *tensor)
{
  const char *name = quark_tensor_get_name (tensor);

  if (!g_str_has_suffix (name, ".weight") || layer_type_for (tensor) == NULL)
    return NULL;
  return g_strndup (name, strlen (name) - strlen (".weight"));
}

static QuarkModel *
quark_quark_quantizer_quantize_model (QuarkModelQuantizer  *quantizer,
                                      QuarkModel           *model,
                                      QuarkCalibration     *calibration,
                                      GCancellable         *cancellable,
                                      GError              **error)
{
  QuarkQuarkQuantizer *self = QUARK_QUARK_QUANTIZER (quantizer);
  g_autoptr(QuarkModel) out = quark_model_new ();
  guint n_tensors = quark_model_get_n_tensors (model);
  guint64 total = 0, done = 0;
  JsonNode *metadata;
  JsonObject *meta_object;
  g_autoptr(JsonNode) meta = NULL;

  /* progress counts the elements of every tensor */
  for (guint i = 0; i < n_tensors; i++)
    total += quark_tensor_get_n_elements (quark_model_get_tensor_at (model, i));

  for (guint i = 0; i < n_tensors; i++)
    {
      QuarkTensor *tensor = quark_model_get_tensor_at (model, i);
      g_autofree char *layer = weight_layer_name (tensor);
      g_autoptr(QuarkTensorSpec) spec = NULL;

      if (g_cancellable_is_cancelled (cancellable))
        {
          g_set_error_literal (error, QUARK_ERROR, QUARK_ERROR_CANCELLED, "Operation was cancelled");
          return NULL;
        }

      if (layer != NULL)
        spec = quark_quantization_config_get_tensor_spec (self->config, layer,
                                                           layer_type_for (tensor), QUARK_ROLE_WEIGHT);
      if (spec != NULL)
        {
          if (!quantize_weight (tensor, spec, out, error))
            return NULL;
          for (QuarkRole role = QUARK_ROLE_INPUT; role <= QUARK_ROLE_OUTPUT; role++)
            {
              g_autoptr(QuarkTensorSpec) act = NULL;
              act = quark_quantization_config_get_tensor_spec (self->config, layer,
                                                                layer_type_for (tensor), role);
              if (act && !add_activation_params (act, layer, role, calibration, out, error))
                return NULL;
            }
        }
      else if (quark_model_get_tensor (out, quark_tensor_get_name (tensor)) == NULL &&
               !quark_model_add_tensor (out, tensor, error))
        return NULL;

      done += quark_tensor_get_n_elements (tensor);
      quark_model_quantizer_report_progress (quantizer, done, total, quark_tensor_get_name (tensor));
    }

  /* metadata: the model's, with the config that produced the result */
  metadata = quark_model_get_metadata (model);
  if (metadata && JSON_NODE_HOLDS_OBJECT (metadata))
    meta = json_node_copy (metadata);
  else
    meta = json_node_init_object (json_node_alloc (), json_object_new ());
  meta_object = json_node_get_object (meta);
  json_object_set_member (meta_object, "quantization_config",
                          quark_quantization_config_to_json (self->config));
  quark_model_set_metadata (out, meta);

  return g_steal_pointer (&out);
}

static void
quantizer_iface_init (QuarkModelQuantizerInterface *iface)
{
  iface->quantize_model = quark_quark_quantizer_quantize_model;
}
