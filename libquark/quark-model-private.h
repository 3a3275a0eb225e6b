/* quark-model-private.h
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "quark-model.h"
#include "quark-input-file-private.h"

G_BEGIN_DECLS

/* Records a file the model's tensors were read from, for
 * quark_model_check_sources(). */
void _quark_model_add_source   (QuarkModel     *self,
                                QuarkInputFile *file);
void _quark_model_copy_sources (QuarkModel     *self,
                                QuarkModel     *from);

/* The directory of the first file the model was read from (its
 * tokenizer.json and other files are there), or NULL. */
char *_quark_model_get_directory (QuarkModel *self);

/* Writes @self as one .safetensors file at @path (under a temporary name,
 * renamed when complete); tensors in their own dtypes, in model order. */
gboolean _quark_model_write_safetensors_file (QuarkModel  *self,
                                              const char  *path,
                                              GError     **error);

G_END_DECLS
