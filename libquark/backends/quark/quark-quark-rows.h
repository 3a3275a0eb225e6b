/* quark-quark-rows.h: the quark backend's row path
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <quark/quark.h>
#include <quark/quark-kernels.h>

G_BEGIN_DECLS

#define QUARK_EPS 1.1920928955078125e-07f   /* 2^-23 */

/* Worker threads that split the rows of one tensor. */
typedef struct _QuarkQuarkWorkers QuarkQuarkWorkers;

QuarkQuarkWorkers *quark_quark_workers_new  (guint              n_threads);
void               quark_quark_workers_free (QuarkQuarkWorkers *workers);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (QuarkQuarkWorkers, quark_quark_workers_free)

/* Rounds *@s to @dtype (bfloat16 or float16; other dtypes leave it) or
 * fails naming tensor @name. */
gboolean quark_quark_round_scale (float *s, QuarkDType dtype, const char *name, GError **error);

/* The error for a weight holding NaN or infinity, naming tensor @name. */
void quark_quark_nonfinite_error (GError **error, const char *name);

/* Stores zero point @z as element @i of a buffer of @dtype's storage. */
void quark_quark_store_zero_point (QuarkDType dtype, gpointer buffer, gsize i, int32_t z);

/* Whether quark_quark_rows_quantize() takes @tensor with @spec and @l. */
gboolean quark_quark_rows_apply (QuarkTensor             *tensor,
                                 QuarkTensorSpec         *spec,
                                 gboolean                 allow_nonfinite,
                                 const QuarkKernelLayout *l);

/* Quantizes @tensor straight from its data, row by row (in parallel over
 * @workers, which may be NULL): @codes (l->n elements of the spec's dtype),
 * @scales (l->n_params, rounded to @scale_dtype) and, for integers, @zps
 * (l->n_params of the spec's dtype); for MX, @scale_bytes (E8M0). With
 * an int4 @layout other than QUARK_CODE_LAYOUT_BYTES (int4 or uint4 per
 * group, l->rows a multiple of 8), @codes is instead room for the
 * l->n / 8 words of that layout, written a block of rows at a time. */
gboolean quark_quark_rows_quantize (QuarkTensor             *tensor,
                                    QuarkTensorSpec         *spec,
                                    const QuarkKernelLayout *l,
                                    QuarkDType               scale_dtype,
                                    QuarkQuarkWorkers       *workers,
                                    QuarkCodeLayout          layout,
                                    guint8                  *codes,
                                    float                   *scales,
                                    gpointer                 zps,
                                    guint8                  *scale_bytes,
                                    GError                 **error);

G_END_DECLS
