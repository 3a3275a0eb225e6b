/* quark-importance-matrix.c: llama.cpp's importance matrices (imatrix)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * llama.cpp's importance matrix is, for each 2-D weight, the mean of x²
 * over the calibration tokens x of the weight's input, per input column:
 * llama-imatrix sums x² in float32 for every matrix product with a weight
 * of the blocks ("blk.*"; the output projection only on request) and
 * counts the tokens. Its file (the current format) is a GGUF with
 * general.type "imatrix", imatrix.datasets (the text files, an array of
 * strings), imatrix.chunk_count and imatrix.chunk_size (u32), and two
 * float32 tensors per weight: NAME.in_sum2 [n_mat][columns] (the sums; one
 * matrix for a dense weight, one per expert) and NAME.counts [n_mat][1]
 * (the tokens). The older format (a ".dat" file) is int32 entry count,
 * then per entry int32 name length, the name, int32 call count, int32
 * value count and the values (mean x² times the call count), and at the
 * end optionally int32 chunk count, int32 length and the dataset name.
 *
 * llama-quantize --imatrix reads either into per-column importances:
 * in_sum2 / counts in float32 (1 where a matrix saw no token), or the
 * legacy values divided by the call count; this file's reader gives the
 * same floats.
 */
#include "config.h"

#include "quark-importance-matrix.h"
#include "quark-gguf-private.h"
#include "../quark-format-private.h"
#include "quark-error.h"
#include "quark-json.h"

#include <string.h>

static void         set_metadata  (QuarkModel *model, const char *path, const char *format, GPtrArray *datasets,
                                   gint64 chunk_count);
static QuarkModel * means_of_sums (QuarkModel *raw, const char *path, GError **error);

static gint
compare_strings (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

static gint
compare_strings_data (gconstpointer a, gconstpointer b, gpointer unused)
{
  return compare_strings (a, b);
}

static QuarkTensor *
floats_tensor (const char *name, const gint64 *shape, guint n_dims, float *data, gsize n)
{
  return _quark_format_new_tensor (name, QUARK_DTYPE_F32, shape, n_dims, data, n * sizeof (float), NULL);
}

/* llama-imatrix's statistic from a session: per block weight of @model
 * (GGUF names, sorted, as llama-imatrix stores them) NAME.in_sum2 [1][n]
 * (Σx² in float32) and NAME.counts [1][1] (the tokens) */
static QuarkModel *
collect_sums (QuarkCalibration *calibration, QuarkModel *model, guint64 *max_tokens, GError **error)
{
  g_autoptr(QuarkModel) out = quark_model_new ();
  g_autoptr(GPtrArray) entries = g_ptr_array_new_with_free_func (g_free);
  g_auto(GStrv) names = quark_model_get_tensor_names (model);

  *max_tokens = 0;
  /* (GGUF name, Hugging Face layer) pairs */
  for (guint i = 0; names[i]; i++)
    {
      QuarkTensor *t = quark_model_get_tensor (model, names[i]);
      g_autofree char *gguf = NULL;

      if (quark_tensor_get_n_dims (t) != 2 || !g_str_has_suffix (names[i], ".weight") ||
          (gguf = _quark_gguf_weight_name (names[i])) == NULL || !g_str_has_prefix (gguf, "blk."))
        continue;
      g_ptr_array_add (entries, g_strdup_printf ("%s%c%.*s", gguf, 0, (int) (strlen (names[i]) - strlen (".weight")),
                                                 names[i]));
    }
  g_ptr_array_sort (entries, compare_strings);
  for (guint i = 0; i < entries->len; i++)
    {
      const char *gguf = g_ptr_array_index (entries, i), *layer = gguf + strlen (gguf) + 1;
      g_autoptr(QuarkTensor) sums = NULL, a = NULL, b = NULL;
      g_autoptr(GError) local_error = NULL;
      g_autofree char *sum_name = g_strconcat (gguf, ".in_sum2", NULL);
      g_autofree char *count_name = g_strconcat (gguf, ".counts", NULL);
      const double *s;
      float *f, *count;
      guint64 tokens = 0;
      gsize n;

      if ((sums = quark_calibration_get_input_sum_squares (calibration, layer, &tokens, &local_error)) == NULL)
        continue;   /* a layer the text never reached: no entry, as llama-imatrix */
      n = quark_tensor_get_n_elements (sums);
      s = quark_tensor_peek_data (sums, NULL);
      f = g_new (float, n);
      for (gsize c = 0; c < n; c++)
        f[c] = (float) s[c];
      count = g_new (float, 1);
      *count = (float) tokens;
      *max_tokens = MAX (*max_tokens, tokens);
      a = floats_tensor (sum_name, (gint64[]) { 1, (gint64) n }, 2, f, n);
      b = floats_tensor (count_name, (gint64[]) { 1, 1 }, 2, count, 1);
      if (!quark_model_add_tensor (out, a, error) || !quark_model_add_tensor (out, b, error))
        return NULL;
    }
  if (quark_model_get_n_tensors (out) == 0)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "the calibration session has no second moments of the inputs of the model's block weights "
                   "(enable second-moments before running the text)");
      return NULL;
    }
  return g_steal_pointer (&out);
}

/**
 * quark_importance_matrix_save:
 * @calibration: a session that learned second moments (with or without the
 *   Gram matrix) of the inputs of @model's layers
 * @model: the model the session ran (a Hugging Face Llama-family model)
 * @path: the file to write (`imatrix.gguf`)
 * @dataset: (nullable): the calibration text's name, recorded in the file
 *   (llama.cpp's `imatrix.datasets`; %NULL records an empty name, since
 *   llama-quantize reads the first entry without checking that one exists)
 * @chunk_size: tokens per chunk the text was run in (the context, such as
 *   512), recorded with the chunk count tokens / @chunk_size
 * @overwrite: whether an existing @path is replaced
 * @error: return location for a #GError
 *
 * Writes llama.cpp's importance matrix (the GGUF file llama-imatrix writes
 * and `llama-quantize --imatrix` reads) from @calibration: for every 2-D
 * weight of @model's blocks whose layer input has second moments, under
 * its GGUF name (`blk.0.attn_q.weight`), the per-column Σx² (float32) as
 * NAME.in_sum2 and the token count as NAME.counts. As llama-imatrix by
 * default, `lm_head` (GGUF `output.weight`) is left out. The file appears
 * whole or not at all.
 *
 * Returns: %TRUE on success; %FALSE with %QUARK_ERROR_INVALID_ARGUMENT
 *   when the session has no second moments for any such weight,
 *   %QUARK_ERROR_EXISTS when @path exists and not @overwrite, or
 *   %QUARK_ERROR_IO
 */
gboolean
quark_importance_matrix_save (QuarkCalibration *calibration, QuarkModel *model, const char *path, const char *dataset,
                              guint chunk_size, gboolean overwrite, GError **error)
{
  g_autoptr(QuarkModel) sums = NULL;
  /* never an empty list: llama-quantize prints the first dataset unchecked */
  const char *datasets[2] = { dataset ? dataset : "", NULL };
  guint64 max_tokens;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (calibration), FALSE);
  g_return_val_if_fail (QUARK_IS_MODEL (model), FALSE);
  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (chunk_size > 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if ((sums = collect_sums (calibration, model, &max_tokens, error)) == NULL)
    {
      g_prefix_error (error, "%s: ", path);
      return FALSE;
    }
  return _quark_gguf_write_imatrix (path, sums, datasets, (guint32) (max_tokens / chunk_size),
                                    chunk_size, overwrite, error);
}

/**
 * quark_importance_matrix_new_from_calibration:
 * @calibration: a session that learned second moments of the inputs of
 *   @model's layers
 * @model: the model the session ran
 * @dataset: (nullable): the calibration text's name, for the metadata
 * @chunk_size: tokens per chunk the text was run in, for the metadata
 * @error: return location for a #GError
 *
 * The importances quark_importance_matrix_load() would read from the file
 * quark_importance_matrix_save() writes for @calibration, without the file:
 * the same floats, the same metadata (`file` is absent).
 *
 * Returns: (transfer full): the importances, or %NULL with
 *   %QUARK_ERROR_INVALID_ARGUMENT when the session has no second moments
 *   for any block weight of @model
 */
QuarkModel *
quark_importance_matrix_new_from_calibration (QuarkCalibration *calibration, QuarkModel *model, const char *dataset,
                                              guint chunk_size, GError **error)
{
  g_autoptr(QuarkModel) sums = NULL, means = NULL;
  g_autoptr(GPtrArray) datasets = g_ptr_array_new ();
  guint64 max_tokens;

  g_return_val_if_fail (QUARK_IS_CALIBRATION (calibration), NULL);
  g_return_val_if_fail (QUARK_IS_MODEL (model), NULL);
  g_return_val_if_fail (chunk_size > 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if ((sums = collect_sums (calibration, model, &max_tokens, error)) == NULL ||
      (means = means_of_sums (sums, "calibration", error)) == NULL)
    return NULL;
  if (dataset)
    g_ptr_array_add (datasets, (gpointer) dataset);
  set_metadata (means, NULL, "gguf", datasets, (gint64) (max_tokens / chunk_size));
  return g_steal_pointer (&means);
}

static void
set_metadata (QuarkModel *model, const char *path, const char *format, GPtrArray *datasets, gint64 chunk_count)
{
  JsonObject *o = json_object_new ();
  JsonArray *a = json_array_new ();
  g_autoptr(JsonNode) node = NULL;

  for (guint i = 0; datasets && i < datasets->len; i++)
    json_array_add_string_element (a, g_ptr_array_index (datasets, i));
  if (path)
    json_object_set_string_member (o, "file", path);
  json_object_set_string_member (o, "format", format);
  json_object_set_array_member (o, "datasets", a);
  json_object_set_int_member (o, "chunk_count", chunk_count);
  node = _quark_format_take_object (o);
  quark_model_set_metadata (model, node);
}

/* per entry of llama-imatrix's sums, NAME.in_sum2 / NAME.counts in float32
 * (1 where a matrix saw no token), as llama-quantize reads them */
static QuarkModel *
means_of_sums (QuarkModel *raw, const char *path, GError **error)
{
  g_autoptr(QuarkModel) model = quark_model_new ();
  g_auto(GStrv) names = NULL;

  names = quark_model_get_tensor_names (raw);
  g_qsort_with_data (names, (gint) g_strv_length (names), sizeof (char *), compare_strings_data, NULL);
  for (guint i = 0; names[i]; i++)
    {
      g_autofree char *name = NULL, *count_name = NULL;
      QuarkTensor *sums, *counts;
      const float *s, *c;
      gsize n, n_mat, row;
      float *values;
      g_autoptr(QuarkTensor) t = NULL;

      if (!g_str_has_suffix (names[i], ".in_sum2"))
        continue;
      name = g_strndup (names[i], strlen (names[i]) - strlen (".in_sum2"));
      count_name = g_strconcat (name, ".counts", NULL);
      sums = quark_model_get_tensor (raw, names[i]);
      counts = quark_model_get_tensor (raw, count_name);
      if (counts == NULL || quark_tensor_get_dtype (sums) != QUARK_DTYPE_F32 ||
          quark_tensor_get_dtype (counts) != QUARK_DTYPE_F32 || quark_tensor_get_n_dims (sums) > 2 ||
          (n_mat = quark_tensor_get_n_elements (counts)) == 0 || quark_tensor_get_n_elements (sums) % n_mat != 0)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                       "%s: tensor %s: %s", path, names[i],
                       counts == NULL ? "no matching .counts tensor" : "not float32 sums of one count per matrix");
          return NULL;
        }
      n = quark_tensor_get_n_elements (sums);
      row = n / n_mat;
      s = quark_tensor_peek_data (sums, NULL);
      c = quark_tensor_peek_data (counts, NULL);
      values = g_new (float, MAX (n, 1));
      for (gsize j = 0; j < n_mat; j++)
        for (gsize k = 0; k < row; k++)
          values[j * row + k] = c[j] > 0.0f ? s[j * row + k] / c[j] : 1.0f;
      t = n_mat == 1 ? floats_tensor (name, (gint64[]) { (gint64) row }, 1, values, n)
                     : floats_tensor (name, (gint64[]) { (gint64) n_mat, (gint64) row }, 2, values, n);
      if (t == NULL || !quark_model_add_tensor (model, t, error))
        return NULL;
    }
  for (guint i = 0; names[i]; i++)
    if (g_str_has_suffix (names[i], ".counts"))
      {
        g_autofree char *name = g_strndup (names[i], strlen (names[i]) - strlen (".counts"));
        if (quark_model_get_tensor (model, name) == NULL)
          {
            g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: tensor %s has no matching .in_sum2 tensor",
                         path, names[i]);
            return NULL;
          }
      }
  if (quark_model_get_n_tensors (model) == 0)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: an importance matrix without entries", path);
      return NULL;
    }
  return g_steal_pointer (&model);
}

/* the GGUF format: NAME.in_sum2 / NAME.counts, as llama-quantize divides */
static QuarkModel *
load_gguf (const char *path, GError **error)
{
  g_autoptr(QuarkModel) raw = _quark_gguf_read_raw (path, error);
  g_autoptr(QuarkModel) model = NULL;
  g_autoptr(GPtrArray) datasets = g_ptr_array_new_with_free_func (g_free);
  JsonObject *kv;
  JsonNode *md, *ds;

  if (raw == NULL)
    return NULL;
  md = quark_model_get_metadata (raw);
  kv = json_object_get_object_member (json_node_get_object (md), "gguf");
  if (!json_object_has_member (kv, "imatrix.datasets") || !json_object_has_member (kv, "imatrix.chunk_count") ||
      !json_object_has_member (kv, "imatrix.chunk_size"))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                   "%s: not an importance matrix (imatrix.datasets, imatrix.chunk_count or imatrix.chunk_size missing)",
                   path);
      return NULL;
    }
  ds = json_object_get_member (kv, "imatrix.datasets");
  if (JSON_NODE_HOLDS_ARRAY (ds))
    for (guint i = 0; i < json_array_get_length (json_node_get_array (ds)); i++)
      {
        JsonNode *e = json_array_get_element (json_node_get_array (ds), i);
        if (JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_STRING)
          g_ptr_array_add (datasets, g_strdup (json_node_get_string (e)));
      }
  if ((model = means_of_sums (raw, path, error)) == NULL)
    return NULL;
  set_metadata (model, path, "gguf", datasets, json_object_get_int_member_with_default (kv, "imatrix.chunk_count", 0));
  return g_steal_pointer (&model);
}

typedef struct {
  const guint8 *p, *end;
} Cursor;

static gboolean
read_i32 (Cursor *c, gint32 *v)
{
  if (c->end - c->p < 4)
    return FALSE;
  memcpy (v, c->p, 4);
  *v = GINT32_FROM_LE (*v);
  c->p += 4;
  return TRUE;
}

/* the older format (llama-imatrix --output-format dat) */
static QuarkModel *
load_legacy (const char *path, const guint8 *data, gsize length, GError **error)
{
  g_autoptr(QuarkModel) model = quark_model_new ();
  g_autoptr(GPtrArray) datasets = g_ptr_array_new_with_free_func (g_free);
  Cursor c = { data, data + length };
  gint32 n_entries, chunks = 0;

  if (!read_i32 (&c, &n_entries) || n_entries < 1)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: not an importance matrix (no GGUF magic, and no "
                   "entries as the older format has)", path);
      return NULL;
    }
  for (gint32 i = 0; i < n_entries; i++)
    {
      gint32 len, ncall, nval;
      g_autofree char *name = NULL;
      g_autoptr(QuarkTensor) t = NULL;
      float *values;

      if (!read_i32 (&c, &len) || len < 0 || c.end - c.p < len)
        goto truncated;
      name = g_strndup ((const char *) c.p, (gsize) len);
      c.p += len;
      if (!g_utf8_validate (name, -1, NULL) || strlen (name) != (gsize) len)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: entry %d: a name that is not UTF-8 text",
                       path, i + 1);
          return NULL;
        }
      if (!read_i32 (&c, &ncall) || !read_i32 (&c, &nval) || nval < 1 || (c.end - c.p) / 4 < nval)
        goto truncated;
      values = g_new (float, nval);
      memcpy (values, c.p, (gsize) nval * 4);
      c.p += (gsize) nval * 4;
      for (gint32 k = 0; k < nval; k++)
        {
          guint32 bits;
          memcpy (&bits, values + k, 4);
          bits = GUINT32_FROM_LE (bits);
          memcpy (values + k, &bits, 4);
          if (ncall > 0)
            values[k] /= ncall;
        }
      t = floats_tensor (name, (gint64[]) { nval }, 1, values, (gsize) nval);
      if (t == NULL || !quark_model_add_tensor (model, t, error))
        {
          g_prefix_error (error, "%s: ", path);
          return NULL;
        }
    }
  if (c.p < c.end)
    {
      gint32 len;
      if (!read_i32 (&c, &chunks) || !read_i32 (&c, &len) || len < 0 || c.end - c.p < len)
        goto truncated;
      g_ptr_array_add (datasets, g_utf8_make_valid ((const char *) c.p, len));
    }
  set_metadata (model, path, "dat", datasets, chunks);
  return g_steal_pointer (&model);

truncated:
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: truncated importance matrix", path);
  return NULL;
}

/**
 * quark_importance_matrix_load:
 * @path: an importance matrix written by llama-imatrix (GGUF, or the older
 *   `.dat` format) or by quark_importance_matrix_save()
 * @error: return location for a #GError
 *
 * Reads llama.cpp's importance matrix as `llama-quantize --imatrix` does:
 * per weight (named as in the file, `blk.0.attn_q.weight`) the importance
 * of each input column, the mean of x² (a GGUF file's in_sum2 divided by
 * its counts in float32, 1 for a matrix that saw no token; a `.dat` file's
 * values divided by their call count), as a float32 tensor [columns] (or
 * [experts, columns]). The metadata holds `file` (@path), `format`
 * (`gguf` or `dat`), `datasets` and `chunk_count`. Give it to
 * quark_checkpoint_format_set_importance().
 *
 * Returns: (transfer full): the importances, or %NULL with
 *   %QUARK_ERROR_INVALID_FILE (or a file error) naming @path
 */
QuarkModel *
quark_importance_matrix_load (const char *path, GError **error)
{
  g_autoptr(GMappedFile) mapped = NULL;
  const guint8 *data;
  gsize length;

  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if ((mapped = g_mapped_file_new (path, FALSE, error)) == NULL)
    {
      g_prefix_error (error, "%s: ", path);
      return NULL;
    }
  data = (const guint8 *) g_mapped_file_get_contents (mapped);
  length = g_mapped_file_get_length (mapped);
  if (length >= 4 && memcmp (data, "GGUF", 4) == 0)
    return load_gguf (path, error);
  return load_legacy (path, data, length, error);
}
