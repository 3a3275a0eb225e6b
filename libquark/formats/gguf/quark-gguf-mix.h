/* quark-gguf-mix.h: llama-quantize's file types and per-tensor choices
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "quark-gguf-quants.h"

G_BEGIN_DECLS

typedef struct {
  const char *name;          /* llama-quantize's name: "Q4_K_M" */
  QuarkGgmlType type;        /* the default type of 2-D weights */
  guint file_type;           /* llama_ftype, general.file_type */
} QuarkGgufScheme;

/* the schemes in llama-quantize's order; NULL-named end */
const QuarkGgufScheme *_quark_gguf_schemes (void);
/* by name (also llama-quantize's aliases Q3_K, Q4_K, Q5_K), or NULL */
const QuarkGgufScheme *_quark_gguf_scheme_lookup (const char *name);

/* what llama_tensor_get_type () decides, tensor by tensor in file order */
typedef struct {
  const QuarkGgufScheme *scheme;
  gboolean pure;             /* llama-quantize --pure: the default type everywhere */
  gboolean has_output;       /* an output.weight exists (else token_embd takes its rules) */
  gboolean is_70b;           /* llama.cpp's LLM_TYPE_70B */
  gboolean has_imatrix;      /* quantized with an importance matrix */
  int n_gqa;                 /* query heads per key/value head */
  int n_layer;
  int n_attention_wv, i_attention_wv, i_ffn_down;
} QuarkGgufMix;

/* the type of 2-D weight @name with rows of @ne0 (call in file order) */
QuarkGgmlType _quark_gguf_mix_type (QuarkGgufMix *mix, const char *name, guint64 ne0);

G_END_DECLS
