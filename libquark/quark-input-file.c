/* quark-input-file.c: reading input files safely
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Every file libquark reads goes through here, so that the rules of
 * docs/guarantees.md hold in one place: only regular files are read (a
 * FIFO or a device given as a model or a config would block or stream
 * forever), JSON inputs have a size limit checked before reading, and a
 * file that shrinks while it is mapped does not kill the process.
 *
 * The last one needs a signal handler. Reading a page of a shared file
 * mapping past the file's end raises SIGBUS. The handler installed here
 * looks the faulting address up in a table of the mappings libquark made;
 * when it is one of them, it maps anonymous zero pages over the rest of
 * that mapping, marks it damaged and returns, so the access is retried and
 * reads zeros. The work in progress then completes with garbage, and
 * _quark_input_file_check() — which every quantization runs before its
 * output is committed — turns the damage into an error. Faults at other
 * addresses go to the handler that was installed before.
 */
#define _GNU_SOURCE 1
#include "config.h"

#include "quark-input-file-private.h"
#include "quark-error.h"
#include "quark-json.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <glib/gstdio.h>

static const char *
file_kind (mode_t mode)
{
  if (S_ISDIR (mode))
    return "a directory";
  if (S_ISFIFO (mode))
    return "a FIFO";
  if (S_ISCHR (mode))
    return "a character device";
  if (S_ISBLK (mode))
    return "a block device";
  if (S_ISSOCK (mode))
    return "a socket";
  return "not a regular file";
}

gboolean
_quark_input_is_regular (const char *path, const char **kind)
{
  struct stat st;

  if (stat (path, &st) != 0)
    {
      if (kind)
        *kind = errno == ENOENT ? "missing" : "unreadable";
      return FALSE;
    }
  if (kind)
    *kind = S_ISREG (st.st_mode) ? "a regular file" : file_kind (st.st_mode);
  return S_ISREG (st.st_mode);
}

int
_quark_input_open (const char *path, struct stat *st, GError **error)
{
  int fd, flags;

  /* O_NONBLOCK: opening a FIFO does not wait for a writer */
  fd = g_open (path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0);
  if (fd < 0)
    {
      int saved = errno;
      if (saved == ENOENT || saved == ENOTDIR)
        g_set_error (error, QUARK_ERROR, QUARK_ERROR_NOT_FOUND, "%s: no such file or directory", path);
      else
        g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: cannot open: %s", path, g_strerror (saved));
      return -1;
    }
  if (fstat (fd, st) != 0)
    {
      int saved = errno;
      close (fd);
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: cannot read: %s", path, g_strerror (saved));
      return -1;
    }
  if (!S_ISREG (st->st_mode))
    {
      close (fd);
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: is %s, not a regular file", path,
                   file_kind (st->st_mode));
      return -1;
    }
  flags = fcntl (fd, F_GETFL);
  if (flags >= 0)
    fcntl (fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

char *
_quark_input_read (const char *path, gsize max_size, const char *what, gsize *length, GError **error)
{
  struct stat st;
  g_autofree char *buffer = NULL;
  gsize done = 0, size;
  int fd;

  fd = _quark_input_open (path, &st, error);
  if (fd < 0)
    return NULL;
  if ((guint64) st.st_size > max_size)
    {
      close (fd);
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_INVALID_FILE,
                   "%s: %" G_GUINT64_FORMAT " bytes, more than the limit of %" G_GSIZE_FORMAT
                   " bytes for %s", path, (guint64) st.st_size, max_size, what);
      return NULL;
    }
  size = (gsize) st.st_size;
  buffer = g_malloc (size + 1);
  /* read at most the size seen, and one byte more to notice growth */
  while (done <= size)
    {
      gssize n = read (fd, buffer + done, size + 1 - done);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          int saved = errno;
          close (fd);
          g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: read failed: %s", path, g_strerror (saved));
          return NULL;
        }
      if (n == 0)
        break;
      done += (gsize) n;
    }
  close (fd);
  if (done != size)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: the file changed while it was being read", path);
      return NULL;
    }
  buffer[size] = '\0';
  if (length)
    *length = size;
  return g_steal_pointer (&buffer);
}

JsonNode *
_quark_input_read_json (const char *path, gsize max_size, const char *what, GError **error)
{
  g_autofree char *text = NULL;
  gsize length;

  text = _quark_input_read (path, max_size, what, &length, error);
  if (text == NULL)
    return NULL;
  return quark_json_parse (text, (gssize) length, path, error);
}

/* ---- guarded mappings --------------------------------------------------------- */

#define GUARD_SLOTS 4096

typedef struct {
  int used;                /* claimed by a mapping (atomic) */
  uintptr_t base;          /* 0 while not published (atomic) */
  size_t length;           /* whole pages */
  volatile sig_atomic_t damaged;
} GuardSlot;

static GuardSlot guard_slots[GUARD_SLOTS];
static struct sigaction previous_sigbus;
static size_t page_size;

static void
on_sigbus (int sig, siginfo_t *info, void *context)
{
  uintptr_t address = (uintptr_t) info->si_addr;

  for (guint i = 0; i < GUARD_SLOTS; i++)
    {
      uintptr_t base = __atomic_load_n (&guard_slots[i].base, __ATOMIC_ACQUIRE);
      if (base != 0 && address >= base && address - base < guard_slots[i].length)
        {
          uintptr_t page = address & ~(uintptr_t) (page_size - 1);
          void *p = mmap ((void *) page, base + guard_slots[i].length - page, PROT_READ,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
          if (p != MAP_FAILED)
            {
              guard_slots[i].damaged = 1;
              return;
            }
          break;
        }
    }
  /* not ours: as if this handler had never been installed */
  if ((previous_sigbus.sa_flags & SA_SIGINFO) && previous_sigbus.sa_sigaction != NULL)
    previous_sigbus.sa_sigaction (sig, info, context);
  else if (previous_sigbus.sa_handler == SIG_DFL || previous_sigbus.sa_handler == SIG_IGN)
    sigaction (SIGBUS, &previous_sigbus, NULL);   /* the access faults again, fatally */
  else
    previous_sigbus.sa_handler (sig);
}

static gpointer
install_handler (gpointer data)
{
  struct sigaction sa;

  page_size = (size_t) sysconf (_SC_PAGESIZE);
  memset (&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset (&sa.sa_mask);
  sigaction (SIGBUS, &sa, &previous_sigbus);
  return NULL;
}

struct _QuarkInputFile
{
  gint ref_count;
  char *path;
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
  int slot;                  /* the guard slot while mapped, else -1 */
  gboolean damaged;          /* kept when the mapping is gone */
  int fd;                    /* open while mapped, for _quark_input_file_read(), or -1 */
};

QuarkInputFile *
_quark_input_file_ref (QuarkInputFile *self)
{
  g_atomic_int_inc (&self->ref_count);
  return self;
}

void
_quark_input_file_unref (QuarkInputFile *self)
{
  if (self && g_atomic_int_dec_and_test (&self->ref_count))
    {
      if (self->fd >= 0)
        close (self->fd);
      g_free (self->path);
      g_free (self);
    }
}

const char *
_quark_input_file_get_path (QuarkInputFile *self)
{
  return self->path;
}

typedef struct {
  QuarkInputFile *file;
  void *address;
  size_t length;
} Mapping;

static void
mapping_free (gpointer data)
{
  Mapping *m = data;
  GuardSlot *slot = &guard_slots[m->file->slot];

  __atomic_store_n (&slot->base, 0, __ATOMIC_RELEASE);
  if (slot->damaged)
    m->file->damaged = TRUE;
  munmap (m->address, m->length);
  slot->damaged = 0;
  m->file->slot = -1;
  __atomic_store_n (&slot->used, 0, __ATOMIC_RELEASE);
  _quark_input_file_unref (m->file);
  g_free (m);
}

static gboolean
damaged (QuarkInputFile *self)
{
  return self->damaged || (self->slot >= 0 && guard_slots[self->slot].damaged);
}

QuarkInputFile *
_quark_input_file_map (const char *path, GBytes **contents, GError **error)
{
  static GOnce once = G_ONCE_INIT;
  g_autoptr(QuarkInputFile) self = NULL;
  struct stat st;
  Mapping *m;
  void *address;
  int fd, slot = -1;

  g_once (&once, install_handler, NULL);
  fd = _quark_input_open (path, &st, error);
  if (fd < 0)
    return NULL;
  self = g_new0 (QuarkInputFile, 1);
  self->ref_count = 1;
  self->path = g_strdup (path);
  self->dev = st.st_dev;
  self->ino = st.st_ino;
  self->size = st.st_size;
  self->mtime = st.st_mtim;
  self->slot = -1;
  self->fd = -1;
  if (st.st_size == 0)
    {
      close (fd);
      *contents = g_bytes_new_static ("", 0);
      return g_steal_pointer (&self);
    }
  if ((guint64) st.st_size > G_MAXSIZE)
    {
      close (fd);
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: too large to map", path);
      return NULL;
    }
  for (int i = 0; i < GUARD_SLOTS && slot < 0; i++)
    {
      int expected = 0;
      if (__atomic_compare_exchange_n (&guard_slots[i].used, &expected, 1, FALSE, __ATOMIC_ACQ_REL,
                                       __ATOMIC_RELAXED))
        slot = i;
    }
  if (slot < 0)
    {
      close (fd);
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: more than %d files mapped at once", path, GUARD_SLOTS);
      return NULL;
    }
  address = mmap (NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (address == MAP_FAILED)
    {
      int saved = errno;
      close (fd);
      __atomic_store_n (&guard_slots[slot].used, 0, __ATOMIC_RELEASE);
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: cannot map: %s", path, g_strerror (saved));
      return NULL;
    }
  self->fd = fd;   /* kept for reads that leave the mapping alone */
  guard_slots[slot].damaged = 0;
  guard_slots[slot].length = ((size_t) st.st_size + page_size - 1) & ~(page_size - 1);
  __atomic_store_n (&guard_slots[slot].base, (uintptr_t) address, __ATOMIC_RELEASE);
  self->slot = slot;

  m = g_new0 (Mapping, 1);
  m->file = _quark_input_file_ref (self);
  m->address = address;
  m->length = (size_t) st.st_size;
  *contents = g_bytes_new_with_free_func (address, (gsize) st.st_size, mapping_free, m);
  return g_steal_pointer (&self);
}

gboolean
_quark_input_file_read (QuarkInputFile *self, guint64 offset, gpointer buffer, gsize size, GError **error)
{
  guint8 *p = buffer;

  while (size > 0)
    {
      gssize n = pread (self->fd, p, MIN (size, (gsize) 1 << 30), (off_t) offset);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          int saved = errno;
          if (n < 0)
            g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: read failed: %s", self->path, g_strerror (saved));
          else
            g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO,
                         "%s: the file shrank while it was being read (from %" G_GUINT64_FORMAT " bytes)",
                         self->path, (guint64) self->size);
          return FALSE;
        }
      p += n;
      offset += (guint64) n;
      size -= (gsize) n;
    }
  return TRUE;
}

int
_quark_input_file_get_fd (QuarkInputFile *self)
{
  return self->fd;
}

gboolean
_quark_input_file_check (QuarkInputFile *self, GError **error)
{
  struct stat st;

  if (damaged (self))
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO,
                   "%s: the file shrank while it was being read (from %" G_GUINT64_FORMAT " bytes)",
                   self->path, (guint64) self->size);
      return FALSE;
    }
  if (stat (self->path, &st) != 0)
    {
      int saved = errno;
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: the file went away while it was being read: %s",
                   self->path, g_strerror (saved));
      return FALSE;
    }
  if (st.st_dev != self->dev || st.st_ino != self->ino)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO, "%s: the file was replaced while it was being read",
                   self->path);
      return FALSE;
    }
  if (st.st_size != self->size)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO,
                   "%s: the file changed size while it was being read (%" G_GUINT64_FORMAT " bytes, then %"
                   G_GUINT64_FORMAT ")", self->path, (guint64) self->size, (guint64) st.st_size);
      return FALSE;
    }
  if (st.st_mtim.tv_sec != self->mtime.tv_sec || st.st_mtim.tv_nsec != self->mtime.tv_nsec)
    {
      g_set_error (error, QUARK_ERROR, QUARK_ERROR_IO,
                   "%s: the file was modified while it was being read", self->path);
      return FALSE;
    }
  return TRUE;
}
