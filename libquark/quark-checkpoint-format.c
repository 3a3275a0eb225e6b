/* quark-checkpoint-format.c: checkpoint formats
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-checkpoint-format.h"
#include "quark-error.h"
#include "quark-json.h"
#include "formats/quark-format-private.h"

#include <string.h>

/**
 * QuarkCheckpointFormat:
 *
 * A checkpoint format: how a quantized model is laid out on disk for the
 * engine that loads it (AMD Quark's layout, compressed-tensors, …).
 *
 * Formats are independent of a backend's numerics: a backend computes
 * codes, scales and zero points (the logical tensors
 * [method@Quark.ModelQuantizer.quantize_tensor] returns) and hands each
 * quantized weight and each layer's static activation parameters to a format
 * instance, which adds the tensors of its layout to the output and, at the
 * end, writes the `quantization_config` that describes them. Formats are
 * registered by name in the registry beside backends
 * ([method@Quark.Registry.list_formats]); a backend's `export-format`
 * property selects one.
 *
 * An instance serves one export: it records every layer it was given (the
 * layer type and the spec of each role), which
 * [method@Quark.CheckpointFormat.build_quantization_config] reads. Export
 * methods may be called from several threads at once.
 */

typedef struct {
  char *type;
  QuarkTensorSpec *spec[QUARK_ROLE_BIAS + 1];
} LayerRecord;

typedef struct {
  GMutex lock;
  GHashTable *layers;   /* layer name -> LayerRecord */
  JsonNode *backend_config;
  guint threads;
  gboolean not_durable;       /* set_durable (FALSE) */
  QuarkModel *importance;     /* per-column importance of weights' inputs, or NULL */
} QuarkCheckpointFormatPrivate;

G_DEFINE_ABSTRACT_TYPE_WITH_PRIVATE (QuarkCheckpointFormat, quark_checkpoint_format, G_TYPE_OBJECT)

static void
layer_record_free (gpointer data)
{
  LayerRecord *r = data;

  g_free (r->type);
  for (guint i = 0; i < G_N_ELEMENTS (r->spec); i++)
    g_clear_object (&r->spec[i]);
  g_free (r);
}

static void
quark_checkpoint_format_finalize (GObject *object)
{
  QuarkCheckpointFormatPrivate *priv =
    quark_checkpoint_format_get_instance_private (QUARK_CHECKPOINT_FORMAT (object));

  g_hash_table_unref (priv->layers);
  g_clear_pointer (&priv->backend_config, json_node_unref);
  g_clear_object (&priv->importance);
  g_mutex_clear (&priv->lock);
  G_OBJECT_CLASS (quark_checkpoint_format_parent_class)->finalize (object);
}

static gboolean
default_check_weight (QuarkCheckpointFormat *self, const char *name, const gint64 *shape, guint n_dims,
                      QuarkTensorSpec *spec, GError **error)
{
  return TRUE;
}

static gboolean
default_prepare (QuarkCheckpointFormat *self, GError **error)
{
  return TRUE;
}

static QuarkDType
default_get_scale_dtype (QuarkCheckpointFormat *self, const char *layer, QuarkTensorSpec *spec,
                         QuarkDType weight_dtype)
{
  return QUARK_DTYPE_F32;
}

static gboolean
default_export_activation (QuarkCheckpointFormat *self, const char *layer, QuarkRole role, QuarkTensorSpec *spec,
                           QuarkTensor *scale, QuarkTensor *zero_point, QuarkModel *out, GError **error)
{
  const char *prefix = role == QUARK_ROLE_INPUT ? "input" : "output";
  g_autofree char *scale_name = g_strdup_printf ("%s.%s_scale", layer, prefix);
  g_autofree char *zp_name = g_strdup_printf ("%s.%s_zero_point", layer, prefix);
  g_autoptr(QuarkTensor) s = NULL;

  /* NVFP4 inputs: a static global scale under dynamic group scales, which
   * only formats that say so (compressed-tensors) describe */
  if (quark_tensor_spec_get_is_dynamic (spec))
    return _quark_format_unsupported (error, QUARK_CHECKPOINT_FORMAT_GET_CLASS (self)->name, "layer", layer,
                                      "NVFP4 inputs (a static global scale under dynamic group scales; "
                                      "--export-format compressed-tensors writes them)");
  if ((s = _quark_format_renamed (scale, scale_name, error)) == NULL || !quark_model_add_tensor (out, s, error))
    return FALSE;
  if (zero_point)
    {
      g_autoptr(QuarkTensor) z = _quark_format_renamed (zero_point, zp_name, error);
      return z && quark_model_add_tensor (out, z, error);
    }
  return TRUE;
}

static QuarkCodeLayout
default_get_code_layout (QuarkCheckpointFormat *self, const char *name, QuarkTensorSpec *spec, const gint64 *shape,
                         guint n_dims)
{
  return QUARK_CODE_LAYOUT_BYTES;
}

static gboolean
default_recognizes (QuarkCheckpointFormat *self, JsonNode *quantization_config)
{
  const char *method = QUARK_CHECKPOINT_FORMAT_GET_CLASS (self)->quant_method;
  JsonNode *node = json_object_get_member (json_node_get_object (quantization_config), "quant_method");

  return method && node && JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING &&
         g_str_equal (json_node_get_string (node), method);
}

static void
quark_checkpoint_format_class_init (QuarkCheckpointFormatClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = quark_checkpoint_format_finalize;
  klass->check_weight = default_check_weight;
  klass->prepare = default_prepare;
  klass->get_scale_dtype = default_get_scale_dtype;
  klass->write_activation = default_export_activation;
  klass->recognizes = default_recognizes;
  klass->get_code_layout = default_get_code_layout;
}

static void
quark_checkpoint_format_init (QuarkCheckpointFormat *self)
{
  QuarkCheckpointFormatPrivate *priv = quark_checkpoint_format_get_instance_private (self);

  g_mutex_init (&priv->lock);
  priv->layers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, layer_record_free);
}

/**
 * quark_checkpoint_format_get_name:
 * @self: a format
 *
 * Gets the name the format is registered under.
 *
 * Returns: the format's registered name
 */
const char *
quark_checkpoint_format_get_name (QuarkCheckpointFormat *self)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), NULL);
  return QUARK_CHECKPOINT_FORMAT_GET_CLASS (self)->name;
}

/**
 * quark_checkpoint_format_get_description:
 * @self: a format
 *
 * Gets the one-line description `quark formats` prints.
 *
 * Returns: one line describing the format
 */
const char *
quark_checkpoint_format_get_description (QuarkCheckpointFormat *self)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), NULL);
  return QUARK_CHECKPOINT_FORMAT_GET_CLASS (self)->description;
}

/**
 * quark_checkpoint_format_check_weight:
 * @self: a format
 * @name: the weight's tensor name
 * @shape: (array length=n_dims): its shape
 * @n_dims: its number of dimensions
 * @spec: the spec it is to be quantized with
 * @error: return location for a #GError
 *
 * Checks, before any work, that the format can write this weight with this
 * spec; the error names the tensor.
 *
 * Returns: %TRUE if it can
 */
gboolean
quark_checkpoint_format_check_weight (QuarkCheckpointFormat *self, const char *name, const gint64 *shape,
                                      guint n_dims, QuarkTensorSpec *spec, GError **error)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), FALSE);
  g_return_val_if_fail (name != NULL && spec != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  return QUARK_CHECKPOINT_FORMAT_GET_CLASS (self)->check_weight (self, name, shape, n_dims, spec, error);
}

/**
 * quark_checkpoint_format_prepare:
 * @self: a format
 * @error: return location for a #GError
 *
 * Called by a backend once it has noted every layer
 * ([method@Quark.CheckpointFormat.note_layer]) and before it quantizes
 * anything: fails when the layers together cannot be written in this
 * format, naming a layer.
 *
 * Returns: %TRUE if they can
 */
gboolean
quark_checkpoint_format_prepare (QuarkCheckpointFormat *self, GError **error)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  return QUARK_CHECKPOINT_FORMAT_GET_CLASS (self)->prepare (self, error);
}

/**
 * quark_checkpoint_format_get_scale_dtype:
 * @self: a format
 * @layer: the layer the weight belongs to
 * @spec: the weight's spec
 * @weight_dtype: the dtype of the float weight being quantized
 *
 * The dtype the weight scales of @layer are stored in (the dtype the
 * loader of the format allocates for them). A backend rounds each scale to
 * this dtype before it computes codes with it, so the stored scale is
 * exactly the one the codes were made with.
 *
 * Returns: %QUARK_DTYPE_F32, %QUARK_DTYPE_BF16 or %QUARK_DTYPE_F16
 */
QuarkDType
quark_checkpoint_format_get_scale_dtype (QuarkCheckpointFormat *self, const char *layer, QuarkTensorSpec *spec,
                                         QuarkDType weight_dtype)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), QUARK_DTYPE_F32);
  g_return_val_if_fail (layer != NULL && spec != NULL, QUARK_DTYPE_F32);
  return QUARK_CHECKPOINT_FORMAT_GET_CLASS (self)->get_scale_dtype (self, layer, spec, weight_dtype);
}

/**
 * quark_checkpoint_format_note_layer:
 * @self: a format
 * @layer: the layer name
 * @layer_type: (nullable): its type ("Linear", "Conv2d", …)
 * @role: the role @spec is for
 * @spec: (nullable): the spec, or %NULL when the role is not quantized
 *
 * Records a layer's spec for the final `quantization_config`. The export
 * methods call it; backends note every layer before any work, through
 * [method@Quark.CheckpointFormat.note_config_layer].
 */
void
quark_checkpoint_format_note_layer (QuarkCheckpointFormat *self, const char *layer, const char *layer_type,
                                    QuarkRole role, QuarkTensorSpec *spec)
{
  QuarkCheckpointFormatPrivate *priv;
  LayerRecord *r;

  g_return_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self));
  g_return_if_fail (layer != NULL && role <= QUARK_ROLE_BIAS);
  priv = quark_checkpoint_format_get_instance_private (self);
  g_mutex_lock (&priv->lock);
  r = g_hash_table_lookup (priv->layers, layer);
  if (r == NULL)
    {
      r = g_new0 (LayerRecord, 1);
      g_hash_table_insert (priv->layers, g_strdup (layer), r);
    }
  if (layer_type && r->type == NULL)
    r->type = g_strdup (layer_type);
  g_clear_object (&r->spec[role]);
  r->spec[role] = spec ? quark_tensor_spec_copy (spec) : NULL;
  g_mutex_unlock (&priv->lock);
}

/**
 * quark_checkpoint_format_note_config_layer:
 * @self: a format
 * @config: the backend's configuration
 * @layer: the layer name
 * @layer_type: (nullable): its type ("Linear", "Conv2d", …)
 *
 * Notes what @config gives @layer ([method@Quark.CheckpointFormat.note_layer]):
 * its weight spec and, when the weight is quantized, its input and output
 * specs, dynamic ones included (they have no stored parameters, yet belong
 * in the `quantization_config`). A backend calls it for every layer,
 * quantized or left in float, before [method@Quark.CheckpointFormat.prepare].
 *
 * Returns: (transfer full) (nullable): the weight's spec, or %NULL when
 *   @config leaves the layer in float
 */
QuarkTensorSpec *
quark_checkpoint_format_note_config_layer (QuarkCheckpointFormat *self, QuarkQuantizationConfig *config,
                                           const char *layer, const char *layer_type)
{
  QuarkTensorSpec *weight;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), NULL);
  g_return_val_if_fail (QUARK_IS_QUANTIZATION_CONFIG (config), NULL);
  g_return_val_if_fail (layer != NULL, NULL);
  weight = quark_quantization_config_get_tensor_spec (config, layer, layer_type, QUARK_ROLE_WEIGHT);
  quark_checkpoint_format_note_layer (self, layer, layer_type, QUARK_ROLE_WEIGHT, weight);
  for (QuarkRole role = QUARK_ROLE_INPUT; weight && role <= QUARK_ROLE_OUTPUT; role++)
    {
      g_autoptr(QuarkTensorSpec) spec = quark_quantization_config_get_tensor_spec (config, layer, layer_type, role);
      quark_checkpoint_format_note_layer (self, layer, layer_type, role, spec);
    }
  return weight;
}

/**
 * quark_checkpoint_format_get_code_layout:
 * @self: a format
 * @name: the weight's tensor name
 * @spec: the spec it is quantized with
 * @shape: (array length=n_dims): its shape
 * @n_dims: its number of dimensions
 *
 * Gets the layout the format stores the codes of a weight in, when a
 * backend can write them so directly. A backend may then give the codes
 * to [method@Quark.CheckpointFormat.export_weight] in this layout instead of
 * one per element, and save a pass over them (the `quark` backend packs
 * int4 codes for AMD Quark's layout while a block of rows is in cache).
 * A backend that ignores it gives one code per element, which every
 * format takes.
 *
 * Returns: the layout; %QUARK_CODE_LAYOUT_BYTES when the format takes
 *   only one code per element for this weight
 */
QuarkCodeLayout
quark_checkpoint_format_get_code_layout (QuarkCheckpointFormat *self, const char *name, QuarkTensorSpec *spec,
                                         const gint64 *shape, guint n_dims)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), QUARK_CODE_LAYOUT_BYTES);
  g_return_val_if_fail (name != NULL && QUARK_IS_TENSOR_SPEC (spec), QUARK_CODE_LAYOUT_BYTES);
  g_return_val_if_fail (shape != NULL || n_dims == 0, QUARK_CODE_LAYOUT_BYTES);

  return QUARK_CHECKPOINT_FORMAT_GET_CLASS (self)->get_code_layout (self, name, spec, shape, n_dims);
}

/**
 * quark_checkpoint_format_export_weight:
 * @self: a format
 * @layer: the layer the weight belongs to
 * @layer_type: (nullable): the layer's type ("Linear", "Conv2d", …)
 * @name: the weight's tensor name
 * @spec: the spec it was quantized with
 * @logical: NAME (codes), NAME_scale and NAME_zero_point, as
 *   [method@Quark.ModelQuantizer.quantize_tensor] returns them; the codes
 *   one per element, or in the layout
 *   [method@Quark.CheckpointFormat.get_code_layout] gives for the weight
 * @out: the model the format's tensors are added to
 * @error: return location for a #GError
 *
 * Writes one quantized weight in the format's layout, and records the layer.
 *
 * Returns: %TRUE on success
 */
gboolean
quark_checkpoint_format_export_weight (QuarkCheckpointFormat *self, const char *layer, const char *layer_type,
                                       const char *name, QuarkTensorSpec *spec, QuarkModel *logical,
                                       QuarkModel *out, GError **error)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), FALSE);
  g_return_val_if_fail (layer != NULL && name != NULL && spec != NULL, FALSE);
  g_return_val_if_fail (QUARK_IS_MODEL (logical) && QUARK_IS_MODEL (out), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (quark_model_get_tensor (logical, name) == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "tensor %s: no codes to export", name);
      return FALSE;
    }
  if (!QUARK_CHECKPOINT_FORMAT_GET_CLASS (self)->stores_column_order)
    {
      g_autofree char *g_idx = g_strconcat (name, "_g_idx", NULL);
      if (quark_model_get_tensor (logical, g_idx))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "tensor %s: its groups are in activation order (%s), which the %s format does not store",
                       name, g_idx, quark_checkpoint_format_get_name (self));
          return FALSE;
        }
    }
  quark_checkpoint_format_note_layer (self, layer, layer_type, QUARK_ROLE_WEIGHT, spec);
  return QUARK_CHECKPOINT_FORMAT_GET_CLASS (self)->write_weight (self, name, spec, logical, out, error);
}

/**
 * quark_checkpoint_format_export_activation:
 * @self: a format
 * @layer: the layer
 * @role: %QUARK_ROLE_INPUT or %QUARK_ROLE_OUTPUT
 * @spec: the activation spec
 * @scale: the float32 scale (a scalar, or one per channel)
 * @zero_point: (nullable): the zero point, for integer specs
 * @out: the model the format's tensors are added to
 * @error: return location for a #GError
 *
 * Writes a layer's static activation parameters, and records the spec.
 *
 * Returns: %TRUE on success
 */
gboolean
quark_checkpoint_format_export_activation (QuarkCheckpointFormat *self, const char *layer, QuarkRole role,
                                           QuarkTensorSpec *spec, QuarkTensor *scale, QuarkTensor *zero_point,
                                           QuarkModel *out, GError **error)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), FALSE);
  g_return_val_if_fail (layer != NULL && spec != NULL && QUARK_IS_TENSOR (scale), FALSE);
  g_return_val_if_fail (role == QUARK_ROLE_INPUT || role == QUARK_ROLE_OUTPUT, FALSE);
  g_return_val_if_fail (QUARK_IS_MODEL (out), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  quark_checkpoint_format_note_layer (self, layer, NULL, role, spec);
  return QUARK_CHECKPOINT_FORMAT_GET_CLASS (self)->write_activation (self, layer, role, spec, scale, zero_point,
                                                                      out, error);
}

/**
 * quark_checkpoint_format_set_backend_config:
 * @self: a format
 * @backend_config: (nullable): the backend's description of its config
 *
 * Gives the format the backend's own description of the export: for
 * AMD Quark's layout, the `quantization_config` in AMD Quark's schema
 * (`quant_method` "quark", with its `export` options such as
 * `pack_method`). Set it before exporting weights. The node is copied.
 */
void
quark_checkpoint_format_set_backend_config (QuarkCheckpointFormat *self, JsonNode *backend_config)
{
  QuarkCheckpointFormatPrivate *priv;

  g_return_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self));
  priv = quark_checkpoint_format_get_instance_private (self);
  g_clear_pointer (&priv->backend_config, json_node_unref);
  priv->backend_config = backend_config ? quark_json_copy (backend_config) : NULL;
}

/**
 * quark_checkpoint_format_set_threads:
 * @self: a format
 * @n_threads: threads for the format's own numerics, or 0 for one per
 *   processor (at most 8)
 *
 * Sets how many threads a format that quantizes whole models itself (GGUF,
 * quark_checkpoint_format_write_model()) splits its rows between; the
 * result does not depend on it. Formats that take a backend's codes ignore
 * it (the backend's quantizer has its own).
 */
void
quark_checkpoint_format_set_threads (QuarkCheckpointFormat *self,
                                     guint                  n_threads)
{
  g_return_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self));
  ((QuarkCheckpointFormatPrivate *) quark_checkpoint_format_get_instance_private (self))->threads = n_threads;
}

/**
 * quark_checkpoint_format_set_durable:
 * @self: a format
 * @durable: whether a whole-model output is on the disk before it gets its
 *   name
 *
 * Sets whether a format that writes whole models itself (GGUF,
 * quark_checkpoint_format_write_model()) flushes its file to the disk
 * (`fsync`) before renaming it into place, as
 * quark_checkpoint_writer_set_durable() does for the checkpoint writer (see
 * there for what either choice promises). Durable is the default. Formats
 * whose output goes through a #QuarkCheckpointWriter follow the writer's
 * setting instead.
 */
void
quark_checkpoint_format_set_durable (QuarkCheckpointFormat *self,
                                     gboolean               durable)
{
  g_return_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self));
  ((QuarkCheckpointFormatPrivate *) quark_checkpoint_format_get_instance_private (self))->not_durable = !durable;
}

/**
 * quark_checkpoint_format_get_durable:
 * @self: a format
 *
 * Gets the setting of quark_checkpoint_format_set_durable().
 *
 * Returns: %TRUE when durable (the default)
 */
gboolean
quark_checkpoint_format_get_durable (QuarkCheckpointFormat *self)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), TRUE);
  return !((QuarkCheckpointFormatPrivate *) quark_checkpoint_format_get_instance_private (self))->not_durable;
}

/**
 * quark_checkpoint_format_set_importance:
 * @self: a format
 * @importance: (nullable): per weight, the importance of each input column,
 *   as float32 tensors of the weight's row length named by the weight (the
 *   model's name or the format's own), such as
 *   quark_importance_matrix_load() reads; %NULL for none
 *
 * Gives a format that quantizes whole models itself the importance of
 * each weight's input columns (GGUF: llama-quantize's `--imatrix`; its
 * quantizers then weigh their errors by it). Weights without an entry are
 * quantized without. Formats that take a backend's codes ignore it.
 */
void
quark_checkpoint_format_set_importance (QuarkCheckpointFormat *self,
                                        QuarkModel            *importance)
{
  QuarkCheckpointFormatPrivate *priv;

  g_return_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self));
  g_return_if_fail (importance == NULL || QUARK_IS_MODEL (importance));
  priv = quark_checkpoint_format_get_instance_private (self);
  g_set_object (&priv->importance, importance);
}

/**
 * quark_checkpoint_format_get_importance:
 * @self: a format
 *
 * Gets the importance of quark_checkpoint_format_set_importance().
 *
 * Returns: (nullable) (transfer none): the importance, or %NULL
 */
QuarkModel *
quark_checkpoint_format_get_importance (QuarkCheckpointFormat *self)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), NULL);
  return ((QuarkCheckpointFormatPrivate *) quark_checkpoint_format_get_instance_private (self))->importance;
}

/**
 * quark_checkpoint_format_get_threads:
 * @self: a format
 *
 * Gets the threads of quark_checkpoint_format_set_threads(), resolved: one
 * per processor (at most 8) when it was 0.
 *
 * Returns: the number of threads, at least 1
 */
guint
quark_checkpoint_format_get_threads (QuarkCheckpointFormat *self)
{
  guint n;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), 1);
  n = ((QuarkCheckpointFormatPrivate *) quark_checkpoint_format_get_instance_private (self))->threads;
  return n ? n : MIN (MAX ((guint) g_get_num_processors (), 1u), 8u);
}

/**
 * quark_checkpoint_format_get_backend_config:
 * @self: a format
 *
 * Gets the backend's description of the export.
 *
 * Returns: (transfer none) (nullable): the backend's description, as set
 */
JsonNode *
quark_checkpoint_format_get_backend_config (QuarkCheckpointFormat *self)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), NULL);
  return ((QuarkCheckpointFormatPrivate *) quark_checkpoint_format_get_instance_private (self))->backend_config;
}

/**
 * quark_checkpoint_format_build_quantization_config:
 * @self: a format
 * @error: return location for a #GError
 *
 * Describes the export for the output's `config.json`, once every weight
 * is exported.
 *
 * Returns: (transfer full): the `quantization_config` object for the
 *   output's `config.json`, or %NULL with @error set
 */
JsonNode *
quark_checkpoint_format_build_quantization_config (QuarkCheckpointFormat *self, GError **error)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  return QUARK_CHECKPOINT_FORMAT_GET_CLASS (self)->build_quantization_config (self, error);
}

/**
 * quark_checkpoint_format_recognizes:
 * @self: a format
 * @quantization_config: a checkpoint's `quantization_config`
 *
 * Tells whether a checkpoint is in this format (`quark inspect` names the
 * format with it).
 *
 * Returns: whether a checkpoint described so is in this format
 */
gboolean
quark_checkpoint_format_recognizes (QuarkCheckpointFormat *self, JsonNode *quantization_config)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), FALSE);
  if (quantization_config == NULL || !JSON_NODE_HOLDS_OBJECT (quantization_config))
    return FALSE;
  return QUARK_CHECKPOINT_FORMAT_GET_CLASS (self)->recognizes (self, quantization_config);
}

/**
 * quark_checkpoint_format_import_activation:
 * @self: a format
 * @checkpoint: a checkpoint in this format
 * @layer: a linear layer's name
 * @role: %QUARK_ROLE_INPUT, or %QUARK_ROLE_OUTPUT for the KV cache (the
 *   outputs of `k_proj` and `v_proj`; the keys after RoPE when
 *   quark_checkpoint_format_get_kv_cache_after_rope() says so)
 * @spec: (out) (transfer full) (nullable): how the checkpoint says the
 *   layer's input (or output) is quantized, %NULL when it is not (or when
 *   the format describes no activations)
 * @scale: (out) (transfer full) (nullable): its static scale (for a dynamic
 *   NVFP4 spec, its global scale), %NULL for a dynamic spec
 * @zero_point: (out) (transfer full) (nullable): its static zero point,
 *   %NULL for none
 * @error: return location for a #GError
 *
 * The input quantization of @layer as a checkpoint in a format that
 * describes every tensor itself (compressed-tensors) states it, for a
 * runtime that evaluates the checkpoint with its inputs quantized as the
 * engine that loads it would quantize them
 * ([method@Quark.CheckpointFormat.fake_quantize_activation]). Formats whose
 * checkpoints a backend reads back describe none here: the backend's config
 * says.
 *
 * Returns: %TRUE on success (with or without a spec); %FALSE with
 *   %QUARK_ERROR_INVALID_FILE when the checkpoint's description is broken
 *   or %QUARK_ERROR_UNSUPPORTED_SCHEME when it states an input
 *   quantization the format does not run
 */
gboolean
quark_checkpoint_format_import_activation (QuarkCheckpointFormat *self, QuarkModel *checkpoint, const char *layer,
                                           QuarkRole role, QuarkTensorSpec **spec, QuarkTensor **scale, QuarkTensor **zero_point,
                                           GError **error)
{
  QuarkCheckpointFormatClass *klass;
  g_autoptr(QuarkTensorSpec) s = NULL;
  g_autoptr(QuarkTensor) sc = NULL, z = NULL;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), FALSE);
  g_return_val_if_fail (QUARK_IS_MODEL (checkpoint), FALSE);
  g_return_val_if_fail (layer != NULL, FALSE);
  g_return_val_if_fail (role == QUARK_ROLE_INPUT || role == QUARK_ROLE_OUTPUT, FALSE);
  g_return_val_if_fail (spec != NULL && scale != NULL && zero_point != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  *spec = NULL;
  *scale = *zero_point = NULL;
  klass = QUARK_CHECKPOINT_FORMAT_GET_CLASS (self);
  if (klass->read_activation == NULL)
    return TRUE;
  if (!klass->read_activation (self, checkpoint, layer, role, &s, &sc, &z, error))
    return FALSE;
  *spec = g_steal_pointer (&s);
  *scale = g_steal_pointer (&sc);
  *zero_point = g_steal_pointer (&z);
  return TRUE;
}

/**
 * quark_checkpoint_format_get_kv_cache_after_rope:
 * @self: a format
 *
 * Whether the engines that load this format quantize the cached keys after
 * RoPE (compressed-tensors: vLLM applies `k_scale` to the keys it writes
 * to the cache, and llm-compressor calibrates it on them), rather than as
 * `k_proj` makes them. A runtime that evaluates such a checkpoint, and a
 * calibration that makes one, quantize (and observe) the keys there.
 *
 * Returns: %TRUE for keys after RoPE
 */
gboolean
quark_checkpoint_format_get_kv_cache_after_rope (QuarkCheckpointFormat *self)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), FALSE);

  return QUARK_CHECKPOINT_FORMAT_GET_CLASS (self)->kv_cache_after_rope;
}

/**
 * quark_checkpoint_format_fake_quantize_activation:
 * @self: a format
 * @spec: a spec from [method@Quark.CheckpointFormat.import_activation]
 * @x: an input [tokens, features] (any float dtype)
 * @scale: (nullable): the static scale that came with @spec
 * @zero_point: (nullable): the static zero point that came with @spec
 * @error: return location for a #GError
 *
 * Quantizes @x as the format's engines quantize a layer's input at run time
 * and dequantizes it again: static specs with their stored parameters,
 * dynamic ones from @x itself, as the format documents.
 *
 * Returns: (transfer full): a float32 tensor shaped like @x, or %NULL with
 *   @error set
 */
QuarkTensor *
quark_checkpoint_format_fake_quantize_activation (QuarkCheckpointFormat *self, QuarkTensorSpec *spec, QuarkTensor *x,
                                                  QuarkTensor *scale, QuarkTensor *zero_point, GError **error)
{
  QuarkCheckpointFormatClass *klass;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (spec), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (x), NULL);
  g_return_val_if_fail (scale == NULL || QUARK_IS_TENSOR (scale), NULL);
  g_return_val_if_fail (zero_point == NULL || QUARK_IS_TENSOR (zero_point), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  klass = QUARK_CHECKPOINT_FORMAT_GET_CLASS (self);
  if (klass->fake_quantize_activation == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "the %s checkpoint format describes no input quantization", klass->name);
      return NULL;
    }
  return klass->fake_quantize_activation (self, spec, x, scale, zero_point, error);
}

/**
 * quark_checkpoint_format_import_weight:
 * @self: a format
 * @checkpoint: a checkpoint in this format
 * @name: a quantized weight's name
 * @spec: the spec it was quantized with
 * @logical: the model NAME (codes), NAME_scale and NAME_zero_point are added to
 * @error: return location for a #GError
 *
 * The inverse of [method@Quark.CheckpointFormat.export_weight].
 *
 * Returns: %TRUE on success
 */
gboolean
quark_checkpoint_format_import_weight (QuarkCheckpointFormat *self, QuarkModel *checkpoint, const char *name,
                                       QuarkTensorSpec *spec, QuarkModel *logical, GError **error)
{
  QuarkCheckpointFormatClass *klass;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), FALSE);
  g_return_val_if_fail (QUARK_IS_MODEL (checkpoint) && QUARK_IS_MODEL (logical), FALSE);
  g_return_val_if_fail (name != NULL && spec != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  klass = QUARK_CHECKPOINT_FORMAT_GET_CLASS (self);
  if (klass->read_weight == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "the %s checkpoint format cannot be read weight by weight", klass->name);
      return FALSE;
    }
  return klass->read_weight (self, checkpoint, name, spec, logical, error);
}

/**
 * quark_checkpoint_format_can_dequantize:
 * @self: a format
 *
 * Tells whether the format reads its checkpoints back on its own.
 *
 * Returns: whether [method@Quark.CheckpointFormat.dequantize_model] works
 *   without a backend (the format's config describes every tensor)
 */
gboolean
quark_checkpoint_format_can_dequantize (QuarkCheckpointFormat *self)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), FALSE);
  return QUARK_CHECKPOINT_FORMAT_GET_CLASS (self)->dequantize_model != NULL;
}

/**
 * quark_checkpoint_format_dequantize_model:
 * @self: a format
 * @checkpoint: a checkpoint in this format (with its `config.json` metadata)
 * @error: return location for a #GError
 *
 * Reads every quantized weight back to float32; other tensors pass through.
 *
 * Returns: (transfer full): the dequantized model, or %NULL with @error set
 */
QuarkModel *
quark_checkpoint_format_dequantize_model (QuarkCheckpointFormat *self, QuarkModel *checkpoint, GError **error)
{
  QuarkCheckpointFormatClass *klass;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), NULL);
  g_return_val_if_fail (QUARK_IS_MODEL (checkpoint), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  klass = QUARK_CHECKPOINT_FORMAT_GET_CLASS (self);
  if (klass->dequantize_model == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "the %s checkpoint format is read back by the backend its config names", klass->name);
      return NULL;
    }
  return klass->dequantize_model (self, checkpoint, error);
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

/**
 * quark_checkpoint_format_writes_files:
 * @self: a format
 *
 * Tells whether the format writes whole models to one file with numerics of
 * its own ([method@Quark.CheckpointFormat.write_model], GGUF) instead of
 * taking a backend's tensors.
 *
 * Returns: %TRUE for such a format
 */
gboolean
quark_checkpoint_format_writes_files (QuarkCheckpointFormat *self)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), FALSE);
  return QUARK_CHECKPOINT_FORMAT_GET_CLASS (self)->write_model != NULL;
}

/**
 * quark_checkpoint_format_list_schemes:
 * @self: a format
 *
 * Lists the schemes [method@Quark.CheckpointFormat.write_model] takes.
 *
 * Returns: (transfer full): the scheme names (empty for formats that take
 *   a backend's tensors)
 */
char **
quark_checkpoint_format_list_schemes (QuarkCheckpointFormat *self)
{
  QuarkCheckpointFormatClass *klass;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), NULL);
  klass = QUARK_CHECKPOINT_FORMAT_GET_CLASS (self);
  return klass->list_schemes ? klass->list_schemes (self) : g_new0 (char *, 1);
}

/**
 * quark_checkpoint_format_describe_scheme:
 * @self: a format
 * @scheme: a scheme name
 *
 * Describes a scheme in one line.
 *
 * Returns: (transfer full) (nullable): the description, or %NULL
 */
char *
quark_checkpoint_format_describe_scheme (QuarkCheckpointFormat *self, const char *scheme)
{
  QuarkCheckpointFormatClass *klass;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), NULL);
  g_return_val_if_fail (scheme != NULL, NULL);
  klass = QUARK_CHECKPOINT_FORMAT_GET_CLASS (self);
  return klass->describe_scheme ? klass->describe_scheme (self, scheme) : NULL;
}

/**
 * quark_checkpoint_format_write_model:
 * @self: a format that writes files
 * @model: a float model (with its `config.json` metadata)
 * @scheme: one of [method@Quark.CheckpointFormat.list_schemes]
 * @path: the file to write
 * @overwrite: whether an existing file at @path is replaced
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Quantizes and writes @model to one file with the format's own numerics.
 * The file appears complete or not at all.
 *
 * Returns: %TRUE on success
 */
gboolean
quark_checkpoint_format_write_model (QuarkCheckpointFormat *self, QuarkModel *model, const char *scheme,
                                     const char *path, gboolean overwrite, GCancellable *cancellable,
                                     GError **error)
{
  QuarkCheckpointFormatClass *klass;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), FALSE);
  g_return_val_if_fail (QUARK_IS_MODEL (model) && scheme != NULL && path != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  klass = QUARK_CHECKPOINT_FORMAT_GET_CLASS (self);
  if (klass->write_model == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "the %s format takes a backend's tensors; it does not write models on its own", klass->name);
      return FALSE;
    }
  return klass->write_model (self, model, scheme, path, overwrite, cancellable, error);
}

/**
 * quark_checkpoint_format_read_file:
 * @self: a format that writes files
 * @path: a file of this format
 * @dequantize: whether to dequantize the tensors to float32
 * @error: return location for a #GError
 *
 * Reads a single-file checkpoint: its tensors under the model's original
 * names (dequantized when @dequantize is set, else as stored, under the
 * file's own names) and its metadata as the model's metadata.
 *
 * Returns: (transfer full): the model, or %NULL with @error set
 */
QuarkModel *
quark_checkpoint_format_read_file (QuarkCheckpointFormat *self, const char *path, gboolean dequantize,
                                   GError **error)
{
  QuarkCheckpointFormatClass *klass;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), NULL);
  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  klass = QUARK_CHECKPOINT_FORMAT_GET_CLASS (self);
  if (klass->read_file == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "the %s format has no single-file reader",
                   klass->name);
      return NULL;
    }
  return klass->read_file (self, path, dequantize, error);
}

/**
 * quark_checkpoint_format_stores_column_order:
 * @self: a format
 *
 * Whether the format stores, for a weight quantized in groups, the group
 * of each input column (compressed-tensors' `weight_g_idx`), which GPTQ's
 * groups in activation order need (`desc_act` with `static_groups:
 * false`). Formats that do not refuse such weights.
 *
 * Returns: %TRUE if it does
 */
gboolean
quark_checkpoint_format_stores_column_order (QuarkCheckpointFormat *self)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), FALSE);

  return QUARK_CHECKPOINT_FORMAT_GET_CLASS (self)->stores_column_order;
}

/**
 * quark_checkpoint_format_sniff:
 * @self: a format
 * @head: (array length=length): the first bytes of a file
 * @length: how many
 *
 * Tells whether a file is in this format by its first bytes (as image
 * loaders do), for single-file formats.
 *
 * Returns: %TRUE if it is
 */
gboolean
quark_checkpoint_format_sniff (QuarkCheckpointFormat *self, const guint8 *head, gsize length)
{
  QuarkCheckpointFormatClass *klass;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), FALSE);
  g_return_val_if_fail (head != NULL || length == 0, FALSE);
  klass = QUARK_CHECKPOINT_FORMAT_GET_CLASS (self);
  return klass->sniff != NULL && klass->sniff (self, head, length);
}

/**
 * quark_checkpoint_format_get_layers:
 * @self: a format
 *
 * Lists the layers noted so far (quantized or left in float).
 *
 * Returns: (transfer full): the layers recorded so far, sorted by name
 */
char **
quark_checkpoint_format_get_layers (QuarkCheckpointFormat *self)
{
  QuarkCheckpointFormatPrivate *priv;
  GPtrArray *names = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer key;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), NULL);
  priv = quark_checkpoint_format_get_instance_private (self);
  g_mutex_lock (&priv->lock);
  g_hash_table_iter_init (&iter, priv->layers);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    g_ptr_array_add (names, g_strdup (key));
  g_mutex_unlock (&priv->lock);
  g_ptr_array_sort (names, compare_names);
  g_ptr_array_add (names, NULL);
  return (char **) g_ptr_array_free (names, FALSE);
}

/**
 * quark_checkpoint_format_get_layer_type:
 * @self: a format
 * @layer: a recorded layer
 *
 * Gets the type a layer was noted with.
 *
 * Returns: (nullable): its type, as the backend gave it
 */
const char *
quark_checkpoint_format_get_layer_type (QuarkCheckpointFormat *self, const char *layer)
{
  QuarkCheckpointFormatPrivate *priv;
  LayerRecord *r;
  const char *type;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), NULL);
  priv = quark_checkpoint_format_get_instance_private (self);
  g_mutex_lock (&priv->lock);
  r = g_hash_table_lookup (priv->layers, layer);
  type = r ? r->type : NULL;   /* never freed while the instance lives */
  g_mutex_unlock (&priv->lock);
  return type;
}

/**
 * quark_checkpoint_format_get_layer_spec:
 * @self: a format
 * @layer: a recorded layer
 * @role: the role
 *
 * Gets the spec a layer's role was noted with.
 *
 * Returns: (transfer full) (nullable): the spec of @role in @layer
 */
QuarkTensorSpec *
quark_checkpoint_format_get_layer_spec (QuarkCheckpointFormat *self, const char *layer, QuarkRole role)
{
  QuarkCheckpointFormatPrivate *priv;
  LayerRecord *r;
  QuarkTensorSpec *spec = NULL;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_FORMAT (self), NULL);
  g_return_val_if_fail (role <= QUARK_ROLE_BIAS, NULL);
  priv = quark_checkpoint_format_get_instance_private (self);
  g_mutex_lock (&priv->lock);
  r = g_hash_table_lookup (priv->layers, layer);
  if (r && r->spec[role])
    spec = quark_tensor_spec_copy (r->spec[role]);
  g_mutex_unlock (&priv->lock);
  return spec;
}
