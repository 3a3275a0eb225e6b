/* test-backend.c: a small, complete backend for registry tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "test-backend.h"

struct _TestConfig
{
  GObject parent_instance;
  guint bits;
  QuarkQScheme scheme;
  char *note;
};

enum { CPROP_0, CPROP_BITS, CPROP_SCHEME, CPROP_NOTE };

static void test_config_iface_init (QuarkQuantizationConfigInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (TestConfig, test_config, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (QUARK_TYPE_QUANTIZATION_CONFIG, test_config_iface_init))

static void
test_config_finalize (GObject *object)
{
  g_free (TEST_CONFIG (object)->note);
  G_OBJECT_CLASS (test_config_parent_class)->finalize (object);
}

static void
test_config_get_property (GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
  TestConfig *self = TEST_CONFIG (object);
  switch (id)
    {
    case CPROP_BITS: g_value_set_uint (value, self->bits); break;
    case CPROP_SCHEME: g_value_set_enum (value, self->scheme); break;
    case CPROP_NOTE: g_value_set_string (value, self->note); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
    }
}

static void
test_config_set_property (GObject *object, guint id, const GValue *value, GParamSpec *pspec)
{
  TestConfig *self = TEST_CONFIG (object);
  switch (id)
    {
    case CPROP_BITS: self->bits = g_value_get_uint (value); break;
    case CPROP_SCHEME: self->scheme = g_value_get_enum (value); break;
    case CPROP_NOTE: g_free (self->note); self->note = g_value_dup_string (value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
    }
}

static void
test_config_class_init (TestConfigClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GParamFlags flags = G_PARAM_READWRITE | G_PARAM_CONSTRUCT | G_PARAM_STATIC_STRINGS;

  object_class->finalize = test_config_finalize;
  object_class->get_property = test_config_get_property;
  object_class->set_property = test_config_set_property;
  g_object_class_install_property (object_class, CPROP_BITS,
    g_param_spec_uint ("bit-width", "Bit width", "Bits per code", 2, 16, 8, flags));
  g_object_class_install_property (object_class, CPROP_SCHEME,
    g_param_spec_enum ("scheme", "Scheme", "Granularity", QUARK_TYPE_QSCHEME, QUARK_QSCHEME_PER_TENSOR, flags));
  g_object_class_install_property (object_class, CPROP_NOTE,
    g_param_spec_string ("note", "Note", "Free text", NULL, flags));
}

static void
test_config_init (TestConfig *self)
{
}

static gboolean
test_config_lookup_spec (QuarkQuantizationConfig *config, QuarkSpecLevel level, const char *key,
                         QuarkRole role, QuarkTensorSpec **spec)
{
  TestConfig *self = TEST_CONFIG (config);
  QuarkDType dtype = self->bits <= 4 ? QUARK_DTYPE_INT4 : QUARK_DTYPE_I8;

  if (level != QUARK_SPEC_LEVEL_GLOBAL || role != QUARK_ROLE_WEIGHT)
    return FALSE;
  *spec = quark_tensor_spec_new (dtype, self->scheme);
  return TRUE;
}

static void
test_config_iface_init (QuarkQuantizationConfigInterface *iface)
{
  iface->lookup_spec = test_config_lookup_spec;
}

struct _TestQuantizer
{
  GObject parent_instance;
  QuarkQuantizationConfig *config;
};

static void test_quantizer_iface_init (QuarkModelQuantizerInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (TestQuantizer, test_quantizer, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (QUARK_TYPE_MODEL_QUANTIZER, test_quantizer_iface_init))

static void
test_quantizer_dispose (GObject *object)
{
  g_clear_object (&TEST_QUANTIZER (object)->config);
  G_OBJECT_CLASS (test_quantizer_parent_class)->dispose (object);
}

static void
test_quantizer_get_property (GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
  g_value_set_object (value, TEST_QUANTIZER (object)->config);
}

static void
test_quantizer_set_property (GObject *object, guint id, const GValue *value, GParamSpec *pspec)
{
  TEST_QUANTIZER (object)->config = g_value_dup_object (value);
}

static void
test_quantizer_class_init (TestQuantizerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = test_quantizer_dispose;
  object_class->get_property = test_quantizer_get_property;
  object_class->set_property = test_quantizer_set_property;
  g_object_class_override_property (object_class, 1, "config");
}

static void
test_quantizer_init (TestQuantizer *self)
{
}

static QuarkModel *
test_quantizer_quantize_model (QuarkModelQuantizer *quantizer, QuarkModel *model,
                               QuarkCalibration *calibration, GCancellable *cancellable, GError **error)
{
  QuarkModel *out = quark_model_new ();
  guint n = quark_model_get_n_tensors (model);

  for (guint i = 0; i < n; i++)
    {
      quark_model_add_tensor (out, quark_model_get_tensor_at (model, i), NULL);
      quark_model_quantizer_report_progress (quantizer, i + 1, n, NULL);
    }
  return out;
}

static void
test_quantizer_iface_init (QuarkModelQuantizerInterface *iface)
{
  iface->quantize_model = test_quantizer_quantize_model;
}
