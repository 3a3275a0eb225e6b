/* quark-blas-private.h: BLAS and LAPACKE, loaded when first needed
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

/* the headers for the types and constants only: libquark does not link
 * the libraries, it loads them (quark-blas.c) */
#include <cblas.h>
#include <lapacke.h>

G_BEGIN_DECLS

/* The routines libquark calls, as the headers declare them */
typedef struct {
  __typeof__ (cblas_sgemm) *sgemm;
  __typeof__ (cblas_sgemv) *sgemv;
  __typeof__ (cblas_ssymm) *ssymm;
  __typeof__ (cblas_dgemm) *dgemm;
  __typeof__ (cblas_dsyrk) *dsyrk;
  __typeof__ (LAPACKE_dpotrf) *dpotrf;
  __typeof__ (LAPACKE_dtrtri) *dtrtri;
  __typeof__ (LAPACKE_dposv) *dposv;
  __typeof__ (LAPACKE_dgeqrf) *dgeqrf;
  __typeof__ (LAPACKE_dorgqr) *dorgqr;
  /* OpenBLAS's thread count; NULL in libraries without it */
  __typeof__ (openblas_get_num_threads) *get_num_threads;
  __typeof__ (openblas_set_num_threads) *set_num_threads;
} QuarkBlas;

gboolean         _quark_blas_load   (GError **error);
const QuarkBlas *_quark_blas        (void);

/* The library's own threads off while libquark's threads each call it;
 * the setting is restored when the scope ends */
typedef struct {
  int saved;
} QuarkBlasScope;

QuarkBlasScope   _quark_blas_single_threaded_enter (void);
void             _quark_blas_single_threaded_leave (QuarkBlasScope *scope);

#define QUARK_BLAS_SINGLE_THREADED \
  G_GNUC_UNUSED __attribute__ ((cleanup (_quark_blas_single_threaded_leave))) QuarkBlasScope quark_blas_scope_ = \
    _quark_blas_single_threaded_enter ()

G_END_DECLS
