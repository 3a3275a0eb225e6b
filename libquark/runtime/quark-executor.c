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
#include "quark-parallel-private.h"
#include "quark-blas-private.h"

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
 * one window. A quantized checkpoint is read back to float with
 * [method@Quark.Registry.dequantize_checkpoint] a decoder layer at a time,
 * as the layer runs: only one layer is held in float.
 *
 * An executor may be used from one thread at a time.
 */

#define HEAD_ROWS 4096          /* vocabulary rows of the output head widened at a time */
#define HEAD_TOKENS 64          /* tokens whose logits are made at a time by evaluate() */

enum { SIGNAL_PROGRESS, N_SIGNALS };
static guint signals[N_SIGNALS];

enum { PROP_0, PROP_THREADS, PROP_QUANTIZE_INPUTS, PROP_SEQUENTIAL_STEPS, N_PROPS };
static GParamSpec *properties[N_PROPS];

/* The linear layers of a decoder layer, in the order of Layer.act */
enum { LIN_Q, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, N_LINEAR };
static const char * const linear_names[N_LINEAR] = {
  "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
  "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
};

/* How a quantized checkpoint quantizes a linear layer's input (or output:
 * the KV cache is k_proj's and v_proj's) */
typedef struct {
  char *layer;
  QuarkRole role;
  QuarkTensorSpec *spec;
  QuarkTensor *scale, *zero_point;      /* static specs */
  QuarkCheckpointFormat *format;        /* the format whose engines' arithmetic applies, or NULL: the backend's */
} InputQuant;

typedef struct {
  QuarkTensor *input_norm, *post_norm;
  QuarkTensor *q, *k, *v, *o, *q_bias, *k_bias, *v_bias;
  QuarkTensor *gate, *up, *down;
  InputQuant *act[N_LINEAR];    /* NULL: the input stays float */
  InputQuant *out_act[N_LINEAR]; /* NULL: the output stays float */
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
  QuarkParallel *pool;

  GPtrArray *inputs;            /* InputQuant, owned (inputs and outputs) */
  InputQuant *head_act;
  QuarkModelQuantizer *quantizer;   /* the checkpoint's backend, for dynamic input specs */
  gboolean quantize_inputs;
  QuarkSequentialSteps sequential_steps;   /* how calibrate_sequential steps through a decoder layer */
  gboolean keys_after_rope;     /* k_proj's output (the cached keys) quantized, or observed, after RoPE */
  GMainContext *progress_context;       /* during an async run: where progress is emitted */
  GPtrArray *overrides;         /* weights that replace the model's (calibrate_sequential) */
  QuarkModel *checkpoint;       /* a quantized checkpoint, read back a decoder layer at a time */
  QuarkModel *layer_model;      /* its layer loaded last, in float */
  guint loaded_layer;           /* which (G_MAXUINT: none) */
};

G_DEFINE_FINAL_TYPE (QuarkExecutor, quark_executor, G_TYPE_OBJECT)

static void
quark_executor_finalize (GObject *object)
{
  QuarkExecutor *self = QUARK_EXECUTOR (object);

  for (guint i = 0; self->layers && i < self->n_layers; i++)
    g_free (self->layers[i].prefix);
  g_clear_pointer (&self->inputs, g_ptr_array_unref);
  g_clear_pointer (&self->overrides, g_ptr_array_unref);
  g_clear_object (&self->checkpoint);
  g_clear_object (&self->quantizer);
  g_clear_object (&self->layer_model);
  g_free (self->layers);
  g_free (self->inv_freq);
  g_free (self->weights);
  g_clear_pointer (&self->pool, _quark_parallel_free);
  g_clear_object (&self->model);
  G_OBJECT_CLASS (quark_executor_parent_class)->finalize (object);
}

static void
quark_executor_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  QuarkExecutor *self = QUARK_EXECUTOR (object);

  switch (prop_id)
    {
    case PROP_THREADS:
      g_value_set_uint (value, quark_executor_get_threads (self));
      break;
    case PROP_QUANTIZE_INPUTS:
      g_value_set_boolean (value, self->quantize_inputs);
      break;
    case PROP_SEQUENTIAL_STEPS:
      g_value_set_enum (value, self->sequential_steps);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
quark_executor_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  QuarkExecutor *self = QUARK_EXECUTOR (object);

  switch (prop_id)
    {
    case PROP_THREADS:
      quark_executor_set_threads (self, g_value_get_uint (value));
      break;
    case PROP_QUANTIZE_INPUTS:
      if (self->quantize_inputs != g_value_get_boolean (value))
        {
          self->quantize_inputs = g_value_get_boolean (value);
          g_object_notify_by_pspec (object, pspec);
        }
      break;
    case PROP_SEQUENTIAL_STEPS:
      if (self->sequential_steps != (QuarkSequentialSteps) g_value_get_enum (value))
        {
          self->sequential_steps = g_value_get_enum (value);
          g_object_notify_by_pspec (object, pspec);
        }
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
quark_executor_class_init (QuarkExecutorClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = quark_executor_finalize;
  object_class->get_property = quark_executor_get_property;
  object_class->set_property = quark_executor_set_property;

  /**
   * QuarkExecutor:threads:
   *
   * How many threads run the model (matrix products split by output
   * features, attention by heads, the rest by tokens). 0 when set means
   * one per processor, the default.
   */
  properties[PROP_THREADS] = g_param_spec_uint ("threads", NULL, NULL, 0, 1024, 0,
                                                G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /**
   * QuarkExecutor:quantize-inputs:
   *
   * Whether the inputs of linear layers are quantized as the checkpoint's
   * config says, TRUE by default: static specs are quantized and
   * dequantized again with the stored scales
   * ([method@Quark.TensorSpec.fake_quantize]), dynamic ones (per tensor, per
   * token, per group, MX) with scales from each input, by the checkpoint's
   * backend ([method@Quark.ModelQuantizer.fake_quantize_activation]). FALSE
   * runs every input in float: the effect of the weights alone.
   */
  properties[PROP_QUANTIZE_INPUTS] = g_param_spec_boolean ("quantize-inputs", NULL, NULL, TRUE,
                                                           G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
                                                           G_PARAM_STATIC_STRINGS);
  /**
   * QuarkExecutor:sequential-steps:
   *
   * How [method@Quark.Executor.calibrate_sequential] steps through a
   * decoder layer: %QUARK_SEQUENTIAL_STEPS_LAYER (the default) observes all
   * its linear layers with the float layer and quantizes them together;
   * %QUARK_SEQUENTIAL_STEPS_BLOCKS and %QUARK_SEQUENTIAL_STEPS_LINEARS
   * quantize it in two or four steps, each step's inputs observed through
   * the steps quantized before it, so that GPTQ sees (and can compensate)
   * their errors. Each step runs the decoder layer once more (and, with
   * cross moments, the float layer once more).
   */
  properties[PROP_SEQUENTIAL_STEPS] = g_param_spec_enum ("sequential-steps", NULL, NULL,
                                                         QUARK_TYPE_SEQUENTIAL_STEPS, QUARK_SEQUENTIAL_STEPS_LAYER,
                                                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
                                                         G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

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
input_quant_free (gpointer data)
{
  InputQuant *a = data;

  g_free (a->layer);
  g_clear_object (&a->spec);
  g_clear_object (&a->scale);
  g_clear_object (&a->zero_point);
  g_clear_object (&a->format);
  g_free (a);
}

static void
quark_executor_init (QuarkExecutor *self)
{
  self->pool = _quark_parallel_new (g_get_num_processors ());
  self->quantize_inputs = TRUE;
  self->inputs = g_ptr_array_new_with_free_func (input_quant_free);
  self->overrides = g_ptr_array_new_with_free_func (g_object_unref);
  self->loaded_layer = G_MAXUINT;
}

/**
 * quark_executor_set_threads:
 * @self: a #QuarkExecutor
 * @n_threads: how many threads run the model; 0 for one per processor
 *
 * Sets [property@Quark.Executor:threads]. While the executor runs,
 * OpenBLAS is single-threaded (each of the executor's threads calls it);
 * its own setting is restored afterwards.
 */
void
quark_executor_set_threads (QuarkExecutor *self, guint n_threads)
{
  g_return_if_fail (QUARK_IS_EXECUTOR (self));

  if (n_threads == 0)
    n_threads = g_get_num_processors ();
  if (n_threads == _quark_parallel_get_threads (self->pool))
    return;
  _quark_parallel_free (self->pool);
  self->pool = _quark_parallel_new (n_threads);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_THREADS]);
}

/**
 * quark_executor_get_threads:
 * @self: a #QuarkExecutor
 *
 * How many threads run the model.
 *
 * Returns: the number of threads
 */
guint
quark_executor_get_threads (QuarkExecutor *self)
{
  g_return_val_if_fail (QUARK_IS_EXECUTOR (self), 1);
  return _quark_parallel_get_threads (self->pool);
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
find_tensor_in (QuarkModel *model, const char *name, guint rows, guint cols, gboolean optional, GError **error)
{
  QuarkTensor *t = quark_model_get_tensor (model, name);
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

static QuarkTensor *
find_tensor (QuarkExecutor *self, const char *name, guint rows, guint cols, gboolean optional, GError **error)
{
  return find_tensor_in (self->model, name, rows, cols, optional, error);
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

/* The tensors of @checkpoint whose names start with @prefix (with @inside
 * FALSE: the others) read back to float, by the checkpoint's format or
 * backend */
static QuarkModel *
read_back (QuarkModel *checkpoint, const char *prefix, gboolean inside, GError **error)
{
  g_autoptr(QuarkModel) part = quark_model_new ();

  quark_model_set_metadata (part, quark_model_get_metadata (checkpoint));
  for (guint t = 0; t < quark_model_get_n_tensors (checkpoint); t++)
    {
      QuarkTensor *tensor = quark_model_get_tensor_at (checkpoint, t);
      if (g_str_has_prefix (quark_tensor_get_name (tensor), prefix) == inside &&
          !quark_model_add_tensor (part, tensor, error))
        return NULL;
    }
  return quark_registry_dequantize_checkpoint (quark_registry_get_default (), part, error);
}

/* Points decoder layer @i's fields at its tensors: the model's own, or, for
 * a quantized checkpoint, the layer read back to float (one layer is held
 * at a time, so memory stays about one layer's float weights) */
static gboolean
load_layer (QuarkExecutor *self, guint i, GError **error)
{
  Layer *l = &self->layers[i];
  guint qdim = self->n_heads * self->head_dim, kvdim = self->n_kv_heads * self->head_dim;
  QuarkModel *source = self->model;
  g_autofree char *n = NULL;

  if (self->checkpoint == NULL && l->q != NULL)
    return TRUE;                /* a float model's layers are pointed at once */
  if (self->checkpoint != NULL)
    {
      g_autofree char *prefix = NULL;

      if (self->loaded_layer == i)
        return TRUE;
      prefix = g_strdup_printf ("%s.", l->prefix);
      g_clear_object (&self->layer_model);
      self->loaded_layer = G_MAXUINT;
      if ((self->layer_model = read_back (self->checkpoint, prefix, TRUE, error)) == NULL)
        {
          g_prefix_error (error, "%s: ", l->prefix);
          return FALSE;
        }
      source = self->layer_model;
    }
#define T(field, suffix, rows, cols, optional) \
  g_free (n); \
  n = g_strdup_printf ("%s.%s", l->prefix, suffix); \
  l->field = find_tensor_in (source, n, rows, cols, optional, error); \
  if (l->field == NULL && (!(optional) || (error && *error))) \
    return FALSE;

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
  self->loaded_layer = i;
  return TRUE;
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
      self->layers[i].prefix = g_strdup_printf ("model.layers.%u", i);
      if (!load_layer (self, i, error))
        return FALSE;
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

/* The input (or output) spec of @layer in @config, and its stored
 * parameters */
/* A new input (or output) quantization of @layer with @spec, owned by
 * self->inputs */
static InputQuant *
input_quant_add (QuarkExecutor *self, const char *layer, QuarkRole role, QuarkTensorSpec *spec)
{
  InputQuant *a = g_new0 (InputQuant, 1);

  a->layer = g_strdup (layer);
  a->role = role;
  a->spec = g_object_ref (spec);
  g_ptr_array_add (self->inputs, a);
  return a;
}

static gboolean
read_input_quant (QuarkExecutor *self, QuarkQuantizationConfig *config, QuarkModel *checkpoint, const char *layer,
                  QuarkRole role, InputQuant **out, GError **error)
{
  g_autoptr(QuarkTensorSpec) spec = quark_quantization_config_get_tensor_spec (config, layer, "Linear", role);
  const char *what = role == QUARK_ROLE_OUTPUT ? "output" : "input";
  g_autofree char *scale_name = NULL, *zp_name = NULL;
  InputQuant *a;

  *out = NULL;
  if (spec == NULL)
    return TRUE;
  *out = a = input_quant_add (self, layer, role, spec);
  if (quark_tensor_spec_get_is_dynamic (spec))
    {
      /* quantized by the backend from each input itself */
      if (self->quantizer == NULL &&
          (self->quantizer = quark_registry_new_quantizer (quark_registry_get_default (), config, error)) == NULL)
        return FALSE;
      return TRUE;
    }
  scale_name = g_strdup_printf ("%s.%s_scale", layer, what);
  zp_name = g_strdup_printf ("%s.%s_zero_point", layer, what);
  if ((a->scale = quark_model_get_tensor (checkpoint, scale_name)) == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "the config quantizes the %s of %s statically, "
                   "but the checkpoint has no %s", what, layer, scale_name);
      return FALSE;
    }
  g_object_ref (a->scale);
  if ((a->zero_point = quark_model_get_tensor (checkpoint, zp_name)) != NULL)
    g_object_ref (a->zero_point);
  return TRUE;
}

/* Outputs are quantized (and observed) where the linear layer makes them,
 * except the keys of a config that quantizes them after RoPE (AMD Quark's
 * kv_cache_post_rope, which its quantization_config records): those after
 * RoPE, as the cache holds them. */
static gboolean
config_keys_after_rope (QuarkQuantizationConfig *config)
{
  g_autoptr(JsonNode) json = quark_quantization_config_to_json (config);
  JsonNode *node;

  return json && JSON_NODE_HOLDS_OBJECT (json) &&
         (node = json_object_get_member (json_node_get_object (json), "kv_cache_post_rope")) != NULL &&
         JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_BOOLEAN &&
         json_node_get_boolean (node);
}

/* A layer input (or output, the KV cache) as a format that describes
 * every tensor itself states it (quark_checkpoint_format_import_activation()),
 * quantized at run time with that format's arithmetic */
static gboolean
read_format_input_quant (QuarkExecutor *self, QuarkCheckpointFormat *format, QuarkModel *checkpoint,
                         const char *layer, QuarkRole role, InputQuant **out, GError **error)
{
  g_autoptr(QuarkTensorSpec) spec = NULL;
  g_autoptr(QuarkTensor) scale = NULL, zero_point = NULL;
  InputQuant *a;

  *out = NULL;
  if (!quark_checkpoint_format_import_activation (format, checkpoint, layer, role, &spec, &scale, &zero_point,
                                                  error))
    return FALSE;
  if (spec == NULL)
    return TRUE;
  a = input_quant_add (self, layer, role, spec);
  a->scale = g_steal_pointer (&scale);
  a->zero_point = g_steal_pointer (&zero_point);
  a->format = g_object_ref (format);
  *out = a;
  return TRUE;
}

/* The input specs of a checkpoint, and its output specs (the KV cache):
 * as its backend's config says, or as a format that describes every
 * tensor itself states them */
static gboolean
read_input_quants (QuarkExecutor *self, QuarkModel *checkpoint, GError **error)
{
  QuarkRegistry *registry = quark_registry_get_default ();
  g_autoptr(QuarkCheckpointFormat) format = NULL;
  g_autoptr(QuarkQuantizationConfig) config = NULL;

  format = quark_registry_format_for_model (registry, checkpoint);
  if (format && quark_checkpoint_format_can_dequantize (format))
    {
      for (guint i = 0; i < self->n_layers; i++)
        for (guint j = 0; j < N_LINEAR; j++)
          {
            g_autofree char *layer = g_strdup_printf ("%s.%s", self->layers[i].prefix, linear_names[j]);
            if (!read_format_input_quant (self, format, checkpoint, layer, QUARK_ROLE_INPUT,
                                          &self->layers[i].act[j], error) ||
                !read_format_input_quant (self, format, checkpoint, layer, QUARK_ROLE_OUTPUT,
                                          &self->layers[i].out_act[j], error))
              return FALSE;
          }
      self->keys_after_rope = quark_checkpoint_format_get_kv_cache_after_rope (format);
      return read_format_input_quant (self, format, checkpoint, "lm_head", QUARK_ROLE_INPUT, &self->head_act,
                                      error);
    }
  if ((config = quark_registry_config_for_checkpoint (registry, checkpoint, error)) == NULL)
    return FALSE;
  for (guint i = 0; i < self->n_layers; i++)
    for (guint j = 0; j < N_LINEAR; j++)
      {
        g_autofree char *layer = g_strdup_printf ("%s.%s", self->layers[i].prefix, linear_names[j]);
        if (!read_input_quant (self, config, checkpoint, layer, QUARK_ROLE_INPUT, &self->layers[i].act[j], error) ||
            !read_input_quant (self, config, checkpoint, layer, QUARK_ROLE_OUTPUT, &self->layers[i].out_act[j],
                               error))
          return FALSE;
      }
  self->keys_after_rope = config_keys_after_rope (config);
  return read_input_quant (self, config, checkpoint, "lm_head", QUARK_ROLE_INPUT, &self->head_act, error);
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

  if (!_quark_blas_load (error))
    return NULL;

  self = g_object_new (QUARK_TYPE_EXECUTOR, NULL);
  if (quark_model_is_quantized (model, NULL))
    {
      /* the tensors outside the decoder layers read back now (embedding,
       * final norm, head), the layers one at a time when they run */
      if ((self->model = read_back (model, "model.layers.", FALSE, error)) == NULL)
        return NULL;
      quark_model_set_metadata (self->model, quark_model_get_metadata (model));
      self->checkpoint = g_object_ref (model);
    }
  else
    self->model = g_object_ref (model);
  if (!setup (self, error) || (self->checkpoint && !read_input_quants (self, model, error)))
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
 * The float model the executor runs: the model it was made for, or, for a
 * quantized checkpoint, the tensors outside the decoder layers read back to
 * float (the layers are read back one at a time as they run).
 *
 * Returns: (transfer none): the model
 */
QuarkModel *
quark_executor_get_model (QuarkExecutor *self)
{
  g_return_val_if_fail (QUARK_IS_EXECUTOR (self), NULL);
  return self->model;
}

/* the layers whose inputs (or outputs) the executor quantizes */
static char **
quantized_layers (QuarkExecutor *self, QuarkRole role)
{
  GStrvBuilder *builder = g_strv_builder_new ();
  char **names;

  for (guint i = 0; i < self->inputs->len; i++)
    {
      InputQuant *a = g_ptr_array_index (self->inputs, i);
      if (a->role == role)
        g_strv_builder_add (builder, a->layer);
    }
  names = g_strv_builder_end (builder);
  g_strv_builder_unref (builder);
  return names;
}

/**
 * quark_executor_get_quantized_inputs:
 * @self: a #QuarkExecutor
 *
 * The linear layers whose inputs the checkpoint quantizes (and the
 * executor too, unless [property@Quark.Executor:quantize-inputs] is FALSE):
 * empty for a float model and for weight-only checkpoints. Checkpoints read
 * back by a backend have their inputs quantized as its config says;
 * compressed-tensors checkpoints as their `input_activations` say
 * ([method@Quark.CheckpointFormat.import_activation]).
 *
 * Returns: (transfer full) (array zero-terminated=1): the layer names
 */
char **
quark_executor_get_quantized_inputs (QuarkExecutor *self)
{
  g_return_val_if_fail (QUARK_IS_EXECUTOR (self), NULL);

  return quantized_layers (self, QUARK_ROLE_INPUT);
}

/**
 * quark_executor_get_quantized_outputs:
 * @self: a #QuarkExecutor
 *
 * The linear layers whose outputs the checkpoint quantizes: the KV cache,
 * as the outputs of `k_proj` and `v_proj` (AMD Quark's `kv_cache_group`,
 * `LAYER.output_scale`). The executor quantizes and dequantizes them again
 * where the layer produces them, the keys after RoPE when the checkpoint says
 * the cache holds them so (AMD Quark's `kv_cache_post_rope`,
 * compressed-tensors' `kv_cache_scheme`), unless
 * [property@Quark.Executor:quantize-inputs] is FALSE.
 *
 * Returns: (transfer full) (array zero-terminated=1): the layer names
 */
char **
quark_executor_get_quantized_outputs (QuarkExecutor *self)
{
  g_return_val_if_fail (QUARK_IS_EXECUTOR (self), NULL);

  return quantized_layers (self, QUARK_ROLE_OUTPUT);
}

/**
 * quark_executor_get_vocab_size:
 * @self: a #QuarkExecutor
 *
 * The vocabulary size of the model.
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
 * The model's context length.
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

/* Every step splits its work over the executor's threads: the output
 * features of a matrix product (each thread one sgemm on its block of W's
 * rows, OpenBLAS itself single-threaded meanwhile), the heads of
 * attention, the tokens of norms, rotations and activations, the elements
 * of a weight being widened. */

#define FEATURE_BLOCK 16        /* output features are split in blocks of this many */

typedef struct {
  QuarkTensor *tensor;
  gsize offset;
  float *out;
} WidenJob;

static void
widen_range (gpointer data, gsize begin, gsize end, guint worker)
{
  WidenJob *j = data;
  QuarkDType dtype = quark_tensor_get_dtype (j->tensor);
  const guint8 *src = quark_tensor_peek_data (j->tensor, NULL);

  quark_kernel_convert_to_f32 (dtype, src + (j->offset + begin) * quark_dtype_get_element_size (dtype), j->out + begin,
                               end - begin);
}

/* elements [offset, offset + n) of @t as float32 into @out */
static void
widen (QuarkExecutor *self, QuarkTensor *t, gsize offset, gsize n, float *out)
{
  WidenJob job = { t, offset, out };

  if (n < 65536)
    widen_range (&job, 0, n, 0);
  else
    _quark_parallel_run (self->pool, n, widen_range, &job);
}

static float *
widen_all (QuarkExecutor *self, QuarkTensor *t, float *out)
{
  widen (self, t, 0, quark_tensor_get_n_elements (t), out);
  return out;
}

typedef struct {
  const float *x, *w;
  float *out;
  guint dim;
  float eps;
} NormJob;

static void
rms_norm_range (gpointer data, gsize begin, gsize end, guint worker)
{
  NormJob *j = data;

  for (gsize r = begin; r < end; r++)
    {
      const float *xr = j->x + r * j->dim;
      float *o = j->out + r * j->dim;
      float sum = 0.0f, scale;
      for (guint i = 0; i < j->dim; i++)
        sum += xr[i] * xr[i];
      scale = 1.0f / sqrtf (sum / (float) j->dim + j->eps);
      for (guint i = 0; i < j->dim; i++)
        o[i] = j->w[i] * (xr[i] * scale);
    }
}

static void
rms_norm (QuarkExecutor *self, const float *x, const float *w, guint rows, guint dim, float *out)
{
  NormJob job = { x, w, out, dim, (float) self->eps };
  _quark_parallel_run (self->pool, rows, rms_norm_range, &job);
}

typedef struct {
  const float *x, *w, *bias;
  float *out;
  guint tokens, k, n;
  guint ldc;                    /* the row length of out */
} LinearJob;

static void
linear_range (gpointer data, gsize begin, gsize end, guint worker)
{
  LinearJob *j = data;
  gsize first = begin * FEATURE_BLOCK, last = MIN (end * FEATURE_BLOCK, (gsize) j->n);

  _quark_blas ()->sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) j->tokens, (int) (last - first), (int) j->k,
                         1.0f, j->x, (int) j->k, j->w + first * j->k, (int) j->k, 0.0f, j->out + first, (int) j->ldc);
  if (j->bias)
    for (guint t = 0; t < j->tokens; t++)
      for (gsize i = first; i < last; i++)
        j->out[(gsize) t * j->ldc + i] += j->bias[i];
}

/* out[T, n] = x[T, k] · W[n, k]ᵀ (+ bias) */
static void
linear (QuarkExecutor *self, const float *x, guint tokens, guint k, const float *w, guint n, const float *bias,
        float *out)
{
  LinearJob job = { x, w, bias, out, tokens, k, n, n };
  _quark_parallel_run (self->pool, (n + FEATURE_BLOCK - 1) / FEATURE_BLOCK, linear_range, &job);
}

typedef struct {
  QuarkExecutor *self;
  float *x;
  guint heads;
  guint tokens;                 /* per sequence: a row's position is row % tokens */
} RopeJob;

/* rotates each head's halves by the position's angles (transformers'
 * rotate_half convention); positions are token indices */
static void
rope_range (gpointer data, gsize begin, gsize end, guint worker)
{
  RopeJob *j = data;
  guint hd = j->self->head_dim, half = hd / 2;
  float cosv[half], sinv[half];

  for (gsize t = begin; t < end; t++)
    {
      float pos = (float) (t % j->tokens);
      for (guint i = 0; i < half; i++)
        {
          float angle = pos * j->self->inv_freq[i];
          cosv[i] = cosf (angle);
          sinv[i] = sinf (angle);
        }
      for (guint h = 0; h < j->heads; h++)
        {
          float *v = j->x + (t * j->heads + h) * hd;
          for (guint i = 0; i < half; i++)
            {
              float a = v[i], b = v[i + half];
              v[i] = a * cosv[i] - b * sinv[i];
              v[i + half] = b * cosv[i] + a * sinv[i];
            }
        }
    }
}

static void
rope (QuarkExecutor *self, float *x, guint rows, guint tokens, guint heads)
{
  RopeJob job = { self, x, heads, tokens };
  _quark_parallel_run (self->pool, rows, rope_range, &job);
}

typedef struct {
  QuarkExecutor *self;
  const float *q, *k, *v;
  float *scores;                /* tokens² per thread */
  float *out;
  guint tokens;
} AttentionJob;

/* Scaled dot-product attention with a causal mask for items [begin, end):
 * item = sequence · heads + head */
static void
attention_range (gpointer data, gsize begin, gsize end, guint worker)
{
  AttentionJob *j = data;
  QuarkExecutor *self = j->self;
  guint hd = self->head_dim, qdim = self->n_heads * hd, kvdim = self->n_kv_heads * hd, T = j->tokens;
  guint group = self->n_heads / self->n_kv_heads;
  float scale = 1.0f / sqrtf ((float) hd);
  float *scores = j->scores + (gsize) worker * T * T;

  for (gsize item = begin; item < end; item++)
    {
      gsize seq = item / self->n_heads, h = item % self->n_heads, g = h / group;
      const float *q = j->q + seq * T * qdim, *k = j->k + seq * T * kvdim, *v = j->v + seq * T * kvdim;
      float *out = j->out + seq * T * qdim;

      _quark_blas ()->sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) T, (int) T, (int) hd, scale, q + h * hd,
                             (int) qdim, k + g * hd, (int) kvdim, 0.0f, scores, (int) T);
      for (guint i = 0; i < T; i++)
        {
          float *row = scores + (gsize) i * T, max = -INFINITY, sum = 0.0f;
          guint first = self->sliding_window && i + 1 > self->sliding_window ? i + 1 - self->sliding_window : 0;
          for (guint c = first; c <= i; c++)
            max = MAX (max, row[c]);
          for (guint c = 0; c < T; c++)
            {
              row[c] = c >= first && c <= i ? expf (row[c] - max) : 0.0f;
              sum += row[c];
            }
          for (guint c = first; c <= i; c++)
            row[c] /= sum;
        }
      _quark_blas ()->sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) T, (int) hd, (int) T, 1.0f, scores,
                             (int) T, v + g * hd, (int) kvdim, 0.0f, out + h * hd, (int) qdim);
    }
}

typedef struct {
  float *a;
  const float *b;
} PairJob;

static void
add_range (gpointer data, gsize begin, gsize end, guint worker)
{
  PairJob *j = data;
  for (gsize i = begin; i < end; i++)
    j->a[i] += j->b[i];
}

/* gate = silu(gate) · up */
static void
swiglu_range (gpointer data, gsize begin, gsize end, guint worker)
{
  PairJob *j = data;
  for (gsize i = begin; i < end; i++)
    {
      float g = j->a[i];
      j->a[i] = g / (1.0f + expf (-g)) * j->b[i];
    }
}

static void
elementwise (QuarkExecutor *self, QuarkRangeFunc func, float *a, const float *b, gsize n)
{
  PairJob job = { a, b };
  _quark_parallel_run (self->pool, n, func, &job);
}

/* Sees the input (or output, by @role) @x of the linear layers @layers
 * (NULL-terminated), which share it */
typedef void (*ObserveFunc) (const char * const *layers, QuarkRole role, const float *x, guint tokens, guint dim,
                             gpointer data);

/* Passes an input shared by up to three linear layers of a decoder layer
 * to @observe, when there is one */
static void
observe_input_of (ObserveFunc observe, gpointer data, const char *prefix, const char *a, const char *b,
                  const char *c, const float *x, guint tokens, guint dim)
{
  const char *suffixes[] = { a, b, c };
  char *names[4] = { NULL };

  if (observe == NULL)
    return;
  for (guint i = 0; i < 3 && suffixes[i]; i++)
    names[i] = g_strdup_printf ("%s.%s", prefix, suffixes[i]);
  observe ((const char * const *) names, QUARK_ROLE_INPUT, x, tokens, dim, data);
  for (guint i = 0; i < 3; i++)
    g_free (names[i]);
}

/* The input (or, for layer_output(), the output) of a linear layer: @x
 * itself, or @x quantized and dequantized again into @buffer as the
 * checkpoint's spec for it says */
static const float *
layer_input (QuarkExecutor *self, InputQuant *a, const float *x, guint rows, guint dim, float *buffer, GError **error)
{
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(QuarkTensor) in = NULL, out = NULL;
  gint64 shape[2] = { rows, dim };

  if (a == NULL || !self->quantize_inputs)
    return x;
  bytes = g_bytes_new_static (x, (gsize) rows * dim * sizeof (float));
  if ((in = quark_tensor_new (a->layer, QUARK_DTYPE_F32, shape, 2, bytes, error)) == NULL ||
      (out = a->format
             ? quark_checkpoint_format_fake_quantize_activation (a->format, a->spec, in, a->scale, a->zero_point,
                                                                 error)
             : quark_tensor_spec_get_is_dynamic (a->spec)
             ? quark_model_quantizer_fake_quantize_activation (self->quantizer, in, a->spec, NULL, NULL, error)
             : quark_tensor_spec_fake_quantize (a->spec, in, a->scale, a->zero_point, error)) == NULL)
    {
      g_prefix_error (error, "%s: quantizing the %s: ", a->layer, a->role == QUARK_ROLE_OUTPUT ? "output" : "input");
      return NULL;
    }
  memcpy (buffer, quark_tensor_peek_data (out, NULL), (gsize) rows * dim * sizeof (float));
  return buffer;
}

/* The output @y [rows, dim] of linear layer @j of @L: seen by @observe,
 * then quantized and dequantized again in place as the checkpoint says */
static gboolean
layer_output (QuarkExecutor *self, Layer *L, guint j, float *y, guint rows, guint dim, ObserveFunc observe,
              gpointer observe_data, float *buffer, GError **error)
{
  const float *q;

  if (observe)
    {
      g_autofree char *name = g_strdup_printf ("%s.%s", L->prefix, linear_names[j]);
      observe ((const char * const[]) { name, NULL }, QUARK_ROLE_OUTPUT, y, rows, dim, observe_data);
    }
  if (L->out_act[j] == NULL || !self->quantize_inputs)
    return TRUE;
  if ((q = layer_input (self, L->out_act[j], y, rows, dim, buffer, error)) == NULL)
    return FALSE;
  memcpy (y, q, (gsize) rows * dim * sizeof (float));
  return TRUE;
}

/* The token embeddings of @ids into @x [rows, hidden] */
static gboolean
embed (QuarkExecutor *self, const guint32 *ids, guint rows, guint tokens, float *x, GError **error)
{
  for (guint t = 0; t < rows; t++)
    {
      if (ids[t] >= self->vocab)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                       "token id %u (at %u) is outside the vocabulary of %u", ids[t], t % tokens, self->vocab);
          return FALSE;
        }
      widen (self, self->embed, (gsize) ids[t] * self->hidden, self->hidden, x + (gsize) t * self->hidden);
    }
  return TRUE;
}

/* Decoder layers [first, last) on the residual stream @x [n_seqs · tokens,
 * hidden] of @n_seqs sequences of @tokens each, in place; @observe sees
 * every linear layer's input */
static gboolean
run_layers (QuarkExecutor *self, float *x, guint n_seqs, guint tokens, guint first, guint last, ObserveFunc observe,
            gpointer observe_data, GCancellable *cancellable, GError **error)
{
  guint rows = n_seqs * tokens;
  guint H = self->hidden, F = self->intermediate, hd = self->head_dim;
  guint qdim = self->n_heads * hd, kvdim = self->n_kv_heads * hd, threads = _quark_parallel_get_threads (self->pool);
  g_autofree float *h = g_try_new (float, (gsize) rows * H);
  g_autofree float *q = g_try_new (float, (gsize) rows * qdim);
  g_autofree float *k = g_try_new (float, (gsize) rows * kvdim);
  g_autofree float *v = g_try_new (float, (gsize) rows * kvdim);
  g_autofree float *att = g_try_new (float, (gsize) rows * qdim);
  g_autofree float *scores = g_try_new (float, (gsize) threads * tokens * tokens);
  g_autofree float *gate = g_try_new (float, (gsize) rows * F);
  g_autofree float *up = g_try_new (float, (gsize) rows * F);
  g_autofree float *norm = g_new (float, H);
  g_autofree float *bias = g_new (float, qdim + 2 * kvdim);
  g_autofree float *inbuf = self->inputs->len > 0 && self->quantize_inputs
                            ? g_try_new (float, (gsize) rows * MAX (MAX (H, qdim), F)) : NULL;
  const float *in;

  if (!h || !q || !k || !v || !att || !scores || !gate || !up || (self->inputs->len > 0 && self->quantize_inputs && !inbuf))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED, "out of memory for the activations of %u tokens", rows);
      return FALSE;
    }
  for (guint l = first; l < last; l++)
    {
      Layer *L = &self->layers[l];
      float *wq = self->weights, *wk = wq + (gsize) qdim * H, *wv = wk + (gsize) kvdim * H, *wo = wv + (gsize) kvdim * H;
      float *wg = self->weights, *wu = wg + (gsize) F * H, *wd = wu + (gsize) F * H;
      AttentionJob attention = { self, q, k, v, scores, att, tokens };

      if (g_cancellable_set_error_if_cancelled (cancellable, error) || !load_layer (self, l, error))
        return FALSE;
      /* attention */
      rms_norm (self, x, widen_all (self, L->input_norm, norm), rows, H, h);
      widen_all (self, L->q, wq);
      widen_all (self, L->k, wk);
      widen_all (self, L->v, wv);
      widen_all (self, L->o, wo);
      if (L->q_bias)
        widen_all (self, L->q_bias, bias);
      if (L->k_bias)
        widen_all (self, L->k_bias, bias + qdim);
      if (L->v_bias)
        widen_all (self, L->v_bias, bias + qdim + kvdim);
      observe_input_of (observe, observe_data, L->prefix, "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                        h, rows, H);
      if ((in = layer_input (self, L->act[LIN_Q], h, rows, H, inbuf, error)) == NULL)
        return FALSE;
      linear (self, in, rows, H, wq, qdim, L->q_bias ? bias : NULL, q);
      if ((in = layer_input (self, L->act[LIN_K], h, rows, H, inbuf, error)) == NULL)
        return FALSE;
      linear (self, in, rows, H, wk, kvdim, L->k_bias ? bias + qdim : NULL, k);
      if ((in = layer_input (self, L->act[LIN_V], h, rows, H, inbuf, error)) == NULL)
        return FALSE;
      linear (self, in, rows, H, wv, kvdim, L->v_bias ? bias + qdim + kvdim : NULL, v);
      if (!layer_output (self, L, LIN_Q, q, rows, qdim, observe, observe_data, inbuf, error) ||
          (!self->keys_after_rope &&
           !layer_output (self, L, LIN_K, k, rows, kvdim, observe, observe_data, inbuf, error)) ||
          !layer_output (self, L, LIN_V, v, rows, kvdim, observe, observe_data, inbuf, error))
        return FALSE;
      rope (self, q, rows, tokens, self->n_heads);
      rope (self, k, rows, tokens, self->n_kv_heads);
      /* (the keys as the cache holds them) */
      if (self->keys_after_rope &&
          !layer_output (self, L, LIN_K, k, rows, kvdim, observe, observe_data, inbuf, error))
        return FALSE;
      _quark_parallel_run (self->pool, (gsize) n_seqs * self->n_heads, attention_range, &attention);
      observe_input_of (observe, observe_data, L->prefix, "self_attn.o_proj", NULL, NULL, att, rows, qdim);
      if ((in = layer_input (self, L->act[LIN_O], att, rows, qdim, inbuf, error)) == NULL)
        return FALSE;
      linear (self, in, rows, qdim, wo, H, NULL, h);
      if (!layer_output (self, L, LIN_O, h, rows, H, observe, observe_data, inbuf, error))
        return FALSE;
      elementwise (self, add_range, x, h, (gsize) rows * H);

      /* SwiGLU */
      rms_norm (self, x, widen_all (self, L->post_norm, norm), rows, H, h);
      widen_all (self, L->gate, wg);
      widen_all (self, L->up, wu);
      widen_all (self, L->down, wd);
      observe_input_of (observe, observe_data, L->prefix, "mlp.gate_proj", "mlp.up_proj", NULL, h, rows, H);
      if ((in = layer_input (self, L->act[LIN_GATE], h, rows, H, inbuf, error)) == NULL)
        return FALSE;
      linear (self, in, rows, H, wg, F, NULL, gate);
      if ((in = layer_input (self, L->act[LIN_UP], h, rows, H, inbuf, error)) == NULL)
        return FALSE;
      linear (self, in, rows, H, wu, F, NULL, up);
      if (!layer_output (self, L, LIN_GATE, gate, rows, F, observe, observe_data, inbuf, error) ||
          !layer_output (self, L, LIN_UP, up, rows, F, observe, observe_data, inbuf, error))
        return FALSE;
      elementwise (self, swiglu_range, gate, up, (gsize) rows * F);
      observe_input_of (observe, observe_data, L->prefix, "mlp.down_proj", NULL, NULL, gate, rows, F);
      if ((in = layer_input (self, L->act[LIN_DOWN], gate, rows, F, inbuf, error)) == NULL)
        return FALSE;
      linear (self, in, rows, F, wd, H, NULL, h);
      if (!layer_output (self, L, LIN_DOWN, h, rows, H, observe, observe_data, inbuf, error))
        return FALSE;
      elementwise (self, add_range, x, h, (gsize) rows * H);
    }
  return TRUE;
}

/* The final norm of the residual stream @x, the head's input (quantized
 * as the checkpoint says, once for every block of the head's rows) */
static float *
final_norm (QuarkExecutor *self, const float *x, guint rows, ObserveFunc observe, gpointer observe_data,
            GError **error)
{
  guint H = self->hidden;
  g_autofree float *h = g_try_new (float, (gsize) rows * H);
  g_autofree float *norm = g_new (float, H);
  g_autofree float *inbuf = NULL;
  const float *in;

  if (h == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED, "out of memory for the activations of %u tokens", rows);
      return NULL;
    }
  rms_norm (self, x, widen_all (self, self->norm, norm), rows, H, h);
  if (observe)
    observe ((const char * const[]) { "lm_head", NULL }, QUARK_ROLE_INPUT, h, rows, H, observe_data);
  if (self->head_act && self->quantize_inputs)
    {
      inbuf = g_new (float, (gsize) rows * H);
      if ((in = layer_input (self, self->head_act, h, rows, H, inbuf, error)) == NULL)
        return NULL;
      memcpy (h, in, (gsize) rows * H * sizeof (float));
    }
  return g_steal_pointer (&h);
}

/* The hidden states after the final norm, [n_seqs · tokens, hidden], of
 * @n_seqs sequences of @tokens ids each, run side by side (each weight is
 * widened once for all of them, and the matrix products are taller);
 * @observe sees every linear layer's input */
static float *
hidden_states (QuarkExecutor *self, const guint32 *ids, guint n_seqs, guint tokens, ObserveFunc observe,
               gpointer observe_data, GCancellable *cancellable, GError **error)
{
  guint rows = n_seqs * tokens;
  g_autofree float *x = g_try_new (float, (gsize) rows * self->hidden);

  if (x == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED, "out of memory for the activations of %u tokens", rows);
      return NULL;
    }
  if (!embed (self, ids, rows, tokens, x, error) ||
      !run_layers (self, x, n_seqs, tokens, 0, self->n_layers, observe, observe_data, cancellable, error))
    return NULL;
  return final_norm (self, x, rows, observe, observe_data, error);
}

/* logits[tokens, vocab] of final hidden states, the head widened a block
 * of rows at a time */
static void
head_logits (QuarkExecutor *self, const float *h, guint tokens, float *logits)
{
  for (guint r = 0; r < self->vocab; r += HEAD_ROWS)
    {
      guint rows = MIN (HEAD_ROWS, self->vocab - r);
      /* the block's logits land at column r of rows that are vocab long */
      LinearJob job = { h, self->weights, NULL, logits + r, tokens, self->hidden, rows, self->vocab };

      widen (self, self->head, (gsize) r * self->hidden, (gsize) rows * self->hidden, self->weights);
      _quark_parallel_run (self->pool, (rows + FEATURE_BLOCK - 1) / FEATURE_BLOCK, linear_range, &job);
    }
}

typedef struct {
  QuarkExecutor *self;
  guint64 done, total;
} ProgressData;

static gboolean
emit_progress_idle (gpointer user_data)
{
  ProgressData *data = user_data;
  g_signal_emit (data->self, signals[SIGNAL_PROGRESS], 0, data->done, data->total);
  return G_SOURCE_REMOVE;
}

static void
progress_data_free (gpointer user_data)
{
  ProgressData *data = user_data;
  g_object_unref (data->self);
  g_free (data);
}

/* ::progress, in the caller's thread; during an async run, in the main
 * context of the caller of the _async function */
static void
emit_progress (QuarkExecutor *self, guint64 done, guint64 total)
{
  ProgressData *data;
  GSource *source;

  if (self->progress_context == NULL)
    {
      g_signal_emit (self, signals[SIGNAL_PROGRESS], 0, done, total);
      return;
    }
  data = g_new0 (ProgressData, 1);
  data->self = g_object_ref (self);
  data->done = done;
  data->total = total;
  source = g_idle_source_new ();
  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, emit_progress_idle, data, progress_data_free);
  g_source_set_static_name (source, "[quark] executor progress");
  g_source_attach (source, self->progress_context);
  g_source_unref (source);
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
  g_autoptr(GBytes) bytes = NULL;
  float *logits;
  gint64 shape[2];

  g_return_val_if_fail (QUARK_IS_EXECUTOR (self), NULL);
  g_return_val_if_fail (ids != NULL || n_ids == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  QUARK_BLAS_SINGLE_THREADED;

  if (!check_window (self, n_ids, error) ||
      (h = hidden_states (self, ids, 1, (guint) n_ids, NULL, NULL, cancellable, error)) == NULL)
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
  bytes = g_bytes_new_take (logits, n_ids * self->vocab * sizeof (float));
  return quark_tensor_new ("logits", QUARK_DTYPE_F32, shape, 2, bytes, error);
}

#define MAX_BATCH 8
#define BATCH_BYTES (64 << 20)

/* How many windows evaluate() runs side by side: their activations within
 * 64 MiB or one layer's widened weights, whichever is more, and at most 8 */
static guint
windows_per_batch (QuarkExecutor *self, guint tokens)
{
  gsize per_window = (gsize) tokens * (3 * self->hidden + 2 * self->n_heads * self->head_dim +
                                       2 * self->n_kv_heads * self->head_dim + 2 * self->intermediate) * sizeof (float);
  gsize budget = MAX ((gsize) BATCH_BYTES, self->weights_size * sizeof (float));

  return (guint) CLAMP (budget / per_window, 1, MAX_BATCH);
}

/* Scores predictions: each thread its tokens, its own sums */
typedef struct {
  const float *logits, *ref_logits;   /* [n, V] */
  const guint32 *targets;             /* [n] */
  guint V;
  double *logp;                       /* 2 · V per thread */
  double (*sums)[3];                  /* per thread: nll, reference nll, KL */
} ScoreJob;

/* log-softmax of one row into @logp, in float64 */
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

static void
score_range (gpointer data, gsize begin, gsize end, guint worker)
{
  ScoreJob *j = data;
  double *logp = j->logp + (gsize) worker * 2 * j->V, *ref_logp = logp + j->V;
  double *sums = j->sums[worker];

  for (gsize i = begin; i < end; i++)
    {
      log_softmax (j->logits + i * j->V, j->V, logp);
      sums[0] -= logp[j->targets[i]];
      if (j->ref_logits)
        {
          log_softmax (j->ref_logits + i * j->V, j->V, ref_logp);
          sums[1] -= ref_logp[j->targets[i]];
          for (guint c = 0; c < j->V; c++)
            sums[2] += exp (ref_logp[c]) * (ref_logp[c] - logp[c]);
        }
    }
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
  g_autofree double *logp = NULL;
  g_autofree double (*sums)[3] = NULL;
  g_autofree guint32 *batch_ids = NULL;
  ScoreJob score = { 0 };
  guint threads, batch_max;

  g_return_val_if_fail (QUARK_IS_EXECUTOR (self), FALSE);
  g_return_val_if_fail (reference == NULL || QUARK_IS_EXECUTOR (reference), FALSE);
  g_return_val_if_fail (ids != NULL || n_ids == 0, FALSE);
  g_return_val_if_fail (perplexity != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  QUARK_BLAS_SINGLE_THREADED;

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
  threads = quark_executor_get_threads (self);
  logits = g_new (float, (gsize) HEAD_TOKENS * V);
  if (reference)
    ref_logits = g_new (float, (gsize) HEAD_TOKENS * V);
  score.logp = logp = g_new (double, (gsize) 2 * V * threads);
  score.sums = sums = g_malloc0 (sizeof (double[3]) * threads);
  score.V = V;

  batch_max = windows_per_batch (self, context);
  batch_ids = g_new (guint32, (gsize) batch_max * context);
  for (gsize start = 0; start < n_ids;)
    {
      guint tokens = (guint) MIN ((gsize) context, n_ids - start), n_batch = 0;
      gsize starts[MAX_BATCH];
      g_autofree float *h = NULL, *ref_h = NULL;

      /* windows of the same length side by side */
      do
        {
          starts[n_batch] = start;
          memcpy (batch_ids + (gsize) n_batch * tokens, ids + start, tokens * sizeof (guint32));
          n_batch++;
          start = start + tokens >= n_ids ? n_ids : start + stride;
        }
      while (n_batch < batch_max && start < n_ids && n_ids - start >= tokens);

      if ((h = hidden_states (self, batch_ids, n_batch, tokens, NULL, NULL, cancellable, error)) == NULL ||
          (reference && (ref_h = hidden_states (reference, batch_ids, n_batch, tokens, NULL, NULL, cancellable,
                                                error)) == NULL))
        return FALSE;
      for (guint w = 0; w < n_batch; w++)
        {
          const float *hw = h + (gsize) w * tokens * self->hidden;
          const float *ref_hw = reference ? ref_h + (gsize) w * tokens * reference->hidden : NULL;
          guint first = scored_to > starts[w] ? (guint) (scored_to - starts[w]) : 1;   /* first position whose token is scored */

          /* predictions at positions first − 1 … tokens − 2 */
          for (guint p0 = first - 1; p0 + 1 < tokens; p0 += HEAD_TOKENS)
            {
              guint n = MIN (HEAD_TOKENS, tokens - 1 - p0);
              head_logits (self, hw + (gsize) p0 * self->hidden, n, logits);
              if (reference)
                head_logits (reference, ref_hw + (gsize) p0 * reference->hidden, n, ref_logits);
              score.logits = logits;
              score.ref_logits = ref_logits;
              score.targets = ids + starts[w] + p0 + 1;
              _quark_parallel_run (self->pool, n, score_range, &score);
              scored += n;
            }
          scored_to = starts[w] + tokens;
        }
      emit_progress (self, (guint64) scored_to, (guint64) n_ids);
    }
  for (guint t = 0; t < threads; t++)
    {
      nll += sums[t][0];
      ref_nll += sums[t][1];
      kl += sums[t][2];
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
  GHashTable *outputs;          /* the layers whose outputs the session's config quantizes statically */
  GError *error;
  QuarkExecutor *executor;      /* whose keys_after_rope the session's config sets while it runs */
  gboolean saved_keys_after_rope;
  guint only;                   /* 0: every layer observed; else only the linear layers of these bits (1 << LIN_*) */
} CalibrateData;

/* What a session observes: every linear layer's input, and the outputs
 * its config quantizes statically (the KV cache: k_proj, v_proj); a session
 * without a config, inputs only */
static gboolean
calibrate_data_init (QuarkExecutor *self, QuarkCalibration *calibration, CalibrateData *data, GError **error)
{
  g_autoptr(QuarkQuantizationConfig) config = NULL;

  data->calibration = calibration;
  data->outputs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  data->error = NULL;
  data->executor = self;
  data->saved_keys_after_rope = self->keys_after_rope;
  g_object_get (calibration, "config", &config, NULL);
  /* (a checkpoint whose engines quantize the keys after RoPE keeps them
   * there) */
  self->keys_after_rope = self->keys_after_rope || (config != NULL && config_keys_after_rope (config));
  if (config == NULL)
    return TRUE;
  for (guint i = 0; i < self->n_layers; i++)
    for (guint j = 0; j < N_LINEAR; j++)
      {
        char *layer = g_strdup_printf ("%s.%s", self->layers[i].prefix, linear_names[j]);
        g_autoptr(QuarkTensorSpec) spec = quark_quantization_config_get_tensor_spec (config, layer, "Linear",
                                                                                     QUARK_ROLE_OUTPUT);
        if (spec && !quark_tensor_spec_get_is_dynamic (spec))
          g_hash_table_add (data->outputs, layer);
        else
          g_free (layer);
      }
  return TRUE;
}

static void
calibrate_data_clear (CalibrateData *data)
{
  g_clear_pointer (&data->outputs, g_hash_table_unref);
  if (data->executor)
    data->executor->keys_after_rope = data->saved_keys_after_rope;
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (CalibrateData, calibrate_data_clear)

/* Whether a step of sequential calibration that observes the linear
 * layers @only (bits 1 << LIN_*; 0: all layers) observes @layer */
static gboolean
observed_in_stage (guint only, const char *layer)
{
  if (only == 0)
    return TRUE;
  for (guint j = 0; j < N_LINEAR; j++)
    if ((only & (1u << j)) && g_str_has_suffix (layer, linear_names[j]))
      return TRUE;
  return FALSE;
}

static void
observe_input (const char * const *layers, QuarkRole role, const float *x, guint tokens, guint dim,
               gpointer user_data)
{
  CalibrateData *data = user_data;
  gint64 shape[2] = { tokens, dim };

  if (role == QUARK_ROLE_OUTPUT && !g_hash_table_contains (data->outputs, layers[0]))
    return;
  if (!observed_in_stage (data->only, layers[0]))
    return;
  if (data->error == NULL)
    quark_calibration_observe_floats_shared (data->calibration, layers, role, x, (gsize) tokens * dim,
                                             shape, 2, &data->error);
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
 * one batch per layer and window, and the outputs that the session's config
 * quantizes statically (the KV cache: `k_proj` and `v_proj`) as
 * %QUARK_ROLE_OUTPUT batches: the keys before RoPE, or after it when the
 * config says `kv_cache_post_rope`. [signal@Quark.Executor::progress]
 * reports the tokens run so far.
 *
 * Returns: %TRUE on success, %FALSE with @error set
 */
gboolean
quark_executor_calibrate (QuarkExecutor *self, QuarkCalibration *calibration, const guint32 *ids, gsize n_ids,
                          guint context, GCancellable *cancellable, GError **error)
{
  g_auto(CalibrateData) data = { 0 };

  g_return_val_if_fail (QUARK_IS_EXECUTOR (self), FALSE);
  g_return_val_if_fail (QUARK_IS_CALIBRATION (calibration), FALSE);
  g_return_val_if_fail (ids != NULL || n_ids == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  QUARK_BLAS_SINGLE_THREADED;
  if (!calibrate_data_init (self, calibration, &data, error))
    return FALSE;

  if (!check_window (self, context, error))
    return FALSE;
  for (gsize start = 0; start < n_ids; start += context)
    {
      guint tokens = (guint) MIN ((gsize) context, n_ids - start);
      g_autofree float *h = hidden_states (self, ids + start, 1, tokens, observe_input, &data, cancellable, error);

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
      emit_progress (self, (guint64) (start + tokens), (guint64) n_ids);
    }
  return TRUE;
}

/* ------------------------------------------------------------------ */
/* Asynchronous runs                                                   */

typedef struct {
  QuarkExecutor *reference;
  QuarkCalibration *calibration;
  guint32 *ids;
  gsize n_ids;
  guint context, stride;
} RunData;

typedef struct {
  double perplexity, reference_perplexity, kl_divergence;
  guint64 n_scored;
} EvalResult;

static void
run_data_free (gpointer user_data)
{
  RunData *data = user_data;

  g_clear_object (&data->reference);
  g_clear_object (&data->calibration);
  g_free (data->ids);
  g_free (data);
}

static void
run_thread (GTask *task, gpointer source_object, gpointer task_data, GCancellable *cancellable)
{
  QuarkExecutor *self = source_object;
  RunData *data = task_data;
  GError *error = NULL;

  self->progress_context = g_task_get_context (task);
  if (data->calibration)
    {
      gboolean ok = quark_executor_calibrate (self, data->calibration, data->ids, data->n_ids, data->context,
                                              cancellable, &error);
      self->progress_context = NULL;
      if (ok)
        g_task_return_boolean (task, TRUE);
      else
        g_task_return_error (task, error);
      return;
    }
  {
    EvalResult *result = g_new0 (EvalResult, 1);
    gboolean ok = quark_executor_evaluate (self, data->reference, data->ids, data->n_ids, data->context, data->stride,
                                           cancellable, &result->perplexity, &result->reference_perplexity,
                                           &result->kl_divergence, &result->n_scored, &error);
    self->progress_context = NULL;
    if (ok)
      g_task_return_pointer (task, result, g_free);
    else
      {
        g_free (result);
        g_task_return_error (task, error);
      }
  }
}

static void
run_async (QuarkExecutor *self, RunData *data, gpointer source_tag, GCancellable *cancellable,
           GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, source_tag);
  g_task_set_task_data (task, data, run_data_free);
  g_task_run_in_thread (task, run_thread);
}

/**
 * quark_executor_evaluate_async:
 * @self: a #QuarkExecutor
 * @reference: (nullable): a second executor to compare with
 * @ids: (array length=n_ids): the token ids of the text (copied)
 * @n_ids: the number of ids
 * @context: the window length
 * @stride: how far each window starts after the previous one (0: @context)
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the evaluation is done
 * @user_data: data for @callback
 *
 * Runs [method@Quark.Executor.evaluate] in a worker thread;
 * [signal@Quark.Executor::progress] is emitted in the thread-default main
 * context of the caller. Neither executor may be used otherwise until
 * @callback runs.
 */
void
quark_executor_evaluate_async (QuarkExecutor *self, QuarkExecutor *reference, const guint32 *ids, gsize n_ids,
                               guint context, guint stride, GCancellable *cancellable, GAsyncReadyCallback callback,
                               gpointer user_data)
{
  RunData *data;

  g_return_if_fail (QUARK_IS_EXECUTOR (self));
  g_return_if_fail (reference == NULL || QUARK_IS_EXECUTOR (reference));
  g_return_if_fail (ids != NULL || n_ids == 0);

  data = g_new0 (RunData, 1);
  data->reference = reference ? g_object_ref (reference) : NULL;
  data->ids = g_memdup2 (ids, n_ids * sizeof (guint32));
  data->n_ids = n_ids;
  data->context = context;
  data->stride = stride;
  run_async (self, data, quark_executor_evaluate_async, cancellable, callback, user_data);
}

/**
 * quark_executor_evaluate_finish:
 * @self: a #QuarkExecutor
 * @result: the #GAsyncResult given to the callback
 * @perplexity: (out): the perplexity of @self
 * @reference_perplexity: (out) (optional): the reference's, or 0
 * @kl_divergence: (out) (optional): the mean KL(reference ‖ self), or 0
 * @n_scored: (out) (optional): the number of predictions scored
 * @error: return location for a #GError
 *
 * Finishes quark_executor_evaluate_async().
 *
 * Returns: %TRUE on success, %FALSE with @error set
 */
gboolean
quark_executor_evaluate_finish (QuarkExecutor *self, GAsyncResult *result, double *perplexity,
                                double *reference_perplexity, double *kl_divergence, guint64 *n_scored,
                                GError **error)
{
  g_autofree EvalResult *r = NULL;

  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == quark_executor_evaluate_async, FALSE);
  g_return_val_if_fail (perplexity != NULL, FALSE);

  if ((r = g_task_propagate_pointer (G_TASK (result), error)) == NULL)
    return FALSE;
  *perplexity = r->perplexity;
  if (reference_perplexity)
    *reference_perplexity = r->reference_perplexity;
  if (kl_divergence)
    *kl_divergence = r->kl_divergence;
  if (n_scored)
    *n_scored = r->n_scored;
  return TRUE;
}

/**
 * quark_executor_calibrate_async:
 * @self: a #QuarkExecutor
 * @calibration: the session to feed
 * @ids: (array length=n_ids): the token ids (copied)
 * @n_ids: the number of ids
 * @context: the window length
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the run is done
 * @user_data: data for @callback
 *
 * Runs [method@Quark.Executor.calibrate] in a worker thread;
 * [signal@Quark.Executor::progress] is emitted in the thread-default main
 * context of the caller.
 */
void
quark_executor_calibrate_async (QuarkExecutor *self, QuarkCalibration *calibration, const guint32 *ids, gsize n_ids,
                                guint context, GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data)
{
  RunData *data;

  g_return_if_fail (QUARK_IS_EXECUTOR (self));
  g_return_if_fail (QUARK_IS_CALIBRATION (calibration));
  g_return_if_fail (ids != NULL || n_ids == 0);

  data = g_new0 (RunData, 1);
  data->calibration = g_object_ref (calibration);
  data->ids = g_memdup2 (ids, n_ids * sizeof (guint32));
  data->n_ids = n_ids;
  data->context = context;
  run_async (self, data, quark_executor_calibrate_async, cancellable, callback, user_data);
}

/**
 * quark_executor_calibrate_finish:
 * @self: a #QuarkExecutor
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes quark_executor_calibrate_async().
 *
 * Returns: %TRUE on success, %FALSE with @error set
 */
gboolean
quark_executor_calibrate_finish (QuarkExecutor *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == quark_executor_calibrate_async, FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* ------------------------------------------------------------------ */
/* Sequential calibration                                              */

/* The tensors of decoder layer @L that a quantizer may change: the linear
 * layers' weights, and the norms and biases that algorithms such as AWQ
 * fold scales into */
static QuarkTensor **
layer_tensor (Layer *L, guint j)
{
  QuarkTensor **fields[] = { &L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down,
                             &L->input_norm, &L->post_norm, &L->q_bias, &L->k_bias, &L->v_bias };
  return j < G_N_ELEMENTS (fields) ? fields[j] : NULL;
}

/* The @n weights *@fields[i] given to @quantizer (with the model's config
 * for the topology algorithms read) and read back: each is replaced by
 * what the quantizer gives back in float, which the executor keeps alive
 * in its overrides. @what names the part in errors. */
static gboolean
quantize_fields (QuarkExecutor *self, const char *what, QuarkTensor **fields[], guint n,
                 QuarkModelQuantizer *quantizer, QuarkCalibration *calibration, GCancellable *cancellable,
                 GError **error)
{
  g_autoptr(QuarkModel) part = quark_model_new ();
  g_autoptr(QuarkModel) quantized = NULL, restored = NULL;

  quark_model_set_metadata (part, quark_model_get_metadata (self->model));
  for (guint i = 0; i < n; i++)
    if (!quark_model_add_tensor (part, *fields[i], error))
      return FALSE;
  if ((quantized = quark_model_quantizer_quantize_model (quantizer, part, calibration, cancellable, error)) == NULL ||
      (restored = quark_model_quantizer_dequantize_model (quantizer, quantized, error)) == NULL)
    {
      g_prefix_error (error, "%s: ", what);
      return FALSE;
    }
  for (guint i = 0; i < n; i++)
    {
      QuarkTensor *t = quark_model_get_tensor (restored, quark_tensor_get_name (*fields[i]));
      QuarkDType dtype = t ? quark_tensor_get_dtype (t) : QUARK_DTYPE_F32;

      if (t == NULL || (dtype != QUARK_DTYPE_F32 && dtype != QUARK_DTYPE_F16 && dtype != QUARK_DTYPE_BF16) ||
          quark_tensor_get_n_elements (t) != quark_tensor_get_n_elements (*fields[i]))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED, "%s: the quantizer did not give it back in float",
                       quark_tensor_get_name (*fields[i]));
          return FALSE;
        }
      if (t == *fields[i])
        continue;
      g_ptr_array_add (self->overrides, g_object_ref (t));
      *fields[i] = t;
    }
  return TRUE;
}

/* Quantizes decoder layer @L's tensors in @mask (bits in layer_tensor()'s
 * order) with @quantizer and @calibration, as a whole model would be (so
 * whatever the backend does, algorithms included, from the statistics just
 * learned), reads them back to float, and makes the executor run those
 * weights (and the norms and biases the quantizer gave back changed) from
 * now on */
static gboolean
quantize_layer (QuarkExecutor *self, Layer *L, guint mask, QuarkModelQuantizer *quantizer,
                QuarkCalibration *calibration, GCancellable *cancellable, GError **error)
{
  QuarkTensor **fields[32], **field;
  guint n = 0;

  for (guint j = 0; (field = layer_tensor (L, j)) != NULL; j++)
    if (*field != NULL && (mask & (1u << j)))
      fields[n++] = field;
  return quantize_fields (self, L->prefix, fields, n, quantizer, calibration, cancellable, error);
}

/* The output head, after its input was observed: given to the quantizer
 * as the decoder layers' weights are, so that the executor runs what will
 * be written (quantized, or, left in float, refit by GPTQ's
 * correct_input_error). A head tied to the embedding is left alone. */
static gboolean
quantize_head (QuarkExecutor *self, QuarkModelQuantizer *quantizer, QuarkCalibration *calibration,
               GCancellable *cancellable, GError **error)
{
  QuarkTensor **fields[] = { &self->head };

  return self->head == self->embed ||
         quantize_fields (self, "lm_head", fields, 1, quantizer, calibration, cancellable, error);
}

/* Sequential calibration with cross moments: the float model's inputs of a
 * window's linear layers, kept by the first layer's name until the partly
 * quantized model's inputs of the same tokens come */
typedef struct {
  GHashTable *inputs;           /* first layer name -> QuarkTensor [tokens, dim] */
  CalibrateData *data;
} CrossData;

static void
keep_reference (const char * const *layers, QuarkRole role, const float *x, guint tokens, guint dim,
                gpointer user_data)
{
  CrossData *cross = user_data;
  gint64 shape[2] = { tokens, dim };
  g_autoptr(GBytes) bytes = NULL;
  QuarkTensor *t;

  if (role != QUARK_ROLE_INPUT)
    return;
  bytes = g_bytes_new (x, (gsize) tokens * dim * sizeof (float));
  if ((t = quark_tensor_new (layers[0], QUARK_DTYPE_F32, shape, 2, bytes, NULL)) != NULL)
    g_hash_table_replace (cross->inputs, g_strdup (layers[0]), t);
}

static void
observe_with_reference (const char * const *layers, QuarkRole role, const float *x, guint tokens, guint dim,
                        gpointer user_data)
{
  CrossData *cross = user_data;
  QuarkTensor *reference;
  gint64 shape[2] = { tokens, dim };
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(QuarkTensor) input = NULL;

  observe_input (layers, role, x, tokens, dim, cross->data);
  if (role != QUARK_ROLE_INPUT || cross->data->error ||
      !observed_in_stage (cross->data->only, layers[0]) ||
      (reference = g_hash_table_lookup (cross->inputs, layers[0])) == NULL)
    return;
  bytes = g_bytes_new_static (x, (gsize) tokens * dim * sizeof (float));
  input = quark_tensor_new (layers[0], QUARK_DTYPE_F32, shape, 2, bytes, &cross->data->error);
  if (input)
    quark_calibration_observe_cross (cross->data->calibration, layers, reference, input, &cross->data->error);
}

/* The fields of a decoder layer (bits in layer_tensor()'s order, whose
 * first N_LINEAR are the linear layers in LIN_* order) of its attention
 * block and of its MLP block; a step of sequential calibration observes
 * the linear layers it quantizes */
#define FIELD(j) (1u << (j))
#define ATTENTION_FIELDS (FIELD (LIN_Q) | FIELD (LIN_K) | FIELD (LIN_V) | FIELD (LIN_O) | FIELD (7) | FIELD (9) | \
                          FIELD (10) | FIELD (11))
#define MLP_FIELDS (FIELD (LIN_GATE) | FIELD (LIN_UP) | FIELD (LIN_DOWN) | FIELD (8))
#define LINEAR_FIELDS (FIELD (N_LINEAR) - 1)

/* Decoder layer @l with its float weights @float_layer (the executor's own
 * may be partly quantized by now) on @tokens of the float model's stream
 * @xf: in place, or on a copy in @copy (so that the stream stays where it
 * is) */
static gboolean
run_float_layer (QuarkExecutor *self, guint l, const Layer *float_layer, float *copy, float *xf, guint tokens,
                 ObserveFunc observe, gpointer observe_data, GCancellable *cancellable, GError **error)
{
  Layer current = self->layers[l];
  gboolean ok;

  if (copy)
    {
      memcpy (copy, xf, (gsize) tokens * self->hidden * sizeof (float));
      xf = copy;
    }
  self->layers[l] = *float_layer;
  ok = run_layers (self, xf, 1, tokens, l, l + 1, observe, observe_data, cancellable, error);
  self->layers[l] = current;
  return ok;
}

/**
 * quark_executor_calibrate_sequential:
 * @self: a #QuarkExecutor
 * @calibration: the session to feed
 * @quantizer: the quantizer whose config decides how each linear layer is
 *   quantized
 * @ids: (array length=n_ids): the token ids of the calibration text
 * @n_ids: the number of ids
 * @context: the window length (windows do not overlap)
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Feeds @calibration decoder layer by decoder layer, each layer's inputs
 * computed with the layers before it already quantized, as GPTQ's
 * sequential mode does: the residual
 * stream of every window is kept; for each decoder layer the inputs of its
 * linear layers are observed, its weights are quantized with @quantizer
 * from the statistics just learned (quark_model_quantizer_quantize_model()
 * on the layer's weights, norms and biases: GPTQ and AWQ too when the
 * config's `algo_config` has them) and read back to float, with whatever
 * the quantizer changed (AWQ's scales folded into the norms), and the
 * layer is run again with them to give the next layer's input.
 * [property@Quark.Executor:sequential-steps] can split a decoder layer into
 * two steps (attention, MLP) or four (q/k/v, o, gate/up, down), each
 * observed through the steps quantized before it.
 * `lm_head`'s input is observed last.
 *
 * Afterwards the executor runs the dequantized weights (an evaluation of
 * the quantized model can follow at once). The session should have
 * [property@Quark.Calibration:second-moments] set when the config uses
 * GPTQ. [signal@Quark.Executor::progress] reports decoder layers done out
 * of all. Memory: the residual stream of all @n_ids tokens (n_ids × hidden
 * floats) besides one window's activations.
 *
 * With [property@Quark.Calibration:cross-moments] set, the float model's
 * residual stream is kept too (twice the memory) and run beside: each
 * decoder layer sees both streams, and every linear layer's input from
 * the partly quantized model is given to the session with the float
 * model's input at the same tokens (quark_calibration_observe_cross()),
 * for GPTQ's input error correction; `lm_head`'s too (the final norm's
 * output of both streams).
 *
 * `lm_head` (unless tied to the embedding) then goes to @quantizer as well,
 * and the executor runs what it gives back: the quantized head, or, left
 * in float, the head as written (which GPTQ's `correct_input_error` refits
 * to the float model's outputs).
 *
 * Returns: %TRUE on success, %FALSE with @error set
 */
gboolean
quark_executor_calibrate_sequential (QuarkExecutor *self, QuarkCalibration *calibration, QuarkModelQuantizer *quantizer,
                                     const guint32 *ids, gsize n_ids, guint context, GCancellable *cancellable,
                                     GError **error)
{
  g_auto(CalibrateData) data = { 0 };
  g_autofree float *x = NULL, *tmp = NULL, *xf = NULL, *tmpf = NULL;
  g_autoptr(GHashTable) references = NULL;
  CrossData cross = { NULL, &data };
  gboolean split;
  gsize H;

  g_return_val_if_fail (QUARK_IS_EXECUTOR (self), FALSE);
  g_return_val_if_fail (QUARK_IS_CALIBRATION (calibration), FALSE);
  g_return_val_if_fail (QUARK_IS_MODEL_QUANTIZER (quantizer), FALSE);
  g_return_val_if_fail (ids != NULL || n_ids == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  QUARK_BLAS_SINGLE_THREADED;
  if (!calibrate_data_init (self, calibration, &data, error))
    return FALSE;
  H = self->hidden;
  if (self->checkpoint != NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "sequential calibration quantizes a float model; this executor runs a quantized checkpoint");
      return FALSE;
    }
  if (!check_window (self, context, error))
    return FALSE;
  /* every layer will be quantized: a config that cannot be written for
   * this model fails before the first layer's work */
  if (!quark_model_quantizer_check_model (quantizer, self->model, error))
    return FALSE;
  if (n_ids == 0)
    return TRUE;
  x = g_try_new (float, n_ids * H);
  tmp = g_try_new (float, (gsize) MIN ((gsize) context, n_ids) * H);
  if (x == NULL || tmp == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED, "out of memory for the residual stream of %" G_GSIZE_FORMAT
                   " tokens", n_ids);
      return FALSE;
    }
  if (!embed (self, ids, (guint) n_ids, (guint) n_ids, x, error))
    return FALSE;
  if (quark_calibration_get_cross_moments_enabled (calibration))
    {
      if ((xf = g_try_new (float, n_ids * H)) == NULL)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED, "out of memory for the float model's residual "
                       "stream of %" G_GSIZE_FORMAT " tokens", n_ids);
          return FALSE;
        }
      memcpy (xf, x, n_ids * H * sizeof (float));
      references = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
      cross.inputs = references;
    }
  split = self->sequential_steps != QUARK_SEQUENTIAL_STEPS_LAYER;
  if (split && xf && (tmpf = g_try_new (float, (gsize) MIN ((gsize) context, n_ids) * H)) == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED, "out of memory for a window's activations");
      return FALSE;
    }
  for (guint l = 0; l < self->n_layers; l++)
    {
      /* each QuarkSequentialSteps' steps: the fields each quantizes */
      static const guint steps[][4] = {
        [QUARK_SEQUENTIAL_STEPS_LAYER] = { ~0u },
        [QUARK_SEQUENTIAL_STEPS_BLOCKS] = { ATTENTION_FIELDS, MLP_FIELDS },
        [QUARK_SEQUENTIAL_STEPS_LINEARS] = { ATTENTION_FIELDS & ~FIELD (LIN_O), FIELD (LIN_O),
                                             MLP_FIELDS & ~FIELD (LIN_DOWN), FIELD (LIN_DOWN) },
      };
      const guint *stages = steps[self->sequential_steps];
      Layer float_layer = self->layers[l];

      for (guint st = 0; st < G_N_ELEMENTS (steps[0]) && stages[st] != 0; st++)
        {
          /* the inputs of the stage's linear layers, observed on a copy of
           * the stream with the stages before it quantized (and, for cross
           * moments, the float model's own stream through the float layer
           * first) */
          data.only = stages[st] & LINEAR_FIELDS;
          for (gsize start = 0; start < n_ids; start += context)
            {
              guint tokens = (guint) MIN ((gsize) context, n_ids - start);
              if (xf && !run_float_layer (self, l, &float_layer, split ? tmpf : NULL, xf + start * H, tokens,
                                          keep_reference, &cross, cancellable, error))
                return FALSE;
              memcpy (tmp, x + start * H, (gsize) tokens * H * sizeof (float));
              if (!run_layers (self, tmp, 1, tokens, l, l + 1, xf ? observe_with_reference : observe_input,
                               xf ? (gpointer) &cross : (gpointer) &data, cancellable, error))
                {
                  g_clear_error (&data.error);
                  return FALSE;
                }
              if (data.error)
                {
                  g_propagate_error (error, data.error);
                  return FALSE;
                }
            }
          if (!quantize_layer (self, &self->layers[l], stages[st], quantizer, calibration, cancellable, error))
            return FALSE;
        }
      data.only = 0;
      /* then the stream through the quantized layer (and the float
       * model's, when it was not already advanced) */
      for (gsize start = 0; start < n_ids; start += context)
        {
          guint tokens = (guint) MIN ((gsize) context, n_ids - start);
          if (xf && split &&
              !run_float_layer (self, l, &float_layer, NULL, xf + start * H, tokens, NULL, NULL, cancellable, error))
            return FALSE;
          if (!run_layers (self, x + start * H, 1, tokens, l, l + 1, NULL, NULL, cancellable, error))
            return FALSE;
        }
      emit_progress (self, l + 1, self->n_layers);
    }
  /* lm_head's input last (with cross moments: against the float model's,
   * which a head kept in float can be refit to) */
  for (gsize start = 0; start < n_ids; start += context)
    {
      guint tokens = (guint) MIN ((gsize) context, n_ids - start);
      g_autofree float *hf = NULL, *h = NULL;

      if (xf && (hf = final_norm (self, xf + start * H, tokens, keep_reference, &cross, error)) == NULL)
        return FALSE;
      h = final_norm (self, x + start * H, tokens, xf ? observe_with_reference : observe_input,
                      xf ? (gpointer) &cross : (gpointer) &data, error);
      if (h == NULL)
        return FALSE;
      if (data.error)
        {
          g_propagate_error (error, data.error);
          return FALSE;
        }
    }
  return quantize_head (self, quantizer, calibration, cancellable, error);
}
