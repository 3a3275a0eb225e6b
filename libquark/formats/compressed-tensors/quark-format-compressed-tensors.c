/* quark-format-compressed-tensors.c: the compressed-tensors layout
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "../quark-format-private.h"
#include "quark-json.h"
#include "kernels/quark-kernels.h"

#include <stdio.h>
#include <math.h>
#include <string.h>

/* The layout llm-compressor writes and vLLM's compressed_tensors path (and
 * transformers with the compressed-tensors package) reads. The facts it
 * follows, from the compressed-tensors package and vLLM's loader:
 *
 * - `quantization_config`: `quant_method` "compressed-tensors", `format`
 *   (one for the whole model), `quantization_status` "compressed",
 *   `config_groups` (`group_N`: `targets`, `weights`, `input_activations`,
 *   `output_activations`, each a QuantizationArgs object: `num_bits`,
 *   `type` int/float, `symmetric`, `group_size`, `strategy`
 *   tensor/channel/group/block/token, `block_structure`, `dynamic`,
 *   `actorder`, `observer`, `observer_kwargs`), `ignore` (layer names left
 *   in float), `kv_cache_scheme`.
 * - integer codes are signed, in [-2^(b-1), 2^(b-1) - 1], for symmetric and
 *   asymmetric schemes alike (zero points too); x = (q - z) * s.
 * - `pack-quantized` (weights without activation quantization, 2 to 8
 *   bits): LAYER.weight_packed int32 [O, ceil(I / (32 / b))], value j of a
 *   word at bits b*j, each stored as q + 2^(b-1); LAYER.weight_shape int64
 *   [2]; LAYER.weight_scale in the model's dtype (vLLM allocates it as
 *   params_dtype), [O, I / group] per group, [O, 1] per channel;
 *   LAYER.weight_zero_point for asymmetric group and channel schemes,
 *   packed the same way along the output dimension: int32
 *   [ceil(O / (32 / b)), groups].
 * - `int-quantized` (W8A8 int8): LAYER.weight int8 [O, I], weight_scale
 *   float32 [O, 1] per channel or [1] per tensor; LAYER.input_scale float32
 *   [1] and, for asymmetric inputs, LAYER.input_zero_point int8 [1].
 * - `mxfp4-pack-quantized` (OCP MXFP4, compressed-tensors' MXFP4 preset):
 *   LAYER.weight_packed uint8 [O, I/2], element 2k in the low nibble (E2M1
 *   codes), LAYER.weight_scale uint8 [O, I/32] (E8M0 exponents); args with
 *   scale_dtype "torch.uint8"; vLLM's CompressedTensorsW4A16Mxfp4.
 * - `nvfp4-pack-quantized` (NVFP4 weights): LAYER.weight_packed uint8
 *   [O, I/2] as for MXFP4, LAYER.weight_scale float8_e4m3fn [O, I/16],
 *   LAYER.weight_global_scale float32 [1] (one value for fused layers);
 *   vLLM's CompressedTensorsW4A16Fp4. With NVFP4 inputs (compressed-tensors'
 *   NVFP4 preset, vLLM's CompressedTensorsW4A4Fp4), input_activations say
 *   `dynamic: "local"` (group scales computed at run time) and
 *   LAYER.input_global_scale float32 [1] holds the static global scale
 *   448 · 6 / amax of the calibrated input (the same for layers that share
 *   an input).
 * - `float-quantized` (FP8 E4M3): LAYER.weight float8_e4m3fn [O, I],
 *   weight_scale float32 [O, 1], [1], or one per block
 *   [ceil(O / br), ceil(I / bc)]; input_scale float32 [1].
 * - the KV cache: static FP8 per-tensor outputs of the k_proj and v_proj
 *   layers, LAYER.output_scale float32 [1] (vLLM's get_cache_scale maps
 *   them to attn.k_scale and attn.v_scale), described by `kv_cache_scheme`
 *   (type float, 8 bits, strategy tensor, symmetric: what vLLM's
 *   CompressedTensorsKVCacheMethod accepts). vLLM applies k_scale to the
 *   keys after RoPE (kv_cache_after_rope): the backends refuse to write a
 *   keys' scale calibrated before it.
 */

struct _QuarkFormatCompressedTensors
{
  QuarkCheckpointFormat parent_instance;
  const char *format;        /* the model's `format`, set by prepare() */
  QuarkTensorSpec *kv_spec;  /* the KV-cache spec (k_proj/v_proj outputs), set by prepare() */
  char *kv_layer;            /* the layer it came from, for errors */
  GHashTable *g_idx_layers;  /* layers written with weight_g_idx (actorder "group") */
  GMutex lock;               /* for g_idx_layers: weights are written from several threads */
};

G_DECLARE_FINAL_TYPE (QuarkFormatCompressedTensors, _quark_format_compressed_tensors, QUARK,
                      FORMAT_COMPRESSED_TENSORS, QuarkCheckpointFormat)
G_DEFINE_FINAL_TYPE (QuarkFormatCompressedTensors, _quark_format_compressed_tensors, QUARK_TYPE_CHECKPOINT_FORMAT)

#define FORMAT_NAME "compressed-tensors"
#define PACK_QUANTIZED "pack-quantized"
#define INT_QUANTIZED "int-quantized"
#define FLOAT_QUANTIZED "float-quantized"
#define MXFP4_PACK_QUANTIZED "mxfp4-pack-quantized"
#define NVFP4_PACK_QUANTIZED "nvfp4-pack-quantized"

/* One QuantizationArgs. */
typedef struct {
  gboolean is_float;
  guint num_bits;
  gboolean symmetric;
  const char *strategy;
  int group_size;        /* > 0 for "group" */
  int block[2];          /* for "block" */
  gboolean dynamic;
  gint32 code_offset;    /* added to libquark's codes and zero points: -2^(b-1) for unsigned dtypes */
  gboolean mx;           /* OCP MXFP4: FP4 E2M1 per group of 32 with E8M0 scales (scale_dtype uint8) */
  gboolean nv;           /* NVFP4: FP4 E2M1 per group of 16 with E4M3 scales over a global scale
                          * (strategy tensor_group) */
  gboolean local;        /* dynamic "local": group scales at run time under a static global scale
                          * (NVFP4 inputs) */
} CtArgs;

static gboolean
unsupported (GError **error, const char *what, const char *name, const char *detail)
{
  return _quark_format_unsupported (error, FORMAT_NAME, what, name, detail);
}

/* The args of a spec; @what and @name name the tensor or layer in errors. */
static gboolean
ct_args_from_spec (QuarkTensorSpec *spec, QuarkRole role, const char *what, const char *name, CtArgs *a,
                   GError **error)
{
  QuarkDType dtype = quark_tensor_spec_get_dtype (spec);
  QuarkQScheme qscheme = quark_tensor_spec_get_qscheme (spec);
  g_autofree char *text = quark_tensor_spec_to_string (spec);
  int ch_axis = quark_tensor_spec_get_ch_axis (spec);

  memset (a, 0, sizeof *a);
  if (dtype == QUARK_DTYPE_FP4_E2M1 && quark_tensor_spec_get_scale_format (spec) == QUARK_SCALE_FORMAT_E8M0 &&
      qscheme == QUARK_QSCHEME_PER_GROUP && quark_tensor_spec_get_group_size (spec) == 32 &&
      (ch_axis == -1 || (role == QUARK_ROLE_WEIGHT && ch_axis == 1)) &&
      (role == QUARK_ROLE_WEIGHT) != quark_tensor_spec_get_is_dynamic (spec))
    {
      /* OCP MXFP4 (compressed-tensors' MXFP4 preset): static weights,
       * dynamic inputs, groups of 32 along the last axis */
      a->mx = a->is_float = a->symmetric = TRUE;
      a->num_bits = 4;
      a->strategy = "group";
      a->group_size = 32;
      a->dynamic = role != QUARK_ROLE_WEIGHT;
      return TRUE;
    }
  if (dtype == QUARK_DTYPE_FP4_E2M1 && quark_tensor_spec_get_scale_format (spec) == QUARK_SCALE_FORMAT_E4M3 &&
      quark_tensor_spec_get_group_size (spec) == 16 &&
      (role == QUARK_ROLE_WEIGHT ? ch_axis == -1 || ch_axis == 1
                                 : role == QUARK_ROLE_INPUT && ch_axis == -1 &&
                                   quark_tensor_spec_get_is_dynamic (spec)))
    {
      /* NVFP4 (compressed-tensors' NVFP4 and NVFP4A16 presets): static
       * weights; inputs with group scales computed at run time under a
       * static global scale (dynamic "local") */
      a->nv = a->is_float = a->symmetric = TRUE;
      a->num_bits = 4;
      a->strategy = "tensor_group";
      a->group_size = 16;
      a->local = role == QUARK_ROLE_INPUT;
      return TRUE;
    }
  if (quark_tensor_spec_get_scale_format (spec) != QUARK_SCALE_FORMAT_FLOAT32)
    return unsupported (error, what, name, "a spec with MX, E5M3 or E4M3 scales (of these, MXFP4 static weights "
                        "and dynamic inputs in groups of 32, and NVFP4 static weights and dynamic inputs in groups "
                        "of 16, are written)");
  if (dtype == QUARK_DTYPE_F8_E4M3)
    {
      a->is_float = TRUE;
      a->num_bits = 8;
      a->symmetric = TRUE;
    }
  else if (quark_dtype_is_integer (dtype) && quark_dtype_get_bits (dtype) >= 2 && quark_dtype_get_bits (dtype) <= 8)
    {
      a->num_bits = quark_dtype_get_bits (dtype);
      a->symmetric = quark_tensor_spec_get_symmetric (spec);
      a->code_offset = quark_dtype_is_signed (dtype) ? 0 : -(1 << (a->num_bits - 1));
    }
  else
    {
      g_autofree char *detail = g_strdup_printf ("%s (integers of 2 to 8 bits and fp8_e4m3 are written)",
                                                 quark_dtype_get_name (dtype));
      return unsupported (error, what, name, detail);
    }
  a->dynamic = quark_tensor_spec_get_is_dynamic (spec);
  if (role == QUARK_ROLE_WEIGHT && a->dynamic)
    return unsupported (error, what, name, "a dynamic weight spec");

  switch (qscheme)
    {
    case QUARK_QSCHEME_PER_TENSOR:
      a->strategy = "tensor";
      break;
    case QUARK_QSCHEME_PER_CHANNEL:
      if (role == QUARK_ROLE_WEIGHT && ch_axis == 0)
        a->strategy = "channel";
      else if (role != QUARK_ROLE_WEIGHT && a->dynamic)
        a->strategy = "token";   /* per row of the activation, computed at run time */
      else
        {
          g_autofree char *detail = g_strdup_printf ("the spec %s (weights per channel along axis 0, "
                                                     "activations per token dynamically)", text);
          return unsupported (error, what, name, detail);
        }
      break;
    case QUARK_QSCHEME_PER_GROUP:
      if (role != QUARK_ROLE_WEIGHT || (ch_axis != -1 && ch_axis != 1) || quark_tensor_spec_get_group_size (spec) <= 0)
        {
          g_autofree char *detail = g_strdup_printf ("the spec %s (weight groups run along the input "
                                                     "dimension, ch_axis -1)", text);
          return unsupported (error, what, name, detail);
        }
      a->strategy = "group";
      a->group_size = quark_tensor_spec_get_group_size (spec);
      break;
    case QUARK_QSCHEME_PER_BLOCK:
      if (role != QUARK_ROLE_WEIGHT)
        return unsupported (error, what, name, "a per-block activation spec");
      a->strategy = "block";
      quark_tensor_spec_get_block_size (spec, &a->block[0], &a->block[1]);
      break;
    default:
      return unsupported (error, what, name, text);
    }
  if (role != QUARK_ROLE_WEIGHT && !a->dynamic && g_strcmp0 (a->strategy, "tensor") != 0)
    return unsupported (error, what, name, "a static activation spec that is not per tensor");
  return TRUE;
}

static JsonNode *
ct_args_to_json (const CtArgs *a)
{
  JsonObject *o = json_object_new ();
  JsonNode *node;

  json_object_set_int_member (o, "num_bits", a->num_bits);
  json_object_set_string_member (o, "type", a->is_float ? "float" : "int");
  json_object_set_boolean_member (o, "symmetric", a->symmetric);
  if (a->group_size > 0)
    json_object_set_int_member (o, "group_size", a->group_size);
  else
    json_object_set_null_member (o, "group_size");
  json_object_set_string_member (o, "strategy", a->strategy);
  if (g_str_equal (a->strategy, "block"))
    {
      JsonArray *b = json_array_new ();
      json_array_add_int_element (b, a->block[0]);
      json_array_add_int_element (b, a->block[1]);
      json_object_set_array_member (o, "block_structure", b);
    }
  else
    json_object_set_null_member (o, "block_structure");
  if (a->local)
    json_object_set_string_member (o, "dynamic", "local");
  else
    json_object_set_boolean_member (o, "dynamic", a->dynamic);
  json_object_set_null_member (o, "actorder");
  if (a->mx)
    {
      /* compressed-tensors' MXFP4 preset: E8M0 scales as uint8 (its
       * serializer leaves a symmetric scheme's zp_dtype null) */
      json_object_set_string_member (o, "scale_dtype", "torch.uint8");
      json_object_set_null_member (o, "zp_dtype");
    }
  if (a->nv)
    {
      /* compressed-tensors' NVFP4 and NVFP4A16 presets */
      json_object_set_string_member (o, "scale_dtype", "torch.float8_e4m3fn");
      json_object_set_string_member (o, "zp_dtype", "torch.float8_e4m3fn");
    }
  if (a->local)
    json_object_set_string_member (o, "observer", "static_minmax");   /* the NVFP4 preset's, for the global scale */
  else if (a->dynamic)
    json_object_set_null_member (o, "observer");
  else
    json_object_set_string_member (o, "observer", "minmax");
  json_object_set_object_member (o, "observer_kwargs", json_object_new ());
  node = json_node_alloc ();
  json_node_init_object (node, o);
  json_object_unref (o);
  return node;
}

/* W4A8 (vLLM's CompressedTensorsW4A8Fp8, compressed_tensors.py's
 * _is_fp8_w4a8 and the scheme's group size): symmetric int4 weights in
 * groups of 128, dynamic symmetric FP8 inputs per token; the weights are
 * packed as pack-quantized's */
static gboolean
is_w4a8 (const CtArgs *w, const CtArgs *in)
{
  return in != NULL && !w->is_float && w->num_bits == 4 && g_str_equal (w->strategy, "group") &&
         w->group_size == 128 && w->symmetric && in->is_float && in->num_bits == 8 && in->dynamic &&
         in->symmetric && g_str_equal (in->strategy, "token");
}

/* The `format` a layer needs, or NULL with @error. */
static const char *
layer_format (const CtArgs *w, const CtArgs *in, const char *layer, GError **error)
{
  if (w->nv || (in && in->nv))
    {
      /* NVFP4A16, or NVFP4 (W4A4) */
      if (!w->nv || (in && !in->nv))
        {
          unsupported (error, "layer", layer, "NVFP4 weights or inputs with another scheme on the other side "
                       "(NVFP4 weights alone, or with NVFP4 inputs, are written)");
          return NULL;
        }
      return NVFP4_PACK_QUANTIZED;
    }
  if (w->mx || (in && in->mx))
    {
      if (!w->mx || (in && !in->mx))
        {
          unsupported (error, "layer", layer, "MXFP4 weights or inputs with another scheme on the other side");
          return NULL;
        }
      return MXFP4_PACK_QUANTIZED;
    }
  if (in == NULL || is_w4a8 (w, in))
    return w->is_float ? FLOAT_QUANTIZED : PACK_QUANTIZED;
  if (w->is_float != in->is_float)
    {
      unsupported (error, "layer", layer, "mixing integer and float weights and activations (of these, int4 "
                   "weights in symmetric groups of 128 with dynamic per-token FP8 inputs, W4A8, are written)");
      return NULL;
    }
  if (w->is_float)
    return FLOAT_QUANTIZED;
  if (w->num_bits != 8 || in->num_bits != 8)
    {
      unsupported (error, "layer", layer, "integer activation quantization with weights or activations "
                   "of other than 8 bits");
      return NULL;
    }
  return INT_QUANTIZED;
}

/* An output spec: the KV cache, static FP8 per tensor on k_proj and v_proj
 * (one spec for all of them), or an error naming the layer. */
static gboolean
kv_output (QuarkFormatCompressedTensors *self, const char *layer, QuarkTensorSpec *out, GError **error)
{
  if (!(g_str_has_suffix (layer, "k_proj") || g_str_has_suffix (layer, "v_proj")) ||
      quark_tensor_spec_get_dtype (out) != QUARK_DTYPE_F8_E4M3 ||
      quark_tensor_spec_get_qscheme (out) != QUARK_QSCHEME_PER_TENSOR || quark_tensor_spec_get_is_dynamic (out) ||
      !quark_tensor_spec_get_symmetric (out) || quark_tensor_spec_get_scale_format (out) != QUARK_SCALE_FORMAT_FLOAT32)
    return unsupported (error, "layer", layer, "output quantization other than a static FP8 per-tensor KV cache "
                        "(the outputs of k_proj and v_proj)");
  if (self->kv_spec && !quark_tensor_spec_equal (self->kv_spec, out))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "layers %s and %s quantize the KV cache differently; %s has one kv_cache_scheme per model",
                   self->kv_layer, layer, FORMAT_NAME);
      return FALSE;
    }
  if (self->kv_spec == NULL)
    {
      self->kv_spec = g_object_ref (out);
      self->kv_layer = g_strdup (layer);
    }
  return TRUE;
}

static gboolean
ct_prepare (QuarkCheckpointFormat *format, GError **error)
{
  QuarkFormatCompressedTensors *self = (QuarkFormatCompressedTensors *) format;
  g_auto(GStrv) layers = quark_checkpoint_format_get_layers (format);
  const char *first_layer = NULL;

  self->format = NULL;
  g_clear_object (&self->kv_spec);
  g_clear_pointer (&self->kv_layer, g_free);
  for (guint i = 0; layers[i]; i++)
    {
      g_autoptr(QuarkTensorSpec) w = quark_checkpoint_format_get_layer_spec (format, layers[i], QUARK_ROLE_WEIGHT);
      g_autoptr(QuarkTensorSpec) in = quark_checkpoint_format_get_layer_spec (format, layers[i], QUARK_ROLE_INPUT);
      g_autoptr(QuarkTensorSpec) out = quark_checkpoint_format_get_layer_spec (format, layers[i], QUARK_ROLE_OUTPUT);
      CtArgs wa, ia;
      const char *f;

      if (w == NULL)
        continue;
      if (out != NULL && !kv_output (self, layers[i], out, error))
        return FALSE;
      if (!ct_args_from_spec (w, QUARK_ROLE_WEIGHT, "layer", layers[i], &wa, error) ||
          (in && !ct_args_from_spec (in, QUARK_ROLE_INPUT, "layer", layers[i], &ia, error)))
        return FALSE;
      if ((f = layer_format (&wa, in ? &ia : NULL, layers[i], error)) == NULL)
        return FALSE;
      if (self->format && !g_str_equal (self->format, f))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                       "layer %s needs the %s format and layer %s the %s format; %s writes one format per model "
                       "(export the model with one kind of scheme, or use the quark format)",
                       first_layer, self->format, layers[i], f, FORMAT_NAME);
          return FALSE;
        }
      self->format = f;
      first_layer = layers[i];
    }
  return _quark_format_check_fused (format, FORMAT_NAME, error);
}

static gboolean
ct_check_weight (QuarkCheckpointFormat *self, const char *name, const gint64 *shape, guint n_dims,
                 QuarkTensorSpec *spec, GError **error)
{
  CtArgs a;

  if (!ct_args_from_spec (spec, QUARK_ROLE_WEIGHT, "tensor", name, &a, error))
    return FALSE;
  if (n_dims != 2)
    return unsupported (error, "tensor", name, "a weight that is not 2-D");
  return TRUE;
}

static QuarkDType
ct_get_scale_dtype (QuarkCheckpointFormat *format, const char *layer, QuarkTensorSpec *spec, QuarkDType weight_dtype)
{
  g_autoptr(QuarkTensorSpec) in = quark_checkpoint_format_get_layer_spec (format, layer, QUARK_ROLE_INPUT);
  CtArgs w, ia;

  /* vLLM's WNA16 and W4A8 schemes allocate weight_scale in the model's
   * dtype, its W8A8 and FP8 schemes in float32 */
  if ((in == NULL ||
       (ct_args_from_spec (spec, QUARK_ROLE_WEIGHT, "layer", layer, &w, NULL) &&
        ct_args_from_spec (in, QUARK_ROLE_INPUT, "layer", layer, &ia, NULL) && is_w4a8 (&w, &ia))) &&
      quark_dtype_is_integer (quark_tensor_spec_get_dtype (spec)) &&
      (weight_dtype == QUARK_DTYPE_BF16 || weight_dtype == QUARK_DTYPE_F16))
    return weight_dtype;
  return QUARK_DTYPE_F32;
}

/* ---- writing -------------------------------------------------------------- */

/* b-bit signed codes, @n per row of @rows, packed along the row: value j of
 * word w holds element w * (32 / b) + j at bits b * j, as q + 2^(b-1). */
static guint32 *
pack_rows (const gint8 *codes, gsize rows, gsize n, guint bits, gint32 offset, gsize *words_per_row)
{
  guint per_word = 32 / bits;
  gsize wpr = (n + per_word - 1) / per_word;
  guint32 *words = quark_buffer_alloc (MAX (rows * wpr, 1) * sizeof (guint32));
  guint32 mask = bits == 32 ? 0xffffffffu : (1u << bits) - 1;

  if (bits == 4 && n % 8 == 0)
    {
      /* q + 8 in four bits is q's two's-complement nibble with its top bit
       * flipped: AMD Quark's natural int4 words, xor 0x88888888 */
      gint8 *shifted = g_malloc (MAX (n, 1));
      for (gsize r = 0; r < rows; r++)
        {
          for (gsize k = 0; k < n; k++)
            shifted[k] = (gint8) (codes[r * n + k] + offset);
          quark_kernel_pack_int4 (shifted, 1, n, FALSE, (gint32 *) words + r * wpr);
          for (gsize w = 0; w < wpr; w++)
            words[r * wpr + w] ^= 0x88888888u;
        }
      g_free (shifted);
      *words_per_row = wpr;
      return words;
    }
  memset (words, 0, MAX (rows * wpr, 1) * sizeof (guint32));
  for (gsize r = 0; r < rows; r++)
    for (gsize k = 0; k < n; k++)
      {
        gint32 q = (gint32) codes[r * n + k] + offset + (1 << (bits - 1));
        words[r * wpr + k / per_word] |= ((guint32) q & mask) << (bits * (k % per_word));
      }
  *words_per_row = wpr;
  return words;
}

/* Bytewise x + y, modulo 256 in each byte */
static inline guint64
add_bytes (guint64 x, guint64 y)
{
  const guint64 high = G_GUINT64_CONSTANT (0x8080808080808080);

  return ((x & ~high) + (y & ~high)) ^ ((x ^ y) & high);
}

/* pack_rows () of 8-bit codes, straight from a tensor of one-byte integer
 * codes (little-endian hosts): byte j of a word is element 4w + j as
 * q + 128 with q the code plus @offset, all modulo 256, which is the
 * code's byte plus offset + 128; eight bytes at a time, without the
 * one-byte-per-code copy pack_rows () starts from */
static guint32 *
pack_byte_rows (QuarkTensor *codes, gsize rows, gsize n, gint32 offset, gsize *words_per_row)
{
  gsize wpr = (n + 3) / 4;
  guint32 *words = quark_buffer_alloc (MAX (rows * wpr, 1) * sizeof (guint32));
  const guint8 *b = quark_tensor_peek_data (codes, NULL);
  const guint8 add = (guint8) (offset + 128);
  const guint64 add8 = add * G_GUINT64_CONSTANT (0x0101010101010101);

  for (gsize r = 0; r < rows; r++)
    {
      const guint8 *in = b + r * n;
      guint8 *out = (guint8 *) (words + r * wpr);
      gsize k = 0;

      for (; k + 8 <= n; k += 8)
        {
          guint64 x;
          memcpy (&x, in + k, 8);
          x = add_bytes (x, add8);
          memcpy (out + k, &x, 8);
        }
      for (; k < n; k++)
        out[k] = (guint8) (in[k] + add);
      memset (out + n, 0, wpr * 4 - n);
    }
  *words_per_row = wpr;
  return words;
}

/* The logical scales as stored: in @dtype, with @shape. */
static gboolean
add_scales (QuarkModel *out, const char *name, QuarkTensor *scale, QuarkDType dtype, const gint64 *shape,
            guint n_dims, GError **error)
{
  gsize n, size;
  g_autofree float *s = NULL;
  gpointer data;

  /* already in that dtype (what the backend rounded them to): the bytes
   * as they are, without two copies through float32 */
  if (quark_tensor_get_dtype (scale) == dtype)
    return _quark_format_add_owned (out, quark_tensor_new (name, dtype, shape, n_dims, quark_tensor_get_data (scale),
                                                           error), error);
  if ((s = quark_tensor_to_floats (scale, &n, error)) == NULL)
    return FALSE;
  size = n * quark_dtype_get_element_size (dtype);
  data = g_malloc (MAX (size, 1));
  if (dtype == QUARK_DTYPE_F32)
    memcpy (data, s, size);
  else
    quark_kernel_convert_from_f32 (dtype, s, data, n);   /* exact: the backend rounded them already */
  return _quark_format_add_owned (out, _quark_format_new_tensor (name, dtype, shape, n_dims, data, size, error), error);
}

/* The logical codes (or zero points) of an integer tensor as signed int8,
 * shifted by the args' offset. */
static gint8 *
signed_codes (QuarkTensor *t, const CtArgs *a, gsize *n_out, GError **error)
{
  return _quark_format_codes_as_int8 (t, a->code_offset, n_out, error);
}

/* every column's group one of @groups, or @code naming @what */
static gboolean
check_g_idx (QuarkTensor *g_idx, gsize groups, const char *what, QuarkError code, GError **error)
{
  const gint32 *v = quark_tensor_peek_data (g_idx, NULL);
  gsize cols = (gsize) quark_tensor_get_n_elements (g_idx);

  for (gsize c = 0; c < cols; c++)
    if (v[c] < 0 || (gsize) v[c] >= groups)
      {
        g_set_error (error, QUARK_ERROR, code, "%s: g_idx[%" G_GSIZE_FORMAT "] = %d is not one of its %"
                     G_GSIZE_FORMAT " groups", what, c, (int) v[c], groups);
        return FALSE;
      }
  return TRUE;
}

/* GPTQ's groups in activation order: LAYER.weight_g_idx, int32
 * [in_features], the group of each input column (compressed-tensors'
 * `actorder: "group"`; vLLM's CompressedTensorsWNA16 registers
 * weight_g_idx int32 [input_size] when the weights' actorder is "group") */
static gboolean
write_g_idx (QuarkFormatCompressedTensors *self, const char *layer, QuarkTensor *g_idx, const CtArgs *a, gsize cols,
             gsize groups, QuarkModel *out, GError **error)
{
  g_autofree char *out_name = g_strconcat (layer, ".weight_g_idx", NULL);
  gint64 len[1] = { (gint64) cols };

  if (!g_str_equal (a->strategy, "group") || a->is_float || quark_tensor_get_dtype (g_idx) != QUARK_DTYPE_I32 ||
      (gsize) quark_tensor_get_n_elements (g_idx) != cols)
    return unsupported (error, "layer", layer, "a column order (g_idx) but for integer weights in groups");
  if (!check_g_idx (g_idx, groups, layer, QUARK_ERROR_INVALID_ARGUMENT, error))
    return FALSE;
  g_mutex_lock (&self->lock);
  g_hash_table_add (self->g_idx_layers, g_strdup (layer));
  g_mutex_unlock (&self->lock);
  return _quark_format_add_owned (out, quark_tensor_new (out_name, QUARK_DTYPE_I32, len, 1,
                                                         quark_tensor_get_data (g_idx), error), error);
}

/* pack-quantized int4 and uint4 weights in groups or per output channel
 * are stored packed along rows (pack_rows ()), and 8-bit ones whose rows
 * are a multiple of 4 long: a backend may give their codes as the stored
 * words themselves (QUARK_CODE_LAYOUT_UINT4_ROWS, int4's nibbles already
 * q + 8; QUARK_CODE_LAYOUT_UINT8_ROWS, int8's bytes already q + 128), which
 * the export keeps without a copy */
static QuarkCodeLayout
ct_get_code_layout (QuarkCheckpointFormat *format, const char *name, QuarkTensorSpec *spec, const gint64 *shape,
                    guint n_dims)
{
  QuarkFormatCompressedTensors *self = (QuarkFormatCompressedTensors *) format;
  CtArgs a;

  if (self->format == NULL || !g_str_equal (self->format, PACK_QUANTIZED) || n_dims != 2 || shape[0] <= 0 ||
      shape[1] <= 0 || !ct_args_from_spec (spec, QUARK_ROLE_WEIGHT, "tensor", name, &a, NULL) ||
      a.is_float || a.mx || a.nv)
    return QUARK_CODE_LAYOUT_BYTES;
  if (a.num_bits == 8 && shape[1] % 4 == 0)
    return QUARK_CODE_LAYOUT_UINT8_ROWS;
  if (a.num_bits != 4 || shape[1] % 8 != 0 ||
      !(g_str_equal (a.strategy, "group") || g_str_equal (a.strategy, "channel")))
    return QUARK_CODE_LAYOUT_BYTES;
  return QUARK_CODE_LAYOUT_UINT4_ROWS;
}

static gboolean
ct_export_weight (QuarkCheckpointFormat *format, const char *name, QuarkTensorSpec *spec, QuarkModel *logical,
                  QuarkModel *out, GError **error)
{
  QuarkFormatCompressedTensors *self = (QuarkFormatCompressedTensors *) format;
  g_autofree char *layer = _quark_format_layer_of (name);
  g_autofree char *scale_name = g_strconcat (name, "_scale", NULL);
  g_autofree char *zp_name = g_strconcat (name, "_zero_point", NULL);
  g_autofree char *out_scale = g_strconcat (layer, ".weight_scale", NULL);
  g_autofree char *out_zp = g_strconcat (layer, ".weight_zero_point", NULL);
  QuarkTensor *codes = quark_model_get_tensor (logical, name);
  QuarkTensor *scale = quark_model_get_tensor (logical, scale_name);
  QuarkTensor *zp = quark_model_get_tensor (logical, zp_name);
  g_autofree char *g_idx_name = g_strconcat (name, "_g_idx", NULL);
  QuarkTensor *g_idx = quark_model_get_tensor (logical, g_idx_name);
  const gint64 *shape = quark_tensor_get_shape (codes, NULL);
  gsize n_params = scale ? quark_tensor_get_n_elements (scale) : 0;
  gsize rows, cols;
  gint64 sshape[2];
  guint s_dims;
  QuarkDType scale_dtype;
  gboolean in_words;
  CtArgs a;

  if (!ct_args_from_spec (spec, QUARK_ROLE_WEIGHT, "tensor", name, &a, error))
    return FALSE;
  if (quark_tensor_get_n_dims (codes) != 2 || scale == NULL)
    return unsupported (error, "tensor", name, "a weight that is not 2-D");
  if (g_idx && !write_g_idx (self, layer, g_idx, &a, (gsize) shape[1], n_params / MAX ((gsize) shape[0], 1), out,
                             error))
    return FALSE;
  if (self->format == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "tensor %s: the %s format was not prepared (quark_checkpoint_format_prepare)", name, FORMAT_NAME);
      return FALSE;
    }
  rows = (gsize) shape[0];
  cols = (gsize) shape[1];
  /* codes as the stored words (ct_get_code_layout ()): int4 int32 [O, I/8],
   * 8-bit int32 [O, I/4] */
  in_words = quark_tensor_get_dtype (codes) == QUARK_DTYPE_I32 && !a.is_float && (a.num_bits == 4 || a.num_bits == 8);
  if (in_words)
    {
      guint per_word = a.num_bits == 4 ? 8 : 4;
      gint64 logical_shape[2] = { shape[0], shape[1] * per_word };
      cols *= per_word;
      /* the scales of as many rows and columns as the words hold (per
       * block the shapes are checked below) */
      gboolean per_row = g_str_equal (a.strategy, "group") || g_str_equal (a.strategy, "channel");
      gsize expected = per_row ? rows * (a.group_size > 0 ? (cols + (gsize) a.group_size - 1) / (gsize) a.group_size : 1)
                               : g_str_equal (a.strategy, "tensor") ? 1 : n_params;
      if (ct_get_code_layout (format, name, spec, logical_shape, 2) !=
            (a.num_bits == 4 ? QUARK_CODE_LAYOUT_UINT4_ROWS : QUARK_CODE_LAYOUT_UINT8_ROWS) ||
          n_params != expected)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                       "tensor %s: int32 codes of shape [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "] are neither "
                       "one code per element nor the packed layout %s asked for", name, shape[0], shape[1],
                       FORMAT_NAME);
          return FALSE;
        }
    }
  /* pack-quantized keeps the scales in the dtype the backend rounded them
   * to (get_scale_dtype), the others in float32 */
  scale_dtype = quark_tensor_get_dtype (scale);
  if (scale_dtype != QUARK_DTYPE_BF16 && scale_dtype != QUARK_DTYPE_F16)
    scale_dtype = QUARK_DTYPE_F32;

  /* scale shapes: [1] per tensor, [O, 1] per channel, [O, G] per group,
   * [ceil(O/br), ceil(I/bc)] per block */
  if (g_str_equal (a.strategy, "tensor"))
    {
      sshape[0] = 1;
      s_dims = 1;
    }
  else if (g_str_equal (a.strategy, "channel"))
    {
      sshape[0] = (gint64) rows;
      sshape[1] = 1;
      s_dims = 2;
    }
  else if (g_str_equal (a.strategy, "group") || g_str_equal (a.strategy, "tensor_group"))
    {
      sshape[0] = (gint64) rows;
      sshape[1] = (gint64) (n_params / MAX (rows, 1));
      s_dims = 2;
    }
  else
    {
      sshape[0] = (gint64) ((rows + (gsize) a.block[0] - 1) / (gsize) a.block[0]);
      sshape[1] = (gint64) ((cols + (gsize) a.block[1] - 1) / (gsize) a.block[1]);
      s_dims = 2;
    }
  if ((gsize) (sshape[0] * (s_dims == 2 ? sshape[1] : 1)) != n_params)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "tensor %s: %" G_GSIZE_FORMAT " scales do not fit the %s strategy", name, n_params, a.strategy);
      return FALSE;
    }

  if (a.mx)
    {
      /* mxfp4-pack-quantized: LAYER.weight_packed uint8 [O, I/2], element
       * 2k in the low nibble (the E2M1 code: sign bit 3, magnitude bits
       * 0-2), LAYER.weight_scale uint8 [O, I/32], the E8M0 exponents */
      g_autofree char *packed_name = g_strconcat (layer, ".weight_packed", NULL);
      gint64 pshape[2] = { (gint64) rows, (gint64) (cols / 2) };
      guint8 *packed;

      if (cols % 32 != 0 || quark_tensor_get_dtype (scale) != QUARK_DTYPE_F8_E8M0)
        return unsupported (error, "tensor", name, "MXFP4 rows that are not whole groups of 32");
      packed = g_malloc (MAX (rows * cols / 2, 1));
      quark_kernel_pack_fp4 (quark_tensor_peek_data (codes, NULL), rows * cols, packed);
      return _quark_format_add_owned (out, _quark_format_new_tensor (packed_name, QUARK_DTYPE_U8, pshape, 2, packed,
                                                                     rows * cols / 2, error), error) &&
             _quark_format_add_owned (out, quark_tensor_new (out_scale, QUARK_DTYPE_U8, sshape, 2,
                                                             quark_tensor_get_data (scale), error), error);
    }
  if (a.nv)
    {
      /* nvfp4-pack-quantized: LAYER.weight_packed uint8 [O, I/2] as for
       * MXFP4, LAYER.weight_scale float8_e4m3fn [O, I/16] (the E4M3 codes),
       * LAYER.weight_global_scale float32 [1], g: an element is its E2M1
       * value times weight_scale / g */
      g_autofree char *packed_name = g_strconcat (layer, ".weight_packed", NULL);
      g_autofree char *global_name = g_strconcat (name, "_global_scale", NULL);
      g_autofree char *out_global = g_strconcat (layer, ".weight_global_scale", NULL);
      QuarkTensor *global = quark_model_get_tensor (logical, global_name);
      gint64 pshape[2] = { (gint64) rows, (gint64) (cols / 2) }, one = 1;
      guint8 *packed;

      if (cols % 16 != 0 || quark_tensor_get_dtype (scale) != QUARK_DTYPE_F8_E4M3 || global == NULL ||
          quark_tensor_get_dtype (global) != QUARK_DTYPE_F32 || quark_tensor_get_n_elements (global) != 1)
        return unsupported (error, "tensor", name, "NVFP4 rows that are not whole groups of 16, or without E4M3 "
                            "scales and a float32 global scale");
      packed = g_malloc (MAX (rows * cols / 2, 1));
      quark_kernel_pack_fp4 (quark_tensor_peek_data (codes, NULL), rows * cols, packed);
      return _quark_format_add_owned (out, _quark_format_new_tensor (packed_name, QUARK_DTYPE_U8, pshape, 2, packed,
                                                                     rows * cols / 2, error), error) &&
             _quark_format_add_owned (out, quark_tensor_new (out_scale, QUARK_DTYPE_F8_E4M3, sshape, 2,
                                                             quark_tensor_get_data (scale), error), error) &&
             _quark_format_add_owned (out, quark_tensor_new (out_global, QUARK_DTYPE_F32, &one, 1,
                                                             quark_tensor_get_data (global), error), error);
    }
  if (a.is_float)
    {
      /* float-quantized: the FP8 codes as they are */
      return quark_model_add_tensor (out, codes, error) &&
             add_scales (out, out_scale, scale, QUARK_DTYPE_F32, sshape, s_dims, error);
    }
  else
    {
      gsize n = 0, nz = 0;
      /* pack-quantized 8-bit codes of one byte each are packed straight
       * from the tensor (pack_byte_rows ()) */
      gboolean byte_rows = !in_words && G_BYTE_ORDER == G_LITTLE_ENDIAN && a.num_bits == 8 &&
                           g_str_equal (self->format, PACK_QUANTIZED) &&
                           quark_dtype_is_integer (quark_tensor_get_dtype (codes)) &&
                           quark_dtype_get_element_size (quark_tensor_get_dtype (codes)) == 1;
      g_autofree gint8 *q = in_words || byte_rows ? NULL : signed_codes (codes, &a, &n, error);
      g_autofree gint8 *z = NULL;

      if (q == NULL && !in_words && !byte_rows)
        return FALSE;
      if (zp && (z = signed_codes (zp, &a, &nz, error)) == NULL)
        return FALSE;
      if (a.symmetric)
        for (gsize i = 0; i < nz; i++)
          if (z[i] != 0)
            {
              g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                           "tensor %s: a symmetric spec with a non-zero zero point (%d) cannot be written in %s",
                           name, (int) z[i] - a.code_offset, FORMAT_NAME);
              return FALSE;
            }

      if (g_str_equal (self->format, PACK_QUANTIZED))
        {
          /* words from the backend (in_words) are the stored words: kept
           * as they are, without a copy */
          gsize wpr = 0;
          guint32 *words = in_words ? NULL
                           : byte_rows ? pack_byte_rows (codes, rows, cols, a.code_offset, &wpr)
                           : pack_rows (q, rows, cols, a.num_bits, 0, &wpr);
          gint64 wshape[2] = { (gint64) rows, (gint64) wpr };
          gint64 *dims = g_new (gint64, 2);
          gint64 dshape[1] = { 2 };
          g_autofree char *packed_name = g_strconcat (layer, ".weight_packed", NULL);
          g_autofree char *shape_name = g_strconcat (layer, ".weight_shape", NULL);

          dims[0] = (gint64) rows;
          dims[1] = (gint64) cols;
          if (!_quark_format_add_owned (out, in_words ? _quark_format_renamed (codes, packed_name, error)
                                                      : _quark_format_new_tensor (packed_name, QUARK_DTYPE_I32, wshape,
                                                                                  2, words, rows * wpr * 4, error),
                                        error) ||
              !_quark_format_add_owned (out, _quark_format_new_tensor (shape_name, QUARK_DTYPE_I64, dshape, 1, dims,
                                                                       2 * sizeof (gint64), error), error) ||
              !add_scales (out, out_scale, scale, scale_dtype, sshape, s_dims, error))
            return FALSE;
          if (a.symmetric || z == NULL)
            return TRUE;
          if (g_str_equal (a.strategy, "tensor"))
            {
              gint64 one[1] = { 1 };
              gint8 *zb = g_memdup2 (z, 1);
              return _quark_format_add_owned (out, _quark_format_new_tensor (out_zp, QUARK_DTYPE_I8, one, 1, zb, 1,
                                                                             error), error);
            }
          {
            /* zero points [O, G] packed along O: transpose, pack rows of O, transpose back */
            gsize groups = (gsize) sshape[1], zwpr;
            g_autofree gint8 *zt = _quark_format_transpose_codes (z, rows, groups);
            guint32 *zw = pack_rows (zt, groups, rows, a.num_bits, 0, &zwpr);
            guint32 *zpacked = g_new (guint32, MAX (zwpr * groups, 1));
            gint64 zshape[2] = { (gint64) zwpr, (gint64) groups };
            for (gsize g = 0; g < groups; g++)
              for (gsize w = 0; w < zwpr; w++)
                zpacked[w * groups + g] = zw[g * zwpr + w];
            quark_buffer_free (zw);   /* pack_rows() buffers are the pool's */
            return _quark_format_add_owned (out, _quark_format_new_tensor (out_zp, QUARK_DTYPE_I32, zshape, 2, zpacked,
                                                                           zwpr * groups * 4, error), error);
          }
        }
      /* int-quantized: int8 codes of the weight's shape */
      {
        g_autofree char *wname = g_strconcat (layer, ".weight", NULL);
        if (!_quark_format_add_owned (out, _quark_format_new_tensor (wname, QUARK_DTYPE_I8, shape, 2,
                                                                     g_steal_pointer (&q), n, error), error) ||
            !add_scales (out, out_scale, scale, QUARK_DTYPE_F32, sshape, s_dims, error))
          return FALSE;
        if (a.symmetric || z == NULL)
          return TRUE;
        return _quark_format_add_owned (out, _quark_format_new_tensor (out_zp, QUARK_DTYPE_I8, sshape, s_dims,
                                                                       g_steal_pointer (&z), nz, error), error);
      }
    }
}

static gboolean
ct_export_activation (QuarkCheckpointFormat *self, const char *layer, QuarkRole role, QuarkTensorSpec *spec,
                      QuarkTensor *scale, QuarkTensor *zero_point, QuarkModel *out, GError **error)
{
  g_autofree char *scale_name = g_strconcat (layer, ".input_scale", NULL);
  g_autofree char *zp_name = g_strconcat (layer, ".input_zero_point", NULL);
  gint64 one[1] = { 1 };
  CtArgs a;

  if (role == QUARK_ROLE_OUTPUT)
    {
      /* the KV cache (prepare() checked the spec) */
      g_autofree char *kv_name = g_strconcat (layer, ".output_scale", NULL);
      if (((QuarkFormatCompressedTensors *) self)->kv_spec == NULL || quark_tensor_get_n_elements (scale) != 1)
        return unsupported (error, "layer", layer, "this output spec");
      return add_scales (out, kv_name, scale, QUARK_DTYPE_F32, one, 1, error);
    }
  if (!ct_args_from_spec (spec, role, "layer", layer, &a, error))
    return FALSE;
  if (quark_tensor_get_n_elements (scale) != 1)
    return unsupported (error, "layer", layer, "more than one static input scale");
  if (a.local)
    {
      /* NVFP4 inputs: LAYER.input_global_scale float32 [1], 448 · 6 / amax */
      g_autofree char *global_name = g_strconcat (layer, ".input_global_scale", NULL);
      return add_scales (out, global_name, scale, QUARK_DTYPE_F32, one, 1, error);
    }
  if (!add_scales (out, scale_name, scale, QUARK_DTYPE_F32, one, 1, error))
    return FALSE;
  if (zero_point && !a.is_float && !a.symmetric)
    {
      gsize n;
      gint8 *z = signed_codes (zero_point, &a, &n, error);
      return z && _quark_format_add_owned (out, _quark_format_new_tensor (zp_name, QUARK_DTYPE_I8, one, 1, z, 1, error),
                                           error);
    }
  return TRUE;
}

static JsonNode *
ct_build_quantization_config (QuarkCheckpointFormat *format, GError **error)
{
  QuarkFormatCompressedTensors *self = (QuarkFormatCompressedTensors *) format;
  g_auto(GStrv) layers = quark_checkpoint_format_get_layers (format);
  g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func (g_free);      /* group key, in order */
  g_autoptr(GPtrArray) members = g_ptr_array_new_with_free_func ((GDestroyNotify) g_ptr_array_unref);
  g_autoptr(GPtrArray) schemes = g_ptr_array_new_with_free_func ((GDestroyNotify) json_node_unref);
  JsonObject *qc = json_object_new (), *groups = json_object_new ();
  JsonArray *ignore = _quark_format_unquantized_linears (format);
  gboolean all_linear = TRUE;
  JsonNode *node;

  for (guint i = 0; layers[i]; i++)
    {
      g_autoptr(QuarkTensorSpec) w = quark_checkpoint_format_get_layer_spec (format, layers[i], QUARK_ROLE_WEIGHT);
      g_autoptr(QuarkTensorSpec) in = quark_checkpoint_format_get_layer_spec (format, layers[i], QUARK_ROLE_INPUT);
      const char *type = quark_checkpoint_format_get_layer_type (format, layers[i]);
      JsonObject *scheme;
      JsonNode *scheme_node;
      g_autofree char *key = NULL;
      CtArgs wa, ia;
      guint g;

      if (w == NULL)
        continue;   /* in the ignore list when a Linear layer */
      if (!ct_args_from_spec (w, QUARK_ROLE_WEIGHT, "layer", layers[i], &wa, error) ||
          (in && !ct_args_from_spec (in, QUARK_ROLE_INPUT, "layer", layers[i], &ia, error)))
        goto fail;
      if (g_strcmp0 (type, "Linear") != 0)
        all_linear = FALSE;
      scheme = json_object_new ();
      json_object_set_member (scheme, "weights", ct_args_to_json (&wa));
      g_mutex_lock (&self->lock);
      if (g_hash_table_contains (self->g_idx_layers, layers[i]))
        json_object_set_string_member (json_object_get_object_member (scheme, "weights"), "actorder", "group");
      g_mutex_unlock (&self->lock);
      json_object_set_member (scheme, "input_activations", in ? ct_args_to_json (&ia) : json_node_new (JSON_NODE_NULL));
      json_object_set_null_member (scheme, "output_activations");
      scheme_node = json_node_alloc ();
      json_node_init_object (scheme_node, scheme);
      json_object_unref (scheme);
      key = quark_json_to_string (scheme_node, FALSE);
      for (g = 0; g < keys->len; g++)
        if (g_str_equal (g_ptr_array_index (keys, g), key))
          break;
      if (g == keys->len)
        {
          g_ptr_array_add (keys, g_steal_pointer (&key));
          g_ptr_array_add (members, g_ptr_array_new ());
          g_ptr_array_add (schemes, scheme_node);
        }
      else
        json_node_unref (scheme_node);
      g_ptr_array_add (g_ptr_array_index (members, g), layers[i]);
    }

  for (guint g = 0; g < keys->len; g++)
    {
      JsonObject *scheme = json_object_ref (json_node_get_object (g_ptr_array_index (schemes, g)));
      JsonArray *targets = json_array_new ();
      GPtrArray *m = g_ptr_array_index (members, g);
      g_autofree char *group_name = g_strdup_printf ("group_%u", g);
      JsonObject *ordered = json_object_new ();

      /* one scheme for every quantized Linear layer: target the type (as
       * llm-compressor does); otherwise the layers by name */
      if (keys->len == 1 && all_linear)
        json_array_add_string_element (targets, "Linear");
      else
        for (guint k = 0; k < m->len; k++)
          json_array_add_string_element (targets, g_ptr_array_index (m, k));
      json_object_set_array_member (ordered, "targets", targets);
      json_object_set_member (ordered, "weights", json_object_dup_member (scheme, "weights"));
      json_object_set_member (ordered, "input_activations", json_object_dup_member (scheme, "input_activations"));
      json_object_set_member (ordered, "output_activations", json_object_dup_member (scheme, "output_activations"));
      json_object_set_object_member (groups, group_name, ordered);
      json_object_unref (scheme);
    }

  json_object_set_string_member (qc, "quant_method", "compressed-tensors");
  json_object_set_string_member (qc, "format", self->format ? self->format : PACK_QUANTIZED);
  json_object_set_string_member (qc, "quantization_status", "compressed");
  json_object_set_object_member (qc, "config_groups", groups);
  json_object_set_array_member (qc, "ignore", ignore);
  if (self->kv_spec)
    {
      CtArgs kv;
      if (!ct_args_from_spec (self->kv_spec, QUARK_ROLE_OUTPUT, "layer", self->kv_layer, &kv, error))
        {
          json_object_unref (qc);
          return NULL;
        }
      json_object_set_member (qc, "kv_cache_scheme", ct_args_to_json (&kv));
    }
  else
    json_object_set_null_member (qc, "kv_cache_scheme");
  json_object_set_null_member (qc, "global_compression_ratio");
  node = json_node_alloc ();
  json_node_init_object (node, qc);
  json_object_unref (qc);
  return node;

fail:
  json_object_unref (groups);
  json_array_unref (ignore);
  json_object_unref (qc);
  return NULL;
}

/* ---- reading ------------------------------------------------------------- */

static gboolean
bad_config (GError **error, const char *path, const char *what)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "quantization_config.%s: %s", path, what);
  return FALSE;
}

/* QuantizationArgs from JSON, as compressed-tensors validates them (the
 * strategy inferred from group_size when absent). */
static gboolean
ct_args_from_json (JsonNode *node, const char *path, CtArgs *a, GError **error)
{
  JsonObject *o;
  const char *type, *strategy;
  JsonNode *gs, *dyn;

  memset (a, 0, sizeof *a);
  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node))
    return bad_config (error, path, "expected an object");
  o = json_node_get_object (node);
  a->num_bits = (guint) json_object_get_int_member_with_default (o, "num_bits", 8);
  type = json_object_get_string_member_with_default (o, "type", "int");
  a->is_float = g_ascii_strcasecmp (type, "float") == 0;
  if (!a->is_float && g_ascii_strcasecmp (type, "int") != 0)
    return bad_config (error, path, "type is neither int nor float");
  if (a->is_float ? a->num_bits != 8 && a->num_bits != 4 : (a->num_bits < 2 || a->num_bits > 8))
    return bad_config (error, path, "num_bits is not one libquark reads (int: 2 to 8, float: 8, or 4 as MXFP4 or NVFP4)");
  a->symmetric = json_object_get_boolean_member_with_default (o, "symmetric", TRUE);
  gs = json_object_get_member (o, "group_size");
  a->group_size = gs && JSON_NODE_HOLDS_VALUE (gs) ? (int) json_node_get_int (gs) : 0;
  strategy = json_object_has_member (o, "strategy") && JSON_NODE_HOLDS_VALUE (json_object_get_member (o, "strategy"))
             ? json_object_get_string_member (o, "strategy") : NULL;
  if (strategy == NULL)
    strategy = a->group_size > 0 ? "group" : a->group_size == -1 ? "channel" : "tensor";
  if (g_str_equal (strategy, "tensor") || g_str_equal (strategy, "channel") || g_str_equal (strategy, "group") ||
      g_str_equal (strategy, "block") || g_str_equal (strategy, "token") || g_str_equal (strategy, "tensor_group"))
    a->strategy = g_intern_string (strategy);
  else
    return bad_config (error, path, "strategy is not one of tensor, channel, group, block, token, tensor_group");
  if ((g_str_equal (strategy, "group") || g_str_equal (strategy, "tensor_group")) && a->group_size <= 0)
    return bad_config (error, path, "strategy group needs a positive group_size");
  if ((dyn = json_object_get_member (o, "dynamic")) != NULL && !JSON_NODE_HOLDS_NULL (dyn))
    {
      /* a boolean, or "local" (group scales at run time under a static
       * global scale) */
      if (JSON_NODE_HOLDS_VALUE (dyn) && json_node_get_value_type (dyn) == G_TYPE_BOOLEAN)
        a->dynamic = json_node_get_boolean (dyn);
      else if (JSON_NODE_HOLDS_VALUE (dyn) && json_node_get_value_type (dyn) == G_TYPE_STRING &&
               g_ascii_strcasecmp (json_node_get_string (dyn), "local") == 0)
        a->dynamic = a->local = TRUE;
      else
        return bad_config (error, path, "dynamic is neither a boolean nor \"local\"");
    }
  if (a->is_float && a->num_bits == 4 && g_str_equal (strategy, "tensor_group"))
    {
      /* NVFP4 (vLLM's _is_fp4a16_nvfp4: float, 4 bits, tensor_group, group 16, symmetric) */
      if (a->group_size != 16 || !a->symmetric)
        return bad_config (error, path, "4-bit floats in tensor groups are read as NVFP4: symmetric, group_size 16");
      a->nv = TRUE;
    }
  else if (a->is_float && a->num_bits == 4)
    {
      /* MXFP4 (vLLM's _is_mxfp4: float, 4 bits, group 32, symmetric) */
      if (!g_str_equal (strategy, "group") || a->group_size != 32 || !a->symmetric)
        return bad_config (error, path, "4-bit floats are read as MXFP4: symmetric, strategy group, group_size 32");
      a->mx = TRUE;
    }
  if (g_str_equal (strategy, "block"))
    {
      JsonNode *bs = json_object_get_member (o, "block_structure");
      if (bs && JSON_NODE_HOLDS_ARRAY (bs) && json_array_get_length (json_node_get_array (bs)) == 2)
        {
          a->block[0] = (int) json_array_get_int_element (json_node_get_array (bs), 0);
          a->block[1] = (int) json_array_get_int_element (json_node_get_array (bs), 1);
        }
      else if (bs && JSON_NODE_HOLDS_VALUE (bs) && json_node_get_value_type (bs) == G_TYPE_STRING)
        {
          if (sscanf (json_node_get_string (bs), "%dx%d", &a->block[0], &a->block[1]) != 2)
            a->block[0] = 0;
        }
      if (a->block[0] <= 0 || a->block[1] <= 0)
        return bad_config (error, path, "strategy block needs a block_structure of two positive sizes");
    }
  return TRUE;
}

/* Whether @layer matches a config group's target: its name, "re:REGEX" on
 * its name, or the type "Linear". */
static gboolean
target_matches (const char *target, const char *layer, gboolean is_linear)
{
  if (g_str_has_prefix (target, "re:"))
    return g_regex_match_simple (target + 3, layer, 0, 0);
  if (g_str_equal (target, "Linear"))
    return is_linear;
  return g_str_equal (target, layer);
}

static gboolean
in_list (JsonArray *list, const char *layer)
{
  for (guint i = 0; list && i < json_array_get_length (list); i++)
    {
      JsonNode *n = json_array_get_element (list, i);
      if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING &&
          target_matches (json_node_get_string (n), layer, FALSE))
        return TRUE;
    }
  return FALSE;
}

/* The logical dtype of b-bit signed codes. */
static QuarkDType
signed_dtype (guint bits)
{
  static const QuarkDType by_bits[] = { 0, 0, QUARK_DTYPE_INT2, QUARK_DTYPE_INT3, QUARK_DTYPE_INT4, QUARK_DTYPE_INT5,
                                        QUARK_DTYPE_INT6, QUARK_DTYPE_INT7, QUARK_DTYPE_I8 };
  return by_bits[bits];
}

static gint8 *
unpack_rows (const guint32 *words, gsize rows, gsize wpr, gsize n, guint bits)
{
  guint per_word = 32 / bits;
  guint32 mask = (1u << bits) - 1;
  gint8 *q = g_malloc (MAX (rows * n, 1));

  for (gsize r = 0; r < rows; r++)
    for (gsize k = 0; k < n; k++)
      q[r * n + k] = (gint8) ((gint32) ((words[r * wpr + k / per_word] >> (bits * (k % per_word))) & mask) -
                              (1 << (bits - 1)));
  return q;
}

static gboolean
need_tensor (QuarkModel *m, const char *name, QuarkDType dtype, QuarkTensor **t, GError **error)
{
  *t = quark_model_get_tensor (m, name);
  if (*t == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s is missing", name);
      return FALSE;
    }
  if (dtype != QUARK_DTYPE_F64 && quark_tensor_get_dtype (*t) != dtype)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: dtype %s, expected %s", name,
                   quark_dtype_get_name (quark_tensor_get_dtype (*t)), quark_dtype_get_name (dtype));
      return FALSE;
    }
  return TRUE;
}

/* An mxfp4-pack-quantized layer (weight_packed uint8 [O, I/2],
 * weight_scale uint8 [O, I/32], E8M0) or an nvfp4-pack-quantized one
 * (weight_packed uint8 [O, I/2], weight_scale float8_e4m3fn [O, I/16],
 * weight_global_scale float32 [1] or one per fused part, all equal) back to
 * float32, as the OCP MXFP4 or NVFP4 spec dequantizes them */
static QuarkTensor *
dequantize_fp4 (QuarkModel *m, const char *layer, gboolean nv, QuarkTensor *scale, GError **error)
{
  g_autofree char *wname = g_strconcat (layer, ".weight", NULL);
  g_autofree char *pname = g_strconcat (layer, ".weight_packed", NULL);
  g_autofree char *gname = g_strconcat (layer, ".weight_global_scale", NULL);
  g_autoptr(QuarkTensor) codes = NULL, scales = NULL, result = NULL;
  g_autoptr(QuarkTensorSpec) spec = quark_tensor_spec_new (QUARK_DTYPE_FP4_E2M1, QUARK_QSCHEME_PER_GROUP);
  QuarkTensor *packed, *global = NULL;
  const gint64 *shape, *sshape;
  gint64 lshape[2];
  guint n_dims, s_dims;
  guint8 *unpacked;
  gsize n, group = nv ? 16 : 32;

  if (!need_tensor (m, pname, QUARK_DTYPE_U8, &packed, error) ||
      (nv && !need_tensor (m, gname, QUARK_DTYPE_F32, &global, error)))
    return NULL;
  shape = quark_tensor_get_shape (packed, &n_dims);
  sshape = quark_tensor_get_shape (scale, &s_dims);
  if (n_dims != 2 || s_dims != 2 || quark_tensor_get_dtype (scale) != (nv ? QUARK_DTYPE_F8_E4M3 : QUARK_DTYPE_U8) ||
      sshape[0] != shape[0] || sshape[1] * (gint64) (group / 2) != shape[1])
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, nv
                   ? "layer %s: NVFP4 expects weight_packed uint8 [O, I/2] and weight_scale float8_e4m3fn [O, I/16]"
                   : "layer %s: MXFP4 expects weight_packed uint8 [O, I/2] and weight_scale uint8 [O, I/32]", layer);
      return NULL;
    }
  lshape[0] = shape[0];
  lshape[1] = shape[1] * 2;
  n = (gsize) (lshape[0] * lshape[1]);
  unpacked = g_malloc (MAX (n, 1));
  quark_kernel_unpack_fp4 (quark_tensor_peek_data (packed, NULL), n, unpacked);
  if ((codes = _quark_format_new_tensor (wname, QUARK_DTYPE_FP4_E2M1, lshape, 2, unpacked, n, error)) == NULL)
    return NULL;
  if (nv)
    {
      /* the effective scales, fl (E4M3 value / g); vLLM takes one g for a
       * fused layer, so several must agree */
      gsize ng, ns = quark_tensor_get_n_elements (scale);
      const float *g = quark_tensor_peek_data (global, &ng);
      const guint8 *c = quark_tensor_peek_data (scale, NULL);
      float *eff;
      ng /= sizeof (float);
      for (gsize k = 1; k < ng; k++)
        if (memcmp (&g[k], &g[0], sizeof (float)) != 0)
          {
            g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                         "tensor %s: the global scales of the fused parts differ", gname);
            return NULL;
          }
      if (ng == 0 || !(g[0] > 0.0f) || !isfinite (g[0]))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: expected a positive finite global "
                       "scale", gname);
          return NULL;
        }
      eff = g_new (float, MAX (ns, 1));
      for (gsize k = 0; k < ns; k++)
        eff[k] = quark_kernel_nvfp4_scale_to_f32 (c[k], g[0]);
      scales = _quark_format_new_tensor (quark_tensor_get_name (scale), QUARK_DTYPE_F32, sshape, 2, eff,
                                         ns * sizeof (float), error);
    }
  else
    scales = quark_tensor_new (quark_tensor_get_name (scale), QUARK_DTYPE_F8_E8M0, sshape, 2,
                               quark_tensor_get_data (scale), error);
  if (scales == NULL)
    return NULL;
  g_object_set (spec, "ch-axis", -1, "group-size", (int) group, "scale-format",
                nv ? QUARK_SCALE_FORMAT_E4M3 : QUARK_SCALE_FORMAT_E8M0, NULL);
  if ((result = quark_tensor_spec_dequantize (spec, codes, scales, NULL, error)) == NULL)
    return NULL;
  return _quark_format_renamed (result, wname, error);
}

/* Codes in groups that weight_g_idx assigns: x[r][c] = (q[r][c] −
 * z[r][g]) · s[r][g] with g = g_idx[c], the integer difference exact and
 * one binary32 multiply, as quark_tensor_spec_dequantize() does for groups
 * of consecutive columns */
static QuarkTensor *
dequantize_g_idx (QuarkTensor *g_idx, const CtArgs *a, QuarkTensor *codes, QuarkTensor *scale, QuarkTensor *zp,
                  gsize rows, gsize cols, const char *wname, GError **error)
{
  gsize groups = quark_tensor_get_n_elements (scale) / MAX (rows, 1), n;
  const float *s = quark_tensor_peek_data (scale, NULL);
  const gint32 *gi;
  g_autofree gint8 *q = NULL, *z = NULL;
  float *x;
  gint64 shape[2] = { (gint64) rows, (gint64) cols };

  if (!g_str_equal (a->strategy, "group") || quark_tensor_get_dtype (g_idx) != QUARK_DTYPE_I32 ||
      (gsize) quark_tensor_get_n_elements (g_idx) != cols || groups * rows != quark_tensor_get_n_elements (scale))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "%s: weight_g_idx must be int32 [%" G_GSIZE_FORMAT
                   "] beside weights in groups", wname, cols);
      return NULL;
    }
  if (!check_g_idx (g_idx, groups, wname, QUARK_ERROR_INVALID_FILE, error))
    return NULL;
  gi = quark_tensor_peek_data (g_idx, NULL);
  if ((q = _quark_format_codes_as_int8 (codes, 0, &n, error)) == NULL ||
      (zp && (z = _quark_format_codes_as_int8 (zp, 0, &n, error)) == NULL))
    return NULL;
  x = g_new (float, MAX (rows * cols, 1));
  for (gsize r = 0; r < rows; r++)
    for (gsize c = 0; c < cols; c++)
      {
        gsize at = r * groups + (gsize) gi[c];
        x[r * cols + c] = (float) ((gint32) q[r * cols + c] - (z ? (gint32) z[at] : 0)) * s[at];
      }
  return _quark_format_new_tensor (wname, QUARK_DTYPE_F32, shape, 2, x, rows * cols * sizeof (float), error);
}

/* One stored layer back to float32 through the spec the args describe. */
static QuarkTensor *
dequantize_layer (QuarkModel *m, const char *layer, const CtArgs *a, const char *format, GError **error)
{
  g_autofree char *wname = g_strconcat (layer, ".weight", NULL);
  g_autofree char *pname = g_strconcat (layer, ".weight_packed", NULL);
  g_autofree char *shname = g_strconcat (layer, ".weight_shape", NULL);
  g_autofree char *sname = g_strconcat (layer, ".weight_scale", NULL);
  g_autofree char *zname = g_strconcat (layer, ".weight_zero_point", NULL);
  g_autofree char *gname = g_strconcat (layer, ".weight_g_idx", NULL);
  QuarkTensor *scale, *zp_t, *t;
  g_autoptr(QuarkTensor) codes = NULL, zp = NULL, scale32 = NULL;
  g_autoptr(QuarkTensorSpec) spec = NULL;
  QuarkDType dtype = a->is_float ? QUARK_DTYPE_F8_E4M3 : signed_dtype (a->num_bits);
  gsize rows, cols, n_scale;
  g_autofree float *s = NULL;
  QuarkTensor *result;

  if (!need_tensor (m, sname, QUARK_DTYPE_F64, &scale, error))
    return NULL;
  if (a->mx || a->nv)
    return dequantize_fp4 (m, layer, a->nv, scale, error);
  if (quark_model_get_tensor (m, pname))
    {
      const gint64 *shape;
      guint n_dims;
      gint64 dims[2], lshape[2];
      if (a->is_float || !need_tensor (m, pname, QUARK_DTYPE_I32, &t, error) ||
          !need_tensor (m, shname, QUARK_DTYPE_F64, &zp_t, error))
        {
          if (a->is_float)
            g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: packed, but the scheme is float",
                         pname);
          return NULL;
        }
      {
        gsize nd;
        g_autofree float *d = quark_tensor_to_floats (zp_t, &nd, error);
        if (d == NULL)
          return NULL;
        if (nd != 2 || d[0] < 0 || d[1] < 0)
          {
            g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: expected two dimensions", shname);
            return NULL;
          }
        dims[0] = (gint64) d[0];
        dims[1] = (gint64) d[1];
      }
      shape = quark_tensor_get_shape (t, &n_dims);
      rows = (gsize) dims[0];
      cols = (gsize) dims[1];
      if (n_dims != 2 || (gsize) shape[0] != rows ||
          (gsize) shape[1] != (cols + 32 / a->num_bits - 1) / (32 / a->num_bits))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: its shape does not fit weight_shape",
                       pname);
          return NULL;
        }
      lshape[0] = (gint64) rows;
      lshape[1] = (gint64) cols;
      codes = _quark_format_new_tensor (wname, dtype, lshape, 2,
                                        unpack_rows (quark_tensor_peek_data (t, NULL), rows, (gsize) shape[1], cols,
                                                     a->num_bits), rows * cols, error);
      if (codes == NULL)
        return NULL;
    }
  else
    {
      const gint64 *shape;
      if (!need_tensor (m, wname, a->is_float ? QUARK_DTYPE_F8_E4M3 : QUARK_DTYPE_I8, &t, error))
        return NULL;
      if (quark_tensor_get_n_dims (t) != 2)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: expected 2 dimensions", wname);
          return NULL;
        }
      shape = quark_tensor_get_shape (t, NULL);
      rows = (gsize) shape[0];
      cols = (gsize) shape[1];
      /* int8 storage of narrower codes: the logical dtype over the same bytes */
      codes = quark_tensor_new (wname, dtype, shape, 2, quark_tensor_get_data (t), error);
      if (codes == NULL)
        return NULL;
    }
  (void) format;

  /* the spec */
  if (g_str_equal (a->strategy, "tensor"))
    spec = quark_tensor_spec_new (dtype, QUARK_QSCHEME_PER_TENSOR);
  else if (g_str_equal (a->strategy, "channel"))
    {
      spec = quark_tensor_spec_new (dtype, QUARK_QSCHEME_PER_CHANNEL);
      g_object_set (spec, "ch-axis", 0, NULL);
    }
  else if (g_str_equal (a->strategy, "group"))
    {
      spec = quark_tensor_spec_new (dtype, QUARK_QSCHEME_PER_GROUP);
      g_object_set (spec, "ch-axis", -1, "group-size", a->group_size, NULL);
    }
  else if (g_str_equal (a->strategy, "block"))
    {
      spec = quark_tensor_spec_new (dtype, QUARK_QSCHEME_PER_BLOCK);
      gint32 block[2] = { a->block[0], a->block[1] };
      g_object_set (spec, "block-size", g_variant_new_fixed_array (G_VARIANT_TYPE_INT32, block, 2, sizeof (gint32)),
                    NULL);
    }
  else
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "layer %s: weights with strategy %s", layer,
                   a->strategy);
      return NULL;
    }
  g_object_set (spec, "symmetric", a->symmetric, NULL);

  /* scales as float32, zero points as signed codes */
  if ((s = quark_tensor_to_floats (scale, &n_scale, error)) == NULL)
    return NULL;
  {
    gint64 n1[1] = { (gint64) n_scale };
    scale32 = quark_tensor_new_from_floats (sname, n1, 1, s, n_scale, error);
    if (scale32 == NULL)
      return NULL;
  }
  if (!a->symmetric && !a->is_float && (zp_t = quark_model_get_tensor (m, zname)) != NULL)
    {
      gint64 n1[1] = { (gint64) n_scale };
      if (quark_tensor_get_dtype (zp_t) == QUARK_DTYPE_I32 && !g_str_equal (a->strategy, "tensor") &&
          g_str_equal (format, PACK_QUANTIZED))
        {
          /* packed along the output dimension: [ceil(O / pf), G] */
          gsize groups = n_scale / MAX (rows, 1), zwpr = quark_tensor_get_n_elements (zp_t) / MAX (groups, 1);
          const guint32 *zw = quark_tensor_peek_data (zp_t, NULL);
          g_autofree guint32 *zwt = g_new (guint32, MAX (zwpr * groups, 1));
          g_autofree gint8 *zt = NULL;
          if (zwpr * groups != quark_tensor_get_n_elements (zp_t) || zwpr != (rows + 32 / a->num_bits - 1) / (32 / a->num_bits))
            {
              g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: its shape does not fit the scales",
                           zname);
              return NULL;
            }
          for (gsize w = 0; w < zwpr; w++)
            for (gsize g = 0; g < groups; g++)
              zwt[g * zwpr + w] = zw[w * groups + g];
          zt = unpack_rows (zwt, groups, zwpr, rows, a->num_bits);
          zp = _quark_format_new_tensor (zname, dtype, n1, 1, _quark_format_transpose_codes (zt, groups, rows), n_scale,
                                         error);
        }
      else if (quark_tensor_get_n_elements (zp_t) == n_scale &&
               (quark_tensor_get_dtype (zp_t) == QUARK_DTYPE_I8 || quark_tensor_get_dtype (zp_t) == QUARK_DTYPE_I32))
        {
          gsize nz;
          g_autofree float *zf = quark_tensor_to_floats (zp_t, &nz, error);
          gint8 *zb = g_malloc (MAX (nz, 1));
          if (zf == NULL)
            {
              g_free (zb);
              return NULL;
            }
          for (gsize i = 0; i < nz; i++)
            zb[i] = (gint8) zf[i];
          zp = _quark_format_new_tensor (zname, dtype, n1, 1, zb, nz, error);
        }
      else
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: its layout does not fit the scales",
                       zname);
          return NULL;
        }
      if (zp == NULL)
        return NULL;
    }
  else if (!a->symmetric && !a->is_float)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s is missing (the scheme is asymmetric)",
                   zname);
      return NULL;
    }

  if (quark_model_get_tensor (m, gname))
    result = dequantize_g_idx (quark_model_get_tensor (m, gname), a, codes, scale32, zp, rows, cols, wname, error);
  else
    result = quark_tensor_spec_dequantize (spec, codes, scale32, zp, error);
  if (result)
    {
      /* under the weight's own name */
      QuarkTensor *renamed = _quark_format_renamed (result, wname, error);
      g_object_unref (result);
      result = renamed;
    }
  return result;
}

/* The config group (of @groups, whose names are @group_names) that targets
 * @layer, its JSON path in @path; NULL without @error when none does. */
static JsonObject *
layer_group (JsonObject *groups, GList *group_names, const char *layer, gboolean is_linear, char **path,
             GError **error)
{
  for (GList *l = group_names; l; l = l->next)
    {
      JsonNode *gn = json_object_get_member (groups, l->data);
      g_autofree char *p = g_strdup_printf ("config_groups.%s", (const char *) l->data);
      JsonObject *g;
      JsonArray *targets;

      if (!JSON_NODE_HOLDS_OBJECT (gn))
        {
          bad_config (error, p, "expected an object");
          return NULL;
        }
      g = json_node_get_object (gn);
      if (!json_object_has_member (g, "targets") || !JSON_NODE_HOLDS_ARRAY (json_object_get_member (g, "targets")))
        {
          g_autofree char *tp = g_strconcat (p, ".targets", NULL);
          bad_config (error, tp, "expected a list");
          return NULL;
        }
      targets = json_object_get_array_member (g, "targets");
      for (guint k = 0; k < json_array_get_length (targets); k++)
        {
          JsonNode *tn = json_array_get_element (targets, k);
          if (JSON_NODE_HOLDS_VALUE (tn) && json_node_get_value_type (tn) == G_TYPE_STRING &&
              target_matches (json_node_get_string (tn), layer, is_linear))
            {
              *path = g_steal_pointer (&p);
              return g;
            }
        }
    }
  return NULL;
}

static gboolean
is_parameter_name (const char *name)
{
  static const char * const suffixes[] = { ".weight_packed", ".weight_shape", ".weight_scale", ".weight_zero_point",
                                            ".weight_g_idx", ".weight_global_scale", ".input_scale", ".input_global_scale",
                                            ".input_zero_point", ".output_scale", ".output_zero_point", ".k_scale",
                                            ".v_scale", NULL };
  for (guint i = 0; suffixes[i]; i++)
    if (g_str_has_suffix (name, suffixes[i]))
      return TRUE;
  return FALSE;
}

static QuarkModel *
ct_dequantize_model (QuarkCheckpointFormat *self, QuarkModel *checkpoint, GError **error)
{
  JsonObject *qc = _quark_format_quantization_config (checkpoint, error), *groups;
  JsonArray *ignore = NULL;
  const char *format;
  g_autoptr(QuarkModel) out = quark_model_new ();
  g_autoptr(GList) group_names = NULL;

  if (qc == NULL)
    return NULL;
  format = json_object_get_string_member_with_default (qc, "format", PACK_QUANTIZED);
  if (!g_str_equal (format, PACK_QUANTIZED) && !g_str_equal (format, INT_QUANTIZED) &&
      !g_str_equal (format, FLOAT_QUANTIZED) && !g_str_equal (format, "naive-quantized") &&
      !g_str_equal (format, MXFP4_PACK_QUANTIZED) && !g_str_equal (format, NVFP4_PACK_QUANTIZED))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                   "quantization_config.format: \"%s\" is not read (pack-quantized, int-quantized, float-quantized, "
                   "mxfp4-pack-quantized, nvfp4-pack-quantized and naive-quantized are)", format);
      return NULL;
    }
  if (!json_object_has_member (qc, "config_groups") ||
      !JSON_NODE_HOLDS_OBJECT (json_object_get_member (qc, "config_groups")))
    {
      bad_config (error, "config_groups", "expected an object");
      return NULL;
    }
  groups = json_object_get_object_member (qc, "config_groups");
  if (json_object_has_member (qc, "ignore") && JSON_NODE_HOLDS_ARRAY (json_object_get_member (qc, "ignore")))
    ignore = json_object_get_array_member (qc, "ignore");
  group_names = json_object_get_members (groups);

  for (guint i = 0; i < quark_model_get_n_tensors (checkpoint); i++)
    {
      QuarkTensor *t = quark_model_get_tensor_at (checkpoint, i);
      const char *name = quark_tensor_get_name (t);
      g_autofree char *layer = NULL;
      const char *suffix = g_str_has_suffix (name, ".weight_packed") ? ".weight_packed"
                           : g_str_has_suffix (name, ".weight") ? ".weight" : NULL;
      gboolean quantized = FALSE;

      if (suffix)
        {
          g_autofree char *sname = NULL;
          layer = g_strndup (name, strlen (name) - strlen (suffix));
          sname = g_strconcat (layer, ".weight_scale", NULL);
          quantized = quark_model_get_tensor (checkpoint, sname) != NULL;
        }
      if (quantized && !in_list (ignore, layer))
        {
          gboolean is_linear = quark_tensor_get_n_dims (t) == 2;
          CtArgs a;
          g_autoptr(QuarkTensor) x = NULL;
          g_autofree char *path = NULL, *wp = NULL;
          JsonObject *g;
          GError *local_error = NULL;

          if ((g = layer_group (groups, group_names, layer, is_linear, &path, &local_error)) == NULL)
            {
              if (local_error)
                g_propagate_error (error, local_error);
              else
                g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                             "layer %s has quantized weights but no config group targets it", layer);
              return NULL;
            }
          wp = g_strconcat (path, ".weights", NULL);
          if (!ct_args_from_json (json_object_get_member (g, "weights"), wp, &a, error))
            return NULL;
          if ((x = dequantize_layer (checkpoint, layer, &a, format, error)) == NULL ||
              !quark_model_add_tensor (out, x, error))
            return NULL;
          continue;
        }
      if (is_parameter_name (name))
        continue;
      if (!quark_model_add_tensor (out, t, error))
        return NULL;
    }
  quark_model_set_metadata (out, quark_model_get_metadata (checkpoint));
  return g_steal_pointer (&out);
}

/* ---- the inputs, as an engine quantizes them --------------------------------- */

static gboolean
input_unsupported (GError **error, const char *layer, const char *what)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
               "layer %s: its input_activations (%s) are not run by libquark (static int8/FP8 per tensor; "
               "dynamic int8/FP8 per tensor, token or group; MXFP4 and NVFP4 are)", layer, what);
  return FALSE;
}

/* The KV cache of k_proj or v_proj @layer as kv_cache_scheme describes it
 * (static FP8 per tensor, what vLLM's CompressedTensorsKVCacheMethod
 * takes) with its scale: LAYER.output_scale as libquark writes it, or
 * ATTENTION.k_scale / v_scale as llm-compressor does */
static gboolean
ct_read_kv_cache (QuarkModel *checkpoint, JsonObject *qc, const char *layer, QuarkTensorSpec **spec,
                  QuarkTensor **scale, GError **error)
{
  gboolean keys = g_str_has_suffix (layer, ".k_proj");
  g_autofree char *output_scale = g_strconcat (layer, ".output_scale", NULL);
  g_autofree char *attn_scale = NULL;
  JsonNode *node = json_object_get_member (qc, "kv_cache_scheme");
  QuarkTensor *t;
  CtArgs a;

  if (!(keys || g_str_has_suffix (layer, ".v_proj")) || node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (!ct_args_from_json (node, "kv_cache_scheme", &a, error))
    return FALSE;
  if (!a.is_float || a.num_bits != 8 || a.dynamic || !a.symmetric || !g_str_equal (a.strategy, "tensor"))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "quantization_config.kv_cache_scheme: libquark runs a static FP8 per-tensor KV cache, not %s "
                   "%u-bit %s%s", a.is_float ? "float" : "int", a.num_bits, a.strategy, a.dynamic ? " dynamic" : "");
      return FALSE;
    }
  attn_scale = g_strdup_printf ("%.*s.%s", (int) (strlen (layer) - strlen (".k_proj")), layer,
                                keys ? "k_scale" : "v_scale");
  if ((t = quark_model_get_tensor (checkpoint, output_scale)) == NULL &&
      (t = quark_model_get_tensor (checkpoint, attn_scale)) == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "kv_cache_scheme is set, but neither %s nor %s "
                   "is in the checkpoint", output_scale, attn_scale);
      return FALSE;
    }
  if (quark_tensor_get_n_elements (t) != 1 || !quark_dtype_is_quantizable (quark_tensor_get_dtype (t)))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: one float value expected",
                   quark_tensor_get_name (t));
      return FALSE;
    }
  *scale = g_object_ref (t);
  *spec = g_object_new (QUARK_TYPE_TENSOR_SPEC, "dtype", QUARK_DTYPE_F8_E4M3, "qscheme", QUARK_QSCHEME_PER_TENSOR,
                        NULL);
  return TRUE;
}

/* A layer's input_activations as a libquark spec: static per tensor
 * (LAYER.input_scale, input_zero_point), dynamic per tensor, per token
 * (per_channel along axis 0 of [tokens, features]) or per group, MXFP4
 * (the OCP rule: the shared exponent floor (log2 amax) - 2), NVFP4 with
 * LAYER.input_global_scale. */
static gboolean
ct_read_activation (QuarkCheckpointFormat *self, QuarkModel *checkpoint, const char *layer, QuarkRole role,
                    QuarkTensorSpec **spec, QuarkTensor **scale, QuarkTensor **zero_point, GError **error)
{
  JsonObject *qc = _quark_format_quantization_config (checkpoint, error), *groups, *g;
  JsonArray *ignore = NULL;
  g_autoptr(GList) group_names = NULL;
  g_autofree char *path = NULL, *ip = NULL;
  g_autofree char *scale_name = g_strconcat (layer, ".input_scale", NULL);
  g_autofree char *zp_name = g_strconcat (layer, ".input_zero_point", NULL);
  g_autofree char *global_name = g_strconcat (layer, ".input_global_scale", NULL);
  JsonNode *node;
  QuarkTensor *t;
  QuarkDType dtype;
  CtArgs a;

  if (qc == NULL)
    return FALSE;
  if (role == QUARK_ROLE_OUTPUT)
    return ct_read_kv_cache (checkpoint, qc, layer, spec, scale, error);
  if (!json_object_has_member (qc, "config_groups") ||
      !JSON_NODE_HOLDS_OBJECT (json_object_get_member (qc, "config_groups")))
    return bad_config (error, "config_groups", "expected an object");
  groups = json_object_get_object_member (qc, "config_groups");
  if (json_object_has_member (qc, "ignore") && JSON_NODE_HOLDS_ARRAY (json_object_get_member (qc, "ignore")))
    ignore = json_object_get_array_member (qc, "ignore");
  if (in_list (ignore, layer))
    return TRUE;
  group_names = json_object_get_members (groups);
  if ((g = layer_group (groups, group_names, layer, TRUE, &path, error)) == NULL)
    return error == NULL || *error == NULL;
  node = json_object_get_member (g, "input_activations");
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  ip = g_strconcat (path, ".input_activations", NULL);
  if (!ct_args_from_json (node, ip, &a, error))
    return FALSE;

  if (a.nv)
    {
      if (!a.local)
        return input_unsupported (error, layer, "NVFP4 whose group scales are not dynamic \"local\"");
      if (!need_tensor (checkpoint, global_name, QUARK_DTYPE_F32, &t, error))
        return FALSE;
      *spec = g_object_new (QUARK_TYPE_TENSOR_SPEC, "dtype", QUARK_DTYPE_FP4_E2M1, "qscheme", QUARK_QSCHEME_PER_GROUP,
                            "ch-axis", -1, "group-size", 16, "scale-format", QUARK_SCALE_FORMAT_E4M3,
                            "is-dynamic", TRUE, NULL);
      *scale = g_object_ref (t);
      return TRUE;
    }
  if (a.mx)
    {
      if (!a.dynamic)
        return input_unsupported (error, layer, "static MXFP4");
      *spec = g_object_new (QUARK_TYPE_TENSOR_SPEC, "dtype", QUARK_DTYPE_FP4_E2M1, "qscheme", QUARK_QSCHEME_PER_GROUP,
                            "ch-axis", -1, "group-size", 32, "scale-format", QUARK_SCALE_FORMAT_E8M0,
                            "scale-calculation-mode", QUARK_MX_SCALE_FLOOR, "is-dynamic", TRUE, NULL);
      return TRUE;
    }
  if (a.num_bits != 8)
    return input_unsupported (error, layer, "inputs of other than 8 bits");
  dtype = a.is_float ? QUARK_DTYPE_F8_E4M3 : a.symmetric ? QUARK_DTYPE_I8 : QUARK_DTYPE_U8;
  if (a.dynamic)
    {
      QuarkQScheme q;
      if (!a.symmetric)
        return input_unsupported (error, layer, "dynamic asymmetric");
      if (g_str_equal (a.strategy, "tensor"))
        q = QUARK_QSCHEME_PER_TENSOR;
      else if (g_str_equal (a.strategy, "token"))
        q = QUARK_QSCHEME_PER_CHANNEL;
      else if (g_str_equal (a.strategy, "group"))
        q = QUARK_QSCHEME_PER_GROUP;
      else
        return input_unsupported (error, layer, a.strategy);
      *spec = g_object_new (QUARK_TYPE_TENSOR_SPEC, "dtype", dtype, "qscheme", q,
                            "ch-axis", q == QUARK_QSCHEME_PER_CHANNEL ? 0 : -1,
                            "group-size", q == QUARK_QSCHEME_PER_GROUP ? a.group_size : 0, "is-dynamic", TRUE, NULL);
      return TRUE;
    }
  if (!g_str_equal (a.strategy, "tensor"))
    return input_unsupported (error, layer, "static, not per tensor");
  if (!need_tensor (checkpoint, scale_name, QUARK_DTYPE_F64, &t, error))
    return FALSE;
  if (quark_tensor_get_n_elements (t) != 1)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: one value expected", scale_name);
      return FALSE;
    }
  *scale = g_object_ref (t);
  if (!a.symmetric)
    {
      /* stored signed (int8 codes); libquark's uint8 zero point is 128 more */
      g_autofree float *zf = NULL;
      float z;
      gsize n = 0;
      if (!need_tensor (checkpoint, zp_name, QUARK_DTYPE_F64, &t, error) ||
          (zf = quark_tensor_to_floats (t, &n, error)) == NULL)
        return FALSE;
      if (n != 1)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "tensor %s: one value expected", zp_name);
          return FALSE;
        }
      z = zf[0] + 128.0f;
      if ((*zero_point = quark_tensor_new_from_floats (zp_name, NULL, 0, &z, 1, error)) == NULL)
        return FALSE;
    }
  *spec = g_object_new (QUARK_TYPE_TENSOR_SPEC, "dtype", dtype, "qscheme", QUARK_QSCHEME_PER_TENSOR,
                        "symmetric", a.symmetric, NULL);
  return TRUE;
}

static void
ct_finalize (GObject *object)
{
  QuarkFormatCompressedTensors *self = (QuarkFormatCompressedTensors *) object;

  g_clear_object (&self->kv_spec);
  g_free (self->kv_layer);
  g_hash_table_unref (self->g_idx_layers);
  g_mutex_clear (&self->lock);
  G_OBJECT_CLASS (_quark_format_compressed_tensors_parent_class)->finalize (object);
}

static void
_quark_format_compressed_tensors_class_init (QuarkFormatCompressedTensorsClass *klass)
{
  QuarkCheckpointFormatClass *format_class = QUARK_CHECKPOINT_FORMAT_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = ct_finalize;
  format_class->name = "compressed-tensors";
  format_class->description = "llm-compressor's layout (vLLM's compressed_tensors path, transformers)";
  format_class->prepare = ct_prepare;
  format_class->check_weight = ct_check_weight;
  format_class->get_scale_dtype = ct_get_scale_dtype;
  format_class->get_code_layout = ct_get_code_layout;
  format_class->write_weight = ct_export_weight;
  format_class->write_activation = ct_export_activation;
  format_class->build_quantization_config = ct_build_quantization_config;
  format_class->quant_method = "compressed-tensors";
  format_class->dequantize_model = ct_dequantize_model;
  format_class->read_activation = ct_read_activation;
  format_class->fake_quantize_activation = _quark_format_fake_quantize_input;
  format_class->stores_column_order = TRUE;
  format_class->kv_cache_after_rope = TRUE;
}

static void
_quark_format_compressed_tensors_init (QuarkFormatCompressedTensors *self)
{
  self->g_idx_layers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_mutex_init (&self->lock);
}
