/* quark-input-file-private.h: reading input files safely
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>
#include <sys/stat.h>

G_BEGIN_DECLS

/* Size limits of the JSON inputs (docs/guarantees.md). */
#define QUARK_INPUT_MAX_CONFIG_SIZE       (16u * 1024 * 1024)    /* quantization configs, config.json */
#define QUARK_INPUT_MAX_TOKENIZER_SIZE    (64u * 1024 * 1024)    /* tokenizer.json (a large vocabulary: tens of MB) */
#define QUARK_INPUT_MAX_INDEX_SIZE        (64u * 1024 * 1024)    /* model.safetensors.index.json */
#define QUARK_INPUT_MAX_CALIBRATION_SIZE  (256u * 1024 * 1024)   /* calibration statistics */

/* Opens @path for reading, refusing anything that is not a regular file
 * before a byte is read (a FIFO, a device or a directory never blocks or
 * streams forever). Fills @st. Returns the descriptor, or -1 with
 * QUARK_ERROR_IO naming @path. */
int     _quark_input_open           (const char   *path,
                                     struct stat  *st,
                                     GError      **error);

/* Reads a whole regular file of at most @max_size bytes; @what names the
 * kind of file in the error (such as "a model config"). The result is
 * NUL-terminated. */
char   *_quark_input_read           (const char   *path,
                                     gsize         max_size,
                                     const char   *what,
                                     gsize        *length,
                                     GError      **error);

/* _quark_input_read() and quark_json_parse(): errors as those give. */
JsonNode *_quark_input_read_json     (const char   *path,
                                     gsize         max_size,
                                     const char   *what,
                                     GError      **error);

/* Whether @path names a regular file (following symbolic links); when it
 * names something else, *@kind says what ("a directory", "a FIFO", ...). */
gboolean _quark_input_is_regular    (const char   *path,
                                     const char  **kind);

typedef struct _QuarkInputFile QuarkInputFile;

/* Maps a regular file read-only. The mapping is guarded: should the file
 * shrink while it is mapped, reading past its new end gives zeros instead
 * of SIGBUS, and _quark_input_file_check() reports it. */
QuarkInputFile *_quark_input_file_map    (const char      *path,
                                          GBytes         **contents,
                                          GError         **error);
QuarkInputFile *_quark_input_file_ref    (QuarkInputFile  *self);
void            _quark_input_file_unref  (QuarkInputFile  *self);
const char     *_quark_input_file_get_path (QuarkInputFile *self);

/* Reads @size bytes at @offset of a mapped file with pread(), leaving the
 * mapping untouched; fails with QUARK_ERROR_IO (a read error, or a file
 * that shrank). */
gboolean        _quark_input_file_read   (QuarkInputFile  *self,
                                          guint64          offset,
                                          gpointer         buffer,
                                          gsize            size,
                                          GError         **error);

/* The descriptor _quark_input_file_read() reads with (-1 for an empty
 * file). */
int             _quark_input_file_get_fd (QuarkInputFile  *self);

/* Fails with QUARK_ERROR_IO when the file shrank under its mapping or its
 * size, modification time or identity differ from when it was opened. */
gboolean        _quark_input_file_check  (QuarkInputFile  *self,
                                          GError         **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (QuarkInputFile, _quark_input_file_unref)

G_END_DECLS
