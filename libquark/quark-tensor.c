/* quark-tensor.c: a named n-dimensional array
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <math.h>

#include "quark-tensor.h"
#include "quark-enum-types.h"
#include "quark-error.h"
#include "kernels/quark-kernels.h"
#include "quark-tensor-private.h"

#include <sys/mman.h>
#include <unistd.h>

/**
 * QuarkTensor:
 *
 * A named, immutable n-dimensional array: a name, a [enum@Quark.DType], a
 * shape of 64-bit dimensions and the elements in row-major order as a
 * [struct@GLib.Bytes].
 *
 * The data is never copied by libquark: a tensor made over a memory-mapped
 * file or a Python buffer references it. A tensor with no dimensions is a
 * scalar (one element); a dimension of 0 makes an empty tensor.
 *
 * Tensors are immutable after construction and may be shared between
 * threads.
 */
struct _QuarkTensor
{
  GObject parent_instance;

  char *name;
  QuarkDType dtype;
  guint n_dims;
  gint64 shape[QUARK_TENSOR_MAX_DIMS];
  guint64 n_elements;
  GBytes *data;
  gboolean mapped;   /* data lies in a read-only file mapping */
  QuarkInputFile *file;   /* that file, for quark_tensor_read_data() */
  guint64 file_offset;
};

enum {
  PROP_0,
  PROP_NAME,
  PROP_DTYPE,
  PROP_N_DIMS,
  PROP_N_ELEMENTS,
  PROP_DATA,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (QuarkTensor, quark_tensor, G_TYPE_OBJECT)

static void
quark_tensor_finalize (GObject *object)
{
  QuarkTensor *self = QUARK_TENSOR (object);

  g_free (self->name);
  g_clear_pointer (&self->data, g_bytes_unref);
  g_clear_pointer (&self->file, _quark_input_file_unref);

  G_OBJECT_CLASS (quark_tensor_parent_class)->finalize (object);
}

static void
quark_tensor_get_property (GObject    *object,
                           guint       prop_id,
                           GValue     *value,
                           GParamSpec *pspec)
{
  QuarkTensor *self = QUARK_TENSOR (object);

  switch (prop_id)
    {
    case PROP_NAME:
      g_value_set_string (value, self->name);
      break;
    case PROP_DTYPE:
      g_value_set_enum (value, self->dtype);
      break;
    case PROP_N_DIMS:
      g_value_set_uint (value, self->n_dims);
      break;
    case PROP_N_ELEMENTS:
      g_value_set_uint64 (value, self->n_elements);
      break;
    case PROP_DATA:
      g_value_set_boxed (value, self->data);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
quark_tensor_class_init (QuarkTensorClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = quark_tensor_finalize;
  object_class->get_property = quark_tensor_get_property;

  /**
   * QuarkTensor:name: (getter get_name)
   *
   * The tensor's name, such as `model.layers.0.mlp.down_proj.weight`.
   */
  properties[PROP_NAME] =
    g_param_spec_string ("name", "Name", "The tensor's name",
                         NULL, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  /**
   * QuarkTensor:dtype: (getter get_dtype)
   *
   * The element type.
   */
  properties[PROP_DTYPE] =
    g_param_spec_enum ("dtype", "DType", "The element type",
                       QUARK_TYPE_DTYPE, QUARK_DTYPE_F32,
                       G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  /**
   * QuarkTensor:n-dims: (getter get_n_dims)
   *
   * The number of dimensions (0 for a scalar).
   */
  properties[PROP_N_DIMS] =
    g_param_spec_uint ("n-dims", "Dimensions", "The number of dimensions",
                       0, QUARK_TENSOR_MAX_DIMS, 0,
                       G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  /**
   * QuarkTensor:n-elements: (getter get_n_elements)
   *
   * The number of elements, the product of the dimensions.
   */
  properties[PROP_N_ELEMENTS] =
    g_param_spec_uint64 ("n-elements", "Elements", "The number of elements",
                         0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  /**
   * QuarkTensor:data: (getter get_data)
   *
   * The elements, row-major.
   */
  properties[PROP_DATA] =
    g_param_spec_boxed ("data", "Data", "The elements, row-major",
                        G_TYPE_BYTES, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
quark_tensor_init (QuarkTensor *self)
{
}

static gboolean
check_shape (const char   *name,
             QuarkDType    dtype,
             const gint64 *shape,
             guint         n_dims,
             guint64      *n_elements,
             guint64      *n_bytes,
             GError      **error)
{
  guint64 count = 1;

  if (n_dims > QUARK_TENSOR_MAX_DIMS)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "tensor %s: %u dimensions, at most %d are supported",
                   name, n_dims, QUARK_TENSOR_MAX_DIMS);
      return FALSE;
    }
  for (guint i = 0; i < n_dims; i++)
    {
      if (shape[i] < 0)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                       "tensor %s: dimension %u is negative (%" G_GINT64_FORMAT ")",
                       name, i, shape[i]);
          return FALSE;
        }
      if (shape[i] != 0 && count > G_MAXUINT64 / (guint64) shape[i])
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                       "tensor %s: the number of elements overflows 64 bits", name);
          return FALSE;
        }
      count *= (guint64) shape[i];
    }
  if (count > G_MAXUINT64 / quark_dtype_get_element_size (dtype))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "tensor %s: the size in bytes overflows 64 bits", name);
      return FALSE;
    }
  *n_elements = count;
  *n_bytes = count * quark_dtype_get_element_size (dtype);
  return TRUE;
}

/**
 * quark_tensor_new:
 * @name: the tensor's name
 * @dtype: the element type
 * @shape: (array length=n_dims) (nullable): the dimensions
 * @n_dims: the number of dimensions (0 for a scalar)
 * @data: the elements, row-major, in the native byte order
 * @error: return location for a #GError
 *
 * Makes a tensor over @data without copying it. The size of @data must be
 * exactly the number of elements times the element size of @dtype (one byte
 * per element for sub-byte types).
 *
 * Returns: (transfer full): a new tensor, or %NULL with %QUARK_ERROR_INVALID_ARGUMENT
 *   when the shape or the data size is wrong
 */
QuarkTensor *
quark_tensor_new (const char    *name,
                  QuarkDType     dtype,
                  const gint64  *shape,
                  guint          n_dims,
                  GBytes        *data,
                  GError       **error)
{
  QuarkTensor *self;
  guint64 n_elements, n_bytes;

  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail ((guint) dtype < QUARK_DTYPE_N_TYPES, NULL);
  g_return_val_if_fail (shape != NULL || n_dims == 0, NULL);
  g_return_val_if_fail (data != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_shape (name, dtype, shape, n_dims, &n_elements, &n_bytes, error))
    return NULL;
  if (g_bytes_get_size (data) != n_bytes)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "tensor %s: %" G_GSIZE_FORMAT " bytes of data, but shape and dtype %s need %"
                   G_GUINT64_FORMAT, name, g_bytes_get_size (data),
                   quark_dtype_get_name (dtype), n_bytes);
      return NULL;
    }

  self = g_object_new (QUARK_TYPE_TENSOR, NULL);
  self->name = g_strdup (name);
  self->dtype = dtype;
  self->n_dims = n_dims;
  for (guint i = 0; i < n_dims; i++)
    self->shape[i] = shape[i];
  self->n_elements = n_elements;
  self->data = g_bytes_ref (data);
  return self;
}

/**
 * quark_tensor_new_from_floats:
 * @name: the tensor's name
 * @shape: (array length=n_dims) (nullable): the dimensions
 * @n_dims: the number of dimensions (0 for a scalar)
 * @values: (array length=n_values): the elements, row-major
 * @n_values: the number of elements
 * @error: return location for a #GError
 *
 * Makes a %QUARK_DTYPE_F32 tensor holding a copy of @values. This is the
 * convenient constructor for bindings: a Python list or a JavaScript array
 * of numbers becomes a tensor.
 *
 * Returns: (transfer full): a new tensor, or %NULL with %QUARK_ERROR_INVALID_ARGUMENT
 *   when @n_values does not match @shape
 */
QuarkTensor *
quark_tensor_new_from_floats (const char    *name,
                              const gint64  *shape,
                              guint          n_dims,
                              const float   *values,
                              gsize          n_values,
                              GError       **error)
{
  g_autoptr(GBytes) data = NULL;

  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail (values != NULL || n_values == 0, NULL);

  data = g_bytes_new (values, n_values * sizeof (float));
  return quark_tensor_new (name, QUARK_DTYPE_F32, shape, n_dims, data, error);
}

/**
 * quark_tensor_get_name: (get-property name)
 * @self: a #QuarkTensor
 *
 * Gets the tensor's name.
 *
 * Returns: (transfer none): the name
 */
const char *
quark_tensor_get_name (QuarkTensor *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR (self), NULL);
  return self->name;
}

/**
 * quark_tensor_get_dtype: (get-property dtype)
 * @self: a #QuarkTensor
 *
 * Gets the element type.
 *
 * Returns: the dtype
 */
QuarkDType
quark_tensor_get_dtype (QuarkTensor *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR (self), QUARK_DTYPE_F32);
  return self->dtype;
}

/**
 * quark_tensor_get_n_dims: (get-property n-dims)
 * @self: a #QuarkTensor
 *
 * Gets the number of dimensions.
 *
 * Returns: the number of dimensions, 0 for a scalar
 */
guint
quark_tensor_get_n_dims (QuarkTensor *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR (self), 0);
  return self->n_dims;
}

/**
 * quark_tensor_guess_layer_type:
 * @self: a layer's weight
 *
 * Names the PyTorch module a weight of this shape belongs to, as configs'
 * `layer_type_quant_config` name layer types: `Linear` for 2 dimensions,
 * `Conv1d`, `Conv2d` and `Conv3d` for 3, 4 and 5.
 *
 * Returns: (nullable): the layer type, or %NULL for other shapes
 */
const char *
quark_tensor_guess_layer_type (QuarkTensor *self)
{
  static const char * const types[] = { NULL, NULL, "Linear", "Conv1d", "Conv2d", "Conv3d" };

  g_return_val_if_fail (QUARK_IS_TENSOR (self), NULL);
  return self->n_dims < G_N_ELEMENTS (types) ? types[self->n_dims] : NULL;
}

/**
 * quark_tensor_get_shape:
 * @self: a #QuarkTensor
 * @n_dims: (out) (optional): the number of dimensions
 *
 * Gets the dimensions.
 *
 * Returns: (array length=n_dims) (transfer none): the dimensions
 */
const gint64 *
quark_tensor_get_shape (QuarkTensor *self,
                        guint       *n_dims)
{
  g_return_val_if_fail (QUARK_IS_TENSOR (self), NULL);
  if (n_dims)
    *n_dims = self->n_dims;
  return self->shape;
}

/**
 * quark_tensor_get_dim:
 * @self: a #QuarkTensor
 * @axis: an axis; negative values count from the end (-1 is the last axis)
 *
 * Gets one dimension.
 *
 * Returns: the length of @axis, or -1 if @axis is out of range
 */
gint64
quark_tensor_get_dim (QuarkTensor *self,
                      int          axis)
{
  g_return_val_if_fail (QUARK_IS_TENSOR (self), -1);
  if (axis < 0)
    axis += (int) self->n_dims;
  if (axis < 0 || axis >= (int) self->n_dims)
    return -1;
  return self->shape[axis];
}

/**
 * quark_tensor_get_n_elements: (get-property n-elements)
 * @self: a #QuarkTensor
 *
 * Gets the number of elements.
 *
 * Returns: the product of the dimensions (1 for a scalar)
 */
guint64
quark_tensor_get_n_elements (QuarkTensor *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR (self), 0);
  return self->n_elements;
}

/**
 * quark_tensor_get_data: (get-property data)
 * @self: a #QuarkTensor
 *
 * Gets the elements, row-major in the native byte order.
 *
 * Returns: (transfer none): the data
 */
GBytes *
quark_tensor_get_data (QuarkTensor *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR (self), NULL);
  return self->data;
}

/**
 * quark_tensor_peek_data: (skip)
 * @self: a #QuarkTensor
 * @size: (out) (optional): the size in bytes
 *
 * Gets a pointer to the elements, for C code.
 *
 * Returns: (transfer none): the elements
 */
gconstpointer
quark_tensor_peek_data (QuarkTensor *self,
                        gsize       *size)
{
  g_return_val_if_fail (QUARK_IS_TENSOR (self), NULL);
  return g_bytes_get_data (self->data, size);
}

static double
load_f64 (const guint8 *p)
{
  double v;
  memcpy (&v, p, sizeof v);
  return v;
}

/**
 * quark_tensor_to_floats:
 * @self: a #QuarkTensor
 * @n_values: (out): the number of values
 * @error: return location for a #GError
 *
 * Converts the elements to binary32: float types exactly (float64 rounded to
 * nearest even), integer types by value. Minifloat codes are not decoded
 * here. A finite float64 value beyond binary32's range is an error rather
 * than an infinity.
 *
 * Returns: (array length=n_values) (transfer full) (nullable): the values, or
 *   %NULL with %QUARK_ERROR_UNSUPPORTED_DTYPE, or %QUARK_ERROR_INVALID_TENSOR
 *   naming the first float64 value that overflows binary32
 */
float *
quark_tensor_to_floats (QuarkTensor *self,
                        gsize       *n_values,
                        GError     **error)
{
  g_autofree float *values = NULL;

  g_return_val_if_fail (QUARK_IS_TENSOR (self), NULL);
  g_return_val_if_fail (n_values != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  *n_values = 0;
  if (self->n_elements > G_MAXSIZE / sizeof (float))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "tensor %s: too large to convert in memory", self->name);
      return NULL;
    }
  values = g_new (float, MAX (self->n_elements, 1));
  if (!quark_kernel_convert_to_f32 (self->dtype, g_bytes_get_data (self->data, NULL),
                                    values, self->n_elements))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_DTYPE,
                   "tensor %s: dtype %s does not convert to float32 by value",
                   self->name, quark_dtype_get_name (self->dtype));
      return NULL;
    }
  if (self->dtype == QUARK_DTYPE_F64)
    {
      const guint8 *d = g_bytes_get_data (self->data, NULL);
      for (gsize i = 0; i < self->n_elements; i++)
        if (isinf (values[i]) && isfinite (load_f64 (d + 8 * i)))
          {
            g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_TENSOR,
                         "tensor %s: element %" G_GSIZE_FORMAT " (%g) is finite but beyond float32's range "
                         "(largest %g), in which it is quantized", self->name, i,
                         load_f64 (d + 8 * i), (double) G_MAXFLOAT);
            return NULL;
          }
    }
  *n_values = self->n_elements;
  return g_steal_pointer (&values);
}

void
_quark_tensor_set_mapped (QuarkTensor *self, QuarkInputFile *file, guint64 offset)
{
  self->mapped = TRUE;
  self->file = _quark_input_file_ref (file);
  self->file_offset = offset;
}

QuarkInputFile *
_quark_tensor_get_file (QuarkTensor *self, guint64 *offset)
{
  *offset = self->file_offset;
  return self->file;
}

/**
 * quark_tensor_is_mapped:
 * @self: a #QuarkTensor
 *
 * Whether the tensor's data lies in a read-only mapping of a file (a tensor
 * of quark_model_load()). Reading such data through the mapping costs a
 * page fault per few pages and keeps the pages resident until
 * quark_tensor_release_mapped_pages(); quark_tensor_read_data() reads it
 * from the file instead.
 *
 * Returns: %TRUE for a tensor over a file mapping
 */
gboolean
quark_tensor_is_mapped (QuarkTensor *self)
{
  g_return_val_if_fail (QUARK_IS_TENSOR (self), FALSE);
  return self->file != NULL;
}

/**
 * quark_tensor_read_data: (skip)
 * @self: a #QuarkTensor
 * @offset: the first byte of the tensor's data to copy
 * @buffer: room for @size bytes
 * @size: the number of bytes
 * @error: return location for a #GError
 *
 * Copies bytes [@offset, @offset + @size) of the tensor's data into the
 * buffer, with pread() from the file for a tensor over a file mapping
 * (quark_tensor_is_mapped()), so that no page of the mapping is touched,
 * else from memory. Quantizers read large tensors this way, a block of rows
 * at a time into a buffer they reuse.
 *
 * Returns: %TRUE on success; %FALSE with %QUARK_ERROR_IO when the file
 *   cannot be read or shrank
 */
gboolean
quark_tensor_read_data (QuarkTensor  *self,
                        guint64       offset,
                        gpointer      buffer,
                        gsize         size,
                        GError      **error)
{
  gsize total;

  g_return_val_if_fail (QUARK_IS_TENSOR (self), FALSE);
  total = g_bytes_get_size (self->data);
  g_return_val_if_fail (offset <= total && size <= total - offset, FALSE);
  g_return_val_if_fail (buffer != NULL || size == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (self->file != NULL)
    return _quark_input_file_read (self->file, self->file_offset + offset, buffer, size, error);
  memcpy (buffer, (const guint8 *) g_bytes_get_data (self->data, NULL) + offset, size);
  return TRUE;
}

/**
 * quark_tensor_release_mapped_pages:
 * @self: a #QuarkTensor
 *
 * Tells the kernel that the tensor's data will not be read again soon, for
 * tensors read from a file mapping (quark_model_load()): their whole pages
 * leave the process's resident memory and are read from the file again if
 * needed. The data stays valid. Tensors whose data is in ordinary memory are
 * not affected. Quantizers call this after each weight so that the resident
 * memory of a run is bounded by the tensors in flight, not the model.
 */
void
quark_tensor_release_mapped_pages (QuarkTensor *self)
{
  gsize size, page;
  guintptr start, end;
  const guint8 *data;

  g_return_if_fail (QUARK_IS_TENSOR (self));

  if (!self->mapped)
    return;
  data = g_bytes_get_data (self->data, &size);
  page = (gsize) sysconf (_SC_PAGESIZE);
  start = ((guintptr) data + page - 1) & ~(guintptr) (page - 1);
  end = ((guintptr) data + size) & ~(guintptr) (page - 1);
  /* whole pages inside the tensor only: neighbours keep theirs. On a
   * read-only private file mapping MADV_DONTNEED drops pages that are read
   * back from the file on the next access. */
  if (end > start)
    madvise ((void *) start, end - start, MADV_DONTNEED);
}

/**
 * quark_tensor_format_shape:
 * @self: a #QuarkTensor
 *
 * Formats the shape for messages, as `[4096, 11008]` (`[]` for a scalar).
 *
 * Returns: (transfer full): the formatted shape
 */
char *
quark_tensor_format_shape (QuarkTensor *self)
{
  GString *s;

  g_return_val_if_fail (QUARK_IS_TENSOR (self), NULL);

  s = g_string_new ("[");
  for (guint i = 0; i < self->n_dims; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", self->shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}
