/* quark-quark-config.h: the quark backend's config (AMD Quark's config model)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <quark.h>

G_BEGIN_DECLS

#define QUARK_TYPE_QUARK_LAYER_CONFIG (quark_quark_layer_config_get_type ())
G_DECLARE_FINAL_TYPE (QuarkQuarkLayerConfig, quark_quark_layer_config, QUARK, QUARK_LAYER_CONFIG, GObject)

#define QUARK_TYPE_QUARK_CONFIG (quark_quark_config_get_type ())
G_DECLARE_FINAL_TYPE (QuarkQuarkConfig, quark_quark_config, QUARK, QUARK_CONFIG, GObject)

QuarkTensorSpec *quark_quark_layer_config_get_spec (QuarkQuarkLayerConfig *self,
                                                    QuarkRole              role);

/* algo_config's GPTQ entry */
typedef struct {
  gboolean enabled;
  double damp_percent;
  guint block_size;
  gboolean desc_act;
  gboolean static_groups;       /* FALSE: dynamic groups (needs desc_act FALSE) */
  gboolean refine_scales;       /* libquark's: scales refit to GPTQ's codes (quark_gptq_refine_scales()) */
  gboolean correct_input_error; /* libquark's: the float model's outputs as target (quark_gptq_correct_weight()) */
  gboolean true_sequential;     /* sequential calibration in steps within a decoder layer (QuarkExecutor:sequential-steps) */
} QuarkQuarkGptq;

/* algo_config's AWQ or SmoothQuant entry: per-input-channel scales folded
 * into the layers that produce the input */
typedef enum {
  QUARK_QUARK_SCALING_AWQ,
  QUARK_QUARK_SCALING_SMOOTHQUANT,
} QuarkQuarkScalingKind;

typedef struct {
  gboolean enabled;
  QuarkQuarkScalingKind kind;
  char *name;                   /* as the config names it: awq, smooth or smoothquant */
  JsonNode *scaling_layers;     /* a checked list in AMD Quark's schema; NULL: the model's topology */
  char *decoder_layers;         /* model_decoder_layers; NULL: the topology's */
  guint n_grid;                 /* AWQ: scale search points (libquark's key; AMD Quark's 20) */
  gboolean clip;                /* AWQ: the clipping search (libquark's key; AMD Quark always clips) */
  double alpha, clamp_min;      /* SmoothQuant: migration strength, smallest scale */
} QuarkQuarkScaling;

/* algo_config's rotation entry (AMD Quark's RotationConfig) */
typedef struct {
  gboolean enabled;
  gboolean random;              /* random signs on the Hadamard matrix's rows */
  guint64 seed;                 /* libquark's key: their seed */
} QuarkQuarkRotation;

/* The metadata key that marks a model rotated by prepare_model() */
#define QUARK_QUARK_PREPARED_KEY "libquark_prepared"

/* One scaling group, names relative to a decoder layer */
typedef struct {
  char *prev_op;
  GStrv layers;
  char *inp;
} QuarkQuarkScalingGroup;

/* A list in AMD Quark's scaling_layers schema to groups (errors name @path) */
GPtrArray *quark_quark_scaling_groups_parse (JsonNode *node, const char *path, GError **error);

gboolean quark_quark_config_get_pack_reorder (QuarkQuarkConfig *self);
gboolean quark_quark_config_get_kv_cache_post_rope (QuarkQuarkConfig *self);
const QuarkQuarkScaling *quark_quark_config_get_scaling (QuarkQuarkConfig *self);
const QuarkQuarkRotation *quark_quark_config_get_rotation (QuarkQuarkConfig *self);
const QuarkQuarkGptq *quark_quark_config_get_gptq (QuarkQuarkConfig *self);
float    quark_quark_config_get_min_kv_scale (QuarkQuarkConfig *self, const char *layer);

gboolean quark_quark_check_spec (QuarkTensorSpec  *spec,
                                 QuarkRole         role,
                                 const char       *path,
                                 GError          **error);

G_END_DECLS
