/* quark-gguf-private.h: what the GGUF room's files share
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "quark-model.h"

G_BEGIN_DECLS

/* The GGUF name of a Hugging Face Llama-family tensor ("blk.0.attn_q.weight"
 * for "model.layers.0.self_attn.q_proj.weight"), or NULL when llama.cpp's
 * converter has none */
char *       _quark_gguf_weight_name   (const char   *hf_name);

/* A GGUF file's tensors as stored, under their GGUF names (F32/F16/BF16
 * typed, the others as bytes), its key-values in the metadata's "gguf" */
QuarkModel * _quark_gguf_read_raw      (const char   *path,
                                        GError      **error);

/* llama.cpp's GGUF importance-matrix file (llama-imatrix's save_imatrix):
 * general.type "imatrix", imatrix.datasets, imatrix.chunk_count,
 * imatrix.chunk_size, then @tensors (float32, written in their order);
 * atomically, never replacing @path unless @overwrite */
gboolean     _quark_gguf_write_imatrix (const char          *path,
                                        QuarkModel          *tensors,
                                        const char * const  *datasets,
                                        guint32              chunk_count,
                                        guint32              chunk_size,
                                        gboolean             overwrite,
                                        GError             **error);

G_END_DECLS
