/* quark-backend-module.c: a loadable backend module
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-backend-module-private.h"
#include "quark-backend-private.h"
#include "quark-error.h"
#include "quark-registry-private.h"

#include <gmodule.h>
#include <string.h>

/**
 * QuarkBackendModule:
 *
 * A shared module that registers one or more backends.
 *
 * The registry finds module files in the directories of `QUARK_BACKEND_PATH`
 * and then in the installed backend directory, opens each with local symbol
 * binding and immediate symbol resolution, makes it resident (backends are
 * never unloaded: foreign runtimes rarely survive `dlclose`), and calls its
 * entry point (see #QuarkBackendModuleRegisterFunc).
 *
 * A module that cannot be opened, has no entry point, was built for another
 * backend ABI, or fails in its entry point is skipped with a warning; it is
 * still listed by [method@Quark.Registry.list_modules] with its error.
 */
struct _QuarkBackendModule
{
  GTypeModule parent_instance;

  char *path;
  GModule *module;
  gboolean loading;
  gboolean loaded;
  gboolean abi_checked;
  guint abi_version;
  GError *error;
  GPtrArray *backends;
};

G_DEFINE_FINAL_TYPE (QuarkBackendModule, quark_backend_module, G_TYPE_TYPE_MODULE)

static void
quark_backend_module_finalize (GObject *object)
{
  QuarkBackendModule *self = QUARK_BACKEND_MODULE (object);

  /* Never reached for modules the registry holds; kept for modules made and
   * dropped by tests before loading. */
  g_free (self->path);
  g_clear_error (&self->error);
  g_ptr_array_unref (self->backends);

  G_OBJECT_CLASS (quark_backend_module_parent_class)->finalize (object);
}

char *
_quark_backend_module_entry_name (const char *path)
{
  g_autofree char *base = g_path_get_basename (path);
  char *dot;
  const char *name = base;

  if (g_str_has_prefix (name, "lib"))
    name += 3;
  dot = strchr (name, '.');
  if (dot)
    *dot = '\0';
  {
    g_autofree char *canonical = g_strdup (name);
    for (char *c = canonical; *c; c++)
      if (!g_ascii_isalnum (*c))
        *c = '_';
    return g_strconcat (canonical, "_register", NULL);
  }
}

static gboolean
quark_backend_module_load_module (GTypeModule *type_module)
{
  QuarkBackendModule *self = QUARK_BACKEND_MODULE (type_module);
  g_autoptr(GError) local_error = NULL;
  g_autofree char *entry_name = NULL;
  QuarkBackendModuleRegisterFunc entry = NULL;
  gboolean ok;

  self->module = g_module_open_full (self->path, G_MODULE_BIND_LOCAL, &local_error);
  if (self->module == NULL)
    {
      g_set_error (&self->error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_LOAD_FAILED,
                   "%s: cannot load module: %s", self->path, local_error->message);
      return FALSE;
    }
  /* Never unload: a module may back live types or a runtime that does not
   * survive dlclose(). */
  g_module_make_resident (self->module);

  entry_name = _quark_backend_module_entry_name (self->path);
  if (!g_module_symbol (self->module, entry_name, (gpointer *) &entry) &&
      !g_module_symbol (self->module, "quark_backend_module_register", (gpointer *) &entry))
    {
      g_set_error (&self->error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_NO_ENTRY_POINT,
                   "%s: no backend entry point (neither %s nor quark_backend_module_register is exported)",
                   self->path, entry_name);
      return FALSE;
    }

  self->loading = TRUE;
  ok = entry (self, &local_error);
  self->loading = FALSE;

  if (!ok)
    {
      if (local_error)
        {
          self->error = g_steal_pointer (&local_error);
          if (!strstr (self->error->message, self->path))
            g_prefix_error (&self->error, "%s: ", self->path);
        }
      else
        g_set_error (&self->error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_LOAD_FAILED,
                     "%s: the entry point %s failed without saying why", self->path, entry_name);
      g_ptr_array_set_size (self->backends, 0);
      return FALSE;
    }
  if (!self->abi_checked)
    {
      g_set_error (&self->error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_ABI_MISMATCH,
                   "%s: the module did not declare its backend ABI "
                   "(its entry point must call quark_backend_module_check_abi())", self->path);
      g_ptr_array_set_size (self->backends, 0);
      return FALSE;
    }
  if (self->backends->len == 0)
    {
      g_set_error (&self->error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_INVALID,
                   "%s: the module registered no backend", self->path);
      return FALSE;
    }

  self->loaded = TRUE;
  return TRUE;
}

static void
quark_backend_module_unload_module (GTypeModule *type_module)
{
  /* The registry uses each module once and never releases it. */
  g_critical ("backend module %s unloaded; backend modules must stay resident",
              QUARK_BACKEND_MODULE (type_module)->path);
}

static void
quark_backend_module_class_init (QuarkBackendModuleClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GTypeModuleClass *module_class = G_TYPE_MODULE_CLASS (klass);

  object_class->finalize = quark_backend_module_finalize;
  module_class->load = quark_backend_module_load_module;
  module_class->unload = quark_backend_module_unload_module;
}

static void
quark_backend_module_init (QuarkBackendModule *self)
{
  self->backends = g_ptr_array_new_with_free_func (g_object_unref);
}

QuarkBackendModule *
_quark_backend_module_new (const char *path)
{
  QuarkBackendModule *self = g_object_new (QUARK_TYPE_BACKEND_MODULE, NULL);

  self->path = g_strdup (path);
  g_type_module_set_name (G_TYPE_MODULE (self), path);
  return self;
}

gboolean
_quark_backend_module_load (QuarkBackendModule *self)
{
  /* the use count is never dropped: modules stay loaded */
  return g_type_module_use (G_TYPE_MODULE (self));
}

/* Records why a backend of a loaded module was skipped. */
void
_quark_backend_module_take_error (QuarkBackendModule *self,
                                  GError             *error)
{
  g_clear_error (&self->error);
  self->error = error;
}

/**
 * quark_backend_module_check_abi:
 * @self: the module being loaded
 * @abi_version: the %QUARK_BACKEND_ABI_VERSION the module was built against
 * @error: return location for a #GError
 *
 * Declares the backend ABI the module was built for. Entry points call this
 * first and return %FALSE with the error when it fails.
 *
 * Returns: %TRUE if @abi_version is the ABI of this libquark; %FALSE with
 *   %QUARK_BACKEND_ERROR_ABI_MISMATCH naming the module file otherwise
 */
gboolean
quark_backend_module_check_abi (QuarkBackendModule  *self,
                                guint                abi_version,
                                GError             **error)
{
  g_return_val_if_fail (QUARK_IS_BACKEND_MODULE (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  self->abi_checked = TRUE;
  self->abi_version = abi_version;
  if (abi_version != QUARK_BACKEND_ABI_VERSION)
    {
      g_set_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_ABI_MISMATCH,
                   "%s was built for backend ABI %u, but libquark %s loads ABI %u; "
                   "rebuild the module or remove the file",
                   self->path, abi_version, QUARK_VERSION_S, QUARK_BACKEND_ABI_VERSION);
      return FALSE;
    }
  return TRUE;
}

/**
 * quark_backend_module_add_backend:
 * @self: the module being loaded
 * @backend: a backend description whose types the module registered
 * @error: return location for a #GError
 *
 * Adds a backend from the module's entry point. The registry lists it once
 * the entry point has returned successfully.
 *
 * Returns: %TRUE on success; %FALSE with %QUARK_BACKEND_ERROR_ABI_MISMATCH
 *   (quark_backend_module_check_abi() was not called or failed),
 *   %QUARK_BACKEND_ERROR_INVALID or %QUARK_BACKEND_ERROR_DUPLICATE
 */
gboolean
quark_backend_module_add_backend (QuarkBackendModule  *self,
                                  QuarkBackend        *backend,
                                  GError             **error)
{
  g_return_val_if_fail (QUARK_IS_BACKEND_MODULE (self), FALSE);
  g_return_val_if_fail (QUARK_IS_BACKEND (backend), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!self->loading)
    {
      g_set_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_INVALID,
                   "%s: backends can only be added from the module's entry point", self->path);
      return FALSE;
    }
  if (!self->abi_checked || self->abi_version != QUARK_BACKEND_ABI_VERSION)
    {
      g_set_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_ABI_MISMATCH,
                   "%s: quark_backend_module_check_abi() must succeed before backends are added",
                   self->path);
      return FALSE;
    }
  if (quark_backend_is_registered (backend) || !_quark_backend_check_types (backend, error))
    {
      if (error && *error == NULL)
        g_set_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_INVALID,
                     "backend %s is already registered", quark_backend_get_name (backend));
      return FALSE;
    }
  for (guint i = 0; i < self->backends->len; i++)
    if (g_str_equal (quark_backend_get_name (g_ptr_array_index (self->backends, i)),
                     quark_backend_get_name (backend)))
      {
        g_set_error (error, QUARK_BACKEND_ERROR, QUARK_BACKEND_ERROR_DUPLICATE,
                     "%s: backend %s is added twice", self->path, quark_backend_get_name (backend));
        return FALSE;
      }

  _quark_backend_set_module_path (backend, self->path);
  g_ptr_array_add (self->backends, g_object_ref (backend));
  return TRUE;
}

/**
 * quark_backend_module_get_path:
 * @self: a #QuarkBackendModule
 *
 * Gets the module file.
 *
 * Returns: (transfer none) (type filename): the module file
 */
const char *
quark_backend_module_get_path (QuarkBackendModule *self)
{
  g_return_val_if_fail (QUARK_IS_BACKEND_MODULE (self), NULL);
  return self->path;
}

/**
 * quark_backend_module_is_loaded:
 * @self: a #QuarkBackendModule
 *
 * Checks whether the module loaded and registered its backends.
 *
 * Returns: whether the module loaded and registered its backends
 */
gboolean
quark_backend_module_is_loaded (QuarkBackendModule *self)
{
  g_return_val_if_fail (QUARK_IS_BACKEND_MODULE (self), FALSE);
  return self->loaded;
}

/**
 * quark_backend_module_get_error:
 * @self: a #QuarkBackendModule
 *
 * Gets why the module, or one of its backends, was skipped.
 *
 * Returns: (transfer none) (nullable): the error, or %NULL for a module that
 *   loaded and whose backends were all registered
 */
const GError *
quark_backend_module_get_error (QuarkBackendModule *self)
{
  g_return_val_if_fail (QUARK_IS_BACKEND_MODULE (self), NULL);
  return self->error;
}

/**
 * quark_backend_module_get_abi_version:
 * @self: a #QuarkBackendModule
 *
 * Gets the backend ABI the module declared.
 *
 * Returns: the backend ABI the module declared, or 0 if it declared none
 */
guint
quark_backend_module_get_abi_version (QuarkBackendModule *self)
{
  g_return_val_if_fail (QUARK_IS_BACKEND_MODULE (self), 0);
  return self->abi_version;
}

/**
 * quark_backend_module_get_backends:
 * @self: a #QuarkBackendModule
 *
 * Lists the backends the module registered.
 *
 * Returns: (transfer container) (element-type QuarkBackend): the backends
 */
GPtrArray *
quark_backend_module_get_backends (QuarkBackendModule *self)
{
  GPtrArray *result;

  g_return_val_if_fail (QUARK_IS_BACKEND_MODULE (self), NULL);

  result = g_ptr_array_new_with_free_func (g_object_unref);
  for (guint i = 0; i < self->backends->len; i++)
    g_ptr_array_add (result, g_object_ref (g_ptr_array_index (self->backends, i)));
  return result;
}
