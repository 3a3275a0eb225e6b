/* quark-model-quantizer.h: the quantizer interface
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <gio/gio.h>

#include "quark-calibration.h"
#include "quark-checkpoint-writer.h"
#include "quark-model.h"
#include "quark-quantization-config.h"

G_BEGIN_DECLS

#define QUARK_TYPE_MODEL_QUANTIZER (quark_model_quantizer_get_type ())

QUARK_AVAILABLE_IN_1_0
G_DECLARE_INTERFACE (QuarkModelQuantizer, quark_model_quantizer, QUARK, MODEL_QUANTIZER, GObject)

/**
 * QuarkModelQuantizerInterface:
 * @g_iface: the parent interface
 * @quantize_model: quantizes a model; implementations check @cancellable
 *   between units of work and call quark_model_quantizer_report_progress()
 * @quantize_tensor: quantizes one tensor with a spec, with the backend's
 *   semantics; the default reports %QUARK_ERROR_UNSUPPORTED_SCHEME
 * @dequantize_model: reads a checkpoint this quantizer's config produced back
 *   into float tensors; the default reports %QUARK_ERROR_UNSUPPORTED_SCHEME
 * @quantize_model_to_writer: quantizes a model and hands each output tensor
 *   to a #QuarkCheckpointWriter as soon as it is made; the default runs
 *   @quantize_model and then writes its result
 * @prepare_model: transforms the float model as the config asks before it
 *   is calibrated (rotation); the default returns the model itself
 * @activation_params: the static scales and zero points of an activation
 *   spec from a calibration session (or, where the backend's semantics
 *   define one, without calibration); the default reports
 *   %QUARK_ERROR_UNSUPPORTED_SCHEME.
 * @quantize_activation: quantizes an activation tensor with an activation
 *   spec and given or dynamic scales; the default reports
 *   %QUARK_ERROR_UNSUPPORTED_SCHEME.
 * @fake_quantize_activation: quantizes an activation and dequantizes it
 *   again; the default fake-quantizes static specs with
 *   quark_tensor_spec_fake_quantize() and reports
 *   %QUARK_ERROR_UNSUPPORTED_SCHEME for dynamic ones.
 * @prepare_needs_calibration: whether @prepare_model_with_calibration needs
 *   a calibration session; the default returns %FALSE
 * @prepare_model_with_calibration: transforms the float model with what a
 *   calibration session learned of it; the default runs @prepare_model
 * @check_model: checks, without quantizing anything, the layout of every
 *   tensor the config would quantize (the spec fits the tensor's shape and
 *   the export format's layout); the default accepts every model
 *
 * The virtual methods of #QuarkModelQuantizer.
 */
struct _QuarkModelQuantizerInterface
{
  GTypeInterface g_iface;

  QuarkModel * (*quantize_model) (QuarkModelQuantizer  *self,
                                  QuarkModel           *model,
                                  QuarkCalibration     *calibration,
                                  GCancellable         *cancellable,
                                  GError              **error);
  QuarkModel * (*quantize_tensor) (QuarkModelQuantizer  *self,
                                   QuarkTensor          *tensor,
                                   QuarkTensorSpec      *spec,
                                   GError              **error);
  QuarkModel * (*dequantize_model) (QuarkModelQuantizer *self,
                                    QuarkModel          *quantized,
                                    GError             **error);
  gboolean     (*quantize_model_to_writer) (QuarkModelQuantizer    *self,
                                            QuarkModel             *model,
                                            QuarkCalibration       *calibration,
                                            QuarkCheckpointWriter  *writer,
                                            GCancellable           *cancellable,
                                            GError                **error);
  QuarkModel * (*prepare_model) (QuarkModelQuantizer  *self,
                                 QuarkModel           *model,
                                 GCancellable         *cancellable,
                                 GError              **error);
  gboolean     (*activation_params) (QuarkModelQuantizer  *self,
                                     QuarkTensorSpec      *spec,
                                     QuarkCalibration     *calibration,
                                     const char           *layer_name,
                                     QuarkRole             role,
                                     QuarkTensor         **scale,
                                     QuarkTensor         **zero_point,
                                     GError              **error);
  QuarkModel * (*quantize_activation) (QuarkModelQuantizer  *self,
                                       QuarkTensor          *tensor,
                                       QuarkTensorSpec      *spec,
                                       QuarkTensor          *scale,
                                       QuarkTensor          *zero_point,
                                       GError              **error);
  QuarkTensor * (*fake_quantize_activation) (QuarkModelQuantizer  *self,
                                             QuarkTensor          *tensor,
                                             QuarkTensorSpec      *spec,
                                             QuarkTensor          *scale,
                                             QuarkTensor          *zero_point,
                                             GError              **error);
  gboolean     (*prepare_needs_calibration) (QuarkModelQuantizer *self);
  QuarkModel * (*prepare_model_with_calibration) (QuarkModelQuantizer  *self,
                                                  QuarkModel           *model,
                                                  QuarkCalibration     *calibration,
                                                  GCancellable         *cancellable,
                                                  GError              **error);
  gboolean     (*check_model) (QuarkModelQuantizer  *self,
                               QuarkModel           *model,
                               GError              **error);
};

QUARK_AVAILABLE_IN_1_0
QuarkQuantizationConfig * quark_model_quantizer_get_config           (QuarkModelQuantizer  *self);
QUARK_AVAILABLE_IN_1_0
QuarkModel *              quark_model_quantizer_quantize_model       (QuarkModelQuantizer  *self,
                                                                      QuarkModel           *model,
                                                                      QuarkCalibration     *calibration,
                                                                      GCancellable         *cancellable,
                                                                      GError              **error);
QUARK_AVAILABLE_IN_1_0
QuarkModel *              quark_model_quantizer_prepare_model        (QuarkModelQuantizer  *self,
                                                                      QuarkModel           *model,
                                                                      GCancellable         *cancellable,
                                                                      GError              **error);
QUARK_AVAILABLE_IN_1_0
gboolean                  quark_model_quantizer_prepare_needs_calibration (QuarkModelQuantizer *self);
QUARK_AVAILABLE_IN_1_0
gboolean                  quark_model_quantizer_check_model          (QuarkModelQuantizer  *self,
                                                                      QuarkModel           *model,
                                                                      GError              **error);
QUARK_AVAILABLE_IN_1_0
QuarkModel *              quark_model_quantizer_prepare_model_with_calibration (QuarkModelQuantizer  *self,
                                                                      QuarkModel           *model,
                                                                      QuarkCalibration     *calibration,
                                                                      GCancellable         *cancellable,
                                                                      GError              **error);
QUARK_AVAILABLE_IN_1_0
QuarkModel *              quark_model_quantizer_quantize_tensor      (QuarkModelQuantizer  *self,
                                                                      QuarkTensor          *tensor,
                                                                      QuarkTensorSpec      *spec,
                                                                      GError              **error);
QUARK_AVAILABLE_IN_1_0
gboolean                  quark_model_quantizer_get_activation_params (QuarkModelQuantizer  *self,
                                                                      QuarkTensorSpec      *spec,
                                                                      QuarkCalibration     *calibration,
                                                                      const char           *layer_name,
                                                                      QuarkRole             role,
                                                                      QuarkTensor         **scale,
                                                                      QuarkTensor         **zero_point,
                                                                      GError              **error);
QUARK_AVAILABLE_IN_1_0
QuarkModel *              quark_model_quantizer_quantize_activation  (QuarkModelQuantizer  *self,
                                                                      QuarkTensor          *tensor,
                                                                      QuarkTensorSpec      *spec,
                                                                      QuarkTensor          *scale,
                                                                      QuarkTensor          *zero_point,
                                                                      GError              **error);
QUARK_AVAILABLE_IN_1_0
QuarkTensor *             quark_model_quantizer_fake_quantize_activation (QuarkModelQuantizer  *self,
                                                                      QuarkTensor          *tensor,
                                                                      QuarkTensorSpec      *spec,
                                                                      QuarkTensor          *scale,
                                                                      QuarkTensor          *zero_point,
                                                                      GError              **error);
QUARK_AVAILABLE_IN_1_0
gboolean                  quark_model_quantizer_quantize_model_to_writer (QuarkModelQuantizer   *self,
                                                                      QuarkModel            *model,
                                                                      QuarkCalibration      *calibration,
                                                                      QuarkCheckpointWriter *writer,
                                                                      GCancellable          *cancellable,
                                                                      GError               **error);
QUARK_AVAILABLE_IN_1_0
QuarkModel *              quark_model_quantizer_dequantize_model     (QuarkModelQuantizer  *self,
                                                                      QuarkModel           *quantized,
                                                                      GError              **error);
QUARK_AVAILABLE_IN_1_0
void                      quark_model_quantizer_quantize_model_async (QuarkModelQuantizer  *self,
                                                                      QuarkModel           *model,
                                                                      QuarkCalibration     *calibration,
                                                                      GCancellable         *cancellable,
                                                                      GAsyncReadyCallback   callback,
                                                                      gpointer              user_data);
QUARK_AVAILABLE_IN_1_0
QuarkModel *              quark_model_quantizer_quantize_model_finish (QuarkModelQuantizer *self,
                                                                      GAsyncResult         *result,
                                                                      GError              **error);
QUARK_AVAILABLE_IN_1_0
void                      quark_model_quantizer_report_progress      (QuarkModelQuantizer  *self,
                                                                      guint64               done,
                                                                      guint64               total,
                                                                      const char           *item);

G_END_DECLS
