/* quark-model.c: an ordered set of named tensors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-model.h"
#include "quark-model-private.h"
#include "quark-error.h"
#include "quark-json.h"

/**
 * QuarkModel:
 *
 * An ordered set of named [class@Quark.Tensor]s plus metadata: the content of
 * the model's `config.json` when there is one.
 *
 * A model lists its tensors in the order they were added and is a
 * [iface@Gio.ListModel] of them. Names are unique.
 *
 * A model may be read from several threads at once; adding tensors or
 * replacing the metadata while other threads read it is not safe.
 */
struct _QuarkModel
{
  GObject parent_instance;

  GPtrArray *tensors;       /* QuarkTensor, in order */
  GHashTable *by_name;      /* name (owned by the tensor) -> QuarkTensor */
  JsonNode *metadata;
  GPtrArray *sources;       /* QuarkInputFile the tensors were read from */
};

enum {
  PROP_0,
  PROP_N_TENSORS,
  PROP_METADATA,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void list_model_iface_init (GListModelInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (QuarkModel, quark_model, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_LIST_MODEL, list_model_iface_init))

static GType
quark_model_get_item_type (GListModel *list)
{
  return QUARK_TYPE_TENSOR;
}

static guint
quark_model_get_n_items (GListModel *list)
{
  return QUARK_MODEL (list)->tensors->len;
}

static gpointer
quark_model_get_item (GListModel *list,
                      guint       position)
{
  QuarkModel *self = QUARK_MODEL (list);

  if (position >= self->tensors->len)
    return NULL;
  return g_object_ref (g_ptr_array_index (self->tensors, position));
}

static void
list_model_iface_init (GListModelInterface *iface)
{
  iface->get_item_type = quark_model_get_item_type;
  iface->get_n_items = quark_model_get_n_items;
  iface->get_item = quark_model_get_item;
}

static void
quark_model_finalize (GObject *object)
{
  QuarkModel *self = QUARK_MODEL (object);

  g_hash_table_unref (self->by_name);
  g_ptr_array_unref (self->tensors);
  g_clear_pointer (&self->metadata, json_node_unref);
  g_ptr_array_unref (self->sources);

  G_OBJECT_CLASS (quark_model_parent_class)->finalize (object);
}

static void
quark_model_get_property (GObject    *object,
                          guint       prop_id,
                          GValue     *value,
                          GParamSpec *pspec)
{
  QuarkModel *self = QUARK_MODEL (object);

  switch (prop_id)
    {
    case PROP_N_TENSORS:
      g_value_set_uint (value, self->tensors->len);
      break;
    case PROP_METADATA:
      g_value_set_boxed (value, self->metadata);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
quark_model_set_property (GObject      *object,
                          guint         prop_id,
                          const GValue *value,
                          GParamSpec   *pspec)
{
  QuarkModel *self = QUARK_MODEL (object);

  switch (prop_id)
    {
    case PROP_METADATA:
      quark_model_set_metadata (self, g_value_get_boxed (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
quark_model_class_init (QuarkModelClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = quark_model_finalize;
  object_class->get_property = quark_model_get_property;
  object_class->set_property = quark_model_set_property;

  /**
   * QuarkModel:n-tensors: (getter get_n_tensors)
   *
   * The number of tensors.
   */
  properties[PROP_N_TENSORS] =
    g_param_spec_uint ("n-tensors", "Tensors", "The number of tensors",
                       0, G_MAXUINT, 0,
                       G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  /**
   * QuarkModel:metadata: (getter get_metadata) (setter set_metadata)
   *
   * The model's metadata (its `config.json`), or %NULL.
   */
  properties[PROP_METADATA] =
    g_param_spec_boxed ("metadata", "Metadata", "The model's config.json content",
                        JSON_TYPE_NODE,
                        G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
quark_model_init (QuarkModel *self)
{
  self->tensors = g_ptr_array_new_with_free_func (g_object_unref);
  self->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  self->sources = g_ptr_array_new_with_free_func ((GDestroyNotify) _quark_input_file_unref);
}

/**
 * quark_model_new:
 *
 * Makes an empty model.
 *
 * Returns: (transfer full): a new model
 */
QuarkModel *
quark_model_new (void)
{
  return g_object_new (QUARK_TYPE_MODEL, NULL);
}

/**
 * quark_model_add_tensor:
 * @self: a #QuarkModel
 * @tensor: the tensor to add
 * @error: return location for a #GError
 *
 * Appends @tensor. Tensor names are unique within a model.
 *
 * Returns: %TRUE on success; %FALSE with %QUARK_ERROR_INVALID_ARGUMENT if a
 *   tensor of that name is already present
 */
gboolean
quark_model_add_tensor (QuarkModel   *self,
                        QuarkTensor  *tensor,
                        GError      **error)
{
  const char *name;

  g_return_val_if_fail (QUARK_IS_MODEL (self), FALSE);
  g_return_val_if_fail (QUARK_IS_TENSOR (tensor), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  name = quark_tensor_get_name (tensor);
  if (g_hash_table_contains (self->by_name, name))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "tensor %s: a tensor of that name is already in the model", name);
      return FALSE;
    }

  g_ptr_array_add (self->tensors, g_object_ref (tensor));
  g_hash_table_insert (self->by_name, (gpointer) name, tensor);
  g_list_model_items_changed (G_LIST_MODEL (self), self->tensors->len - 1, 0, 1);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_TENSORS]);
  return TRUE;
}

/**
 * quark_model_get_tensor:
 * @self: a #QuarkModel
 * @name: a tensor name
 *
 * Looks up a tensor by name.
 *
 * Returns: (transfer none) (nullable): the tensor, or %NULL
 */
QuarkTensor *
quark_model_get_tensor (QuarkModel *self,
                        const char *name)
{
  g_return_val_if_fail (QUARK_IS_MODEL (self), NULL);
  g_return_val_if_fail (name != NULL, NULL);
  return g_hash_table_lookup (self->by_name, name);
}

/**
 * quark_model_get_tensor_at:
 * @self: a #QuarkModel
 * @position: an index below quark_model_get_n_tensors()
 *
 * Gets the tensor at @position in insertion order.
 *
 * Returns: (transfer none) (nullable): the tensor, or %NULL if @position is
 *   out of range
 */
QuarkTensor *
quark_model_get_tensor_at (QuarkModel *self,
                           guint       position)
{
  g_return_val_if_fail (QUARK_IS_MODEL (self), NULL);
  if (position >= self->tensors->len)
    return NULL;
  return g_ptr_array_index (self->tensors, position);
}

/**
 * quark_model_get_n_tensors: (get-property n-tensors)
 * @self: a #QuarkModel
 *
 * Gets the number of tensors.
 *
 * Returns: the number of tensors
 */
guint
quark_model_get_n_tensors (QuarkModel *self)
{
  g_return_val_if_fail (QUARK_IS_MODEL (self), 0);
  return self->tensors->len;
}

/**
 * quark_model_get_tensor_names:
 * @self: a #QuarkModel
 *
 * Lists the tensor names in order.
 *
 * Returns: (transfer full) (array zero-terminated=1): the names
 */
char **
quark_model_get_tensor_names (QuarkModel *self)
{
  GStrvBuilder *builder;
  char **names;

  g_return_val_if_fail (QUARK_IS_MODEL (self), NULL);

  builder = g_strv_builder_new ();
  for (guint i = 0; i < self->tensors->len; i++)
    g_strv_builder_add (builder, quark_tensor_get_name (g_ptr_array_index (self->tensors, i)));
  names = g_strv_builder_end (builder);
  g_strv_builder_unref (builder);
  return names;
}

/**
 * quark_model_get_metadata: (get-property metadata)
 * @self: a #QuarkModel
 *
 * Gets the model's metadata: the content of its `config.json`.
 *
 * Returns: (transfer none) (nullable): the metadata, or %NULL
 */
JsonNode *
quark_model_get_metadata (QuarkModel *self)
{
  g_return_val_if_fail (QUARK_IS_MODEL (self), NULL);
  return self->metadata;
}

/**
 * quark_model_set_metadata: (set-property metadata)
 * @self: a #QuarkModel
 * @metadata: (nullable): the metadata, usually a JSON object
 *
 * Replaces the model's metadata with a copy of @metadata.
 */
void
quark_model_set_metadata (QuarkModel *self,
                          JsonNode   *metadata)
{
  g_return_if_fail (QUARK_IS_MODEL (self));

  g_clear_pointer (&self->metadata, json_node_unref);
  if (metadata)
    self->metadata = quark_json_copy (metadata);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_METADATA]);
}

void
_quark_model_add_source (QuarkModel     *self,
                         QuarkInputFile *file)
{
  g_ptr_array_add (self->sources, _quark_input_file_ref (file));
}

void
_quark_model_copy_sources (QuarkModel *self,
                           QuarkModel *from)
{
  for (guint i = 0; i < from->sources->len; i++)
    _quark_model_add_source (self, g_ptr_array_index (from->sources, i));
}

/**
 * quark_model_check_sources:
 * @self: a #QuarkModel
 * @error: return location for a #GError
 *
 * Checks that the files @self was loaded from (quark_model_load()) are
 * still as they were when they were opened: same file, same size, same
 * modification time, and none of them shrank while its tensors were read.
 * Quantizers call this before they report success, so that no output is
 * computed from two versions of an input; a model made in memory has no
 * files and always passes.
 *
 * Returns: %TRUE when every file is unchanged; %FALSE with %QUARK_ERROR_IO
 *   naming the file that changed
 */
gboolean
quark_model_check_sources (QuarkModel  *self,
                           GError     **error)
{
  g_return_val_if_fail (QUARK_IS_MODEL (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  for (guint i = 0; i < self->sources->len; i++)
    if (!_quark_input_file_check (g_ptr_array_index (self->sources, i), error))
      return FALSE;
  return TRUE;
}

/* A tensor name P.weight (or P.qweight, P.weight_packed) with P's scale
 * beside it: the names of AMD Quark, compressed-tensors, AutoAWQ and FP8
 * block checkpoints. */
static const char *
quantized_weight_scale (QuarkModel *self, QuarkTensor *t)
{
  static const struct { const char *weight, *scale; } pairs[] = {
    { ".weight", ".weight_scale" }, { ".weight", ".weight_scale_inv" },
    { ".weight_packed", ".weight_scale" }, { ".qweight", ".scales" },
  };
  const char *name = quark_tensor_get_name (t);
  QuarkDType dtype = quark_tensor_get_dtype (t);

  if (quark_dtype_is_quantizable (dtype) || dtype == QUARK_DTYPE_BOOL)
    return NULL;
  for (guint i = 0; i < G_N_ELEMENTS (pairs); i++)
    if (g_str_has_suffix (name, pairs[i].weight))
      {
        g_autofree char *prefix = g_strndup (name, strlen (name) - strlen (pairs[i].weight));
        g_autofree char *scale = g_strconcat (prefix, pairs[i].scale, NULL);
        QuarkTensor *s = quark_model_get_tensor (self, scale);
        if (s != NULL)
          return quark_tensor_get_name (s);
      }
  return NULL;
}

/**
 * quark_model_is_quantized:
 * @self: a #QuarkModel
 * @reason: (out) (optional) (nullable) (transfer full): why, in words, or
 *   %NULL
 *
 * Tells whether @self is already a quantized checkpoint: its metadata has a
 * `quantization_config`, or it holds integer or FP8 weights with their
 * scales beside them (`P.weight` with `P.weight_scale` or
 * `P.weight_scale_inv`, `P.weight_packed` with `P.weight_scale`,
 * `P.qweight` with `P.scales`). Quantizers refuse such models: quantizing
 * codes again as if they were weights would be meaningless. Dequantize it
 * first (quark_model_quantizer_dequantize_model()).
 *
 * Returns: %TRUE when @self is quantized
 */
gboolean
quark_model_is_quantized (QuarkModel  *self,
                          char       **reason)
{
  g_return_val_if_fail (QUARK_IS_MODEL (self), FALSE);

  if (reason)
    *reason = NULL;
  if (self->metadata && JSON_NODE_HOLDS_OBJECT (self->metadata) &&
      json_object_has_member (json_node_get_object (self->metadata), "quantization_config"))
    {
      JsonNode *qc = json_object_get_member (json_node_get_object (self->metadata), "quantization_config");
      const char *method = qc && JSON_NODE_HOLDS_OBJECT (qc)
        ? json_object_get_string_member_with_default (json_node_get_object (qc), "quant_method", NULL) : NULL;
      if (reason)
        *reason = method ? g_strdup_printf ("its config.json has a quantization_config (quant_method \"%s\")", method)
                         : g_strdup ("its config.json has a quantization_config");
      return TRUE;
    }
  for (guint i = 0; i < self->tensors->len; i++)
    {
      QuarkTensor *t = g_ptr_array_index (self->tensors, i);
      const char *scale = quantized_weight_scale (self, t);
      if (scale)
        {
          if (reason)
            *reason = g_strdup_printf ("tensor %s holds %s codes with scales in %s", quark_tensor_get_name (t),
                                       quark_dtype_get_name (quark_tensor_get_dtype (t)), scale);
          return TRUE;
        }
    }
  return FALSE;
}

char *
_quark_model_get_directory (QuarkModel *self)
{
  g_return_val_if_fail (QUARK_IS_MODEL (self), NULL);
  if (self->sources->len == 0)
    return NULL;
  return g_path_get_dirname (_quark_input_file_get_path (g_ptr_array_index (self->sources, 0)));
}
