/* quark-model-quantizer.c: the quantizer interface
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-model-quantizer.h"
#include "quark-model-private.h"
#include "quark-buffer.h"
#include "quark-checkpoint-writer-private.h"
#include "quark-error.h"
#include "quark-json.h"

/**
 * QuarkModelQuantizer:
 *
 * Applies a [iface@Quark.QuantizationConfig] to a [class@Quark.Model].
 *
 * A quantizer is made for one config (its construct-only
 * [property@Quark.ModelQuantizer:config] property), usually by
 * [method@Quark.Registry.new_quantizer]. It turns a float model into a
 * quantized one: for each quantized layer the integer or minifloat codes
 * and their scales and zero points, named as in AMD Quark checkpoints
 * (`layer.weight`, `layer.weight_scale`, `layer.weight_zero_point`,
 * `layer.input_scale`, …); other tensors pass through untouched and
 * uncopied.
 *
 * Long work reports progress through [signal@Quark.ModelQuantizer::progress]
 * as units done out of a total, and stops with %G_IO_ERROR_CANCELLED when its
 * #GCancellable is cancelled. The async form runs the work in a thread and
 * emits the progress signal in the thread-default main context of the
 * caller, so Python and GJS handlers run on their main loop.
 *
 * One quantizer may run on several models at once from several threads.
 */

enum {
  SIGNAL_PROGRESS,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_INTERFACE (QuarkModelQuantizer, quark_model_quantizer, G_TYPE_OBJECT)

static QuarkModel *
quark_model_quantizer_real_quantize_model (QuarkModelQuantizer  *self,
                                           QuarkModel           *model,
                                           QuarkCalibration     *calibration,
                                           GCancellable         *cancellable,
                                           GError              **error)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED,
               "%s does not implement quantize_model", G_OBJECT_TYPE_NAME (self));
  return NULL;
}

static QuarkModel *
quark_model_quantizer_real_quantize_tensor (QuarkModelQuantizer  *self,
                                            QuarkTensor          *tensor,
                                            QuarkTensorSpec      *spec,
                                            GError              **error)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
               "%s does not quantize single tensors", G_OBJECT_TYPE_NAME (self));
  return NULL;
}

static QuarkModel *
quark_model_quantizer_real_dequantize_model (QuarkModelQuantizer  *self,
                                             QuarkModel           *quantized,
                                             GError              **error)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
               "%s does not read checkpoints back", G_OBJECT_TYPE_NAME (self));
  return NULL;
}

static gboolean
quark_model_quantizer_real_quantize_model_to_writer (QuarkModelQuantizer    *self,
                                                     QuarkModel             *model,
                                                     QuarkCalibration       *calibration,
                                                     QuarkCheckpointWriter  *writer,
                                                     GCancellable           *cancellable,
                                                     GError                **error)
{
  g_autoptr(QuarkModel) out = QUARK_MODEL_QUANTIZER_GET_IFACE (self)->quantize_model (self, model, calibration,
                                                                                      cancellable, error);
  return out != NULL && quark_checkpoint_writer_add_model (writer, out, error);
}

static QuarkModel *
quark_model_quantizer_real_prepare_model (QuarkModelQuantizer  *self,
                                          QuarkModel           *model,
                                          GCancellable         *cancellable,
                                          GError              **error)
{
  return g_object_ref (model);
}

static gboolean
quark_model_quantizer_real_prepare_needs_calibration (QuarkModelQuantizer *self)
{
  return FALSE;
}

static gboolean
quark_model_quantizer_real_check_model (QuarkModelQuantizer *self, QuarkModel *model, GError **error)
{
  return TRUE;
}

static QuarkModel *
quark_model_quantizer_real_prepare_model_with_calibration (QuarkModelQuantizer  *self,
                                                           QuarkModel           *model,
                                                           QuarkCalibration     *calibration,
                                                           GCancellable         *cancellable,
                                                           GError              **error)
{
  return QUARK_MODEL_QUANTIZER_GET_IFACE (self)->prepare_model (self, model, cancellable, error);
}

static gboolean
quark_model_quantizer_real_activation_params (QuarkModelQuantizer  *self,
                                              QuarkTensorSpec      *spec,
                                              QuarkCalibration     *calibration,
                                              const char           *layer_name,
                                              QuarkRole             role,
                                              QuarkTensor         **scale,
                                              QuarkTensor         **zero_point,
                                              GError              **error)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
               "%s does not compute activation scales", G_OBJECT_TYPE_NAME (self));
  return FALSE;
}

static QuarkModel *
quark_model_quantizer_real_quantize_activation (QuarkModelQuantizer  *self,
                                                QuarkTensor          *tensor,
                                                QuarkTensorSpec      *spec,
                                                QuarkTensor          *scale,
                                                QuarkTensor          *zero_point,
                                                GError              **error)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
               "%s does not quantize activations", G_OBJECT_TYPE_NAME (self));
  return NULL;
}

static QuarkTensor *
quark_model_quantizer_real_fake_quantize_activation (QuarkModelQuantizer  *self,
                                                     QuarkTensor          *tensor,
                                                     QuarkTensorSpec      *spec,
                                                     QuarkTensor          *scale,
                                                     QuarkTensor          *zero_point,
                                                     GError              **error)
{
  if (scale == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "tensor %s: %s does not fake-quantize activations without given scales",
                   quark_tensor_get_name (tensor), G_OBJECT_TYPE_NAME (self));
      return NULL;
    }
  return quark_tensor_spec_fake_quantize (spec, tensor, scale, zero_point, error);
}

static void
quark_model_quantizer_default_init (QuarkModelQuantizerInterface *iface)
{
  iface->fake_quantize_activation = quark_model_quantizer_real_fake_quantize_activation;
  iface->activation_params = quark_model_quantizer_real_activation_params;
  iface->quantize_activation = quark_model_quantizer_real_quantize_activation;
  iface->prepare_model = quark_model_quantizer_real_prepare_model;
  iface->prepare_needs_calibration = quark_model_quantizer_real_prepare_needs_calibration;
  iface->check_model = quark_model_quantizer_real_check_model;
  iface->prepare_model_with_calibration = quark_model_quantizer_real_prepare_model_with_calibration;
  iface->quantize_model_to_writer = quark_model_quantizer_real_quantize_model_to_writer;
  iface->dequantize_model = quark_model_quantizer_real_dequantize_model;
  iface->quantize_model = quark_model_quantizer_real_quantize_model;
  iface->quantize_tensor = quark_model_quantizer_real_quantize_tensor;

  /**
   * QuarkModelQuantizer:config:
   *
   * The config this quantizer applies. Implementations override this
   * construct-only property.
   */
  g_object_interface_install_property (iface,
    g_param_spec_object ("config", "Config", "The config this quantizer applies",
                         QUARK_TYPE_QUANTIZATION_CONFIG,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  /**
   * QuarkModelQuantizer::progress:
   * @self: the quantizer
   * @done: units of work done
   * @total: units of work in all
   * @item: (nullable): what was just done (a tensor name), or %NULL
   *
   * Reports progress of quark_model_quantizer_quantize_model(). The units
   * are the backend's (libquark's backends count elements); @done never
   * decreases during one run and equals @total at the end.
   */
  signals[SIGNAL_PROGRESS] =
    g_signal_new ("progress",
                  G_TYPE_FROM_INTERFACE (iface),
                  G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL,
                  G_TYPE_NONE, 3, G_TYPE_UINT64, G_TYPE_UINT64, G_TYPE_STRING);
}

/* What every quantization checks of its input before and after the
 * backend's work: no codes quantized again, no output computed from files
 * that changed meanwhile. */
static gboolean
check_not_quantized (QuarkModel *model, GError **error)
{
  g_autofree char *reason = NULL;

  if (!quark_model_is_quantized (model, &reason))
    return TRUE;
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
               "the model is already quantized (%s); dequantize it first "
               "(quark_model_quantizer_dequantize_model(), or quark quantize --requantize)", reason);
  return FALSE;
}

/* Not cancelled, and a float model */
static gboolean
check_model_to_quantize (QuarkModel *model, GCancellable *cancellable, GError **error)
{
  if (g_cancellable_is_cancelled (cancellable))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Operation was cancelled");
      return FALSE;
    }
  return check_not_quantized (model, error);
}

/* What a checkpoint's config.json holds unless the backend says otherwise:
 * the input model's metadata with the config that quantized it. */
static JsonNode *
default_metadata (QuarkModelQuantizer *self, QuarkModel *model)
{
  JsonNode *metadata = quark_model_get_metadata (model), *result;

  if (metadata && JSON_NODE_HOLDS_OBJECT (metadata))
    result = quark_json_copy (metadata);
  else
    {
      JsonObject *empty = json_object_new ();
      result = json_node_init_object (json_node_alloc (), empty);
      json_object_unref (empty);
    }
  if (!json_object_has_member (json_node_get_object (result), "quantization_config"))
    json_object_set_member (json_node_get_object (result), "quantization_config",
                            quark_quantization_config_to_json (quark_model_quantizer_get_config (self)));
  return result;
}

/**
 * quark_model_quantizer_get_config:
 * @self: a #QuarkModelQuantizer
 *
 * Gets the config this quantizer applies.
 *
 * Returns: (transfer none): the config
 */
QuarkQuantizationConfig *
quark_model_quantizer_get_config (QuarkModelQuantizer *self)
{
  QuarkQuantizationConfig *config = NULL;

  g_return_val_if_fail (QUARK_IS_MODEL_QUANTIZER (self), NULL);

  g_object_get (self, "config", &config, NULL);
  /* the quantizer keeps its own reference for its whole life */
  if (config)
    g_object_unref (config);
  return config;
}

/**
 * quark_model_quantizer_quantize_model:
 * @self: a #QuarkModelQuantizer
 * @model: the float model
 * @calibration: (nullable): activation statistics, needed by configs with
 *   static activation specs
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Quantizes @model according to the quantizer's config. @model is not
 * modified. A model that is already quantized (quark_model_is_quantized())
 * is refused with %QUARK_ERROR_INVALID_ARGUMENT, and the quantization fails
 * with %QUARK_ERROR_IO when a file @model was loaded from changed while it
 * ran (quark_model_check_sources()). A result without metadata gets
 * @model's, with a `quantization_config` from the config.
 *
 * Returns: (transfer full): the quantized model, or %NULL on error (with
 *   %G_IO_ERROR_CANCELLED if @cancellable was cancelled)
 */
QuarkModel *
quark_model_quantizer_quantize_model (QuarkModelQuantizer  *self,
                                      QuarkModel           *model,
                                      QuarkCalibration     *calibration,
                                      GCancellable         *cancellable,
                                      GError              **error)
{
  QuarkModel *result;

  g_return_val_if_fail (QUARK_IS_MODEL_QUANTIZER (self), NULL);
  g_return_val_if_fail (QUARK_IS_MODEL (model), NULL);
  g_return_val_if_fail (calibration == NULL || QUARK_IS_CALIBRATION (calibration), NULL);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_model_to_quantize (model, cancellable, error))
    return NULL;
  result = QUARK_MODEL_QUANTIZER_GET_IFACE (self)->quantize_model (self, model, calibration,
                                                                    cancellable, error);
  quark_buffer_trim ();   /* the intermediate buffers the result does not hold */
  g_return_val_if_fail (result == NULL || QUARK_IS_MODEL (result), NULL);
  if (result && !quark_model_check_sources (model, error))
    g_clear_object (&result);
  if (result && quark_model_get_metadata (result) == NULL)
    {
      g_autoptr(JsonNode) metadata = default_metadata (self, model);
      quark_model_set_metadata (result, metadata);
    }
  return result;
}

/**
 * quark_model_quantizer_prepare_model:
 * @self: a #QuarkModelQuantizer
 * @model: a float model
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Applies the transformations of the float model that the config asks for
 * before calibration and quantization, such as a rotation of the residual
 * stream (`docs/algorithms.md`). Calibrate the result (its activations
 * are the ones the quantized model will see) and quantize the result.
 * Backends without such transformations, and configs that ask for none,
 * give @model itself. Configs whose transformations learn from the
 * model's activations (quark_model_quantizer_prepare_needs_calibration())
 * report %QUARK_ERROR_NEEDS_CALIBRATION here: use
 * quark_model_quantizer_prepare_model_with_calibration().
 *
 * Returns: (transfer full): the model to calibrate and quantize, or %NULL
 *   with @error set
 */
QuarkModel *
quark_model_quantizer_prepare_model (QuarkModelQuantizer  *self,
                                     QuarkModel           *model,
                                     GCancellable         *cancellable,
                                     GError              **error)
{
  QuarkModel *result;

  g_return_val_if_fail (QUARK_IS_MODEL_QUANTIZER (self), NULL);
  g_return_val_if_fail (QUARK_IS_MODEL (model), NULL);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_model_to_quantize (model, cancellable, error))
    return NULL;
  result = QUARK_MODEL_QUANTIZER_GET_IFACE (self)->prepare_model (self, model, cancellable, error);
  g_return_val_if_fail (result == NULL || QUARK_IS_MODEL (result), NULL);
  return result;
}

/**
 * quark_model_quantizer_prepare_needs_calibration:
 * @self: a #QuarkModelQuantizer
 *
 * Whether the config transforms the float model with what it learns from
 * the model's own activations before calibration (activation
 * equalization, `docs/brevitas.md`). Such a model is prepared in two
 * passes: calibrate the float model with second moments (a session with
 * [property@Quark.Calibration:second-moments] set; the Gram matrices are
 * not needed), give that session to
 * quark_model_quantizer_prepare_model_with_calibration(), then calibrate
 * and quantize the model it returns.
 *
 * Returns: %TRUE when quark_model_quantizer_prepare_model_with_calibration()
 *   needs a calibration session, %FALSE when quark_model_quantizer_prepare_model()
 *   is enough
 */
gboolean
quark_model_quantizer_prepare_needs_calibration (QuarkModelQuantizer *self)
{
  g_return_val_if_fail (QUARK_IS_MODEL_QUANTIZER (self), FALSE);

  return QUARK_MODEL_QUANTIZER_GET_IFACE (self)->prepare_needs_calibration (self);
}

/**
 * quark_model_quantizer_check_model:
 * @self: a #QuarkModelQuantizer
 * @model: the float model that would be quantized (after
 *   quark_model_quantizer_prepare_model(), when the config transforms it)
 * @error: return location for a #GError
 *
 * Checks, without quantizing or calibrating anything, that the config fits
 * every tensor of @model it would quantize: each spec fits its tensor's
 * shape and the export format's layout (for the quark backend: whole
 * groups, AMD Quark's packing rules, a format that knows every layer).
 * quark_model_quantizer_quantize_model() and
 * quark_model_quantizer_quantize_model_to_writer() make the same checks
 * before any work, but calibration comes before them and can take long;
 * `quark quantize` calls this first, so that such a config fails at once.
 * A backend without the check accepts every model here and checks while
 * quantizing.
 *
 * Returns: %TRUE when every tensor fits, %FALSE with @error set
 *   (%QUARK_ERROR_UNSUPPORTED_SCHEME for a layout that cannot be written)
 */
gboolean
quark_model_quantizer_check_model (QuarkModelQuantizer *self, QuarkModel *model, GError **error)
{
  g_return_val_if_fail (QUARK_IS_MODEL_QUANTIZER (self), FALSE);
  g_return_val_if_fail (QUARK_IS_MODEL (model), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_not_quantized (model, error))
    return FALSE;
  return QUARK_MODEL_QUANTIZER_GET_IFACE (self)->check_model (self, model, error);
}

/**
 * quark_model_quantizer_prepare_model_with_calibration:
 * @self: a #QuarkModelQuantizer
 * @model: a float model
 * @calibration: (nullable): the second moments of @model's layer inputs,
 *   or %NULL when quark_model_quantizer_prepare_needs_calibration() says
 *   none are needed
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * quark_model_quantizer_prepare_model() for configs whose transformations
 * learn from the float model's activations. @calibration describes @model
 * itself, not the model this returns: calibrate the result again before
 * quantizing it.
 *
 * Returns: (transfer full): the model to calibrate and quantize, or %NULL
 *   with @error set (%QUARK_ERROR_NEEDS_CALIBRATION when @calibration is
 *   missing or lacks a layer's statistics)
 */
QuarkModel *
quark_model_quantizer_prepare_model_with_calibration (QuarkModelQuantizer  *self,
                                                      QuarkModel           *model,
                                                      QuarkCalibration     *calibration,
                                                      GCancellable         *cancellable,
                                                      GError              **error)
{
  QuarkModel *result;

  g_return_val_if_fail (QUARK_IS_MODEL_QUANTIZER (self), NULL);
  g_return_val_if_fail (QUARK_IS_MODEL (model), NULL);
  g_return_val_if_fail (calibration == NULL || QUARK_IS_CALIBRATION (calibration), NULL);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_model_to_quantize (model, cancellable, error))
    return NULL;
  result = QUARK_MODEL_QUANTIZER_GET_IFACE (self)->prepare_model_with_calibration (self, model, calibration,
                                                                                   cancellable, error);
  g_return_val_if_fail (result == NULL || QUARK_IS_MODEL (result), NULL);
  return result;
}

/**
 * quark_model_quantizer_quantize_tensor:
 * @self: a #QuarkModelQuantizer
 * @tensor: a float tensor
 * @spec: how to quantize it
 * @error: return location for a #GError
 *
 * Quantizes one tensor with @spec and the backend's semantics, independently
 * of the quantizer's config, and returns what represents it: the codes
 * under the tensor's name (one code per byte for sub-byte types), the scales
 * as `NAME_scale` (float32, or E8M0 bytes for MX specs) and, for integer
 * dtypes, the zero points as `NAME_zero_point`. This is the helper for
 * people who need the real integers and scales;
 * quark_tensor_spec_dequantize() turns them back into floats.
 *
 * Returns: (transfer full): a model holding the tensors, or %NULL with
 *   %QUARK_ERROR_UNSUPPORTED_SCHEME, %QUARK_ERROR_INVALID_TENSOR or a
 *   %QUARK_CONFIG_ERROR when @spec is not valid
 */
QuarkModel *
quark_model_quantizer_quantize_tensor (QuarkModelQuantizer  *self,
                                       QuarkTensor          *tensor,
                                       QuarkTensorSpec      *spec,
                                       GError              **error)
{
  g_return_val_if_fail (QUARK_IS_MODEL_QUANTIZER (self), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (tensor), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (spec), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!quark_tensor_spec_validate (spec, NULL, error))
    return NULL;
  return QUARK_MODEL_QUANTIZER_GET_IFACE (self)->quantize_tensor (self, tensor, spec, error);
}

/**
 * quark_model_quantizer_get_activation_params:
 * @self: a #QuarkModelQuantizer
 * @spec: an activation spec with a static scale (from the config's
 *   quark_quantization_config_get_tensor_spec() for an input or output;
 *   see quark_tensor_spec_has_static_scale())
 * @calibration: (nullable): the statistics, from a session made for the
 *   config (quark_calibration_new_for_config()) that observed @layer_name
 * @layer_name: (nullable): the layer whose statistics to use
 * @role: %QUARK_ROLE_INPUT or %QUARK_ROLE_OUTPUT
 * @scale: (out) (transfer full): the scales, float32 (shape [] per tensor;
 *   for a dynamic NVFP4 spec its global scale, shape [1])
 * @zero_point: (out) (transfer full) (optional) (nullable): the zero points
 *   of integer specs (int32), %NULL for symmetric minifloats
 * @error: return location for a #GError
 *
 * Computes a static activation quantizer's parameters from calibration
 * statistics with the backend's semantics, the same numbers
 * quark_model_quantizer_quantize_model() stores as `input_scale` and
 * `input_zero_point` (`input_global_scale` for a dynamic NVFP4 spec, whose
 * group scales come from each tensor). Without @calibration a backend whose semantics define
 * an uncalibrated quantizer gives its parameters (the brevitas backend:
 * Brevitas's initial statistic of 1, s = 1/T); others report
 * %QUARK_ERROR_NEEDS_CALIBRATION.
 *
 * Returns: %TRUE on success, %FALSE with @error set
 */
gboolean
quark_model_quantizer_get_activation_params (QuarkModelQuantizer  *self,
                                             QuarkTensorSpec      *spec,
                                             QuarkCalibration     *calibration,
                                             const char           *layer_name,
                                             QuarkRole             role,
                                             QuarkTensor         **scale,
                                             QuarkTensor         **zero_point,
                                             GError              **error)
{
  g_autoptr(QuarkTensor) s = NULL, z = NULL;

  g_return_val_if_fail (QUARK_IS_MODEL_QUANTIZER (self), FALSE);
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (spec), FALSE);
  g_return_val_if_fail (calibration == NULL || QUARK_IS_CALIBRATION (calibration), FALSE);
  g_return_val_if_fail (calibration == NULL || layer_name != NULL, FALSE);
  g_return_val_if_fail (role == QUARK_ROLE_INPUT || role == QUARK_ROLE_OUTPUT, FALSE);
  g_return_val_if_fail (scale != NULL && *scale == NULL, FALSE);
  g_return_val_if_fail (zero_point == NULL || *zero_point == NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!quark_tensor_spec_has_static_scale (spec))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "a dynamic activation spec has no static scales: its scales come from each tensor it quantizes");
      return FALSE;
    }
  if (!QUARK_MODEL_QUANTIZER_GET_IFACE (self)->activation_params (self, spec, calibration, layer_name, role,
                                                                  &s, &z, error))
    return FALSE;
  g_return_val_if_fail (QUARK_IS_TENSOR (s), FALSE);
  *scale = g_steal_pointer (&s);
  if (zero_point)
    *zero_point = g_steal_pointer (&z);
  return TRUE;
}

/* A dynamic spec computes its own scales (but for NVFP4's static global
 * scale). */
static gboolean
check_activation_scale (QuarkTensor *tensor, QuarkTensorSpec *spec, QuarkTensor *scale, GError **error)
{
  if (!quark_tensor_spec_has_static_scale (spec) && scale != NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "tensor %s: a dynamic activation spec computes its scales; pass none",
                   quark_tensor_get_name (tensor));
      return FALSE;
    }
  return TRUE;
}

/**
 * quark_model_quantizer_quantize_activation:
 * @self: a #QuarkModelQuantizer
 * @tensor: an activation tensor (any float dtype, any shape; the last
 *   dimension holds the features)
 * @spec: an activation spec of this backend
 * @scale: (nullable): the static scales (from
 *   quark_model_quantizer_get_activation_params() or a checkpoint), or
 *   %NULL for a dynamic spec, whose scales come from @tensor (a dynamic
 *   NVFP4 spec takes its static global scale here)
 * @zero_point: (nullable): the zero points that go with @scale, %NULL for 0
 * @error: return location for a #GError
 *
 * Quantizes an activation with the backend's semantics and returns what
 * represents it, as quark_model_quantizer_quantize_tensor() does for
 * weights: the codes under the tensor's name (one per element: int8/uint8,
 * int16 or int32 for integers, one code per byte for minifloats), the
 * scales as `NAME_scale` (float32) and, for integer specs, the zero points
 * as `NAME_zero_point` (integers). Dynamic specs compute their scales from
 * the tensor itself, per tensor, per token (each row of the last
 * dimension), per group of the last dimension, or per MX block, as the
 * spec says. Static
 * specs use @scale; with %NULL the backend's uncalibrated parameters apply
 * where it defines them (see quark_model_quantizer_get_activation_params()).
 * A dynamic NVFP4 spec (E4M3 scales) computes its group scales from the
 * tensor under the global scale @scale, and returns the groups' E4M3 codes
 * as `NAME_scale` and the global scale as `NAME_global_scale`, as weights
 * have them.
 *
 * Returns: (transfer full): a model holding the tensors, or %NULL with
 *   @error set (%QUARK_ERROR_INVALID_ARGUMENT when the scales do not fit
 *   the tensor)
 */
QuarkModel *
quark_model_quantizer_quantize_activation (QuarkModelQuantizer  *self,
                                           QuarkTensor          *tensor,
                                           QuarkTensorSpec      *spec,
                                           QuarkTensor          *scale,
                                           QuarkTensor          *zero_point,
                                           GError              **error)
{
  g_return_val_if_fail (QUARK_IS_MODEL_QUANTIZER (self), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (tensor), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (spec), NULL);
  g_return_val_if_fail (scale == NULL || QUARK_IS_TENSOR (scale), NULL);
  g_return_val_if_fail (zero_point == NULL || QUARK_IS_TENSOR (zero_point), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_activation_scale (tensor, spec, scale, error))
    return NULL;
  return QUARK_MODEL_QUANTIZER_GET_IFACE (self)->quantize_activation (self, tensor, spec, scale, zero_point,
                                                                      error);
}

/**
 * quark_model_quantizer_fake_quantize_activation:
 * @self: a #QuarkModelQuantizer
 * @tensor: an activation tensor (any float dtype, any shape; the last
 *   dimension holds the features)
 * @spec: an activation spec of this backend
 * @scale: (nullable): the static scales, or %NULL for a dynamic spec (or
 *   the backend's uncalibrated parameters); a dynamic NVFP4 spec's global
 *   scale
 * @zero_point: (nullable): the zero points that go with @scale
 * @error: return location for a #GError
 *
 * Quantizes an activation as quark_model_quantizer_quantize_activation()
 * does and dequantizes it again: what a runtime evaluating the quantized
 * model in float feeds a layer. Dynamic specs (per tensor, per token, per
 * group, MX) compute their scales from the tensor.
 *
 * Returns: (transfer full): a float32 tensor shaped like @tensor, or %NULL
 *   with @error set
 */
QuarkTensor *
quark_model_quantizer_fake_quantize_activation (QuarkModelQuantizer  *self,
                                                QuarkTensor          *tensor,
                                                QuarkTensorSpec      *spec,
                                                QuarkTensor          *scale,
                                                QuarkTensor          *zero_point,
                                                GError              **error)
{
  g_return_val_if_fail (QUARK_IS_MODEL_QUANTIZER (self), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (tensor), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (spec), NULL);
  g_return_val_if_fail (scale == NULL || QUARK_IS_TENSOR (scale), NULL);
  g_return_val_if_fail (zero_point == NULL || QUARK_IS_TENSOR (zero_point), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_activation_scale (tensor, spec, scale, error))
    return NULL;
  return QUARK_MODEL_QUANTIZER_GET_IFACE (self)->fake_quantize_activation (self, tensor, spec, scale, zero_point,
                                                                           error);
}

/**
 * quark_model_quantizer_quantize_model_to_writer:
 * @self: a #QuarkModelQuantizer
 * @model: the float model
 * @calibration: (nullable): activation statistics
 * @writer: where the output goes; the caller finishes it (or aborts it on
 *   error)
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Quantizes @model like quark_model_quantizer_quantize_model(), but hands
 * each output tensor to @writer as soon as it is made and sets the
 * writer's metadata, so that backends that stream hold one tensor at a
 * time rather than the model. The same checks of @model apply: on failure
 * the caller aborts @writer, so nothing is committed.
 *
 * A backend that sets no metadata gets the default: @model's `config.json`
 * with a `quantization_config` from the config's
 * quark_quantization_config_to_json(), so that every checkpoint can be
 * read back by `quark verify`.
 *
 * Returns: %TRUE on success
 */
gboolean
quark_model_quantizer_quantize_model_to_writer (QuarkModelQuantizer    *self,
                                                QuarkModel             *model,
                                                QuarkCalibration       *calibration,
                                                QuarkCheckpointWriter  *writer,
                                                GCancellable           *cancellable,
                                                GError                **error)
{
  gboolean ok;

  g_return_val_if_fail (QUARK_IS_MODEL_QUANTIZER (self), FALSE);
  g_return_val_if_fail (QUARK_IS_MODEL (model), FALSE);
  g_return_val_if_fail (calibration == NULL || QUARK_IS_CALIBRATION (calibration), FALSE);
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_WRITER (writer), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (g_cancellable_is_cancelled (cancellable))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Operation was cancelled");
      return FALSE;
    }
  if (!check_not_quantized (model, error))
    return FALSE;
  {
    /* each input tensor becomes at most five (codes, scale, zero point,
     * and an activation's scale and zero point, or a format's shape and
     * g_idx) under names about 20 bytes longer than its own */
    gsize name_bytes = 0;
    guint n = quark_model_get_n_tensors (model);
    for (guint i = 0; i < n; i++)
      name_bytes += 5 * (strlen (quark_tensor_get_name (quark_model_get_tensor_at (model, i))) + 24);
    _quark_checkpoint_writer_expect_tensors (writer, 5 * n, name_bytes);
  }
  ok = QUARK_MODEL_QUANTIZER_GET_IFACE (self)->quantize_model_to_writer (self, model, calibration, writer,
                                                                         cancellable, error);
  quark_buffer_trim ();   /* every output tensor is written: the pool's buffers are idle */
  /* the input is read until the writer's last copy is done */
  if (!ok || !_quark_checkpoint_writer_wait (writer, error) || !quark_model_check_sources (model, error))
    return FALSE;
  if (!_quark_checkpoint_writer_has_metadata (writer))
    {
      g_autoptr(JsonNode) metadata = default_metadata (self, model);
      json_node_seal (metadata);   /* kept without a copy */
      quark_checkpoint_writer_set_metadata (writer, metadata);
    }
  return TRUE;
}

/**
 * quark_model_quantizer_dequantize_model:
 * @self: a #QuarkModelQuantizer
 * @quantized: a checkpoint made with this quantizer's config (by
 *   quark_model_quantizer_quantize_model() or by the tool the backend
 *   mirrors)
 * @error: return location for a #GError
 *
 * Reads a quantized checkpoint back: every quantized weight becomes a
 * float32 tensor of its original name and shape, its scale and zero-point
 * tensors are dropped, other tensors pass through. This is what
 * `quark verify` compares with the original model. The result's metadata is
 * @quantized's without its `quantization_config`, so it can be quantized
 * again.
 *
 * Returns: (transfer full): the dequantized model, or %NULL with
 *   %QUARK_ERROR_INVALID_FILE naming the tensor whose layout does not fit
 *   the config
 */
QuarkModel *
quark_model_quantizer_dequantize_model (QuarkModelQuantizer  *self,
                                        QuarkModel           *quantized,
                                        GError              **error)
{
  QuarkModel *result;
  JsonNode *metadata;

  g_return_val_if_fail (QUARK_IS_MODEL_QUANTIZER (self), NULL);
  g_return_val_if_fail (QUARK_IS_MODEL (quantized), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  result = QUARK_MODEL_QUANTIZER_GET_IFACE (self)->dequantize_model (self, quantized, error);
  if (result == NULL)
    return NULL;
  metadata = quark_model_get_metadata (result);
  if (metadata && JSON_NODE_HOLDS_OBJECT (metadata) &&
      json_object_has_member (json_node_get_object (metadata), "quantization_config"))
    {
      g_autoptr(JsonNode) plain = quark_json_copy (metadata);
      json_object_remove_member (json_node_get_object (plain), "quantization_config");
      quark_model_set_metadata (result, plain);
    }
  _quark_model_copy_sources (result, quantized);
  return result;
}

/* Async support ---------------------------------------------------------- */

typedef struct {
  QuarkModel *model;
  QuarkCalibration *calibration;
} QuantizeData;

static void
quantize_data_free (QuantizeData *data)
{
  g_clear_object (&data->model);
  g_clear_object (&data->calibration);
  g_free (data);
}

/* The GTask of an async quantization running in the current thread, so that
 * progress reports can be sent to the caller's main context. */
static GPrivate current_task;

typedef struct {
  QuarkModelQuantizer *self;
  guint64 done;
  guint64 total;
  char *item;
} ProgressData;

static gboolean
emit_progress_idle (gpointer user_data)
{
  ProgressData *data = user_data;
  g_signal_emit (data->self, signals[SIGNAL_PROGRESS], 0, data->done, data->total, data->item);
  return G_SOURCE_REMOVE;
}

static void
progress_data_free (gpointer user_data)
{
  ProgressData *data = user_data;
  g_object_unref (data->self);
  g_free (data->item);
  g_free (data);
}

/**
 * quark_model_quantizer_report_progress:
 * @self: a #QuarkModelQuantizer
 * @done: units of work done
 * @total: units of work in all
 * @item: (nullable): what was just done, such as a tensor name
 *
 * Emits [signal@Quark.ModelQuantizer::progress]. Implementations call this;
 * during quark_model_quantizer_quantize_model_async() the signal is emitted
 * in the caller's main context instead of the worker thread.
 */
void
quark_model_quantizer_report_progress (QuarkModelQuantizer *self,
                                       guint64              done,
                                       guint64              total,
                                       const char          *item)
{
  GTask *task;

  g_return_if_fail (QUARK_IS_MODEL_QUANTIZER (self));

  task = g_private_get (&current_task);
  if (task != NULL && g_task_get_source_object (task) == (gpointer) self)
    {
      ProgressData *data = g_new0 (ProgressData, 1);
      GSource *source;

      data->self = g_object_ref (self);
      data->done = done;
      data->total = total;
      data->item = g_strdup (item);

      /* Always go through a source: g_main_context_invoke() would run the
       * handler right here when this worker can acquire the context. */
      source = g_idle_source_new ();
      g_source_set_priority (source, G_PRIORITY_DEFAULT);
      g_source_set_callback (source, emit_progress_idle, data, progress_data_free);
      g_source_set_static_name (source, "[quark] progress");
      g_source_attach (source, g_task_get_context (task));
      g_source_unref (source);
      return;
    }
  g_signal_emit (self, signals[SIGNAL_PROGRESS], 0, done, total, item);
}

static void
quantize_thread (GTask        *task,
                 gpointer      source_object,
                 gpointer      task_data,
                 GCancellable *cancellable)
{
  QuantizeData *data = task_data;
  GError *error = NULL;
  QuarkModel *result;

  g_private_set (&current_task, task);
  result = quark_model_quantizer_quantize_model (source_object, data->model, data->calibration,
                                                 cancellable, &error);
  g_private_set (&current_task, NULL);

  if (result)
    g_task_return_pointer (task, result, g_object_unref);
  else
    g_task_return_error (task, error);
}

/**
 * quark_model_quantizer_quantize_model_async:
 * @self: a #QuarkModelQuantizer
 * @model: the float model
 * @calibration: (nullable): activation statistics
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the work is done
 * @user_data: data for @callback
 *
 * Quantizes @model in a worker thread. Progress signals and @callback run in
 * the thread-default main context of the caller. Finish with
 * quark_model_quantizer_quantize_model_finish().
 */
void
quark_model_quantizer_quantize_model_async (QuarkModelQuantizer *self,
                                            QuarkModel          *model,
                                            QuarkCalibration    *calibration,
                                            GCancellable        *cancellable,
                                            GAsyncReadyCallback  callback,
                                            gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  QuantizeData *data;

  g_return_if_fail (QUARK_IS_MODEL_QUANTIZER (self));
  g_return_if_fail (QUARK_IS_MODEL (model));
  g_return_if_fail (calibration == NULL || QUARK_IS_CALIBRATION (calibration));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  data = g_new0 (QuantizeData, 1);
  data->model = g_object_ref (model);
  data->calibration = calibration ? g_object_ref (calibration) : NULL;

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, quark_model_quantizer_quantize_model_async);
  g_task_set_task_data (task, data, (GDestroyNotify) quantize_data_free);
  g_task_run_in_thread (task, quantize_thread);
}

/**
 * quark_model_quantizer_quantize_model_finish:
 * @self: a #QuarkModelQuantizer
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes quark_model_quantizer_quantize_model_async().
 *
 * Returns: (transfer full): the quantized model, or %NULL on error
 */
QuarkModel *
quark_model_quantizer_quantize_model_finish (QuarkModelQuantizer  *self,
                                             GAsyncResult         *result,
                                             GError              **error)
{
  g_return_val_if_fail (QUARK_IS_MODEL_QUANTIZER (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) ==
                        quark_model_quantizer_quantize_model_async, NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}
