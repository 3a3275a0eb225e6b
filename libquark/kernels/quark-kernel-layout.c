/* quark-kernel-layout.c: which elements share quantization parameters
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-kernels.h"

#include <string.h>

/**
 * quark_kernel_layout_init: (skip)
 * @layout: (out caller-allocates): the layout
 * @shape: the tensor's dimensions
 * @n_dims: the number of dimensions (at most 8)
 * @qscheme: per tensor, per channel or per group
 * @axis: the channel axis for per channel (negative counts from the end);
 *   per group always groups along the last axis
 * @group_size: elements per group, -1 for the whole last axis
 *
 * Describes which elements share a scale.
 *
 * Returns: %false if @axis is out of range, a scalar is grouped, or
 *   @qscheme is per block
 */
bool
quark_kernel_layout_init (QuarkKernelLayout *l,
                          const int64_t     *shape,
                          unsigned           n_dims,
                          QuarkQScheme       qscheme,
                          int                axis,
                          int                group_size)
{
  memset (l, 0, sizeof *l);
  l->qscheme = qscheme;
  l->n = 1;
  for (unsigned i = 0; i < n_dims; i++)
    l->n *= (size_t) shape[i];
  if (n_dims > 8)
    return false;

  switch (qscheme)
    {
    case QUARK_QSCHEME_PER_TENSOR:
      l->n_params = 1;
      return true;
    case QUARK_QSCHEME_PER_CHANNEL:
      if (axis < 0)
        axis += (int) n_dims;
      if (axis < 0 || axis >= (int) n_dims)
        return false;
      l->outer = l->inner = 1;
      for (int i = 0; i < axis; i++)
        l->outer *= (size_t) shape[i];
      l->channels = (size_t) shape[axis];
      for (unsigned i = (unsigned) axis + 1; i < n_dims; i++)
        l->inner *= (size_t) shape[i];
      l->n_params = l->channels;
      l->param_shape[0] = (int64_t) l->channels;
      l->param_n_dims = 1;
      return true;
    case QUARK_QSCHEME_PER_GROUP:
      if (n_dims == 0 || group_size == 0)
        return false;
      l->cols = (size_t) shape[n_dims - 1];
      l->rows = l->cols ? l->n / l->cols : 0;
      l->group = group_size < 0 ? (l->cols ? l->cols : 1) : (size_t) group_size;
      for (unsigned i = 0; i + 1 < n_dims; i++)
        l->param_shape[i] = shape[i];
      l->param_shape[n_dims - 1] = (int64_t) ((l->cols + l->group - 1) / l->group);
      l->param_n_dims = n_dims;
      l->n_params = l->rows * (size_t) l->param_shape[n_dims - 1];
      return true;
    case QUARK_QSCHEME_PER_BLOCK:
    default:
      return false;
    }
}

/**
 * quark_kernel_layout_init_blocks: (skip)
 * @layout: (out caller-allocates): the layout
 * @shape: the tensor's dimensions (at least 2)
 * @n_dims: the number of dimensions (at most 8)
 * @block_rows: rows per block
 * @block_cols: columns per block
 *
 * Describes per-block parameters: two-dimensional blocks over the last two
 * dimensions (ragged at the ends), one set per block of each matrix.
 *
 * Returns: %false for fewer than 2 dimensions or a non-positive block size
 */
bool
quark_kernel_layout_init_blocks (QuarkKernelLayout *l,
                                 const int64_t     *shape,
                                 unsigned           n_dims,
                                 int                block_rows,
                                 int                block_cols)
{
  size_t matrices = 1;

  memset (l, 0, sizeof *l);
  if (n_dims < 2 || n_dims > 8 || block_rows <= 0 || block_cols <= 0)
    return false;
  l->qscheme = QUARK_QSCHEME_PER_BLOCK;
  l->n = 1;
  for (unsigned i = 0; i < n_dims; i++)
    l->n *= (size_t) shape[i];
  for (unsigned i = 0; i + 2 < n_dims; i++)
    {
      matrices *= (size_t) shape[i];
      l->param_shape[i] = shape[i];
    }
  l->matrix_rows = (size_t) shape[n_dims - 2];
  l->cols = (size_t) shape[n_dims - 1];
  l->block_rows = (size_t) block_rows;
  l->group = (size_t) block_cols;
  l->param_shape[n_dims - 2] = (int64_t) ((l->matrix_rows + l->block_rows - 1) / l->block_rows);
  l->param_shape[n_dims - 1] = (int64_t) ((l->cols + l->group - 1) / l->group);
  l->param_n_dims = n_dims;
  l->n_params = matrices * (size_t) l->param_shape[n_dims - 2] * (size_t) l->param_shape[n_dims - 1];
  l->rows = matrices * l->matrix_rows;
  return true;
}

/**
 * quark_kernel_layout_foreach_chunk: (skip)
 * @layout: a layout
 * @param: a parameter set, below @layout's n_params
 * @func: called for each contiguous run of elements of @param
 * @data: data for @func
 *
 * Visits the elements that parameter set @param covers.
 */
void
quark_kernel_layout_foreach_chunk (const QuarkKernelLayout *l,
                                   size_t                   param,
                                   QuarkKernelChunkFunc     func,
                                   void                    *data)
{
  switch (l->qscheme)
    {
    case QUARK_QSCHEME_PER_CHANNEL:
      for (size_t o = 0; o < l->outer; o++)
        func ((o * l->channels + param) * l->inner, l->inner, data);
      break;
    case QUARK_QSCHEME_PER_GROUP:
      {
        size_t per_row = (l->cols + l->group - 1) / l->group;
        size_t r = param / per_row, j = param % per_row;
        size_t start = j * l->group;
        size_t len = l->cols - start < l->group ? l->cols - start : l->group;
        func (r * l->cols + start, len, data);
      }
      break;
    case QUARK_QSCHEME_PER_BLOCK:
      {
        size_t brows = (l->matrix_rows + l->block_rows - 1) / l->block_rows;
        size_t bcols = (l->cols + l->group - 1) / l->group;
        size_t m = param / (brows * bcols), bi = (param / bcols) % brows, bj = param % bcols;
        size_t r0 = bi * l->block_rows, c0 = bj * l->group;
        size_t r1 = r0 + l->block_rows < l->matrix_rows ? r0 + l->block_rows : l->matrix_rows;
        size_t len = l->cols - c0 < l->group ? l->cols - c0 : l->group;
        for (size_t r = r0; r < r1; r++)
          func ((m * l->matrix_rows + r) * l->cols + c0, len, data);
      }
      break;
    case QUARK_QSCHEME_PER_TENSOR:
    default:
      func (0, l->n, data);
      break;
    }
}

typedef struct {
  const float *x;
  float *out;
  size_t n;
} Gather;

static void
gather_chunk (size_t offset, size_t len, void *data)
{
  Gather *g = data;
  memcpy (g->out + g->n, g->x + offset, len * sizeof (float));
  g->n += len;
}

/**
 * quark_kernel_layout_gather_f32: (skip)
 * @layout: a layout
 * @param: a parameter set, below @layout's n_params
 * @x: the tensor @layout describes
 * @out: room for the elements of @param
 *
 * Copies the elements that parameter set @param covers into @out, in the
 * order quark_kernel_layout_foreach_chunk() visits them (what the observers
 * that need a contiguous buffer, percentile and MSE, work on).
 *
 * Returns: the number of elements copied
 */
size_t
quark_kernel_layout_gather_f32 (const QuarkKernelLayout *layout,
                                size_t                   param,
                                const float             *x,
                                float                   *out)
{
  Gather g = { x, out, 0 };

  quark_kernel_layout_foreach_chunk (layout, param, gather_chunk, &g);
  return g.n;
}
