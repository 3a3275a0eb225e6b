/* quark-checkpoint-format.h: checkpoint formats, the layouts a quantized
 * model is written in
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "quark-enums.h"
#include "quark-model.h"
#include "quark-quantization-config.h"
#include "quark-tensor.h"
#include "quark-tensor-spec.h"

G_BEGIN_DECLS

#define QUARK_TYPE_CHECKPOINT_FORMAT (quark_checkpoint_format_get_type ())

QUARK_AVAILABLE_IN_1_0
G_DECLARE_DERIVABLE_TYPE (QuarkCheckpointFormat, quark_checkpoint_format, QUARK, CHECKPOINT_FORMAT, GObject)

/**
 * QuarkCheckpointFormatClass:
 * @parent_class: the parent class
 * @name: the format's registered name (`--export-format NAME`), set in
 *   `class_init`
 * @description: one line for `quark formats`, set in `class_init`
 * @quant_method: the `quant_method` of the `quantization_config` of this
 *   format's checkpoints, which the default @recognizes looks for (%NULL:
 *   none)
 * @check_weight: fails when a weight of this shape cannot be written with
 *   this spec (called before any work). Default: every weight fits.
 * @prepare: called once every layer is noted
 *   ([method@Quark.CheckpointFormat.note_layer]) and before any weight is
 *   exported: fails when the layers together cannot be written (the error
 *   names a layer). Default: they can.
 * @get_scale_dtype: the dtype the format stores the weight scales of @layer
 *   in, given the dtype of the float weight. The backend rounds each scale to it
 *   before computing codes, so the stored scale is the one the codes were
 *   made with. Default: %QUARK_DTYPE_F32.
 * @write_weight: writes one quantized weight: @logical holds NAME (codes,
 *   one per element, in the spec's dtype), NAME_scale and, for integers,
 *   NAME_zero_point, as [method@Quark.ModelQuantizer.quantize_tensor]
 *   returns them, and NAME_g_idx (int32, the group of each input column)
 *   for groups in activation order, which only formats with
 *   @stores_column_order receive; the format adds its own tensors to @out.
 *   Required.
 * @write_activation: writes a layer's static activation parameters (a
 *   float32 scale tensor, and for integers a zero-point tensor). Default:
 *   LAYER.input_scale / LAYER.input_zero_point (output_ for outputs) as given.
 * @build_quantization_config: the `quantization_config` object of the
 *   output's `config.json`, from the layers exported so far
 *   ([method@Quark.CheckpointFormat.get_layers]) and the backend's own
 *   description ([method@Quark.CheckpointFormat.get_backend_config]).
 *   Required.
 * @recognizes: whether a checkpoint with this `quantization_config` is in
 *   this format. Default: its `quant_method` is @quant_method.
 * @read_weight: the inverse of @write_weight: the logical tensors of
 *   weight @name of @checkpoint, for a backend to dequantize. Optional.
 * @dequantize_model: reads a checkpoint of this format back to float with
 *   the format's own, self-describing config (no backend involved).
 *   Optional: formats whose config names a backend leave it unset.
 * @list_schemes: the schemes of a format that quantizes with numerics of
 *   its own (write_model), such as GGUF's types. Optional.
 * @describe_scheme: one line about a scheme (bits per weight, …). Optional.
 * @write_model: writes a float model to one file at @path with @scheme,
 *   quantizing with the format's own numerics (no backend). Optional: set
 *   by single-file formats such as GGUF.
 * @read_file: reads a single-file checkpoint of this format: its tensors
 *   under the model's original names, dequantized to float32 when
 *   @dequantize is set, else as stored. Optional.
 * @sniff: whether a file that starts with @head is of this format (its
 *   magic bytes). Optional.
 * @stores_column_order: whether @write_weight takes a weight's column
 *   groups (NAME_g_idx in the logical tensors: GPTQ's groups in activation
 *   order), set in `class_init`. Default: %FALSE.
 * @read_activation: how a checkpoint of this format says a layer's input
 *   (or output, by @role) is quantized at run time, for formats that
 *   describe every tensor themselves. Optional.
 * @fake_quantize_activation: quantizes an activation as the format's
 *   engines do and dequantizes it again. Optional (with @read_activation).
 * @kv_cache_after_rope: whether the engines of this format quantize the
 *   keys of the KV cache after RoPE (as the cache holds them) rather than
 *   as k_proj makes them, set in `class_init`. Default: %FALSE.
 * @get_code_layout: the layout @write_weight stores the codes of weight
 *   @name (of @shape, quantized with @spec) in, when a backend may give
 *   them so: a backend that writes the codes straight into that layout
 *   gives NAME as that tensor (int32 for the int4 layouts) instead of one
 *   code per byte, and @write_weight takes both. Default:
 *   %QUARK_CODE_LAYOUT_BYTES (@write_weight always gets one code per
 *   element).
 *
 * The class of a checkpoint format.
 */
struct _QuarkCheckpointFormatClass
{
  GObjectClass parent_class;

  const char *name;
  const char *description;
  const char *quant_method;

  gboolean     (*check_weight)       (QuarkCheckpointFormat  *self,
                                      const char             *name,
                                      const gint64           *shape,
                                      guint                   n_dims,
                                      QuarkTensorSpec        *spec,
                                      GError                **error);
  gboolean     (*prepare)            (QuarkCheckpointFormat  *self,
                                      GError                **error);
  QuarkDType   (*get_scale_dtype)    (QuarkCheckpointFormat  *self,
                                      const char             *layer,
                                      QuarkTensorSpec        *spec,
                                      QuarkDType              weight_dtype);
  gboolean     (*write_weight)      (QuarkCheckpointFormat  *self,
                                      const char             *name,
                                      QuarkTensorSpec        *spec,
                                      QuarkModel             *logical,
                                      QuarkModel             *out,
                                      GError                **error);
  gboolean     (*write_activation)  (QuarkCheckpointFormat  *self,
                                      const char             *layer,
                                      QuarkRole               role,
                                      QuarkTensorSpec        *spec,
                                      QuarkTensor            *scale,
                                      QuarkTensor            *zero_point,
                                      QuarkModel             *out,
                                      GError                **error);
  JsonNode *   (*build_quantization_config) (QuarkCheckpointFormat *self,
                                      GError                **error);
  gboolean     (*recognizes)         (QuarkCheckpointFormat  *self,
                                      JsonNode               *quantization_config);
  gboolean     (*read_weight)      (QuarkCheckpointFormat  *self,
                                      QuarkModel             *checkpoint,
                                      const char             *name,
                                      QuarkTensorSpec        *spec,
                                      QuarkModel             *logical,
                                      GError                **error);
  QuarkModel * (*dequantize_model)   (QuarkCheckpointFormat  *self,
                                      QuarkModel             *checkpoint,
                                      GError                **error);
  char **      (*list_schemes)       (QuarkCheckpointFormat  *self);
  char *       (*describe_scheme)    (QuarkCheckpointFormat  *self,
                                      const char             *scheme);
  gboolean     (*write_model)        (QuarkCheckpointFormat  *self,
                                      QuarkModel             *model,
                                      const char             *scheme,
                                      const char             *path,
                                      gboolean                overwrite,
                                      GCancellable           *cancellable,
                                      GError                **error);
  QuarkModel * (*read_file)          (QuarkCheckpointFormat  *self,
                                      const char             *path,
                                      gboolean                dequantize,
                                      GError                **error);
  gboolean     (*sniff)              (QuarkCheckpointFormat  *self,
                                      const guint8           *head,
                                      gsize                   length);
  gboolean stores_column_order;
  gboolean     (*read_activation)    (QuarkCheckpointFormat  *self,
                                      QuarkModel             *checkpoint,
                                      const char             *layer,
                                      QuarkRole               role,
                                      QuarkTensorSpec       **spec,
                                      QuarkTensor           **scale,
                                      QuarkTensor           **zero_point,
                                      GError                **error);
  QuarkTensor * (*fake_quantize_activation) (QuarkCheckpointFormat *self,
                                      QuarkTensorSpec        *spec,
                                      QuarkTensor            *x,
                                      QuarkTensor            *scale,
                                      QuarkTensor            *zero_point,
                                      GError                **error);

  gboolean kv_cache_after_rope;

  QuarkCodeLayout (*get_code_layout)  (QuarkCheckpointFormat  *self,
                                      const char             *name,
                                      QuarkTensorSpec        *spec,
                                      const gint64           *shape,
                                      guint                   n_dims);

  /*< private >*/
  gpointer padding[1];
};

QUARK_AVAILABLE_IN_1_0
const char *      quark_checkpoint_format_get_name        (QuarkCheckpointFormat  *self);
QUARK_AVAILABLE_IN_1_0
const char *      quark_checkpoint_format_get_description (QuarkCheckpointFormat  *self);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_checkpoint_format_check_weight    (QuarkCheckpointFormat  *self,
                                                           const char             *name,
                                                           const gint64           *shape,
                                                           guint                   n_dims,
                                                           QuarkTensorSpec        *spec,
                                                           GError                **error);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_checkpoint_format_prepare         (QuarkCheckpointFormat  *self,
                                                           GError                **error);
QUARK_AVAILABLE_IN_1_0
QuarkDType        quark_checkpoint_format_get_scale_dtype (QuarkCheckpointFormat  *self,
                                                           const char             *layer,
                                                           QuarkTensorSpec        *spec,
                                                           QuarkDType              weight_dtype);
QUARK_AVAILABLE_IN_1_0
QuarkCodeLayout   quark_checkpoint_format_get_code_layout (QuarkCheckpointFormat  *self,
                                                           const char             *name,
                                                           QuarkTensorSpec        *spec,
                                                           const gint64           *shape,
                                                           guint                   n_dims);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_checkpoint_format_export_weight   (QuarkCheckpointFormat  *self,
                                                           const char             *layer,
                                                           const char             *layer_type,
                                                           const char             *name,
                                                           QuarkTensorSpec        *spec,
                                                           QuarkModel             *logical,
                                                           QuarkModel             *out,
                                                           GError                **error);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_checkpoint_format_export_activation (QuarkCheckpointFormat *self,
                                                           const char             *layer,
                                                           QuarkRole               role,
                                                           QuarkTensorSpec        *spec,
                                                           QuarkTensor            *scale,
                                                           QuarkTensor            *zero_point,
                                                           QuarkModel             *out,
                                                           GError                **error);
QUARK_AVAILABLE_IN_1_0
void              quark_checkpoint_format_note_layer      (QuarkCheckpointFormat  *self,
                                                           const char             *layer,
                                                           const char             *layer_type,
                                                           QuarkRole               role,
                                                           QuarkTensorSpec        *spec);
QUARK_AVAILABLE_IN_1_0
QuarkTensorSpec * quark_checkpoint_format_note_config_layer (QuarkCheckpointFormat *self,
                                                           QuarkQuantizationConfig *config,
                                                           const char             *layer,
                                                           const char             *layer_type);
QUARK_AVAILABLE_IN_1_0
void              quark_checkpoint_format_set_backend_config (QuarkCheckpointFormat *self,
                                                           JsonNode               *backend_config);
QUARK_AVAILABLE_IN_1_0
JsonNode *        quark_checkpoint_format_get_backend_config (QuarkCheckpointFormat *self);
QUARK_AVAILABLE_IN_1_0
void              quark_checkpoint_format_set_threads (QuarkCheckpointFormat *self,
                                                     guint                  n_threads);
QUARK_AVAILABLE_IN_1_0
guint             quark_checkpoint_format_get_threads (QuarkCheckpointFormat *self);
QUARK_AVAILABLE_IN_1_0
void              quark_checkpoint_format_set_durable (QuarkCheckpointFormat *self,
                                                     gboolean               durable);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_checkpoint_format_get_durable (QuarkCheckpointFormat *self);
QUARK_AVAILABLE_IN_1_0
void              quark_checkpoint_format_set_importance (QuarkCheckpointFormat *self,
                                                        QuarkModel            *importance);
QUARK_AVAILABLE_IN_1_0
QuarkModel *      quark_checkpoint_format_get_importance (QuarkCheckpointFormat *self);
QUARK_AVAILABLE_IN_1_0
JsonNode *        quark_checkpoint_format_build_quantization_config (QuarkCheckpointFormat *self,
                                                           GError                **error);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_checkpoint_format_recognizes      (QuarkCheckpointFormat  *self,
                                                           JsonNode               *quantization_config);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_checkpoint_format_import_activation (QuarkCheckpointFormat  *self,
                                                             QuarkModel             *checkpoint,
                                                             const char             *layer,
                                                             QuarkRole               role,
                                                             QuarkTensorSpec       **spec,
                                                             QuarkTensor           **scale,
                                                             QuarkTensor           **zero_point,
                                                             GError                **error);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_checkpoint_format_get_kv_cache_after_rope (QuarkCheckpointFormat *self);
QUARK_AVAILABLE_IN_1_0
QuarkTensor *     quark_checkpoint_format_fake_quantize_activation (QuarkCheckpointFormat  *self,
                                                                    QuarkTensorSpec        *spec,
                                                                    QuarkTensor            *x,
                                                                    QuarkTensor            *scale,
                                                                    QuarkTensor            *zero_point,
                                                                    GError                **error);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_checkpoint_format_import_weight   (QuarkCheckpointFormat  *self,
                                                           QuarkModel             *checkpoint,
                                                           const char             *name,
                                                           QuarkTensorSpec        *spec,
                                                           QuarkModel             *logical,
                                                           GError                **error);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_checkpoint_format_can_dequantize  (QuarkCheckpointFormat  *self);
QUARK_AVAILABLE_IN_1_0
QuarkModel *      quark_checkpoint_format_dequantize_model (QuarkCheckpointFormat *self,
                                                           QuarkModel             *checkpoint,
                                                           GError                **error);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_checkpoint_format_writes_files    (QuarkCheckpointFormat  *self);
QUARK_AVAILABLE_IN_1_0
char **           quark_checkpoint_format_list_schemes    (QuarkCheckpointFormat  *self);
QUARK_AVAILABLE_IN_1_0
char *            quark_checkpoint_format_describe_scheme (QuarkCheckpointFormat  *self,
                                                           const char             *scheme);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_checkpoint_format_write_model     (QuarkCheckpointFormat  *self,
                                                           QuarkModel             *model,
                                                           const char             *scheme,
                                                           const char             *path,
                                                           gboolean                overwrite,
                                                           GCancellable           *cancellable,
                                                           GError                **error);
QUARK_AVAILABLE_IN_1_0
QuarkModel *      quark_checkpoint_format_read_file       (QuarkCheckpointFormat  *self,
                                                           const char             *path,
                                                           gboolean                dequantize,
                                                           GError                **error);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_checkpoint_format_stores_column_order (QuarkCheckpointFormat *self);
QUARK_AVAILABLE_IN_1_0
gboolean          quark_checkpoint_format_sniff           (QuarkCheckpointFormat  *self,
                                                           const guint8           *head,
                                                           gsize                   length);
QUARK_AVAILABLE_IN_1_0
char **           quark_checkpoint_format_get_layers      (QuarkCheckpointFormat  *self);
QUARK_AVAILABLE_IN_1_0
const char *      quark_checkpoint_format_get_layer_type  (QuarkCheckpointFormat  *self,
                                                           const char             *layer);
QUARK_AVAILABLE_IN_1_0
QuarkTensorSpec * quark_checkpoint_format_get_layer_spec  (QuarkCheckpointFormat  *self,
                                                           const char             *layer,
                                                           QuarkRole               role);

G_END_DECLS
