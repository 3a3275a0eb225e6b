/* quark-parallel.c: a fork-join pool of threads for the runtime
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The caller runs the first share of every job itself and waits for the
 * workers' shares; items are split into contiguous ranges, one per thread.
 * pthread primitives (not GMutex) so that ThreadSanitizer sees the
 * synchronisation.
 */
#include "config.h"

#include "quark-parallel-private.h"

#include <pthread.h>

struct _QuarkParallel
{
  guint n_threads;
  pthread_t *threads;
  pthread_mutex_t lock;
  pthread_cond_t start, done;
  guint64 generation;
  guint pending;
  gboolean quit;
  QuarkRangeFunc func;
  gpointer data;
  gsize n_items;
};

typedef struct {
  QuarkParallel *pool;
  guint index;
} Worker;

static void
run_share (QuarkParallel *pool, QuarkRangeFunc func, gpointer data, gsize n, guint index)
{
  gsize begin = n * index / pool->n_threads, end = n * (index + 1) / pool->n_threads;

  if (begin < end)
    func (data, begin, end, index);
}

static void *
worker_main (void *user_data)
{
  Worker *w = user_data;
  QuarkParallel *pool = w->pool;
  guint64 seen = 0;

  for (;;)
    {
      QuarkRangeFunc func;
      gpointer data;
      gsize n;

      pthread_mutex_lock (&pool->lock);
      while (pool->generation == seen && !pool->quit)
        pthread_cond_wait (&pool->start, &pool->lock);
      if (pool->quit)
        {
          pthread_mutex_unlock (&pool->lock);
          break;
        }
      seen = pool->generation;
      func = pool->func;
      data = pool->data;
      n = pool->n_items;
      pthread_mutex_unlock (&pool->lock);

      run_share (pool, func, data, n, w->index);

      pthread_mutex_lock (&pool->lock);
      if (--pool->pending == 0)
        pthread_cond_signal (&pool->done);
      pthread_mutex_unlock (&pool->lock);
    }
  g_free (w);
  return NULL;
}

QuarkParallel *
_quark_parallel_new (guint n_threads)
{
  QuarkParallel *pool = g_new0 (QuarkParallel, 1);

  pool->n_threads = MAX (n_threads, 1);
  pthread_mutex_init (&pool->lock, NULL);
  pthread_cond_init (&pool->start, NULL);
  pthread_cond_init (&pool->done, NULL);
  pool->threads = g_new0 (pthread_t, pool->n_threads);
  for (guint i = 1; i < pool->n_threads; i++)
    {
      Worker *w = g_new (Worker, 1);
      w->pool = pool;
      w->index = i;
      if (pthread_create (&pool->threads[i], NULL, worker_main, w) != 0)
        {
          /* fewer threads than asked: run with those started */
          g_free (w);
          pool->n_threads = i;
          break;
        }
    }
  return pool;
}

void
_quark_parallel_free (QuarkParallel *pool)
{
  if (pool == NULL)
    return;
  pthread_mutex_lock (&pool->lock);
  pool->quit = TRUE;
  pthread_cond_broadcast (&pool->start);
  pthread_mutex_unlock (&pool->lock);
  for (guint i = 1; i < pool->n_threads; i++)
    pthread_join (pool->threads[i], NULL);
  pthread_cond_destroy (&pool->start);
  pthread_cond_destroy (&pool->done);
  pthread_mutex_destroy (&pool->lock);
  g_free (pool->threads);
  g_free (pool);
}

guint
_quark_parallel_get_threads (QuarkParallel *pool)
{
  return pool->n_threads;
}

void
_quark_parallel_run (QuarkParallel *pool, gsize n_items, QuarkRangeFunc func, gpointer data)
{
  if (pool->n_threads == 1 || n_items < 2)
    {
      if (n_items > 0)
        func (data, 0, n_items, 0);
      return;
    }
  pthread_mutex_lock (&pool->lock);
  pool->func = func;
  pool->data = data;
  pool->n_items = n_items;
  pool->pending = pool->n_threads - 1;
  pool->generation++;
  pthread_cond_broadcast (&pool->start);
  pthread_mutex_unlock (&pool->lock);

  run_share (pool, func, data, n_items, 0);

  pthread_mutex_lock (&pool->lock);
  while (pool->pending > 0)
    pthread_cond_wait (&pool->done, &pool->lock);
  pthread_mutex_unlock (&pool->lock);
}
