/* quark-gguf-quants.h: llama.cpp's block types, as GGUF stores them
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* ggml_type values (the GGUF tensor-info type field) */
typedef enum {
  QUARK_GGML_F32 = 0,
  QUARK_GGML_F16 = 1,
  QUARK_GGML_Q4_0 = 2,
  QUARK_GGML_Q4_1 = 3,
  QUARK_GGML_Q5_0 = 6,
  QUARK_GGML_Q5_1 = 7,
  QUARK_GGML_Q8_0 = 8,
  QUARK_GGML_Q2_K = 10,
  QUARK_GGML_Q3_K = 11,
  QUARK_GGML_Q4_K = 12,
  QUARK_GGML_Q5_K = 13,
  QUARK_GGML_Q6_K = 14,
  QUARK_GGML_IQ4_NL = 20,
  QUARK_GGML_BF16 = 30,
  QUARK_GGML_MXFP4 = 39,
} QuarkGgmlType;

typedef struct {
  QuarkGgmlType type;
  const char *name;        /* llama.cpp's name: "Q4_0" */
  guint block;             /* elements per block */
  guint bytes;             /* bytes per block */
  guint file_type;         /* llama_ftype of a model mostly of this type */
} QuarkGgmlTypeInfo;

/* the types this library writes and reads, in llama.cpp's order; NULL-named end */
const QuarkGgmlTypeInfo *_quark_ggml_types (void);
const QuarkGgmlTypeInfo *_quark_ggml_type_lookup (QuarkGgmlType type);
const QuarkGgmlTypeInfo *_quark_ggml_type_from_name (const char *name);

/* bytes of @n elements (a multiple of the block) */
gsize    _quark_ggml_row_size (QuarkGgmlType type, gsize n);

/* a row of @n floats (a multiple of the block) to blocks: llama.cpp's
 * reference quantizers (quantize_row_*_ref) without an importance matrix;
 * with one, @qw (@n floats, the row's column importances) the paths of
 * ggml's quantize_* (quantize_row_*_impl) that llama-quantize --imatrix
 * takes; the same float operations in the same order, so the bytes are
 * llama.cpp's */
void     _quark_ggml_quantize_row (QuarkGgmlType type, const float *x, gsize n, const float *qw, guint8 *out);
/* one block of Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0 from its 32 stored codes
 * (Q8_0: int8 bit patterns), d and m rounded to binary16 */
void     _quark_ggml_pack_block (QuarkGgmlType type, const guint8 *codes, float d, float m, guint8 *out);
/* binary32 to binary16 as ggml converts (nearest, ties to even) */
guint16  _quark_ggml_f32_to_f16 (float f);
/* blocks back to floats (llama.cpp's dequantize_row_*) */
void     _quark_ggml_dequantize_row (QuarkGgmlType type, const guint8 *in, gsize n, float *y);

G_END_DECLS
