#ifndef LODESTONE_THREADS_H
#define LODESTONE_THREADS_H

/// Names the calling thread (at most 15 bytes are kept); 0 or an errno value.
int lodestone_set_thread_name(const char *name);

/// Lowers (positive) or raises the calling thread's scheduling priority; Linux keeps a
/// niceness per thread. 0, or -1 with errno set.
int lodestone_set_thread_niceness(int niceness);

/// The calling thread's current niceness.
int lodestone_thread_niceness(void);

#endif
