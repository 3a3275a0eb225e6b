/* quark-checkpoint-writer-private.h
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "quark-checkpoint-writer.h"

G_BEGIN_DECLS

/* Whether quark_checkpoint_writer_set_metadata() was given a config.json. */
gboolean _quark_checkpoint_writer_has_metadata (QuarkCheckpointWriter *self);

/* Tells the writer how many tensors (and bytes of their names) to expect,
 * so that the room it keeps for each shard's header fits it. */
void _quark_checkpoint_writer_expect_tensors (QuarkCheckpointWriter *self,
                                              guint                  n_tensors,
                                              gsize                  name_bytes);

/* Waits for the copies still running: tensors over a file mapping are
 * copied into the shard file on a thread of the writer's while the caller
 * goes on. %FALSE with the error of a copy that failed (the writer is then
 * unusable). */
gboolean _quark_checkpoint_writer_wait (QuarkCheckpointWriter  *self,
                                        GError                **error);

/* Durable outputs, shared with the formats that write whole files (GGUF).
 * Starts writing @size bytes of @fd at @offset to the disk without waiting
 * (sync_file_range), so that the fsync before the rename waits for the
 * last bytes only; advice: a failure shows in that fsync. */
void _quark_output_start_writeback (int fd, guint64 offset, guint64 size);

/* Flushes the directory @directory, so that a rename in it is on the disk;
 * best effort, after the rename succeeded. */
void _quark_output_sync_directory (const char *directory);

G_END_DECLS
