/* quark-brevitas-config.h: the brevitas backend's config (AMD Quark's
 * Brevitas extension: layer specs of Brevitas quantizers)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <quark.h>

#include "quark-brevitas-spec.h"

G_BEGIN_DECLS

/* algo_config: what runs after a weight is quantized */
typedef struct {
  gboolean gptq;
  gboolean gpfq;                /* GPFQ instead of GPTQ (one of them); act_order is its own then */
  gboolean act_order;           /* GPTQ's (GPFQ's) columns in descending order of H's diagonal */
  guint num_blocks;             /* Brevitas's: blocks of ceil (in_features / num_blocks) columns */
  double damp_percent;          /* Brevitas's percdamp */
  gboolean bias_correction;
  gboolean bias_correction_first;   /* listed before gptq or gpfq: it corrects round-to-nearest's error */
  /* pre_quant_opt_config: what changes the float model before calibration */
  gboolean equalize;            /* activation equalization */
  double equalize_alpha;
  JsonNode *scaling_layers;     /* its regions as given (AMD Quark's schema), owned, or NULL: the topology's */
  char *decoder_layers;         /* the decoder layers' name prefix as given, owned, or NULL */
} BvAlgorithms;

#define BV_ALGORITHMS_INIT { .num_blocks = 100, .damp_percent = 0.01, .equalize_alpha = 0.5 }

#define QUARK_TYPE_BREVITAS_CONFIG (quark_brevitas_config_get_type ())
G_DECLARE_FINAL_TYPE (QuarkBrevitasConfig, quark_brevitas_config, QUARK, BREVITAS_CONFIG, GObject)

/* The quantizer @config gives a layer's @role, or NULL: the core's
 * precedence (exclude, names, types, global) over this config's levels. */
BvSpec * quark_brevitas_config_get_bv_spec (QuarkBrevitasConfig *config,
                                            const char          *layer,
                                            const char          *layer_type,
                                            QuarkRole            role,
                                            QuarkTensorSpec    **tspec);

const BvAlgorithms * quark_brevitas_config_get_algorithms (QuarkBrevitasConfig *config);

G_END_DECLS
