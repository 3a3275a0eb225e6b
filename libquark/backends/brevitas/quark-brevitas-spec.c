/* quark-brevitas-spec.c: Brevitas quantizer presets and their JSON form
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "quark-brevitas-spec.h"

#include <math.h>
#include <string.h>

#define SPEC_KEY "quark-brevitas-spec"
#define ACT QUARK_ROLE_INPUT   /* activation presets serve inputs and outputs */

/* Brevitas's presets (numerics.md B2-B10) with their defaults. */
typedef struct {
  const char *name;
  QuarkRole role;
  BvKind kind;
  int bits;
  gboolean is_signed, narrow, symmetric;
  QuarkQScheme qscheme;
  int group_size;
  gboolean pof2;
  QuarkPow2Rounding rounding;
  gboolean mse, dynamic;
  int ebits, mbits;
  BvFpFamily family;
  double percentile;
  BvRestrict restrict_type;   /* only UNSCALED is read; the others follow pof2 */
} BvPreset;

#define T QUARK_QSCHEME_PER_TENSOR
#define C QUARK_QSCHEME_PER_CHANNEL
#define G QUARK_QSCHEME_PER_GROUP
#define W QUARK_ROLE_WEIGHT
#define B QUARK_ROLE_BIAS
#define CEIL QUARK_POW2_CEIL
#define FLOOR QUARK_POW2_FLOOR

static const BvPreset presets[] = {
  /* weights: statistics of the tensor, recomputed */
  { "Int8WeightPerTensorFloat", W, BV_INT, 8, TRUE, TRUE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Int8WeightPerChannelFloat", W, BV_INT, 8, TRUE, TRUE, TRUE, C, 0, FALSE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Int8WeightPerTensorFloatMSE", W, BV_INT, 8, TRUE, TRUE, TRUE, T, 0, FALSE, CEIL, TRUE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Int8WeightPerChannelFloatMSE", W, BV_INT, 8, TRUE, TRUE, TRUE, C, 0, FALSE, CEIL, TRUE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "ShiftedUint8WeightPerTensorFloat", W, BV_INT, 8, FALSE, FALSE, FALSE, T, 0, FALSE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "ShiftedUint8WeightPerChannelFloat", W, BV_INT, 8, FALSE, FALSE, FALSE, C, 0, FALSE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Int8WeightPerTensorFixedPoint", W, BV_INT, 8, TRUE, TRUE, TRUE, T, 0, TRUE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Int8WeightPerChannelFixedPoint", W, BV_INT, 8, TRUE, TRUE, TRUE, C, 0, TRUE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "IntWeightSymmetricGroupQuant", W, BV_INT, 4, TRUE, TRUE, TRUE, G, 128, FALSE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "ShiftedUint8WeightGroupQuantFloat", W, BV_INT, 8, FALSE, FALSE, FALSE, G, 128, FALSE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Fp8e4m3OCPWeightPerTensorFloat", W, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 4, 3, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Fp8e4m3OCPWeightPerChannelFloat", W, BV_FLOAT, 8, TRUE, FALSE, TRUE, C, 0, FALSE, CEIL, FALSE, FALSE, 4, 3, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Fp8e5m2OCPWeightPerTensorFloat", W, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 5, 2, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Fp8e5m2OCPWeightPerChannelFloat", W, BV_FLOAT, 8, TRUE, FALSE, TRUE, C, 0, FALSE, CEIL, FALSE, FALSE, 5, 2, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Fp8e4m3FNUZWeightPerTensorFloat", W, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 4, 3, BV_FP_FNUZ, 100, BV_RESTRICT_FP },
  { "Fp8e4m3FNUZWeightPerChannelFloat", W, BV_FLOAT, 8, TRUE, FALSE, TRUE, C, 0, FALSE, CEIL, FALSE, FALSE, 4, 3, BV_FP_FNUZ, 100, BV_RESTRICT_FP },
  { "Fp8e5m2FNUZWeightPerTensorFloat", W, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 5, 2, BV_FP_FNUZ, 100, BV_RESTRICT_FP },
  { "Fp8e5m2FNUZWeightPerChannelFloat", W, BV_FLOAT, 8, TRUE, FALSE, TRUE, C, 0, FALSE, CEIL, FALSE, FALSE, 5, 2, BV_FP_FNUZ, 100, BV_RESTRICT_FP },
  { "MXFloat8e4m3Weight", W, BV_MX_FLOAT, 8, TRUE, FALSE, TRUE, G, 32, TRUE, FLOOR, FALSE, FALSE, 4, 3, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "MXFloat4e2m1Weight", W, BV_MX_FLOAT, 4, TRUE, FALSE, TRUE, G, 32, TRUE, FLOOR, FALSE, FALSE, 2, 1, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "MXInt8Weight", W, BV_MX_INT, 8, TRUE, FALSE, TRUE, G, 32, TRUE, FLOOR, FALSE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  /* MSE, shifted MX and unscaled variants */
  { "ShiftedUint8WeightPerTensorFloatMSE", W, BV_INT, 8, FALSE, FALSE, FALSE, T, 0, FALSE, CEIL, TRUE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "ShiftedUint8WeightPerChannelFloatMSE", W, BV_INT, 8, FALSE, FALSE, FALSE, C, 0, FALSE, CEIL, TRUE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Int8WeightPerTensorFixedPointMSE", W, BV_INT, 8, TRUE, TRUE, TRUE, T, 0, TRUE, CEIL, TRUE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Int8WeightPerChannelFixedPointMSE", W, BV_INT, 8, TRUE, TRUE, TRUE, C, 0, TRUE, CEIL, TRUE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Fp8e4m3OCPWeightPerTensorFloatMSE", W, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, TRUE, FALSE, 4, 3, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Fp8e4m3OCPWeightPerChannelFloatMSE", W, BV_FLOAT, 8, TRUE, FALSE, TRUE, C, 0, FALSE, CEIL, TRUE, FALSE, 4, 3, BV_FP_OCP, 100, BV_RESTRICT_FP },
  /* Brevitas's MXFloat8e4m3WeightMSE lists MXFloat8e4m3Weight before the
   * MSE mixin, so the weight's abs-max statistics win: no search */
  { "MXFloat8e4m3WeightMSE", W, BV_MX_FLOAT, 8, TRUE, FALSE, TRUE, G, 32, TRUE, FLOOR, FALSE, FALSE, 4, 3, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "MXInt8WeightMSE", W, BV_MX_INT, 8, TRUE, FALSE, TRUE, G, 32, TRUE, FLOOR, TRUE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "ShiftedMXUInt8Weight", W, BV_MX_INT, 8, FALSE, FALSE, FALSE, G, 32, TRUE, FLOOR, FALSE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Fp8e4m3OCPWeight", W, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 4, 3, BV_FP_OCP, 100, BV_RESTRICT_UNSCALED },
  { "Fp8e5m2OCPWeight", W, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 5, 2, BV_FP_OCP, 100, BV_RESTRICT_UNSCALED },
  { "Fp8e4m3Weight", W, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 4, 3, BV_FP_GENERIC, 100, BV_RESTRICT_UNSCALED },
  { "Fp8e5m2Weight", W, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 5, 2, BV_FP_GENERIC, 100, BV_RESTRICT_UNSCALED },
  { "Fp8e4m3OCPAct", ACT, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 4, 3, BV_FP_OCP, 100, BV_RESTRICT_UNSCALED },
  { "Fp8e5m2OCPAct", ACT, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 5, 2, BV_FP_OCP, 100, BV_RESTRICT_UNSCALED },
  { "Fp8e4m3Act", ACT, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 4, 3, BV_FP_GENERIC, 100, BV_RESTRICT_UNSCALED },
  { "Fp8e5m2Act", ACT, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 5, 2, BV_FP_GENERIC, 100, BV_RESTRICT_UNSCALED },
  /* activations: calibrated, per tensor */
  { "Int8ActPerTensorFloat", ACT, BV_INT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 99.999, BV_RESTRICT_FP },
  { "Uint8ActPerTensorFloat", ACT, BV_INT, 8, FALSE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 99.999, BV_RESTRICT_FP },
  { "ShiftedUint8ActPerTensorFloat", ACT, BV_INT, 8, FALSE, FALSE, FALSE, T, 0, FALSE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 99.999, BV_RESTRICT_FP },
  { "Int8ActPerTensorFixedPoint", ACT, BV_INT, 8, TRUE, FALSE, TRUE, T, 0, TRUE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 99.999, BV_RESTRICT_FP },
  { "Uint8ActPerTensorFixedPoint", ACT, BV_INT, 8, FALSE, FALSE, TRUE, T, 0, TRUE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 99.999, BV_RESTRICT_FP },
  { "ShiftedUint8ActPerTensorFixedPoint", ACT, BV_INT, 8, FALSE, FALSE, FALSE, T, 0, TRUE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 99.999, BV_RESTRICT_FP },
  { "Fp8e4m3OCPActPerTensorFloat", ACT, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 4, 3, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Fp8e5m2OCPActPerTensorFloat", ACT, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 5, 2, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Fp8e4m3FNUZActPerTensorFloat", ACT, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 4, 3, BV_FP_FNUZ, 100, BV_RESTRICT_FP },
  { "Fp8e5m2FNUZActPerTensorFloat", ACT, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 5, 2, BV_FP_FNUZ, 100, BV_RESTRICT_FP },
  { "MXFloat8e4m3Act", ACT, BV_MX_FLOAT, 8, TRUE, FALSE, TRUE, G, 32, TRUE, FLOOR, FALSE, TRUE, 4, 3, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "MXFloat4e2m1Act", ACT, BV_MX_FLOAT, 4, TRUE, FALSE, TRUE, G, 32, TRUE, FLOOR, FALSE, TRUE, 2, 1, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "MXInt8Act", ACT, BV_MX_INT, 8, TRUE, FALSE, TRUE, G, 32, TRUE, FLOOR, FALSE, TRUE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  /* activations with the MSE search on each calibration batch */
  { "Int8ActPerTensorFloatMSE", ACT, BV_INT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, TRUE, FALSE, 0, 0, BV_FP_OCP, 99.999, BV_RESTRICT_FP },
  { "Uint8ActPerTensorFloatMSE", ACT, BV_INT, 8, FALSE, FALSE, TRUE, T, 0, FALSE, CEIL, TRUE, FALSE, 0, 0, BV_FP_OCP, 99.999, BV_RESTRICT_FP },
  { "Int8ActPerTensorFixedPointMSE", ACT, BV_INT, 8, TRUE, FALSE, TRUE, T, 0, TRUE, CEIL, TRUE, FALSE, 0, 0, BV_FP_OCP, 99.999, BV_RESTRICT_FP },
  { "Uint8ActPerTensorFixedPointMSE", ACT, BV_INT, 8, FALSE, FALSE, TRUE, T, 0, TRUE, CEIL, TRUE, FALSE, 0, 0, BV_FP_OCP, 99.999, BV_RESTRICT_FP },
  { "ShiftedUint8ActPerTensorFloatMSE", ACT, BV_INT, 8, FALSE, FALSE, FALSE, T, 0, FALSE, CEIL, TRUE, FALSE, 0, 0, BV_FP_OCP, 99.999, BV_RESTRICT_FP },
  { "ShiftedUint8ActPerTensorFixedPointMSE", ACT, BV_INT, 8, FALSE, FALSE, FALSE, T, 0, TRUE, CEIL, TRUE, FALSE, 0, 0, BV_FP_OCP, 99.999, BV_RESTRICT_FP },
  { "Fp8e4m3OCPActPerTensorFloatMSE", ACT, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, TRUE, FALSE, 4, 3, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Fp8e5m2OCPActPerTensorFloatMSE", ACT, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, TRUE, FALSE, 5, 2, BV_FP_OCP, 100, BV_RESTRICT_FP },
  /* dynamic activations of Brevitas's LLM examples (brevitas_examples/common/generative/quantizers.py):
   * the min-max range of each call, per tensor, per row (token) or per group of the last dimension */
  { "Int8DynamicActPerTensorFloat", ACT, BV_INT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, TRUE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Int8DynamicActPerRowFloat", ACT, BV_INT, 8, TRUE, FALSE, TRUE, C, 0, FALSE, CEIL, FALSE, TRUE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Int8DynamicActPerRowFixedPoint", ACT, BV_INT, 8, TRUE, FALSE, TRUE, C, 0, TRUE, FLOOR, FALSE, TRUE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Int8DynamicActPerGroupFloat", ACT, BV_INT, 8, TRUE, FALSE, TRUE, G, 0, FALSE, CEIL, FALSE, TRUE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "ShiftedUint8DynamicActPerTensorFloat", ACT, BV_INT, 8, FALSE, FALSE, FALSE, T, 0, FALSE, CEIL, FALSE, TRUE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "ShiftedUint8DynamicActPerRowFloat", ACT, BV_INT, 8, FALSE, FALSE, FALSE, C, 0, FALSE, CEIL, FALSE, TRUE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "FP8e4m3OCPDynamicActPerRowFloat", ACT, BV_FLOAT, 8, TRUE, FALSE, TRUE, C, 0, FALSE, CEIL, FALSE, TRUE, 4, 3, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "FP8e4m3OCPDynamicActPerRowFixedPoint", ACT, BV_FLOAT, 8, TRUE, FALSE, TRUE, C, 0, TRUE, FLOOR, FALSE, TRUE, 4, 3, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Fp8e4m3OCPDynamicActPerGroupFloat", ACT, BV_FLOAT, 8, TRUE, FALSE, TRUE, G, 0, FALSE, CEIL, FALSE, TRUE, 4, 3, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Fp8e4m3DynamicActPerGroupFloat", ACT, BV_FLOAT, 8, TRUE, FALSE, TRUE, G, 0, FALSE, CEIL, FALSE, TRUE, 4, 3, BV_FP_GENERIC, 100, BV_RESTRICT_FP },
  { "Fp8e4m3FNUZDynamicActPerTensorFloat", ACT, BV_FLOAT, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, TRUE, 4, 3, BV_FP_FNUZ, 100, BV_RESTRICT_FP },
  /* biases: s = input scale · weight scale */
  { "Int8Bias", B, BV_BIAS, 8, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Int16Bias", B, BV_BIAS, 16, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Int24Bias", B, BV_BIAS, 24, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
  { "Int32Bias", B, BV_BIAS, 32, TRUE, FALSE, TRUE, T, 0, FALSE, CEIL, FALSE, FALSE, 0, 0, BV_FP_OCP, 100, BV_RESTRICT_FP },
};

#undef T
#undef C
#undef G
#undef W
#undef B

static const char * const spec_keys[] = {
  "preset", "quant_type", "bit_width", "signed", "narrow_range", "symmetric", "qscheme", "group_size",
  "scale_type", "pof2_rounding", "param_type", "exponent_bit_width", "mantissa_bit_width", "float_format",
  "percentile", "rounding", "scaling_stats_op", "low_percentile", "sigma", "saturating", "exponent_bias",
  "inf_values", "nan_values", "dynamic", NULL
};
static const char * const bias_keys[] = { "preset", "bit_width", NULL };

static const char * const kind_names[] = { "int", "float", "mx_float", "mx_int", "int" };
static const char * const family_names[] = { "ocp", "fnuz", "generic" };
static const char * const stats_op_names[] = { "default", "max", "min_max", "percentile", "percentile_interval",
                                               "ave", "mean_sigma_std" };   /* BvStatsOp order */
static const char * const restrict_names[] = { "float", "pof2", "log_fp", "unscaled" };   /* BvRestrict order */
static const char * const rounding_names[] = { "round", "ceil", "floor" };   /* QuarkPow2Rounding order */
/* Brevitas's FloatToIntImplType names for integer rounding */
static const char * const int_rounding_names[] = { "round", "floor", "ceil", "round_to_zero", "dpu" };
static const QuarkRoundMode int_rounding_modes[] = { QUARK_ROUND_HALF_EVEN, QUARK_ROUND_FLOOR, QUARK_ROUND_CEIL,
                                                     QUARK_ROUND_TOWARD_ZERO, QUARK_ROUND_DPU };

static const BvPreset *
find_preset (const char *name)
{
  for (guint i = 0; i < G_N_ELEMENTS (presets); i++)
    if (g_str_equal (presets[i].name, name))
      return &presets[i];
  return NULL;
}

gboolean
bv_preset_exists (const char *name)
{
  return find_preset (name) != NULL;
}

static gboolean
role_fits (QuarkRole preset_role, QuarkRole role)
{
  if (preset_role == ACT)
    return role == QUARK_ROLE_INPUT || role == QUARK_ROLE_OUTPUT;
  return preset_role == role;
}

static gboolean
config_error (GError **error, int code, const char *path, const char *key, const char *what)
{
  g_set_error (error, QUARK_CONFIG_ERROR, code, "%s.%s: %s", path, key, what);
  return FALSE;
}

static gboolean
get_int (JsonObject *o, const char *path, const char *key, int lo, int hi, int *out, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  gint64 v;

  if (n == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return config_error (error, QUARK_CONFIG_ERROR_TYPE_MISMATCH, path, key, "expected an integer");
  v = json_node_get_int (n);
  if (v < lo || v > hi)
    {
      g_autofree char *what = g_strdup_printf ("expected an integer from %d to %d, got %" G_GINT64_FORMAT, lo, hi, v);
      return config_error (error, QUARK_CONFIG_ERROR_OUT_OF_RANGE, path, key, what);
    }
  *out = (int) v;
  return TRUE;
}

static gboolean
get_bool (JsonObject *o, const char *path, const char *key, gboolean *out, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);

  if (n == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
    return config_error (error, QUARK_CONFIG_ERROR_TYPE_MISMATCH, path, key, "expected true or false");
  *out = json_node_get_boolean (n);
  return TRUE;
}

static gboolean
get_number (JsonObject *o, const char *path, const char *key, double *out, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);

  if (n == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n) || (json_node_get_value_type (n) != G_TYPE_DOUBLE &&
                                     json_node_get_value_type (n) != G_TYPE_INT64))
    return config_error (error, QUARK_CONFIG_ERROR_TYPE_MISMATCH, path, key, "expected a number");
  *out = json_node_get_value_type (n) == G_TYPE_DOUBLE ? json_node_get_double (n) : (double) json_node_get_int (n);
  return TRUE;
}

/* Brevitas's inf_values / nan_values: mantissa codes at the all-ones
 * exponent as binary strings ("111"); *out gets bit i set for code i. */
static gboolean
get_codes (JsonObject *o, const char *path, const char *key, guint64 *out, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  JsonArray *a;

  if (n == NULL)
    return TRUE;
  *out = 0;
  if (JSON_NODE_HOLDS_NULL (n))
    return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (n))
    return config_error (error, QUARK_CONFIG_ERROR_TYPE_MISMATCH, path, key,
                         "expected null or a list of mantissa codes in binary (\"111\")");
  a = json_node_get_array (n);
  for (guint i = 0; i < json_array_get_length (a); i++)
    {
      JsonNode *e = json_array_get_element (a, i);
      const char *str = JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_STRING
                        ? json_node_get_string (e) : NULL;
      guint64 code = 0;
      gsize len = str ? strlen (str) : 0;

      if (len == 0 || len > 6 || strspn (str, "01") != len)
        return config_error (error, QUARK_CONFIG_ERROR_INVALID_VALUE, path, key,
                             "a mantissa code is a string of 1 to 6 binary digits");
      for (gsize k = 0; k < len; k++)
        code = code * 2 + (guint64) (str[k] - '0');
      *out |= (guint64) 1 << code;
    }
  return TRUE;
}

/* A string member that must be one of @names; *out is its index. */
static gboolean
get_choice (JsonObject *o, const char *path, const char *key, const char * const *names, guint n_names,
            int *out, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  g_autoptr(GString) list = g_string_new (NULL);
  const char *s;

  if (n == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return config_error (error, QUARK_CONFIG_ERROR_TYPE_MISMATCH, path, key, "expected a string");
  s = json_node_get_string (n);
  for (guint i = 0; i < n_names; i++)
    {
      if (g_ascii_strcasecmp (s, names[i]) == 0)   /* Brevitas's enums are upper case */
        {
          *out = (int) i;
          return TRUE;
        }
      g_string_append_printf (list, "%s%s", i ? ", " : "", names[i]);
    }
  {
    g_autofree char *what = g_strdup_printf ("unknown value \"%s\" (expected one of: %s)", s, list->str);
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_VALUE, path, key, what);
  }
}

/* Brevitas's own names for spec fields, as its quantizers' attributes
 * spell them, with the backend's names they stand for and, where the
 * values differ, the translation of the values (NULL: the same). */
static const struct {
  const char *brevitas, *key;
  const char * const *values;   /* pairs: Brevitas's value, the backend's */
} aliases[] = {
  { "high_percentile_q", "percentile", NULL },
  { "low_percentile_q", "low_percentile", NULL },
  { "float_to_int_impl_type", "rounding", NULL },
  { "restrict_scaling_type", "scale_type",
    (const char * const []) { "fp", "float", "power_of_two", "pof2", "log_fp", "log_fp", NULL } },
  { "scaling_per_output_type", "qscheme",
    (const char * const []) { "tensor", "per_tensor", "channel", "per_channel", "group", "per_group", NULL } },
};

/* A copy of a spec object with Brevitas's field names replaced by the
 * backend's (an error when both name the same field). */
static JsonObject *
brevitas_names (JsonObject *o, const char *path, GError **error)
{
  JsonObject *out = json_object_new ();
  g_autoptr(GList) members = json_object_get_members (o);

  for (GList *l = members; l; l = l->next)
    json_object_set_member (out, l->data, json_node_copy (json_object_get_member (o, l->data)));
  for (guint i = 0; i < G_N_ELEMENTS (aliases); i++)
    {
      JsonNode *n = json_object_get_member (o, aliases[i].brevitas);
      const char *value;

      if (n == NULL)
        continue;
      if (json_object_has_member (o, aliases[i].key))
        {
          g_autofree char *what = g_strdup_printf ("the same field as %s; give one of them", aliases[i].key);
          config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, aliases[i].brevitas, what);
          json_object_unref (out);
          return NULL;
        }
      n = json_node_copy (n);
      value = JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING ? json_node_get_string (n)
                                                                                        : NULL;
      for (guint k = 0; value && aliases[i].values && aliases[i].values[k]; k += 2)
        if (g_ascii_strcasecmp (value, aliases[i].values[k]) == 0)
          {
            json_node_unref (n);   /* a parsed node is sealed: a new one */
            n = json_node_init_string (json_node_alloc (), aliases[i].values[k + 1]);
            break;
          }
      json_object_remove_member (out, aliases[i].brevitas);
      json_object_set_member (out, aliases[i].key, n);
    }
  return out;
}

static QuarkDType
int_dtype (int bits, gboolean is_signed)
{
  static const QuarkDType s[] = { 0, 0, QUARK_DTYPE_INT2, QUARK_DTYPE_INT3, QUARK_DTYPE_INT4, QUARK_DTYPE_INT5,
                                  QUARK_DTYPE_INT6, QUARK_DTYPE_INT7, QUARK_DTYPE_I8 };
  static const QuarkDType u[] = { 0, 0, QUARK_DTYPE_UINT2, QUARK_DTYPE_UINT3, QUARK_DTYPE_UINT4, QUARK_DTYPE_UINT5,
                                  QUARK_DTYPE_UINT6, QUARK_DTYPE_UINT7, QUARK_DTYPE_U8 };
  if (bits <= 8)
    return is_signed ? s[bits] : u[bits];
  if (bits <= 16)
    return is_signed ? QUARK_DTYPE_I16 : QUARK_DTYPE_U16;
  return QUARK_DTYPE_I32;
}

static QuarkDType
float_dtype (const BvSpec *spec)
{
  if (spec->ebits == 4 && spec->mbits == 3)
    return spec->family == BV_FP_FNUZ ? QUARK_DTYPE_F8_E4M3FNUZ : QUARK_DTYPE_F8_E4M3;
  if (spec->ebits == 5 && spec->mbits == 2)
    return spec->family == BV_FP_FNUZ ? QUARK_DTYPE_F8_E5M2FNUZ : QUARK_DTYPE_F8_E5M2;
  if (spec->ebits == 3 && spec->mbits == 2)
    return QUARK_DTYPE_FP6_E3M2;
  if (spec->ebits == 2 && spec->mbits == 3)
    return QUARK_DTYPE_FP6_E2M3;
  if (spec->ebits == 2 && spec->mbits == 1)
    return QUARK_DTYPE_FP4_E2M1;
  return QUARK_DTYPE_U8;   /* a generic minifloat: its codes in bytes */
}

/* The generic description quantizer-agnostic code reads (calibration
 * sessions, tools); the BvSpec rides along as object data. */
static void
attach_tensor_spec (BvSpec *spec)
{
  QuarkDType dtype = spec->kind == BV_INT || spec->kind == BV_BIAS || spec->kind == BV_MX_INT
                     ? int_dtype (spec->bits, spec->is_signed) : float_dtype (spec);
  gboolean act = spec->role == QUARK_ROLE_INPUT || spec->role == QUARK_ROLE_OUTPUT;
  QuarkTensorSpec *t = g_object_new (QUARK_TYPE_TENSOR_SPEC,
                                     "dtype", dtype,
                                     "qscheme", spec->qscheme,
                                     "ch_axis", spec->qscheme == QUARK_QSCHEME_PER_GROUP ? -1 : 0,
                                     "group_size", spec->qscheme == QUARK_QSCHEME_PER_GROUP ? spec->group_size : 0,
                                     "symmetric", spec->symmetric,
                                     "narrow_range", spec->narrow,
                                     "is_dynamic", spec->dynamic,
                                     "scale_type", spec->pof2 ? QUARK_SCALE_POW2 : QUARK_SCALE_FLOAT,
                                     "observer", act ? QUARK_OBSERVER_PERCENTILE
                                                     : spec->mse ? QUARK_OBSERVER_MSE : QUARK_OBSERVER_MIN_MAX,
                                     "percentile", spec->percentile,
                                     "quant-order", QUARK_QUANT_ORDER_BREVITAS,
                                     NULL);
  if (spec->kind == BV_MX_FLOAT || (spec->kind == BV_MX_INT && spec->is_signed))
    g_object_set (t, "scale_format", QUARK_SCALE_FORMAT_E8M0, NULL);
  spec->tspec = t;
  g_object_set_data_full (G_OBJECT (t), SPEC_KEY, spec, (GDestroyNotify) bv_spec_free);
}

BvSpec *
bv_spec_from_tensor_spec (QuarkTensorSpec *tspec)
{
  return tspec ? g_object_get_data (G_OBJECT (tspec), SPEC_KEY) : NULL;
}

void
bv_spec_free (BvSpec *spec)
{
  if (spec == NULL)
    return;
  g_free (spec->preset);
  g_free (spec);
}

static gboolean
check_spec (const BvSpec *s, const char *path, GError **error)
{
  gboolean act = s->role == QUARK_ROLE_INPUT || s->role == QUARK_ROLE_OUTPUT;

  if (s->kind == BV_BIAS)
    {
      if (s->bits != 8 && s->bits != 16 && s->bits != 24 && s->bits != 32)
        return config_error (error, QUARK_CONFIG_ERROR_OUT_OF_RANGE, path, "bit_width",
                             "a bias is quantized to 8, 16, 24 or 32 bits");
      return TRUE;
    }
  if (s->kind == BV_INT && (s->bits < 2 || s->bits > 16))
    return config_error (error, QUARK_CONFIG_ERROR_OUT_OF_RANGE, path, "bit_width",
                         "integers take 2 to 16 bits in the brevitas backend");
  if (s->kind == BV_MX_INT && s->bits != 8)
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "bit_width", "MX integers have 8 bits");
  if (!s->symmetric && s->is_signed)
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "signed",
                         "an asymmetric (shifted) quantizer is unsigned");
  if ((s->kind == BV_FLOAT || s->kind == BV_MX_FLOAT) && !s->symmetric)
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "symmetric",
                         "float quantizers are symmetric");
  if (s->kind == BV_FLOAT || s->kind == BV_MX_FLOAT)
    {
      gboolean ocp;
      ocp = (s->ebits == 4 && s->mbits == 3) || (s->ebits == 5 && s->mbits == 2) ||
                     (s->ebits == 3 && s->mbits == 2) || (s->ebits == 2 && s->mbits == 3) ||
                     (s->ebits == 2 && s->mbits == 1);
      if (s->ebits < 1 || s->ebits > 5 || s->mbits < 0 || s->mbits > 6 || 1 + s->ebits + s->mbits > 8)
        return config_error (error, QUARK_CONFIG_ERROR_OUT_OF_RANGE, path, "exponent_bit_width",
                             "minifloats take 1 to 5 exponent bits and at most 8 bits in all");
      if ((s->family == BV_FP_OCP || s->kind == BV_MX_FLOAT) && !ocp)
        return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "float_format",
                             "the OCP formats are E4M3, E5M2, E3M2, E2M3 and E2M1 (use \"generic\" for others)");
      if (s->family == BV_FP_FNUZ && !((s->ebits == 4 && s->mbits == 3) || (s->ebits == 5 && s->mbits == 2)))
        return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "float_format",
                             "the FNUZ formats are E4M3 and E5M2");
      guint64 valid = s->mbits >= 6 ? G_MAXUINT64 : ((guint64) 1 << (1 << s->mbits)) - 1;
      if (((s->inf_codes | s->nan_codes) & ~valid) != 0)
        return config_error (error, QUARK_CONFIG_ERROR_INVALID_VALUE, path, s->inf_codes & ~valid ? "inf_values"
                             : "nan_values", "NaN and Inf codes are mantissa codes no longer than the mantissa");
      if (s->inf_codes && !s->nan_codes)
        return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "inf_values",
                             "a format with Inf codes also has NaN codes (as in Brevitas)");
      if (s->inf_codes & s->nan_codes)
        return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "inf_values",
                             "a code is either Inf or NaN");
      if (!s->saturating && !s->nan_codes)
        return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "saturating",
                             "a non-saturating minifloat needs NaN codes (nan_values) for what it cannot represent");
    }
  else if (s->restrict_type == BV_RESTRICT_UNSCALED)
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "scale_type",
                         "only minifloats are unscaled");
  if ((s->kind == BV_MX_FLOAT || s->kind == BV_MX_INT) && s->restrict_type != BV_RESTRICT_POW2)
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "scale_type",
                         "MX scales are powers of two");
  if (s->mse && act && s->dynamic)
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "param_type",
                         "the MSE search of activations runs on calibration batches (not on dynamic ones)");
  if (s->mse && s->restrict_type == BV_RESTRICT_UNSCALED)
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "param_type",
                         "an unscaled quantizer has no scale to search");
  if (s->mse && s->stats_op != BV_STATS_DEFAULT)
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "scaling_stats_op",
                         "the MSE search starts from the abs max (min-max for shifted quantizers)");
  if (s->rounding != QUARK_ROUND_HALF_EVEN && s->kind != BV_INT)
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "rounding",
                         "other roundings apply to integer quantizers");
  if (act && !s->dynamic && s->stats_op != BV_STATS_DEFAULT && s->stats_op != BV_STATS_PERCENTILE &&
      s->stats_op != BV_STATS_MAX &&
      !(s->stats_op == BV_STATS_PERCENTILE_INTERVAL && !s->symmetric))
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "scaling_stats_op",
                         "calibrated activations take the percentile (or maximum) of each batch; shifted ones "
                         "the percentile interval");
  if (act && !s->dynamic && fabs (s->low_percentile - (100.0 - s->percentile)) > 0)
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "low_percentile",
                         "calibration sessions take the low percentile at 100 - percentile");
  if (s->stats_op == BV_STATS_MEAN_SIGMA_STD && !(s->sigma > 0))
    return config_error (error, QUARK_CONFIG_ERROR_OUT_OF_RANGE, path, "sigma", "mean_sigma_std needs a positive sigma");
  if ((s->stats_op == BV_STATS_PERCENTILE_INTERVAL || s->stats_op == BV_STATS_MIN_MAX) && s->symmetric && !act &&
      s->kind == BV_INT)
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "scaling_stats_op",
                         "min_max and percentile_interval are the statistics of shifted (asymmetric) quantizers");
  if (!(s->low_percentile >= 0 && s->low_percentile < 100))
    return config_error (error, QUARK_CONFIG_ERROR_OUT_OF_RANGE, path, "low_percentile",
                         "expected a percentile in [0, 100)");
  if (s->qscheme == QUARK_QSCHEME_PER_GROUP && s->group_size <= 0)
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "group_size",
                         "per_group needs a positive group_size");
  if (s->dynamic && !act)
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "dynamic",
                         "weights are quantized from their own statistics already (dynamic is for activations)");
  if (s->dynamic && s->restrict_type == BV_RESTRICT_UNSCALED)
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "dynamic",
                         "an unscaled quantizer has no scale to compute");
  if (act && !s->dynamic && s->qscheme != QUARK_QSCHEME_PER_TENSOR)
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "qscheme",
                         "calibrated activations are quantized per_tensor (Brevitas's layer inputs); per_channel "
                         "(per row) and per_group activations are dynamic");
  if ((s->kind == BV_MX_FLOAT || s->kind == BV_MX_INT) && s->qscheme != QUARK_QSCHEME_PER_GROUP)
    return config_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "qscheme", "MX is per_group");
  if (!(s->percentile > 0 && s->percentile <= 100))
    return config_error (error, QUARK_CONFIG_ERROR_OUT_OF_RANGE, path, "percentile",
                         "expected a percentile in (0, 100]");
  return TRUE;
}

/**
 * bv_spec_from_json:
 * @node: a spec: {"preset": NAME} and/or explicit fields
 * @role: what it quantizes
 * @path: its JSON path, for errors
 * @error: return location for a #GError
 *
 * Reads one spec strictly. A preset gives every default; the fields given
 * next to it override them. Without a preset the defaults are Brevitas's
 * for the role: 8-bit signed integers, narrow weights per tensor, or
 * activations calibrated at the 99.999th percentile.
 *
 * Returns: (transfer none): the spec, owned by its tensor spec (spec->tspec),
 *   or %NULL with a %QUARK_CONFIG_ERROR naming the JSON path
 */
BvSpec *
bv_spec_from_json (JsonNode *node, QuarkRole role, const char *path, GError **error)
{
  static const char * const qschemes[] = { "per_tensor", "per_channel", "per_group" };
  static const QuarkQScheme qscheme_values[] = { QUARK_QSCHEME_PER_TENSOR, QUARK_QSCHEME_PER_CHANNEL,
                                                 QUARK_QSCHEME_PER_GROUP };
  static const char * const param_types[] = { "stats", "mse" };
  g_autoptr(GString) list = NULL;
  g_autoptr(JsonObject) normalized = NULL;
  JsonObject *o;
  JsonNode *n;
  BvSpec *s;
  gboolean act = role == QUARK_ROLE_INPUT || role == QUARK_ROLE_OUTPUT;
  int v;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH, "%s: expected an object or null", path);
      return NULL;
    }
  normalized = brevitas_names (json_node_get_object (node), path, error);
  if (normalized == NULL)
    return NULL;
  o = normalized;
  if (!quark_json_check_members (o, path, role == QUARK_ROLE_BIAS ? bias_keys : spec_keys, error))
    return NULL;

  s = g_new0 (BvSpec, 1);
  s->role = role;
  /* the role's defaults */
  s->kind = role == QUARK_ROLE_BIAS ? BV_BIAS : BV_INT;
  s->bits = role == QUARK_ROLE_BIAS ? 32 : 8;
  s->is_signed = TRUE;
  s->narrow = role == QUARK_ROLE_WEIGHT;
  s->symmetric = TRUE;
  s->qscheme = QUARK_QSCHEME_PER_TENSOR;
  s->pof2_rounding = QUARK_POW2_CEIL;
  s->percentile = act ? 99.999 : 100;
  s->family = BV_FP_OCP;
  s->saturating = TRUE;
  s->low_percentile = -1;     /* 100 - percentile unless given */
  s->exponent_bias = G_MININT;   /* the family's unless given */

  if ((n = json_object_get_member (o, "preset")))
    {
      const BvPreset *p = NULL;
      if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
        p = find_preset (json_node_get_string (n));
      if (p == NULL || !role_fits (p->role, role))
        {
          list = g_string_new (NULL);
          for (guint i = 0; i < G_N_ELEMENTS (presets); i++)
            if (role_fits (presets[i].role, role))
              g_string_append_printf (list, "%s%s", list->len ? ", " : "", presets[i].name);
          g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                       "%s.preset: %s%s%s is not a Brevitas %s preset (expected one of: %s)", path,
                       p || JSON_NODE_HOLDS_VALUE (n) ? "\"" : "",
                       JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING
                       ? json_node_get_string (n) : "this value",
                       p || JSON_NODE_HOLDS_VALUE (n) ? "\"" : "",
                       role == QUARK_ROLE_WEIGHT ? "weight" : role == QUARK_ROLE_BIAS ? "bias" : "activation",
                       list->str);
          bv_spec_free (s);
          return NULL;
        }
      s->preset = g_strdup (p->name);
      s->kind = p->kind;
      s->bits = p->bits;
      s->is_signed = p->is_signed;
      s->narrow = p->narrow;
      s->symmetric = p->symmetric;
      s->qscheme = p->qscheme;
      s->group_size = p->group_size;
      s->pof2 = p->pof2;
      s->pof2_rounding = p->rounding;
      s->mse = p->mse;
      s->dynamic = p->dynamic;
      s->ebits = p->ebits;
      s->mbits = p->mbits;
      s->family = p->family;
      s->percentile = p->percentile;
      s->restrict_type = p->restrict_type == BV_RESTRICT_UNSCALED ? BV_RESTRICT_UNSCALED
                         : p->pof2 ? BV_RESTRICT_POW2 : BV_RESTRICT_FP;
    }

  if (role == QUARK_ROLE_BIAS)
    {
      if (!get_int (o, path, "bit_width", 8, 32, &s->bits, error) || !check_spec (s, path, error))
        goto fail;
      attach_tensor_spec (s);
      return s;
    }

  v = s->kind == BV_BIAS ? 0 : (int) s->kind;
  if (!get_choice (o, path, "quant_type", kind_names, 4, &v, error))
    goto fail;
  if (json_object_has_member (o, "quant_type") && v != (int) s->kind)
    {
      s->kind = (BvKind) v;
      if (s->kind == BV_FLOAT || s->kind == BV_MX_FLOAT)
        {
          /* a float quantizer starts as OCP E4M3, scaled by the maximum */
          s->ebits = 4;
          s->mbits = 3;
          s->narrow = FALSE;
          if (act)
            s->percentile = 100;
        }
      if (s->kind == BV_MX_FLOAT || s->kind == BV_MX_INT)
        {
          s->qscheme = QUARK_QSCHEME_PER_GROUP;
          s->group_size = 32;
          s->pof2 = TRUE;
          s->restrict_type = BV_RESTRICT_POW2;
          s->pof2_rounding = QUARK_POW2_FLOOR;
          s->narrow = FALSE;
          s->dynamic = act;
        }
    }
  if (!get_int (o, path, "bit_width", 1, 32, &s->bits, error) ||
      !get_bool (o, path, "signed", &s->is_signed, error) ||
      !get_bool (o, path, "narrow_range", &s->narrow, error))
    goto fail;
  if (json_object_has_member (o, "symmetric"))
    {
      gboolean sym = s->symmetric;
      if (!get_bool (o, path, "symmetric", &sym, error))
        goto fail;
      /* Quark's extension: asymmetric integers are the Shifted presets
       * (unsigned, a zero point); symmetric ones signed unless told */
      if (sym != s->symmetric && !json_object_has_member (o, "signed"))
        s->is_signed = sym;
      if (!sym && !json_object_has_member (o, "narrow_range"))
        s->narrow = FALSE;
      s->symmetric = sym;
    }
  v = s->qscheme == QUARK_QSCHEME_PER_CHANNEL ? 1 : s->qscheme == QUARK_QSCHEME_PER_GROUP ? 2 : 0;
  if (!get_choice (o, path, "qscheme", qschemes, 3, &v, error))
    goto fail;
  s->qscheme = qscheme_values[v];
  if (!get_int (o, path, "group_size", 1, G_MAXINT, &s->group_size, error))
    goto fail;
  v = (int) s->restrict_type;
  if (!get_choice (o, path, "scale_type", restrict_names, G_N_ELEMENTS (restrict_names), &v, error))
    goto fail;
  s->restrict_type = (BvRestrict) v;
  s->pof2 = s->restrict_type == BV_RESTRICT_POW2;
  v = (int) s->stats_op;
  if (!get_choice (o, path, "scaling_stats_op", stats_op_names, G_N_ELEMENTS (stats_op_names), &v, error))
    goto fail;
  s->stats_op = (BvStatsOp) v;
  if (!get_number (o, path, "low_percentile", &s->low_percentile, error) ||
      !get_number (o, path, "sigma", &s->sigma, error) ||
      !get_bool (o, path, "saturating", &s->saturating, error) ||
      !get_bool (o, path, "dynamic", &s->dynamic, error) ||
      !get_int (o, path, "exponent_bias", -64, 64, &s->exponent_bias, error) ||
      !get_codes (o, path, "inf_values", &s->inf_codes, error) ||
      !get_codes (o, path, "nan_values", &s->nan_codes, error))
    goto fail;
  if (json_object_has_member (o, "sigma") && !json_object_has_member (o, "scaling_stats_op"))
    s->stats_op = BV_STATS_MEAN_SIGMA_STD;
  v = (int) s->pof2_rounding;
  if (!get_choice (o, path, "pof2_rounding", rounding_names, 3, &v, error))
    goto fail;
  s->pof2_rounding = (QuarkPow2Rounding) v;
  v = s->mse;
  if (!get_choice (o, path, "param_type", param_types, 2, &v, error))
    goto fail;
  s->mse = v;
  v = 0;
  for (guint i = 0; i < G_N_ELEMENTS (int_rounding_modes); i++)
    if (int_rounding_modes[i] == s->rounding)
      v = (int) i;
  if (!get_choice (o, path, "rounding", int_rounding_names, G_N_ELEMENTS (int_rounding_names), &v, error))
    goto fail;
  s->rounding = int_rounding_modes[v];
  if (!get_int (o, path, "exponent_bit_width", 0, 8, &s->ebits, error) ||
      !get_int (o, path, "mantissa_bit_width", 0, 8, &s->mbits, error))
    goto fail;
  v = (int) s->family;
  if (!get_choice (o, path, "float_format", family_names, 3, &v, error))
    goto fail;
  s->family = (BvFpFamily) v;
  if (!get_number (o, path, "percentile", &s->percentile, error))
    goto fail;
  /* a weight's percentile is its statistic (AbsPercentile, or the
   * PercentileInterval of a shifted quantizer) */
  if (!act && json_object_has_member (o, "percentile") && s->stats_op == BV_STATS_DEFAULT)
    s->stats_op = s->symmetric ? BV_STATS_PERCENTILE : BV_STATS_PERCENTILE_INTERVAL;
  if (s->low_percentile < 0)
    s->low_percentile = 100.0 - s->percentile;
  if (s->kind == BV_FLOAT || s->kind == BV_MX_FLOAT)
    {
      s->bits = 1 + s->ebits + s->mbits;
      /* the family's special codes unless given (OCP E4M3: NaN S.1111.111;
       * E5M2: Inf S.11111.00, NaN the other three) */
      if (s->ebits >= 1 && s->ebits <= 8)   /* others fail check_spec */
        {
          int bias;
          guint64 inf, nan;
          bv_fp_defaults (s->family, s->ebits, s->mbits, &bias, &inf, &nan);
          if (!json_object_has_member (o, "inf_values") && !json_object_has_member (o, "nan_values"))
            {
              s->inf_codes = inf;
              s->nan_codes = nan;
            }
          if (s->exponent_bias == G_MININT)
            s->exponent_bias = bias;
        }
    }
  if (!check_spec (s, path, error))
    goto fail;
  attach_tensor_spec (s);
  return s;

fail:
  bv_spec_free (s);
  return NULL;
}

JsonNode *
bv_spec_to_json (const BvSpec *s)
{
  JsonObject *o = json_object_new ();

  if (s->preset)
    json_object_set_string_member (o, "preset", s->preset);
  json_object_set_int_member (o, "bit_width", s->bits);
  if (s->kind != BV_BIAS)
    {
      json_object_set_string_member (o, "quant_type", kind_names[s->kind]);
      json_object_set_boolean_member (o, "signed", s->is_signed);
      json_object_set_boolean_member (o, "narrow_range", s->narrow);
      json_object_set_boolean_member (o, "symmetric", s->symmetric);
      json_object_set_string_member (o, "qscheme", s->qscheme == QUARK_QSCHEME_PER_CHANNEL ? "per_channel"
                                                   : s->qscheme == QUARK_QSCHEME_PER_GROUP ? "per_group" : "per_tensor");
      if (s->qscheme == QUARK_QSCHEME_PER_GROUP)
        json_object_set_int_member (o, "group_size", s->group_size);
      json_object_set_string_member (o, "scale_type", restrict_names[s->restrict_type]);
      if (s->stats_op != BV_STATS_DEFAULT)
        json_object_set_string_member (o, "scaling_stats_op", stats_op_names[s->stats_op]);
      if (s->low_percentile != 100.0 - s->percentile)
        json_object_set_double_member (o, "low_percentile", s->low_percentile);
      if (s->stats_op == BV_STATS_MEAN_SIGMA_STD)
        json_object_set_double_member (o, "sigma", s->sigma);
      if (s->pof2)
        json_object_set_string_member (o, "pof2_rounding", rounding_names[s->pof2_rounding]);
      json_object_set_string_member (o, "param_type", s->mse ? "mse" : "stats");
      if (s->dynamic)
        json_object_set_boolean_member (o, "dynamic", TRUE);
      for (guint i = 0; i < G_N_ELEMENTS (int_rounding_modes); i++)
        if (int_rounding_modes[i] == s->rounding && s->rounding != QUARK_ROUND_HALF_EVEN)
          json_object_set_string_member (o, "rounding", int_rounding_names[i]);
      if (s->kind == BV_FLOAT || s->kind == BV_MX_FLOAT)
        {
          json_object_set_int_member (o, "exponent_bit_width", s->ebits);
          json_object_set_int_member (o, "mantissa_bit_width", s->mbits);
          json_object_set_string_member (o, "float_format", family_names[s->family]);
          json_object_set_int_member (o, "exponent_bias", s->exponent_bias);
          json_object_set_boolean_member (o, "saturating", s->saturating);
          for (int k = 0; k < 2; k++)
            {
              guint64 codes = k ? s->nan_codes : s->inf_codes;
              JsonArray *a = json_array_new ();
              for (int c = 0; c < 64; c++)
                if (codes & ((guint64) 1 << c))
                  {
                    char str[8];
                    for (int b = 0; b < s->mbits; b++)
                      str[b] = (char) ('0' + ((c >> (s->mbits - 1 - b)) & 1));
                    str[s->mbits] = 0;
                    json_array_add_string_element (a, str);
                  }
              json_object_set_array_member (o, k ? "nan_values" : "inf_values", a);
            }
        }
      if (s->role == QUARK_ROLE_WEIGHT && s->stats_op != BV_STATS_DEFAULT && s->stats_op != BV_STATS_AVE &&
          s->stats_op != BV_STATS_MEAN_SIGMA_STD && s->stats_op != BV_STATS_MAX && s->stats_op != BV_STATS_MIN_MAX)
        json_object_set_double_member (o, "percentile", s->percentile);
      if (s->role == QUARK_ROLE_INPUT || s->role == QUARK_ROLE_OUTPUT)
        json_object_set_double_member (o, "percentile", s->percentile);
    }
  return bv_node_take (o);
}

const char *
bv_spec_describe (const BvSpec *s)
{
  return s->preset ? s->preset : kind_names[s->kind];
}
