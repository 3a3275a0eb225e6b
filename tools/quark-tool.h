/* quark-tool.h: what the quark tool's commands share
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <quark/quark.h>

/* exit status of bad usage (0 success, 1 failure) */
#define EXIT_USAGE 2

void         print_json          (JsonNode *node);
int          report_failure      (const char *command, const GError *error, gboolean json);
gboolean     parse_options       (const char *command, const char *parameters, const char *description,
                                  GOptionEntry *entries, int *argc, char ***argv, int *status);

/* quark-formats.c */
int          cmd_formats         (int argc, char **argv);
QuarkModel * tool_dequantize_checkpoint (QuarkModel *quantized, const char *path, GError **error);
char *       tool_checkpoint_format_name (QuarkModel *model);
int          tool_list_format_schemes (const char *format_name, gboolean json);

/* quark-eval.c */
int          cmd_eval            (int argc, char **argv);
int          cmd_imatrix         (int argc, char **argv);
guint32 *    tool_tokenize_file  (QuarkTokenizer *tokenizer, const char *path, const char *separator, gsize *n_ids,
                                  GError **error);
QuarkTokenizer * tool_model_tokenizer (const char *model, const char *tokenizer, GError **error);
QuarkCalibration * tool_calibrate_from_text (QuarkModel *model, const char *model_path,
                                             QuarkQuantizationConfig *config,
                                             QuarkModelQuantizer *final_quantizer, const char *text_file,
                                             guint max_tokens, guint threads, gboolean tty, guint *window_out,
                                             GCancellable *cancellable, GError **error);
