/* quark-checkpoint-writer.c: streaming safetensors checkpoints
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#define _GNU_SOURCE 1   /* copy_file_range, renameat2, sync_file_range */
#include "config.h"

#include "quark-checkpoint-writer.h"
#include "quark-checkpoint-writer-private.h"
#include "quark-json-private.h"
#include "quark-safetensors-private.h"
#include "quark-input-file-private.h"
#include "quark-tensor-private.h"
#include "quark-json.h"
#include "quark-error.h"
#include "quark-safetensors.h"
#include "quark-model.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <glib/gstdio.h>

/**
 * QuarkCheckpointWriter:
 *
 * Writes a Hugging Face model directory tensor by tensor, so a quantizer can
 * hand each tensor over as soon as it is made and never hold the model.
 *
 * Each tensor's bytes go to disk immediately, written once. Large tensors
 * whose size is a multiple of 8 bytes (the bulk of any model) go straight
 * into the shard's file, behind room kept for the header; the others are
 * grouped by descending element size in side files. A shard is finished
 * when the next tensor would make it larger than the shard limit: its header
 * is computed then and written into the room kept for it (padded with
 * spaces, as the safetensors format allows; should it not fit, the data is
 * moved once), and the side files are appended. Every tensor is thus
 * naturally aligned in a page-aligned (or, without large tensors, 8-byte
 * aligned) data buffer; `__metadata__` holds
 * `"format": "pt"` and `"quantized_by": "libquark …"`. E8M0 tensors are
 * written as `U8`; logical sub-byte tensors must be packed first.
 *
 * Everything is written in a temporary directory next to the output, which
 * quark_checkpoint_writer_finish() checks (every shard reads back, every
 * name once) and renames into place when complete: a failed, aborted or
 * killed run never leaves an output that looks complete, and an existing
 * output is replaced only when asked. Before the rename every file is
 * flushed to the disk, so that a crash of the system does not leave a
 * damaged output either (quark_checkpoint_writer_set_durable()).
 *
 * The temporary directory, `.quark-tmp-PID-XXXXXX` beside the output, holds
 * a `lock` file naming the output, locked (flock) for as long as the writer
 * lives, and the checkpoint in `out/`. A writer for the same output finds
 * the temporary directories whose lock nobody holds — left by a run that
 * was killed — and removes them; it never touches any other (but for those
 * without a lock yet whose process PID is gone: killed while setting up,
 * before writing anything). An existing
 * output is replaced by exchanging it atomically with `out/` (renameat2),
 * then removed inside the temporary directory: a symbolic link is replaced
 * as a link, never followed, and a regular file as a whole. Nothing is ever
 * removed through a symbolic link.
 */

#define N_CLASSES 4   /* element sizes 8, 4, 2, 1 */
#define DIRECT N_CLASSES   /* the class of tensors written into the shard file itself */

/* Tensors of at least this many bytes (and a multiple of 8) are written
 * straight into the shard file; the room kept for its header is the
 * expected header size (_quark_checkpoint_writer_expect_tensors()) or
 * DEFAULT_HEADER_ROOM, rounded up to pages. */
#define DIRECT_MIN_SIZE     (64u << 10)
#define DEFAULT_HEADER_ROOM (128u * 1024)
#define PAGE_ROUND(n)       (((n) + 4095) & ~(guint64) 4095)
/* the copier thread's writes into the shard file, between the caller's */
#define COPY_CHUNK          ((gsize) 4 << 20)

typedef struct {
  char *name;
  const char *dtype;
  gint64 shape[QUARK_TENSOR_MAX_DIMS];
  guint n_dims;
  guint64 size;
  guint klass;
  guint64 offset;             /* in the shard file's data, for DIRECT */
} Entry;

typedef struct {
  GPtrArray *entries;         /* Entry, in arrival order */
  int fd[N_CLASSES];
  char *data_path[N_CLASSES];
  guint64 class_size[N_CLASSES];
  guint64 size;
  int main_fd;                /* the shard file, once a DIRECT tensor came */
  guint64 room;               /* where its data starts (header room) */
  guint64 direct_size;        /* DIRECT bytes written from room on */
  char *part_path;            /* the shard file, before its final name */
} Shard;

struct _QuarkCheckpointWriter
{
  GObject parent_instance;

  char *directory;
  char *parent;
  char *work;                 /* .quark-tmp-XXXXXX: lock and out/ */
  char *tmp;                  /* work/out, the checkpoint being written */
  int lock_fd;
  GHashTable *names;          /* tensor name -> what it was made from */
  GPtrArray *skipped;         /* "name: why", files not copied */
  char *copy_from;
  guint64 max_shard;
  gboolean overwrite;
  JsonNode *metadata;
  GPtrArray *shards;          /* Shard */
  guint64 total_size;
  gboolean limited;           /* QUARK_DEBUG_WRITE_LIMIT is set */
  guint64 space_left;         /* what it leaves, under lock */
  guint64 header_hint;        /* expected header bytes of one shard, or 0 */
  gint no_copy_range;         /* copy_file_range refused: sendfile first (atomic) */
  /* the copier thread: tensors over a file mapping copied into the shard
   * file by the kernel while the caller goes on. pthread primitives, which
   * ThreadSanitizer sees (not GLib's futexes) */
  pthread_t copier;
  gboolean copier_running;
  gboolean copier_stop;       /* under lock: no more copies, end when done */
  GQueue copies;              /* Copy, under lock */
  pthread_mutex_t lock;       /* also space_left, copy_error */
  pthread_cond_t copy_cond;   /* a copy queued, or copier_stop */
  pthread_cond_t io_cond;     /* io_busy cleared */
  gboolean io_busy;           /* under lock: a thread writes into the shard file */
  guint io_waiting;           /* under lock: the caller's thread waits to write */
  GError *copy_error;         /* the first failed copy's, under lock */
  gboolean durable;           /* fsync before the rename (the default) */
  gboolean done;
};

G_DEFINE_FINAL_TYPE (QuarkCheckpointWriter, quark_checkpoint_writer, G_TYPE_OBJECT)

static void
entry_free (gpointer data)
{
  Entry *e = data;
  g_free (e->name);
  g_free (e);
}

static void
shard_free (gpointer data)
{
  Shard *s = data;
  for (guint c = 0; c < N_CLASSES; c++)
    {
      if (s->fd[c] >= 0)
        close (s->fd[c]);
      g_free (s->data_path[c]);
    }
  if (s->main_fd >= 0)
    close (s->main_fd);
  g_ptr_array_unref (s->entries);
  g_free (s->part_path);
  g_free (s);
}

/* Removes @name in @dirfd and, for a directory, everything below it,
 * never following a symbolic link: a link is removed, not what it names. */
static void
remove_at (int parent_fd, const char *name)
{
  struct stat st;

  if (fstatat (parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return;
  if (S_ISDIR (st.st_mode))
    {
      int fd = openat (parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      DIR *dir = fd >= 0 ? fdopendir (fd) : NULL;

      if (dir)
        {
          /* entries removed while reading may hide others: read again */
          for (guint pass = 0; pass < 4; pass++)
            {
              struct dirent *e;
              guint seen = 0;
              rewinddir (dir);
              while ((e = readdir (dir)) != NULL)
                if (strcmp (e->d_name, ".") != 0 && strcmp (e->d_name, "..") != 0)
                  {
                    remove_at (dirfd (dir), e->d_name);
                    seen++;
                  }
              if (seen == 0)
                break;
            }
          closedir (dir);
        }
      else if (fd >= 0)
        close (fd);
      unlinkat (parent_fd, name, AT_REMOVEDIR);
    }
  else
    unlinkat (parent_fd, name, 0);
}

static void
remove_path (const char *path)
{
  g_autofree char *parent = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (path);
  int fd = open (parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd < 0)
    return;
  remove_at (fd, base);
  close (fd);
}

#define TMP_PREFIX ".quark-tmp-"
#define MARKER_HEAD "libquark temporary output\noutput="

/* Whether the process that made a temporary directory named
 * .quark-tmp-PID-XXXXXX is gone (a process of that number that exists, or
 * a name without one, counts as alive). */
static gboolean
maker_is_gone (const char *name)
{
  const char *p = name + strlen (TMP_PREFIX);
  char *end;
  guint64 pid = g_ascii_strtoull (p, &end, 10);

  if (end == p || *end != '-' || pid == 0 || pid > G_MAXINT)
    return FALSE;
  return kill ((pid_t) pid, 0) != 0 && errno == ESRCH;
}

/* Removes the temporary directories that writers for @output_name left in
 * @parent when they were killed: those whose lock file names the same
 * output and that nobody holds. A directory whose lock file is missing or
 * empty (its writer was killed while it set itself up, before it wrote
 * anything) is removed when the process named in its name is gone. Others
 * are left alone. */
static void
remove_stale_temporaries (const char *parent, const char *output_name)
{
  g_autofree char *expected = g_strconcat (MARKER_HEAD, output_name, "\n", NULL);
  gsize expected_len = strlen (expected);
  int pfd = open (parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int scan_fd = pfd >= 0 ? dup (pfd) : -1;
  DIR *dir = scan_fd >= 0 ? fdopendir (scan_fd) : NULL;
  g_autoptr(GPtrArray) stale = g_ptr_array_new_with_free_func (g_free);
  struct dirent *e;

  if (dir == NULL)
    {
      if (scan_fd >= 0)
        close (scan_fd);
      if (pfd >= 0)
        close (pfd);
      return;
    }
  while ((e = readdir (dir)) != NULL)
    if (g_str_has_prefix (e->d_name, TMP_PREFIX))
      g_ptr_array_add (stale, g_strdup (e->d_name));
  closedir (dir);

  for (guint i = 0; i < stale->len; i++)
    {
      const char *name = g_ptr_array_index (stale, i);
      g_autofree char *lock = g_strconcat (name, "/lock", NULL);
      char marker[4096];
      struct stat st;
      gssize n = 0;
      int fd;

      if (fstatat (pfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR (st.st_mode))
        continue;
      fd = openat (pfd, lock, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
      if (fd >= 0)
        n = fstat (fd, &st) == 0 && S_ISREG (st.st_mode) ? read (fd, marker, sizeof marker) : -1;
      if (fd >= 0 && n >= (gssize) expected_len && memcmp (marker, expected, expected_len) == 0)
        {
          if (flock (fd, LOCK_EX | LOCK_NB) == 0)
            remove_at (pfd, name);   /* while holding the lock */
        }
      else if ((fd < 0 && errno == ENOENT) || n == 0)
        {
          if (maker_is_gone (name))
            remove_at (pfd, name);
        }
      if (fd >= 0)
        close (fd);
    }
  close (pfd);
}

static void
quark_checkpoint_writer_finalize (GObject *object)
{
  QuarkCheckpointWriter *self = QUARK_CHECKPOINT_WRITER (object);

  quark_checkpoint_writer_abort (self);
  g_free (self->directory);
  g_free (self->parent);
  g_free (self->work);
  g_free (self->tmp);
  g_hash_table_unref (self->names);
  g_ptr_array_unref (self->skipped);
  g_free (self->copy_from);
  g_clear_pointer (&self->metadata, json_node_unref);
  g_ptr_array_unref (self->shards);
  g_clear_error (&self->copy_error);
  pthread_cond_destroy (&self->copy_cond);
  pthread_cond_destroy (&self->io_cond);
  pthread_mutex_destroy (&self->lock);

  G_OBJECT_CLASS (quark_checkpoint_writer_parent_class)->finalize (object);
}

static void
quark_checkpoint_writer_class_init (QuarkCheckpointWriterClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = quark_checkpoint_writer_finalize;
}

static void
quark_checkpoint_writer_init (QuarkCheckpointWriter *self)
{
  const char *limit = g_getenv ("QUARK_DEBUG_WRITE_LIMIT");

  self->shards = g_ptr_array_new_with_free_func (shard_free);
  self->names = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->skipped = g_ptr_array_new_with_free_func (g_free);
  self->lock_fd = -1;
  self->durable = TRUE;
  pthread_mutex_init (&self->lock, NULL);
  pthread_cond_init (&self->copy_cond, NULL);
  pthread_cond_init (&self->io_cond, NULL);
  g_queue_init (&self->copies);
  /* A testing hook: the disk is full after this many bytes. */
  self->limited = limit && *limit;
  self->space_left = self->limited ? g_ascii_strtoull (limit, NULL, 10) : G_MAXUINT64;
}

static gboolean
io_error (GError **error, const char *path, const char *what, int saved)
{
  g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: %s: %s", path, what, g_strerror (saved));
  return FALSE;
}

void
_quark_output_start_writeback (int fd, guint64 offset, guint64 size)
{
  sync_file_range (fd, (off_t) offset, (off_t) size, SYNC_FILE_RANGE_WRITE);
}

void
_quark_output_sync_directory (const char *directory)
{
  int fd = open (directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd >= 0)
    {
      fsync (fd);
      close (fd);
    }
}

/* A finished file's bytes onto the disk, when the output is durable */
static gboolean
flush_file (QuarkCheckpointWriter *self, int fd, const char *path, GError **error)
{
  if (self->durable && fsync (fd) != 0)
    return io_error (error, path, "fsync failed", errno);
  return TRUE;
}

/**
 * quark_checkpoint_writer_new:
 * @directory: (type filename): the output directory; it must not exist
 *   unless @overwrite is set
 * @max_shard_size: the largest shard in bytes (0 for
 *   %QUARK_SAFETENSORS_DEFAULT_SHARD_SIZE); a larger tensor gets a shard of
 *   its own
 * @overwrite: replace an existing @directory when finishing
 * @error: return location for a #GError
 *
 * Starts a checkpoint: removes what killed writers for the same
 * @directory left (see #QuarkCheckpointWriter) and creates the temporary
 * directory next to @directory. The output directory gets the mode
 * `mkdir` would give it (0777 less the umask).
 *
 * Returns: (transfer full): a writer, or %NULL with %QUARK_ERROR_EXISTS
 *   when @directory exists and @overwrite is not set, %QUARK_ERROR_IO, or
 *   %QUARK_ERROR_INVALID_ARGUMENT for a @directory that cannot be an output
 *   (such as `.` or `/`)
 */
QuarkCheckpointWriter *
quark_checkpoint_writer_new (const char  *directory,
                             guint64      max_shard_size,
                             gboolean     overwrite,
                             GError     **error)
{
  g_autoptr(QuarkCheckpointWriter) self = NULL;
  g_autofree char *path = NULL, *base = NULL, *lock_path = NULL, *marker = NULL;
  struct stat st;
  gsize len;

  g_return_val_if_fail (directory != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  /* "out/" names out */
  path = g_strdup (directory);
  len = strlen (path);
  while (len > 1 && path[len - 1] == '/')
    path[--len] = '\0';
  base = g_path_get_basename (path);
  if (*path == '\0' || g_str_equal (base, ".") || g_str_equal (base, "..") || g_str_equal (base, "/"))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "%s: not a path an output directory can be written to", directory);
      return NULL;
    }
  if (lstat (path, &st) == 0 && !overwrite)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_EXISTS, "%s: already exists (overwrite it explicitly)", directory);
      return NULL;
    }
  self = g_object_new (QUARK_TYPE_CHECKPOINT_WRITER, NULL);
  self->directory = g_steal_pointer (&path);
  self->parent = g_path_get_dirname (self->directory);
  self->max_shard = max_shard_size ? max_shard_size : QUARK_SAFETENSORS_DEFAULT_SHARD_SIZE;
  self->overwrite = overwrite;

  remove_stale_temporaries (self->parent, base);
  {
    g_autofree char *name = g_strdup_printf (TMP_PREFIX "%d-XXXXXX", (int) getpid ());
    self->work = g_build_filename (self->parent, name, NULL);
  }
  if (g_mkdtemp (self->work) == NULL)
    {
      int saved = errno;
      g_clear_pointer (&self->work, g_free);
      io_error (error, self->parent, "cannot create a temporary directory", saved);
      return NULL;
    }
  /* the lock first, held while this writer lives, then what it marks */
  lock_path = g_build_filename (self->work, "lock", NULL);
  self->lock_fd = g_open (lock_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (self->lock_fd < 0 || flock (self->lock_fd, LOCK_EX | LOCK_NB) != 0)
    {
      io_error (error, lock_path, "cannot create the lock", errno);
      return NULL;
    }
  marker = g_strdup_printf (MARKER_HEAD "%s\npid=%d\n", base, (int) getpid ());
  if (write (self->lock_fd, marker, strlen (marker)) != (gssize) strlen (marker))
    {
      io_error (error, lock_path, "cannot write the lock", errno);
      return NULL;
    }
  self->tmp = g_build_filename (self->work, "out", NULL);
  if (g_mkdir (self->tmp, 0777) != 0)
    {
      int saved = errno;
      g_clear_pointer (&self->tmp, g_free);
      io_error (error, self->work, "cannot create a temporary directory", saved);
      return NULL;
    }
  return g_steal_pointer (&self);
}

static guint
size_class (QuarkDType dtype)
{
  switch (quark_dtype_get_element_size (dtype))
    {
    case 8: return 0;
    case 4: return 1;
    case 2: return 2;
    default: return 3;
    }
}

static const char *
file_dtype (QuarkTensor *t, GError **error)
{
  QuarkDType dtype = quark_tensor_get_dtype (t);

  if (dtype == QUARK_DTYPE_F8_E8M0)
    return "U8";   /* engines read E8M0 scales as bytes */
  if (quark_dtype_is_sub_byte (dtype) || quark_dtype_to_safetensors (dtype) == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_UNSUPPORTED_DTYPE,
                   "tensor %s: dtype %s has no safetensors form; pack it into bytes or words first",
                   quark_tensor_get_name (t), quark_dtype_get_name (dtype));
      return NULL;
    }
  return quark_dtype_to_safetensors (dtype);
}

/* Every byte the writer puts on disk goes through here (the kernel copy of
 * append_file() is only used when no write limit is set): at the file
 * position, or at @offset when it is not -1. */
static gboolean
write_at (QuarkCheckpointWriter *self, int fd, const void *data, gsize size, gint64 offset, const char *path,
          GError **error)
{
  const guint8 *p = data;
  gboolean full = FALSE;

  if (self->limited)
    {
      pthread_mutex_lock (&self->lock);
      full = size > self->space_left;
      size = MIN (size, self->space_left);
      self->space_left -= size;
      pthread_mutex_unlock (&self->lock);
    }
  while (size > 0)
    {
      gsize len = MIN (size, (gsize) 1 << 30);
      gssize n = offset < 0 ? write (fd, p, len) : pwrite (fd, p, len, (off_t) offset);
      if (n < 0)
        {
          if (errno == EINTR)
            continue;
          return io_error (error, path, "write failed", errno);
        }
      p += n;
      size -= (gsize) n;
      if (offset >= 0)
        offset += n;
    }
  return full ? io_error (error, path, "write failed", ENOSPC) : TRUE;
}

static gboolean
write_all (QuarkCheckpointWriter *self, int fd, const void *data, gsize size, const char *path, GError **error)
{
  return write_at (self, fd, data, size, -1, path, error);
}

/* Moves @size bytes of @fd from @from to the later offset @to, from the
 * end backwards so that nothing is overwritten before it is read. */
static gboolean
move_up (QuarkCheckpointWriter *self, int fd, guint64 from, guint64 to, guint64 size, const char *path,
         GError **error)
{
  g_autofree guint8 *buffer = g_malloc (4 << 20);

  while (size > 0)
    {
      gsize len = (gsize) MIN (size, (guint64) 4 << 20);
      gssize r;

      size -= len;
      r = pread (fd, buffer, len, (off_t) (from + size));
      if (r != (gssize) len)
        return io_error (error, path, "read failed", r < 0 ? errno : EIO);
      if (!write_at (self, fd, buffer, len, (gint64) (to + size), path, error))
        return FALSE;
    }
  return TRUE;
}

/* Copies @size bytes of @in_fd from @in_off to @out_fd (at @out_off, or
 * at its position when -1) in the kernel, not under a write limit (whose
 * accounting is write_at()'s): copy_file_range, or sendfile where that is
 * refused (another file system, as a model on tmpfs written to ext4), so
 * that no page of a mapping of @in_fd is touched and no buffer is filled.
 * Returns the bytes copied: all, or fewer when the kernel cannot copy
 * between these files (*@fallback set: the caller copies the rest through
 * memory) or @in_fd ended (*@fallback unset); -1 with @error, naming
 * @path, on a failure. */
static gssize
kernel_copy (QuarkCheckpointWriter *self, int in_fd, guint64 in_off, int out_fd, gint64 out_off, guint64 size,
             const char *path, gboolean *fallback, GError **error)
{
  off_t in = (off_t) in_off, out = (off_t) out_off;
  gboolean seeked = FALSE;
  guint64 done = 0;

  *fallback = TRUE;
  if (self->limited)
    return 0;
  while (done < size)
    {
      size_t len = (size_t) MIN (size - done, (guint64) 1 << 30);
      gssize n;

      if (!g_atomic_int_get (&self->no_copy_range))
        n = copy_file_range (in_fd, &in, out_fd, out_off >= 0 ? &out : NULL, len, 0);
      else
        {
          /* sendfile writes at the file position */
          if (out_off >= 0 && !seeked && lseek (out_fd, out, SEEK_SET) < 0)
            {
              io_error (error, path, "seek failed", errno);
              return -1;
            }
          seeked = TRUE;
          n = sendfile (out_fd, in_fd, &in, len);
        }
      if (n > 0)
        done += (guint64) n;
      else if (n < 0 && errno == EINTR)
        continue;
      else if (n == 0)
        {
          *fallback = FALSE;
          break;
        }
      else if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
        {
          io_error (error, path, "copy failed", errno);
          return -1;
        }
      else if (!g_atomic_int_get (&self->no_copy_range))
        g_atomic_int_set (&self->no_copy_range, TRUE);   /* from here on: sendfile */
      else
        break;
    }
  return (gssize) done;
}

/* Appends the contents of @from to @to_fd, in the kernel when it can. */
static gboolean
append_file (QuarkCheckpointWriter *self, int to_fd, const char *to_path, int from_fd, const char *from_path,
             guint64 size, GError **error)
{
  gboolean fallback;
  gssize copied = kernel_copy (self, from_fd, 0, to_fd, -1, size, to_path, &fallback, error);
  off_t in_off = copied;
  g_autofree guint8 *buffer = NULL;

  if (copied < 0)
    return FALSE;
  if ((guint64) copied == size)
    return TRUE;
  if (!fallback)
    return io_error (error, to_path, "copy failed", EIO);
  /* no kernel copy here: through a buffer */
  buffer = g_malloc (1 << 20);
  while ((guint64) in_off < size)
    {
      gssize r = pread (from_fd, buffer, (size_t) MIN (size - (guint64) in_off, (guint64) 1 << 20), in_off);
      if (r <= 0)
        return io_error (error, from_path, "read failed", r < 0 ? errno : EIO);
      if (!write_all (self, to_fd, buffer, (gsize) r, to_path, error))
        return FALSE;
      in_off += r;
    }
  return TRUE;
}

/* @size bytes of a tensor's, from its byte @from on (its data @data), to
 * @fd at @offset (or at the file position when -1): for a tensor over a
 * file mapping, copied from that file by the kernel (copy_file_range: no
 * page of the mapping is touched), else written from memory. */
static gboolean
write_tensor (QuarkCheckpointWriter *self, int fd, QuarkTensor *tensor, gconstpointer data, gsize from, gsize size,
              gint64 offset, const char *path, GError **error)
{
  guint64 source_offset;
  QuarkInputFile *source = _quark_tensor_get_file (tensor, &source_offset);
  int in_fd = source ? _quark_input_file_get_fd (source) : -1;
  gboolean fallback;
  gssize copied = in_fd >= 0 ? kernel_copy (self, in_fd, source_offset + from, fd, offset, size, path, &fallback,
                                            error) : 0;
  gsize done = (gsize) MAX (copied, 0);

  if (copied < 0)
    return FALSE;
  /* the rest (all of it, for a tensor in memory) from memory */
  return write_at (self, fd, (const guint8 *) data + from + done, size - done,
                   offset >= 0 ? offset + (gint64) done : -1, path, error);
}

/* The shard file takes one writer at a time: two threads writing into one
 * file wait for each other in the kernel, spinning on its lock (a tenth
 * of a two-thread int8 run's processor time when they did). The caller's
 * thread goes first; the copier thread writes a chunk at a time between
 * its writes. */
static void
begin_shard_write (QuarkCheckpointWriter *self, gboolean copier)
{
  pthread_mutex_lock (&self->lock);
  if (copier)
    while (self->io_busy || self->io_waiting)
      pthread_cond_wait (&self->io_cond, &self->lock);
  else
    {
      self->io_waiting++;
      while (self->io_busy)
        pthread_cond_wait (&self->io_cond, &self->lock);
      self->io_waiting--;
    }
  self->io_busy = TRUE;
  pthread_mutex_unlock (&self->lock);
}

static void
end_shard_write (QuarkCheckpointWriter *self)
{
  pthread_mutex_lock (&self->lock);
  self->io_busy = FALSE;
  pthread_cond_broadcast (&self->io_cond);
  pthread_mutex_unlock (&self->lock);
}

/* A copy into the shard file on the copier thread: a tensor over a file
 * mapping (held by a reference) to @offset of @fd */
typedef struct {
  QuarkCheckpointWriter *self;
  QuarkTensor *tensor;
  gconstpointer data;
  gsize size;
  int fd;
  gint64 offset;
  char *path;
} Copy;

static void
run_copy (Copy *c)
{
  QuarkCheckpointWriter *self = c->self;
  GError *local_error = NULL;
  gboolean ok = TRUE;

  for (gsize done = 0; ok && done < c->size; done += COPY_CHUNK)
    {
      gsize n = MIN (c->size - done, COPY_CHUNK);
      begin_shard_write (self, TRUE);
      ok = write_tensor (self, c->fd, c->tensor, c->data, done, n, c->offset + (gint64) done, c->path, &local_error);
      end_shard_write (self);
    }
  if (ok)
    {
      if (self->durable)
        _quark_output_start_writeback (c->fd, (guint64) c->offset, c->size);
    }
  else
    {
      pthread_mutex_lock (&self->lock);
      if (self->copy_error == NULL)
        self->copy_error = g_steal_pointer (&local_error);
      pthread_mutex_unlock (&self->lock);
      g_clear_error (&local_error);
    }
  g_object_unref (c->tensor);
  g_free (c->path);
  g_free (c);
}

/* The copier thread: the copies in the order they came, until told to
 * stop with none left */
static void *
copier_main (void *data)
{
  QuarkCheckpointWriter *self = data;

  pthread_mutex_lock (&self->lock);
  for (;;)
    {
      Copy *c = g_queue_pop_head (&self->copies);
      if (c == NULL)
        {
          if (self->copier_stop)
            break;
          pthread_cond_wait (&self->copy_cond, &self->lock);
          continue;
        }
      pthread_mutex_unlock (&self->lock);
      run_copy (c);
      pthread_mutex_lock (&self->lock);
    }
  pthread_mutex_unlock (&self->lock);
  return NULL;
}

/* Queues a copy, starting the copier thread if it is not running; where
 * no thread can be started, copies at once. */
static void
queue_copy (QuarkCheckpointWriter *self, Copy *c)
{
  if (!self->copier_running)
    {
      self->copier_stop = FALSE;
      if (pthread_create (&self->copier, NULL, copier_main, self) != 0)
        {
          run_copy (c);
          return;
        }
      self->copier_running = TRUE;
    }
  pthread_mutex_lock (&self->lock);
  g_queue_push_tail (&self->copies, c);
  pthread_cond_signal (&self->copy_cond);
  pthread_mutex_unlock (&self->lock);
}

/* %FALSE, with its error, once a copy failed */
static gboolean
check_copies (QuarkCheckpointWriter *self, GError **error)
{
  gboolean failed;

  pthread_mutex_lock (&self->lock);
  failed = self->copy_error != NULL;
  if (failed)
    g_propagate_error (error, g_error_copy (self->copy_error));
  pthread_mutex_unlock (&self->lock);
  return !failed;
}

/* Waits for the copies queued; the first one that failed fails here (and
 * at every later call). */
static gboolean
wait_copies (QuarkCheckpointWriter *self, GError **error)
{
  if (self->copier_running)
    {
      pthread_mutex_lock (&self->lock);
      self->copier_stop = TRUE;
      pthread_cond_signal (&self->copy_cond);
      pthread_mutex_unlock (&self->lock);
      pthread_join (self->copier, NULL);
      self->copier_running = FALSE;
    }
  return check_copies (self, error);
}

/* Writes the header into the room kept for it (or in front of the side
 * files' data, when no tensor went into the shard file directly) and
 * appends the side files, once the copies into it are done. */
static gboolean
close_shard (QuarkCheckpointWriter *self, Shard *s, guint index, GError **error)
{
  g_autoptr(GString) header = g_string_sized_new (4096 + 160 * s->entries->len);
  guint64 class_offset[N_CLASSES], offset = s->direct_size, len_le, room;
  int fd;
  gboolean ok;

  if (!wait_copies (self, error))
    return FALSE;

  for (guint c = 0; c < N_CLASSES; c++)
    {
      class_offset[c] = offset;
      offset += s->class_size[c];
    }
  /* written as text straight away, in quark_json_to_string()'s compact
   * spelling: a tree of JSON nodes for every entry would cost more memory
   * (and fresh pages) than the text (names are unique: add refuses a
   * duplicate) */
  g_string_append (header, "{\"__metadata__\":{\"format\":\"pt\",\"quantized_by\":");
  _quark_json_append_string (header, "libquark " QUARK_VERSION_S);
  g_string_append_c (header, '}');
  for (guint c = 0; c <= N_CLASSES; c++)
    for (guint i = 0; i < s->entries->len; i++)
      {
        Entry *e = g_ptr_array_index (s->entries, i);
        guint64 start = e->klass == DIRECT ? e->offset : class_offset[e->klass];
        if (e->klass != (c == 0 ? DIRECT : c - 1))
          continue;
        g_string_append_c (header, ',');
        _quark_json_append_string (header, e->name);
        g_string_append (header, ":{\"dtype\":");
        _quark_json_append_string (header, e->dtype);
        g_string_append (header, ",\"shape\":[");
        for (guint d = 0; d < e->n_dims; d++)
          g_string_append_printf (header, d ? ",%" G_GINT64_FORMAT : "%" G_GINT64_FORMAT, (gint64) e->shape[d]);
        g_string_append_printf (header, "],\"data_offsets\":[%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT "]}", start,
                                start + e->size);
        if (e->klass != DIRECT)
          class_offset[e->klass] += e->size;
      }
  g_string_append_c (header, '}');
  while ((8 + header->len) % 8)
    g_string_append_c (header, ' ');   /* the data buffer starts 8-byte aligned */

  if (s->main_fd >= 0)
    {
      /* the header goes into its room, padded to fill it; a header larger
       * than the room moves the data up once, to the next page */
      fd = s->main_fd;
      s->main_fd = -1;
      room = s->room;
      if (8 + header->len > room)
        {
          room = PAGE_ROUND (8 + header->len);
          if (!move_up (self, fd, s->room, room, s->direct_size, s->part_path, error))
            {
              close (fd);
              return FALSE;
            }
        }
      /* the rest of the room is spaces, written from a small buffer */
      len_le = GUINT64_TO_LE (room - 8);
      ok = write_at (self, fd, &len_le, 8, 0, s->part_path, error) &&
           write_at (self, fd, header->str, header->len, 8, s->part_path, error);
      for (guint64 at = 8 + header->len; ok && at < room;)
        {
          static const char spaces[4096] = { [0 ... 4095] = ' ' };
          gsize n = (gsize) MIN (room - at, sizeof spaces);
          ok = write_at (self, fd, spaces, n, (gint64) at, s->part_path, error);
          at += n;
        }
      if (ok && lseek (fd, (off_t) (room + s->direct_size), SEEK_SET) < 0)
        ok = io_error (error, s->part_path, "seek failed", errno);
    }
  else
    {
      s->part_path = g_strdup_printf ("%s/shard-%05u.part", self->tmp, index + 1);
      fd = g_open (s->part_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0)
        return io_error (error, s->part_path, "cannot create", errno);
      len_le = GUINT64_TO_LE ((guint64) header->len);
      ok = write_all (self, fd, &len_le, 8, s->part_path, error) &&
           write_all (self, fd, header->str, header->len, s->part_path, error);
    }
  for (guint c = 0; ok && c < N_CLASSES; c++)
    if (s->fd[c] >= 0)
      {
        ok = append_file (self, fd, s->part_path, s->fd[c], s->data_path[c], s->class_size[c], error);
        close (s->fd[c]);
        s->fd[c] = -1;
        g_unlink (s->data_path[c]);
      }
  ok = ok && flush_file (self, fd, s->part_path, error);
  if (close (fd) != 0 && ok)
    ok = io_error (error, s->part_path, "close failed", errno);
  return ok;
}

static Shard *
current_shard (QuarkCheckpointWriter *self)
{
  return self->shards->len ? g_ptr_array_index (self->shards, self->shards->len - 1) : NULL;
}

static Shard *
new_shard (QuarkCheckpointWriter *self)
{
  Shard *s = g_new0 (Shard, 1);
  s->entries = g_ptr_array_new_with_free_func (entry_free);
  for (guint c = 0; c < N_CLASSES; c++)
    s->fd[c] = -1;
  s->main_fd = -1;
  g_ptr_array_add (self->shards, s);
  return s;
}

/* Write errors name a file in the temporary directory; say which output
 * it was for. */
static gboolean
name_output (QuarkCheckpointWriter *self, GError **error)
{
  if (error && *error && g_error_matches (*error, QUARK_ERROR, QUARK_ERROR_IO) &&
      !g_str_has_prefix ((*error)->message, self->directory))
    g_prefix_error (error, "%s: ", self->directory);
  return FALSE;
}

/* A tensor into the shard file, behind the header room (made with the
 * first such tensor). A tensor over a file mapping is copied by the kernel
 * on the copier thread, while the caller goes on (quantizing the next
 * tensors): its place in the file is set here, so the bytes are the same
 * whenever the copy runs. */
static gboolean
write_direct (QuarkCheckpointWriter *self, Shard *s, Entry *e, QuarkTensor *tensor, gconstpointer data,
              GError **error)
{
  guint64 source_offset;
  QuarkInputFile *source = _quark_tensor_get_file (tensor, &source_offset);
  gboolean ok;

  if (s->main_fd < 0)
    {
      s->part_path = g_strdup_printf ("%s/shard-%05u.part", self->tmp, self->shards->len);
      s->main_fd = g_open (s->part_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (s->main_fd < 0)
        return io_error (error, s->part_path, "cannot create", errno);
      s->room = PAGE_ROUND (self->header_hint ? self->header_hint : DEFAULT_HEADER_ROOM);
    }
  e->offset = s->direct_size;
  if (source != NULL && _quark_input_file_get_fd (source) >= 0)
    {
      Copy *c = g_new (Copy, 1);

      *c = (Copy) { self, g_object_ref (tensor), data, e->size, s->main_fd, (gint64) (s->room + e->offset),
                    g_strdup (s->part_path) };
      queue_copy (self, c);
      s->direct_size += e->size;
      return TRUE;
    }
  begin_shard_write (self, FALSE);
  ok = write_tensor (self, s->main_fd, tensor, data, 0, e->size, (gint64) (s->room + e->offset), s->part_path, error);
  end_shard_write (self);
  if (!ok)
    return FALSE;
  /* these bytes stay where they are: to the disk while later tensors are
   * quantized */
  if (self->durable)
    _quark_output_start_writeback (s->main_fd, s->room + e->offset, e->size);
  s->direct_size += e->size;
  return TRUE;
}

/* A tensor into the side file of its class. */
static gboolean
write_side (QuarkCheckpointWriter *self, Shard *s, Entry *e, QuarkTensor *tensor, gconstpointer data,
            GError **error)
{
  if (s->fd[e->klass] < 0)
    {
      s->data_path[e->klass] = g_strdup_printf ("%s/shard-%05u-%u.data", self->tmp, self->shards->len, e->klass);
      s->fd[e->klass] = g_open (s->data_path[e->klass], O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (s->fd[e->klass] < 0)
        return io_error (error, s->data_path[e->klass], "cannot create", errno);
    }
  return write_tensor (self, s->fd[e->klass], tensor, data, 0, e->size, -1, s->data_path[e->klass], error);
}

/**
 * quark_checkpoint_writer_add:
 * @self: a #QuarkCheckpointWriter
 * @tensor: the next tensor
 * @error: return location for a #GError
 *
 * Writes a tensor's bytes now, like quark_checkpoint_writer_add_with_origin()
 * without an origin.
 *
 * Returns: %TRUE on success; %FALSE as
 *   quark_checkpoint_writer_add_with_origin()
 */
gboolean
quark_checkpoint_writer_add (QuarkCheckpointWriter  *self,
                             QuarkTensor            *tensor,
                             GError                **error)
{
  return quark_checkpoint_writer_add_with_origin (self, tensor, NULL, error);
}

/**
 * quark_checkpoint_writer_add_with_origin:
 * @self: a #QuarkCheckpointWriter
 * @tensor: the next tensor
 * @origin: (nullable): what @tensor was made from, such as the name of the
 *   input tensor it quantizes, for messages
 * @error: return location for a #GError
 *
 * Writes a tensor's bytes now; those of a tensor over a file mapping
 * (quark_model_load()) that go straight into the shard file are copied by
 * the kernel on a thread of the writer's while the caller goes on (the
 * writer keeps a reference to @tensor until then, and
 * quark_checkpoint_writer_finish() waits for the copies). Names are
 * unique: a second tensor of a name already written is refused with an
 * error naming both origins (a backend
 * whose generated names collide with its input's, such as an input that
 * already holds `W_scale` beside `W`, never writes a checkpoint with one
 * header entry and two tensors' data).
 *
 * Returns: %TRUE on success; %FALSE with %QUARK_ERROR_INVALID_ARGUMENT for
 *   a duplicate name, %QUARK_ERROR_IO (also for an earlier tensor's copy
 *   that failed) or %QUARK_ERROR_UNSUPPORTED_DTYPE (the writer is then
 *   unusable: abort it)
 */
gboolean
quark_checkpoint_writer_add_with_origin (QuarkCheckpointWriter  *self,
                                         QuarkTensor            *tensor,
                                         const char             *origin,
                                         GError                **error)
{
  Shard *s;
  Entry *e;
  const char *dtype, *name, *first;
  const gint64 *shape;
  gconstpointer data;
  gsize size;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_WRITER (self), FALSE);
  g_return_val_if_fail (QUARK_IS_TENSOR (tensor), FALSE);
  g_return_val_if_fail (!self->done && self->tmp != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  name = quark_tensor_get_name (tensor);
  first = g_hash_table_lookup (self->names, name);
  if (first != NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "%s: tensor %s would be written twice: made from %s and from %s", self->directory, name,
                   *first ? first : "an earlier tensor", origin ? origin : "a later tensor");
      return FALSE;
    }
  dtype = file_dtype (tensor, error);
  if (dtype == NULL)
    return FALSE;
  /* a copy that failed fails the next tensor */
  if (!check_copies (self, error))
    return name_output (self, error);
  data = quark_tensor_peek_data (tensor, &size);

  s = current_shard (self);
  if (s == NULL || (s->size > 0 && s->size + size > self->max_shard))
    {
      if (s && !close_shard (self, s, self->shards->len - 1, error))
        return name_output (self, error);
      s = new_shard (self);
    }

  e = g_new0 (Entry, 1);
  e->name = g_strdup (quark_tensor_get_name (tensor));
  e->dtype = dtype;
  shape = quark_tensor_get_shape (tensor, &e->n_dims);
  memcpy (e->shape, shape, e->n_dims * sizeof (gint64));
  e->size = size;
  e->klass = size >= DIRECT_MIN_SIZE && size % 8 == 0 ? DIRECT : size_class (quark_tensor_get_dtype (tensor));
  if (!(e->klass == DIRECT ? write_direct (self, s, e, tensor, data, error)
                           : write_side (self, s, e, tensor, data, error)))
    {
      entry_free (e);
      return name_output (self, error);
    }
  g_ptr_array_add (s->entries, e);
  g_hash_table_insert (self->names, g_strdup (name), g_strdup (origin ? origin : ""));
  if (e->klass != DIRECT)
    s->class_size[e->klass] += size;
  s->size += size;
  self->total_size += size;
  return TRUE;
}

/**
 * quark_checkpoint_writer_add_model:
 * @self: a #QuarkCheckpointWriter
 * @model: a model held in memory
 * @error: return location for a #GError
 *
 * Writes every tensor of @model, in order, and takes its metadata as the
 * checkpoint's `config.json`.
 *
 * Returns: %TRUE on success; %FALSE as quark_checkpoint_writer_add()
 */
gboolean
quark_checkpoint_writer_add_model (QuarkCheckpointWriter  *self,
                                   QuarkModel             *model,
                                   GError                **error)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_WRITER (self), FALSE);
  g_return_val_if_fail (QUARK_IS_MODEL (model), FALSE);

  for (guint i = 0; i < quark_model_get_n_tensors (model); i++)
    if (!quark_checkpoint_writer_add (self, quark_model_get_tensor_at (model, i), error))
      return FALSE;
  quark_checkpoint_writer_set_metadata (self, quark_model_get_metadata (model));
  return TRUE;
}

/**
 * quark_checkpoint_writer_add_file:
 * @self: a #QuarkCheckpointWriter
 * @name: (type filename): a file name without directories, such as
 *   `integers.json`
 * @contents: the file's bytes
 * @error: return location for a #GError
 *
 * Writes another file into the checkpoint, such as a description next to
 * the tensors. Names the writer uses itself (`*.safetensors`,
 * `model.safetensors.index.json`, `config.json`) are refused.
 *
 * Returns: %TRUE on success; %FALSE with %QUARK_ERROR_INVALID_ARGUMENT or
 *   %QUARK_ERROR_IO
 */
gboolean
quark_checkpoint_writer_add_file (QuarkCheckpointWriter  *self,
                                  const char             *name,
                                  GBytes                 *contents,
                                  GError                **error)
{
  g_autofree char *path = NULL;
  gconstpointer data;
  gsize size;
  int fd;
  gboolean ok;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_WRITER (self), FALSE);
  g_return_val_if_fail (name != NULL && contents != NULL, FALSE);
  g_return_val_if_fail (!self->done && self->tmp != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (*name == '\0' || *name == '.' || strchr (name, '/') || g_str_has_suffix (name, ".safetensors") ||
      g_str_equal (name, "model.safetensors.index.json") || g_str_equal (name, "config.json") ||
      g_str_has_prefix (name, "shard-"))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_ARGUMENT,
                   "%s: not a name the checkpoint writer can add a file under", name);
      return FALSE;
    }
  path = g_build_filename (self->tmp, name, NULL);
  fd = g_open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    {
      io_error (error, path, "cannot create", errno);
      return name_output (self, error);
    }
  data = g_bytes_get_data (contents, &size);
  ok = write_all (self, fd, data, size, path, error);
  ok = ok && flush_file (self, fd, path, error);
  if (close (fd) != 0 && ok)
    ok = io_error (error, path, "close failed", errno);
  return ok || name_output (self, error);
}

/**
 * quark_checkpoint_writer_set_metadata:
 * @self: a #QuarkCheckpointWriter
 * @metadata: (nullable): the content of `config.json`
 *
 * Sets what `config.json` holds (nothing is written for %NULL). The writer
 * keeps a copy of @metadata, or, when @metadata is sealed
 * (json_node_seal(), so that nobody can change it), a reference: a
 * backend that hands over a large description it will not touch again
 * seals it first and saves the copy.
 */
void
quark_checkpoint_writer_set_metadata (QuarkCheckpointWriter *self,
                                      JsonNode              *metadata)
{
  g_return_if_fail (QUARK_IS_CHECKPOINT_WRITER (self));
  g_clear_pointer (&self->metadata, json_node_unref);
  if (metadata)
    self->metadata = json_node_is_immutable (metadata) ? json_node_ref (metadata) : quark_json_copy (metadata);
}

gboolean
_quark_checkpoint_writer_has_metadata (QuarkCheckpointWriter *self)
{
  return self->metadata != NULL;
}

gboolean
_quark_checkpoint_writer_wait (QuarkCheckpointWriter  *self,
                               GError                **error)
{
  return wait_copies (self, error) || name_output (self, error);
}

void
_quark_checkpoint_writer_expect_tensors (QuarkCheckpointWriter *self,
                                         guint                  n_tensors,
                                         gsize                  name_bytes)
{
  /* an entry: "NAME":{"dtype":"XX","shape":[A,B,C,D],"data_offsets":[O,P]},
   * at most about 140 bytes beside the name */
  self->header_hint = 512 + (guint64) n_tensors * 160 + name_bytes;
}

/**
 * quark_checkpoint_writer_set_copy_from:
 * @self: a #QuarkCheckpointWriter
 * @model_directory: (nullable) (type filename): a model directory
 *
 * Names a directory whose other files (every regular file but the weights,
 * the index and `config.json`: tokenizer, generation config, …) are copied
 * unchanged into the output when it is finished.
 */
void
quark_checkpoint_writer_set_copy_from (QuarkCheckpointWriter *self,
                                       const char            *model_directory)
{
  g_return_if_fail (QUARK_IS_CHECKPOINT_WRITER (self));
  g_free (self->copy_from);
  self->copy_from = g_strdup (model_directory);
}

/**
 * quark_checkpoint_writer_set_durable:
 * @self: a #QuarkCheckpointWriter
 * @durable: whether the output is on the disk before it gets its name
 *
 * Sets whether quark_checkpoint_writer_finish() flushes every file it wrote
 * to the disk (`fsync`) before renaming the output into place, and the
 * directory holding the name after it. Durable, the default, a crash of the
 * system or a power failure after finish() returned leaves the complete
 * checkpoint or none; the write-back of each tensor starts as soon as it is
 * written, but on a disk finish() still waits until the disk has taken the
 * output, which can take longer than the quantization (a copy with `cp`
 * does not wait). Not durable, the output is complete or absent as long as
 * the system keeps running (a failed, cancelled or killed run still leaves
 * nothing at the output's name), and the disk takes it later; after a crash
 * of the system its files may be shorter than their headers say, which the
 * safetensors reader refuses. For outputs that are easily made again.
 * Set it before adding tensors.
 */
void
quark_checkpoint_writer_set_durable (QuarkCheckpointWriter *self,
                                     gboolean               durable)
{
  g_return_if_fail (QUARK_IS_CHECKPOINT_WRITER (self));
  self->durable = !!durable;
}

/**
 * quark_checkpoint_writer_get_durable:
 * @self: a #QuarkCheckpointWriter
 *
 * Gets whether the output is flushed to the disk before it is renamed into
 * place (quark_checkpoint_writer_set_durable()).
 *
 * Returns: %TRUE when durable (the default)
 */
gboolean
quark_checkpoint_writer_get_durable (QuarkCheckpointWriter *self)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_WRITER (self), TRUE);
  return self->durable;
}

/**
 * quark_checkpoint_writer_get_bytes_written:
 * @self: a #QuarkCheckpointWriter
 *
 * Gets how much tensor data was written so far.
 *
 * Returns: the bytes of tensor data written so far
 */
guint64
quark_checkpoint_writer_get_bytes_written (QuarkCheckpointWriter *self)
{
  g_return_val_if_fail (QUARK_IS_CHECKPOINT_WRITER (self), 0);
  return self->total_size;
}

/**
 * quark_checkpoint_writer_get_skipped_files:
 * @self: a #QuarkCheckpointWriter
 *
 * Lists the entries of the set_copy_from() directory that
 * quark_checkpoint_writer_finish() did not copy because they are not
 * regular files (directories, FIFOs, devices, broken links), each as
 * `name: what it is`. The weights, the index and `config.json` are not
 * listed: the writer writes its own.
 *
 * Returns: (transfer full): the entries, possibly none
 */
char **
quark_checkpoint_writer_get_skipped_files (QuarkCheckpointWriter *self)
{
  GStrvBuilder *builder;
  char **result;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_WRITER (self), NULL);
  builder = g_strv_builder_new ();
  for (guint i = 0; i < self->skipped->len; i++)
    g_strv_builder_add (builder, g_ptr_array_index (self->skipped, i));
  result = g_strv_builder_end (builder);
  g_strv_builder_unref (builder);
  return result;
}

/* Copies the content of @from_path (a regular file, or a link to one) to a
 * new file @to_path through append_file(). */
static gboolean
copy_file (QuarkCheckpointWriter *self, const char *from_path, const char *to_path, GError **error)
{
  struct stat st;
  int from_fd, to_fd;
  gboolean ok;

  from_fd = _quark_input_open (from_path, &st, error);
  if (from_fd < 0)
    return FALSE;
  to_fd = g_open (to_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (to_fd < 0)
    {
      int saved = errno;
      close (from_fd);
      return io_error (error, to_path, "cannot create", saved);
    }
  ok = append_file (self, to_fd, to_path, from_fd, from_path, (guint64) st.st_size, error) &&
       flush_file (self, to_fd, to_path, error);
  close (from_fd);
  if (close (to_fd) != 0 && ok)
    ok = io_error (error, to_path, "close failed", errno);
  return ok;
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

/* Every other file of the input directory, as regular files: the target of
 * a symbolic link (as in Hugging Face cache snapshots, where every file is
 * a link to a blob) is copied as content, never as a link. */
static gboolean
copy_extra_files (QuarkCheckpointWriter *self, GError **error)
{
  g_autoptr(GDir) dir = NULL;
  g_autoptr(GError) local_error = NULL;
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *name;

  dir = g_dir_open (self->copy_from, 0, &local_error);
  if (dir == NULL)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s", local_error->message);
      return FALSE;
    }
  while ((name = g_dir_read_name (dir)) != NULL)
    g_ptr_array_add (names, g_strdup (name));
  g_ptr_array_sort (names, compare_names);
  g_ptr_array_set_size (self->skipped, 0);
  for (guint i = 0; i < names->len; i++)
    {
      g_autofree char *src = NULL, *dst = NULL;
      const char *kind;

      name = g_ptr_array_index (names, i);
      if (g_str_has_suffix (name, ".safetensors") || g_str_equal (name, "model.safetensors.index.json") ||
          g_str_equal (name, "config.json"))
        continue;
      src = g_build_filename (self->copy_from, name, NULL);
      dst = g_build_filename (self->tmp, name, NULL);
      if (!_quark_input_is_regular (src, &kind))
        {
          g_ptr_array_add (self->skipped, g_strdup_printf ("%s: %s", name,
                                                            g_str_equal (kind, "missing") ? "a broken link" : kind));
          continue;
        }
      if (!copy_file (self, src, dst, error))
        return FALSE;
    }
  return TRUE;
}

typedef struct
{
  QuarkCheckpointWriter *self;
  int fd;
  const char *path;
  GError **error;
} JsonFile;

static gboolean
json_file_write (const char *text, gsize len, gpointer user_data)
{
  JsonFile *f = user_data;

  return write_all (f->self, f->fd, text, len, f->path, f->error);
}

/* @node as indented JSON and a newline, written a piece at a time */
static gboolean
write_json_file (QuarkCheckpointWriter *self, const char *path, JsonNode *node, GError **error)
{
  JsonFile f = { self, -1, path, error };
  gboolean ok;

  f.fd = g_open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (f.fd < 0)
    return io_error (error, path, "cannot create", errno);
  ok = _quark_json_write (node, TRUE, json_file_write, &f) && write_all (self, f.fd, "\n", 1, path, error);
  ok = ok && flush_file (self, f.fd, path, error);
  if (close (f.fd) != 0 && ok)
    ok = io_error (error, path, "close failed", errno);
  return ok;
}

/* The file name of shard @i of @n. */
static char *
shard_file_name (guint i, guint n)
{
  return n == 1 ? g_strdup ("model.safetensors") : g_strdup_printf ("model-%05u-of-%05u.safetensors", i + 1, n);
}

/* The writer's own invariants, checked on what is on disk before it is
 * committed: every shard reads back under the reader's rules (a strict
 * header, unique names, tensors contiguous from 0, sizes equal to shape
 * times element size, the file size the header describes), and every
 * tensor added is in exactly one shard. */
static gboolean
verify_output (QuarkCheckpointWriter *self, GError **error)
{
  g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  guint n = self->shards->len;

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *name = shard_file_name (i, n);
      g_autofree char *path = g_build_filename (self->tmp, name, NULL);
      g_autoptr(QuarkInputFile) file = NULL;
      g_autoptr(GBytes) bytes = NULL;
      g_autoptr(GPtrArray) tensors = g_ptr_array_new_with_free_func (g_free);
      g_autoptr(GError) local_error = NULL;
      Shard *s = g_ptr_array_index (self->shards, i);

      /* the reader's checks, without making the tensors */
      file = _quark_input_file_map (path, &bytes, &local_error);
      if (file == NULL || !_quark_safetensors_read_names (bytes, name, tensors, &local_error))
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED,
                       "%s: the checkpoint written does not read back, so it was not committed: %s",
                       self->directory, local_error->message);
          return FALSE;
        }
      if (tensors->len != s->entries->len)
        {
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED,
                       "%s: %s holds %u tensors, but %u were written to it; not committed", self->directory, name,
                       tensors->len, s->entries->len);
          return FALSE;
        }
      for (guint t = 0; t < tensors->len; t++)
        {
          const char *tensor = g_ptr_array_index (tensors, t);
          if (!g_hash_table_add (seen, g_strdup (tensor)) || !g_hash_table_contains (self->names, tensor))
            {
              g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED,
                           "%s: tensor %s is in the checkpoint %s; not committed", self->directory, tensor,
                           g_hash_table_contains (self->names, tensor) ? "twice" : "but was never written");
              return FALSE;
            }
        }
    }
  if (g_hash_table_size (seen) != g_hash_table_size (self->names))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_FAILED, "%s: %u tensors were written, %u are in the checkpoint; "
                   "not committed", self->directory, g_hash_table_size (self->names), g_hash_table_size (seen));
      return FALSE;
    }
  return TRUE;
}

/* Moves the finished checkpoint to its name. An existing output (only with
 * overwrite) is exchanged with it atomically, so that the old one ends in
 * the temporary directory, removed with it; a link is exchanged as a link. */
static gboolean
commit (QuarkCheckpointWriter *self, GError **error)
{
  struct stat st;
  gboolean exists = lstat (self->directory, &st) == 0;

  if (exists && !self->overwrite)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_EXISTS, "%s: already exists (overwrite it explicitly)",
                   self->directory);
      return FALSE;
    }
  if (renameat2 (AT_FDCWD, self->tmp, AT_FDCWD, self->directory, exists ? RENAME_EXCHANGE : RENAME_NOREPLACE) == 0)
    return TRUE;
  if (errno == EEXIST)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_EXISTS, "%s: already exists (it appeared while this ran)",
                   self->directory);
      return FALSE;
    }
  if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
    return io_error (error, self->directory, "cannot rename the output into place", errno);

  /* a file system without exchange: the old output aside into the
   * temporary directory, then the new one in */
  if (exists)
    {
      g_autofree char *old = g_build_filename (self->work, "old", NULL);
      if (g_rename (self->directory, old) != 0)
        return io_error (error, self->directory, "cannot move the old output aside", errno);
      if (g_rename (self->tmp, self->directory) != 0)
        {
          int saved = errno;
          g_rename (old, self->directory);
          return io_error (error, self->directory, "cannot rename the output into place", saved);
        }
      return TRUE;
    }
  if (g_rename (self->tmp, self->directory) != 0)
    return io_error (error, self->directory, "cannot rename the output into place", errno);
  return TRUE;
}

/**
 * quark_checkpoint_writer_finish:
 * @self: a #QuarkCheckpointWriter
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Finishes the last shard, names the shards (`model.safetensors`, or
 * `model-0000i-of-0000n.safetensors` with `model.safetensors.index.json`),
 * writes `config.json` and the copied files, checks that every shard reads
 * back with every tensor written exactly once, and renames the directory
 * into place (replacing an existing output when the writer was made to
 * overwrite). On failure the temporary directory is removed and nothing is
 * left at the output's name that was not there before.
 *
 * Returns: %TRUE on success; %FALSE with %QUARK_ERROR_IO,
 *   %QUARK_ERROR_EXISTS, %G_IO_ERROR_CANCELLED, or %QUARK_ERROR_FAILED when the written
 *   checkpoint breaks the writer's own invariants
 */
gboolean
quark_checkpoint_writer_finish (QuarkCheckpointWriter  *self,
                                GCancellable           *cancellable,
                                GError                **error)
{
  g_autoptr(JsonObject) weight_map = json_object_new ();
  gboolean ok = TRUE;
  guint n;

  g_return_val_if_fail (QUARK_IS_CHECKPOINT_WRITER (self), FALSE);
  g_return_val_if_fail (!self->done && self->tmp != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (self->shards->len == 0)
    new_shard (self);
  ok = close_shard (self, current_shard (self), self->shards->len - 1, error);
  n = self->shards->len;
  for (guint i = 0; ok && i < n; i++)
    {
      Shard *s = g_ptr_array_index (self->shards, i);
      g_autofree char *name = shard_file_name (i, n);
      g_autofree char *path = g_build_filename (self->tmp, name, NULL);
      for (guint e = 0; e < s->entries->len; e++)
        json_object_set_string_member (weight_map, ((Entry *) g_ptr_array_index (s->entries, e))->name, name);
      if (g_rename (s->part_path, path) != 0)
        ok = io_error (error, path, "cannot rename", errno);
    }
  if (ok && n > 1)
    {
      g_autofree char *index_path = g_build_filename (self->tmp, "model.safetensors.index.json", NULL);
      JsonObject *index = json_object_new ();
      JsonObject *metadata = json_object_new ();
      JsonNode *node;
      json_object_set_int_member (metadata, "total_size", (gint64) self->total_size);
      json_object_set_object_member (index, "metadata", metadata);
      json_object_set_object_member (index, "weight_map", json_object_ref (weight_map));
      node = json_node_init_object (json_node_alloc (), index);
      ok = write_json_file (self, index_path, node, error);
      json_node_unref (node);
      json_object_unref (index);
    }
  if (ok && self->metadata)
    {
      g_autofree char *config_path = g_build_filename (self->tmp, "config.json", NULL);
      ok = write_json_file (self, config_path, self->metadata, error);
    }
  if (ok && self->copy_from)
    ok = copy_extra_files (self, error);
  if (ok)
    ok = verify_output (self, error);
  if (ok && g_cancellable_is_cancelled (cancellable))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "Operation was cancelled");
      ok = FALSE;
    }

  /* into place, only when complete */
  if (ok && (ok = commit (self, error)) && self->durable)
    _quark_output_sync_directory (self->parent);   /* the rename itself, durable */
  self->done = TRUE;
  if (!ok)
    name_output (self, error);
  quark_checkpoint_writer_abort (self);   /* the temporary directory, and the old output in it */
  return ok;
}

/**
 * quark_checkpoint_writer_abort:
 * @self: a #QuarkCheckpointWriter
 *
 * Gives up: removes everything written so far. Dropping an unfinished
 * writer does the same.
 */
void
quark_checkpoint_writer_abort (QuarkCheckpointWriter *self)
{
  g_return_if_fail (QUARK_IS_CHECKPOINT_WRITER (self));

  self->done = TRUE;
  wait_copies (self, NULL);                 /* nothing writes into them any more */
  g_ptr_array_set_size (self->shards, 0);   /* closes the data files */
  g_clear_pointer (&self->tmp, g_free);
  if (self->work)
    {
      remove_path (self->work);
      g_clear_pointer (&self->work, g_free);
    }
  if (self->lock_fd >= 0)
    {
      close (self->lock_fd);
      self->lock_fd = -1;
    }
}
