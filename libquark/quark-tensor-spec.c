/* quark-tensor-spec.c: how one tensor is quantized
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-tensor-spec.h"
#include "quark-tensor.h"
#include "quark-enum-types.h"
#include "quark-error.h"
#include "quark-json.h"
#include "kernels/quark-kernels.h"

#include <math.h>
#include <string.h>

/**
 * QuarkTensorSpec:
 *
 * The target format of one tensor: element dtype, granularity of the
 * quantization parameters, channel axis, group size, symmetry, narrow range,
 * static or dynamic parameters, rounding and the kind of scale.
 *
 * Specs are the common language of configs and quantizers:
 * [method@Quark.QuantizationConfig.get_tensor_spec] answers with one, and
 * backends build their arithmetic from it. The property names are the JSON
 * keys of a spec (`dtype`, `qscheme`, `ch_axis`, `group_size`, `symmetric`,
 * `narrow_range`, `is_dynamic`, `round_method`, `scale_type`, `scale_format`,
 * `scale_calculation_mode`); enum values are written by nick (`"int8"`,
 * `"per_channel"`, `"half_even"`, `"pof2"`, `"e8m0"`, `"even"`).
 *
 * Setting a property never fails; call [method@Quark.TensorSpec.validate] to
 * check a combination. A spec is not locked: treat specs returned by configs
 * as read-only and copy them ([method@Quark.TensorSpec.copy]) to change them.
 */
struct _QuarkTensorSpec
{
  GObject parent_instance;

  QuarkDType dtype;
  QuarkQScheme qscheme;
  int ch_axis;             /* CH_AXIS_UNSET until set */
  int group_size;
  gboolean symmetric;
  gboolean narrow_range;
  gboolean is_dynamic;
  QuarkRoundMode round_method;
  QuarkQuantOrder quant_order;
  QuarkScaleType scale_type;
  QuarkScaleFormat scale_format;
  QuarkMxScaleMode scale_calculation_mode;
  QuarkObserver observer;
  double percentile;
  GVariant *block_size;   /* "ai" or NULL */
};

#define CH_AXIS_UNSET G_MININT

/* An unset axis is the output channel (0) for per_channel specs and the
 * input features (-1) for per_group ones, the axis the backends group
 * along. */
static int
effective_ch_axis (QuarkTensorSpec *self)
{
  if (self->ch_axis != CH_AXIS_UNSET)
    return self->ch_axis;
  return self->qscheme == QUARK_QSCHEME_PER_GROUP ? -1 : 0;
}

enum {
  PROP_0,
  PROP_DTYPE,
  PROP_QSCHEME,
  PROP_CH_AXIS,
  PROP_GROUP_SIZE,
  PROP_SYMMETRIC,
  PROP_NARROW_RANGE,
  PROP_IS_DYNAMIC,
  PROP_ROUND_METHOD,
  PROP_SCALE_TYPE,
  PROP_SCALE_FORMAT,
  PROP_SCALE_CALCULATION_MODE,
  PROP_OBSERVER,
  PROP_PERCENTILE,
  PROP_BLOCK_SIZE,
  PROP_QUANT_ORDER,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (QuarkTensorSpec, quark_tensor_spec, G_TYPE_OBJECT)

static void
quark_tensor_spec_finalize (GObject *object)
{
  g_clear_pointer (&QUARK_TENSOR_SPEC (object)->block_size, g_variant_unref);
  G_OBJECT_CLASS (quark_tensor_spec_parent_class)->finalize (object);
}

static void
quark_tensor_spec_get_property (GObject    *object,
                                guint       prop_id,
                                GValue     *value,
                                GParamSpec *pspec)
{
  QuarkTensorSpec *self = QUARK_TENSOR_SPEC (object);

  switch (prop_id)
    {
    case PROP_DTYPE: g_value_set_enum (value, self->dtype); break;
    case PROP_QSCHEME: g_value_set_enum (value, self->qscheme); break;
    case PROP_CH_AXIS: g_value_set_int (value, effective_ch_axis (self)); break;
    case PROP_GROUP_SIZE: g_value_set_int (value, self->group_size); break;
    case PROP_SYMMETRIC: g_value_set_boolean (value, self->symmetric); break;
    case PROP_NARROW_RANGE: g_value_set_boolean (value, self->narrow_range); break;
    case PROP_IS_DYNAMIC: g_value_set_boolean (value, self->is_dynamic); break;
    case PROP_ROUND_METHOD: g_value_set_enum (value, self->round_method); break;
    case PROP_SCALE_TYPE: g_value_set_enum (value, self->scale_type); break;
    case PROP_SCALE_FORMAT: g_value_set_enum (value, self->scale_format); break;
    case PROP_SCALE_CALCULATION_MODE: g_value_set_enum (value, self->scale_calculation_mode); break;
    case PROP_OBSERVER: g_value_set_enum (value, self->observer); break;
    case PROP_PERCENTILE: g_value_set_double (value, self->percentile); break;
    case PROP_BLOCK_SIZE: g_value_set_variant (value, self->block_size); break;
    case PROP_QUANT_ORDER: g_value_set_enum (value, self->quant_order); break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
quark_tensor_spec_set_property (GObject      *object,
                                guint         prop_id,
                                const GValue *value,
                                GParamSpec   *pspec)
{
  QuarkTensorSpec *self = QUARK_TENSOR_SPEC (object);

  switch (prop_id)
    {
    case PROP_DTYPE: self->dtype = g_value_get_enum (value); break;
    case PROP_QSCHEME: self->qscheme = g_value_get_enum (value); break;
    case PROP_CH_AXIS: self->ch_axis = g_value_get_int (value); break;
    case PROP_GROUP_SIZE: self->group_size = g_value_get_int (value); break;
    case PROP_SYMMETRIC: self->symmetric = g_value_get_boolean (value); break;
    case PROP_NARROW_RANGE: self->narrow_range = g_value_get_boolean (value); break;
    case PROP_IS_DYNAMIC: self->is_dynamic = g_value_get_boolean (value); break;
    case PROP_ROUND_METHOD: self->round_method = g_value_get_enum (value); break;
    case PROP_SCALE_TYPE: self->scale_type = g_value_get_enum (value); break;
    case PROP_SCALE_FORMAT: self->scale_format = g_value_get_enum (value); break;
    case PROP_SCALE_CALCULATION_MODE: self->scale_calculation_mode = g_value_get_enum (value); break;
    case PROP_OBSERVER: self->observer = g_value_get_enum (value); break;
    case PROP_PERCENTILE: self->percentile = g_value_get_double (value); break;
    case PROP_QUANT_ORDER: self->quant_order = g_value_get_enum (value); break;
    case PROP_BLOCK_SIZE:
      g_clear_pointer (&self->block_size, g_variant_unref);
      self->block_size = g_value_dup_variant (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
quark_tensor_spec_class_init (QuarkTensorSpecClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_CONSTRUCT | G_PARAM_STATIC_STRINGS;

  object_class->finalize = quark_tensor_spec_finalize;
  object_class->get_property = quark_tensor_spec_get_property;
  object_class->set_property = quark_tensor_spec_set_property;

  /**
   * QuarkTensorSpec:dtype: (getter get_dtype)
   *
   * The quantized element type. Default: int8.
   */
  properties[PROP_DTYPE] =
    g_param_spec_enum ("dtype", "DType", "The quantized element type",
                       QUARK_TYPE_DTYPE, QUARK_DTYPE_I8, rw);
  /**
   * QuarkTensorSpec:qscheme: (getter get_qscheme)
   *
   * The granularity of the scales. Default: per_tensor.
   */
  properties[PROP_QSCHEME] =
    g_param_spec_enum ("qscheme", "QScheme", "The granularity of the scales",
                       QUARK_TYPE_QSCHEME, QUARK_QSCHEME_PER_TENSOR, rw);
  /**
   * QuarkTensorSpec:ch-axis: (getter get_ch_axis)
   *
   * The channel axis of per_channel specs and the grouped axis of per_group
   * specs; negative values count from the end. Default: 0 (the output
   * channel of a Linear weight) for per_channel specs, -1 (the input
   * features, along which both built-in backends group) for per_group
   * specs, unless set.
   */
  properties[PROP_CH_AXIS] =
    g_param_spec_int ("ch-axis", "Channel axis", "The channel or grouped axis (negative counts from the end)",
                      -QUARK_TENSOR_MAX_DIMS, QUARK_TENSOR_MAX_DIMS - 1, 0, rw & ~G_PARAM_CONSTRUCT);
  /**
   * QuarkTensorSpec:group-size: (getter get_group_size)
   *
   * Elements per group for per_group specs; -1 means the whole axis, 0 means
   * unset. Default: 0.
   */
  properties[PROP_GROUP_SIZE] =
    g_param_spec_int ("group-size", "Group size", "Elements per group (-1: the whole axis, 0: unset)",
                      -1, G_MAXINT, 0, rw);
  /**
   * QuarkTensorSpec:symmetric: (getter get_symmetric)
   *
   * Whether the zero point is 0. Default: %TRUE.
   */
  properties[PROP_SYMMETRIC] =
    g_param_spec_boolean ("symmetric", "Symmetric", "Whether the zero point is 0",
                          TRUE, rw);
  /**
   * QuarkTensorSpec:narrow-range: (getter get_narrow_range)
   *
   * Whether integer codes drop the most negative value (signed) or the
   * largest value (unsigned). Default: %FALSE.
   */
  properties[PROP_NARROW_RANGE] =
    g_param_spec_boolean ("narrow-range", "Narrow range", "Whether integer codes use the narrow range",
                          FALSE, rw);
  /**
   * QuarkTensorSpec:is-dynamic: (getter get_is_dynamic)
   *
   * Whether the parameters are computed at run time for each input (no
   * stored scale). Default: %FALSE.
   */
  properties[PROP_IS_DYNAMIC] =
    g_param_spec_boolean ("is-dynamic", "Dynamic", "Whether the parameters are computed at run time",
                          FALSE, rw);
  /**
   * QuarkTensorSpec:round-method: (getter get_round_method)
   *
   * How scaled values become codes. Default: half_even.
   */
  properties[PROP_ROUND_METHOD] =
    g_param_spec_enum ("round-method", "Round method", "How scaled values become codes",
                       QUARK_TYPE_ROUND_MODE, QUARK_ROUND_HALF_EVEN, rw);
  /**
   * QuarkTensorSpec:scale-type: (getter get_scale_type)
   *
   * What values scales may take. Default: float.
   */
  properties[PROP_SCALE_TYPE] =
    g_param_spec_enum ("scale-type", "Scale type", "What values scales may take",
                       QUARK_TYPE_SCALE_TYPE, QUARK_SCALE_FLOAT, rw);

  /**
   * QuarkTensorSpec:scale-format: (getter get_scale_format)
   *
   * How scales are stored: float32, or E8M0 for OCP MX blocks (per_group
   * with the block size as group size). Default: float32.
   */
  properties[PROP_SCALE_FORMAT] =
    g_param_spec_enum ("scale-format", "Scale format", "How scales are stored",
                       QUARK_TYPE_SCALE_FORMAT, QUARK_SCALE_FORMAT_FLOAT32, rw);
  /**
   * QuarkTensorSpec:scale-calculation-mode: (getter get_scale_calculation_mode)
   *
   * How the shared exponent of an MX block is chosen. Default: even (AMD
   * Quark's default for its OCP MX specs).
   */
  properties[PROP_SCALE_CALCULATION_MODE] =
    g_param_spec_enum ("scale-calculation-mode", "Scale calculation mode",
                       "How the shared exponent of an MX block is chosen",
                       QUARK_TYPE_MX_SCALE_MODE, QUARK_MX_SCALE_EVEN, rw);
  /**
   * QuarkTensorSpec:observer: (getter get_observer)
   *
   * Which statistic sets the range of a weight. Default: min_max.
   */
  properties[PROP_OBSERVER] =
    g_param_spec_enum ("observer", "Observer", "Which statistic sets the range",
                       QUARK_TYPE_OBSERVER, QUARK_OBSERVER_MIN_MAX, rw);
  /**
   * QuarkTensorSpec:percentile: (getter get_percentile)
   *
   * The percentile q of the percentile observers, from 0 to 100. Default:
   * 99.999.
   */
  properties[PROP_PERCENTILE] =
    g_param_spec_double ("percentile", "Percentile", "The percentile of the percentile observers",
                         0.0, 100.0, 99.999, rw);
  /**
   * QuarkTensorSpec:block-size: (getter get_block_size)
   *
   * The [rows, columns] of the blocks of per_block specs (JSON
   * `"block_size": [128, 128]`), over the last two dimensions; %NULL when
   * unset.
   */
  properties[PROP_BLOCK_SIZE] =
    g_param_spec_variant ("block-size", "Block size", "Rows and columns of per_block blocks",
                          G_VARIANT_TYPE ("ai"), NULL, rw);
  /**
   * QuarkTensorSpec:quant-order: (getter get_quant_order)
   *
   * The float32 order of scaling, zero point and rounding in
   * quark_tensor_spec_fake_quantize(). Default: quark (the brevitas
   * backend's specs: brevitas). Set %QUARK_QUANT_ORDER_TORCH to reproduce
   * PyTorch's fake quantization bit for bit.
   */
  properties[PROP_QUANT_ORDER] =
    g_param_spec_enum ("quant-order", "Quantization order", "The float32 order of fake quantization",
                       QUARK_TYPE_QUANT_ORDER, QUARK_QUANT_ORDER_QUARK, rw);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
quark_tensor_spec_init (QuarkTensorSpec *self)
{
  self->ch_axis = CH_AXIS_UNSET;
}

/**
 * quark_tensor_spec_new:
 * @dtype: the quantized element type
 * @qscheme: the granularity of the scales
 *
 * Makes a spec with the other properties at their defaults (symmetric, channel
 * axis 0, round half to even, float scales, static).
 *
 * Returns: (transfer full): a new spec
 */
QuarkTensorSpec *
quark_tensor_spec_new (QuarkDType   dtype,
                       QuarkQScheme qscheme)
{
  return g_object_new (QUARK_TYPE_TENSOR_SPEC, "dtype", dtype, "qscheme", qscheme, NULL);
}

/**
 * quark_tensor_spec_copy:
 * @self: a #QuarkTensorSpec
 *
 * Copies a spec.
 *
 * Returns: (transfer full): a new spec equal to @self
 */
QuarkTensorSpec *
quark_tensor_spec_copy (QuarkTensorSpec *self)
{
  QuarkTensorSpec *copy;

  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), NULL);

  copy = g_object_new (QUARK_TYPE_TENSOR_SPEC, NULL);
  copy->dtype = self->dtype;
  copy->qscheme = self->qscheme;
  copy->ch_axis = self->ch_axis;
  copy->group_size = self->group_size;
  copy->symmetric = self->symmetric;
  copy->narrow_range = self->narrow_range;
  copy->is_dynamic = self->is_dynamic;
  copy->round_method = self->round_method;
  copy->quant_order = self->quant_order;
  copy->scale_type = self->scale_type;
  copy->scale_format = self->scale_format;
  copy->scale_calculation_mode = self->scale_calculation_mode;
  copy->observer = self->observer;
  copy->percentile = self->percentile;
  copy->block_size = self->block_size ? g_variant_ref (self->block_size) : NULL;
  return copy;
}

/**
 * quark_tensor_spec_equal:
 * @a: a #QuarkTensorSpec
 * @b: another #QuarkTensorSpec
 *
 * Compares two specs property by property.
 *
 * Returns: %TRUE if every property is equal
 */
gboolean
quark_tensor_spec_equal (QuarkTensorSpec *a,
                         QuarkTensorSpec *b)
{
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (a), FALSE);
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (b), FALSE);

  return a->dtype == b->dtype &&
         a->qscheme == b->qscheme &&
         effective_ch_axis (a) == effective_ch_axis (b) &&
         a->group_size == b->group_size &&
         a->symmetric == b->symmetric &&
         a->narrow_range == b->narrow_range &&
         a->is_dynamic == b->is_dynamic &&
         a->round_method == b->round_method &&
         a->quant_order == b->quant_order &&
         a->scale_type == b->scale_type &&
         a->scale_format == b->scale_format &&
         a->scale_calculation_mode == b->scale_calculation_mode &&
         a->observer == b->observer &&
         a->percentile == b->percentile &&
         ((a->block_size == NULL && b->block_size == NULL) ||
          (a->block_size && b->block_size && g_variant_equal (a->block_size, b->block_size)));
}

G_GNUC_PRINTF (5, 6)
static gboolean
spec_error (GError     **error,
            int          code,
            const char  *path,
            const char  *member,
            const char  *format,
            ...)
{
  g_autofree char *member_path = quark_json_path_join (path, member);
  g_autofree char *msg = NULL;
  va_list args;

  va_start (args, format);
  msg = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, QUARK_CONFIG_ERROR, code, "%s: %s", member_path, msg);
  return FALSE;
}

/**
 * quark_tensor_spec_validate:
 * @self: a #QuarkTensorSpec
 * @path: (nullable): the JSON path of the spec, for messages (for instance
 *   `global_quant_config.weight`)
 * @error: return location for a #GError
 *
 * Checks that the properties make a meaningful spec, independently of any
 * backend: the dtype is a quantized type (an integer of at most 32 bits, or
 * a minifloat), per_group has a group size, narrow range applies only to
 * integers, a float element type is symmetric and uses half-even rounding.
 * Backends check afterwards what they support.
 *
 * Returns: %TRUE if the spec is valid; %FALSE with a %QUARK_CONFIG_ERROR
 *   naming the member at fault
 */
gboolean
quark_tensor_spec_validate (QuarkTensorSpec  *self,
                            const char       *path,
                            GError          **error)
{
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  switch (self->dtype)
    {
    case QUARK_DTYPE_F64: case QUARK_DTYPE_F32: case QUARK_DTYPE_I64: case QUARK_DTYPE_U64:
    case QUARK_DTYPE_U32: case QUARK_DTYPE_BOOL: case QUARK_DTYPE_F8_E8M0:
      return spec_error (error, QUARK_CONFIG_ERROR_INVALID_VALUE, path, "dtype",
                         "%s is not a quantized element type",
                         quark_dtype_get_name (self->dtype));
    default:
      break;
    }

  if (self->qscheme == QUARK_QSCHEME_PER_GROUP && self->group_size == 0)
    return spec_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "group_size",
                       "qscheme per_group needs a positive group_size (or -1 for the whole axis)");

  if (quark_dtype_is_float (self->dtype))
    {
      if (self->narrow_range)
        return spec_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "narrow_range",
                           "narrow range applies to integer dtypes, not %s",
                           quark_dtype_get_name (self->dtype));
      if (!self->symmetric)
        return spec_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "symmetric",
                           "%s quantization is symmetric (no zero point)",
                           quark_dtype_get_name (self->dtype));
      if (self->round_method != QUARK_ROUND_HALF_EVEN)
        return spec_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "round_method",
                           "%s elements round half to even", quark_dtype_get_name (self->dtype));
    }

  if (self->qscheme == QUARK_QSCHEME_PER_BLOCK)
    {
      int rows, cols;
      if (!quark_tensor_spec_get_block_size (self, &rows, &cols))
        return spec_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "block_size",
                           "qscheme per_block needs block_size: [rows, columns], both positive");
    }

  if (self->scale_format == QUARK_SCALE_FORMAT_E4M3 &&
      (self->qscheme != QUARK_QSCHEME_PER_GROUP || self->group_size <= 0 || self->dtype != QUARK_DTYPE_FP4_E2M1 ||
       !self->symmetric))
    return spec_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "scale_format",
                       "e4m3 scales (NVFP4) go with symmetric per_group fp4 elements and a positive group_size");

  if (self->scale_format == QUARK_SCALE_FORMAT_E5M3 &&
      (self->qscheme != QUARK_QSCHEME_PER_GROUP || self->group_size <= 0 ||
       (self->dtype != QUARK_DTYPE_FP4_E2M1 && self->dtype != QUARK_DTYPE_FP6_E2M3 &&
        self->dtype != QUARK_DTYPE_FP6_E3M2)))
    return spec_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "scale_format",
                       "e5m3 scales go with per_group fp4 or fp6 elements and a positive group_size");

  if (self->scale_format == QUARK_SCALE_FORMAT_E8M0)
    {
      switch (self->dtype)
        {
        case QUARK_DTYPE_F8_E4M3: case QUARK_DTYPE_F8_E5M2: case QUARK_DTYPE_FP6_E2M3:
        case QUARK_DTYPE_FP6_E3M2: case QUARK_DTYPE_FP4_E2M1: case QUARK_DTYPE_I8:
          break;
        default:
          return spec_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "scale_format",
                             "e8m0 (OCP MX) scales take fp8_e4m3, fp8_e5m2, fp6_e2m3, fp6_e3m2, fp4 "
                             "or int8 elements, not %s", quark_dtype_get_name (self->dtype));
        }
      if (self->qscheme != QUARK_QSCHEME_PER_GROUP || self->group_size <= 0)
        return spec_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "qscheme",
                           "e8m0 (OCP MX) scales need qscheme per_group with a positive group_size (32)");
      if (!self->symmetric)
        return spec_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "symmetric",
                           "OCP MX blocks are symmetric");
    }

  if (self->narrow_range && quark_dtype_get_bits (self->dtype) < 2)
    return spec_error (error, QUARK_CONFIG_ERROR_INVALID_COMBINATION, path, "narrow_range",
                       "narrow range needs at least 2 bits");

  return TRUE;
}

/**
 * quark_tensor_spec_get_dtype: (get-property dtype)
 * @self: a #QuarkTensorSpec
 *
 * Gets the quantized element type.
 *
 * Returns: the quantized element type
 */
QuarkDType
quark_tensor_spec_get_dtype (QuarkTensorSpec *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), QUARK_DTYPE_I8);
  return self->dtype;
}

/**
 * quark_tensor_spec_get_qscheme: (get-property qscheme)
 * @self: a #QuarkTensorSpec
 *
 * Gets the granularity of the scales.
 *
 * Returns: the granularity of the scales
 */
QuarkQScheme
quark_tensor_spec_get_qscheme (QuarkTensorSpec *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), QUARK_QSCHEME_PER_TENSOR);
  return self->qscheme;
}

/**
 * quark_tensor_spec_get_ch_axis: (get-property ch-axis)
 * @self: a #QuarkTensorSpec
 *
 * Gets the channel axis (negative counts from the end).
 *
 * Returns: the channel axis (negative counts from the end)
 */
int
quark_tensor_spec_get_ch_axis (QuarkTensorSpec *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), 0);
  return effective_ch_axis (self);
}

/**
 * quark_tensor_spec_get_group_size: (get-property group-size)
 * @self: a #QuarkTensorSpec
 *
 * Gets the group size (-1: the whole axis.
 *
 * Returns: the group size (-1: the whole axis, 0: unset)
 */
int
quark_tensor_spec_get_group_size (QuarkTensorSpec *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), 0);
  return self->group_size;
}

/**
 * quark_tensor_spec_get_symmetric: (get-property symmetric)
 * @self: a #QuarkTensorSpec
 *
 * Checks whether the zero point is 0.
 *
 * Returns: whether the zero point is 0
 */
gboolean
quark_tensor_spec_get_symmetric (QuarkTensorSpec *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), TRUE);
  return self->symmetric;
}

/**
 * quark_tensor_spec_get_narrow_range: (get-property narrow-range)
 * @self: a #QuarkTensorSpec
 *
 * Checks whether integer codes use the narrow range.
 *
 * Returns: whether integer codes use the narrow range
 */
gboolean
quark_tensor_spec_get_narrow_range (QuarkTensorSpec *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), FALSE);
  return self->narrow_range;
}

/**
 * quark_tensor_spec_get_is_dynamic: (get-property is-dynamic)
 * @self: a #QuarkTensorSpec
 *
 * Checks whether the parameters are computed at run time.
 *
 * Returns: whether the parameters are computed at run time
 */
gboolean
quark_tensor_spec_get_is_dynamic (QuarkTensorSpec *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), FALSE);
  return self->is_dynamic;
}

/**
 * quark_tensor_spec_has_static_scale:
 * @self: a #QuarkTensorSpec
 *
 * Checks whether quantizing with the spec needs a scale fixed ahead of time
 * (from calibration, or stored in a checkpoint). Static specs do. Dynamic
 * specs compute their scales from each tensor, except NVFP4's two-level
 * scales (%QUARK_SCALE_FORMAT_E4M3): a dynamic NVFP4 spec computes its group
 * scales from each tensor, under one static per-tensor global scale (what
 * compressed-tensors calls `dynamic: "local"`).
 *
 * Returns: whether the spec takes a static scale
 */
gboolean
quark_tensor_spec_has_static_scale (QuarkTensorSpec *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), FALSE);
  return !self->is_dynamic || self->scale_format == QUARK_SCALE_FORMAT_E4M3;
}

/**
 * quark_tensor_spec_get_quant_order: (get-property quant-order)
 * @self: a #QuarkTensorSpec
 *
 * Gets the float32 order of fake quantization.
 *
 * Returns: the order
 */
QuarkQuantOrder
quark_tensor_spec_get_quant_order (QuarkTensorSpec *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), QUARK_QUANT_ORDER_QUARK);
  return self->quant_order;
}

/**
 * quark_tensor_spec_get_round_method: (get-property round-method)
 * @self: a #QuarkTensorSpec
 *
 * Gets the rounding mode.
 *
 * Returns: the rounding mode
 */
QuarkRoundMode
quark_tensor_spec_get_round_method (QuarkTensorSpec *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), QUARK_ROUND_HALF_EVEN);
  return self->round_method;
}

/**
 * quark_tensor_spec_get_scale_type: (get-property scale-type)
 * @self: a #QuarkTensorSpec
 *
 * Gets what values scales may take.
 *
 * Returns: what values scales may take
 */
QuarkScaleType
quark_tensor_spec_get_scale_type (QuarkTensorSpec *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), QUARK_SCALE_FLOAT);
  return self->scale_type;
}

/**
 * quark_tensor_spec_get_scale_format: (get-property scale-format)
 * @self: a #QuarkTensorSpec
 *
 * Gets how scales are stored.
 *
 * Returns: the scale format
 */
QuarkScaleFormat
quark_tensor_spec_get_scale_format (QuarkTensorSpec *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), QUARK_SCALE_FORMAT_FLOAT32);
  return self->scale_format;
}

/**
 * quark_tensor_spec_get_scale_calculation_mode: (get-property scale-calculation-mode)
 * @self: a #QuarkTensorSpec
 *
 * Gets how MX shared exponents are chosen.
 *
 * Returns: the mode
 */
QuarkMxScaleMode
quark_tensor_spec_get_scale_calculation_mode (QuarkTensorSpec *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), QUARK_MX_SCALE_EVEN);
  return self->scale_calculation_mode;
}

static int
block_dim (QuarkTensorSpec *self, int which)
{
  int rows = 0, cols = 0;
  quark_tensor_spec_get_block_size (self, &rows, &cols);
  return which == 0 ? rows : cols;
}

typedef struct {
  const guint8 *codes;
  QuarkDType dtype;
  gsize esize;
  float scale;
  int32_t zero_point;
  const QuarkFpFormat *fmt;
  float *out;
} DequantData;

static void
dequantize_chunk (size_t offset, size_t len, void *data)
{
  DequantData *d = data;
  if (d->fmt)
    quark_kernel_fp_dequantize_f32 (d->fmt, d->codes + offset, len, d->scale, d->out + offset);
  else
    quark_kernel_dequantize_int_f32 (d->codes + offset * d->esize, d->dtype, len, d->scale,
                                     d->zero_point, d->out + offset);
}

static gboolean
check_param_tensor (QuarkTensor *t, const char *what, QuarkTensor *codes,
                    const QuarkKernelLayout *l, GError **error)
{
  if (quark_tensor_get_n_elements (t) != l->n_params)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "tensor %s: %" G_GUINT64_FORMAT " %s values, but tensor %s needs %" G_GSIZE_FORMAT,
                   quark_tensor_get_name (t), quark_tensor_get_n_elements (t), what,
                   quark_tensor_get_name (codes), l->n_params);
      return FALSE;
    }
  return TRUE;
}

/**
 * quark_tensor_spec_dequantize:
 * @self: the spec the codes were made with
 * @codes: the codes (one per byte for sub-byte types)
 * @scale: (nullable): the scales: float32 (one per tensor, channel or
 *   group), or E8M0 bytes for MX specs; %NULL for float16 and bfloat16
 *   casts, which have none
 * @zero_point: (nullable): the zero points of integer specs, %NULL for 0
 * @error: return location for a #GError
 *
 * Turns codes back into floats: the value itself for float16 and bfloat16
 * casts, (q − z) · s for integers, decode (q) · s for
 * minifloats, decode (q) · 2^(e − 127) per block for MX (MXINT8: q / 64 ·
 * 2^(e − 127)), each a single binary32 multiply. The result has the name and
 * shape of @codes.
 *
 * Returns: (transfer full): a float32 tensor, or %NULL with
 *   %QUARK_ERROR_INVALID_ARGUMENT when the tensors do not fit the spec
 */
QuarkTensor *
quark_tensor_spec_dequantize (QuarkTensorSpec  *self,
                              QuarkTensor      *codes,
                              QuarkTensor      *scale,
                              QuarkTensor      *zero_point,
                              GError          **error)
{
  QuarkKernelLayout l;
  guint n_dims;
  const gint64 *shape;
  gsize n, n_scale;
  g_autofree float *out = NULL;
  g_autofree float *scales = NULL;
  g_autofree float *zps = NULL;
  g_autoptr(GBytes) bytes = NULL;
  gboolean mx, scale_fits;
  QuarkDType scale_dtype;

  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (codes), NULL);
  g_return_val_if_fail (scale == NULL || QUARK_IS_TENSOR (scale), NULL);
  g_return_val_if_fail (zero_point == NULL || QUARK_IS_TENSOR (zero_point), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (self->dtype == QUARK_DTYPE_F16 || self->dtype == QUARK_DTYPE_BF16)
    {
      gsize count;
      g_autofree float *values = NULL;
      g_autoptr(GBytes) cast = NULL;
      guint nd;
      const gint64 *sh = quark_tensor_get_shape (codes, &nd);
      if (quark_tensor_get_dtype (codes) != self->dtype)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                       "tensor %s: dtype %s, but the spec's is %s", quark_tensor_get_name (codes),
                       quark_dtype_get_name (quark_tensor_get_dtype (codes)), quark_dtype_get_name (self->dtype));
          return NULL;
        }
      values = quark_tensor_to_floats (codes, &count, error);
      if (values == NULL)
        return NULL;
      cast = g_bytes_new_take (g_steal_pointer (&values), count * sizeof (float));
      return quark_tensor_new (quark_tensor_get_name (codes), QUARK_DTYPE_F32, sh, nd, cast, error);
    }
  if (scale == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "tensor %s: a %s spec needs scales", quark_tensor_get_name (codes),
                   quark_dtype_get_name (self->dtype));
      return NULL;
    }

  shape = quark_tensor_get_shape (codes, &n_dims);
  n = quark_tensor_get_n_elements (codes);
  mx = self->scale_format == QUARK_SCALE_FORMAT_E8M0;
  if (quark_tensor_get_dtype (codes) != self->dtype)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "tensor %s: dtype %s, but the spec's is %s", quark_tensor_get_name (codes),
                   quark_dtype_get_name (quark_tensor_get_dtype (codes)), quark_dtype_get_name (self->dtype));
      return NULL;
    }
  if (!(self->qscheme == QUARK_QSCHEME_PER_BLOCK
        ? quark_kernel_layout_init_blocks (&l, shape, n_dims, block_dim (self, 0), block_dim (self, 1))
        : quark_kernel_layout_init (&l, shape, n_dims, self->qscheme, effective_ch_axis (self), self->group_size)))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "tensor %s: its shape does not fit the spec", quark_tensor_get_name (codes));
      return NULL;
    }
  if (!check_param_tensor (scale, "scale", codes, &l, error) ||
      (zero_point && !check_param_tensor (zero_point, "zero point", codes, &l, error)))
    return NULL;
  scale_dtype = quark_tensor_get_dtype (scale);
  switch (self->scale_format)
    {
    case QUARK_SCALE_FORMAT_E8M0:    /* E8M0, or its bytes as stored */
      scale_fits = scale_dtype == QUARK_DTYPE_F8_E8M0 || scale_dtype == QUARK_DTYPE_U8;
      break;
    case QUARK_SCALE_FORMAT_E5M3:    /* E5M3 codes are stored as bytes */
      scale_fits = scale_dtype == QUARK_DTYPE_U8;
      break;
    case QUARK_SCALE_FORMAT_E4M3:    /* the E4M3 scales (a global scale of 1), or the effective ones */
      scale_fits = scale_dtype == QUARK_DTYPE_F8_E4M3 || scale_dtype == QUARK_DTYPE_F32;
      break;
    case QUARK_SCALE_FORMAT_FLOAT32:
    default:
      scale_fits = quark_dtype_is_float (scale_dtype) && scale_dtype != QUARK_DTYPE_F8_E8M0;
      break;
    }
  if (!scale_fits)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "tensor %s: scales of dtype %s do not fit a %s spec", quark_tensor_get_name (scale),
                   quark_dtype_get_name (scale_dtype),
                   mx ? "MX" : self->scale_format == QUARK_SCALE_FORMAT_E5M3 ? "E5M3-scale" : "float-scale");
      return NULL;
    }

  out = g_new (float, MAX (n, 1));
  if (mx)
    {
      QuarkMxParams params = { self->dtype, self->scale_calculation_mode, l.group, FALSE };
      quark_kernel_mx_dequantize_f32 (&params, quark_tensor_peek_data (codes, NULL),
                                      quark_tensor_peek_data (scale, NULL), l.rows, l.cols, out);
    }
  else
    {
      DequantData d = { quark_tensor_peek_data (codes, NULL), self->dtype,
                        quark_dtype_get_element_size (self->dtype), 0, 0, NULL, out };
      if (quark_dtype_is_float (self->dtype))
        d.fmt = quark_fp_format_for_dtype (self->dtype);
      if (self->scale_format == QUARK_SCALE_FORMAT_E5M3)
        {
          const guint8 *codes_e5m3 = quark_tensor_peek_data (scale, &n_scale);
          scales = g_new (float, MAX (n_scale, 1));
          for (gsize k = 0; k < n_scale; k++)
            scales[k] = quark_kernel_e5m3_to_f32 (codes_e5m3[k]);
        }
      else
        scales = quark_tensor_to_floats (scale, &n_scale, error);
      if (scales == NULL)
        return NULL;
      if (zero_point && (zps = quark_tensor_to_floats (zero_point, &n_scale, error)) == NULL)
        return NULL;
      for (gsize p = 0; p < l.n_params; p++)
        {
          d.scale = scales[p];
          d.zero_point = zps ? (int32_t) zps[p] : 0;
          quark_kernel_layout_foreach_chunk (&l, p, dequantize_chunk, &d);
        }
    }
  bytes = g_bytes_new_take (g_steal_pointer (&out), n * sizeof (float));
  return quark_tensor_new (quark_tensor_get_name (codes), QUARK_DTYPE_F32, shape, n_dims, bytes, error);
}

/* Quantizes a chunk into the codes buffer of @d, then dequantizes it. */
typedef struct {
  const float *x;
  guint8 *codes;
  QuarkKernelIntParams ip;
  DequantData d;
  gint32 *shifted;      /* QUARK_QUANT_ORDER_TORCH: codes minus the zero point */
  gboolean torch;
  gboolean nonfinite_nan;   /* QUARK_QUANT_ORDER_BREVITAS minifloats */
} FakeData;

/* Codes of a chunk, and (unless only the codes are wanted: no output
 * buffer) their values. */
static void
fake_quantize_chunk (size_t offset, size_t len, void *data)
{
  FakeData *f = data;
  gboolean values = f->d.out != NULL;

  if (f->d.fmt)
    {
      quark_kernel_fp_quantize_f32 (f->d.fmt, f->x + offset, len, f->d.scale, f->codes + offset);
      if (f->nonfinite_nan)
        {
          /* Brevitas: an infinite input has no finite step, it becomes NaN
           * (the format's NaN code; formats without one keep the
           * saturated code and the value is set below) */
          for (gsize i = offset; i < offset + len; i++)
            if (!isfinite (f->x[i]))
              f->codes[i] = (guint8) quark_kernel_fp_encode (f->d.fmt, NAN, FALSE);
          if (values)
            {
              dequantize_chunk (offset, len, &f->d);
              for (gsize i = offset; i < offset + len; i++)
                if (!isfinite (f->x[i]))
                  f->d.out[i] = NAN;
            }
          return;
        }
    }
  else if (f->torch)
    {
      f->ip.offset = offset;
      quark_kernel_quantize_int_f32 (f->x + offset, len, &f->ip, QUARK_DTYPE_I32, f->shifted + offset);
      for (gsize i = offset; values && i < offset + len; i++)
        f->d.out[i] = (float) f->shifted[i] * f->d.scale;
      return;
    }
  else
    {
      f->ip.offset = offset;
      quark_kernel_quantize_int_f32 (f->x + offset, len, &f->ip, f->d.dtype, f->codes + offset * f->d.esize);
    }
  if (values)
    dequantize_chunk (offset, len, &f->d);
}

/* QUARK_QUANT_ORDER_TORCH: the codes of a chunk, shifted codes plus the
 * zero point (within [qmin, qmax] by construction). */
static void
torch_codes_chunk (size_t offset, size_t len, void *data)
{
  FakeData *f = data;
  for (gsize i = offset; i < offset + len; i++)
    {
      gint32 q = f->shifted[i] + f->d.zero_point;
      switch (f->d.esize)
        {
        case 1: f->codes[i] = (guint8) q; break;
        case 2: ((guint16 *) f->codes)[i] = (guint16) q; break;
        default: ((gint32 *) f->codes)[i] = q; break;
        }
    }
}

/* Quantizes @x with given parameters: the codes (@want_codes), or the
 * codes dequantized again. */
static QuarkTensor *
quantize_with_params (QuarkTensorSpec  *self,
                      QuarkTensor      *x,
                      QuarkTensor      *scale,
                      QuarkTensor      *zero_point,
                      gboolean          want_codes,
                      GError          **error)
{
  g_autofree float *values = NULL, *scales = NULL, *zps = NULL, *out = NULL;
  g_autofree guint8 *codes = NULL;
  g_autofree gint32 *shifted = NULL;
  g_autoptr(GBytes) bytes = NULL;
  const gint64 *shape;
  guint n_dims;
  gsize n, n_scale;
  QuarkKernelLayout l;
  gint64 qmin = 0, qmax = 0;
  FakeData f = { 0 };
  const float *in;

  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (x), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (scale), NULL);
  g_return_val_if_fail (zero_point == NULL || QUARK_IS_TENSOR (zero_point), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (self->scale_format != QUARK_SCALE_FORMAT_FLOAT32 ||
      !(quark_dtype_is_integer (self->dtype) || quark_fp_format_for_dtype (self->dtype) != NULL) ||
      self->dtype == QUARK_DTYPE_F16 || self->dtype == QUARK_DTYPE_BF16)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "tensor %s: quantization with given scales needs an integer or minifloat spec "
                   "with float scales, not %s", quark_tensor_get_name (x), quark_dtype_get_name (self->dtype));
      return NULL;
    }
  shape = quark_tensor_get_shape (x, &n_dims);
  if (!quark_kernel_layout_init (&l, shape, n_dims, self->qscheme, effective_ch_axis (self), self->group_size))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "tensor %s: its shape does not fit the spec", quark_tensor_get_name (x));
      return NULL;
    }
  if (!check_param_tensor (scale, "scale", x, &l, error) ||
      (zero_point && !check_param_tensor (zero_point, "zero point", x, &l, error)))
    return NULL;
  /* float32 is read in place; other dtypes widened once */
  if (quark_tensor_get_dtype (x) == QUARK_DTYPE_F32)
    {
      in = quark_tensor_peek_data (x, NULL);
      n = quark_tensor_get_n_elements (x);
    }
  else
    in = values = quark_tensor_to_floats (x, &n, error);
  if (in == NULL || (scales = quark_tensor_to_floats (scale, &n_scale, error)) == NULL ||
      (zero_point && (zps = quark_tensor_to_floats (zero_point, &n_scale, error)) == NULL))
    return NULL;

  f.x = in;
  f.d.dtype = self->dtype;
  f.d.fmt = quark_dtype_is_integer (self->dtype) ? NULL : quark_fp_format_for_dtype (self->dtype);
  f.d.esize = f.d.fmt ? 1 : quark_dtype_get_element_size (self->dtype);
  codes = g_malloc (MAX (n, 1) * f.d.esize);
  out = want_codes ? NULL : g_new (float, MAX (n, 1));
  f.codes = codes;
  f.d.codes = codes;
  if (self->quant_order == QUARK_QUANT_ORDER_TORCH)
    shifted = g_new (gint32, MAX (n, 1));
  f.shifted = shifted;
  f.nonfinite_nan = f.d.fmt != NULL && self->quant_order == QUARK_QUANT_ORDER_BREVITAS;
  f.d.out = out;
  if (!f.d.fmt)
    quark_dtype_get_integer_range (self->dtype, self->narrow_range, &qmin, &qmax);
  for (gsize p = 0; p < l.n_params; p++)
    {
      f.d.scale = scales[p];
      f.d.zero_point = zps ? (int32_t) zps[p] : 0;
      f.ip = (QuarkKernelIntParams) { 1.0f / scales[p], scales[p], zps ? zps[p] : 0.0f, (int32_t) qmin,
                                      (int32_t) qmax, self->round_method, 0, 0,
                                      self->quant_order == QUARK_QUANT_ORDER_BREVITAS };
      if (!f.d.fmt && self->quant_order == QUARK_QUANT_ORDER_TORCH)
        {
          /* R (x · fl (1/s)) + z clamped to [qmin, qmax] is R (x · fl (1/s))
           * clamped to [qmin - z, qmax - z], plus z: quantized with zero
           * point 0 into int32 codes, dequantized as (q + z - z) · s */
          f.ip.zero_point = 0.0f;
          f.ip.qmin = (int32_t) (qmin - (gint64) f.d.zero_point);
          f.ip.qmax = (int32_t) (qmax - (gint64) f.d.zero_point);
          f.torch = TRUE;
        }
      quark_kernel_layout_foreach_chunk (&l, p, fake_quantize_chunk, &f);
      if (want_codes && f.torch)
        quark_kernel_layout_foreach_chunk (&l, p, torch_codes_chunk, &f);
    }
  if (want_codes)
    {
      bytes = g_bytes_new_take (g_steal_pointer (&codes), n * f.d.esize);
      return quark_tensor_new (quark_tensor_get_name (x), self->dtype, shape, n_dims, bytes, error);
    }
  bytes = g_bytes_new_take (g_steal_pointer (&out), n * sizeof (float));
  return quark_tensor_new (quark_tensor_get_name (x), QUARK_DTYPE_F32, shape, n_dims, bytes, error);
}

/**
 * quark_tensor_spec_quantize:
 * @self: an integer or minifloat spec with float scales
 * @x: the values (any float dtype)
 * @scale: the scales: one, or one per channel or group of @self
 * @zero_point: (nullable): the zero points of integer specs, %NULL for 0
 * @error: return location for a #GError
 *
 * Quantizes @x with given parameters, in the order of
 * #QuarkTensorSpec:quant-order, and returns the codes: the inverse of
 * quark_tensor_spec_dequantize(), which reads them back. The codes tensor
 * has the spec's dtype, one code per element (sub-byte types one per
 * byte). quark_tensor_spec_fake_quantize() is this followed by the
 * dequantization.
 *
 * Returns: (transfer full): the codes, shaped like @x, or %NULL with the
 *   errors of quark_tensor_spec_fake_quantize()
 */
QuarkTensor *
quark_tensor_spec_quantize (QuarkTensorSpec  *self,
                            QuarkTensor      *x,
                            QuarkTensor      *scale,
                            QuarkTensor      *zero_point,
                            GError          **error)
{
  return quantize_with_params (self, x, scale, zero_point, TRUE, error);
}

/**
 * quark_tensor_spec_fake_quantize:
 * @self: an integer or minifloat spec with float scales
 * @x: the values (any float dtype)
 * @scale: the scales: one, or one per channel or group of @self
 * @zero_point: (nullable): the zero points of integer specs, %NULL for 0
 * @error: return location for a #GError
 *
 * Quantizes @x with given parameters and dequantizes it again, as a static
 * activation quantizer does at inference: integers
 * q = clamp (R (x · fl (1/s) + z), qmin, qmax) with the spec's rounding (or
 * in the order of #QuarkTensorSpec:quant-order: Brevitas's x / s, or
 * PyTorch's R (x · fl (1/s)) + z),
 * minifloats q = encode (clamp (x / s, ±max)), then the same dequantization
 * as quark_tensor_spec_dequantize(). Runtimes that evaluate a quantized
 * model in float use it for the activations.
 *
 * Returns: (transfer full): a float32 tensor shaped like @x, or %NULL with
 *   %QUARK_ERROR_INVALID_ARGUMENT when the tensors do not fit the spec or
 *   %QUARK_ERROR_UNSUPPORTED_SCHEME for MX and E5M3-scale specs
 */
QuarkTensor *
quark_tensor_spec_fake_quantize (QuarkTensorSpec  *self,
                                 QuarkTensor      *x,
                                 QuarkTensor      *scale,
                                 QuarkTensor      *zero_point,
                                 GError          **error)
{
  return quantize_with_params (self, x, scale, zero_point, FALSE, error);
}

/**
 * quark_tensor_spec_get_block_size:
 * @self: a #QuarkTensorSpec
 * @rows: (out) (optional): rows per block
 * @cols: (out) (optional): columns per block
 *
 * Gets the block size of per_block specs.
 *
 * Returns: %TRUE if the block size is set to two positive integers
 */
gboolean
quark_tensor_spec_get_block_size (QuarkTensorSpec *self,
                                  int             *rows,
                                  int             *cols)
{
  gsize n = 0;
  const gint32 *v;

  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), FALSE);

  if (self->block_size == NULL)
    return FALSE;
  v = g_variant_get_fixed_array (self->block_size, &n, sizeof (gint32));
  if (n != 2 || v[0] <= 0 || v[1] <= 0)
    return FALSE;
  if (rows)
    *rows = v[0];
  if (cols)
    *cols = v[1];
  return TRUE;
}

/**
 * quark_tensor_spec_get_observer: (get-property observer)
 * @self: a #QuarkTensorSpec
 *
 * Gets which statistic sets the range.
 *
 * Returns: the observer
 */
QuarkObserver
quark_tensor_spec_get_observer (QuarkTensorSpec *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), QUARK_OBSERVER_MIN_MAX);
  return self->observer;
}

/**
 * quark_tensor_spec_get_percentile: (get-property percentile)
 * @self: a #QuarkTensorSpec
 *
 * Gets the percentile of the percentile observers.
 *
 * Returns: the percentile, from 0 to 100
 */
double
quark_tensor_spec_get_percentile (QuarkTensorSpec *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), 99.999);
  return self->percentile;
}

/**
 * quark_tensor_spec_to_string:
 * @self: a #QuarkTensorSpec
 *
 * Formats the spec as compact JSON, for messages and summaries.
 *
 * Returns: (transfer full): the JSON text
 */
char *
quark_tensor_spec_to_string (QuarkTensorSpec *self)
{
  g_autoptr(JsonNode) node = NULL;

  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (self), NULL);

  node = quark_json_serialize_properties (G_OBJECT (self));
  return quark_json_to_string (node, FALSE);
}
