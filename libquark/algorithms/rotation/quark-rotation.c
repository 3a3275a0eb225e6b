/* quark-rotation.c: orthogonal rotation of a model's residual stream
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-rotation.h"
#include "quark-error.h"
#include "quark-topology.h"
#include "quark-blas-private.h"

#include <math.h>
#include <string.h>

/**
 * SECTION:quark-rotation
 * @Title: Rotation
 * @Short_description: QuaRot-style rotation of the residual stream
 *
 * A pre-norm transformer's residual stream h can be replaced by Qᵀh for
 * any orthogonal Q without changing what the model computes, once the
 * norms' weights are folded into the linear layers that read through them
 * (RMSNorm (Qᵀh) = Qᵀ RMSNorm (h) when the norm has no weight, since Q
 * keeps lengths): the embedding becomes E Q, every linear layer reading
 * the stream W Q, every layer writing to it Qᵀ W. A Hadamard Q spreads
 * each outlier channel over all channels, so weights and activations have
 * fewer extreme values to quantize. No runtime change is needed: the
 * rotated model is an ordinary checkpoint of the same architecture.
 */

static gboolean
is_power_of_two (guint n)
{
  return n > 0 && (n & (n - 1)) == 0;
}

static double
gaussian (GRand *rand)
{
  /* Box-Muller */
  double u = g_rand_double (rand), v = g_rand_double (rand);
  return sqrt (-2.0 * log (1.0 - u)) * cos (2.0 * G_PI * v);
}

/**
 * quark_rotation_matrix:
 * @n: the size
 * @random: whether to flip the signs of random rows (a random Hadamard
 *   matrix, as QuaRot uses)
 * @seed: the seed of the random choices
 * @error: return location for a #GError
 *
 * An orthogonal matrix Q [@n, @n] in float32. For @n a power of two, the
 * Walsh-Hadamard matrix H[i][j] = (−1)^popcount(i & j) / √n, with, when
 * @random is set, row i multiplied by a random sign d_i (Q = diag (d) H).
 * For other sizes there is no Hadamard matrix of that kind, and Q is a
 * random orthogonal matrix: the Q factor of the QR decomposition of a
 * matrix of standard normal numbers (LAPACK `dgeqrf`/`dorgqr`), column
 * signs fixed so that R has a positive diagonal. The same @n, @random and
 * @seed always give the same matrix.
 *
 * Returns: (transfer full): the matrix, or %NULL with
 *   %QUARK_ERROR_INVALID_ARGUMENT for a size of 0 or one whose matrix does
 *   not fit in memory
 */
QuarkTensor *
quark_rotation_matrix (guint n, gboolean random, guint64 seed, GError **error)
{
  guint32 seeds[2] = { (guint32) seed, (guint32) (seed >> 32) };
  g_autoptr(GRand) rand = g_rand_new_with_seed_array (seeds, 2);
  g_autofree float *q = NULL;
  gint64 shape[2] = { n, n };

  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!_quark_blas_load (error))
    return NULL;

  if (n == 0 || n > 65536 || (q = g_try_new (float, (gsize) n * n)) == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "rotation: no %u x %u matrix", n, n);
      return NULL;
    }
  if (is_power_of_two (n))
    {
      float norm = (float) (1.0 / sqrt ((double) n));
      for (guint i = 0; i < n; i++)
        {
          float sign = random && g_rand_boolean (rand) ? -1.0f : 1.0f;
          for (guint j = 0; j < n; j++)
            q[(gsize) i * n + j] = (__builtin_popcount (i & j) & 1 ? -norm : norm) * sign;
        }
    }
  else
    {
      g_autofree double *a = g_new (double, (gsize) n * n), *tau = g_new (double, n), *diag = g_new (double, n);
      for (gsize i = 0; i < (gsize) n * n; i++)
        a[i] = gaussian (rand);
      if (_quark_blas ()->dgeqrf (LAPACK_ROW_MAJOR, (int) n, (int) n, a, (int) n, tau) != 0)
        goto failed;
      for (guint j = 0; j < n; j++)
        diag[j] = a[(gsize) j * n + j];
      if (_quark_blas ()->dorgqr (LAPACK_ROW_MAJOR, (int) n, (int) n, (int) n, a, (int) n, tau) != 0)
        goto failed;
      for (guint i = 0; i < n; i++)
        for (guint j = 0; j < n; j++)
          q[(gsize) i * n + j] = (float) (diag[j] < 0 ? -a[(gsize) i * n + j] : a[(gsize) i * n + j]);
    }
  return quark_tensor_new_from_floats ("rotation", shape, 2, q, (gsize) n * n, error);

failed:
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED, "rotation: the QR decomposition of size %u failed", n);
  return NULL;
}

typedef struct {
  QuarkModel *model;
  GHashTable *replaced;         /* name → QuarkTensor */
  const float *q;
  gsize n;
} Rotation;

static float *
values_of (Rotation *r, const char *name, gsize rows, gsize cols, GError **error)
{
  QuarkTensor *t = quark_model_get_tensor (r->model, name);
  g_autofree float *v = NULL;
  gsize count = 0;

  if (t == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "rotation: %s is not in the model", name);
      return NULL;
    }
  if ((v = quark_tensor_to_floats (t, &count, error)) == NULL)
    return NULL;
  if (count != rows * cols || (cols > 1 && (quark_tensor_get_n_dims (t) != 2 ||
                                            (gsize) quark_tensor_get_dim (t, 1) != cols)))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "rotation: %s is not %" G_GSIZE_FORMAT " x %"
                   G_GSIZE_FORMAT " as the residual stream needs", name, rows, cols);
      return NULL;
    }
  return g_steal_pointer (&v);
}

/* @name's new values, float32 (taken) */
static void
replace (Rotation *r, const char *name, float *values, gsize rows, gsize cols, guint n_dims)
{
  gint64 shape[2] = { (gint64) rows, (gint64) cols };
  g_autoptr(GBytes) bytes = g_bytes_new_take (values, rows * cols * sizeof (float));
  QuarkTensor *t = quark_tensor_new (name, QUARK_DTYPE_F32, shape, n_dims, bytes, NULL);
  g_hash_table_insert (r->replaced, g_strdup (name), t);
}

/* W · diag (gamma) · Q for a layer reading the stream (through a norm
 * with weight gamma, or none) */
static gboolean
rotate_reader (Rotation *r, const char *name, const float *gamma, GError **error)
{
  QuarkTensor *t = quark_model_get_tensor (r->model, name);
  gsize rows = t && quark_tensor_get_n_dims (t) == 2 ? (gsize) quark_tensor_get_dim (t, 0) : 0;
  g_autofree float *w = NULL, *out = NULL;

  if ((w = values_of (r, name, rows, r->n, error)) == NULL)
    return FALSE;
  if (gamma)
    for (gsize i = 0; i < rows; i++)
      for (gsize j = 0; j < r->n; j++)
        w[i * r->n + j] *= gamma[j];
  out = g_new (float, rows * r->n);
  _quark_blas ()->sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) rows, (int) r->n, (int) r->n, 1.0f, w,
                         (int) r->n, r->q, (int) r->n, 0.0f, out, (int) r->n);
  replace (r, name, g_steal_pointer (&out), rows, r->n, 2);
  return TRUE;
}

/* Qᵀ · W for a layer writing to the stream, and Qᵀ · b for its bias */
static gboolean
rotate_writer (Rotation *r, const char *layer, GError **error)
{
  g_autofree char *name = g_strconcat (layer, ".weight", NULL), *bias_name = g_strconcat (layer, ".bias", NULL);
  QuarkTensor *t = quark_model_get_tensor (r->model, name);
  gsize cols = t && quark_tensor_get_n_dims (t) == 2 ? (gsize) quark_tensor_get_dim (t, 1) : 0;
  g_autofree float *w = NULL, *out = NULL;

  if (t == NULL || (gsize) quark_tensor_get_dim (t, 0) != r->n)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "rotation: %s is missing or does not have %"
                   G_GSIZE_FORMAT " rows as the residual stream", name, r->n);
      return FALSE;
    }
  if ((w = values_of (r, name, r->n, cols, error)) == NULL)
    return FALSE;
  out = g_new (float, r->n * cols);
  _quark_blas ()->sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, (int) r->n, (int) cols, (int) r->n, 1.0f, r->q,
                         (int) r->n, w, (int) cols, 0.0f, out, (int) cols);
  replace (r, name, g_steal_pointer (&out), r->n, cols, 2);
  if (quark_model_get_tensor (r->model, bias_name))
    {
      g_autofree float *b = values_of (r, bias_name, r->n, 1, error);
      float *rb;
      if (b == NULL)
        return FALSE;
      rb = g_new (float, r->n);
      _quark_blas ()->sgemv (CblasRowMajor, CblasTrans, (int) r->n, (int) r->n, 1.0f, r->q, (int) r->n, b, 1, 0.0f, rb,
                             1);
      replace (r, bias_name, rb, r->n, 1, 1);
    }
  return TRUE;
}

/* A norm's weight folded into its readers and replaced by ones */
static gboolean
fold_norm (Rotation *r, const char *norm, const char * const *readers, const char *prefix, GError **error)
{
  g_autofree char *name = g_strconcat (norm, ".weight", NULL);
  g_autofree float *gamma = values_of (r, name, r->n, 1, error);
  g_autofree float *ones = NULL;

  if (gamma == NULL)
    return FALSE;
  for (guint k = 0; readers[k]; k++)
    {
      g_autofree char *reader = g_strdup_printf ("%s%s.weight", prefix, readers[k]);
      if (!rotate_reader (r, reader, gamma, error))
        return FALSE;
    }
  ones = g_new (float, r->n);
  for (gsize j = 0; j < r->n; j++)
    ones[j] = 1.0f;
  replace (r, name, g_steal_pointer (&ones), r->n, 1, 1);
  return TRUE;
}

static const char *
member_string (JsonObject *o, const char *key)
{
  JsonNode *v = json_object_get_member (o, key);
  return v && JSON_NODE_HOLDS_VALUE (v) && json_node_get_value_type (v) == G_TYPE_STRING
         ? json_node_get_string (v) : NULL;
}

static GStrv
member_strings (JsonObject *o, const char *key)
{
  JsonNode *v = json_object_get_member (o, key);
  g_autoptr(GStrvBuilder) b = g_strv_builder_new ();

  if (v == NULL || !JSON_NODE_HOLDS_ARRAY (v))
    return NULL;
  for (guint i = 0; i < json_array_get_length (json_node_get_array (v)); i++)
    {
      JsonNode *e = json_array_get_element (json_node_get_array (v), i);
      if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_STRING)
        return NULL;
      g_strv_builder_add (b, json_node_get_string (e));
    }
  return g_strv_builder_end (b);
}

/**
 * quark_rotation_rotate_model:
 * @model: a float model
 * @residual_stream: (nullable): how its residual stream flows
 *   (quark_topology_get_residual_stream()); %NULL to take it from @model's
 *   `config.json`
 * @rotation: an orthogonal matrix Q [hidden, hidden]
 *   (quark_rotation_matrix())
 * @error: return location for a #GError
 *
 * Rotates @model's residual stream by Q: every norm's weight γ is folded
 * into the linear layers that read through it (W diag (γ)) and set to 1,
 * then the embedding E becomes E Q, each linear layer reading the stream
 * W Q (the output head included, through the final norm), each layer
 * writing to it Qᵀ W (and its bias Qᵀ b). Products in float32 (BLAS
 * `sgemm`); the changed tensors are float32, the others are @model's own.
 * The model computes the same function up to float32 rounding.
 *
 * Returns: (transfer full): the rotated model (with @model's metadata), or
 *   %NULL with %QUARK_ERROR_INVALID_ARGUMENT when a tensor the stream
 *   names is missing or has the wrong shape, %QUARK_ERROR_UNSUPPORTED_SCHEME
 *   for tied embeddings (one tensor cannot be both E Q and W diag (γ) Q)
 *   or a topology error
 */
QuarkModel *
quark_rotation_rotate_model (QuarkModel *model, JsonNode *residual_stream, QuarkTensor *rotation, GError **error)
{
  g_autoptr(JsonNode) own = NULL;
  g_autoptr(GHashTable) replaced = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  g_autofree float *q = NULL;
  g_autofree guint *indices = NULL;
  g_auto(GStrv) writers = NULL;
  g_autoptr(QuarkModel) out = NULL;
  JsonObject *rs;
  JsonArray *norms;
  const char *embedding, *prefix, *final_norm, *head;
  Rotation r = { model, NULL, NULL, 0 };
  gsize count;
  guint n_layers;

  g_return_val_if_fail (QUARK_IS_MODEL (model), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (rotation), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!_quark_blas_load (error))
    return NULL;

  if (residual_stream == NULL &&
      (residual_stream = own = quark_topology_get_residual_stream (quark_model_get_metadata (model), error)) == NULL)
    return NULL;
  rs = JSON_NODE_HOLDS_OBJECT (residual_stream) ? json_node_get_object (residual_stream) : NULL;
  if (rs == NULL || !(embedding = member_string (rs, "embedding")) || !(prefix = member_string (rs, "decoder_layers")) ||
      !(final_norm = member_string (rs, "final_norm")) || !(head = member_string (rs, "head")) ||
      !(writers = member_strings (rs, "writers")) || !json_object_get_member (rs, "norms") ||
      !JSON_NODE_HOLDS_ARRAY (json_object_get_member (rs, "norms")))
    {
      g_set_error_literal (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                           "rotation: the residual stream needs embedding, decoder_layers, norms, writers, "
                           "final_norm and head");
      return NULL;
    }
  norms = json_node_get_array (json_object_get_member (rs, "norms"));
  if (quark_tensor_get_n_dims (rotation) != 2 || quark_tensor_get_dim (rotation, 0) != quark_tensor_get_dim (rotation, 1))
    {
      g_set_error_literal (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "rotation: the matrix is not square");
      return NULL;
    }
  r.n = (gsize) quark_tensor_get_dim (rotation, 0);
  if ((q = quark_tensor_to_floats (rotation, &count, error)) == NULL)
    return NULL;
  r.q = q;
  r.replaced = replaced;
  {
    g_autofree char *head_name = g_strconcat (head, ".weight", NULL);
    g_autofree char *embed_name = g_strconcat (embedding, ".weight", NULL);
    const char *readers[] = { head, NULL };
    g_autofree float *e = NULL;
    QuarkTensor *et = quark_model_get_tensor (model, embed_name);
    gsize vocab = et && quark_tensor_get_n_dims (et) == 2 ? (gsize) quark_tensor_get_dim (et, 0) : 0;

    if (quark_model_get_tensor (model, head_name) == NULL)
      {
        g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME, "rotation: the model has no %s (its "
                     "embeddings are tied to the head), which rotation does not support", head_name);
        return NULL;
      }
    if ((e = values_of (&r, embed_name, vocab, r.n, error)) == NULL)
      return NULL;
    {
      float *rotated = g_new (float, vocab * r.n);
      _quark_blas ()->sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) vocab, (int) r.n, (int) r.n, 1.0f, e,
                             (int) r.n, q, (int) r.n, 0.0f, rotated, (int) r.n);
      replace (&r, embed_name, rotated, vocab, r.n, 2);
    }
    if (!fold_norm (&r, final_norm, readers, "", error))
      return NULL;
  }
  indices = quark_topology_get_layer_indices (model, prefix, &n_layers);
  for (guint i = 0; i < n_layers; i++)
    {
      g_autofree char *base = g_strdup_printf ("%s.%u.", prefix, indices[i]);
      for (guint k = 0; k < json_array_get_length (norms); k++)
        {
          JsonNode *e = json_array_get_element (norms, k);
          JsonObject *o = JSON_NODE_HOLDS_OBJECT (e) ? json_node_get_object (e) : NULL;
          const char *norm = o ? member_string (o, "norm") : NULL;
          g_auto(GStrv) readers = o ? member_strings (o, "readers") : NULL;
          g_autofree char *full = NULL;
          if (norm == NULL || readers == NULL)
            {
              g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "rotation: norms[%u] needs a norm and "
                           "its readers", k);
              return NULL;
            }
          full = g_strconcat (base, norm, NULL);
          if (!fold_norm (&r, full, (const char * const *) readers, base, error))
            return NULL;
        }
      for (guint k = 0; writers[k]; k++)
        {
          g_autofree char *layer = g_strconcat (base, writers[k], NULL);
          if (!rotate_writer (&r, layer, error))
            return NULL;
        }
    }
  out = quark_model_new ();
  for (guint i = 0; i < quark_model_get_n_tensors (model); i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (model, i);
      QuarkTensor *with = g_hash_table_lookup (replaced, quark_tensor_get_name (t));
      if (!quark_model_add_tensor (out, with ? with : t, error))
        return NULL;
    }
  quark_model_set_metadata (out, quark_model_get_metadata (model));
  return g_steal_pointer (&out);
}
