/* quark-gguf-bridge.h: a quantized checkpoint's codes into GGUF blocks
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "quark-model.h"
#include "quark-gguf-quants.h"

G_BEGIN_DECLS

/* what to do with a weight whose groups do not carry over exactly */
typedef enum {
  QUARK_GGUF_INEXACT_FAIL,        /* fail, naming every such tensor (the default) */
  QUARK_GGUF_INEXACT_ROUND,       /* round d and m to binary16, as AMD Quark's export */
  QUARK_GGUF_INEXACT_DEQUANTIZE,  /* write that weight dequantized, in F32 */
} QuarkGgufInexact;

typedef enum {
  QUARK_GGUF_BRIDGE_FLOAT,        /* a float tensor of the checkpoint, as stored */
  QUARK_GGUF_BRIDGE_CODES,        /* a quantized weight, its codes in blocks */
  QUARK_GGUF_BRIDGE_DEQUANTIZED,  /* a quantized weight, dequantized */
} QuarkGgufBridgeKind;

typedef struct _QuarkGgufBridge QuarkGgufBridge;

/* Plans the GGUF tensors of a quantized @checkpoint (libquark's or AMD
 * Quark's layout) with its quantized weights in @type (Q4_0, Q4_1, Q5_0,
 * Q5_1 or Q8_0): reads every weight once and checks that its codes, scales
 * and zero points carry over exactly. What does not is failed on, or with
 * @inexact handled and a line appended to @report. */
QuarkGgufBridge *   _quark_gguf_bridge_new          (QuarkModel           *checkpoint,
                                                     QuarkGgmlType         type,
                                                     QuarkGgufInexact      inexact,
                                                     GPtrArray            *report,
                                                     GError              **error);
void                _quark_gguf_bridge_free         (QuarkGgufBridge      *bridge);
guint               _quark_gguf_bridge_get_n_sources (QuarkGgufBridge     *bridge);
/* source @i: its checkpoint name, the float tensor (FLOAT only), the
 * logical shape */
QuarkGgufBridgeKind _quark_gguf_bridge_get_source   (QuarkGgufBridge      *bridge,
                                                     guint                 i,
                                                     const char          **name,
                                                     QuarkTensor         **tensor,
                                                     guint                *n_dims,
                                                     const gint64        **shape);
/* a DEQUANTIZED source in float32 */
QuarkTensor *       _quark_gguf_bridge_dequantize   (QuarkGgufBridge      *bridge,
                                                     guint                 i,
                                                     GError              **error);
/* a CODES source's blocks, output row r from input row row_of (r, rows,
 * heads) (the rotary permutation) */
void                _quark_gguf_bridge_release      (QuarkGgufBridge      *bridge,
                                                     guint                 source);
gboolean            _quark_gguf_bridge_write_rows   (QuarkGgufBridge      *bridge,
                                                     guint                 i,
                                                     gsize               (*row_of) (gsize, gsize, gint64),
                                                     gint64                heads,
                                                     guint8               *out,
                                                     GError              **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (QuarkGgufBridge, _quark_gguf_bridge_free)

G_END_DECLS
