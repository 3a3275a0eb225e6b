/* quark-executor.c: a Llama-family forward pass in float32 over OpenBLAS
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-executor.h"
#include "quark-enum-types.h"
#include "quark-error.h"
#include "quark-registry.h"
#include "quark-safetensors.h"
#include "quark-tensor.h"
#include "kernels/quark-kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/**
 * QuarkExecutor:
 *
 * Runs a decoder-only model of the Llama family (`model_type` `llama`,
 * `mistral` or `qwen2` in `config.json`) on token ids, natively: for
 * perplexity and KL divergence ([method@Quark.Executor.evaluate]) and to
 * feed calibration sessions ([method@Quark.Executor.calibrate]) without
 * Python.
 *
 * The forward pass is the one Hugging Face transformers computes in
 * float32: RMSNorm (`x / sqrt(mean(x²) + eps) · w`), rotary position
 * embeddings on halves of each head (`rope_theta`; `rope_scaling` of type
 * `llama3` with its factor, low and high frequency factors and original
 * context), grouped-query attention with a causal mask (and Mistral's
 * `sliding_window`), SwiGLU (`silu(gate) · up`), the biases of q, k and v
 * when the checkpoint has them (Qwen2), and an `lm_head` or the tied
 * embedding. Matrix products go through OpenBLAS's `sgemm`, which uses the
 * machine's cores; `OPENBLAS_NUM_THREADS` sets how many.
 *
 * Weights stay where the model keeps them (mapped from the checkpoint) and
 * are widened to float32 one layer at a time into a reused buffer (F32, F16
 * and BF16), and the output head a block of vocabulary rows at a time, so
 * memory is about one layer's weights in float32 plus the activations of
 * one window. A quantized checkpoint is read back to float first with
 * [method@Quark.Registry.dequantize_checkpoint] and then held in float32
 * whole.
 *
 * An executor may be used from one thread at a time.
 */

#define HEAD_ROWS 4096          /* vocabulary rows of the output head widened at a time */
#define HEAD_TOKENS 64          /* tokens whose logits are made at a time by evaluate() */

enum { SIGNAL_PROGRESS, N_SIGNALS };
static guint signals[N_SIGNALS];

typedef struct {
  QuarkTensor *input_norm, *post_norm;
  QuarkTensor *q, *k, *v, *o, *q_bias, *k_bias, *v_bias;
  QuarkTensor *gate, *up, *down;
  char *prefix;                 /* model.layers.N */
} Layer;

struct _QuarkExecutor
{
  GObject parent_instance;

  QuarkModel *model;
  guint hidden, n_layers, n_heads, n_kv_heads, head_dim, intermediate, vocab, max_context;
  guint sliding_window;         /* 0: none */
  double eps;
  float *inv_freq;              /* head_dim / 2 */
  QuarkTensor *embed, *norm, *head;
  Layer *layers;

  float *weights;               /* one layer's weights, widened */
  gsize weights_size;
};

G_DEFINE_FINAL_TYPE (QuarkExecutor, quark_executor, G_TYPE_OBJECT)

static void
quark_executor_finalize (GObject *object)
{
  QuarkExecutor *self = QUARK_EXECUTOR (object);

  for (guint i = 0; self->layers && i < self->n_layers; i++)
    g_free (self->layers[i].prefix);
  g_free (self->layers);
  g_free (self->inv_freq);
  g_free (self->weights);
  g_clear_object (&self->model);
  G_OBJECT_CLASS (quark_executor_parent_class)->finalize (object);
}

static void
quark_executor_class_init (QuarkExecutorClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = quark_executor_finalize;

  /**
   * QuarkExecutor::progress:
   * @executor: the executor
   * @done: tokens (or windows' tokens) processed so far
   * @total: tokens in all
   *
   * Emitted by [method@Quark.Executor.evaluate] and
   * [method@Quark.Executor.calibrate] after each window, in the calling
   * thread.
   */
  signals[SIGNAL_PROGRESS] = g_signal_new ("progress", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                           NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_UINT64, G_TYPE_UINT64);
}

static void
quark_executor_init (QuarkExecutor *self)
{
}

/* ------------------------------------------------------------------ */
/* Reading the config and the tensors                                  */

static gboolean
config_uint (JsonObject *config, const char *name, guint fallback, gboolean required, guint *out, GError **error)
{
  JsonNode *node = json_object_get_member (config, name);

  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    {
      if (required)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "config.json: %s is missing", name);
          return FALSE;
        }
      *out = fallback;
      return TRUE;
    }
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64 ||
      json_node_get_int (node) <= 0 || json_node_get_int (node) > G_MAXINT32)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "config.json: %s must be a positive integer", name);
      return FALSE;
    }
  *out = (guint) json_node_get_int (node);
  return TRUE;
}

static double
config_double (JsonObject *config, const char *name, double fallback)
{
  JsonNode *node = config ? json_object_get_member (config, name) : NULL;
  return node && JSON_NODE_HOLDS_VALUE (node) &&
         (json_node_get_value_type (node) == G_TYPE_DOUBLE || json_node_get_value_type (node) == G_TYPE_INT64)
         ? json_node_get_double (node) : fallback;
}

static QuarkTensor *
find_tensor (QuarkExecutor *self, const char *name, guint rows, guint cols, gboolean optional, GError **error)
{
  QuarkTensor *t = quark_model_get_tensor (self->model, name);
  QuarkDType dtype;
  guint n_dims;

  if (t == NULL)
    {
      if (!optional)
        g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "the model has no tensor %s", name);
      return NULL;
    }
  dtype = quark_tensor_get_dtype (t);
  n_dims = quark_tensor_get_n_dims (t);
  if (dtype != QUARK_DTYPE_F32 && dtype != QUARK_DTYPE_F16 && dtype != QUARK_DTYPE_BF16)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_DTYPE, "%s: %s weights cannot be run (F32, F16 or BF16)",
                   name, quark_dtype_get_name (dtype));
      return NULL;
    }
  if ((cols == 0 && (n_dims != 1 || quark_tensor_get_dim (t, 0) != rows)) ||
      (cols != 0 && (n_dims != 2 || quark_tensor_get_dim (t, 0) != rows || quark_tensor_get_dim (t, 1) != cols)))
    {
      g_autofree char *shape = quark_tensor_format_shape (t);
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s has shape %s; config.json makes it [%u%s%.0u]",
                   name, shape, rows, cols ? ", " : "", cols);
      return NULL;
    }
  return t;
}

/* RoPE frequencies, as transformers computes them in float32, with the
 * `llama3` rescaling of long wavelengths */
static gboolean
setup_rope (QuarkExecutor *self, JsonObject *config, GError **error)
{
  JsonNode *node = json_object_get_member (config, "rope_scaling");
  JsonObject *scaling = node && JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
  JsonNode *params_node = json_object_get_member (config, "rope_parameters");
  JsonObject *params = params_node && JSON_NODE_HOLDS_OBJECT (params_node) ? json_node_get_object (params_node) : NULL;
  const char *type;
  double theta;
  guint half = self->head_dim / 2;

  if (scaling == NULL)
    scaling = params;
  type = scaling ? json_object_get_string_member_with_default (scaling, "rope_type",
                     json_object_get_string_member_with_default (scaling, "type", "default")) : "default";
  theta = config_double (config, "rope_theta", config_double (params, "rope_theta", 10000.0));
  self->inv_freq = g_new (float, half);
  for (guint i = 0; i < half; i++)
    self->inv_freq[i] = (float) (1.0 / pow (theta, (double) (float) (2 * i) / (double) self->head_dim));
  if (g_str_equal (type, "default"))
    return TRUE;
  if (g_str_equal (type, "llama3"))
    {
      double factor = config_double (scaling, "factor", 8.0);
      double low = config_double (scaling, "low_freq_factor", 1.0);
      double high = config_double (scaling, "high_freq_factor", 4.0);
      double original = config_double (scaling, "original_max_position_embeddings", 8192.0);
      double low_wavelen = original / low, high_wavelen = original / high;

      for (guint i = 0; i < half; i++)
        {
          double f = self->inv_freq[i], wavelen = 2.0 * G_PI / f;
          if (wavelen > low_wavelen)
            f = f / factor;
          else if (wavelen >= high_wavelen)
            {
              double smooth = (original / wavelen - low) / (high - low);
              f = (1.0 - smooth) * f / factor + smooth * f;
            }
          self->inv_freq[i] = (float) f;
        }
      return TRUE;
    }
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
               "config.json: rope_scaling of type %s is not supported (default, llama3)", type);
  return FALSE;
}

static gboolean
setup (QuarkExecutor *self, GError **error)
{
  JsonNode *metadata = quark_model_get_metadata (self->model);
  JsonObject *config;
  const char *type;
  guint qdim, kvdim;
  gsize largest;

  if (metadata == NULL || !JSON_NODE_HOLDS_OBJECT (metadata))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "the model has no config.json");
      return FALSE;
    }
  config = json_node_get_object (metadata);
  type = json_object_get_string_member_with_default (config, "model_type", "");
  if (!g_str_equal (type, "llama") && !g_str_equal (type, "mistral") && !g_str_equal (type, "qwen2"))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "config.json: model_type \"%s\" cannot be run (llama, mistral, qwen2)", type);
      return FALSE;
    }
  if (!config_uint (config, "hidden_size", 0, TRUE, &self->hidden, error) ||
      !config_uint (config, "num_hidden_layers", 0, TRUE, &self->n_layers, error) ||
      !config_uint (config, "num_attention_heads", 0, TRUE, &self->n_heads, error) ||
      !config_uint (config, "num_key_value_heads", self->n_heads, FALSE, &self->n_kv_heads, error) ||
      !config_uint (config, "head_dim", self->hidden / self->n_heads, FALSE, &self->head_dim, error) ||
      !config_uint (config, "intermediate_size", 0, TRUE, &self->intermediate, error) ||
      !config_uint (config, "vocab_size", 0, TRUE, &self->vocab, error) ||
      !config_uint (config, "max_position_embeddings", 2048, FALSE, &self->max_context, error) ||
      !config_uint (config, "sliding_window", 0, FALSE, &self->sliding_window, error))
    return FALSE;
  if (self->n_heads % self->n_kv_heads != 0 || self->head_dim % 2 != 0)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                   "config.json: %u attention heads do not share %u key/value heads evenly, or head_dim %u is odd",
                   self->n_heads, self->n_kv_heads, self->head_dim);
      return FALSE;
    }
  if (!g_str_equal (type, "mistral") && !(g_str_equal (type, "qwen2") &&
      json_object_get_boolean_member_with_default (config, "use_sliding_window", FALSE)))
    self->sliding_window = 0;
  self->eps = config_double (config, "rms_norm_eps", 1e-6);
  if (!setup_rope (self, config, error))
    return FALSE;

  qdim = self->n_heads * self->head_dim;
  kvdim = self->n_kv_heads * self->head_dim;
  if ((self->embed = find_tensor (self, "model.embed_tokens.weight", self->vocab, self->hidden, FALSE, error)) == NULL ||
      (self->norm = find_tensor (self, "model.norm.weight", self->hidden, 0, FALSE, error)) == NULL)
    return FALSE;
  self->head = find_tensor (self, "lm_head.weight", self->vocab, self->hidden, TRUE, error);
  if (self->head == NULL)
    {
      if (error && *error)
        return FALSE;
      self->head = self->embed;   /* tied */
    }
  self->layers = g_new0 (Layer, self->n_layers);
  for (guint i = 0; i < self->n_layers; i++)
    {
      Layer *l = &self->layers[i];
      g_autofree char *n = NULL;
#define T(field, suffix, rows, cols, optional) \
      g_free (n); \
      n = g_strdup_printf ("%s.%s", l->prefix, suffix); \
      l->field = find_tensor (self, n, rows, cols, optional, error); \
      if (l->field == NULL && (!(optional) || (error && *error))) \
        return FALSE;

      l->prefix = g_strdup_printf ("model.layers.%u", i);
      T (input_norm, "input_layernorm.weight", self->hidden, 0, FALSE)
      T (post_norm, "post_attention_layernorm.weight", self->hidden, 0, FALSE)
      T (q, "self_attn.q_proj.weight", qdim, self->hidden, FALSE)
      T (k, "self_attn.k_proj.weight", kvdim, self->hidden, FALSE)
      T (v, "self_attn.v_proj.weight", kvdim, self->hidden, FALSE)
      T (o, "self_attn.o_proj.weight", self->hidden, qdim, FALSE)
      T (q_bias, "self_attn.q_proj.bias", qdim, 0, TRUE)
      T (k_bias, "self_attn.k_proj.bias", kvdim, 0, TRUE)
      T (v_bias, "self_attn.v_proj.bias", kvdim, 0, TRUE)
      T (gate, "mlp.gate_proj.weight", self->intermediate, self->hidden, FALSE)
      T (up, "mlp.up_proj.weight", self->intermediate, self->hidden, FALSE)
      T (down, "mlp.down_proj.weight", self->hidden, self->intermediate, FALSE)
#undef T
    }
  largest = MAX ((gsize) (qdim + 2 * kvdim) * self->hidden + (gsize) self->hidden * qdim,
                 (gsize) 3 * self->intermediate * self->hidden);
  largest = MAX (largest, (gsize) HEAD_ROWS * self->hidden);
  self->weights_size = largest;
  self->weights = g_try_new (float, largest);
  if (self->weights == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED, "out of memory for one layer's weights (%" G_GSIZE_FORMAT " floats)",
                   largest);
      return FALSE;
    }
  return TRUE;
}

/**
 * quark_executor_new:
 * @model: a Llama-family model with its `config.json` as metadata, float
 *   or quantized
 * @error: return location for a #GError
 *
 * Makes an executor for @model. A quantized @model is read back to float
 * first ([method@Quark.Registry.dequantize_checkpoint]).
 *
 * Fails with %QUARK_ERROR_UNSUPPORTED_SCHEME for another architecture or
 * RoPE scaling, and with %QUARK_ERROR_INVALID_FILE, naming the tensor or
 * the config member, when tensors are missing or do not have the shapes
 * the config gives.
 *
 * Returns: (transfer full): the executor, or %NULL with @error set
 */
QuarkExecutor *
quark_executor_new (QuarkModel *model, GError **error)
{
  g_autoptr(QuarkExecutor) self = NULL;

  g_return_val_if_fail (QUARK_IS_MODEL (model), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  self = g_object_new (QUARK_TYPE_EXECUTOR, NULL);
  if (quark_model_is_quantized (model, NULL))
    {
      if ((self->model = quark_registry_dequantize_checkpoint (quark_registry_get_default (), model, error)) == NULL)
        return NULL;
      if (quark_model_get_metadata (self->model) == NULL)
        quark_model_set_metadata (self->model, quark_model_get_metadata (model));
    }
  else
    self->model = g_object_ref (model);
  if (!setup (self, error))
    return NULL;
  return g_steal_pointer (&self);
}

/**
 * quark_executor_new_from_path:
 * @path: a model directory or `.safetensors` file, as
 *   [func@Quark.Model.load] reads it
 * @error: return location for a #GError
 *
 * Loads a model and makes an executor for it.
 *
 * Returns: (transfer full): the executor, or %NULL with @error set
 */
QuarkExecutor *
quark_executor_new_from_path (const char *path, GError **error)
{
  g_autoptr(QuarkModel) model = NULL;
  QuarkExecutor *self;

  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if ((model = quark_model_load (path, NULL, error)) == NULL)
    return NULL;
  if ((self = quark_executor_new (model, error)) == NULL)
    g_prefix_error (error, "%s: ", path);
  return self;
}

/**
 * quark_executor_get_model:
 * @self: a #QuarkExecutor
 *
 * Returns: (transfer none): the float model the executor runs
 */
QuarkModel *
quark_executor_get_model (QuarkExecutor *self)
{
  g_return_val_if_fail (QUARK_IS_EXECUTOR (self), NULL);
  return self->model;
}

/**
 * quark_executor_get_vocab_size:
 * @self: a #QuarkExecutor
 *
 * Returns: the number of logits per token (`vocab_size`)
 */
guint
quark_executor_get_vocab_size (QuarkExecutor *self)
{
  g_return_val_if_fail (QUARK_IS_EXECUTOR (self), 0);
  return self->vocab;
}

/**
 * quark_executor_get_max_context:
 * @self: a #QuarkExecutor
 *
 * Returns: the longest window the model was made for
 *   (`max_position_embeddings`)
 */
guint
quark_executor_get_max_context (QuarkExecutor *self)
{
  g_return_val_if_fail (QUARK_IS_EXECUTOR (self), 0);
  return self->max_context;
}

/* ------------------------------------------------------------------ */
/* The forward pass                                                    */

static void
widen (QuarkTensor *t, gsize offset, gsize n, float *out)
{
  QuarkDType dtype = quark_tensor_get_dtype (t);
  const guint8 *data = quark_tensor_peek_data (t, NULL);

  quark_kernel_convert_to_f32 (dtype, data + offset * quark_dtype_get_element_size (dtype), out, n);
}

static float *
widen_all (QuarkTensor *t, float *out)
{
  widen (t, 0, quark_tensor_get_n_elements (t), out);
  return out;
}

static void
rms_norm (const float *x, const float *w, guint rows, guint dim, double eps, float *out)
{
  for (guint r = 0; r < rows; r++)
    {
      const float *xr = x + (gsize) r * dim;
      float *o = out + (gsize) r * dim;
      float sum = 0.0f, scale;
      for (guint i = 0; i < dim; i++)
        sum += xr[i] * xr[i];
      scale = 1.0f / sqrtf (sum / (float) dim + (float) eps);
      for (guint i = 0; i < dim; i++)
        o[i] = w[i] * (xr[i] * scale);
    }
}

/* out[T, n] = x[T, k] · W[n, k]ᵀ (+ bias) */
static void
linear (const float *x, guint tokens, guint k, const float *w, guint n, const float *bias, float *out)
{
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) tokens, (int) n, (int) k, 1.0f, x, (int) k, w, (int) k,
               0.0f, out, (int) n);
  if (bias)
    for (guint t = 0; t < tokens; t++)
      for (guint i = 0; i < n; i++)
        out[(gsize) t * n + i] += bias[i];
}

/* rotates each head's halves by the position's angles (transformers'
 * rotate_half convention) */
static void
rope (QuarkExecutor *self, float *x, guint tokens, guint heads, guint position0)
{
  guint half = self->head_dim / 2;
  g_autofree float *cosv = g_new (float, half), *sinv = g_new (float, half);

  for (guint t = 0; t < tokens; t++)
    {
      float pos = (float) (position0 + t);
      for (guint i = 0; i < half; i++)
        {
          float angle = pos * self->inv_freq[i];
          cosv[i] = cosf (angle);
          sinv[i] = sinf (angle);
        }
      for (guint h = 0; h < heads; h++)
        {
          float *v = x + ((gsize) t * heads + h) * self->head_dim;
          for (guint i = 0; i < half; i++)
            {
              float a = v[i], b = v[i + half];
              v[i] = a * cosv[i] - b * sinv[i];
              v[i + half] = b * cosv[i] + a * sinv[i];
            }
        }
    }
}

typedef void (*ObserveFunc) (const char *layer, const float *x, guint tokens, guint dim, gpointer data);

/* Scaled dot-product attention with a causal mask: out[T, heads·hd] */
static void
attention (QuarkExecutor *self, const float *q, const float *k, const float *v, guint tokens, float *scores,
           float *out)
{
  guint hd = self->head_dim, qdim = self->n_heads * hd, kvdim = self->n_kv_heads * hd;
  guint group = self->n_heads / self->n_kv_heads;
  float scale = 1.0f / sqrtf ((float) hd);

  for (guint h = 0; h < self->n_heads; h++)
    {
      guint g = h / group;
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) tokens, (int) tokens, (int) hd, scale,
                   q + (gsize) h * hd, (int) qdim, k + (gsize) g * hd, (int) kvdim, 0.0f, scores, (int) tokens);
      for (guint i = 0; i < tokens; i++)
        {
          float *row = scores + (gsize) i * tokens, max = -INFINITY, sum = 0.0f;
          guint first = self->sliding_window && i + 1 > self->sliding_window ? i + 1 - self->sliding_window : 0;
          for (guint j = first; j <= i; j++)
            max = MAX (max, row[j]);
          for (guint j = 0; j < tokens; j++)
            {
              row[j] = j >= first && j <= i ? expf (row[j] - max) : 0.0f;
              sum += row[j];
            }
          for (guint j = first; j <= i; j++)
            row[j] /= sum;
        }
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) tokens, (int) hd, (int) tokens, 1.0f, scores,
                   (int) tokens, v + (gsize) g * hd, (int) kvdim, 0.0f, out + (gsize) h * hd, (int) qdim);
    }
}

/* Passes a linear layer's input to @observe, when there is one */
static void
observe_input_of (ObserveFunc observe, gpointer data, const char *prefix, const char *layer, const float *x,
                  guint tokens, guint dim)
{
  g_autofree char *name = NULL;

  if (observe == NULL)
    return;
  name = g_strdup_printf ("%s.%s", prefix, layer);
  observe (name, x, tokens, dim, data);
}

/* The hidden states after the final norm, [tokens, hidden]; @observe sees
 * every linear layer's input */
static float *
hidden_states (QuarkExecutor *self, const guint32 *ids, guint tokens, ObserveFunc observe, gpointer observe_data,
               GCancellable *cancellable, GError **error)
{
  guint H = self->hidden, F = self->intermediate, hd = self->head_dim;
  guint qdim = self->n_heads * hd, kvdim = self->n_kv_heads * hd;
  g_autofree float *x = g_try_new (float, (gsize) tokens * H);
  g_autofree float *h = g_try_new (float, (gsize) tokens * H);
  g_autofree float *q = g_try_new (float, (gsize) tokens * qdim);
  g_autofree float *k = g_try_new (float, (gsize) tokens * kvdim);
  g_autofree float *v = g_try_new (float, (gsize) tokens * kvdim);
  g_autofree float *att = g_try_new (float, (gsize) tokens * qdim);
  g_autofree float *scores = g_try_new (float, (gsize) tokens * tokens);
  g_autofree float *gate = g_try_new (float, (gsize) tokens * F);
  g_autofree float *up = g_try_new (float, (gsize) tokens * F);
  g_autofree float *norm = g_new (float, H);
  g_autofree float *bias = g_new (float, qdim + 2 * kvdim);

  if (!x || !h || !q || !k || !v || !att || !scores || !gate || !up)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED, "out of memory for the activations of %u tokens", tokens);
      return NULL;
    }
  for (guint t = 0; t < tokens; t++)
    {
      if (ids[t] >= self->vocab)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                       "token id %u (at %u) is outside the vocabulary of %u", ids[t], t, self->vocab);
          return NULL;
        }
      widen (self->embed, (gsize) ids[t] * H, H, x + (gsize) t * H);
    }

  for (guint l = 0; l < self->n_layers; l++)
    {
      Layer *L = &self->layers[l];
      float *wq = self->weights, *wk = wq + (gsize) qdim * H, *wv = wk + (gsize) kvdim * H, *wo = wv + (gsize) kvdim * H;
      float *wg = self->weights, *wu = wg + (gsize) F * H, *wd = wu + (gsize) F * H;

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        return NULL;
      /* attention */
      rms_norm (x, widen_all (L->input_norm, norm), tokens, H, self->eps, h);
      widen_all (L->q, wq);
      widen_all (L->k, wk);
      widen_all (L->v, wv);
      widen_all (L->o, wo);
      if (L->q_bias)
        widen_all (L->q_bias, bias);
      if (L->k_bias)
        widen_all (L->k_bias, bias + qdim);
      if (L->v_bias)
        widen_all (L->v_bias, bias + qdim + kvdim);
      observe_input_of (observe, observe_data, L->prefix, "self_attn.q_proj", h, tokens, H);
      observe_input_of (observe, observe_data, L->prefix, "self_attn.k_proj", h, tokens, H);
      observe_input_of (observe, observe_data, L->prefix, "self_attn.v_proj", h, tokens, H);
      linear (h, tokens, H, wq, qdim, L->q_bias ? bias : NULL, q);
      linear (h, tokens, H, wk, kvdim, L->k_bias ? bias + qdim : NULL, k);
      linear (h, tokens, H, wv, kvdim, L->v_bias ? bias + qdim + kvdim : NULL, v);
      rope (self, q, tokens, self->n_heads, 0);
      rope (self, k, tokens, self->n_kv_heads, 0);
      attention (self, q, k, v, tokens, scores, att);
      observe_input_of (observe, observe_data, L->prefix, "self_attn.o_proj", att, tokens, qdim);
      linear (att, tokens, qdim, wo, H, NULL, h);
      for (gsize i = 0; i < (gsize) tokens * H; i++)
        x[i] += h[i];

      /* SwiGLU */
      rms_norm (x, widen_all (L->post_norm, norm), tokens, H, self->eps, h);
      widen_all (L->gate, wg);
      widen_all (L->up, wu);
      widen_all (L->down, wd);
      observe_input_of (observe, observe_data, L->prefix, "mlp.gate_proj", h, tokens, H);
      observe_input_of (observe, observe_data, L->prefix, "mlp.up_proj", h, tokens, H);
      linear (h, tokens, H, wg, F, NULL, gate);
      linear (h, tokens, H, wu, F, NULL, up);
      for (gsize i = 0; i < (gsize) tokens * F; i++)
        {
          float g = gate[i];
          gate[i] = g / (1.0f + expf (-g)) * up[i];
        }
      observe_input_of (observe, observe_data, L->prefix, "mlp.down_proj", gate, tokens, F);
      linear (gate, tokens, F, wd, H, NULL, h);
      for (gsize i = 0; i < (gsize) tokens * H; i++)
        x[i] += h[i];
    }
  rms_norm (x, widen_all (self->norm, norm), tokens, H, self->eps, h);
  if (observe)
    observe ("lm_head", h, tokens, H, observe_data);
  return g_steal_pointer (&h);
}

/* logits[tokens, vocab] of final hidden states, the head widened a block
 * of rows at a time */
static void
head_logits (QuarkExecutor *self, const float *h, guint tokens, float *logits)
{
  for (guint r = 0; r < self->vocab; r += HEAD_ROWS)
    {
      guint rows = MIN (HEAD_ROWS, self->vocab - r);
      widen (self->head, (gsize) r * self->hidden, (gsize) rows * self->hidden, self->weights);
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) tokens, (int) rows, (int) self->hidden, 1.0f, h,
                   (int) self->hidden, self->weights, (int) self->hidden, 0.0f, logits + r, (int) self->vocab);
    }
}

static gboolean
check_window (QuarkExecutor *self, gsize n_ids, GError **error)
{
  if (n_ids == 0 || n_ids > self->max_context)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "a window of %" G_GSIZE_FORMAT " tokens: the model takes 1 to %u (max_position_embeddings)",
                   n_ids, self->max_context);
      return FALSE;
    }
  return TRUE;
}

/**
 * quark_executor_forward:
 * @self: a #QuarkExecutor
 * @ids: (array length=n_ids): token ids, one window
 * @n_ids: the number of ids, at most the model's context
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Runs the model on one window of tokens (positions 0 to @n_ids − 1).
 *
 * Returns: (transfer full): the logits, a float32 tensor named `logits` of
 *   shape [@n_ids, vocab], or %NULL with @error set
 */
QuarkTensor *
quark_executor_forward (QuarkExecutor *self, const guint32 *ids, gsize n_ids, GCancellable *cancellable,
                        GError **error)
{
  g_autofree float *h = NULL;
  float *logits;
  gint64 shape[2];

  g_return_val_if_fail (QUARK_IS_EXECUTOR (self), NULL);
  g_return_val_if_fail (ids != NULL || n_ids == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_window (self, n_ids, error) ||
      (h = hidden_states (self, ids, (guint) n_ids, NULL, NULL, cancellable, error)) == NULL)
    return NULL;
  logits = g_try_new (float, n_ids * self->vocab);
  if (logits == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED, "out of memory for the logits");
      return NULL;
    }
  head_logits (self, h, (guint) n_ids, logits);
  shape[0] = (gint64) n_ids;
  shape[1] = self->vocab;
  return quark_tensor_new ("logits", QUARK_DTYPE_F32, shape, 2,
                           g_bytes_new_take (logits, n_ids * self->vocab * sizeof (float)), error);
}

/* log-softmax of one row: fills @logp, returns nothing */
static void
log_softmax (const float *logits, guint n, double *logp)
{
  double max = -INFINITY, sum = 0.0, lse;

  for (guint i = 0; i < n; i++)
    max = MAX (max, (double) logits[i]);
  for (guint i = 0; i < n; i++)
    sum += exp ((double) logits[i] - max);
  lse = max + log (sum);
  for (guint i = 0; i < n; i++)
    logp[i] = (double) logits[i] - lse;
}

/**
 * quark_executor_evaluate:
 * @self: a #QuarkExecutor
 * @reference: (nullable): a second executor (the float model) to compare
 *   with, on the same vocabulary
 * @ids: (array length=n_ids): the token ids of the text
 * @n_ids: the number of ids
 * @context: the window length, at most the model's context
 * @stride: how far each window starts after the previous one: @context
 *   (0 means @context) gives windows that do not overlap; a smaller stride
 *   gives each prediction more context, at the cost of more windows
 * @cancellable: (nullable): a #GCancellable
 * @perplexity: (out): the perplexity of @self on the text
 * @reference_perplexity: (out) (optional): the perplexity of @reference,
 *   or 0 without one
 * @kl_divergence: (out) (optional): the mean over scored tokens of
 *   KL(reference ‖ self), in nats, or 0 without a reference
 * @n_scored: (out) (optional): the number of predictions scored
 * @error: return location for a #GError
 *
 * Scores the text's next-token predictions: windows of @context tokens
 * start at 0, @stride, 2·@stride, …, up to the one that reaches the end;
 * the first window scores all its predictions (@context − 1), each later
 * one only those of tokens no earlier window scored. The perplexity is
 * exp of the mean negative log-likelihood, computed in float64 from
 * float32 logits. [signal@Quark.Executor::progress] reports the tokens
 * scored so far.
 *
 * Returns: %TRUE on success, %FALSE with @error set (%G_IO_ERROR_CANCELLED
 *   when cancelled)
 */
gboolean
quark_executor_evaluate (QuarkExecutor *self, QuarkExecutor *reference, const guint32 *ids, gsize n_ids,
                         guint context, guint stride, GCancellable *cancellable, double *perplexity,
                         double *reference_perplexity, double *kl_divergence, guint64 *n_scored, GError **error)
{
  double nll = 0.0, ref_nll = 0.0, kl = 0.0;
  guint64 scored = 0, scored_to = 0;
  guint V;
  g_autofree float *logits = NULL, *ref_logits = NULL;
  g_autofree double *logp = NULL, *ref_logp = NULL;

  g_return_val_if_fail (QUARK_IS_EXECUTOR (self), FALSE);
  g_return_val_if_fail (reference == NULL || QUARK_IS_EXECUTOR (reference), FALSE);
  g_return_val_if_fail (ids != NULL || n_ids == 0, FALSE);
  g_return_val_if_fail (perplexity != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  V = self->vocab;
  if (stride == 0)
    stride = context;
  if (context < 2 || !check_window (self, context, error) ||
      (reference && !check_window (reference, context, error)))
    {
      if (context < 2)
        g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "a context of %u tokens scores nothing", context);
      return FALSE;
    }
  if (stride > context)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "a stride of %u would leave tokens out between windows of %u", stride, context);
      return FALSE;
    }
  if (reference && reference->vocab != V)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "the models have different vocabularies (%u and %u logits)", V, reference->vocab);
      return FALSE;
    }
  if (n_ids < 2)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%" G_GSIZE_FORMAT " tokens score nothing", n_ids);
      return FALSE;
    }
  logits = g_new (float, (gsize) HEAD_TOKENS * V);
  logp = g_new (double, V);
  if (reference)
    {
      ref_logits = g_new (float, (gsize) HEAD_TOKENS * V);
      ref_logp = g_new (double, V);
    }

  for (gsize start = 0;; start += stride)
    {
      guint tokens = (guint) MIN ((gsize) context, n_ids - start);
      g_autofree float *h = NULL, *ref_h = NULL;
      guint first = scored_to > start ? (guint) (scored_to - start) : 1;   /* first position whose token is scored */

      if ((h = hidden_states (self, ids + start, tokens, NULL, NULL, cancellable, error)) == NULL ||
          (reference && (ref_h = hidden_states (reference, ids + start, tokens, NULL, NULL, cancellable, error)) == NULL))
        return FALSE;
      /* predictions at positions first − 1 … tokens − 2 */
      for (guint p0 = first - 1; p0 + 1 < tokens; p0 += HEAD_TOKENS)
        {
          guint n = MIN (HEAD_TOKENS, tokens - 1 - p0);
          head_logits (self, h + (gsize) p0 * self->hidden, n, logits);
          if (reference)
            head_logits (reference, ref_h + (gsize) p0 * reference->hidden, n, ref_logits);
          for (guint i = 0; i < n; i++)
            {
              guint32 target = ids[start + p0 + i + 1];
              log_softmax (logits + (gsize) i * V, V, logp);
              nll -= logp[target];
              if (reference)
                {
                  log_softmax (ref_logits + (gsize) i * V, V, ref_logp);
                  ref_nll -= ref_logp[target];
                  for (guint j = 0; j < V; j++)
                    kl += exp (ref_logp[j]) * (ref_logp[j] - logp[j]);
                }
              scored++;
            }
        }
      scored_to = start + tokens;
      g_signal_emit (self, signals[SIGNAL_PROGRESS], 0, (guint64) scored_to, (guint64) n_ids);
      if (start + tokens >= n_ids)
        break;
    }
  *perplexity = exp (nll / (double) scored);
  if (reference_perplexity)
    *reference_perplexity = reference ? exp (ref_nll / (double) scored) : 0.0;
  if (kl_divergence)
    *kl_divergence = reference ? kl / (double) scored : 0.0;
  if (n_scored)
    *n_scored = scored;
  return TRUE;
}

typedef struct {
  QuarkCalibration *calibration;
  GError *error;
} CalibrateData;

static void
observe_input (const char *layer, const float *x, guint tokens, guint dim, gpointer user_data)
{
  CalibrateData *data = user_data;
  gint64 shape[2] = { tokens, dim };

  if (data->error == NULL)
    quark_calibration_observe_floats (data->calibration, layer, QUARK_ROLE_INPUT, x, (gsize) tokens * dim, shape, 2,
                                      &data->error);
}

/**
 * quark_executor_calibrate:
 * @self: a #QuarkExecutor
 * @calibration: the session to feed
 * @ids: (array length=n_ids): the token ids of the calibration text
 * @n_ids: the number of ids
 * @context: the window length (windows do not overlap; the last one may be
 *   shorter)
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Runs the model over the text and passes the input of every linear layer
 * (`model.layers.N.self_attn.q_proj` …, `lm_head`) to
 * [method@Quark.Calibration.observe_floats] as a [tokens, features] batch,
 * one batch per layer and window. [signal@Quark.Executor::progress]
 * reports the tokens run so far.
 *
 * Returns: %TRUE on success, %FALSE with @error set
 */
gboolean
quark_executor_calibrate (QuarkExecutor *self, QuarkCalibration *calibration, const guint32 *ids, gsize n_ids,
                          guint context, GCancellable *cancellable, GError **error)
{
  CalibrateData data = { calibration, NULL };

  g_return_val_if_fail (QUARK_IS_EXECUTOR (self), FALSE);
  g_return_val_if_fail (QUARK_IS_CALIBRATION (calibration), FALSE);
  g_return_val_if_fail (ids != NULL || n_ids == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_window (self, context, error))
    return FALSE;
  for (gsize start = 0; start < n_ids; start += context)
    {
      guint tokens = (guint) MIN ((gsize) context, n_ids - start);
      g_autofree float *h = hidden_states (self, ids + start, tokens, observe_input, &data, cancellable, error);

      if (h == NULL)
        {
          g_clear_error (&data.error);
          return FALSE;
        }
      if (data.error)
        {
          g_propagate_error (error, data.error);
          return FALSE;
        }
      g_signal_emit (self, signals[SIGNAL_PROGRESS], 0, (guint64) (start + tokens), (guint64) n_ids);
    }
  return TRUE;
}
