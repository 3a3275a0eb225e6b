/* quark-backend.c: a registered backend
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-backend-private.h"
#include "quark-enum-types.h"
#include "quark-error.h"
#include "quark-json.h"
#include "quark-registry.h"

/**
 * QuarkBackend:
 *
 * One backend as the registry knows it: a name, a description, a version,
 * the config and quantizer types that implement
 * [iface@Quark.QuantizationConfig] and [iface@Quark.ModelQuantizer], what it
 * supports, where it was loaded from, and whether it can run here.
 *
 * Backend modules make one with [ctor@Quark.Backend.new], fill in its
 * metadata and hand it to [method@Quark.BackendModule.add_backend]; code
 * (including Python) may register one directly with
 * [method@Quark.Registry.add_backend]. Once registered a backend is
 * immutable, and may be shared between threads.
 */
struct _QuarkBackend
{
  GObject parent_instance;

  char *name;
  char *description;
  char *version;
  GType config_type;
  GType quantizer_type;
  char *module_path;
  GArray *dtypes;     /* QuarkDType */
  GArray *qschemes;   /* QuarkQScheme */
  GPtrArray *presets;     /* Preset */
  QuarkBackendAvailableFunc available_func;
  gpointer available_data;
  gboolean registered;
};

enum {
  PROP_0,
  PROP_NAME,
  PROP_DESCRIPTION,
  PROP_VERSION,
  PROP_CONFIG_TYPE,
  PROP_QUANTIZER_TYPE,
  PROP_MODULE_PATH,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

typedef struct {
  char *name;
  char *description;
  char *json;
  GPtrArray *aliases;   /* other names of the preset, such as a tool's own */
} Preset;

static void
preset_free (gpointer data)
{
  Preset *p = data;
  g_free (p->name);
  g_free (p->description);
  g_free (p->json);
  g_ptr_array_unref (p->aliases);
  g_free (p);
}

G_DEFINE_FINAL_TYPE (QuarkBackend, quark_backend, G_TYPE_OBJECT)

/* g_set_str() is GLib 2.76; we support 2.74 */
static gboolean
replace_str (char       **str,
             const char  *value)
{
  if (g_strcmp0 (*str, value) == 0)
    return FALSE;
  g_free (*str);
  *str = g_strdup (value);
  return TRUE;
}

static void
quark_backend_finalize (GObject *object)
{
  QuarkBackend *self = QUARK_BACKEND (object);

  g_free (self->name);
  g_free (self->description);
  g_free (self->version);
  g_free (self->module_path);
  g_array_unref (self->dtypes);
  g_array_unref (self->qschemes);
  g_ptr_array_unref (self->presets);

  G_OBJECT_CLASS (quark_backend_parent_class)->finalize (object);
}

static void
quark_backend_get_property (GObject    *object,
                            guint       prop_id,
                            GValue     *value,
                            GParamSpec *pspec)
{
  QuarkBackend *self = QUARK_BACKEND (object);

  switch (prop_id)
    {
    case PROP_NAME: g_value_set_string (value, self->name); break;
    case PROP_DESCRIPTION: g_value_set_string (value, self->description); break;
    case PROP_VERSION: g_value_set_string (value, self->version); break;
    case PROP_CONFIG_TYPE: g_value_set_gtype (value, self->config_type); break;
    case PROP_QUANTIZER_TYPE: g_value_set_gtype (value, self->quantizer_type); break;
    case PROP_MODULE_PATH: g_value_set_string (value, self->module_path); break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
quark_backend_set_property (GObject      *object,
                            guint         prop_id,
                            const GValue *value,
                            GParamSpec   *pspec)
{
  QuarkBackend *self = QUARK_BACKEND (object);

  switch (prop_id)
    {
    case PROP_NAME:
      self->name = g_value_dup_string (value);
      break;
    case PROP_DESCRIPTION:
      quark_backend_set_description (self, g_value_get_string (value));
      break;
    case PROP_VERSION:
      quark_backend_set_version (self, g_value_get_string (value));
      break;
    case PROP_CONFIG_TYPE:
      self->config_type = g_value_get_gtype (value);
      break;
    case PROP_QUANTIZER_TYPE:
      self->quantizer_type = g_value_get_gtype (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
quark_backend_class_init (QuarkBackendClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = quark_backend_finalize;
  object_class->get_property = quark_backend_get_property;
  object_class->set_property = quark_backend_set_property;

  /**
   * QuarkBackend:name: (getter get_name)
   *
   * The backend's name, as configs name it in their `"backend"` member.
   */
  properties[PROP_NAME] =
    g_param_spec_string ("name", "Name", "The backend's name",
                         NULL, G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  /**
   * QuarkBackend:description: (getter get_description) (setter set_description)
   *
   * A one-line description.
   */
  properties[PROP_DESCRIPTION] =
    g_param_spec_string ("description", "Description", "A one-line description",
                         NULL, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  /**
   * QuarkBackend:version: (getter get_version) (setter set_version)
   *
   * The backend's version.
   */
  properties[PROP_VERSION] =
    g_param_spec_string ("version", "Version", "The backend's version",
                         NULL, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  /**
   * QuarkBackend:config-type: (getter get_config_type)
   *
   * The type implementing [iface@Quark.QuantizationConfig].
   */
  properties[PROP_CONFIG_TYPE] =
    g_param_spec_gtype ("config-type", "Config type", "The type implementing QuarkQuantizationConfig",
                        G_TYPE_OBJECT, G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  /**
   * QuarkBackend:quantizer-type: (getter get_quantizer_type)
   *
   * The type implementing [iface@Quark.ModelQuantizer].
   */
  properties[PROP_QUANTIZER_TYPE] =
    g_param_spec_gtype ("quantizer-type", "Quantizer type", "The type implementing QuarkModelQuantizer",
                        G_TYPE_OBJECT, G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  /**
   * QuarkBackend:module-path: (getter get_module_path)
   *
   * The module file the backend was loaded from, or %NULL for a backend
   * registered by code.
   */
  properties[PROP_MODULE_PATH] =
    g_param_spec_string ("module-path", "Module path", "The module file the backend came from",
                         NULL, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
quark_backend_init (QuarkBackend *self)
{
  self->dtypes = g_array_new (FALSE, FALSE, sizeof (QuarkDType));
  self->qschemes = g_array_new (FALSE, FALSE, sizeof (QuarkQScheme));
  self->presets = g_ptr_array_new_with_free_func (preset_free);
}

/**
 * quark_backend_new:
 * @name: the backend's name: lower-case letters, digits, `-` and `_`
 * @config_type: a type implementing [iface@Quark.QuantizationConfig]
 * @quantizer_type: a type implementing [iface@Quark.ModelQuantizer]
 *
 * Describes a backend. The types are checked when the backend is registered.
 *
 * Returns: (transfer full): a new backend description
 */
QuarkBackend *
quark_backend_new (const char *name,
                   GType       config_type,
                   GType       quantizer_type)
{
  g_return_val_if_fail (name != NULL, NULL);

  return g_object_new (QUARK_TYPE_BACKEND,
                       "name", name,
                       "config-type", config_type,
                       "quantizer-type", quantizer_type,
                       NULL);
}

/**
 * quark_backend_get_name: (get-property name)
 * @self: a #QuarkBackend
 *
 * Gets the name.
 *
 * Returns: (transfer none): the name
 */
const char *
quark_backend_get_name (QuarkBackend *self)
{
  g_return_val_if_fail (QUARK_IS_BACKEND (self), NULL);
  return self->name;
}

/**
 * quark_backend_get_description: (get-property description)
 * @self: a #QuarkBackend
 *
 * Gets the description.
 *
 * Returns: (transfer none) (nullable): the description
 */
const char *
quark_backend_get_description (QuarkBackend *self)
{
  g_return_val_if_fail (QUARK_IS_BACKEND (self), NULL);
  return self->description;
}

/**
 * quark_backend_set_description: (set-property description)
 * @self: a #QuarkBackend not yet registered
 * @description: (nullable): a one-line description
 *
 * Sets the description.
 */
void
quark_backend_set_description (QuarkBackend *self,
                               const char   *description)
{
  g_return_if_fail (QUARK_IS_BACKEND (self));
  g_return_if_fail (!self->registered);

  if (replace_str (&self->description, description))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_DESCRIPTION]);
}

/**
 * quark_backend_get_version: (get-property version)
 * @self: a #QuarkBackend
 *
 * Gets the version.
 *
 * Returns: (transfer none) (nullable): the version
 */
const char *
quark_backend_get_version (QuarkBackend *self)
{
  g_return_val_if_fail (QUARK_IS_BACKEND (self), NULL);
  return self->version;
}

/**
 * quark_backend_set_version: (set-property version)
 * @self: a #QuarkBackend not yet registered
 * @version: (nullable): the version
 *
 * Sets the version.
 */
void
quark_backend_set_version (QuarkBackend *self,
                           const char   *version)
{
  g_return_if_fail (QUARK_IS_BACKEND (self));
  g_return_if_fail (!self->registered);

  if (replace_str (&self->version, version))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_VERSION]);
}

/**
 * quark_backend_get_config_type: (get-property config-type)
 * @self: a #QuarkBackend
 *
 * Gets the config type.
 *
 * Returns: the config type
 */
GType
quark_backend_get_config_type (QuarkBackend *self)
{
  g_return_val_if_fail (QUARK_IS_BACKEND (self), G_TYPE_INVALID);
  return self->config_type;
}

/**
 * quark_backend_get_quantizer_type: (get-property quantizer-type)
 * @self: a #QuarkBackend
 *
 * Gets the quantizer type.
 *
 * Returns: the quantizer type
 */
GType
quark_backend_get_quantizer_type (QuarkBackend *self)
{
  g_return_val_if_fail (QUARK_IS_BACKEND (self), G_TYPE_INVALID);
  return self->quantizer_type;
}

/**
 * quark_backend_get_module_path: (get-property module-path)
 * @self: a #QuarkBackend
 *
 * Gets the module file.
 *
 * Returns: (transfer none) (nullable) (type filename): the module file, or
 *   %NULL for a backend registered by code
 */
const char *
quark_backend_get_module_path (QuarkBackend *self)
{
  g_return_val_if_fail (QUARK_IS_BACKEND (self), NULL);
  return self->module_path;
}

void
_quark_backend_set_module_path (QuarkBackend *self,
                                const char   *path)
{
  replace_str (&self->module_path, path);
}

/**
 * quark_backend_add_supported_dtype:
 * @self: a #QuarkBackend not yet registered
 * @dtype: a dtype the backend quantizes to
 *
 * Declares a dtype the backend quantizes to.
 */
void
quark_backend_add_supported_dtype (QuarkBackend *self,
                                   QuarkDType    dtype)
{
  g_return_if_fail (QUARK_IS_BACKEND (self));
  g_return_if_fail (!self->registered);
  g_return_if_fail ((guint) dtype < QUARK_DTYPE_N_TYPES);

  if (!quark_backend_supports_dtype (self, dtype))
    g_array_append_val (self->dtypes, dtype);
}

/**
 * quark_backend_get_supported_dtypes:
 * @self: a #QuarkBackend
 * @n_dtypes: (out): the number of dtypes
 *
 * Lists the dtypes the backend quantizes to, in the order they were declared.
 *
 * Returns: (array length=n_dtypes) (transfer none): the dtypes
 */
const QuarkDType *
quark_backend_get_supported_dtypes (QuarkBackend *self,
                                    guint        *n_dtypes)
{
  g_return_val_if_fail (QUARK_IS_BACKEND (self), NULL);
  g_return_val_if_fail (n_dtypes != NULL, NULL);
  *n_dtypes = self->dtypes->len;
  return (const QuarkDType *) self->dtypes->data;
}

/**
 * quark_backend_supports_dtype:
 * @self: a #QuarkBackend
 * @dtype: a dtype
 *
 * Checks whether the backend declared @dtype.
 *
 * Returns: whether the backend declared @dtype
 */
gboolean
quark_backend_supports_dtype (QuarkBackend *self,
                              QuarkDType    dtype)
{
  g_return_val_if_fail (QUARK_IS_BACKEND (self), FALSE);
  for (guint i = 0; i < self->dtypes->len; i++)
    if (g_array_index (self->dtypes, QuarkDType, i) == dtype)
      return TRUE;
  return FALSE;
}

/**
 * quark_backend_add_supported_qscheme:
 * @self: a #QuarkBackend not yet registered
 * @qscheme: a granularity the backend supports
 *
 * Declares a granularity the backend supports.
 */
void
quark_backend_add_supported_qscheme (QuarkBackend *self,
                                     QuarkQScheme  qscheme)
{
  g_return_if_fail (QUARK_IS_BACKEND (self));
  g_return_if_fail (!self->registered);

  if (!quark_backend_supports_qscheme (self, qscheme))
    g_array_append_val (self->qschemes, qscheme);
}

/**
 * quark_backend_get_supported_qschemes:
 * @self: a #QuarkBackend
 * @n_qschemes: (out): the number of granularities
 *
 * Lists the granularities the backend supports.
 *
 * Returns: (array length=n_qschemes) (transfer none): the granularities
 */
const QuarkQScheme *
quark_backend_get_supported_qschemes (QuarkBackend *self,
                                      guint        *n_qschemes)
{
  g_return_val_if_fail (QUARK_IS_BACKEND (self), NULL);
  g_return_val_if_fail (n_qschemes != NULL, NULL);
  *n_qschemes = self->qschemes->len;
  return (const QuarkQScheme *) self->qschemes->data;
}

/**
 * quark_backend_supports_qscheme:
 * @self: a #QuarkBackend
 * @qscheme: a granularity
 *
 * Checks whether the backend declared @qscheme.
 *
 * Returns: whether the backend declared @qscheme
 */
gboolean
quark_backend_supports_qscheme (QuarkBackend *self,
                                QuarkQScheme  qscheme)
{
  g_return_val_if_fail (QUARK_IS_BACKEND (self), FALSE);
  for (guint i = 0; i < self->qschemes->len; i++)
    if (g_array_index (self->qschemes, QuarkQScheme, i) == qscheme)
      return TRUE;
  return FALSE;
}

/**
 * quark_backend_set_available_func: (skip)
 * @self: a #QuarkBackend not yet registered
 * @func: (nullable): the availability check
 * @user_data: data for @func; it must live as long as the process
 *
 * Sets the function that says whether the backend can run here. Without one
 * a backend is always available.
 */
void
quark_backend_set_available_func (QuarkBackend              *self,
                                  QuarkBackendAvailableFunc  func,
                                  gpointer                   user_data)
{
  g_return_if_fail (QUARK_IS_BACKEND (self));
  g_return_if_fail (!self->registered);

  self->available_func = func;
  self->available_data = user_data;
}

/**
 * quark_backend_check_available:
 * @self: a #QuarkBackend
 * @error: return location for a #GError
 *
 * Asks whether the backend can run on this machine.
 *
 * Returns: %TRUE if it can; %FALSE with %QUARK_BACKEND_ERROR_UNAVAILABLE
 *   saying why
 */
gboolean
quark_backend_check_available (QuarkBackend  *self,
                               GError       **error)
{
  g_autoptr(GError) local_error = NULL;

  g_return_val_if_fail (QUARK_IS_BACKEND (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (self->available_func == NULL ||
      self->available_func (self, self->available_data, &local_error))
    return TRUE;

  g_set_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_UNAVAILABLE,
               "backend %s is unavailable: %s", self->name,
               local_error ? local_error->message : "no reason given");
  return FALSE;
}

/**
 * quark_backend_is_registered:
 * @self: a #QuarkBackend
 *
 * Checks whether the backend is in the registry (and so immutable).
 *
 * Returns: whether the backend is in the registry (and so immutable)
 */
gboolean
quark_backend_is_registered (QuarkBackend *self)
{
  g_return_val_if_fail (QUARK_IS_BACKEND (self), FALSE);
  return self->registered;
}

void
_quark_backend_mark_registered (QuarkBackend *self)
{
  self->registered = TRUE;
}

static gboolean
valid_backend_name (const char *name)
{
  if (name == NULL || !g_ascii_islower (name[0]))
    return FALSE;
  for (const char *c = name; *c; c++)
    if (!(g_ascii_islower (*c) || g_ascii_isdigit (*c) || *c == '-' || *c == '_'))
      return FALSE;
  return TRUE;
}

gboolean
_quark_backend_check_types (QuarkBackend  *self,
                            GError       **error)
{
  if (!valid_backend_name (self->name))
    {
      g_set_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_INVALID,
                   "backend name \"%s\" is not valid (use lower-case letters, digits, '-' and '_', "
                   "starting with a letter)", self->name ? self->name : "");
      return FALSE;
    }
  if (!g_type_is_a (self->config_type, QUARK_TYPE_QUANTIZATION_CONFIG) ||
      !G_TYPE_IS_INSTANTIATABLE (self->config_type) || G_TYPE_IS_ABSTRACT (self->config_type))
    {
      g_set_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_INVALID,
                   "backend %s: config type %s is not an instantiable QuarkQuantizationConfig",
                   self->name, g_type_name (self->config_type));
      return FALSE;
    }
  if (!g_type_is_a (self->quantizer_type, QUARK_TYPE_MODEL_QUANTIZER) ||
      !G_TYPE_IS_INSTANTIATABLE (self->quantizer_type) || G_TYPE_IS_ABSTRACT (self->quantizer_type))
    {
      g_set_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_INVALID,
                   "backend %s: quantizer type %s is not an instantiable QuarkModelQuantizer",
                   self->name, g_type_name (self->quantizer_type));
      return FALSE;
    }
  return TRUE;
}

/**
 * quark_backend_new_config:
 * @self: a #QuarkBackend
 * @error: return location for a #GError
 *
 * Makes a config of this backend with every parameter at its default.
 *
 * Returns: (transfer full): a new config, or %NULL with
 *   %QUARK_BACKEND_ERROR_UNAVAILABLE
 */
QuarkQuantizationConfig *
quark_backend_new_config (QuarkBackend  *self,
                          GError       **error)
{
  g_return_val_if_fail (QUARK_IS_BACKEND (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!quark_backend_check_available (self, error))
    return NULL;
  return g_object_new (self->config_type, NULL);
}

/**
 * quark_backend_new_quantizer:
 * @self: a #QuarkBackend
 * @config: a config of this backend
 * @error: return location for a #GError
 *
 * Validates @config and makes the backend's quantizer for it.
 *
 * Returns: (transfer full): a new quantizer, or %NULL with
 *   %QUARK_BACKEND_ERROR_UNAVAILABLE, %QUARK_BACKEND_ERROR_INVALID (a config
 *   of another backend) or the validation error
 */
QuarkModelQuantizer *
quark_backend_new_quantizer (QuarkBackend             *self,
                             QuarkQuantizationConfig  *config,
                             GError                  **error)
{
  g_return_val_if_fail (QUARK_IS_BACKEND (self), NULL);
  g_return_val_if_fail (QUARK_IS_QUANTIZATION_CONFIG (config), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!g_type_is_a (G_OBJECT_TYPE (config), self->config_type))
    {
      g_set_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_INVALID,
                   "backend %s cannot quantize with a %s config", self->name,
                   G_OBJECT_TYPE_NAME (config));
      return NULL;
    }
  if (!quark_backend_check_available (self, error))
    return NULL;
  if (!quark_quantization_config_validate (config, error))
    return NULL;
  return g_object_new (self->quantizer_type, "config", config, NULL);
}

/**
 * quark_backend_add_preset:
 * @self: a #QuarkBackend not yet registered
 * @name: the preset's name, such as `int4_wo_128`
 * @description: a one-line description
 * @json: the config's JSON members (without `"backend"`)
 *
 * Declares a named config. The JSON is checked when the preset is used
 * (the test suite loads every preset of every backend).
 */
void
quark_backend_add_preset (QuarkBackend *self,
                          const char   *name,
                          const char   *description,
                          const char   *json)
{
  Preset *p;

  g_return_if_fail (QUARK_IS_BACKEND (self));
  g_return_if_fail (!self->registered);
  g_return_if_fail (name != NULL && json != NULL);

  p = g_new0 (Preset, 1);
  p->name = g_strdup (name);
  p->description = g_strdup (description);
  p->json = g_strdup (json);
  p->aliases = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (self->presets, p);
}

/**
 * quark_backend_add_preset_alias:
 * @self: a #QuarkBackend that is not registered yet
 * @alias: another name, such as the name another tool gives the scheme
 *   (AMD Quark's former `w_fp8_a_fp8` for `fp8`)
 * @name: a preset added with quark_backend_add_preset()
 *
 * Lets @alias name the preset @name wherever a preset name is taken.
 * Aliases are not listed by quark_backend_list_presets();
 * quark_backend_list_preset_aliases() gives them.
 */
void
quark_backend_add_preset_alias (QuarkBackend *self,
                                const char   *alias,
                                const char   *name)
{
  Preset *p = NULL;

  g_return_if_fail (QUARK_IS_BACKEND (self));
  g_return_if_fail (!self->registered);
  g_return_if_fail (alias != NULL && name != NULL);

  for (guint i = 0; i < self->presets->len && p == NULL; i++)
    if (g_str_equal (((Preset *) g_ptr_array_index (self->presets, i))->name, name))
      p = g_ptr_array_index (self->presets, i);
  g_return_if_fail (p != NULL);
  g_ptr_array_add (p->aliases, g_strdup (alias));
}

/**
 * quark_backend_list_preset_aliases:
 * @self: a #QuarkBackend
 * @name: a preset name
 *
 * Lists the other names of a preset.
 *
 * Returns: (transfer full) (array zero-terminated=1): the aliases, possibly
 *   none
 */
char **
quark_backend_list_preset_aliases (QuarkBackend *self,
                                   const char   *name)
{
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();

  g_return_val_if_fail (QUARK_IS_BACKEND (self), NULL);
  g_return_val_if_fail (name != NULL, NULL);
  for (guint i = 0; i < self->presets->len; i++)
    {
      Preset *p = g_ptr_array_index (self->presets, i);
      if (g_str_equal (p->name, name))
        for (guint k = 0; k < p->aliases->len; k++)
          g_strv_builder_add (builder, g_ptr_array_index (p->aliases, k));
    }
  return g_strv_builder_end (builder);
}

/**
 * quark_backend_list_presets:
 * @self: a #QuarkBackend
 *
 * Lists the backend's presets in declaration order.
 *
 * Returns: (transfer full) (array zero-terminated=1): the preset names
 */
char **
quark_backend_list_presets (QuarkBackend *self)
{
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();

  g_return_val_if_fail (QUARK_IS_BACKEND (self), NULL);
  for (guint i = 0; i < self->presets->len; i++)
    g_strv_builder_add (builder, ((Preset *) g_ptr_array_index (self->presets, i))->name);
  return g_strv_builder_end (builder);
}

/* A preset by its name or one of its aliases. */
static Preset *
find_preset (QuarkBackend *self, const char *name)
{
  for (guint i = 0; i < self->presets->len; i++)
    if (g_str_equal (((Preset *) g_ptr_array_index (self->presets, i))->name, name))
      return g_ptr_array_index (self->presets, i);
  for (guint i = 0; i < self->presets->len; i++)
    {
      Preset *p = g_ptr_array_index (self->presets, i);
      for (guint k = 0; k < p->aliases->len; k++)
        if (g_str_equal (g_ptr_array_index (p->aliases, k), name))
          return p;
    }
  return NULL;
}

/**
 * quark_backend_has_preset:
 * @self: a #QuarkBackend
 * @name: a preset name or alias
 *
 * Whether @name names one of the backend's presets.
 *
 * Returns: %TRUE if it does
 */
gboolean
quark_backend_has_preset (QuarkBackend *self,
                          const char   *name)
{
  g_return_val_if_fail (QUARK_IS_BACKEND (self), FALSE);
  g_return_val_if_fail (name != NULL, FALSE);
  return find_preset (self, name) != NULL;
}

/**
 * quark_backend_get_preset_description:
 * @self: a #QuarkBackend
 * @name: a preset name
 *
 * Gets a preset's description.
 *
 * Returns: (transfer none) (nullable): the description, or %NULL if there is
 *   no such preset
 */
const char *
quark_backend_get_preset_description (QuarkBackend *self,
                                      const char   *name)
{
  Preset *p;

  g_return_val_if_fail (QUARK_IS_BACKEND (self), NULL);
  g_return_val_if_fail (name != NULL, NULL);
  p = find_preset (self, name);
  return p ? p->description : NULL;
}

/**
 * quark_backend_new_config_for_preset:
 * @self: a registered #QuarkBackend
 * @name: a preset name or alias
 * @error: return location for a #GError
 *
 * Makes the config a preset names, loaded and validated like a config file.
 *
 * Returns: (transfer full): a new config, or %NULL with
 *   %QUARK_CONFIG_ERROR_INVALID_VALUE (no such preset, the message lists the
 *   backend's presets) or the loading error
 */
QuarkQuantizationConfig *
quark_backend_new_config_for_preset (QuarkBackend  *self,
                                     const char    *name,
                                     GError       **error)
{
  g_autoptr(JsonNode) root = NULL;
  g_autofree char *source = NULL;
  Preset *p;

  g_return_val_if_fail (QUARK_IS_BACKEND (self), NULL);
  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  p = find_preset (self, name);
  if (p == NULL)
    {
      g_auto(GStrv) names = quark_backend_list_presets (self);
      g_autofree char *list = g_strjoinv (", ", names);
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                   "backend %s has no preset \"%s\" (presets: %s)", self->name, name,
                   *list ? list : "none");
      return NULL;
    }
  source = g_strdup_printf ("preset %s", p->name);
  root = quark_json_parse (p->json, -1, source, error);
  if (root == NULL)
    return NULL;
  if (!JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                   "%s: (root): expected an object", source);
      return NULL;
    }
  json_object_set_string_member (json_node_get_object (root), "backend", self->name);
  return quark_registry_config_from_json (quark_registry_get_default (), root, source, error);
}

/**
 * quark_backend_describe:
 * @self: a #QuarkBackend
 *
 * Describes the backend as a JSON object: `name`, `description`, `version`,
 * `module` (the file, or null), `dtypes` and `qschemes` (config names),
 * `presets` (names and descriptions), `available` and, when it is not,
 * `unavailable_reason`. Tools print this
 * (`quark backends --json`) and the documentation is generated from it.
 *
 * Returns: (transfer full): a JSON object node
 */
JsonNode *
quark_backend_describe (QuarkBackend *self)
{
  g_autoptr(JsonBuilder) builder = json_builder_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(GEnumClass) qscheme_class = g_type_class_ref (QUARK_TYPE_QSCHEME);
  gboolean available;

  g_return_val_if_fail (QUARK_IS_BACKEND (self), NULL);

  available = quark_backend_check_available (self, &error);

  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "name");
  json_builder_add_string_value (builder, self->name);
  json_builder_set_member_name (builder, "description");
  if (self->description)
    json_builder_add_string_value (builder, self->description);
  else
    json_builder_add_null_value (builder);
  json_builder_set_member_name (builder, "version");
  if (self->version)
    json_builder_add_string_value (builder, self->version);
  else
    json_builder_add_null_value (builder);
  json_builder_set_member_name (builder, "module");
  if (self->module_path)
    json_builder_add_string_value (builder, self->module_path);
  else
    json_builder_add_null_value (builder);
  json_builder_set_member_name (builder, "dtypes");
  json_builder_begin_array (builder);
  for (guint i = 0; i < self->dtypes->len; i++)
    json_builder_add_string_value (builder,
                                   quark_dtype_get_name (g_array_index (self->dtypes, QuarkDType, i)));
  json_builder_end_array (builder);
  json_builder_set_member_name (builder, "qschemes");
  json_builder_begin_array (builder);
  for (guint i = 0; i < self->qschemes->len; i++)
    {
      GEnumValue *v = g_enum_get_value (qscheme_class, g_array_index (self->qschemes, QuarkQScheme, i));
      json_builder_add_string_value (builder, v ? v->value_nick : "?");
    }
  json_builder_end_array (builder);
  json_builder_set_member_name (builder, "presets");
  json_builder_begin_array (builder);
  for (guint i = 0; i < self->presets->len; i++)
    {
      Preset *p = g_ptr_array_index (self->presets, i);
      json_builder_begin_object (builder);
      json_builder_set_member_name (builder, "name");
      json_builder_add_string_value (builder, p->name);
      json_builder_set_member_name (builder, "description");
      json_builder_add_string_value (builder, p->description ? p->description : "");
      json_builder_end_object (builder);
    }
  json_builder_end_array (builder);
  json_builder_set_member_name (builder, "available");
  json_builder_add_boolean_value (builder, available);
  if (!available)
    {
      json_builder_set_member_name (builder, "unavailable_reason");
      json_builder_add_string_value (builder, error->message);
    }
  json_builder_end_object (builder);
  return json_builder_get_root (builder);
}
