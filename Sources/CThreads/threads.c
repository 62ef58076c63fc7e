// Thread names and priorities: glibc declares these only with _GNU_SOURCE, which Swift's
// Glibc module does not set.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "lodestone_threads.h"

int lodestone_set_thread_name(const char *name) {
    char shortened[16];
    strncpy(shortened, name, sizeof shortened - 1);
    shortened[sizeof shortened - 1] = 0;
    return pthread_setname_np(pthread_self(), shortened);
}

int lodestone_set_thread_niceness(int niceness) {
    return setpriority(PRIO_PROCESS, (id_t)gettid(), niceness);
}

int lodestone_thread_niceness(void) {
    errno = 0;
    return getpriority(PRIO_PROCESS, (id_t)gettid());
}
