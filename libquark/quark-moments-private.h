/* quark-moments-private.h: second moments of a layer's input
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "quark-model.h"

G_BEGIN_DECLS

/* Σ x xᵀ over every token x (a row of features) seen, in float64, with the
 * token count and per-feature Σx, Σx², Σ|x| and max |x|: what GPTQ (the Hessian
 * 2 · H / n), AWQ (the output error of a scaled weight, exactly) and
 * SmoothQuant (the per-channel maxima) read. */
typedef struct {
  gsize n_features;
  guint64 n_tokens;
  double *gram;                 /* n_features², the upper triangle (j ≥ i) accumulated; NULL
                                 * when only the per-feature sums are learned */
  double *sum, *sum_sq, *sum_abs;
  float *abs_max;
  double *cross;                /* n_features², Σ r xᵀ of a reference r (the float model's input) against the
                                 * input x, row i for r_i; NULL when not learned */
  guint64 n_cross;              /* the tokens cross has seen */
} QuarkMoments;

QuarkMoments * _quark_moments_new      (gsize            n_features,
                                        gboolean         gram,
                                        GError         **error);
void           _quark_moments_free     (QuarkMoments    *m);
/* Adds @n_tokens rows of @n_features floats */
void           _quark_moments_add      (QuarkMoments    *m,
                                        const float     *x,
                                        gsize            n_tokens);
/* Adds @n_tokens rows of the reference @r against the input @x to the
 * cross moments (allocated on first use) */
gboolean       _quark_moments_add_cross (QuarkMoments   *m,
                                        const float     *r,
                                        const float     *x,
                                        gsize            n_tokens,
                                        GError         **error);
/* The cross moments Σ r xᵀ as a float64 tensor [n, n] */
QuarkTensor *  _quark_moments_cross    (const QuarkMoments *m,
                                        const char      *name);
/* @from's cross moments (which it has) added to @into's, allocated on
 * first use; FALSE when they cannot be */
gboolean       _quark_moments_add_cross_of (QuarkMoments *into,
                                        const QuarkMoments *from);
/* Another session's cross moments into @into's, before _quark_moments_merge():
 * kept when both have them (or @into has seen nothing yet) */
void           _quark_moments_merge_cross (QuarkMoments *into,
                                        const QuarkMoments *from);
/* (the cross moments are left as they are) */
void           _quark_moments_merge    (QuarkMoments    *into,
                                        const QuarkMoments *from);
/* The full symmetric Gram matrix, as a float64 tensor [n, n] */
QuarkTensor *  _quark_moments_gram     (const QuarkMoments *m,
                                        const char      *name);
/* Into @model as LAYER.gram (upper triangle as accumulated; when kept), LAYER.sum,
 * LAYER.sum_sq, LAYER.sum_abs (F64), LAYER.abs_max (F32), LAYER.tokens (I64 [1]) */
void           _quark_moments_to_model (const QuarkMoments *m,
                                        const char      *layer,
                                        QuarkModel      *model);
QuarkMoments * _quark_moments_from_model (QuarkModel    *model,
                                        const char      *layer,
                                        const char      *source,
                                        GError         **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (QuarkMoments, _quark_moments_free)

G_END_DECLS
