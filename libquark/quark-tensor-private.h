/* quark-tensor-private.h
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "quark-tensor.h"

G_BEGIN_DECLS

#include "quark-input-file-private.h"

/* Marks a tensor whose data lies in a read-only private mapping of @file,
 * at @offset of the file. */
void _quark_tensor_set_mapped (QuarkTensor *self, QuarkInputFile *file, guint64 offset);

/* The file a mapped tensor's data lies in and its offset there, or NULL. */
QuarkInputFile *_quark_tensor_get_file (QuarkTensor *self, guint64 *offset);

G_END_DECLS
