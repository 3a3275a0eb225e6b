/* quark-brevitas-quantizer.h: the brevitas backend's quantizer
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <quark.h>

G_BEGIN_DECLS

#define QUARK_TYPE_BREVITAS_QUANTIZER (quark_brevitas_quantizer_get_type ())
G_DECLARE_FINAL_TYPE (QuarkBrevitasQuantizer, quark_brevitas_quantizer, QUARK, BREVITAS_QUANTIZER, GObject)

G_END_DECLS
