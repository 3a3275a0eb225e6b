/* quark-quark-rows.c: the quark backend's row path
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The common schemes (integer and float codes per tensor, per output
 * channel and per group along the rows, MX blocks) with the min/max
 * observer are quantized here straight from the input tensor's data: a
 * tensor over a file mapping is read from the file a block of rows (about
 * 1 MiB) at a time into a buffer of the thread's (no page of the mapping is
 * touched: no page faults, no resident file pages), one in memory is read
 * in place. bfloat16 and float32 rows go to the row kernels as they are
 * (float16 is widened to float32 a block of rows at a time), the statistics, the
 * parameters and the codes of a row are made in one visit while it is in
 * cache, and no copy of the tensor is made. The rows are split between worker threads; the
 * result does not depend on the split (stochastic rounding is seeded by
 * element index). The numerics are those of the general path
 * (quark-quark-quantizer.c), which takes everything else.
 */
#include "quark-quark-rows.h"
#include "quark-quark-quantizer.h"

#include <math.h>
#include <string.h>

/* ---- workers ---------------------------------------------------------------- */

typedef void (*RangeFunc) (gsize first, gsize last, gpointer data);

struct _QuarkQuarkWorkers
{
  GThreadPool *pool;   /* n - 1 threads: the caller runs one part itself */
  guint n;
};

typedef struct {
  GMutex lock;
  GCond cond;
  guint pending;
} Batch;

typedef struct {
  RangeFunc func;
  gpointer data;
  gsize first, last;
  Batch *batch;
} Part;

static void
run_part (gpointer data, gpointer user_data)
{
  Part *part = data;

  part->func (part->first, part->last, part->data);
  g_mutex_lock (&part->batch->lock);
  if (--part->batch->pending == 0)
    g_cond_signal (&part->batch->cond);
  g_mutex_unlock (&part->batch->lock);
}

QuarkQuarkWorkers *
quark_quark_workers_new (guint n_threads)
{
  QuarkQuarkWorkers *w = g_new0 (QuarkQuarkWorkers, 1);

  w->n = MAX (n_threads, 1);
  if (w->n > 1)
    w->pool = g_thread_pool_new (run_part, NULL, (int) w->n - 1, FALSE, NULL);
  return w;
}

void
quark_quark_workers_free (QuarkQuarkWorkers *workers)
{
  if (workers == NULL)
    return;
  if (workers->pool)
    g_thread_pool_free (workers->pool, FALSE, TRUE);
  g_free (workers);
}

/* Calls @func on contiguous parts of [0, @n_units), in parallel when there
 * are workers and each part would hold at least 64 Ki elements. */
static void
run_ranges (QuarkQuarkWorkers *w, gsize n_units, gsize unit_len, RangeFunc func, gpointer data)
{
  guint parts = w ? w->n : 1;
  Part part[64];
  Batch batch;

  parts = (guint) MIN ((gsize) MIN (parts, G_N_ELEMENTS (part)), MAX (n_units * unit_len / 65536, 1));
  parts = (guint) MIN ((gsize) parts, MAX (n_units, 1));
  if (parts <= 1)
    {
      func (0, n_units, data);
      return;
    }
  g_mutex_init (&batch.lock);
  g_cond_init (&batch.cond);
  batch.pending = parts - 1;
  for (guint i = 0; i < parts; i++)
    {
      part[i] = (Part) { func, data, n_units * i / parts, n_units * (i + 1) / parts, &batch };
      if (i > 0)
        g_thread_pool_push (w->pool, &part[i], NULL);
    }
  func (part[0].first, part[0].last, data);
  g_mutex_lock (&batch.lock);
  while (batch.pending > 0)
    g_cond_wait (&batch.cond, &batch.lock);
  g_mutex_unlock (&batch.lock);
  g_mutex_clear (&batch.lock);
  g_cond_clear (&batch.cond);
}

/* ---- shared with the general path ------------------------------------------ */

/* Whether @r, the scale @s rounded to @dtype, is a usable scale: finite
 * and positive; else the error naming @s */
static gboolean
rounded_scale_fits (float s, float r, QuarkDType dtype, const char *name, GError **error)
{
  if (isfinite (r) && r > 0.0f)
    return TRUE;
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR,
               "tensor %s: the scale %g does not fit the checkpoint format's scale dtype %s", name, (double) s,
               quark_dtype_get_name (dtype));
  return FALSE;
}

gboolean
quark_quark_round_scale (float *s, QuarkDType dtype, const char *name, GError **error)
{
  guint16 bits;
  float r;

  if (dtype != QUARK_DTYPE_BF16 && dtype != QUARK_DTYPE_F16)
    return TRUE;
  quark_kernel_convert_from_f32 (dtype, s, &bits, 1);
  r = dtype == QUARK_DTYPE_BF16 ? quark_kernel_bf16_to_f32 (bits) : quark_kernel_f16_to_f32 (bits);
  if (!rounded_scale_fits (*s, r, dtype, name, error))
    return FALSE;
  *s = r;
  return TRUE;
}

void
quark_quark_nonfinite_error (GError **error, const char *name)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR,
               "tensor %s: holds NaN or infinity, which cannot be quantized "
               "(the allow-nonfinite option saturates them instead)", name);
}

void
quark_quark_store_zero_point (QuarkDType dtype, gpointer buffer, gsize i, int32_t z)
{
  switch (quark_dtype_get_element_size (dtype))
    {
    case 1: ((guint8 *) buffer)[i] = (guint8) z; break;
    case 2: ((guint16 *) buffer)[i] = (guint16) z; break;
    default: ((gint32 *) buffer)[i] = z; break;
    }
}

/* quark_quark_store_zero_point() of @n zero points at @i on, for codes of
 * @esize bytes: one loop per size */
static void
store_zero_points (gsize esize, gpointer buffer, gsize i, const float *z, gsize n)
{
  switch (esize)
    {
    case 1:
      for (gsize k = 0; k < n; k++)
        ((guint8 *) buffer)[i + k] = (guint8) (int32_t) z[k];
      break;
    case 2:
      for (gsize k = 0; k < n; k++)
        ((guint16 *) buffer)[i + k] = (guint16) (int32_t) z[k];
      break;
    default:
      for (gsize k = 0; k < n; k++)
        ((gint32 *) buffer)[i + k] = (int32_t) z[k];
      break;
    }
}

/* ---- the row path ----------------------------------------------------------- */

gboolean
quark_quark_rows_apply (QuarkTensor             *tensor,
                        QuarkTensorSpec         *spec,
                        gboolean                 allow_nonfinite,
                        const QuarkKernelLayout *l)
{
  QuarkDType in = quark_tensor_get_dtype (tensor), dtype = quark_tensor_spec_get_dtype (spec);
  QuarkQScheme qs = quark_tensor_spec_get_qscheme (spec);
  QuarkScaleFormat sf = quark_tensor_spec_get_scale_format (spec);

  if (G_BYTE_ORDER != G_LITTLE_ENDIAN || allow_nonfinite ||
      (in != QUARK_DTYPE_BF16 && in != QUARK_DTYPE_F16 && in != QUARK_DTYPE_F32) ||
      dtype == QUARK_DTYPE_F16 || dtype == QUARK_DTYPE_BF16 || l->n == 0)
    return FALSE;
  if (sf == QUARK_SCALE_FORMAT_E8M0)
    return qs == QUARK_QSCHEME_PER_GROUP && l->rows * l->cols == l->n;
  if (sf == QUARK_SCALE_FORMAT_E5M3 || sf == QUARK_SCALE_FORMAT_E4M3 ||
      quark_tensor_spec_get_observer (spec) != QUARK_OBSERVER_MIN_MAX ||
      quark_tensor_spec_get_scale_type (spec) == QUARK_SCALE_POW2 ||
      (quark_dtype_get_element_size (dtype) != 1 && !quark_dtype_is_integer (dtype)))
    return FALSE;
  if (!quark_dtype_is_integer (dtype) && quark_fp_format_for_dtype (dtype) == NULL)
    return FALSE;
  switch (qs)
    {
    case QUARK_QSCHEME_PER_TENSOR:
      return TRUE;
    case QUARK_QSCHEME_PER_CHANNEL:
      return l->outer == 1;
    case QUARK_QSCHEME_PER_GROUP:
      return l->group > 0 && l->rows * l->cols == l->n;
    default:
      return FALSE;
    }
}

#define CHUNK ((gsize) 1 << 20)   /* bytes of input read at a time */

typedef struct {
  QuarkTensor *tensor;
  const char *name;
  const guint8 *data;        /* the input in memory, or NULL: read from its file */
  QuarkDType in;
  gsize in_size;
  QuarkDType dtype;
  gsize esize;
  gboolean is_int, symmetric;
  int32_t qmin, qmax;
  QuarkRoundMode round;
  const QuarkFpFormat *fmt;
  float fmax;
  QuarkDType scale_dtype;
  QuarkMxParams mx;
  /* units of unit_len elements, groups of group elements along each */
  gsize unit_len, group, groups;
  /* per tensor: the range, then the parameters, between the two passes */
  float lo, hi;
  QuarkKernelIntParams tensor_ip;
  float tensor_fp_scale;
  guint8 *codes;
  /* int8 codes as unsigned bytes (QUARK_CODE_LAYOUT_UINT8_ROWS): each
   * unit's top bits flipped while it is in cache */
  gboolean flip_bytes;
  /* int4 codes as unsigned nibbles (QUARK_CODE_LAYOUT_UINT4_ROWS): each
   * unit's words likewise */
  gboolean flip_nibbles;
  /* or int4 codes packed along columns into these words ([unit_len,
   * units / 8]), a block of rows at a time */
  gint32 *words;
  gboolean reorder;
  /* or packed along rows into these ([units, unit_len / 8]) as they are
   * quantized */
  gint32 *row_words;
  gsize units;
  float *scales;
  gpointer zps;
  guint8 *scale_bytes;
  /* the first failure */
  GMutex lock;
  gboolean nonfinite;
  GError *error;
} Rows;

static void
fail (Rows *r, GError *error, gboolean nonfinite)
{
  g_mutex_lock (&r->lock);
  if (nonfinite)
    r->nonfinite = TRUE;
  if (error && r->error == NULL)
    r->error = error;
  else if (error)
    g_error_free (error);
  g_mutex_unlock (&r->lock);
}

/* What a thread reads the input with: a buffer from the tensor buffer pool
 * when the input is a file (at least 1 MiB, so that it is a pool buffer,
 * reused from tensor to tensor rather than faulted in again), and one for
 * float16 input widened to float32; each for @capacity elements. */
typedef struct {
  guint8 *chunk;
  float *widened;
} Reader;

static void
reader_init (Reader *rd, Rows *r, gsize capacity)
{
  rd->chunk = r->data ? NULL : quark_buffer_alloc (MAX (capacity * r->in_size, CHUNK));
  rd->widened = r->in == QUARK_DTYPE_F16 ? quark_buffer_alloc (MAX (capacity, 1) * sizeof (float)) : NULL;
}

static void
reader_clear (Reader *rd)
{
  quark_buffer_free (rd->chunk);
  quark_buffer_free (rd->widened);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Reader, reader_clear)

/* Elements [first, first + n) of the input (n at most the reader's
 * capacity) as the kernels take them: bfloat16 as they are in *@xb, else
 * float32 in *@x (in place, or float16 widened); read from the file or in
 * memory. FALSE after a failed read (recorded). */
static gboolean
read_values (Rows *r, Reader *rd, gsize first, gsize n, const guint16 **xb, const float **x)
{
  const guint8 *p = r->data ? r->data + first * r->in_size : rd->chunk;
  GError *error = NULL;

  if (r->data == NULL &&
      !quark_tensor_read_data (r->tensor, (guint64) first * r->in_size, rd->chunk, n * r->in_size, &error))
    {
      fail (r, error, FALSE);
      return FALSE;
    }
  *xb = r->in == QUARK_DTYPE_BF16 ? (const guint16 *) p : NULL;
  *x = r->in == QUARK_DTYPE_F32 ? (const float *) p : NULL;
  if (r->in == QUARK_DTYPE_F16)
    {
      quark_kernel_convert_to_f32 (r->in, p, rd->widened, n);
      *x = rd->widened;
    }
  return TRUE;
}

/* How many units of @unit_len elements to read at a time: about CHUNK
 * bytes, at least one. (For float16, whose block is widened to float32
 * before the statistics, a quarter of CHUNK, so that the block and its
 * widening would fit a second-level cache together, was no faster.) */
static gsize
units_per_read (Rows *r, gsize unit_len)
{
  return MAX (CHUNK / MAX (unit_len * r->in_size, 1), 1);
}

/* The parameters of one range (per group or channel) into *@ip, its
 * scale and zero point stored at @p. */
static gboolean
make_params (Rows *r, gsize p, float lo, float hi, QuarkKernelIntParams *ip, float *fp_scale, GError **error)
{
  if (r->is_int)
    {
      quark_quark_int_params (lo, hi, r->symmetric, r->qmin, r->qmax, ip);
      ip->round = r->round;
      if (r->scale_dtype != QUARK_DTYPE_F32)
        {
          if (!quark_quark_round_scale (&ip->scale, r->scale_dtype, r->name, error))
            return FALSE;
          ip->inv_scale = 1.0f / ip->scale;
        }
      r->scales[p] = ip->scale;
      quark_quark_store_zero_point (r->dtype, r->zps, p, (int32_t) ip->zero_point);
    }
  else
    {
      float amax = fmaxf (fabsf (lo), fabsf (hi));
      *fp_scale = amax / r->fmax;
      if (*fp_scale == 0.0f)
        *fp_scale = QUARK_EPS;
      if (!quark_quark_round_scale (fp_scale, r->scale_dtype, r->name, error))
        return FALSE;
      r->scales[p] = *fp_scale;
    }
  return TRUE;
}

/* quark_quark_round_scale() on the @n scales at @sc (bfloat16 or float16
 * scale tensors), 64 at a time through the conversion kernels; FALSE after
 * a scale that does not fit (recorded, with the same error) */
static gboolean
round_scales (Rows *r, float *sc, gsize n)
{
  for (gsize g0 = 0; g0 < n; g0 += 64)
    {
      gsize k = MIN (64, n - g0);
      guint16 bits[64];
      float back[64];

      quark_kernel_convert_from_f32 (r->scale_dtype, sc + g0, bits, k);
      quark_kernel_convert_to_f32 (r->scale_dtype, bits, back, k);
      for (gsize i = 0; i < k; i++)
        {
          GError *error = NULL;
          if (!rounded_scale_fits (sc[g0 + i], back[i], r->scale_dtype, r->name, &error))
            {
              fail (r, error, FALSE);
              return FALSE;
            }
          sc[g0 + i] = back[i];
        }
    }
  return TRUE;
}

/* The parameters of the groups of unit @u from their ranges @lo, @hi:
 * scales into @sc and the scale tensor, zero points into @zp and the zero
 * point tensor, the code range and rounding into *@ip. FALSE after a
 * failure (recorded). */
static gboolean
row_params (Rows *r, gsize u, const float *lo, const float *hi, float *sc, float *zp, QuarkKernelIntParams *ip)
{
  gsize p0 = u * r->groups;

  if (r->is_int && r->symmetric)
    {
      /* quark_quark_int_params() of a symmetric range, for a whole row of
       * groups in one kernel call: s = max (amax / half span, eps), zero
       * points 0; then, for a bfloat16 or float16 scale tensor,
       * quark_quark_round_scale() for the row's scales at once */
      quark_quark_int_params (0.0f, 0.0f, TRUE, r->qmin, r->qmax, ip);
      ip->round = r->round;
      quark_kernel_int_group_params_f32 (lo, hi, r->groups, TRUE, r->qmin, r->qmax, QUARK_EPS, sc, zp);
      if ((r->scale_dtype == QUARK_DTYPE_BF16 || r->scale_dtype == QUARK_DTYPE_F16) &&
          !round_scales (r, sc, r->groups))
        return FALSE;
      memcpy (r->scales + p0, sc, r->groups * sizeof (float));
      memset ((guint8 *) r->zps + p0 * r->esize, 0, r->groups * r->esize);
      return TRUE;
    }
  if (r->is_int && r->scale_dtype == QUARK_DTYPE_F32)
    {
      /* quark_quark_int_params() of an asymmetric range, for a whole row of
       * groups in one kernel call (a call per group was a fifth of a uint4
       * g128 run, the loop that replaced it a tenth): lo = min (min, 0),
       * hi = max (max, 0), s = max ((hi - lo) / (qmax - qmin), eps),
       * z = clamp (qmin - rint (lo / s)). The clamps to 0 may give the
       * other zero's sign than fminf()/fmaxf(), which changes neither s
       * nor z. ip ends with the last group's parameters, as from the loop
       * below. */
      quark_kernel_int_group_params_f32 (lo, hi, r->groups, FALSE, r->qmin, r->qmax, QUARK_EPS, sc, zp);
      memcpy (r->scales + p0, sc, r->groups * sizeof (float));
      store_zero_points (r->esize, r->zps, p0, zp, r->groups);
      quark_quark_int_params (0.0f, 0.0f, FALSE, r->qmin, r->qmax, ip);
      ip->round = r->round;
      if (r->groups > 0)
        {
          ip->scale = sc[r->groups - 1];
          ip->inv_scale = 1.0f / ip->scale;
          ip->zero_point = zp[r->groups - 1];
        }
      return TRUE;
    }
  for (gsize g = 0; g < r->groups; g++)
    {
      GError *error = NULL;
      float fp_scale = 0.0f;
      if (!make_params (r, p0 + g, lo[g], hi[g], ip, &fp_scale, &error))
        {
          fail (r, error, FALSE);
          return FALSE;
        }
      sc[g] = r->is_int ? ip->scale : fp_scale;
      zp[g] = ip->zero_point;
    }
  return TRUE;
}

static void
buffer_free (guint8 **buffer)
{
  quark_buffer_free (*buffer);
}

/* @n bytes of codes to their unsigned offset form: @mask 0x80 turns int8
 * codes into q + 128, 0x88 both int4 nibbles of a byte into q + 8 */
static void
flip_top_bits (guint8 *codes, gsize n, guint8 mask)
{
  /* 16 bytes a step in a 128-bit vector (the module is built for the
   * baseline processor, SSE2: one pxor); 8 a step through a 64-bit
   * integer was most of the row loop's own time for compressed-tensors'
   * int4 rows */
  typedef guint8 Bytes16 __attribute__ ((vector_size (16)));
  const Bytes16 wide = (Bytes16) { 0 } + mask;
  gsize i = 0;

  for (; i + 16 <= n; i += 16)
    {
      Bytes16 w;
      memcpy (&w, codes + i, sizeof w);
      w ^= wide;
      memcpy (codes + i, &w, sizeof w);
    }
  for (; i < n; i++)
    codes[i] ^= mask;
}

/* Rows whose int4 codes are packed at a time: 128 rows of 2048 codes
 * (256 KiB) stay in a second-level cache between the codes and the words */
#define PACK_ROWS 128

/* Units (rows or channels) [first, last): statistics per group, the
 * parameters, the codes. With r->words, the codes of a block of rows go
 * to a buffer of the thread's and are packed from it (first and last are
 * multiples of 8 then). */
static void
units_func (gsize first, gsize last, gpointer data)
{
  Rows *r = data;
  g_autofree float *lo = g_new (float, r->groups), *hi = g_new (float, r->groups);
  g_autofree float *zp = g_new (float, r->groups), *sc = g_new (float, r->groups);
  gsize per_read = units_per_read (r, r->unit_len), block = 0, block_first = first;
  guint8 *block_codes __attribute__ ((cleanup (buffer_free))) = NULL;
  /* a row's codes before packing along it, for float32 rows */
  g_autofree guint8 *row_codes = r->row_words && r->in != QUARK_DTYPE_BF16 ? g_malloc (r->unit_len) : NULL;
  g_auto (Reader) rd;

  if (r->words)
    {
      /* blocks of a multiple of 8 rows (a word's worth) */
      per_read = MAX (per_read - per_read % 8, 8);
      block = MIN (per_read, PACK_ROWS);
      block_codes = quark_buffer_alloc (block * r->unit_len);
    }
  reader_init (&rd, r, per_read * r->unit_len);
  for (gsize u0 = first; u0 < last; u0 += per_read)
    {
      gsize nu = MIN (per_read, last - u0);
      const guint16 *xb0;
      const float *x0;

      if (!read_values (r, &rd, u0 * r->unit_len, nu * r->unit_len, &xb0, &x0))
        return;
      for (gsize u = u0; u < u0 + nu; u++)
        {
          gsize start = u * r->unit_len;
          const guint16 *xb = xb0 ? xb0 + (u - u0) * r->unit_len : NULL;
          const float *x = xb0 ? NULL : x0 + (u - u0) * r->unit_len;
          gboolean finite = TRUE;
          QuarkKernelIntParams ip;

          /* statistics: absolute maxima when symmetric, else min and max */
          if (r->symmetric || !r->is_int)
            {
              finite = xb ? quark_kernel_group_abs_max_bf16 (xb, r->unit_len, r->group, hi)
                          : quark_kernel_group_abs_max_f32 (x, r->unit_len, r->group, hi);
              for (gsize g = 0; g < r->groups; g++)
                lo[g] = -hi[g];
            }
          else
            finite = xb ? quark_kernel_group_min_max_bf16 (xb, r->unit_len, r->group, lo, hi)
                        : quark_kernel_group_min_max_f32 (x, r->unit_len, r->group, lo, hi);
          if (!finite)
            {
              fail (r, NULL, TRUE);
              return;
            }

          if (!row_params (r, u, lo, hi, sc, zp, &ip))
            return;
          if (r->is_int)
            {
              guint8 *dst = r->words ? block_codes + (u - block_first) * r->unit_len
                                     : r->codes ? r->codes + start * r->esize : NULL;
              ip.offset = start;
              if (r->row_words && xb)
                /* quantized and packed in one pass */
                quark_kernel_quantize_pack_int4_groups_bf16 (xb, r->unit_len, r->group, &ip, sc,
                                                             r->symmetric ? NULL : zp, r->dtype, FALSE,
                                                             r->row_words + start / 8);
              else if (r->row_words)
                {
                  quark_kernel_quantize_int_groups_f32 (x, r->unit_len, r->group, &ip, sc, r->symmetric ? NULL : zp,
                                                        r->dtype, row_codes);
                  quark_kernel_pack_int4 ((const int8_t *) row_codes, 1, r->unit_len, FALSE, r->row_words + start / 8);
                }
              else if (xb)
                quark_kernel_quantize_int_groups_bf16 (xb, r->unit_len, r->group, &ip, sc, r->symmetric ? NULL : zp,
                                                       r->dtype, dst);
              else
                quark_kernel_quantize_int_groups_f32 (x, r->unit_len, r->group, &ip, sc, r->symmetric ? NULL : zp,
                                                      r->dtype, dst);
              if (r->flip_bytes)
                flip_top_bits (dst, r->unit_len, 0x80);
              else if (r->flip_nibbles)
                flip_top_bits ((guint8 *) (r->row_words + start / 8), r->unit_len / 2, 0x88);
              if (r->words && (u + 1 - block_first == block || u + 1 == last))
                {
                  quark_kernel_pack_int4_columns_block ((const int8_t *) block_codes, block_first, u + 1 - block_first,
                                                        r->units, r->unit_len, r->reorder, r->words);
                  block_first = u + 1;
                }
            }
          else
            for (gsize g = 0; g < r->groups; g++)
              {
                gsize len = MIN (r->group, r->unit_len - g * r->group), at = start + g * r->group;
                if (xb)
                  quark_kernel_fp_quantize_bf16 (r->fmt, xb + g * r->group, len, sc[g], r->codes + at);
                else
                  quark_kernel_fp_quantize_f32 (r->fmt, x + g * r->group, len, sc[g], r->codes + at);
              }
        }
    }
}

/* units_func () on row groups (8 rows) [first, last) */
static void
word_rows_func (gsize first, gsize last, gpointer data)
{
  units_func (8 * first, 8 * last, data);
}

/* Per tensor, first pass: the range of elements [first, last) (in blocks of
 * 64 Ki). */
#define BLOCK 65536

static void
range_func (gsize first, gsize last, gpointer data)
{
  Rows *r = data;
  gsize n = r->unit_len;
  g_auto (Reader) rd;
  float lo = INFINITY, hi = -INFINITY;

  reader_init (&rd, r, BLOCK);
  for (gsize b = first; b < last; b++)
    {
      gsize start = b * BLOCK, len = MIN ((gsize) BLOCK, n - start);
      const guint16 *xb;
      const float *x;
      float l, h;

      if (!read_values (r, &rd, start, len, &xb, &x))
        return;
      if (r->symmetric || !r->is_int)
        {
          /* the absolute maximum is all a symmetric scale needs (faster) */
          float amax;
          gboolean finite = xb ? quark_kernel_abs_max_bf16 (xb, len, &amax) : quark_kernel_abs_max_f32 (x, len, &amax);
          l = -amax;
          h = amax;
          if (!finite)
            {
              fail (r, NULL, TRUE);
              return;
            }
        }
      else if (!(xb ? quark_kernel_min_max_bf16 (xb, len, &l, &h) : quark_kernel_min_max_f32 (x, len, &l, &h)))
        {
          fail (r, NULL, TRUE);
          return;
        }
      lo = fminf (lo, l);
      hi = fmaxf (hi, h);
    }
  g_mutex_lock (&r->lock);
  r->lo = fminf (r->lo, lo);
  r->hi = fmaxf (r->hi, hi);
  g_mutex_unlock (&r->lock);
}

/* Per tensor, second pass: the codes of blocks [first, last). */
static void
codes_func (gsize first, gsize last, gpointer data)
{
  Rows *r = data;
  gsize n = r->unit_len;
  g_auto (Reader) rd;
  QuarkKernelIntParams ip = r->tensor_ip;

  reader_init (&rd, r, BLOCK);
  for (gsize b = first; b < last; b++)
    {
      gsize start = b * BLOCK, len = MIN ((gsize) BLOCK, n - start);
      const guint16 *xb;
      const float *x;

      if (!read_values (r, &rd, start, len, &xb, &x))
        return;
      if (r->is_int)
        {
          ip.offset = start;
          if (xb)
            quark_kernel_quantize_int_bf16 (xb, len, &ip, r->dtype, r->codes + start * r->esize);
          else
            quark_kernel_quantize_int_f32 (x, len, &ip, r->dtype, r->codes + start * r->esize);
        }
      else if (xb)
        quark_kernel_fp_quantize_bf16 (r->fmt, xb, len, r->tensor_fp_scale, r->codes + start);
      else
        quark_kernel_fp_quantize_f32 (r->fmt, x, len, r->tensor_fp_scale, r->codes + start);
    }
}

/* MX: rows [first, last), refused when they hold NaN or infinity. */
static void
mx_func (gsize first, gsize last, gpointer data)
{
  Rows *r = data;
  gsize per_read = units_per_read (r, r->unit_len);
  g_auto (Reader) rd;

  reader_init (&rd, r, per_read * r->unit_len);
  for (gsize r0 = first; r0 < last; r0 += per_read)
    {
      gsize nr = MIN (per_read, last - r0), n = nr * r->unit_len;
      guint8 *codes = r->codes + r0 * r->unit_len, *scales = r->scale_bytes + r0 * r->groups;
      const guint16 *xb;
      const float *x;
      float lo, hi;

      if (!read_values (r, &rd, r0 * r->unit_len, n, &xb, &x))
        return;
      if (xb)
        quark_kernel_mx_quantize_bf16 (&r->mx, xb, nr, r->unit_len, codes, scales);
      else
        quark_kernel_mx_quantize_f32 (&r->mx, x, nr, r->unit_len, codes, scales);
      /* a block holding NaN or infinity gets the scale byte 0xFF; only
       * then is the input scanned (finite blocks may not reach 0xFF, but
       * the scan decides) */
      if (memchr (scales, 0xFF, nr * r->groups) &&
          !(xb ? quark_kernel_min_max_bf16 (xb, n, &lo, &hi) : quark_kernel_min_max_f32 (x, n, &lo, &hi)))
        {
          fail (r, NULL, TRUE);
          return;
        }
    }
}

gboolean
quark_quark_rows_quantize (QuarkTensor             *tensor,
                           QuarkTensorSpec         *spec,
                           const QuarkKernelLayout *l,
                           QuarkDType               scale_dtype,
                           QuarkQuarkWorkers       *workers,
                           QuarkCodeLayout          layout,
                           guint8                  *codes,
                           float                   *scales,
                           gpointer                 zps,
                           guint8                  *scale_bytes,
                           GError                 **error)
{
  Rows r = { 0 };
  gboolean ok;

  r.tensor = tensor;
  r.name = quark_tensor_get_name (tensor);
  r.data = quark_tensor_is_mapped (tensor) ? NULL : quark_tensor_peek_data (tensor, NULL);
  r.in = quark_tensor_get_dtype (tensor);
  r.in_size = quark_dtype_get_element_size (r.in);
  r.dtype = quark_tensor_spec_get_dtype (spec);
  r.esize = quark_dtype_get_element_size (r.dtype);
  r.is_int = quark_dtype_is_integer (r.dtype);
  r.symmetric = quark_tensor_spec_get_symmetric (spec);
  r.round = quark_tensor_spec_get_round_method (spec);
  r.scale_dtype = scale_dtype;
  if (layout == QUARK_CODE_LAYOUT_BYTES || layout == QUARK_CODE_LAYOUT_UINT8_ROWS)
    {
      /* (UINT8_ROWS: the caller checked that the units are whole rows of
       * a multiple of 4, so the words are the bytes as they lie) */
      r.codes = codes;
      r.flip_bytes = layout == QUARK_CODE_LAYOUT_UINT8_ROWS && quark_tensor_spec_get_dtype (spec) == QUARK_DTYPE_I8;
    }
  else if (layout == QUARK_CODE_LAYOUT_INT4_ROWS || layout == QUARK_CODE_LAYOUT_UINT4_ROWS)
    {
      r.row_words = (gint32 *) codes;
      r.flip_nibbles = layout == QUARK_CODE_LAYOUT_UINT4_ROWS && quark_tensor_spec_get_dtype (spec) == QUARK_DTYPE_INT4;
    }
  else
    {
      r.words = (gint32 *) codes;
      r.reorder = layout == QUARK_CODE_LAYOUT_INT4_COLUMNS_REORDERED;
    }
  r.scales = scales;
  r.zps = zps;
  r.scale_bytes = scale_bytes;
  r.lo = INFINITY;
  r.hi = -INFINITY;
  g_mutex_init (&r.lock);
  if (r.is_int)
    {
      gint64 min64, max64;
      quark_dtype_get_integer_range (r.dtype, quark_tensor_spec_get_narrow_range (spec), &min64, &max64);
      r.qmin = (int32_t) min64;
      r.qmax = (int32_t) max64;
    }
  else if (quark_tensor_spec_get_scale_format (spec) != QUARK_SCALE_FORMAT_E8M0)
    {
      r.fmt = quark_fp_format_for_dtype (r.dtype);
      r.fmax = (float) quark_fp_format_max (r.fmt);
    }

  if (quark_tensor_spec_get_scale_format (spec) == QUARK_SCALE_FORMAT_E8M0)
    {
      r.mx = (QuarkMxParams) { r.dtype, quark_tensor_spec_get_scale_calculation_mode (spec), l->group, TRUE };
      r.unit_len = l->cols;
      r.groups = (l->cols + l->group - 1) / l->group;
      run_ranges (workers, l->rows, l->cols, mx_func, &r);
    }
  else if (quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_TENSOR)
    {
      gsize blocks = (l->n + BLOCK - 1) / BLOCK;
      r.unit_len = l->n;
      run_ranges (workers, blocks, BLOCK, range_func, &r);
      if (!r.nonfinite && r.error == NULL)
        {
          GError *local = NULL;
          if (!make_params (&r, 0, r.lo, r.hi, &r.tensor_ip, &r.tensor_fp_scale, &local))
            fail (&r, local, FALSE);
          else
            run_ranges (workers, blocks, BLOCK, codes_func, &r);
        }
    }
  else
    {
      gsize units = quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_CHANNEL ? l->channels : l->rows;
      r.unit_len = quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_CHANNEL ? l->inner : l->cols;
      r.group = quark_tensor_spec_get_qscheme (spec) == QUARK_QSCHEME_PER_CHANNEL ? r.unit_len : l->group;
      r.groups = (r.unit_len + r.group - 1) / r.group;
      r.units = units;
      if (r.words)
        run_ranges (workers, units / 8, 8 * r.unit_len, word_rows_func, &r);
      else
        run_ranges (workers, units, r.unit_len, units_func, &r);
    }

  ok = !r.nonfinite && r.error == NULL;
  if (r.error)
    g_propagate_error (error, r.error);
  else if (r.nonfinite)
    quark_quark_nonfinite_error (error, r.name);
  g_mutex_clear (&r.lock);
  return ok;
}
