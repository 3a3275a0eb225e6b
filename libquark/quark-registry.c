/* quark-registry.c: the backend registry
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <pthread.h>

#include "quark-registry-private.h"
#include "quark-backend-module-private.h"
#include "quark-backend-private.h"
#include "quark-error.h"
#include "quark-json.h"
#include "formats/quark-format-private.h"

#include <gmodule.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <glib/gstdio.h>
#ifdef HAVE_GETAUXVAL
#include <sys/auxv.h>
#endif

/**
 * QuarkRegistry:
 *
 * The one source of truth for backends: their names, metadata, availability
 * and the types that implement them.
 *
 * The default registry ([func@Quark.Registry.get_default]) loads backend
 * modules on first use: from each directory of the colon-separated
 * `QUARK_BACKEND_PATH` first, then from the installed backend directory
 * (`${libdir}/quark-1.0/backends`, published as the `backenddir` variable of
 * the `quark-1.0` pkg-config module). `QUARK_BACKEND_SYSTEM_PATH`, when set,
 * replaces the installed directory (an empty value searches none), which
 * keeps test suites hermetic. When two directories hold a module file of the
 * same name, the first wins; when two modules register the same backend
 * name, the first registered wins and the other is reported. Both variables
 * are ignored in setuid and setgid programs.
 *
 * Code can register backends too ([method@Quark.Registry.add_backend]),
 * including backends written in Python through PyGObject.
 *
 * The registry is thread-safe: every method may be called from any thread.
 * Backends are never removed, so the pointers it returns stay valid.
 */
struct _QuarkRegistry
{
  GObject parent_instance;

  GRecMutex lock;
  gboolean loaded;
  char **search_path;
  GPtrArray *modules;     /* QuarkBackendModule, in load order */
  GPtrArray *backends;    /* QuarkBackend, in registration order */
  GHashTable *by_name;    /* name -> QuarkBackend */
  GArray *formats;        /* GType of QuarkCheckpointFormat, in registration order */
};

G_DEFINE_FINAL_TYPE (QuarkRegistry, quark_registry, G_TYPE_OBJECT)

static void
quark_registry_finalize (GObject *object)
{
  QuarkRegistry *self = QUARK_REGISTRY (object);

  g_strfreev (self->search_path);
  g_ptr_array_unref (self->modules);
  g_ptr_array_unref (self->backends);
  g_hash_table_unref (self->by_name);
  g_array_unref (self->formats);
  g_rec_mutex_clear (&self->lock);

  G_OBJECT_CLASS (quark_registry_parent_class)->finalize (object);
}

static void
quark_registry_class_init (QuarkRegistryClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = quark_registry_finalize;
}

static gboolean
environment_is_trusted (void)
{
#ifdef HAVE_GETAUXVAL
  return getauxval (AT_SECURE) == 0;
#else
  return TRUE;
#endif
}

const char *
_quark_registry_get_system_dir (void)
{
  return QUARK_BACKENDDIR;
}

static char **
compute_search_path (void)
{
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();
  const char *env_path = NULL;
  const char *system_path = NULL;
  gboolean trusted = environment_is_trusted ();

  if (trusted)
    {
      env_path = g_getenv ("QUARK_BACKEND_PATH");
      system_path = g_getenv ("QUARK_BACKEND_SYSTEM_PATH");
    }
  if (system_path == NULL)
    system_path = _quark_registry_get_system_dir ();

  for (guint pass = 0; pass < 2; pass++)
    {
      const char *list = pass == 0 ? env_path : system_path;
      g_auto(GStrv) dirs = NULL;

      if (list == NULL || *list == '\0')
        continue;
      dirs = g_strsplit (list, G_SEARCHPATH_SEPARATOR_S, -1);
      for (guint i = 0; dirs[i]; i++)
        if (*dirs[i])
          g_strv_builder_add (builder, dirs[i]);
    }
  return g_strv_builder_end (builder);
}

static void
quark_registry_init (QuarkRegistry *self)
{
  g_rec_mutex_init (&self->lock);
  self->modules = g_ptr_array_new_with_free_func (g_object_unref);
  self->backends = g_ptr_array_new_with_free_func (g_object_unref);
  self->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  self->search_path = compute_search_path ();
  self->formats = g_array_new (FALSE, FALSE, sizeof (GType));
  /* the built-in checkpoint formats */
  quark_registry_add_format (self, _quark_format_quark_get_type (), NULL);
  quark_registry_add_format (self, _quark_format_compressed_tensors_get_type (), NULL);
  quark_registry_add_format (self, _quark_format_awq_get_type (), NULL);
  quark_registry_add_format (self, _quark_format_fp8_get_type (), NULL);
  quark_registry_add_format (self, _quark_format_gguf_get_type (), NULL);
}

/**
 * quark_registry_get_default:
 *
 * Gets the process-wide registry. Backend modules load on the first query.
 *
 * Returns: (transfer none): the registry
 */
QuarkRegistry *
quark_registry_get_default (void)
{
  static QuarkRegistry *default_registry;
  static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
  QuarkRegistry *registry = g_atomic_pointer_get (&default_registry);

  /* Made once, under a pthread mutex rather than g_once_init_*() or GMutex,
   * whose synchronisation lives inside GLib where ThreadSanitizer cannot
   * see it: a thread that finds the registry being made waits for it, so
   * that its class (initialised by the first thread) is seen complete. */
  if (registry == NULL)
    {
      pthread_mutex_lock (&lock);
      registry = g_atomic_pointer_get (&default_registry);
      if (registry == NULL)
        {
          registry = g_object_new (QUARK_TYPE_REGISTRY, NULL);
          g_atomic_pointer_set (&default_registry, registry);
        }
      pthread_mutex_unlock (&lock);
    }
  return registry;
}

/* Called with the lock held. */
static gboolean
register_backend_locked (QuarkRegistry  *self,
                         QuarkBackend   *backend,
                         GError        **error)
{
  QuarkBackend *existing;

  if (!_quark_backend_check_types (backend, error))
    return FALSE;
  existing = g_hash_table_lookup (self->by_name, quark_backend_get_name (backend));
  if (existing != NULL)
    {
      g_set_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_DUPLICATE,
                   "backend %s%s%s is already registered%s%s",
                   quark_backend_get_name (backend),
                   quark_backend_get_module_path (backend) ? " from " : "",
                   quark_backend_get_module_path (backend) ? quark_backend_get_module_path (backend) : "",
                   quark_backend_get_module_path (existing) ? " by " : "",
                   quark_backend_get_module_path (existing) ? quark_backend_get_module_path (existing) : "");
      return FALSE;
    }
  if (quark_backend_is_registered (backend))
    {
      g_set_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_DUPLICATE,
                   "backend %s is already registered in another registry",
                   quark_backend_get_name (backend));
      return FALSE;
    }
  _quark_backend_mark_registered (backend);
  g_ptr_array_add (self->backends, g_object_ref (backend));
  g_hash_table_insert (self->by_name, (gpointer) quark_backend_get_name (backend), backend);
  return TRUE;
}

static int
compare_strings (gconstpointer a,
                 gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

static void
load_directory_locked (QuarkRegistry *self,
                       const char    *dir_path,
                       GHashTable    *seen)
{
  g_autoptr(GDir) dir = NULL;
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *name;

  dir = g_dir_open (dir_path, 0, NULL);
  if (dir == NULL)
    return;   /* a missing directory in a search path is not an error */

  while ((name = g_dir_read_name (dir)) != NULL)
    if (g_str_has_suffix (name, "." G_MODULE_SUFFIX))
      g_ptr_array_add (names, g_strdup (name));
  g_ptr_array_sort (names, compare_strings);

  for (guint i = 0; i < names->len; i++)
    {
      const char *file = g_ptr_array_index (names, i);
      g_autofree char *path = NULL;
      g_autoptr(GPtrArray) backends = NULL;
      QuarkBackendModule *module;

      if (g_hash_table_contains (seen, file))
        continue;
      g_hash_table_add (seen, g_strdup (file));

      path = g_build_filename (dir_path, file, NULL);
      module = _quark_backend_module_new (path);
      g_ptr_array_add (self->modules, module);

      if (!_quark_backend_module_load (module))
        {
          g_warning ("Skipping backend module: %s",
                     quark_backend_module_get_error (module)->message);
          continue;
        }

      backends = quark_backend_module_get_backends (module);
      for (guint b = 0; b < backends->len; b++)
        {
          g_autoptr(GError) error = NULL;
          if (!register_backend_locked (self, g_ptr_array_index (backends, b), &error))
            {
              g_warning ("Skipping backend from %s: %s", path, error->message);
              _quark_backend_module_take_error (module, g_steal_pointer (&error));
            }
        }
    }
}

static void
ensure_loaded (QuarkRegistry *self)
{
  g_rec_mutex_lock (&self->lock);
  if (!self->loaded)
    {
      g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

      /* set first: a module's entry point may query the registry */
      self->loaded = TRUE;
      if (!g_module_supported ())
        g_warning ("This platform cannot load modules; no backend modules are available");
      else
        for (guint i = 0; self->search_path[i]; i++)
          load_directory_locked (self, self->search_path[i], seen);
    }
  g_rec_mutex_unlock (&self->lock);
}

/**
 * quark_registry_get_search_path:
 * @self: a #QuarkRegistry
 *
 * Lists the directories searched for backend modules, in order.
 *
 * Returns: (transfer full) (array zero-terminated=1) (element-type filename):
 *   the directories
 */
char **
quark_registry_get_search_path (QuarkRegistry *self)
{
  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  return g_strdupv (self->search_path);
}

static GPtrArray *
copy_array (QuarkRegistry *self,
            GPtrArray     *array)
{
  GPtrArray *result;

  ensure_loaded (self);
  g_rec_mutex_lock (&self->lock);
  result = g_ptr_array_new_full (array->len, g_object_unref);
  for (guint i = 0; i < array->len; i++)
    g_ptr_array_add (result, g_object_ref (g_ptr_array_index (array, i)));
  g_rec_mutex_unlock (&self->lock);
  return result;
}

/**
 * quark_registry_list_backends:
 * @self: a #QuarkRegistry
 *
 * Lists the registered backends in registration order: module backends in
 * search order, then backends registered by code.
 *
 * Returns: (transfer container) (element-type QuarkBackend): the backends
 */
GPtrArray *
quark_registry_list_backends (QuarkRegistry *self)
{
  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  return copy_array (self, self->backends);
}

/**
 * quark_registry_list_modules:
 * @self: a #QuarkRegistry
 *
 * Lists every module file the registry tried, including the ones it skipped
 * ([method@Quark.BackendModule.get_error] says why).
 *
 * Returns: (transfer container) (element-type QuarkBackendModule): the modules
 */
GPtrArray *
quark_registry_list_modules (QuarkRegistry *self)
{
  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  return copy_array (self, self->modules);
}

/**
 * quark_registry_lookup_backend:
 * @self: a #QuarkRegistry
 * @name: a backend name
 *
 * Looks up a backend by name.
 *
 * Returns: (transfer none) (nullable): the backend, or %NULL
 */
QuarkBackend *
quark_registry_lookup_backend (QuarkRegistry *self,
                               const char    *name)
{
  QuarkBackend *backend;

  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  g_return_val_if_fail (name != NULL, NULL);

  ensure_loaded (self);
  g_rec_mutex_lock (&self->lock);
  backend = g_hash_table_lookup (self->by_name, name);
  g_rec_mutex_unlock (&self->lock);
  return backend;
}

static char *
backend_names_locked (QuarkRegistry *self)
{
  g_autoptr(GString) s = g_string_new (NULL);

  for (guint i = 0; i < self->backends->len; i++)
    g_string_append_printf (s, "%s%s", i ? ", " : "",
                            quark_backend_get_name (g_ptr_array_index (self->backends, i)));
  if (s->len == 0)
    g_string_append (s, "none");
  return g_string_free (g_steal_pointer (&s), FALSE);
}

/**
 * quark_registry_get_backend:
 * @self: a #QuarkRegistry
 * @name: a backend name
 * @error: return location for a #GError
 *
 * Looks up a backend by name, with an error that lists the registered
 * backends when there is none of that name.
 *
 * Returns: (transfer none): the backend, or %NULL with
 *   %QUARK_BACKEND_ERROR_NOT_FOUND
 */
QuarkBackend *
quark_registry_get_backend (QuarkRegistry  *self,
                            const char     *name,
                            GError        **error)
{
  QuarkBackend *backend;

  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  ensure_loaded (self);
  g_rec_mutex_lock (&self->lock);
  backend = g_hash_table_lookup (self->by_name, name);
  if (backend == NULL)
    {
      g_autofree char *names = backend_names_locked (self);
      g_set_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_NOT_FOUND,
                   "unknown backend \"%s\" (registered backends: %s)", name, names);
    }
  g_rec_mutex_unlock (&self->lock);
  return backend;
}

/**
 * quark_registry_lookup_backend_for_config_type:
 * @self: a #QuarkRegistry
 * @config_type: a type implementing [iface@Quark.QuantizationConfig]
 *
 * Finds the backend whose config type is @config_type or an ancestor of it.
 *
 * Returns: (transfer none) (nullable): the backend, or %NULL
 */
QuarkBackend *
quark_registry_lookup_backend_for_config_type (QuarkRegistry *self,
                                               GType          config_type)
{
  QuarkBackend *found = NULL;

  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);

  ensure_loaded (self);
  g_rec_mutex_lock (&self->lock);
  for (guint i = 0; i < self->backends->len && found == NULL; i++)
    if (quark_backend_get_config_type (g_ptr_array_index (self->backends, i)) == config_type)
      found = g_ptr_array_index (self->backends, i);
  for (guint i = 0; i < self->backends->len && found == NULL; i++)
    if (g_type_is_a (config_type, quark_backend_get_config_type (g_ptr_array_index (self->backends, i))))
      found = g_ptr_array_index (self->backends, i);
  g_rec_mutex_unlock (&self->lock);
  return found;
}

/**
 * quark_registry_add_backend:
 * @self: a #QuarkRegistry
 * @backend: a backend description
 * @error: return location for a #GError
 *
 * Registers a backend from code. Module backends are loaded first, so a
 * module's backend keeps its name.
 *
 * Returns: %TRUE on success; %FALSE with %QUARK_BACKEND_ERROR_DUPLICATE or
 *   %QUARK_BACKEND_ERROR_INVALID
 */
gboolean
quark_registry_add_backend (QuarkRegistry  *self,
                            QuarkBackend   *backend,
                            GError        **error)
{
  gboolean ok;

  g_return_val_if_fail (QUARK_IS_REGISTRY (self), FALSE);
  g_return_val_if_fail (QUARK_IS_BACKEND (backend), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  ensure_loaded (self);
  g_rec_mutex_lock (&self->lock);
  ok = register_backend_locked (self, backend, error);
  g_rec_mutex_unlock (&self->lock);
  return ok;
}

/**
 * quark_registry_new_config:
 * @self: a #QuarkRegistry
 * @backend_name: a backend name
 * @error: return location for a #GError
 *
 * Makes a config of a backend with every parameter at its default.
 *
 * Returns: (transfer full): a new config, or %NULL with a
 *   %QUARK_BACKEND_ERROR
 */
QuarkQuantizationConfig *
quark_registry_new_config (QuarkRegistry  *self,
                           const char     *backend_name,
                           GError        **error)
{
  QuarkBackend *backend;

  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  g_return_val_if_fail (backend_name != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  backend = quark_registry_get_backend (self, backend_name, error);
  if (backend == NULL)
    return NULL;
  return quark_backend_new_config (backend, error);
}

static void
prefix_source (GError     **error,
               const char  *source)
{
  if (source && error && *error && !g_str_has_prefix ((*error)->message, source))
    g_prefix_error (error, "%s: ", source);
}

/**
 * quark_registry_config_from_json:
 * @self: a #QuarkRegistry
 * @root: a JSON object with a string member `"backend"`
 * @source: (nullable): where @root came from (a file name), for messages
 * @error: return location for a #GError
 *
 * Makes a config from JSON: the `"backend"` member picks the backend, whose
 * config then loads the other members strictly and is validated.
 *
 * Returns: (transfer full): the config, or %NULL with a %QUARK_CONFIG_ERROR
 *   or %QUARK_BACKEND_ERROR whose message starts with @source and names the
 *   JSON path at fault
 */
QuarkQuantizationConfig *
quark_registry_config_from_json (QuarkRegistry  *self,
                                 JsonNode       *root,
                                 const char     *source,
                                 GError        **error)
{
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autoptr(JsonObject) members = NULL;
  g_autoptr(GList) names = NULL;
  JsonObject *object;
  JsonNode *backend_node;
  QuarkBackend *backend;

  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  g_return_val_if_fail (root != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                   "(root): expected an object");
      prefix_source (error, source);
      return NULL;
    }
  object = json_node_get_object (root);
  backend_node = json_object_get_member (object, "backend");
  if (backend_node == NULL)
    {
      g_autofree char *names_list = NULL;

      ensure_loaded (self);
      g_rec_mutex_lock (&self->lock);
      names_list = backend_names_locked (self);
      g_rec_mutex_unlock (&self->lock);
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_MISSING_KEY,
                   "backend: missing; it names the backend the config is for (registered backends: %s)",
                   names_list);
      prefix_source (error, source);
      return NULL;
    }
  if (!JSON_NODE_HOLDS_VALUE (backend_node) || json_node_get_value_type (backend_node) != G_TYPE_STRING)
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_TYPE_MISMATCH,
                   "backend: expected a string");
      prefix_source (error, source);
      return NULL;
    }

  backend = quark_registry_get_backend (self, json_node_get_string (backend_node), error);
  if (backend == NULL)
    {
      g_prefix_error (error, "backend: ");
      prefix_source (error, source);
      return NULL;
    }
  config = quark_backend_new_config (backend, error);
  if (config == NULL)
    {
      prefix_source (error, source);
      return NULL;
    }

  /* the config sees its own members only */
  members = json_object_new ();
  names = json_object_get_members (object);
  for (GList *l = names; l; l = l->next)
    if (!g_str_equal (l->data, "backend"))
      json_object_set_member (members, l->data, json_node_copy (json_object_get_member (object, l->data)));

  if (!quark_quantization_config_load_json (config, members, error) ||
      !quark_quantization_config_validate (config, error))
    {
      prefix_source (error, source);
      return NULL;
    }
  return g_steal_pointer (&config);
}

/**
 * quark_registry_config_from_string:
 * @self: a #QuarkRegistry
 * @data: JSON text
 * @length: the length of @data, or -1 if it is nul-terminated
 * @error: return location for a #GError
 *
 * Parses @data with quark_json_parse() and makes a config with
 * quark_registry_config_from_json().
 *
 * Returns: (transfer full): the config, or %NULL on error
 */
QuarkQuantizationConfig *
quark_registry_config_from_string (QuarkRegistry  *self,
                                   const char     *data,
                                   gssize          length,
                                   GError        **error)
{
  g_autoptr(JsonNode) root = NULL;

  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  g_return_val_if_fail (data != NULL, NULL);

  root = quark_json_parse (data, length, NULL, error);
  if (root == NULL)
    return NULL;
  return quark_registry_config_from_json (self, root, NULL, error);
}

/**
 * quark_registry_config_from_file:
 * @self: a #QuarkRegistry
 * @filename: (type filename): a JSON config file
 * @error: return location for a #GError
 *
 * Reads a config file. Error messages start with @filename.
 *
 * Returns: (transfer full): the config, or %NULL on error
 */
QuarkQuantizationConfig *
quark_registry_config_from_file (QuarkRegistry  *self,
                                 const char     *filename,
                                 GError        **error)
{
  g_autoptr(JsonNode) root = NULL;

  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  g_return_val_if_fail (filename != NULL, NULL);

  root = quark_json_parse_file (filename, error);
  if (root == NULL)
    return NULL;
  return quark_registry_config_from_json (self, root, filename, error);
}

/* Edit distance, for "did you mean". */
static guint
edit_distance (const char *a, const char *b)
{
  gsize la = strlen (a), lb = strlen (b);
  g_autofree guint *row = g_new (guint, lb + 1);

  for (gsize j = 0; j <= lb; j++)
    row[j] = (guint) j;
  for (gsize i = 1; i <= la; i++)
    {
      guint diagonal = row[0];
      row[0] = (guint) i;
      for (gsize j = 1; j <= lb; j++)
        {
          guint above = row[j];
          guint cost = g_ascii_tolower (a[i - 1]) == g_ascii_tolower (b[j - 1]) ? 0 : 1;
          row[j] = MIN (MIN (row[j] + 1, row[j - 1] + 1), diagonal + cost);
          diagonal = above;
        }
    }
  return row[lb];
}

/**
 * quark_registry_config_for_preset:
 * @self: a #QuarkRegistry
 * @backend_name: (nullable): the backend whose preset it is, or %NULL for
 *   whichever backend has a preset of that name (`quark` first)
 * @name: a preset name or alias (quark_backend_add_preset_alias())
 * @error: return location for a #GError
 *
 * Makes the config a preset names, in one call. When no such preset
 * exists, the error says what the user may have meant: the preset of that
 * name of another backend (`w8a8` is brevitas's), or the closest names
 * (`int4_wo128`: did you mean `int4_wo_128`?).
 *
 * Returns: (transfer full): a new config, or %NULL with a
 *   %QUARK_BACKEND_ERROR for an unknown backend, or
 *   %QUARK_CONFIG_ERROR_INVALID_VALUE for an unknown preset
 */
QuarkQuantizationConfig *
quark_registry_config_for_preset (QuarkRegistry  *self,
                                  const char     *backend_name,
                                  const char     *name,
                                  GError        **error)
{
  g_autoptr(GPtrArray) backends = NULL;
  g_autoptr(GString) hint = g_string_new (NULL);
  QuarkBackend *backend = NULL, *owner = NULL;
  guint best = G_MAXUINT;

  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (backend_name && (backend = quark_registry_get_backend (self, backend_name, error)) == NULL)
    return NULL;
  if (backend && quark_backend_has_preset (backend, name))
    return quark_backend_new_config_for_preset (backend, name, error);
  backends = quark_registry_list_backends (self);
  if (backend == NULL && (owner = quark_registry_lookup_backend (self, "quark")) != NULL &&
      quark_backend_has_preset (owner, name))
    return quark_backend_new_config_for_preset (owner, name, error);
  owner = NULL;
  for (guint i = 0; i < backends->len && owner == NULL; i++)
    if (quark_backend_has_preset (g_ptr_array_index (backends, i), name))
      owner = g_ptr_array_index (backends, i);
  if (owner && backend == NULL)
    return quark_backend_new_config_for_preset (owner, name, error);
  if (owner)
    {
      g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                   "\"%s\" is a preset of the %s backend, not of %s (choose that backend: --backend %s)", name,
                   quark_backend_get_name (owner), backend_name, quark_backend_get_name (owner));
      return NULL;
    }

  /* the closest names of the backend asked for, or of every backend */
  for (guint pass = 0; pass < 2; pass++)
    for (guint i = 0; i < backends->len; i++)
      {
        QuarkBackend *b = g_ptr_array_index (backends, i);
        g_auto(GStrv) names = NULL;
        if (backend && b != backend)
          continue;
        names = quark_backend_list_presets (b);
        for (guint k = 0; names[k]; k++)
          {
            guint d = edit_distance (name, names[k]);
            if (pass == 0)
              best = MIN (best, d);
            else if (d == best && d <= MAX (2u, (guint) strlen (name) / 3))
              g_string_append_printf (hint, "%s\"%s\"%s%s", hint->len ? " or " : "", names[k],
                                      backend || g_str_equal (quark_backend_get_name (b), "quark") ? "" : " of ",
                                      backend || g_str_equal (quark_backend_get_name (b), "quark")
                                      ? "" : quark_backend_get_name (b));
          }
      }
  if (backend)
    g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                 "backend %s has no preset \"%s\"%s%s%s (quark presets lists them)", backend_name, name,
                 hint->len ? "; did you mean " : "", hint->str, hint->len ? "?" : "");
  else
    g_set_error (error, QUARK_CONFIG_ERROR, QUARK_CONFIG_ERROR_INVALID_VALUE,
                 "no backend has a preset \"%s\"%s%s%s (quark presets lists them)", name,
                 hint->len ? "; did you mean " : "", hint->str, hint->len ? "?" : "");
  return NULL;
}

/**
 * quark_registry_new_quantizer:
 * @self: a #QuarkRegistry
 * @config: a config
 * @error: return location for a #GError
 *
 * Validates @config and makes its backend's quantizer for it.
 *
 * Returns: (transfer full): the quantizer, or %NULL with
 *   %QUARK_BACKEND_ERROR_NOT_FOUND (no registered backend uses this config
 *   type) or the validation error
 */
QuarkModelQuantizer *
quark_registry_new_quantizer (QuarkRegistry            *self,
                              QuarkQuantizationConfig  *config,
                              GError                  **error)
{
  QuarkBackend *backend;

  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  g_return_val_if_fail (QUARK_IS_QUANTIZATION_CONFIG (config), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  backend = quark_registry_lookup_backend_for_config_type (self, G_OBJECT_TYPE (config));
  if (backend == NULL)
    {
      g_set_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_NOT_FOUND,
                   "no registered backend uses config type %s", G_OBJECT_TYPE_NAME (config));
      return NULL;
    }
  return quark_backend_new_quantizer (backend, config, error);
}

/* ---- checkpoint formats ---------------------------------------------------- */

static const char *
format_type_name (GType type)
{
  g_autoptr(GTypeClass) klass = g_type_class_ref (type);
  return QUARK_CHECKPOINT_FORMAT_CLASS (klass)->name;   /* static: classes are never freed */
}

/**
 * quark_registry_add_format:
 * @self: a registry
 * @type: a non-abstract subtype of #QuarkCheckpointFormat whose class sets
 *   its name
 * @error: return location for a #GError
 *
 * Registers a checkpoint format. The built-in formats (`quark`,
 * `compressed-tensors`, `awq`, `fp8`, `gguf`) are registered with every registry; backend modules
 * and applications can add their own.
 *
 * Returns: %TRUE on success; %QUARK_ERROR_EXISTS when a format of that name
 *   is registered, %QUARK_ERROR_INVALID_ARGUMENT for a type that is not a
 *   usable format
 */
gboolean
quark_registry_add_format (QuarkRegistry *self, GType type, GError **error)
{
  const char *name;

  g_return_val_if_fail (QUARK_IS_REGISTRY (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!g_type_is_a (type, QUARK_TYPE_CHECKPOINT_FORMAT) || G_TYPE_IS_ABSTRACT (type) ||
      (name = format_type_name (type)) == NULL || *name == '\0')
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "type %s is not a checkpoint format with a name", g_type_name (type));
      return FALSE;
    }
  g_rec_mutex_lock (&self->lock);
  for (guint i = 0; i < self->formats->len; i++)
    if (g_str_equal (format_type_name (g_array_index (self->formats, GType, i)), name))
      {
        g_rec_mutex_unlock (&self->lock);
        g_set_error (error, QUARK_ERROR, QUARK_ERROR_EXISTS, "checkpoint format %s is already registered", name);
        return FALSE;
      }
  g_array_append_val (self->formats, type);
  g_rec_mutex_unlock (&self->lock);
  return TRUE;
}

/**
 * quark_registry_list_formats:
 * @self: a registry
 *
 * Lists the checkpoint formats `--export-format` accepts.
 *
 * Returns: (transfer full): the names of the registered checkpoint
 *   formats, in registration order
 */
char **
quark_registry_list_formats (QuarkRegistry *self)
{
  GPtrArray *names = g_ptr_array_new ();

  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  ensure_loaded (self);
  g_rec_mutex_lock (&self->lock);
  for (guint i = 0; i < self->formats->len; i++)
    g_ptr_array_add (names, g_strdup (format_type_name (g_array_index (self->formats, GType, i))));
  g_rec_mutex_unlock (&self->lock);
  g_ptr_array_add (names, NULL);
  return (char **) g_ptr_array_free (names, FALSE);
}

/**
 * quark_registry_new_format:
 * @self: a registry
 * @name: a format name, as `quark formats` lists them
 * @error: return location for a #GError
 *
 * Creates a format instance for one export.
 *
 * Returns: (transfer full): the format, or %NULL with %QUARK_ERROR_NOT_FOUND
 *   (the message lists the registered names)
 */
QuarkCheckpointFormat *
quark_registry_new_format (QuarkRegistry *self, const char *name, GError **error)
{
  g_auto(GStrv) names = NULL;
  g_autofree char *list = NULL;
  GType found = G_TYPE_INVALID;

  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  ensure_loaded (self);
  g_rec_mutex_lock (&self->lock);
  for (guint i = 0; i < self->formats->len; i++)
    if (g_str_equal (format_type_name (g_array_index (self->formats, GType, i)), name))
      found = g_array_index (self->formats, GType, i);
  g_rec_mutex_unlock (&self->lock);
  if (found != G_TYPE_INVALID)
    return g_object_new (found, NULL);
  names = quark_registry_list_formats (self);
  list = g_strjoinv (", ", names);
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_NOT_FOUND, "unknown checkpoint format \"%s\" (known: %s)", name, list);
  return NULL;
}

/* The registered format types, copied so formats run without the lock */
static GArray *
format_types (QuarkRegistry *self)
{
  GArray *types;

  ensure_loaded (self);
  g_rec_mutex_lock (&self->lock);
  types = g_array_copy (self->formats);
  g_rec_mutex_unlock (&self->lock);
  return types;
}

/**
 * quark_registry_format_for_checkpoint:
 * @self: a registry
 * @quantization_config: (nullable): a checkpoint's `quantization_config`
 *
 * Finds the format a checkpoint is written in, from its config.
 *
 * Returns: (transfer full) (nullable): an instance of the first registered
 *   format that recognizes the config, or %NULL
 */
QuarkCheckpointFormat *
quark_registry_format_for_checkpoint (QuarkRegistry *self, JsonNode *quantization_config)
{
  g_autoptr(GArray) types = NULL;

  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  if (quantization_config == NULL || !JSON_NODE_HOLDS_OBJECT (quantization_config))
    return NULL;
  types = format_types (self);
  for (guint i = 0; i < types->len; i++)
    {
      g_autoptr(QuarkCheckpointFormat) format = g_object_new (g_array_index (types, GType, i), NULL);
      if (quark_checkpoint_format_recognizes (format, quantization_config))
        return g_steal_pointer (&format);
    }
  return NULL;
}

/**
 * quark_registry_format_for_file:
 * @self: a registry
 * @path: a file
 *
 * Finds the single-file format of @path by its first bytes.
 *
 * Returns: (transfer full) (nullable): an instance of the format, or %NULL
 *   (not a regular file, unreadable, or no format recognizes it)
 */
QuarkCheckpointFormat *
quark_registry_format_for_file (QuarkRegistry *self, const char *path)
{
  g_autoptr(GArray) types = NULL;
  guint8 head[64];
  gssize n;
  int fd;

  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  g_return_val_if_fail (path != NULL, NULL);
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
    return NULL;
  fd = g_open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
  if (fd < 0)
    return NULL;
  n = read (fd, head, sizeof head);
  close (fd);
  if (n <= 0)
    return NULL;
  types = format_types (self);
  for (guint i = 0; i < types->len; i++)
    {
      g_autoptr(QuarkCheckpointFormat) format = g_object_new (g_array_index (types, GType, i), NULL);
      if (quark_checkpoint_format_sniff (format, head, (gsize) n))
        return g_steal_pointer (&format);
    }
  return NULL;
}


static JsonNode *
quantization_config_of (QuarkModel *model)
{
  JsonNode *metadata = quark_model_get_metadata (model), *node;

  node = metadata && JSON_NODE_HOLDS_OBJECT (metadata)
         ? json_object_get_member (json_node_get_object (metadata), "quantization_config") : NULL;
  return node && JSON_NODE_HOLDS_OBJECT (node) ? node : NULL;
}

/**
 * quark_registry_format_for_model:
 * @self: a #QuarkRegistry
 * @checkpoint: a checkpoint, as [func@Quark.Model.load] reads it (its
 *   metadata holds `config.json`)
 *
 * The registered format a loaded checkpoint is in, by the
 * `quantization_config` of its `config.json`
 * ([method@Quark.Registry.format_for_checkpoint]).
 *
 * Returns: (transfer full) (nullable): a new instance of the format, or
 *   %NULL for a float model or a format no module registers
 */
QuarkCheckpointFormat *
quark_registry_format_for_model (QuarkRegistry *self, QuarkModel *checkpoint)
{
  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  g_return_val_if_fail (QUARK_IS_MODEL (checkpoint), NULL);

  return quark_registry_format_for_checkpoint (self, quantization_config_of (checkpoint));
}

/**
 * quark_registry_config_for_checkpoint:
 * @self: a #QuarkRegistry
 * @checkpoint: a quantized checkpoint, as [func@Quark.Model.load] reads it
 * @error: return location for a #GError
 *
 * The backend config that a quantized checkpoint records: its
 * `quantization_config` (AMD Quark's own checkpoints, `quant_method:
 * "quark"`, are read by the quark backend), or the `libquark_config` that
 * libquark keeps there when it writes another backend's format.
 *
 * Fails with %QUARK_ERROR_INVALID_FILE when the checkpoint has no
 * `quantization_config`, and as [method@Quark.Registry.config_from_json]
 * when no backend reads it.
 *
 * Returns: (transfer full): the config, or %NULL with @error set
 */
QuarkQuantizationConfig *
quark_registry_config_for_checkpoint (QuarkRegistry *self, QuarkModel *checkpoint, GError **error)
{
  g_autoptr(JsonNode) qc = NULL;
  JsonNode *node;

  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  g_return_val_if_fail (QUARK_IS_MODEL (checkpoint), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if ((node = quantization_config_of (checkpoint)) == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE, "config.json has no quantization_config");
      return NULL;
    }
  if (json_object_has_member (json_node_get_object (node), "libquark_config"))
    node = json_object_get_member (json_node_get_object (node), "libquark_config");
  qc = quark_json_copy (node);
  if (JSON_NODE_HOLDS_OBJECT (qc) && !json_object_has_member (json_node_get_object (qc), "backend"))
    {
      const char *method = json_object_get_string_member_with_default (json_node_get_object (qc), "quant_method", "");
      if (g_str_equal (method, "quark"))
        json_object_set_string_member (json_node_get_object (qc), "backend", "quark");
    }
  return quark_registry_config_from_json (self, qc, "quantization_config", error);
}

/**
 * quark_registry_dequantize_checkpoint:
 * @self: a #QuarkRegistry
 * @checkpoint: a quantized checkpoint, as [func@Quark.Model.load] reads it
 *   (its metadata holds `config.json`)
 * @error: return location for a #GError
 *
 * Reads a quantized checkpoint back to float: by its format when the format
 * describes every tensor itself (compressed-tensors, AWQ, FP8 blocks), else
 * with the backend that the checkpoint's `quantization_config` names
 * (AMD Quark's own checkpoints name their format, `quant_method: "quark"`,
 * which the quark backend reads; libquark's checkpoints in another
 * backend's format keep the config that made them as `libquark_config`).
 *
 * Fails with %QUARK_ERROR_INVALID_FILE when the checkpoint has no
 * `quantization_config`.
 *
 * Returns: (transfer full): the float model, or %NULL with @error set
 */
QuarkModel *
quark_registry_dequantize_checkpoint (QuarkRegistry *self, QuarkModel *checkpoint, GError **error)
{
  g_autoptr(QuarkCheckpointFormat) format = NULL;
  g_autoptr(QuarkQuantizationConfig) config = NULL;
  g_autoptr(QuarkModelQuantizer) quantizer = NULL;

  g_return_val_if_fail (QUARK_IS_REGISTRY (self), NULL);
  g_return_val_if_fail (QUARK_IS_MODEL (checkpoint), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  format = quark_registry_format_for_model (self, checkpoint);
  if (format && quark_checkpoint_format_can_dequantize (format))
    return quark_checkpoint_format_dequantize_model (format, checkpoint, error);
  if ((config = quark_registry_config_for_checkpoint (self, checkpoint, error)) == NULL ||
      (quantizer = quark_registry_new_quantizer (self, config, error)) == NULL)
    return NULL;
  return quark_model_quantizer_dequantize_model (quantizer, checkpoint, error);
}
