/* quark-safetensors.h: reading and writing safetensors checkpoints
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(QUARK_INSIDE) && !defined(QUARK_COMPILATION)
#error "Only <quark/quark.h> can be included directly."
#endif

#include <gio/gio.h>

#include "quark-model.h"

G_BEGIN_DECLS

/**
 * QUARK_SAFETENSORS_MAX_HEADER:
 *
 * The largest safetensors header libquark reads, in bytes (the reference
 * implementation's limit).
 */
#define QUARK_SAFETENSORS_MAX_HEADER 100000000

/**
 * QUARK_SAFETENSORS_DEFAULT_SHARD_SIZE:
 *
 * The default shard size limit of quark_model_save(), in bytes: 5 GB, as
 * huggingface_hub writes.
 */
#define QUARK_SAFETENSORS_DEFAULT_SHARD_SIZE G_GUINT64_CONSTANT (5000000000)

QUARK_AVAILABLE_IN_1_0
QuarkModel * quark_model_new_from_safetensors_bytes (GBytes        *contents,
                                                     const char    *source,
                                                     GError       **error);
QUARK_AVAILABLE_IN_1_0
QuarkModel * quark_model_load                       (const char    *path,
                                                     GCancellable  *cancellable,
                                                     GError       **error);
QUARK_AVAILABLE_IN_1_0
gboolean     quark_model_save                       (QuarkModel    *self,
                                                     const char    *directory,
                                                     guint64        max_shard_size,
                                                     gboolean       overwrite,
                                                     const char    *copy_from,
                                                     GCancellable  *cancellable,
                                                     GError       **error);

G_END_DECLS
