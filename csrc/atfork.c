/*
 * atfork.c - fork safety. gunicorn and RQ fork worker processes from a parent
 * that may already hold clients, tokens and open connections.
 *
 * Every object that owns a pthread lock registers a hook. Around fork() the
 * forking thread takes every registered lock (prepare), so no lock can be caught
 * half-held by a thread that does not exist in the child; the parent then
 * releases them, and the child releases them and marks its connections stale,
 * so a child never writes to a socket it shares with its parent.
 */
#include "daraja.h"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t registry_once = PTHREAD_ONCE_INIT;
static AfHook *registry;
static int registry_ok;

/* Run every hook's prepare, in registration order; keeps the registry locked. */
static void
on_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
    for (AfHook *h = registry; h != NULL; h = h->next) {
        h->prepare(h->arg);
    }
}

/* Run every hook's parent handler, in reverse order, and unlock the registry. */
static void
on_parent(void)
{
    AfHook *last = registry;
    while (last != NULL && last->next != NULL) {
        last = last->next;
    }
    for (AfHook *h = last; h != NULL; h = h->prev) {
        h->parent(h->arg);
    }
    pthread_mutex_unlock(&registry_lock);
}

/* As on_parent, with the child handlers. */
static void
on_child(void)
{
    AfHook *last = registry;
    while (last != NULL && last->next != NULL) {
        last = last->next;
    }
    for (AfHook *h = last; h != NULL; h = h->prev) {
        h->child(h->arg);
    }
    pthread_mutex_unlock(&registry_lock);
}

static void
install_handlers(void)
{
    registry_ok = pthread_atfork(on_prepare, on_parent, on_child) == 0;
}

int
af_register(AfHook *hook)
{
    pthread_once(&registry_once, install_handlers);
    if (!registry_ok) {
        PyErr_SetString(PyExc_RuntimeError, "cannot install fork handlers");
        return -1;
    }
    pthread_mutex_lock(&registry_lock);
    hook->prev = NULL;
    hook->next = registry;
    if (registry != NULL) {
        registry->prev = hook;
    }
    registry = hook;
    pthread_mutex_unlock(&registry_lock);
    return 0;
}

void
af_unregister(AfHook *hook)
{
    pthread_mutex_lock(&registry_lock);
    if (hook->prev != NULL) {
        hook->prev->next = hook->next;
    }
    else if (registry == hook) {
        registry = hook->next;
    }
    if (hook->next != NULL) {
        hook->next->prev = hook->prev;
    }
    hook->prev = hook->next = NULL;
    pthread_mutex_unlock(&registry_lock);
}
