/* quark-gguf-quants-private.h: the vector form of the k-quants' searches
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* ggml's make_qkx2_quants on 16 sub-blocks of @n (<= 32) values at once:
 * sub-block j at x + j·n (its weights at weights + j·n, its codes into
 * L + j·n), its scale into scales[j] and its negated minimum into mins[j];
 * the bits of the scalar search (quark-gguf-search.c) */
void _quark_gguf_qkx2_x16 (int n, int nmax, const float *x, const float *weights, guint8 *L, float *scales,
                           float *mins, float rmin, float rdelta, int nstep, int use_mad)
  __attribute__ ((visibility ("hidden")));
/* the same on 32 and 64 sub-blocks (two and four groups of 16, their sums
 * interleaved) */
void _quark_gguf_qkx2_x32 (int n, int nmax, const float *x, const float *weights, guint8 *L, float *scales,
                           float *mins, float rmin, float rdelta, int nstep, int use_mad)
  __attribute__ ((visibility ("hidden")));
void _quark_gguf_qkx2_x64 (int n, int nmax, const float *x, const float *weights, guint8 *L, float *scales,
                           float *mins, float rmin, float rdelta, int nstep, int use_mad)
  __attribute__ ((visibility ("hidden")));

/* ggml's make_qx_quants (rmse_type 1) on 16 sub-blocks of @n (<= 32)
 * values at once, weighted by @qw (laid out as @x) or by x²: codes plus
 * nmax into L + j·n, scales into scales[j] */
void _quark_gguf_qx_x16 (int n, int nmax, const float *x, const float *qw, gint8 *L, float *scales)
  __attribute__ ((visibility ("hidden")));

/* below this largest |x|, ggml's k-quant searches take a sub-block as all
 * zeros: codes 0 and scale 0 (its GROUP_MAX_EPS) */
#define GROUP_MAX_EPS 1e-15f

/* the most sub-blocks _quark_gguf_q3_many takes at once (64 super-blocks) */
#define QUARK_GGUF_Q3_MAX 1024

/* ggml's make_q3_quants (16, @nmax, do_rmse) on @count sub-blocks of 16
 * values (a multiple of 16, at most QUARK_GGUF_Q3_MAX), sub-block j at
 * x + 16·j: codes plus nmax into L + 16·j, scales into scales[j] */
void _quark_gguf_q3_many (int nmax, int count, const float *x, gint8 *L, float *scales)
  __attribute__ ((visibility ("hidden")));

/* For @count sub-blocks of @n values (a multiple of 16), sub-block j at
 * x + j·n with scale d[j] and, when @m is not NULL, minimum m[j]:
 * L[i] = offset + clamp (nearest_int ((x[i] (+ m[j])) / d[j]), lo, hi);
 * a sub-block whose d[j] is 0 keeps its codes */
void _quark_gguf_requantize (const float *x, int count, int n, const float *m, const float *d, int lo, int hi,
                             int offset, guint8 *L)
  __attribute__ ((visibility ("hidden")));

/* @nblocks blocks of 32 as llama.cpp's reference quantizers of Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0 and MXFP4 (@type: the ggml type) make them, packed into
 * y but for the scale (MXFP4: the E8M0 byte) and minimum, which go into
 * scales[2·b] and scales[2·b + 1] */
void _quark_gguf_legacy_blocks (int type, const float *x, size_t nblocks, guint8 *y, float *scales)
  __attribute__ ((visibility ("hidden")));

/* quantize_row_iq4_nl_impl (ntry 7) on 16 blocks of 32 at once: scales
 * (before fp16) into scales[j], codes into L + 32·j */
void _quark_gguf_iq4nl_x16 (const float *x, const float *w, float *scales, guint8 *L)
  __attribute__ ((visibility ("hidden")));

G_END_DECLS
