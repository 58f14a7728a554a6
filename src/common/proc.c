/* Closing inherited descriptors in a forked child (see proc.h). */
#include "common/proc.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

void syn_close_inherited_fds(void)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0) return;
#endif
    /* kernels before 5.9: every descriptor the limit allows (getrlimit is a plain syscall) */
    struct rlimit rl;
    int max = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 1048576)
        max = (int)rl.rlim_cur;
    for (int fd = 3; fd < max; fd++) close(fd);
}
