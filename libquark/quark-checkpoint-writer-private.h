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

G_END_DECLS
