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
} QuarkQuarkGptq;

gboolean quark_quark_config_get_pack_reorder (QuarkQuarkConfig *self);
const QuarkQuarkGptq *quark_quark_config_get_gptq (QuarkQuarkConfig *self);
float    quark_quark_config_get_min_kv_scale (QuarkQuarkConfig *self, const char *layer);

gboolean quark_quark_check_spec (QuarkTensorSpec  *spec,
                                 QuarkRole         role,
                                 const char       *path,
                                 GError          **error);

G_END_DECLS
