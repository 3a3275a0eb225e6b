/* quark-moments.c: second moments of a layer's input
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-moments-private.h"
#include "quark-error.h"
#include "quark-tensor.h"
#include "quark-blas-private.h"

#include <math.h>
#include <string.h>

#define ROWS_AT_ONCE 256        /* tokens widened to float64 per dsyrk */

QuarkMoments *
_quark_moments_new (gsize n_features, gboolean gram, GError **error)
{
  QuarkMoments *m;

  if (gram && !_quark_blas_load (error))
    return NULL;
  m = g_new0 (QuarkMoments, 1);
  m->n_features = n_features;
  if (n_features == 0 || n_features > G_MAXSIZE / sizeof (double) / n_features ||
      (gram && (m->gram = g_try_malloc0 (n_features * n_features * sizeof (double))) == NULL))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED,
                   "the Gram matrix of %" G_GSIZE_FORMAT " features (%.1f GiB of float64) does not fit in memory",
                   n_features, (double) n_features * n_features * 8 / (1 << 30));
      g_free (m);
      return NULL;
    }
  m->sum = g_new0 (double, n_features);
  m->sum_sq = g_new0 (double, n_features);
  m->sum_abs = g_new0 (double, n_features);
  m->abs_max = g_new0 (float, n_features);
  return m;
}

void
_quark_moments_free (QuarkMoments *m)
{
  if (m == NULL)
    return;
  g_free (m->gram);
  g_free (m->sum);
  g_free (m->sum_sq);
  g_free (m->sum_abs);
  g_free (m->abs_max);
  g_free (m->cross);
  g_free (m);
}

void
_quark_moments_add (QuarkMoments *m, const float *x, gsize n_tokens)
{
  gsize n = m->n_features;
  g_autofree double *rows = NULL;

  if (m->gram == NULL)
    {
      /* the per-feature sums only */
      for (gsize t = 0; t < n_tokens; t++)
        for (gsize c = 0; c < n; c++)
          {
            double v = x[t * n + c];
            m->sum[c] += v;
            m->sum_sq[c] += v * v;
            m->sum_abs[c] += fabs (v);
            m->abs_max[c] = fmaxf (m->abs_max[c], fabsf ((float) v));
          }
      m->n_tokens += n_tokens;
      return;
    }
  rows = g_new (double, MIN (n_tokens, (gsize) ROWS_AT_ONCE) * n);
  for (gsize t0 = 0; t0 < n_tokens; t0 += ROWS_AT_ONCE)
    {
      gsize k = MIN ((gsize) ROWS_AT_ONCE, n_tokens - t0);
      for (gsize t = 0; t < k; t++)
        for (gsize c = 0; c < n; c++)
          {
            double v = x[(t0 + t) * n + c];
            rows[t * n + c] = v;
            m->sum[c] += v;
            m->sum_sq[c] += v * v;
            m->sum_abs[c] += fabs (v);
            m->abs_max[c] = fmaxf (m->abs_max[c], fabsf ((float) v));
          }
      /* gram += rowsᵀ · rows, upper triangle */
      _quark_blas ()->dsyrk (CblasRowMajor, CblasUpper, CblasTrans, (int) n, (int) k, 1.0, rows, (int) n, 1.0, m->gram,
                             (int) n);
    }
  m->n_tokens += n_tokens;
}

gboolean
_quark_moments_add_cross (QuarkMoments *m, const float *r, const float *x, gsize n_tokens, GError **error)
{
  gsize n = m->n_features;
  g_autofree double *rr = NULL, *xx = NULL;

  if (!_quark_blas_load (error))
    return FALSE;
  if (m->cross == NULL && (m->cross = g_try_malloc0 (n * n * sizeof (double))) == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED,
                   "the cross moments of %" G_GSIZE_FORMAT " features (%.1f GiB of float64) do not fit in memory",
                   n, (double) n * n * 8 / (1 << 30));
      return FALSE;
    }
  rr = g_new (double, MIN (n_tokens, (gsize) ROWS_AT_ONCE) * n);
  xx = g_new (double, MIN (n_tokens, (gsize) ROWS_AT_ONCE) * n);
  for (gsize t0 = 0; t0 < n_tokens; t0 += ROWS_AT_ONCE)
    {
      gsize k = MIN ((gsize) ROWS_AT_ONCE, n_tokens - t0);
      for (gsize i = 0; i < k * n; i++)
        {
          rr[i] = r[t0 * n + i];
          xx[i] = x[t0 * n + i];
        }
      /* cross += rrᵀ · xx */
      _quark_blas ()->dgemm (CblasRowMajor, CblasTrans, CblasNoTrans, (int) n, (int) n, (int) k, 1.0, rr, (int) n, xx,
                             (int) n, 1.0, m->cross, (int) n);
    }
  m->n_cross += n_tokens;
  return TRUE;
}

QuarkTensor *
_quark_moments_cross (const QuarkMoments *m, const char *name)
{
  gsize n = m->n_features;
  gint64 shape[2] = { (gint64) n, (gint64) n };
  g_autoptr(GBytes) bytes = g_bytes_new (m->cross, n * n * sizeof (double));

  return quark_tensor_new (name, QUARK_DTYPE_F64, shape, 2, bytes, NULL);
}

gboolean
_quark_moments_add_cross_of (QuarkMoments *into, const QuarkMoments *from)
{
  gsize n = into->n_features;

  if (into->cross == NULL && (into->cross = g_try_malloc0 (n * n * sizeof (double))) == NULL)
    return FALSE;
  for (gsize i = 0; i < n * n; i++)
    into->cross[i] += from->cross[i];
  into->n_cross += from->n_cross;
  return TRUE;
}

void
_quark_moments_merge_cross (QuarkMoments *into, const QuarkMoments *from)
{
  if (from->cross && (into->cross || into->n_tokens == 0))
    _quark_moments_add_cross_of (into, from);
  else
    {
      g_clear_pointer (&into->cross, g_free);
      into->n_cross = 0;
    }
}

void
_quark_moments_merge (QuarkMoments *into, const QuarkMoments *from)
{
  gsize n = into->n_features;

  /* a Gram matrix is kept only when both sides have one */
  if (into->gram && from->gram == NULL)
    g_clear_pointer (&into->gram, g_free);
  if (into->gram)
    for (gsize i = 0; i < n; i++)
      for (gsize j = i; j < n; j++)
        into->gram[i * n + j] += from->gram[i * n + j];
  for (gsize c = 0; c < n; c++)
    {
      into->sum[c] += from->sum[c];
      into->sum_sq[c] += from->sum_sq[c];
      into->sum_abs[c] += from->sum_abs[c];
      into->abs_max[c] = fmaxf (into->abs_max[c], from->abs_max[c]);
    }
  into->n_tokens += from->n_tokens;
}

static QuarkTensor *
tensor_of (const char *name, QuarkDType dtype, const gint64 *shape, guint n_dims, gconstpointer data, gsize size)
{
  g_autoptr(GBytes) bytes = g_bytes_new (data, size);
  return quark_tensor_new (name, dtype, shape, n_dims, bytes, NULL);
}

QuarkTensor *
_quark_moments_gram (const QuarkMoments *m, const char *name)
{
  gsize n = m->n_features;
  double *full = g_new (double, n * n);
  gint64 shape[2] = { (gint64) n, (gint64) n };
  g_autoptr(GBytes) bytes = NULL;

  for (gsize i = 0; i < n; i++)
    for (gsize j = i; j < n; j++)
      full[i * n + j] = full[j * n + i] = m->gram[i * n + j];
  bytes = g_bytes_new_take (full, n * n * sizeof (double));
  return quark_tensor_new (name, QUARK_DTYPE_F64, shape, 2, bytes, NULL);
}

static void
add_tensor (QuarkModel *model, const char *layer, const char *what, QuarkDType dtype, const gint64 *shape,
            guint n_dims, gconstpointer data, gsize size)
{
  g_autofree char *name = g_strdup_printf ("%s.%s", layer, what);
  g_autoptr(QuarkTensor) t = tensor_of (name, dtype, shape, n_dims, data, size);
  quark_model_add_tensor (model, t, NULL);
}

void
_quark_moments_to_model (const QuarkMoments *m, const char *layer, QuarkModel *model)
{
  gsize n = m->n_features;
  gint64 square[2] = { (gint64) n, (gint64) n }, vector[1] = { (gint64) n }, one[1] = { 1 };
  gint64 tokens = (gint64) m->n_tokens;

  if (m->gram)
    add_tensor (model, layer, "gram", QUARK_DTYPE_F64, square, 2, m->gram, n * n * sizeof (double));
  add_tensor (model, layer, "sum", QUARK_DTYPE_F64, vector, 1, m->sum, n * sizeof (double));
  add_tensor (model, layer, "sum_sq", QUARK_DTYPE_F64, vector, 1, m->sum_sq, n * sizeof (double));
  add_tensor (model, layer, "sum_abs", QUARK_DTYPE_F64, vector, 1, m->sum_abs, n * sizeof (double));
  add_tensor (model, layer, "abs_max", QUARK_DTYPE_F32, vector, 1, m->abs_max, n * sizeof (float));
  add_tensor (model, layer, "tokens", QUARK_DTYPE_I64, one, 1, &tokens, sizeof tokens);
}

static gconstpointer
member (QuarkModel *model, const char *layer, const char *what, QuarkDType dtype, gsize n_elements,
        const char *source, GError **error)
{
  g_autofree char *name = g_strdup_printf ("%s.%s", layer, what);
  QuarkTensor *t = quark_model_get_tensor (model, name);

  if (t == NULL || quark_tensor_get_dtype (t) != dtype || quark_tensor_get_n_elements (t) != n_elements)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: %s is missing or not %s of %" G_GSIZE_FORMAT
                   " elements", source, name, quark_dtype_get_name (dtype), n_elements);
      return NULL;
    }
  return quark_tensor_peek_data (t, NULL);
}

QuarkMoments *
_quark_moments_from_model (QuarkModel *model, const char *layer, const char *source, GError **error)
{
  g_autofree char *name = g_strdup_printf ("%s.sum", layer);
  QuarkTensor *sum = quark_model_get_tensor (model, name);
  g_autoptr(QuarkMoments) m = NULL;
  const double *gram = NULL, *s, *sq, *sa;
  const float *amax;
  const gint64 *tokens;
  gboolean has_gram;
  gsize n;

  if (sum == NULL || quark_tensor_get_n_dims (sum) != 1)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: %s is missing or not a vector", source, name);
      return NULL;
    }
  n = (gsize) quark_tensor_get_dim (sum, 0);
  {
    /* LAYER.gram is absent when the session learned the sums only */
    g_autofree char *gname = g_strdup_printf ("%s.gram", layer);
    has_gram = quark_model_get_tensor (model, gname) != NULL;
  }
  if ((m = _quark_moments_new (n, has_gram, error)) == NULL)
    return NULL;
  if ((has_gram && !(gram = member (model, layer, "gram", QUARK_DTYPE_F64, n * n, source, error))) ||
      !(s = member (model, layer, "sum", QUARK_DTYPE_F64, n, source, error)) ||
      !(sq = member (model, layer, "sum_sq", QUARK_DTYPE_F64, n, source, error)) ||
      !(sa = member (model, layer, "sum_abs", QUARK_DTYPE_F64, n, source, error)) ||
      !(amax = member (model, layer, "abs_max", QUARK_DTYPE_F32, n, source, error)) ||
      !(tokens = member (model, layer, "tokens", QUARK_DTYPE_I64, 1, source, error)))
    return NULL;
  if (*tokens < 0)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: %s.tokens is negative", source, layer);
      return NULL;
    }
  if (has_gram)
    memcpy (m->gram, gram, n * n * sizeof (double));
  memcpy (m->sum, s, n * sizeof (double));
  memcpy (m->sum_sq, sq, n * sizeof (double));
  memcpy (m->sum_abs, sa, n * sizeof (double));
  memcpy (m->abs_max, amax, n * sizeof (float));
  m->n_tokens = (guint64) *tokens;
  return g_steal_pointer (&m);
}
