/* quark-buffer.c: reusable buffers for tensor data
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "quark-buffer.h"
#include "quark-buffer-private.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

/**
 * SECTION:quark-buffer
 *
 * Tensor data of 64 KiB or more, as backends and checkpoint formats make
 * it tensor after tensor, comes from a pool: a buffer given back is kept
 * and handed out again for the next tensor of about its size, so that a
 * model's worth of output costs the page faults of the few buffers in use
 * at a time rather than those of every tensor. Pool buffers are mapped
 * memory of their own (so that releasing one gives it back to the system,
 * whatever the C heap's state, and so that the C heap's own trimming never
 * takes back pages the next tensor needs again). From 256 KiB up they are
 * a multiple of 2 MiB, aligned to it and advised for transparent huge pages
 * (where the system allows them, a fault maps 2 MiB instead of 4 KiB), and
 * one huge page serves any size from 256 KiB to 2 MiB: the keys and values,
 * group scales and MX exponents of a model share a few of them. From 64 to
 * 256 KiB their capacity is the next power of two. Smaller sizes are plain
 * g_malloc() memory. The pool is shared by all threads.
 */

#define POOL_MIN   ((gsize) 64 << 10)  /* smaller buffers are g_malloc()'s */
#define HUGE_PAGE  ((gsize) 2 << 20)
#define HUGE_MIN   ((gsize) 256 << 10) /* from here up, huge-page buffers */
#define MAX_IDLE   16                  /* buffers kept for reuse */

typedef struct {
  gpointer data;
  gsize capacity;
} Idle;

/* a pthread mutex, not a GMutex: the pool is shared by every thread of the
 * process, and ThreadSanitizer sees pthread locks (GMutex's futexes it does
 * not) */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static GHashTable *pool_live;          /* buffer -> capacity, of pool buffers handed out */
static Idle pool_idle[MAX_IDLE];
static guint pool_n_idle;

/* @capacity bytes of anonymous memory: below HUGE_PAGE (a power of two
 * under HUGE_MIN) a mapping of its own; else (a multiple of HUGE_PAGE)
 * aligned to HUGE_PAGE, a larger mapping with the excess cut off at both
 * ends, advised for huge pages. %NULL when the system refuses it. */
static gpointer
map_buffer (gsize capacity)
{
  gboolean huge = capacity >= HUGE_PAGE;
  guint8 *p = mmap (NULL, capacity + (huge ? HUGE_PAGE : 0), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                    -1, 0);
  guint8 *aligned;
  gsize head;

  if (p == MAP_FAILED)
    return NULL;
  if (!huge)
    return p;
  aligned = (guint8 *) (((guintptr) p + HUGE_PAGE - 1) & ~(guintptr) (HUGE_PAGE - 1));
  head = (gsize) (aligned - p);
  if (head > 0)
    munmap (p, head);
  if (HUGE_PAGE - head > 0)
    munmap (aligned + capacity, HUGE_PAGE - head);
#ifdef MADV_HUGEPAGE
  madvise (aligned, capacity, MADV_HUGEPAGE);
#endif
  return aligned;
}

/* quark_buffer_alloc(), or %NULL (without aborting) when the memory
 * cannot be had */
gpointer
_quark_buffer_try_alloc (gsize size)
{
  gpointer data = NULL;
  gsize capacity;
  int best = -1;

  if (size < POOL_MIN)
    return g_try_malloc (MAX (size, 1));

  pthread_mutex_lock (&pool_lock);
  /* the smallest idle buffer that holds @size without wasting half of it
   * (or a single huge page) */
  for (guint i = 0; i < pool_n_idle; i++)
    if (pool_idle[i].capacity >= size &&
        (pool_idle[i].capacity / 2 <= size || (size >= HUGE_MIN && pool_idle[i].capacity == HUGE_PAGE)) &&
        (best < 0 || pool_idle[i].capacity < pool_idle[best].capacity))
      best = (int) i;
  if (best >= 0)
    {
      data = pool_idle[best].data;
      capacity = pool_idle[best].capacity;
      pool_idle[best] = pool_idle[--pool_n_idle];
    }
  else
    {
      if (size < HUGE_MIN)
        for (capacity = POOL_MIN; capacity < size; capacity *= 2)
          ;
      else if (size > G_MAXSIZE - HUGE_PAGE * 2)
        capacity = 0;
      else
        capacity = (size + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
      if (capacity == 0 || (data = map_buffer (capacity)) == NULL)
        {
          pthread_mutex_unlock (&pool_lock);
          return NULL;
        }
    }
  if (pool_live == NULL)
    pool_live = g_hash_table_new (NULL, NULL);
  g_hash_table_insert (pool_live, data, GSIZE_TO_POINTER (capacity));
  pthread_mutex_unlock (&pool_lock);
  return data;
}

/**
 * quark_buffer_alloc: (skip)
 * @size: bytes
 *
 * Allocates @size bytes of uninitialised memory for tensor data: from the
 * pool for 64 KiB or more, else with g_malloc(). Give it back with
 * quark_buffer_free(), or hand it to quark_buffer_to_bytes().
 *
 * Returns: (transfer full): the buffer (never %NULL; aborts on exhaustion
 *   as g_malloc() does)
 */
gpointer
quark_buffer_alloc (gsize size)
{
  gpointer data = _quark_buffer_try_alloc (size);

  if (data == NULL)
    g_error ("%s: failed to allocate %" G_GSIZE_FORMAT " bytes", G_STRLOC, size);
  return data;
}

/**
 * quark_buffer_free: (skip)
 * @buffer: (nullable): a buffer from quark_buffer_alloc(), or any memory
 *   from g_malloc()
 *
 * Gives @buffer back: a pool buffer is kept for reuse (up to sixteen; beyond
 * that the largest is released), anything else is freed with g_free().
 */
void
quark_buffer_free (gpointer buffer)
{
  gpointer capacity;

  if (buffer == NULL)
    return;
  pthread_mutex_lock (&pool_lock);
  if (pool_live == NULL || !g_hash_table_steal_extended (pool_live, buffer, NULL, &capacity))
    {
      pthread_mutex_unlock (&pool_lock);
      g_free (buffer);
      return;
    }
  if (pool_n_idle == MAX_IDLE)
    {
      guint largest = 0;
      for (guint i = 1; i < pool_n_idle; i++)
        if (pool_idle[i].capacity > pool_idle[largest].capacity)
          largest = i;
      if (pool_idle[largest].capacity > GPOINTER_TO_SIZE (capacity))
        {
          munmap (pool_idle[largest].data, pool_idle[largest].capacity);
          pool_idle[largest] = (Idle) { buffer, GPOINTER_TO_SIZE (capacity) };
        }
      else
        munmap (buffer, GPOINTER_TO_SIZE (capacity));
    }
  else
    pool_idle[pool_n_idle++] = (Idle) { buffer, GPOINTER_TO_SIZE (capacity) };
  pthread_mutex_unlock (&pool_lock);
}

/**
 * quark_buffer_to_bytes: (skip)
 * @buffer: (transfer full): a buffer from quark_buffer_alloc(), or any
 *   memory from g_malloc()
 * @size: the bytes of @buffer the result holds
 *
 * Makes a #GBytes that owns @buffer and gives it back with
 * quark_buffer_free() when the last reference goes (a tensor made over it
 * returns it to the pool when it is finalized).
 *
 * Returns: (transfer full): the bytes
 */
GBytes *
quark_buffer_to_bytes (gpointer buffer,
                       gsize    size)
{
  g_return_val_if_fail (buffer != NULL || size == 0, NULL);
  return g_bytes_new_with_free_func (buffer, size, quark_buffer_free, buffer);
}

/**
 * quark_buffer_trim:
 *
 * Releases the pool's idle buffers to the system. libquark calls it when a
 * model quantization ends; buffers in use are not affected.
 */
void
quark_buffer_trim (void)
{
  pthread_mutex_lock (&pool_lock);
  for (guint i = 0; i < pool_n_idle; i++)
    munmap (pool_idle[i].data, pool_idle[i].capacity);
  pool_n_idle = 0;
  pthread_mutex_unlock (&pool_lock);
}
