/* quark-checkpoint-writer.h: streaming safetensors checkpoints
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "quark-tensor.h"
#include "quark-model.h"

G_BEGIN_DECLS

#define QUARK_TYPE_CHECKPOINT_WRITER (quark_checkpoint_writer_get_type ())

QUARK_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (QuarkCheckpointWriter, quark_checkpoint_writer, QUARK, CHECKPOINT_WRITER, GObject)

QUARK_AVAILABLE_IN_1_0
QuarkCheckpointWriter * quark_checkpoint_writer_new          (const char             *directory,
                                                              guint64                 max_shard_size,
                                                              gboolean                overwrite,
                                                              GError                **error);
QUARK_AVAILABLE_IN_1_0
gboolean                quark_checkpoint_writer_add          (QuarkCheckpointWriter  *self,
                                                              QuarkTensor            *tensor,
                                                              GError                **error);
QUARK_AVAILABLE_IN_1_0
gboolean                quark_checkpoint_writer_add_with_origin (QuarkCheckpointWriter *self,
                                                              QuarkTensor            *tensor,
                                                              const char             *origin,
                                                              GError                **error);
QUARK_AVAILABLE_IN_1_0
gboolean                quark_checkpoint_writer_add_model    (QuarkCheckpointWriter  *self,
                                                              QuarkModel             *model,
                                                              GError                **error);
QUARK_AVAILABLE_IN_1_0
gboolean                quark_checkpoint_writer_add_file     (QuarkCheckpointWriter  *self,
                                                              const char             *name,
                                                              GBytes                 *contents,
                                                              GError                **error);
QUARK_AVAILABLE_IN_1_0
void                    quark_checkpoint_writer_set_metadata (QuarkCheckpointWriter  *self,
                                                              JsonNode               *metadata);
QUARK_AVAILABLE_IN_1_0
void                    quark_checkpoint_writer_set_copy_from (QuarkCheckpointWriter *self,
                                                              const char             *model_directory);
QUARK_AVAILABLE_IN_1_0
char **                 quark_checkpoint_writer_get_skipped_files (QuarkCheckpointWriter *self);
QUARK_AVAILABLE_IN_1_0
void                    quark_checkpoint_writer_set_durable  (QuarkCheckpointWriter  *self,
                                                              gboolean                durable);
QUARK_AVAILABLE_IN_1_0
gboolean                quark_checkpoint_writer_get_durable  (QuarkCheckpointWriter  *self);
QUARK_AVAILABLE_IN_1_0
guint64                 quark_checkpoint_writer_get_bytes_written (QuarkCheckpointWriter *self);
QUARK_AVAILABLE_IN_1_0
gboolean                quark_checkpoint_writer_finish       (QuarkCheckpointWriter  *self,
                                                              GCancellable           *cancellable,
                                                              GError                **error);
QUARK_AVAILABLE_IN_1_0
void                    quark_checkpoint_writer_abort        (QuarkCheckpointWriter  *self);

G_END_DECLS
