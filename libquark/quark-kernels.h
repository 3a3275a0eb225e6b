/* quark-kernels.h: libquark's kernel API
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The plain C kernels (docs: "The kernel API"), a public part of the
 * library apart from the umbrella header: #include <quark/quark-kernels.h>
 */
#pragma once

#include "quark.h"

#define QUARK_INSIDE
#include "kernels/quark-kernels.h"
#undef QUARK_INSIDE
