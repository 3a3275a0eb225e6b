/* quark-tensor-private.h
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "quark-tensor.h"

G_BEGIN_DECLS

/* Marks a tensor whose data lies in a read-only private file mapping. */
void _quark_tensor_set_mapped (QuarkTensor *self);

G_END_DECLS
