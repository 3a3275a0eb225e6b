/* backend-skeleton.c: a complete libquark backend module, the starting
 * point of docs/writing-backends.md (which shows this file as it is; the
 * test suite builds it and quantizes, writes and verifies a model with it).
 *
 * The "skeleton" backend quantizes every 2-D floating-point `*.weight` to
 * int8 with one symmetric scale per output channel (amax / 127, rounded to
 * nearest even), written as `W` (I8) and `W_scale` (F32, one per row).
 * Its config has one option, `exclude`: layer-name patterns left in float.
 *
 *   cc -shared -fPIC backend-skeleton.c -o libquark-backend-skeleton.so \
 *      $(pkg-config --cflags --libs quark-1.0)
 *   QUARK_BACKEND_PATH=. quark quantize MODEL -o OUT --config skeleton.json
 *
 * with skeleton.json holding {"backend": "skeleton"}.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <quark/quark.h>
#include <math.h>
#include <string.h>

/* ---- the config: its GObject properties are its JSON members ---------- */

#define SKELETON_TYPE_CONFIG (skeleton_config_get_type ())
G_DECLARE_FINAL_TYPE (SkeletonConfig, skeleton_config, SKELETON, CONFIG, GObject)

struct _SkeletonConfig
{
  GObject parent_instance;
  char **exclude;
};

static void skeleton_config_iface_init (QuarkQuantizationConfigInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (SkeletonConfig, skeleton_config, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (QUARK_TYPE_QUANTIZATION_CONFIG, skeleton_config_iface_init))

static void
skeleton_config_get_property (GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
  g_value_set_boxed (value, SKELETON_CONFIG (object)->exclude);
}

static void
skeleton_config_set_property (GObject *object, guint id, const GValue *value, GParamSpec *pspec)
{
  SkeletonConfig *self = SKELETON_CONFIG (object);
  g_strfreev (self->exclude);
  self->exclude = g_value_dup_boxed (value);
}

static void
skeleton_config_finalize (GObject *object)
{
  g_strfreev (SKELETON_CONFIG (object)->exclude);
  G_OBJECT_CLASS (skeleton_config_parent_class)->finalize (object);
}

static void
skeleton_config_class_init (SkeletonConfigClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->get_property = skeleton_config_get_property;
  object_class->set_property = skeleton_config_set_property;
  object_class->finalize = skeleton_config_finalize;
  g_object_class_install_property (object_class, 1,
    g_param_spec_boxed ("exclude", "Exclude", "Layer-name patterns left in float", G_TYPE_STRV,
                        G_PARAM_READWRITE | G_PARAM_CONSTRUCT | G_PARAM_STATIC_STRINGS));
}

static void
skeleton_config_init (SkeletonConfig *self)
{
}

/* What generic code (quark presets, calibration) asks: the spec of a
 * layer's tensor. Every weight not excluded: int8 per channel. */
static gboolean
skeleton_config_lookup_spec (QuarkQuantizationConfig *config, QuarkSpecLevel level, const char *key,
                             QuarkRole role, QuarkTensorSpec **spec)
{
  if (level != QUARK_SPEC_LEVEL_GLOBAL || role != QUARK_ROLE_WEIGHT)
    return FALSE;
  *spec = quark_tensor_spec_new (QUARK_DTYPE_I8, QUARK_QSCHEME_PER_CHANNEL);
  return TRUE;
}

static void
skeleton_config_iface_init (QuarkQuantizationConfigInterface *iface)
{
  iface->lookup_spec = skeleton_config_lookup_spec;
}

static gboolean
skeleton_config_excludes (SkeletonConfig *self, const char *layer)
{
  return self->exclude && quark_pattern_match_any ((const char * const *) self->exclude, layer);
}

/* ---- the quantizer ------------------------------------------------------- */

#define SKELETON_TYPE_QUANTIZER (skeleton_quantizer_get_type ())
G_DECLARE_FINAL_TYPE (SkeletonQuantizer, skeleton_quantizer, SKELETON, QUANTIZER, GObject)

struct _SkeletonQuantizer
{
  GObject parent_instance;
  QuarkQuantizationConfig *config;
};

static void skeleton_quantizer_iface_init (QuarkModelQuantizerInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (SkeletonQuantizer, skeleton_quantizer, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (QUARK_TYPE_MODEL_QUANTIZER, skeleton_quantizer_iface_init))

static void
skeleton_quantizer_get_property (GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
  g_value_set_object (value, SKELETON_QUANTIZER (object)->config);
}

static void
skeleton_quantizer_set_property (GObject *object, guint id, const GValue *value, GParamSpec *pspec)
{
  SKELETON_QUANTIZER (object)->config = g_value_dup_object (value);
}

static void
skeleton_quantizer_dispose (GObject *object)
{
  g_clear_object (&SKELETON_QUANTIZER (object)->config);
  G_OBJECT_CLASS (skeleton_quantizer_parent_class)->dispose (object);
}

static void
skeleton_quantizer_class_init (SkeletonQuantizerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->get_property = skeleton_quantizer_get_property;
  object_class->set_property = skeleton_quantizer_set_property;
  object_class->dispose = skeleton_quantizer_dispose;
  g_object_class_override_property (object_class, 1, "config");
}

static void
skeleton_quantizer_init (SkeletonQuantizer *self)
{
}

static QuarkTensor *
new_tensor (const char *name, QuarkDType dtype, const gint64 *shape, guint n_dims, gpointer data, gsize size)
{
  g_autoptr(GBytes) bytes = g_bytes_new_take (data, size);
  return quark_tensor_new (name, dtype, shape, n_dims, bytes, NULL);
}

/* One weight to W (int8 codes) and W_scale (one float32 per row). */
static gboolean
quantize_weight (QuarkTensor *weight, QuarkModel *out, GError **error)
{
  const char *name = quark_tensor_get_name (weight);
  gint64 rows = quark_tensor_get_dim (weight, 0), cols = quark_tensor_get_dim (weight, 1);
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  g_autoptr(QuarkTensor) codes = NULL, scales = NULL;
  g_autofree float *x = NULL;
  gint8 *q;
  float *s;
  gsize n;

  x = quark_tensor_to_floats (weight, &n, error);
  if (x == NULL)
    return FALSE;
  q = g_malloc (MAX (n, 1));
  s = g_new (float, MAX (rows, 1));
  for (gint64 r = 0; r < rows; r++)
    {
      float amax = 0.0f;
      for (gint64 c = 0; c < cols; c++)
        amax = fmaxf (amax, fabsf (x[r * cols + c]));
      if (!isfinite (amax))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR, "tensor %s: holds NaN or infinity", name);
          g_free (q);
          g_free (s);
          return FALSE;
        }
      s[r] = amax > 0.0f ? amax / 127.0f : 1.0f;
      for (gint64 c = 0; c < cols; c++)
        q[r * cols + c] = (gint8) nearbyintf (fminf (fmaxf (x[r * cols + c] / s[r], -127.0f), 127.0f));
    }
  codes = new_tensor (name, QUARK_DTYPE_I8, (gint64[]) { rows, cols }, 2, q, n);
  scales = new_tensor (scale_name, QUARK_DTYPE_F32, (gint64[]) { rows }, 1, s, (gsize) rows * sizeof (float));
  return quark_model_add_tensor (out, codes, error) && quark_model_add_tensor (out, scales, error);
}

static QuarkModel *
skeleton_quantizer_quantize_model (QuarkModelQuantizer *quantizer, QuarkModel *model, QuarkCalibration *calibration,
                                   GCancellable *cancellable, GError **error)
{
  SkeletonConfig *config = SKELETON_CONFIG (SKELETON_QUANTIZER (quantizer)->config);
  g_autoptr(QuarkModel) out = quark_model_new ();
  guint n = quark_model_get_n_tensors (model);

  for (guint i = 0; i < n; i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (model, i);
      const char *name = quark_tensor_get_name (t);
      g_autofree char *layer = g_str_has_suffix (name, ".weight")
                               ? g_strndup (name, strlen (name) - strlen (".weight")) : NULL;
      gboolean quantize = layer && quark_tensor_get_n_dims (t) == 2 &&
                          quark_dtype_is_quantizable (quark_tensor_get_dtype (t)) &&
                          !skeleton_config_excludes (config, layer);

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        return NULL;
      if (quantize ? !quantize_weight (t, out, error) : !quark_model_add_tensor (out, t, error))
        return NULL;
      quark_model_quantizer_report_progress (quantizer, i + 1, n, name);
    }
  /* no metadata set: libquark writes the input's config.json with
   * {"quantization_config": {"backend": "skeleton", ...}} */
  return g_steal_pointer (&out);
}

/* What `quark verify` reads back: W * W_scale for every W with a scale. */
static QuarkModel *
skeleton_quantizer_dequantize_model (QuarkModelQuantizer *quantizer, QuarkModel *quantized, GError **error)
{
  g_autoptr(QuarkModel) out = quark_model_new ();

  for (guint i = 0; i < quark_model_get_n_tensors (quantized); i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (quantized, i);
      const char *name = quark_tensor_get_name (t);
      g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
      QuarkTensor *scale = quark_model_get_tensor (quantized, scale_name);
      g_autoptr(QuarkTensor) x = NULL;
      const gint8 *q;
      const float *s;
      float *v;
      gint64 rows, cols;

      if (g_str_has_suffix (name, ".weight_scale"))
        continue;
      if (scale == NULL || quark_tensor_get_dtype (t) != QUARK_DTYPE_I8)
        {
          if (!quark_model_add_tensor (out, t, error))
            return NULL;
          continue;
        }
      rows = quark_tensor_get_dim (t, 0);
      cols = quark_tensor_get_dim (t, 1);
      q = quark_tensor_peek_data (t, NULL);
      s = quark_tensor_peek_data (scale, NULL);
      v = g_new (float, MAX (rows * cols, 1));
      for (gint64 k = 0; k < rows * cols; k++)
        v[k] = (float) q[k] * s[k / cols];
      x = new_tensor (name, QUARK_DTYPE_F32, (gint64[]) { rows, cols }, 2, v, (gsize) (rows * cols) * sizeof (float));
      if (!quark_model_add_tensor (out, x, error))
        return NULL;
    }
  return g_steal_pointer (&out);
}

static void
skeleton_quantizer_iface_init (QuarkModelQuantizerInterface *iface)
{
  iface->quantize_model = skeleton_quantizer_quantize_model;
  iface->dequantize_model = skeleton_quantizer_dequantize_model;
}

/* ---- the module's entry point, named after its file --------------------- */

QUARK_BACKEND_EXPORT gboolean quark_backend_skeleton_register (QuarkBackendModule *module, GError **error);

gboolean
quark_backend_skeleton_register (QuarkBackendModule *module, GError **error)
{
  g_autoptr(QuarkBackend) backend = NULL;

  if (!quark_backend_module_check_abi (module, QUARK_BACKEND_ABI_VERSION, error))
    return FALSE;
  backend = quark_backend_new ("skeleton", SKELETON_TYPE_CONFIG, SKELETON_TYPE_QUANTIZER);
  quark_backend_set_description (backend, "Skeleton: int8 per-channel weights (the example of writing-backends.md)");
  quark_backend_set_version (backend, "1.0");
  quark_backend_add_supported_dtype (backend, QUARK_DTYPE_I8);
  return quark_backend_module_add_backend (module, backend, error);
}
