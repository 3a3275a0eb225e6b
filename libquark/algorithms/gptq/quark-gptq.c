/* quark-gptq.c: GPTQ, error-compensating weight quantization
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-gptq.h"
#include "quark-gptq-private.h"
#include "quark-error.h"
#include "kernels/quark-kernels.h"
#include "runtime/quark-parallel-private.h"
#include "quark-blas-private.h"
#include "quark-buffer.h"
#include "quark-buffer-private.h"

#include <math.h>
#include <string.h>

/* The parameter layout of a weight [rows, cols]: one scale per (row,
 * group of columns); per tensor and per channel are groups as wide as a
 * row */
typedef struct {
  gsize rows, cols, group, n_groups;
  gboolean per_row;             /* scales differ between rows */
  float *scales, *zero_points;  /* [rows or 1][n_groups] */
} Params;

static gboolean
read_params (QuarkTensor *weight, QuarkTensorSpec *spec, QuarkTensor *scale, QuarkTensor *zero_point, Params *p,
             GError **error)
{
  QuarkQScheme scheme = quark_tensor_spec_get_qscheme (spec);
  guint64 n_scales = quark_tensor_get_n_elements (scale);
  gsize count;

  p->rows = (gsize) quark_tensor_get_dim (weight, 0);
  p->cols = (gsize) quark_tensor_get_dim (weight, 1);
  if (scheme == QUARK_QSCHEME_PER_TENSOR && n_scales == 1)
    {
      p->group = p->cols;
      p->per_row = FALSE;
    }
  else if (scheme == QUARK_QSCHEME_PER_CHANNEL && quark_tensor_spec_get_ch_axis (spec) == 0 && n_scales == p->rows)
    {
      p->group = p->cols;
      p->per_row = TRUE;
    }
  else if (scheme == QUARK_QSCHEME_PER_GROUP && quark_tensor_spec_get_group_size (spec) > 0 &&
           (quark_tensor_spec_get_ch_axis (spec) == 1 || quark_tensor_spec_get_ch_axis (spec) == -1) &&
           n_scales == p->rows * ((p->cols + (gsize) quark_tensor_spec_get_group_size (spec) - 1) /
                                  (gsize) quark_tensor_spec_get_group_size (spec)))
    {
      p->group = (gsize) quark_tensor_spec_get_group_size (spec);
      p->per_row = TRUE;
    }
  else
    {
      g_autofree char *s = quark_tensor_spec_to_string (spec);
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "%s: GPTQ takes weights per tensor, per output channel or per group of input columns, "
                   "not %s", quark_tensor_get_name (weight), s);
      return FALSE;
    }
  p->n_groups = (p->cols + p->group - 1) / p->group;
  if (quark_tensor_get_dtype (scale) == QUARK_DTYPE_F8_E8M0)
    {
      /* MX: shared exponents, 2^(b − 127) */
      const guint8 *b = quark_tensor_peek_data (scale, &count);
      p->scales = g_new (float, MAX (n_scales, 1));
      for (gsize i = 0; i < n_scales; i++)
        p->scales[i] = b[i] == 0xFF ? NAN : ldexpf (1.0f, (int) b[i] - 127);
    }
  else
    p->scales = quark_tensor_to_floats (scale, &count, error);
  if (p->scales == NULL)
    return FALSE;
  if (zero_point)
    {
      if (quark_tensor_get_n_elements (zero_point) != n_scales)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: %" G_GUINT64_FORMAT " zero points for %"
                       G_GUINT64_FORMAT " scales", quark_tensor_get_name (weight),
                       quark_tensor_get_n_elements (zero_point), n_scales);
          return FALSE;
        }
      if ((p->zero_points = quark_tensor_to_floats (zero_point, &count, error)) == NULL)
        return FALSE;
    }
  return TRUE;
}

typedef struct {
  double d;
  gsize i;
} DiagIndex;

static int
compare_desc (gconstpointer a, gconstpointer b)
{
  const DiagIndex *x = a, *y = b;
  if (x->d != y->d)
    return x->d > y->d ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i;   /* stable */
}

/* The Gram matrix fits @n input features (GPTQ's and GPFQ's check) */
gboolean
_quark_gptq_check_gram (QuarkTensor *gram, gsize n, const char *name, GError **error)
{
  if (quark_tensor_get_dtype (gram) != QUARK_DTYPE_F64 || quark_tensor_get_n_dims (gram) != 2 ||
      quark_tensor_get_dim (gram, 0) != (gint64) n || quark_tensor_get_dim (gram, 1) != (gint64) n)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "%s: the Gram matrix must be float64 [%" G_GSIZE_FORMAT ", %" G_GSIZE_FORMAT "] (the layer's "
                   "input features)", name, n, n);
      return FALSE;
    }
  return TRUE;
}

/* Runs @func over @n_rows rows on the processors (a share of rows each,
 * at least 64), OpenBLAS single-threaded meanwhile: each thread makes its
 * own BLAS calls on its rows */
void
_quark_gptq_run_rows (gsize n_rows, QuarkRangeFunc func, gpointer data)
{
  QuarkParallel *pool = _quark_parallel_new (MIN (g_get_num_processors (), MAX (1, (guint) (n_rows / 64))));
  QuarkBlasScope scope = _quark_blas_single_threaded_enter ();

  _quark_parallel_run (pool, n_rows, func, data);
  _quark_blas_single_threaded_leave (&scope);
  _quark_parallel_free (pool);
}

/* The Gram matrix fits @n input features, and the damping and block size
 * are sane */
static gboolean
check_run (QuarkTensor *gram, gsize n, double damp_percent, guint block_size, const char *name, GError **error)
{
  if (!_quark_gptq_check_gram (gram, n, name, error))
    return FALSE;
  if (!(damp_percent >= 0.0 && damp_percent < 1e6) || block_size == 0)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "%s: damp_percent must be at least 0 and block_size at least 1", name);
      return FALSE;
    }
  return TRUE;
}

/* The order GPTQ and GPFQ take the columns in: descending H[i][i] with
 * @desc (ties by index), else their own; FALSE when a diagonal entry is not
 * finite */
gboolean
_quark_gptq_column_order (const double *g, gsize n, gboolean desc, gsize *perm)
{
  g_autofree DiagIndex *order = g_new (DiagIndex, MAX (n, 1));

  for (gsize i = 0; i < n; i++)
    {
      order[i].i = i;
      order[i].d = g[i * n + i];
      if (!isfinite (order[i].d))
        return FALSE;
    }
  if (desc)
    qsort (order, n, sizeof *order, compare_desc);
  for (gsize i = 0; i < n; i++)
    perm[i] = order[i].i;
  return TRUE;
}

typedef struct _Prepare Prepare;
struct _Prepare {
  void (*row) (const Prepare *p, gsize i);      /* what paired_rows() does to row i */
  const double *g;              /* H0, n × n */
  const gsize *perm;
  const guint8 *dead;
  double damp;
  double *rev;                  /* LAPACK's buffer, n × n */
  float *u;                     /* U, n × n */
  gsize n;
};

/* rev[i][j] (j ≤ i) = H[n−1−i][n−1−j], H[a][b] = H0[perm[a]][perm[b]] */
static void
fill_row (const Prepare *p, gsize i)
{
  gsize n = p->n;
  const double *row = p->g + p->perm[n - 1 - i] * n;
  double *out = p->rev + i * n;

  for (gsize j = 0; j < i; j++)
    out[j] = row[p->perm[n - 1 - j]];
  out[i] = (p->dead[n - 1 - i] ? 1.0 : row[p->perm[n - 1 - i]]) + p->damp;
}

/* rev's row-major lower triangle is L⁻¹; U[i][j] = L⁻¹[n−1−i][n−1−j] */
static void
convert_row (const Prepare *p, gsize i)
{
  gsize n = p->n;
  const double *from = p->rev + (n - 1 - i) * n;
  float *to = p->u + i * n;

  for (gsize j = i; j < n; j++)
    to[j] = (float) from[n - 1 - j];
}

/* Rows in pairs, i and n − 1 − i, so that every item has about n of a
 * triangle's elements and the threads' shares are even */
static void
paired_rows (gpointer data, gsize begin, gsize end, guint worker)
{
  const Prepare *p = data;

  for (gsize k = begin; k < end; k++)
    {
      p->row (p, k);
      if (p->n - 1 - k != k)
        p->row (p, p->n - 1 - k);
    }
}

gpointer
_quark_gptq_pool_try_new (gsize rows, gsize cols, gsize size)
{
  gsize count, bytes;

  if (!g_size_checked_mul (&count, MAX (rows, 1), MAX (cols, 1)) || !g_size_checked_mul (&bytes, count, size))
    return NULL;
  return _quark_buffer_try_alloc (bytes);
}

/* GPTQ's set-up, shared by every variant: the column order (descending
 * diagonal of H with @desc_act, else the columns' own), the input
 * features that were never non-zero (H[i][i] = 0: their weights become 0
 * and their H[i][i] 1), the damping @damp_percent · mean(diag H) on the
 * diagonal, and U, the upper Cholesky factor of the damped, permuted H⁻¹,
 * computed without forming H⁻¹: with J the order reversal and
 * J H J = L Lᵀ, U = J L⁻¹ J is upper triangular and Uᵀ U = J L⁻ᵀ L⁻¹ J = H⁻¹.
 * One Cholesky factorization and one triangular inverse (⅔ n³ operations)
 * with LAPACK in float64; the permuted, reversed, damped H is written
 * straight into LAPACK's buffer (column-major upper = row-major lower), and
 * U goes out in float32, both by the processors' threads (LAPACK runs on
 * BLAS's own). The weight itself is permuted by the column loop's threads,
 * each for its rows. */
static gboolean
prepare (gsize n, const double *g, double damp_percent, gboolean desc_act, const char *name, gsize **perm_out,
         guint8 **dead_out, float **u_out, GError **error)
{
  g_autoptr(PoolDoubles) rev = _quark_gptq_pool_try_new (n, n, sizeof (double));
  g_autofree gsize *perm = g_new (gsize, MAX (n, 1));
  g_autofree guint8 *dead = g_new0 (guint8, MAX (n, 1));
  g_autoptr(PoolFloats) u = NULL;
  double damp = 0.0;
  lapack_int info;
  QuarkParallel *pool;
  Prepare job;

  if (rev == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED, "%s: out of memory for the Hessian", name);
      return FALSE;
    }
  if (!_quark_gptq_column_order (g, n, desc_act, perm))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR, "%s: the Gram matrix is not finite", name);
      return FALSE;
    }
  for (gsize i = 0; i < n; i++)
    {
      double d = g[perm[i] * n + perm[i]];
      dead[i] = d == 0.0;
      damp += dead[i] ? 1.0 : d;
    }
  damp = damp_percent * damp / (double) n;
  job = (Prepare) { fill_row, g, perm, dead, damp, rev, NULL, n };
  pool = _quark_parallel_new (MIN (g_get_num_processors (), MAX (1, (guint) (n / 256))));
  _quark_parallel_run (pool, (n + 1) / 2, paired_rows, &job);
  if ((info = _quark_blas ()->dpotrf (LAPACK_COL_MAJOR, 'U', (lapack_int) n, rev, (lapack_int) n)) != 0 ||
      (info = _quark_blas ()->dtrtri (LAPACK_COL_MAJOR, 'U', 'N', (lapack_int) n, rev, (lapack_int) n)) != 0)
    {
      _quark_parallel_free (pool);
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR,
                   "%s: the damped Hessian is not positive definite (LAPACK info %d); a larger damp_percent helps",
                   name, (int) info);
      return FALSE;
    }
  if ((u = _quark_gptq_pool_try_new (n, n, sizeof (float))) == NULL)
    {
      _quark_parallel_free (pool);
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED, "%s: out of memory for the Hessian", name);
      return FALSE;
    }
  job.u = u;
  job.row = convert_row;
  _quark_parallel_run (pool, (n + 1) / 2, paired_rows, &job);
  _quark_parallel_free (pool);
  *perm_out = g_steal_pointer (&perm);
  *dead_out = g_steal_pointer (&dead);
  *u_out = g_steal_pointer (&u);
  return TRUE;
}

/* The column loop for rows [begin, end) of the (permuted) weight: rows are
 * independent given U, so each thread takes a share of them */
typedef struct {
  const Params *p;
  const gsize *perm;
  const float *u;               /* U, n × n, upper triangle used */
  const float *wf;              /* the weight, m × n, in its own column order */
  const guint8 *dead;           /* per permuted column: never non-zero in the input, weight 0 */
  float *w;                     /* the permuted weight, m × n, updated (filled by the threads) */
  guint8 *out;                  /* codes, m × n, original column order */
  gsize m, n, block, esize;
  QuarkDType dtype;
  const QuarkKernelIntParams *ip;
  const QuarkFpFormat *fmt;             /* minifloat codes (FP8, FP6, FP4, MX elements); NULL: integers */
  QuarkGptqParamsFunc params_func;      /* dynamic groups: NULL for static ones */
  gpointer user_data;
  gboolean act_order_groups;            /* dynamic groups of consecutive permuted columns (g_idx) */
  QuarkGptqRoundFunc round_func;        /* the caller rounds (quark_gptq_update_weight); NULL: codes */
} ColumnJob;

/* A 2-D weight and codes of its shape in @dtype, or an error naming @what */
static gboolean
check_codes (QuarkTensor *weight, QuarkTensor *codes, QuarkDType dtype, const char *what, GError **error)
{
  if (quark_tensor_get_n_dims (weight) != 2 || quark_tensor_get_n_dims (codes) != 2 ||
      quark_tensor_get_dim (codes, 0) != quark_tensor_get_dim (weight, 0) ||
      quark_tensor_get_dim (codes, 1) != quark_tensor_get_dim (weight, 1) || quark_tensor_get_dtype (codes) != dtype)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "%s: %s needs a 2-D weight and codes of the same shape in the spec's dtype",
                   quark_tensor_get_name (weight), what);
      return FALSE;
    }
  return TRUE;
}

/* The weight's elements as float32: float32 weights are read where they
 * are, others widened once into *@copy */
static const float *
weight_floats (QuarkTensor *weight, float **copy, GError **error)
{
  gsize count;

  if (quark_tensor_get_dtype (weight) == QUARK_DTYPE_F32)
    return quark_tensor_peek_data (weight, NULL);
  return *copy = quark_tensor_to_floats (weight, &count, error);
}

static double
code_value (const guint8 *q, gsize r, gsize esize, gboolean is_signed)
{
  switch (esize)
    {
    case 1: return is_signed ? (double) ((const gint8 *) q)[r] : (double) q[r];
    case 2: return is_signed ? (double) ((const gint16 *) q)[r] : (double) ((const guint16 *) q)[r];
    default: return is_signed ? (double) ((const gint32 *) q)[r] : (double) ((const guint32 *) q)[r];
    }
}

/* rows of a thread's share that take a block's columns together */
#define GPTQ_TILE 32

static void
column_rows (gpointer data, gsize begin, gsize end, guint worker)
{
  ColumnJob *j = data;
  const Params *p = j->p;
  gsize mr = end - begin, n = j->n, esize = j->esize;
  gboolean is_signed = quark_dtype_is_signed (j->dtype);
  g_autofree float *err = g_new (float, mr * j->block);
  /* a tile's column, scales, zero points, codes (at most 4 bytes each)
   * and errors; row r of the share is entry r − t0 */
  float col[GPTQ_TILE], sc[GPTQ_TILE], zp[GPTQ_TILE], e[GPTQ_TILE];
  guint8 q[GPTQ_TILE * 4];

  /* this share's rows of the permuted weight: W[:, i] = W0[:, perm[i]] */
  for (gsize r = begin; r < end; r++)
    {
      const float *from = j->wf + r * n;
      float *to = j->w + r * n;
      for (gsize i = 0; i < n; i++)
        to[i] = j->dead[i] ? 0.0f : from[j->perm[i]];
    }
  for (gsize b0 = 0; b0 < n; b0 += j->block)
    {
      gsize b1 = MIN (n, b0 + j->block), bw = b1 - b0;

      /* The block's columns, GPTQ_TILE rows at a time: a row depends only
       * on itself and U, so taking the rows in tiles changes no bit, and
       * the tile's part of the block (GPTQ_TILE × 128 floats) stays in the
       * first-level cache from one column to the next instead of coming
       * back from memory for every column. */
      for (gsize t0 = 0; t0 < mr; t0 += GPTQ_TILE)
        {
          gsize t1 = MIN (mr, t0 + GPTQ_TILE), tn = t1 - t0;

          for (gsize c = b0; c < b1; c++)
            {
              gsize orig = j->perm[c], at_col = j->act_order_groups ? c : orig, grp = at_col / p->group;
              float d = j->u[c * n + c];

              /* dynamic groups: each group's parameters from its columns
               * as updated so far, when its first column comes; the groups
               * are consecutive columns in their own order, or in the
               * permuted (activation) order, which then needs g_idx */
              if (j->params_func && at_col % p->group == 0)
                for (gsize r = t0; r < t1; r++)
                  {
                    gsize at = (begin + r) * p->n_groups + grp;
                    float zero = 0.0f;
                    j->params_func (j->w + (begin + r) * n + c, MIN (p->group, n - c), &p->scales[at], &zero,
                                    j->user_data);
                    if (p->zero_points)
                      p->zero_points[at] = zero;
                  }

              for (gsize r = t0; r < t1; r++)
                col[r - t0] = j->w[(begin + r) * n + c];
              if (j->round_func)
                {
                  /* the caller's quantizer: the column becomes its
                   * rounded values, and the error goes on as below */
                  j->round_func (col, tn, orig, begin + t0, sc, j->user_data);
                  for (gsize r = t0; r < t1; r++)
                    {
                      j->w[(begin + r) * n + c] = sc[r - t0];
                      e[r - t0] = (col[r - t0] - sc[r - t0]) / d;
                    }
                }
              else
                {
                  for (gsize r = t0; r < t1; r++)
                    {
                      gsize at = (p->per_row ? (begin + r) * p->n_groups : 0) + grp;
                      sc[r - t0] = p->scales[at];
                      zp[r - t0] = p->zero_points ? p->zero_points[at] : 0.0f;
                    }
                  if (j->fmt)
                    /* minifloats as the backend rounds them: x / s, saturated */
                    for (gsize r = t0; r < t1; r++)
                      quark_kernel_fp_quantize_f32_scalar (j->fmt, &col[r - t0], 1, sc[r - t0], q + (r - t0));
                  else
                    quark_kernel_quantize_int_groups_f32 (col, tn, 1, j->ip, sc, p->zero_points ? zp : NULL, j->dtype,
                                                          q);
                  for (gsize r = t0; r < t1; r++)
                    {
                      /* dequantized as the backend does: (q − z) · s, or decode (q) · s */
                      gsize k = r - t0;
                      float deq = j->fmt ? (float) quark_kernel_fp_decode (j->fmt, q[k]) * sc[k]
                                         : ((float) code_value (q, k, esize, is_signed) - zp[k]) * sc[k];

                      memcpy (j->out + ((begin + r) * n + orig) * esize, q + k * esize, esize);
                      e[k] = (col[k] - deq) / d;
                    }
                }
              /* each row's error e, kept for the block's product, and
               * spread over the row's later columns of the block:
               * w[k] −= e · U[c][k] */
              for (gsize r = t0; r < t1; r++)
                err[r * bw + (c - b0)] = e[r - t0];
              _quark_gptq_sub_outer (j->w + (begin + t0) * n + c + 1, n, tn, e, j->u + c * n + c + 1, b1 - c - 1);
            }
        }
      if (b1 < n)
        /* W[:, b1:] −= Err · U[b0:b1, b1:] */
        _quark_blas ()->sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) mr, (int) (n - b1), (int) bw, -1.0f,
                               err, (int) bw, j->u + b0 * n + b1, (int) n, 1.0f, j->w + begin * n + b1, (int) n);
    }
}

/**
 * quark_gptq_quantize:
 * @weight: a float weight [out_features, in_features]
 * @spec: its integer spec of at most 32 bits (per tensor, per channel
 *   along axis 0, or per group along the input features)
 * @codes: the codes round-to-nearest gave @weight with @scale and
 *   @zero_point (their dtype is kept)
 * @scale: the scales (any float dtype), computed from @weight as it is
 * @zero_point: (nullable): the zero points, %NULL for 0
 * @gram: the Gram matrix Σ x xᵀ of the layer's input, float64
 *   [in_features, in_features], as
 *   [method@Quark.Calibration.get_second_moments] gives it
 * @damp_percent: the damping added to the diagonal, as a fraction of its
 *   mean (AMD Quark's default 0.01)
 * @block_size: columns updated together (AMD Quark's default 128)
 * @desc_act: process columns in descending order of the Hessian's diagonal
 * @error: return location for a #GError
 *
 * Quantizes @weight column by column, each column's rounding error spread
 * over the columns not yet quantized so as to minimize the layer's output
 * error on the calibration inputs (GPTQ: Frantar et al., 2022). The scales
 * and zero points stay those given, computed from the original weight
 * ("static groups", which AMD Quark's export requires): only the codes
 * change, so the result is written as round-to-nearest's is, without a
 * column order. With @desc_act the columns are visited in descending order
 * of H's diagonal.
 *
 * The Hessian is H = @gram (its scale does not matter); input features
 * that were never non-zero (H[i][i] = 0) get H[i][i] = 1 and weight 0; the
 * damping adds @damp_percent · mean(diag H) to the diagonal; the upper
 * Cholesky factor U of H⁻¹ is computed with LAPACK in float64. Column j is
 * quantized with the backend kernel and the same parameters as
 * round-to-nearest, its error e = (w − dequant(q)) / U[j][j] is subtracted
 * from the following columns of its block as e · U[j][k], and each block's
 * errors from the later columns by one matrix product. With H the identity
 * and no damping, the result is round-to-nearest's codes exactly.
 *
 * Returns: (transfer full): the new codes, a tensor like @codes, or %NULL
 *   with %QUARK_ERROR_UNSUPPORTED_SCHEME for another spec,
 *   %QUARK_ERROR_INVALID_ARGUMENT when the tensors do not fit each other,
 *   %QUARK_ERROR_INVALID_TENSOR when H is not positive definite
 */
static QuarkTensor *
gptq_run (QuarkTensor *weight, QuarkTensorSpec *spec, QuarkTensor *codes, QuarkTensor *scale,
          QuarkTensor *zero_point, QuarkTensor *gram, double damp_percent, guint block_size, gboolean desc_act,
          QuarkGptqParamsFunc params_func, gpointer user_data, QuarkTensor **new_scale,
          QuarkTensor **new_zero_point, QuarkTensor **g_idx, GError **error);

QuarkTensor *
quark_gptq_quantize (QuarkTensor *weight, QuarkTensorSpec *spec, QuarkTensor *codes, QuarkTensor *scale,
                     QuarkTensor *zero_point, QuarkTensor *gram, double damp_percent, guint block_size,
                     gboolean desc_act, GError **error)
{
  g_return_val_if_fail (QUARK_IS_TENSOR (weight), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (spec), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (codes), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (scale), NULL);
  g_return_val_if_fail (zero_point == NULL || QUARK_IS_TENSOR (zero_point), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (gram), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!_quark_blas_load (error))
    return NULL;

  return gptq_run (weight, spec, codes, scale, zero_point, gram, damp_percent, block_size, desc_act, NULL, NULL,
                   NULL, NULL, NULL, error);
}

/* @values as @like's dtype (scales: float dtypes; zero points: integers) */
static QuarkTensor *
tensor_like (QuarkTensor *like, const float *values, gsize n, GError **error)
{
  QuarkDType dtype = quark_tensor_get_dtype (like);
  gsize esize = quark_dtype_get_element_size (dtype);
  g_autofree guint8 *data = g_malloc (MAX (n, 1) * esize);
  g_autoptr(GBytes) bytes = NULL;
  guint n_dims;
  const gint64 *shape = quark_tensor_get_shape (like, &n_dims);

  if (quark_dtype_is_integer (dtype))
    for (gsize i = 0; i < n; i++)
      {
        gint64 v = (gint64) values[i];
        switch (esize)
          {
          case 1: data[i] = (guint8) v; break;
          case 2: ((guint16 *) data)[i] = (guint16) v; break;
          default: ((guint32 *) data)[i] = (guint32) v; break;
          }
      }
  else if (!quark_kernel_convert_from_f32 (dtype, values, data, n))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_DTYPE, "%s: GPTQ cannot write %s parameters",
                   quark_tensor_get_name (like), quark_dtype_get_name (dtype));
      return NULL;
    }
  bytes = g_bytes_new_take (g_steal_pointer (&data), n * esize);
  return quark_tensor_new (quark_tensor_get_name (like), dtype, shape, n_dims, bytes, error);
}

/**
 * quark_gptq_quantize_dynamic:
 * @weight: a float weight [out_features, in_features]
 * @spec: its integer spec, per group along the input features (or per
 *   channel along axis 0, where it is the same as static groups)
 * @codes: the codes round-to-nearest gave @weight
 * @scale: the scales round-to-nearest gave it (their dtype and shape are
 *   kept)
 * @zero_point: (nullable): its zero points, %NULL for 0
 * @gram: the Gram matrix of the layer's input, as for quark_gptq_quantize()
 * @damp_percent: the damping (AMD Quark's default 0.01)
 * @block_size: columns updated together (AMD Quark's default 128)
 * @params_func: (scope call) (closure user_data): computes a group's scale
 *   and zero point from its values
 * @user_data: data for @params_func
 * @new_scale: (out) (transfer full): return location for the new scales
 * @new_zero_point: (out) (optional) (nullable) (transfer full): return
 *   location for the new zero points (%NULL without @zero_point)
 * @error: return location for a #GError
 *
 * GPTQ with dynamic groups (AMD Quark's `static_groups: false` without
 * `desc_act`, GPTQ's reference behaviour): the columns are taken in their
 * order, and when the first column of a group comes, the group's scale and
 * zero point are computed by @params_func from the group's columns as the
 * updates so far have left them, so the parameters follow the compensated
 * weights. The result has the layout of round-to-nearest's (no column
 * order to store), with new codes, scales and zero points.
 *
 * Returns: (transfer full): the new codes, or %NULL with @error set (as
 *   quark_gptq_quantize(); %QUARK_ERROR_UNSUPPORTED_SCHEME for per-tensor
 *   specs)
 */
QuarkTensor *
quark_gptq_quantize_dynamic (QuarkTensor *weight, QuarkTensorSpec *spec, QuarkTensor *codes, QuarkTensor *scale,
                             QuarkTensor *zero_point, QuarkTensor *gram, double damp_percent, guint block_size,
                             QuarkGptqParamsFunc params_func, gpointer user_data, QuarkTensor **new_scale,
                             QuarkTensor **new_zero_point, GError **error)
{
  g_return_val_if_fail (QUARK_IS_TENSOR (weight), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (spec), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (codes), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (scale), NULL);
  g_return_val_if_fail (zero_point == NULL || QUARK_IS_TENSOR (zero_point), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (gram), NULL);
  g_return_val_if_fail (params_func != NULL, NULL);
  g_return_val_if_fail (new_scale != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!_quark_blas_load (error))
    return NULL;

  if (quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_TENSOR)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME, "%s: dynamic groups need per-group or "
                   "per-channel weights", quark_tensor_get_name (weight));
      return NULL;
    }
  return gptq_run (weight, spec, codes, scale, zero_point, gram, damp_percent, block_size, FALSE, params_func,
                   user_data, new_scale, new_zero_point, NULL, error);
}

/**
 * quark_gptq_quantize_act_order:
 * @weight: a float weight [out_features, in_features]
 * @spec: its integer spec, per group along the input features
 * @codes: the codes round-to-nearest gave @weight
 * @scale: the scales round-to-nearest gave it (their dtype and shape are
 *   kept)
 * @zero_point: (nullable): its zero points, %NULL for 0
 * @gram: the Gram matrix of the layer's input, as for quark_gptq_quantize()
 * @damp_percent: the damping (AMD Quark's default 0.01)
 * @block_size: columns updated together (AMD Quark's default 128)
 * @params_func: (scope call) (closure user_data): computes a group's scale
 *   and zero point from its values
 * @user_data: data for @params_func
 * @new_scale: (out) (transfer full): return location for the new scales
 * @new_zero_point: (out) (optional) (nullable) (transfer full): return
 *   location for the new zero points (%NULL without @zero_point)
 * @g_idx: (out) (transfer full): return location for the group of each
 *   input column, int32 [in_features]
 * @error: return location for a #GError
 *
 * GPTQ with groups in activation order (AMD Quark's `desc_act` with
 * `static_groups: false`; GPTQ's reference code and llm-compressor's
 * `actorder: "group"`): the columns are taken in descending order of the
 * Hessian's diagonal, and group k is the columns at places k·G … k·G + G − 1
 * of that order (G the group size), its scale and zero point computed by
 * @params_func from those columns as the updates so far have left them,
 * when the first of them comes. The codes stay in the columns' own order;
 * column c belongs to group @g_idx[c], whose parameters are the scales'
 * column @g_idx[c] (the scales keep round-to-nearest's shape). Formats
 * that store a column's group (compressed-tensors' `weight_g_idx`) carry
 * the result; the others cannot.
 *
 * Returns: (transfer full): the new codes, or %NULL with @error set (as
 *   quark_gptq_quantize(); %QUARK_ERROR_UNSUPPORTED_SCHEME for specs that
 *   are not per group)
 */
QuarkTensor *
quark_gptq_quantize_act_order (QuarkTensor *weight, QuarkTensorSpec *spec, QuarkTensor *codes, QuarkTensor *scale,
                               QuarkTensor *zero_point, QuarkTensor *gram, double damp_percent, guint block_size,
                               QuarkGptqParamsFunc params_func, gpointer user_data, QuarkTensor **new_scale,
                               QuarkTensor **new_zero_point, QuarkTensor **g_idx, GError **error)
{
  g_return_val_if_fail (QUARK_IS_TENSOR (weight), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (spec), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (codes), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (scale), NULL);
  g_return_val_if_fail (zero_point == NULL || QUARK_IS_TENSOR (zero_point), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (gram), NULL);
  g_return_val_if_fail (params_func != NULL, NULL);
  g_return_val_if_fail (new_scale != NULL, NULL);
  g_return_val_if_fail (g_idx != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!_quark_blas_load (error))
    return NULL;

  if (quark_tensor_spec_get_qscheme (spec) != QUARK_QSCHEME_PER_GROUP)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME, "%s: groups in activation order need "
                   "per-group weights", quark_tensor_get_name (weight));
      return NULL;
    }
  return gptq_run (weight, spec, codes, scale, zero_point, gram, damp_percent, block_size, TRUE, params_func,
                   user_data, new_scale, new_zero_point, g_idx, error);
}

static QuarkTensor *
gptq_run (QuarkTensor *weight, QuarkTensorSpec *spec, QuarkTensor *codes, QuarkTensor *scale,
          QuarkTensor *zero_point, QuarkTensor *gram, double damp_percent, guint block_size, gboolean desc_act,
          QuarkGptqParamsFunc params_func, gpointer user_data, QuarkTensor **new_scale,
          QuarkTensor **new_zero_point, QuarkTensor **g_idx, GError **error)
{
  const char *name;
  QuarkDType dtype;
  const QuarkFpFormat *fmt;
  Params p = { 0 };
  gsize m, n, esize;
  gint64 qmin, qmax;
  QuarkKernelIntParams ip = { 0 };
  g_autofree float *wf = NULL;
  const float *wsrc;
  g_autoptr(PoolFloats) w = NULL;
  g_autoptr(PoolFloats) u = NULL;
  g_autofree gsize *perm = NULL;
  g_autofree guint8 *dead = NULL;
  guint8 *out = NULL;
  QuarkTensor *result = NULL;

  name = quark_tensor_get_name (weight);
  dtype = quark_tensor_spec_get_dtype (spec);
  fmt = quark_dtype_is_integer (dtype) ? NULL : quark_fp_format_for_dtype (dtype);
  if ((!quark_dtype_is_integer (dtype) && (fmt == NULL || quark_dtype_get_element_size (dtype) != 1 ||
                                           params_func != NULL)) ||
      quark_dtype_get_element_size (dtype) > 4 ||
      quark_tensor_spec_get_round_method (spec) == QUARK_ROUND_STOCHASTIC ||
      quark_tensor_spec_get_scale_format (spec) == QUARK_SCALE_FORMAT_E5M3)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "%s: GPTQ takes integer specs of at most 32 bits with deterministic rounding, and FP8, FP6, FP4 "
                   "and MX specs with static groups", name);
      return NULL;
    }
  if (!check_codes (weight, codes, dtype, "GPTQ", error))
    return NULL;
  m = (gsize) quark_tensor_get_dim (weight, 0);
  n = (gsize) quark_tensor_get_dim (weight, 1);
  if (!check_run (gram, n, damp_percent, block_size, name, error))
    return NULL;
  if (!read_params (weight, spec, scale, zero_point, &p, error))
    goto out;
  if (fmt == NULL)
    quark_dtype_get_integer_range (dtype, quark_tensor_spec_get_narrow_range (spec), &qmin, &qmax);
  else
    qmin = qmax = 0;
  ip.qmin = (int32_t) qmin;
  ip.qmax = (int32_t) qmax;
  ip.round = quark_tensor_spec_get_round_method (spec);
  esize = quark_dtype_get_element_size (dtype);

  if ((wsrc = weight_floats (weight, &wf, error)) == NULL)
    goto out;
  if (!prepare (n, quark_tensor_peek_data (gram, NULL), damp_percent, desc_act, name, &perm, &dead, &u, error))
    goto out;

  out = quark_buffer_alloc (MAX (m * n, 1) * esize);
  w = quark_buffer_alloc (MAX (m * n, 1) * sizeof (float));
  {
    ColumnJob job = { &p, perm, u, wsrc, dead, w, out, m, n, block_size, esize, dtype, &ip, fmt, params_func,
                      user_data, params_func != NULL && desc_act, NULL };
    _quark_gptq_run_rows (m, column_rows, &job);
  }
  {
    gint64 shape[2] = { (gint64) m, (gint64) n };
    g_autoptr(GBytes) bytes = quark_buffer_to_bytes (g_steal_pointer (&out), m * n * esize);
    gsize n_params = (p.per_row ? m : 1) * p.n_groups;
    result = quark_tensor_new (quark_tensor_get_name (codes), dtype, shape, 2, bytes, error);
    if (result && params_func)
      {
        /* the parameters the dynamic groups chose */
        if ((*new_scale = tensor_like (scale, p.scales, n_params, error)) == NULL ||
            (zero_point && new_zero_point &&
             (*new_zero_point = tensor_like (zero_point, p.zero_points, n_params, error)) == NULL))
          {
            g_clear_object (new_scale);
            g_clear_object (&result);
          }
        else if (new_zero_point && zero_point == NULL)
          *new_zero_point = NULL;
      }
    if (result && g_idx)
      {
        /* the group of each column: its place in the order, over G */
        gint32 *gi = g_new (gint32, MAX (n, 1));
        gint64 len = (gint64) n;
        g_autoptr(GBytes) gb = NULL;
        g_autofree char *gname = g_strconcat (quark_tensor_get_name (codes), "_g_idx", NULL);
        for (gsize c = 0; c < n; c++)
          gi[perm[c]] = (gint32) (c / p.group);
        gb = g_bytes_new_take (gi, n * sizeof (gint32));
        if ((*g_idx = quark_tensor_new (gname, QUARK_DTYPE_I32, &len, 1, gb, error)) == NULL)
          {
            g_clear_object (new_scale);
            if (new_zero_point)
              g_clear_object (new_zero_point);
            g_clear_object (&result);
          }
      }
  }

out:
  g_free (p.scales);
  g_free (p.zero_points);
  return result;
}

/**
 * quark_gptq_update_weight: (skip)
 * @weight: a float32 weight, row-major [@rows, @cols], updated in place
 * @rows: its output features
 * @cols: its input features
 * @gram: the Gram matrix of the layer's input, as for quark_gptq_quantize()
 * @damp_percent: the damping, a fraction of the diagonal's mean
 * @block_size: columns updated together (at least 1)
 * @desc_act: take the columns in descending order of H's diagonal
 * @round_func: (scope call) (closure user_data): rounds part of a column
 *   the way the caller's quantizer does
 * @user_data: data for @round_func
 * @error: return location for a #GError
 *
 * GPTQ for a quantizer of the caller's own, with parameters the caller
 * has fixed beforehand: the column loop of quark_gptq_quantize() (the same
 * order, dead inputs, damping and factor U), where each column is rounded
 * by @round_func instead of by a spec. @round_func receives rows
 * [first_row, first_row + n_values) of a column as the updates so far have
 * left them and writes the values its quantizer dequantizes them to; it
 * is called from several threads at once, on disjoint rows.
 *
 * On return, every column of @weight holds its rounded values, so that
 * quantizing @weight again with the same parameters gives the codes GPTQ
 * chose. A backend with its own numerics (Brevitas's, for instance) gets
 * GPTQ this way without a spec the kernels know.
 *
 * Returns: %TRUE, or %FALSE with @error set as for quark_gptq_quantize()
 */
gboolean
quark_gptq_update_weight (float *weight, gsize rows, gsize cols, QuarkTensor *gram, double damp_percent,
                          guint block_size, gboolean desc_act, QuarkGptqRoundFunc round_func, gpointer user_data,
                          GError **error)
{
  g_autofree gsize *perm = NULL;
  g_autofree guint8 *dead = NULL;
  g_autoptr(PoolFloats) w = NULL;
  g_autoptr(PoolFloats) u = NULL;
  Params p = { 0 };
  QuarkKernelIntParams ip = { 0 };
  const char *name;

  g_return_val_if_fail (weight != NULL || rows * cols == 0, FALSE);
  g_return_val_if_fail (QUARK_IS_TENSOR (gram), FALSE);
  g_return_val_if_fail (round_func != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!_quark_blas_load (error))
    return FALSE;

  name = quark_tensor_get_name (gram);
  if (!check_run (gram, cols, damp_percent, block_size, name, error))
    return FALSE;
  if (rows == 0 || cols == 0)
    return TRUE;
  if (!prepare (cols, quark_tensor_peek_data (gram, NULL), damp_percent, desc_act, name, &perm, &dead, &u, error))
    return FALSE;
  w = quark_buffer_alloc (rows * cols * sizeof (float));
  p.rows = rows;
  p.cols = cols;
  p.group = cols;
  p.n_groups = 1;
  {
    ColumnJob job = { &p, perm, u, weight, dead, w, NULL, rows, cols, block_size, sizeof (float), QUARK_DTYPE_F32,
                      &ip, NULL, NULL, user_data, FALSE, round_func };
    _quark_gptq_run_rows (rows, column_rows, &job);
  }
  for (gsize r = 0; r < rows; r++)
    for (gsize i = 0; i < cols; i++)
      weight[r * cols + perm[i]] = w[r * cols + i];
  return TRUE;
}

/* @v as @dtype rounds it (a scale as it is stored) */
static double
stored_value (double v, QuarkDType dtype)
{
  float f = (float) v, back = f;
  guint8 buf[8];

  if (dtype != QUARK_DTYPE_F32 && quark_kernel_convert_from_f32 (dtype, &f, buf, 1))
    quark_kernel_convert_to_f32 (dtype, buf, &back, 1);
  return back;
}

/* Σ u_c v_c over the columns c of group @i (of @gs columns; the last one
 * may be shorter) of rows u and v of @n */
static double
group_dot (const double *u, const double *v, gsize i, gsize gs, gsize n)
{
  double t = 0.0;

  for (gsize c = i * gs; c < MIN ((i + 1) * gs, n); c++)
    t += u[c] * v[c];
  return t;
}

/* sᵀ A s − 2 bᵀ s: the layer's output error on the calibration, less a
 * constant, for a row's scales s */
static double
row_objective (const double *a, const double *b, const double *s, gsize g)
{
  double f = 0.0;

  for (gsize i = 0; i < g; i++)
    {
      double t = 0.0;
      for (gsize j = 0; j < g; j++)
        t += a[i * g + j] * s[j];
      f += s[i] * t - 2.0 * b[i] * s[i];
    }
  return f;
}

/**
 * quark_gptq_refine_scales:
 * @weight: a float weight [out_features, in_features]
 * @spec: its integer spec, per output channel or per group along the
 *   input features, with float scales
 * @codes: its codes (GPTQ's, or round-to-nearest's)
 * @scale: their scales (the dtype and shape of the result)
 * @zero_point: (nullable): their zero points, %NULL for 0
 * @gram: the Gram matrix H of the layer's input, float64 [in_features,
 *   in_features], as for quark_gptq_quantize()
 * @error: return location for a #GError
 *
 * The scales that, with the codes held fixed, make the layer's output on
 * the calibration closest to the float layer's: for each output row w,
 * with codes q and zero points z, the scales s minimise
 * (w − ŵ(s))ᵀ H (w − ŵ(s)), ŵ_c = s_g(c) · (q_c − z_g(c)), which is
 * GPTQ's own objective taken over the scales instead of the codes. For a
 * row with G groups this is the G × G system A s = b, A_gh = d_gᵀ H_gh
 * d_h, b_g = d_gᵀ (H w)_g (d = q − z), solved by Cholesky. Each solution
 * is rounded to the scales' dtype and kept only where, so rounded, it
 * lowers the row's objective and every scale stays positive; elsewhere
 * (and for groups whose codes are all zero) the scale is unchanged.
 *
 * Returns: (transfer full): the new scales, or %NULL with @error set
 *   (%QUARK_ERROR_UNSUPPORTED_SCHEME for other specs, integers wider than
 *   32 bits, minifloat, MX and power-of-two scales; %QUARK_ERROR_INVALID_ARGUMENT for shapes that do
 *   not match)
 */
QuarkTensor *
quark_gptq_refine_scales (QuarkTensor *weight, QuarkTensorSpec *spec, QuarkTensor *codes, QuarkTensor *scale,
                          QuarkTensor *zero_point, QuarkTensor *gram, GError **error)
{
  const gsize chunk = 256;
  const char *name;
  QuarkDType dtype, sdtype;
  Params p = { 0 };
  gsize m, n, g, gs, esize, n_params;
  const guint8 *q;
  const double *h;
  g_autofree float *wf = NULL;
  const float *wsrc;
  g_autofree double *d = NULL, *w = NULL, *prod = NULL, *a = NULL, *b = NULL, *s = NULL, *old = NULL;
  g_autofree float *out = NULL;
  QuarkTensor *result = NULL;

  g_return_val_if_fail (QUARK_IS_TENSOR (weight), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR_SPEC (spec), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (codes), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (scale), NULL);
  g_return_val_if_fail (zero_point == NULL || QUARK_IS_TENSOR (zero_point), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (gram), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!_quark_blas_load (error))
    return NULL;

  name = quark_tensor_get_name (weight);
  dtype = quark_tensor_spec_get_dtype (spec);
  sdtype = quark_tensor_get_dtype (scale);
  if (!quark_dtype_is_integer (dtype) || quark_dtype_get_element_size (dtype) > 4 ||
      quark_dtype_is_integer (sdtype) || sdtype == QUARK_DTYPE_F8_E8M0 ||
      quark_dtype_get_element_size (sdtype) < 2 || quark_tensor_spec_get_scale_type (spec) == QUARK_SCALE_POW2 ||
      quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_TENSOR)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_SCHEME,
                   "%s: scale refinement takes integer specs of at most 32 bits per channel or per group with "
                   "float scales", name);
      return NULL;
    }
  if (!check_codes (weight, codes, dtype, "scale refinement", error))
    return NULL;
  m = (gsize) quark_tensor_get_dim (weight, 0);
  n = (gsize) quark_tensor_get_dim (weight, 1);
  if (!_quark_gptq_check_gram (gram, n, name, error) || !read_params (weight, spec, scale, zero_point, &p, error))
    goto out;
  g = p.n_groups;
  gs = p.group;
  n_params = m * g;
  if ((wsrc = weight_floats (weight, &wf, error)) == NULL)
    goto out;
  q = quark_tensor_peek_data (codes, NULL);
  h = quark_tensor_peek_data (gram, NULL);
  esize = quark_dtype_get_element_size (dtype);
  out = g_new (float, MAX (n_params, 1));
  memcpy (out, p.scales, n_params * sizeof (float));

  d = g_new (double, chunk * n);
  w = g_new (double, chunk * n);
  prod = g_new (double, chunk * n);
  a = g_new (double, chunk * g * g);
  b = g_new (double, chunk * g);
  s = g_new (double, g);
  old = g_new (double, g);
  for (gsize r0 = 0; r0 < m; r0 += chunk)
    {
      gsize rows = MIN (chunk, m - r0);

      for (gsize r = 0; r < rows; r++)
        for (gsize c = 0; c < n; c++)
          {
            gsize at = (r0 + r) * n + c, k = (r0 + r) * g + c / gs;
            d[r * n + c] = code_value (q, at, esize, quark_dtype_is_signed (dtype)) -
                           (p.zero_points ? p.zero_points[k] : 0.0);
            w[r * n + c] = wsrc[at];
          }
      /* b_g = d_gᵀ (H w)_g */
      _quark_blas ()->dgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) rows, (int) n, (int) n, 1.0, w, (int) n,
                             h, (int) n, 0.0, prod, (int) n);
      for (gsize r = 0; r < rows; r++)
        for (gsize i = 0; i < g; i++)
          b[r * g + i] = group_dot (d + r * n, prod + r * n, i, gs, n);
      /* A_gh = d_gᵀ (H_{·,h} d_h)_g, one column of groups at a time */
      for (gsize j = 0; j < g; j++)
        {
          gsize c0 = j * gs, width = MIN (gs, n - c0);
          _quark_blas ()->dgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) rows, (int) n, (int) width, 1.0,
                                 d + c0, (int) n, h + c0 * n, (int) n, 0.0, prod, (int) n);
          for (gsize r = 0; r < rows; r++)
            for (gsize i = 0; i < g; i++)
              a[(r * g + i) * g + j] = group_dot (d + r * n, prod + r * n, i, gs, n);
        }
      for (gsize r = 0; r < rows; r++)
        {
          double *ar = a + r * g * g, *br = b + r * g;
          g_autofree double *chol = g_memdup2 (ar, g * g * sizeof (double));
          gboolean ok = TRUE;

          for (gsize i = 0; i < g; i++)
            {
              old[i] = out[(r0 + r) * g + i];
              s[i] = br[i];
              if (ar[i * g + i] <= 0.0)
                {
                  /* codes all zero: the scale stays */
                  for (gsize j = 0; j < g; j++)
                    chol[i * g + j] = chol[j * g + i] = 0.0;
                  chol[i * g + i] = 1.0;
                  s[i] = old[i];
                }
            }
          if (_quark_blas ()->dposv (LAPACK_ROW_MAJOR, 'U', (lapack_int) g, 1, chol, (lapack_int) g, s, 1) != 0)
            continue;
          for (gsize i = 0; i < g && ok; i++)
            {
              s[i] = stored_value (s[i], sdtype);
              ok = isfinite (s[i]) && s[i] > 0.0;
            }
          if (ok && row_objective (ar, br, s, g) < row_objective (ar, br, old, g))
            for (gsize i = 0; i < g; i++)
              out[(r0 + r) * g + i] = (float) s[i];
        }
    }
  result = tensor_like (scale, out, n_params, error);

out:
  g_free (p.scales);
  g_free (p.zero_points);
  return result;
}

/**
 * quark_gptq_correct_weight:
 * @weight: a float weight W [out_features, in_features]
 * @gram: the Gram matrix H = Σ x xᵀ of the layer's input x in the model
 *   being quantized, float64 [in_features, in_features]
 * @cross: the cross moments C = Σ r xᵀ of the float model's input r against
 *   x at the same tokens (quark_calibration_get_cross_moments()), float64
 *   [in_features, in_features]
 * @damp_percent: the damping λ as a fraction of H's mean diagonal, as GPTQ
 *   damps
 * @error: return location for a #GError
 *
 * The weight that, fed the inputs of the partly quantized model, gives
 * the float model's outputs as closely as the calibration can tell: the
 * minimiser of Σ ‖W r − W′ x‖² over the tokens is W′ = W C H⁻¹, computed
 * damped as W′ = W + W (C − H)(H + λI)⁻¹, so that W′ = W exactly when the
 * two models' inputs agree (C = H). Quantizing W′ with GPTQ on H then
 * minimises the quantized layer's output error against the float model,
 * not only against the float layer on the same inputs: the errors of the
 * layers before are corrected where this layer can correct them (the
 * asymmetric calibration of GPTAQ, and the error correction Brevitas's
 * Qronos makes for its first column). Inputs whose H diagonal is zero
 * count as 1 there, as GPTQ's dead inputs do.
 *
 * Returns: (transfer full): W′, float32, with @weight's name and shape, or
 *   %NULL with @error set (%QUARK_ERROR_INVALID_ARGUMENT for shapes that
 *   do not match, %QUARK_ERROR_FAILED when H + λI is not positive
 *   definite)
 */
QuarkTensor *
quark_gptq_correct_weight (QuarkTensor *weight, QuarkTensor *gram, QuarkTensor *cross, double damp_percent,
                           GError **error)
{
  const char *name;
  gsize m, n, count;
  const double *h, *c;
  g_autofree double *a = NULL, *x = NULL, *w = NULL;
  g_autofree float *wf = NULL, *out = NULL;
  double mean = 0.0, lambda;
  lapack_int info;
  gint64 shape[2];

  g_return_val_if_fail (QUARK_IS_TENSOR (weight), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (gram), NULL);
  g_return_val_if_fail (QUARK_IS_TENSOR (cross), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!_quark_blas_load (error))
    return NULL;

  name = quark_tensor_get_name (weight);
  if (quark_tensor_get_n_dims (weight) != 2)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: input error correction needs a 2-D weight",
                   name);
      return NULL;
    }
  m = (gsize) quark_tensor_get_dim (weight, 0);
  n = (gsize) quark_tensor_get_dim (weight, 1);
  if (!_quark_gptq_check_gram (gram, n, name, error) || !_quark_gptq_check_gram (cross, n, name, error))
    return NULL;
  if (!(damp_percent >= 0.0 && damp_percent <= 1.0))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT, "%s: damping %g is not in [0, 1]", name,
                   damp_percent);
      return NULL;
    }
  if ((wf = quark_tensor_to_floats (weight, &count, error)) == NULL)
    return NULL;
  h = quark_tensor_peek_data (gram, NULL);
  c = quark_tensor_peek_data (cross, NULL);
  for (gsize i = 0; i < n; i++)
    mean += h[i * n + i];
  mean /= (double) MAX (n, 1);
  lambda = damp_percent * mean;
  /* (H + λI) X = (C − H)ᵀ, so that (C − H)(H + λI)⁻¹ = Xᵀ */
  a = g_new (double, n * n);
  x = g_new (double, n * n);
  for (gsize i = 0; i < n; i++)
    for (gsize j = 0; j < n; j++)
      {
        a[i * n + j] = h[i * n + j];
        x[i * n + j] = c[j * n + i] - h[j * n + i];
      }
  for (gsize i = 0; i < n; i++)
    a[i * n + i] = (h[i * n + i] == 0.0 ? 1.0 : a[i * n + i]) + lambda;
  if ((info = _quark_blas ()->dposv (LAPACK_ROW_MAJOR, 'U', (lapack_int) n, (lapack_int) n, a, (lapack_int) n, x,
                                     (lapack_int) n)) != 0)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED,
                   "%s: the damped Gram matrix is not positive definite (LAPACK info %d); more calibration "
                   "tokens or a larger damp_percent may help", name, (int) info);
      return NULL;
    }
  /* W′ = W + W Xᵀ */
  w = g_new (double, m * n);
  for (gsize i = 0; i < m * n; i++)
    w[i] = wf[i];
  out = g_steal_pointer (&wf);
  {
    g_autofree double *result = g_memdup2 (w, m * n * sizeof (double));
    _quark_blas ()->dgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) m, (int) n, (int) n, 1.0, w, (int) n, x,
                           (int) n, 1.0, result, (int) n);
    for (gsize i = 0; i < m * n; i++)
      out[i] = (float) result[i];
  }
  shape[0] = (gint64) m;
  shape[1] = (gint64) n;
  return quark_tensor_new_from_floats (name, shape, 2, out, m * n, error);
}
