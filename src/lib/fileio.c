/* fileio: see include/berth/fileio.h. */
#include "berth/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

FILE *fileio_open_regular(const char *path)
{
	/* O_NONBLOCK so that opening a FIFO cannot hang before the check. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		errno = EINVAL;
		return NULL;
	}
	FILE *f = fdopen(fd, "r");
	if (!f) {
		int e = errno;
		close(fd);
		errno = e;
	}
	return f;
}

const char *fileio_strerror(int err)
{
	return err == EINVAL ? "not a regular file" : strerror(err);
}
