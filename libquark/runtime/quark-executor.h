/* quark-executor.h: a Llama-family forward pass, natively
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <gio/gio.h>

#include "../quark-version-macros.h"
#include "../quark-model.h"
#include "../quark-calibration.h"
#include "../quark-model-quantizer.h"

G_BEGIN_DECLS

#define QUARK_TYPE_EXECUTOR (quark_executor_get_type ())

QUARK_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (QuarkExecutor, quark_executor, QUARK, EXECUTOR, GObject)

QUARK_AVAILABLE_IN_1_0
QuarkExecutor * quark_executor_new               (QuarkModel       *model,
                                                  GError          **error);
QUARK_AVAILABLE_IN_1_0
QuarkExecutor * quark_executor_new_from_path     (const char       *path,
                                                  GError          **error);
QUARK_AVAILABLE_IN_1_0
void            quark_executor_set_threads       (QuarkExecutor    *self,
                                                  guint             n_threads);
QUARK_AVAILABLE_IN_1_0
guint           quark_executor_get_threads       (QuarkExecutor    *self);
QUARK_AVAILABLE_IN_1_0
QuarkModel *    quark_executor_get_model         (QuarkExecutor    *self);
QUARK_AVAILABLE_IN_1_0
char **         quark_executor_get_quantized_inputs (QuarkExecutor *self);
QUARK_AVAILABLE_IN_1_0
char **         quark_executor_get_quantized_outputs (QuarkExecutor *self);
QUARK_AVAILABLE_IN_1_0
guint           quark_executor_get_vocab_size    (QuarkExecutor    *self);
QUARK_AVAILABLE_IN_1_0
guint           quark_executor_get_max_context   (QuarkExecutor    *self);
QUARK_AVAILABLE_IN_1_0
QuarkTensor *   quark_executor_forward           (QuarkExecutor    *self,
                                                  const guint32    *ids,
                                                  gsize             n_ids,
                                                  GCancellable     *cancellable,
                                                  GError          **error);
QUARK_AVAILABLE_IN_1_0
gboolean        quark_executor_evaluate          (QuarkExecutor    *self,
                                                  QuarkExecutor    *reference,
                                                  const guint32    *ids,
                                                  gsize             n_ids,
                                                  guint             context,
                                                  guint             stride,
                                                  GCancellable     *cancellable,
                                                  double           *perplexity,
                                                  double           *reference_perplexity,
                                                  double           *kl_divergence,
                                                  guint64          *n_scored,
                                                  GError          **error);
QUARK_AVAILABLE_IN_1_0
gboolean        quark_executor_calibrate         (QuarkExecutor    *self,
                                                  QuarkCalibration *calibration,
                                                  const guint32    *ids,
                                                  gsize             n_ids,
                                                  guint             context,
                                                  GCancellable     *cancellable,
                                                  GError          **error);
QUARK_AVAILABLE_IN_1_0
gboolean        quark_executor_calibrate_sequential (QuarkExecutor *self,
                                                  QuarkCalibration *calibration,
                                                  QuarkModelQuantizer *quantizer,
                                                  const guint32    *ids,
                                                  gsize             n_ids,
                                                  guint             context,
                                                  GCancellable     *cancellable,
                                                  GError          **error);
QUARK_AVAILABLE_IN_1_0
void            quark_executor_evaluate_async    (QuarkExecutor    *self,
                                                  QuarkExecutor    *reference,
                                                  const guint32    *ids,
                                                  gsize             n_ids,
                                                  guint             context,
                                                  guint             stride,
                                                  GCancellable     *cancellable,
                                                  GAsyncReadyCallback callback,
                                                  gpointer          user_data);
QUARK_AVAILABLE_IN_1_0
gboolean        quark_executor_evaluate_finish   (QuarkExecutor    *self,
                                                  GAsyncResult     *result,
                                                  double           *perplexity,
                                                  double           *reference_perplexity,
                                                  double           *kl_divergence,
                                                  guint64          *n_scored,
                                                  GError          **error);
QUARK_AVAILABLE_IN_1_0
void            quark_executor_calibrate_async   (QuarkExecutor    *self,
                                                  QuarkCalibration *calibration,
                                                  const guint32    *ids,
                                                  gsize             n_ids,
                                                  guint             context,
                                                  GCancellable     *cancellable,
                                                  GAsyncReadyCallback callback,
                                                  gpointer          user_data);
QUARK_AVAILABLE_IN_1_0
gboolean        quark_executor_calibrate_finish  (QuarkExecutor    *self,
                                                  GAsyncResult     *result,
                                                  GError          **error);

G_END_DECLS
