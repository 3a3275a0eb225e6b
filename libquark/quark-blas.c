/* quark-blas.c: BLAS and LAPACKE, loaded when first needed
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Only the algorithms (GPTQ, GPFQ, AWQ, rotation), second-moment
 * calibration and the native runtime use BLAS and LAPACKE. Linking them
 * would load OpenBLAS, LAPACK, gfortran and quadmath into every program
 * that loads libquark, and OpenBLAS starts its thread pool as it loads:
 * a program that only quantizes, inspects or converts checkpoints (or
 * imports Quark through introspection) would pay for both. So libquark
 * opens the libraries the first time one of those parts runs: the
 * libraries named by the environment variable QUARK_BLAS_LIBRARIES
 * (colon-separated, as dlopen() finds them; any that provide CBLAS and
 * LAPACKE, such as a build of OpenBLAS with LAPACKE in it), by default
 * QUARK_DEFAULT_BLAS_LIBRARIES from the build. Each routine is taken from
 * the first library that has it. The libraries stay loaded.
 */
#include "config.h"

#include "quark-blas-private.h"
#include "quark-error.h"

#include <dlfcn.h>
#include <string.h>

static QuarkBlas blas;
static GError *load_error;

static const struct {
  const char *symbol;
  gsize offset;
  gboolean optional;
} routines[] = {
  { "cblas_sgemm", G_STRUCT_OFFSET (QuarkBlas, sgemm), FALSE },
  { "cblas_sgemv", G_STRUCT_OFFSET (QuarkBlas, sgemv), FALSE },
  { "cblas_ssymm", G_STRUCT_OFFSET (QuarkBlas, ssymm), FALSE },
  { "cblas_dgemm", G_STRUCT_OFFSET (QuarkBlas, dgemm), FALSE },
  { "cblas_dsyrk", G_STRUCT_OFFSET (QuarkBlas, dsyrk), FALSE },
  { "LAPACKE_dpotrf", G_STRUCT_OFFSET (QuarkBlas, dpotrf), FALSE },
  { "LAPACKE_dtrtri", G_STRUCT_OFFSET (QuarkBlas, dtrtri), FALSE },
  { "LAPACKE_dposv", G_STRUCT_OFFSET (QuarkBlas, dposv), FALSE },
  { "LAPACKE_dgeqrf", G_STRUCT_OFFSET (QuarkBlas, dgeqrf), FALSE },
  { "LAPACKE_dorgqr", G_STRUCT_OFFSET (QuarkBlas, dorgqr), FALSE },
  { "openblas_get_num_threads", G_STRUCT_OFFSET (QuarkBlas, get_num_threads), TRUE },
  { "openblas_set_num_threads", G_STRUCT_OFFSET (QuarkBlas, set_num_threads), TRUE },
};

/* the libraries opened before a failure are closed again: a set that
 * cannot serve should not stay mapped (nor keep OpenBLAS's threads) */
static void
close_all (GPtrArray *handles)
{
  for (guint i = 0; i < handles->len; i++)
    dlclose (handles->pdata[i]);
}

static void
load (void)
{
  const char *names = g_getenv ("QUARK_BLAS_LIBRARIES");
  g_auto(GStrv) list = NULL;
  g_autoptr(GPtrArray) handles = g_ptr_array_new ();
  QuarkBlas found = { 0 };

  if (names == NULL || *names == '\0')
    names = QUARK_DEFAULT_BLAS_LIBRARIES;
  list = g_strsplit (names, ":", -1);
  for (guint i = 0; list[i]; i++)
    {
      void *handle;
      if (*list[i] == '\0')
        continue;
      if ((handle = dlopen (list[i], RTLD_NOW | RTLD_LOCAL)) == NULL)
        {
          const char *why = dlerror ();
          load_error = g_error_new (QUARK_ERROR, QUARK_ERROR_NOT_FOUND, "cannot load the BLAS library %s (%s); "
                                    "the algorithms, second-moment calibration and the runtime need CBLAS and "
                                    "LAPACKE, from the libraries QUARK_BLAS_LIBRARIES names (default %s)", list[i],
                                    why ? why : "not found", QUARK_DEFAULT_BLAS_LIBRARIES);
          close_all (handles);
          return;
        }
      g_ptr_array_add (handles, handle);
    }
  for (gsize r = 0; r < G_N_ELEMENTS (routines); r++)
    {
      void *address = NULL;
      for (guint i = 0; address == NULL && i < handles->len; i++)
        address = dlsym (handles->pdata[i], routines[r].symbol);
      if (address == NULL && !routines[r].optional)
        {
          load_error = g_error_new (QUARK_ERROR, QUARK_ERROR_NOT_FOUND, "%s: none of the BLAS libraries %s has it",
                                    routines[r].symbol, names);
          close_all (handles);
          return;
        }
      memcpy ((char *) &found + routines[r].offset, &address, sizeof address);
    }
  blas = found;
}

/* Loads the libraries once; %QUARK_ERROR_NOT_FOUND when a library or a
 * routine is missing (the same error every time) */
gboolean
_quark_blas_load (GError **error)
{
  static gsize once;

  if (g_once_init_enter (&once))
    {
      load ();
      g_once_init_leave (&once, 1);
    }
  if (load_error)
    {
      g_propagate_error (error, g_error_copy (load_error));
      return FALSE;
    }
  return TRUE;
}

/* The routines, for code that a public function's _quark_blas_load()
 * has let through (fatal, with the reason, if the libraries are missing:
 * a public function that calls BLAS without checking first is a bug) */
const QuarkBlas *
_quark_blas (void)
{
  g_autoptr(GError) error = NULL;

  if (G_UNLIKELY (!_quark_blas_load (&error)))
    g_error ("%s", error->message);
  return &blas;
}

QuarkBlasScope
_quark_blas_single_threaded_enter (void)
{
  const QuarkBlas *b = _quark_blas ();
  QuarkBlasScope scope = { b->get_num_threads ? b->get_num_threads () : 0 };

  if (b->set_num_threads)
    b->set_num_threads (1);
  return scope;
}

void
_quark_blas_single_threaded_leave (QuarkBlasScope *scope)
{
  const QuarkBlas *b = _quark_blas ();

  if (b->set_num_threads && scope->saved > 0)
    b->set_num_threads (scope->saved);
}
