/* A preload for tests: notes every fsync() and sync_file_range() the
 * program makes, one line each ("fsync" or "sync_file_range"), in the file
 * named by QUARK_TEST_SYNC_LOG, then makes the call. test_durability.py
 * runs `quark quantize` under it to see that an output is flushed to the
 * disk before it gets its name, and that --no-sync does not wait for it.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXPORT __attribute__ ((visibility ("default")))

static void
note (const char *line)
{
  const char *path = getenv ("QUARK_TEST_SYNC_LOG");
  int saved = errno, fd;

  if (path == NULL || *path == '\0')
    return;
  fd = open (path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0)
    {
      /* one short write with O_APPEND: lines from several threads do not mix */
      if (write (fd, line, strlen (line)) < 0)
        abort ();
      close (fd);
    }
  errno = saved;
}

EXPORT int
fsync (int fd)
{
  int (*real) (int) = (int (*) (int)) dlsym (RTLD_NEXT, "fsync");

  note ("fsync\n");
  return real (fd);
}

EXPORT int
sync_file_range (int fd, off64_t offset, off64_t nbytes, unsigned int flags)
{
  int (*real) (int, off64_t, off64_t, unsigned int) =
    (int (*) (int, off64_t, off64_t, unsigned int)) dlsym (RTLD_NEXT, "sync_file_range");

  note ("sync_file_range\n");
  return real (fd, offset, nbytes, flags);
}
