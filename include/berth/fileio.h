/*
 * fileio: opening the files berth reads whole (configs, catalogs, hosts and
 * resolv.conf files).  A FIFO would block and a device such as /dev/zero
 * would never end, so only regular files are opened.
 */
#ifndef BERTH_FILEIO_H
#define BERTH_FILEIO_H

#include <stdio.h>

/*
 * Open path for reading when it is a regular file.  Returns the stream
 * (caller fcloses) or NULL with errno set: EINVAL when path is not a
 * regular file, else open()'s error.
 */
FILE *fileio_open_regular(const char *path);

/* strerror() for fileio_open_regular()'s errno: EINVAL reads "not a
 * regular file". */
const char *fileio_strerror(int err);

#endif
