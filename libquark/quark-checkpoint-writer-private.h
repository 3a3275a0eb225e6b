/* quark-checkpoint-writer-private.h
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "quark-checkpoint-writer.h"

G_BEGIN_DECLS

/* Whether quark_checkpoint_writer_set_metadata() was given a config.json. */
gboolean _quark_checkpoint_writer_has_metadata (QuarkCheckpointWriter *self);

G_END_DECLS
