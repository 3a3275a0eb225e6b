/* quark-kernel-mx.c: OCP microscaling (MX) blocks and E8M0 scales
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-kernels.h"
#include "quark-kernel-private.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/**
 * quark_kernel_mx_element_info: (skip)
 * @element: an MX element type
 * @emax: (out): the exponent of the element's largest normal (8 for E4M3,
 *   15 for E5M2, 2 for E2M3 and E2M1, 4 for E3M2, 0 for INT8)
 * @mbits: (out): the element's mantissa bits (3, 2, 3, 1, 2; 8 for INT8, as
 *   AMD Quark counts it for the "even" mode)
 *
 * Returns: %false if @element is not an MX element type
 */
bool
quark_kernel_mx_element_info (QuarkDType element,
                              int       *emax,
                              int       *mbits)
{
  switch (element)
    {
    case QUARK_DTYPE_F8_E4M3: *emax = 8; *mbits = 3; return true;
    case QUARK_DTYPE_F8_E5M2: *emax = 15; *mbits = 2; return true;
    case QUARK_DTYPE_FP6_E2M3: *emax = 2; *mbits = 3; return true;
    case QUARK_DTYPE_FP6_E3M2: *emax = 4; *mbits = 2; return true;
    case QUARK_DTYPE_FP4_E2M1: *emax = 2; *mbits = 1; return true;
    case QUARK_DTYPE_I8: *emax = 0; *mbits = 8; return true;
    default: return false;
    }
}

/* floor (log2 a) of a finite positive binary32, exactly */
static inline int
floor_log2 (float a)
{
  uint32_t bits;
  int e;

  memcpy (&bits, &a, sizeof bits);
  if ((bits >> 23) & 0xFF)
    return (int) ((bits >> 23) & 0xFF) - 127;
  frexpf (a, &e);   /* subnormal */
  return e - 1;
}

/* The scale rule of an MX configuration, looked up once per call. */
typedef struct {
  QuarkMxScaleMode mode;
  int emax, mbits;
  bool quark_zero_blocks;
} MxRule;

static inline bool
mx_rule_init (const QuarkMxParams *params, MxRule *rule)
{
  rule->mode = params->mode;
  rule->quark_zero_blocks = params->quark_zero_blocks;
  return quark_kernel_mx_element_info (params->element, &rule->emax, &rule->mbits);
}

static inline uint8_t
mx_rule_byte (const MxRule *rule, float amax)
{
  int e;

  if (!(amax <= 3.4028234663852886e38f))   /* NaN or infinity */
    return 0xFF;
  if (amax == 0.0f)
    {
      if (!rule->quark_zero_blocks)
        return 0x00;
      /* Quark: "even" quantizes with 2^(-126 - emax) and stores
       * clamp(rne(log2 max(s, 2^-126))) + 127 = 0x01; "floor"/"ceil" replace
       * a zero scale with eps = 2^-23, stored as 0x68. */
      return rule->mode == QUARK_MX_SCALE_EVEN ? 0x01 : 0x68;
    }

  switch (rule->mode)
    {
    case QUARK_MX_SCALE_EVEN:
      {
        /* round the significand to mbits (half up, carrying into the
         * exponent), then take the exponent field E: E − 127 is floor (log2)
         * of the rounded value, and also gives −127 for a value that rounds
         * to a zero field and 128 for one that reaches infinity */
        uint32_t u;
        memcpy (&u, &amax, sizeof u);
        if (rule->mbits < 23)
          u += 1u << (23 - rule->mbits - 1);
        e = (int) (u >> 23) - 127 - rule->emax;
      }
      break;
    case QUARK_MX_SCALE_CEIL:
      e = floor_log2 (amax);
      if (ldexpf (1.0f, e) != amax)
        e += 1;
      e -= rule->emax;
      break;
    case QUARK_MX_SCALE_FLOOR:
    default:
      e = floor_log2 (amax) - rule->emax;
      break;
    }
  if (e < -127)
    e = -127;
  if (e > 127)
    e = 127;
  return (uint8_t) (e + 127);
}

/**
 * quark_kernel_mx_shared_exponent: (skip)
 * @params: MX parameters
 * @amax: the largest magnitude of the block (NaN if the block holds NaN or
 *   infinity)
 *
 * Computes the E8M0 byte of a block: the shared exponent chosen by the mode,
 * computed exactly from the bits of @amax (no binary32 log2), clamped to
 * [−127, 127], plus 127. NaN or infinity give 0xFF. An all-zero block gives
 * 0x00 (2^−127), or AMD Quark's byte when @params asks for it.
 *
 * Returns: the E8M0 byte
 */
uint8_t
quark_kernel_mx_shared_exponent (const QuarkMxParams *params,
                                 float                amax)
{
  MxRule rule;

  if (!mx_rule_init (params, &rule))
    return 0xFF;
  return mx_rule_byte (&rule, amax);
}

/* 2^(byte − 127) for a byte other than 0xFF: the binary32 exponent field,
 * or the subnormal 2^−127 */
static inline float
e8m0_value (uint8_t byte)
{
  uint32_t bits = byte ? (uint32_t) byte << 23 : 0x00400000u;
  float f;
  memcpy (&f, &bits, sizeof f);
  return f;
}

/**
 * quark_kernel_e8m0_to_f32: (skip)
 * @byte: an E8M0 byte
 *
 * Returns: 2^(byte − 127), or NaN for 0xFF
 */
float
quark_kernel_e8m0_to_f32 (uint8_t byte)
{
  return byte == 0xFF ? NAN : e8m0_value (byte);
}

/**
 * quark_kernel_e8m0_from_f32: (skip)
 * @scale: a scale
 *
 * Encodes a scale as E8M0 with PyTorch's float8_e8m0fnu rule: the sign is
 * ignored, the exponent rounds up when the significand is at least 1.5,
 * zero gives 0x00, infinity, NaN and exponents beyond 127 give 0xFF. Powers
 * of two, all that MX stores, encode exactly (2^−127 → 0x00).
 *
 * Returns: the byte
 */
uint8_t
quark_kernel_e8m0_from_f32 (float scale)
{
  float a = fabsf (scale);
  int e;

  if (!isfinite (a))
    return 0xFF;
  if (a == 0.0f)
    return 0x00;
  e = floor_log2 (a);
  if (ldexpf (a, -e) >= 1.5f)
    e += 1;
  if (e + 127 > 254)
    return 0xFF;
  if (e + 127 < 0)
    return 0x00;
  return (uint8_t) (e + 127);
}

/* Checks the parameters; *fmt is the element format, NULL for MXINT8. */
static bool
mx_element_format (const QuarkMxParams *params, const QuarkFpFormat **fmt)
{
  int emax, mbits;

  if (params->block_size == 0 || !quark_kernel_mx_element_info (params->element, &emax, &mbits))
    return false;
  *fmt = params->element == QUARK_DTYPE_I8 ? NULL : quark_fp_format_for_dtype (params->element);
  return true;
}

static void
mxint8_block (const float *x, size_t n, float X, uint8_t *codes)
{
  for (size_t i = 0; i < n; i++)
    {
      float q = rintf ((x[i] / X) * 64.0f);
      if (q > 127.0f)
        q = 127.0f;
      if (q < -127.0f)
        q = -127.0f;
      codes[i] = (uint8_t) (int8_t) q;
    }
}

/* The rule of 16 blocks at once, for maxima of normal or zero binary32 bits
 * (the scalar rule takes the others): E8M0 bytes, the scales, their exact
 * inverses (2^(127 − byte); byte 0, 2^−127, gives 2^127), 1 for both where
 * the block is all zeros or special. Same results as mx_rule_byte(): with
 * E the exponent field of the (for "even", rounded) maximum, the exponent is
 * E − 127 (+1 for "ceil" unless a power of two) − emax, clamped. */
QK_INLINE bool
mx_rule_vector_ok (const MxRule *rule)
{
  /* a subnormal maximum gives E = 0, hence −127 − emax (+1 for "ceil"),
   * which clamps to −127 as the exact rule does, except for "ceil" with
   * emax 0 (MXINT8) */
  return rule->mbits < 23 && rule->emax < 64 &&
         (rule->mode == QUARK_MX_SCALE_CEIL ? rule->emax >= 1 : rule->emax >= 0);
}

QK_INLINE int32_t
mx_zero_byte (const MxRule *rule)
{
  return !rule->quark_zero_blocks ? 0x00 : rule->mode == QUARK_MX_SCALE_EVEN ? 0x01 : 0x68;
}

/* The E8M0 bytes of 16 maxima u (binary32 bits), @zero_byte from
 * mx_zero_byte() for all-zero blocks, 0xFF for infinity and NaN; *zero and
 * *special (all ones) mark those blocks.
 * No vector comparisons here: GCC lowers generic vectors for the default
 * target before it makes the clones, and for it a 16-lane comparison
 * becomes scalar code in every clone. Masks come from sign bits instead:
 * (v - 1) >> 31 is -1 exactly where v (non-negative) is 0. */
QK_INLINE qk_vi
mx_rule_lanes (const MxRule *rule, int32_t zero_byte, qk_vi u, qk_vi *zero, qk_vi *special)
{
  const int32_t round = rule->mode == QUARK_MX_SCALE_EVEN ? 1 << (22 - rule->mbits) : 0;
  qk_vi e = ((u + round) >> 23) - 127 - rule->emax;
  if (rule->mode == QUARK_MX_SCALE_CEIL)
    e -= -(u & 0x007fffff) >> 31;                          /* +1 unless a power of two */
  e = qk_select_i ((e + 127) >> 31, qk_splat_i (-127), e);  /* e < -127 */
  e = qk_select_i ((127 - e) >> 31, qk_splat_i (127), e);   /* e > 127 */
  *zero = (u - 1) >> 31;
  *special = (0x7f7fffff - u) >> 31;                       /* infinity or NaN */
  return qk_select_i (*zero, qk_splat_i (zero_byte), e + 127) | (*special & 0xff);
}

/* (the scales and inverses of zero and special blocks are 1, whatever the
 * byte) */
QK_MULTIVERSION static size_t
mx_row_scales_by16 (const MxRule *rule, const uint32_t *amax_bits, size_t n_blocks,
                    uint8_t *bytes, float *block_scales, float *inv_scales, qk_vi *special_acc)
{
  const int32_t zero_byte = mx_zero_byte (rule);
  qk_vi acc = { 0 };
  size_t b = 0;

  for (; b + QK_LANES <= n_blocks; b += QK_LANES)
    {
      const qk_vi unit_bits = qk_splat_i (0x3f800000);
      qk_vi u, byte, scale_bits, inv_bits, zero, special;
      memcpy (&u, amax_bits + b, sizeof u);
      byte = mx_rule_lanes (rule, zero_byte, u, &zero, &special);
      scale_bits = qk_select_i (zero | special, unit_bits,
                                qk_select_i ((byte - 1) >> 31, qk_splat_i (0x00400000), byte << 23));
      inv_bits = qk_select_i (zero | special, unit_bits, (254 - byte) << 23);
      acc |= special;
      for (int k = 0; k < QK_LANES; k++)
        bytes[b + k] = (uint8_t) byte[k];
      memcpy (block_scales + b, &scale_bits, sizeof scale_bits);
      memcpy (inv_scales + b, &inv_bits, sizeof inv_bits);
    }
  *special_acc = acc;
  return b;
}

/* E8M0 bytes of a row's blocks from their maxima (binary32 bits: infinity
 * and NaN at and above 0x7f800000), the scales the elements are divided by
 * and their exact inverses, which the vector paths multiply by (all-zero
 * blocks use 1: their elements are zeros whatever the scale, and Quark's
 * zero-block bytes stand for tiny scales). Returns whether a block holds
 * NaN or infinity. */
static bool
mx_row_scales (const MxRule *rule, const uint32_t *amax_bits, size_t n_blocks,
               uint8_t *bytes, float *block_scales, float *inv_scales)
{
  bool any_special = false;
  size_t b = 0;

  if (mx_rule_vector_ok (rule))
    {
      qk_vi acc;
      b = mx_row_scales_by16 (rule, amax_bits, n_blocks, bytes, block_scales, inv_scales, &acc);
      for (int k = 0; k < QK_LANES; k++)
        any_special |= acc[k] != 0;
    }
  for (; b < n_blocks; b++)
    {
      float amax;
      uint8_t byte;
      bool unit;
      memcpy (&amax, amax_bits + b, sizeof amax);
      byte = mx_rule_byte (rule, amax);
      bytes[b] = byte;
      unit = amax_bits[b] == 0 || byte == 0xFF;
      block_scales[b] = unit ? 1.0f : e8m0_value (byte);
      {
        /* 2^(127 - byte), exactly; byte 0 (2^-127) gives 2^127 */
        uint32_t bits = (254u - byte) << 23;
        memcpy (inv_scales + b, &bits, sizeof bits);
        if (unit)
          inv_scales[b] = 1.0f;
      }
      any_special |= byte == 0xFF;
    }
  return any_special;
}

/* Blocks with scale 0xFF get NaN element codes (MXINT8, and formats
 * without NaN: see quark_fp_format_nan_code()). */
static void
mx_mark_special_blocks (const QuarkFpFormat *fmt, const uint8_t *bytes, size_t n_blocks, size_t bs,
                        size_t row_len, uint8_t *codes)
{
  for (size_t b = 0; b < n_blocks; b++)
    if (bytes[b] == 0xFF)
      memset (codes + b * bs, fmt ? (uint8_t) quark_fp_format_nan_code (fmt) : 0x80, MIN (bs, row_len - b * bs));
}

/**
 * quark_kernel_mx_quantize_f32: (skip)
 * @params: MX parameters
 * @x: a tensor viewed as [@n_rows, @row_len], contiguous
 * @n_rows: the number of rows
 * @row_len: elements per row; blocks run along rows, the last block of a row
 *   may be shorter (it behaves as if padded with zeros)
 * @codes: room for @n_rows × @row_len element codes, one per byte
 * @scales: room for @n_rows × ceil (@row_len / block_size) E8M0 bytes
 *
 * OCP MX quantization: per block, the shared scale X from
 * quark_kernel_mx_shared_exponent(), then each element V/X converted to the
 * element type with saturation, rounding half to even (minifloats:
 * quark_kernel_fp_quantize_f32() with scale X; MXINT8: clamp (rne (V/X · 64),
 * −127, 127)). A block holding NaN or infinity gets the scale byte 0xFF and
 * NaN element codes (formats without NaN: the largest magnitude).
 *
 * Returns: %false if the element type or block size is not valid
 */
bool
quark_kernel_mx_quantize_f32 (const QuarkMxParams *params,
                              const float         *x,
                              size_t               n_rows,
                              size_t               row_len,
                              uint8_t             *codes,
                              uint8_t             *scales)
{
  const QuarkFpFormat *fmt;
  size_t bs = params->block_size;
  size_t n_blocks = bs ? (row_len + bs - 1) / bs : 0;
  MxRule rule;

  if (!mx_element_format (params, &fmt))
    return false;
  mx_rule_init (params, &rule);
  {
    float *block_scales = malloc ((n_blocks ? n_blocks : 1) * sizeof (float));
    float *inv_scales = malloc ((n_blocks ? n_blocks : 1) * sizeof (float));
    uint32_t *amax_bits = malloc ((n_blocks ? n_blocks : 1) * sizeof (uint32_t));

    for (size_t r = 0; r < n_rows; r++)
      {
        const float *xr = x + r * row_len;
        uint8_t *cr = codes + r * row_len;
        bool any_special = false;

        _quark_kernel_block_abs_max_bits_f32 (xr, row_len, bs, amax_bits);
        any_special = mx_row_scales (&rule, amax_bits, n_blocks, scales + r * n_blocks, block_scales, inv_scales);
        if (fmt)
          _quark_kernel_fp_quantize_blocks (fmt, xr, row_len, bs, block_scales, inv_scales, cr);
        else
          for (size_t b = 0; b < n_blocks; b++)
            mxint8_block (xr + b * bs, MIN (bs, row_len - b * bs), block_scales[b], cr + b * bs);
        if (any_special)
          mx_mark_special_blocks (fmt, scales + r * n_blocks, n_blocks, bs, row_len, cr);
      }
    free (block_scales);
    free (inv_scales);
    free (amax_bits);
  }
  return true;
}

/* The E8M0 bytes of the 16 blocks at @x, and the table's K of each; false
 * if one of them is not for the table. */
QK_INLINE bool
mx_table4_chunk_bytes (const MxRule *rule, int32_t zero_byte, const uint16_t *x, qk_vu8 *bytes, uint16_t k[16])
{
  qk_vi u = (qk_vi) (qk_bf16_maxima16 (x, 32) << 16), zero, special, byte, bad;
  qk_vu16 kv;
  uint32_t any = 0;

  byte = mx_rule_lanes (rule, zero_byte, u, &zero, &special);
  bad = special | ((byte - 3) >> 31);
  for (int j = 0; j < QK_LANES; j++)
    any |= (uint32_t) bad[j];
  *bytes = __builtin_convertvector (byte & 0xff, qk_vu8);
  kv = __builtin_convertvector ((4 * (byte - 3)) & 0xffff, qk_vu16);
  memcpy (k, &kv, sizeof kv);
  return any == 0;
}

/* MX FP4 through the table, 16 blocks of 32 (512 values) at a time in one
 * pass: their maxima, E8M0 bytes and codes. Stops before the first chunk
 * holding a block the table does not take (a byte below 3, NaN or
 * infinity); returns the number of chunks done. */
#define MX_AHEAD 8

QK_MULTIVERSION static size_t
mx_table4_chunks (const MxRule *rule, const QuarkFpFormat *fmt, const uint16_t *table4, const uint16_t *x,
                  size_t n_chunks, bool pack4, uint8_t *out, uint8_t *bytes)
{
  const QkTable4 t = qk_table4_load (fmt, table4);
  const int32_t zero_byte = mx_zero_byte (rule);
  uint16_t k[2][QK_LANES];
  qk_vu8 b[2];
  size_t c = 0;

  /* one chunk ahead: the maxima and bytes of chunk c + 1 are independent of
   * the codes of chunk c, so the processor overlaps them */
  if (n_chunks == 0 || !mx_table4_chunk_bytes (rule, zero_byte, x, &b[0], k[0]))
    return 0;
  for (; c < n_chunks; c++)
    {
      const bool next = c + 1 < n_chunks &&
                        mx_table4_chunk_bytes (rule, zero_byte, x + 512 * (c + 1), &b[(c + 1) & 1], k[(c + 1) & 1]);
      const uint16_t *xc = x + 512 * c;
      memcpy (bytes + 16 * c, &b[c & 1], sizeof b[0]);
      for (int j = 0; j < QK_LANES; j++)
        {
          /* a line MX_AHEAD chunks on per block: the maxima of the next
           * chunk alone start too late to hide the memory's latency */
          QK_PREFETCH_NEXT_ROW (xc + 512 * MX_AHEAD + 32 * j);
          qk_table4_block (&t, xc + 32 * j, qk_splat_h (k[c & 1][j]), pack4, out + (pack4 ? 16 : 32) * (16 * c + j));
        }
      if (!next)
        return c + 1;
    }
  return c;
}

/* What quark_kernel_mx_quantize_bf16() and its packed form set up once per
 * call: the element format and scale rule, the table, scratch for a row. */
typedef struct {
  const QuarkFpFormat *fmt;
  MxRule rule;
  size_t bs;
  bool packed, fp4, fp6, use_table4;
  uint16_t table4[64];
  float *block_scales, *inv_scales, *row_f32;
  uint32_t *amax_bits;
  uint16_t *amax_bf16;
  uint8_t *codes;
} MxBf16Call;

/* The output offset of element @i of a row, packed or not */
static size_t
mx_out_offset (const MxBf16Call *call, size_t i)
{
  return !call->packed ? i : call->fp4 ? i / 2 : call->fp6 ? i / 4 * 3 : i;
}

/* @len values of a row from a block boundary (the row's end may cut the
 * last block): maxima, bytes, the vector or table encoders, blocks with NaN
 * or infinity marked, packing. */
static void
mx_bf16_span (MxBf16Call *call, const uint16_t *x, size_t len, uint8_t *bytes, uint8_t *out)
{
  const QuarkFpFormat *fmt = call->fmt;
  const size_t bs = call->bs, n_blocks = (len + bs - 1) / bs;
  const size_t whole = fmt && bs == 32 ? len / 32 : 0;
  uint8_t *cr = call->packed ? call->codes : out;
  size_t done = 0;
  bool any_special, fused;

  _quark_kernel_block_abs_max_bits_bf16 (x, len, bs, call->amax_bf16);
  for (size_t b = 0; b < n_blocks; b++)
    call->amax_bits[b] = (uint32_t) call->amax_bf16[b] << 16;
  any_special = mx_row_scales (&call->rule, call->amax_bits, n_blocks, bytes, call->block_scales,
                               call->inv_scales);
  /* FP4 spans of whole blocks without NaN or infinity are packed as they
   * are encoded */
  fused = call->packed && call->fp4 && whole == n_blocks && !any_special;
  if (whole && _quark_kernel_fp_quantize_blocks32_bf16 (fmt, x, whole, bytes, call->inv_scales,
                                                        call->use_table4 ? call->table4 : NULL, fused,
                                                        fused ? out : cr))
    done = whole * 32;
  else
    fused = false;
  if (fmt)
    _quark_kernel_fp_quantize_blocks_bf16 (fmt, x + done, len - done, bs, call->block_scales + done / bs,
                                           call->inv_scales + done / bs, cr + done);
  else
    {
      quark_kernel_convert_to_f32 (QUARK_DTYPE_BF16, x, call->row_f32, len);
      for (size_t b = 0; b < n_blocks; b++)
        mxint8_block (call->row_f32 + b * bs, MIN (bs, len - b * bs), call->block_scales[b], cr + b * bs);
    }
  if (any_special)
    mx_mark_special_blocks (fmt, bytes, n_blocks, bs, len, cr);
  if (call->packed && !fused)
    {
      if (call->fp4)
        quark_kernel_pack_fp4 (cr, len, out);
      else if (call->fp6)
        quark_kernel_pack_fp6 (cr, len, out);
      else
        memcpy (out, cr, len);
    }
}

/* The body of quark_kernel_mx_quantize_bf16() and of its packed form:
 * with @packed, each row's codes go out in the checkpoint layout (FP4 two
 * per byte, FP6 four per three bytes, the others one per byte). MX FP4 rows
 * go 512 values at a time through mx_table4_chunks(), the chunks it does
 * not take and the rest of the row through mx_bf16_span(). */
static bool
mx_quantize_bf16_rows (const QuarkMxParams *params, const uint16_t *x, size_t n_rows, size_t row_len,
                       bool packed, uint8_t *out, uint8_t *scales)
{
  MxBf16Call call = { 0 };
  size_t n_blocks, out_row, rowbuf;

  if (!mx_element_format (params, &call.fmt))
    return false;
  call.bs = params->block_size;
  call.packed = packed;
  call.fp4 = params->element == QUARK_DTYPE_FP4_E2M1;
  call.fp6 = params->element == QUARK_DTYPE_FP6_E2M3 || params->element == QUARK_DTYPE_FP6_E3M2;
  if (packed && call.fp6 && row_len % 4)
    return false;
  mx_rule_init (params, &call.rule);
  call.use_table4 = call.fmt && call.bs == 32 && _quark_kernel_fp_table4_init (call.fmt, call.table4);
  n_blocks = (row_len + call.bs - 1) / call.bs;
  out_row = mx_out_offset (&call, row_len + (call.fp4 && packed ? 1 : 0));
  rowbuf = n_blocks ? n_blocks : 1;
  call.block_scales = malloc (rowbuf * sizeof (float));
  call.inv_scales = malloc (rowbuf * sizeof (float));
  call.amax_bits = malloc (rowbuf * sizeof (uint32_t));
  call.amax_bf16 = malloc (rowbuf * sizeof (uint16_t));
  if (packed)
    call.codes = malloc (row_len ? row_len : 1);
  if (call.fmt == NULL)
    call.row_f32 = malloc ((row_len ? row_len : 1) * sizeof (float));

  for (size_t r = 0; r < n_rows; r++)
    {
      const uint16_t *xr = x + r * row_len;
      uint8_t *orow = out + r * out_row, *br = scales + r * n_blocks;
      const size_t n_chunks = call.use_table4 ? row_len / 512 : 0;
      size_t c = 0;

      while (c < n_chunks)
        {
          c += mx_table4_chunks (&call.rule, call.fmt, call.table4, xr + 512 * c, n_chunks - c, packed,
                                 orow + mx_out_offset (&call, 512 * c), br + 16 * c);
          if (c < n_chunks)
            {
              mx_bf16_span (&call, xr + 512 * c, 512, br + 16 * c, orow + mx_out_offset (&call, 512 * c));
              c++;
            }
        }
      if (512 * c < row_len)
        mx_bf16_span (&call, xr + 512 * c, row_len - 512 * c, br + 16 * c, orow + mx_out_offset (&call, 512 * c));
    }
  free (call.block_scales);
  free (call.inv_scales);
  free (call.amax_bits);
  free (call.amax_bf16);
  free (call.codes);
  free (call.row_f32);
  return true;
}

/**
 * quark_kernel_mx_quantize_bf16: (skip)
 * @params: MX parameters
 * @x: a bfloat16 tensor viewed as [@n_rows, @row_len], contiguous
 * @n_rows: the number of rows
 * @row_len: elements per row
 * @codes: room for @n_rows × @row_len element codes
 * @scales: room for @n_rows × ceil (@row_len / block_size) E8M0 bytes
 *
 * quark_kernel_mx_quantize_f32() on bfloat16 input, widened in registers.
 *
 * Returns: %false if the element type or block size is not valid
 */
bool
quark_kernel_mx_quantize_bf16 (const QuarkMxParams *params,
                               const uint16_t      *x,
                               size_t               n_rows,
                               size_t               row_len,
                               uint8_t             *codes,
                               uint8_t             *scales)
{
  return mx_quantize_bf16_rows (params, x, n_rows, row_len, false, codes, scales);
}

/**
 * quark_kernel_mx_quantize_packed_bf16: (skip)
 * @params: MX parameters
 * @x: a bfloat16 tensor viewed as [@n_rows, @row_len], contiguous
 * @n_rows: the number of rows
 * @row_len: elements per row (a multiple of 4 for FP6 elements)
 * @packed: room for the packed rows: @n_rows × ⌈@row_len / 2⌉ bytes for
 *   FP4, @n_rows × @row_len × 3 / 4 for FP6, @n_rows × @row_len otherwise
 * @scales: room for @n_rows × ceil (@row_len / block_size) E8M0 bytes
 *
 * quark_kernel_mx_quantize_bf16() with each row's codes packed as
 * checkpoints store them (quark_kernel_pack_fp4(), quark_kernel_pack_fp6()):
 * the same bytes as quantizing then packing, and for FP4 in blocks of 32
 * without the intermediate codes.
 *
 * Returns: %false if the element type or block size is not valid, or FP6
 *   rows are not a multiple of 4 long
 */
bool
quark_kernel_mx_quantize_packed_bf16 (const QuarkMxParams *params,
                                      const uint16_t      *x,
                                      size_t               n_rows,
                                      size_t               row_len,
                                      uint8_t             *packed,
                                      uint8_t             *scales)
{
  return mx_quantize_bf16_rows (params, x, n_rows, row_len, true, packed, scales);
}

/**
 * quark_kernel_mx_dequantize_f32: (skip)
 * @params: MX parameters
 * @codes: @n_rows × @row_len element codes
 * @scales: the E8M0 bytes
 * @n_rows: the number of rows
 * @row_len: elements per row
 * @out: room for @n_rows × @row_len floats
 *
 * x̂ = element value · X (MXINT8: q / 64 · X); NaN where the scale byte is
 * 0xFF.
 *
 * Returns: %false if the element type or block size is not valid
 */
bool
quark_kernel_mx_dequantize_f32 (const QuarkMxParams *params,
                                const uint8_t       *codes,
                                const uint8_t       *scales,
                                size_t               n_rows,
                                size_t               row_len,
                                float               *out)
{
  const QuarkFpFormat *fmt;
  size_t bs = params->block_size;
  size_t n_blocks = bs ? (row_len + bs - 1) / bs : 0;

  if (!mx_element_format (params, &fmt))
    return false;

  for (size_t r = 0; r < n_rows; r++)
    for (size_t b = 0; b < n_blocks; b++)
      {
        size_t len = MIN (bs, row_len - b * bs);
        const uint8_t *cb = codes + r * row_len + b * bs;
        float *ob = out + r * row_len + b * bs;
        float X = quark_kernel_e8m0_to_f32 (scales[r * n_blocks + b]);

        if (fmt)
          quark_kernel_fp_dequantize_f32 (fmt, cb, len, X, ob);
        else
          for (size_t i = 0; i < len; i++)
            ob[i] = ((float) (int8_t) cb[i] / 64.0f) * X;
      }
  return true;
}

/**
 * quark_kernel_error_metrics: (skip)
 * @x: the original values
 * @x_hat: the quantize-dequantize values
 * @n: the number of values
 * @metrics: (out caller-allocates): the result
 *
 * Computes the MSE, the largest absolute error and the SQNR between @x and
 * @x_hat, accumulating in binary64.
 */
void
quark_kernel_error_metrics (const float       *x,
                            const float       *x_hat,
                            size_t             n,
                            QuarkErrorMetrics *metrics)
{
  double signal = 0, noise = 0, max_abs = 0;

  for (size_t i = 0; i < n; i++)
    {
      double d = (double) x_hat[i] - (double) x[i];
      signal += (double) x[i] * (double) x[i];
      noise += d * d;
      if (fabs (d) > max_abs)
        max_abs = fabs (d);
    }
  metrics->mse = n ? noise / (double) n : 0.0;
  metrics->max_abs = max_abs;
  metrics->sqnr_db = noise > 0 ? 10.0 * log10 (signal / noise) : INFINITY;
}
