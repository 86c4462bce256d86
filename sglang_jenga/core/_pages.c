/* The two-level allocator's bookkeeping (allocator.py has the model, the docstrings and the integrity checks).

   Pool: large pages 0..total-1; `free` is a stack (the next large page handed out is free[nfree - 1]) and
   carver[lp] the index of the type that carved lp (-1: free).

   Pages (one per type, k small pages per large page; small page p lies in large page p / k):
     used[p]         1 while p is allocated (a bytearray, readable from Python as `used_flags`)
     stack of lp     its free slots, stack[lp * k + i] for i < nslots[lp], top last; it exists (`listed[lp]`)
                     exactly for carved large pages that have free slots or are some owner's open page
     holes           ordered set: carved, not open, with free slots (filled first, oldest first)
     open_avail      ordered set: open, with free slots
     open            owner -> its open large page (a hash table; owners are ints); opener[lp] the owner while
                     is_open[lp]

   Every operation is the one allocator.py describes; the per-page loops are plain C loops. Page ids go in and out
   as Python lists of ints (one int object per page id, kept: page_list). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h> /* PyMemberDef, T_*, READONLY (Python 3.11) */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static PyObject *OutOfPages = NULL; /* allocator.OutOfPagesError, set at import (set_out_of_pages_error) */

/* ------------------------------------------------------------------------------------------ ordered sets */
typedef struct {
    int64_t *prev, *next;
    uint8_t *in;
    int64_t head, tail;
    Py_ssize_t len;
} OrderedSet; /* insertion-ordered set of large pages (a Python dict's key order): add appends if absent */

static int oset_init(OrderedSet *s, Py_ssize_t n) {
    s->prev = PyMem_Calloc(n ? n : 1, sizeof(int64_t));
    s->next = PyMem_Calloc(n ? n : 1, sizeof(int64_t));
    s->in = PyMem_Calloc(n ? n : 1, 1);
    s->head = s->tail = -1;
    s->len = 0;
    return s->prev && s->next && s->in ? 0 : -1;
}

static void oset_free(OrderedSet *s) {
    PyMem_Free(s->prev);
    PyMem_Free(s->next);
    PyMem_Free(s->in);
}

static void oset_add(OrderedSet *s, int64_t x) {
    if (s->in[x]) return;
    s->in[x] = 1;
    s->prev[x] = s->tail;
    s->next[x] = -1;
    if (s->tail >= 0) s->next[s->tail] = x; else s->head = x;
    s->tail = x;
    s->len++;
}

static void oset_remove(OrderedSet *s, int64_t x) {
    if (!s->in[x]) return;
    s->in[x] = 0;
    if (s->prev[x] >= 0) s->next[s->prev[x]] = s->next[x]; else s->head = s->next[x];
    if (s->next[x] >= 0) s->prev[s->next[x]] = s->prev[x]; else s->tail = s->prev[x];
    s->len--;
}

static PyObject *oset_list(OrderedSet *s) {
    PyObject *out = PyList_New(0);
    for (int64_t x = s->head; out && x >= 0; x = s->next[x]) {
        PyObject *v = PyLong_FromLongLong(x);
        if (!v || PyList_Append(out, v) < 0) { Py_XDECREF(v); Py_CLEAR(out); break; }
        Py_DECREF(v);
    }
    return out;
}

/* ------------------------------------------------------------------------------------------ owner map */
typedef struct {
    int64_t *keys, *vals;
    uint8_t *full;
    Py_ssize_t cap, len; /* cap a power of two, len <= cap / 2 */
} OwnerMap; /* int64 owner -> int64 large page, open addressing with linear probing */

static int omap_init(OwnerMap *m, Py_ssize_t cap) {
    m->keys = PyMem_Calloc(cap, sizeof(int64_t));
    m->vals = PyMem_Calloc(cap, sizeof(int64_t));
    m->full = PyMem_Calloc(cap, 1);
    m->cap = cap;
    m->len = 0;
    return m->keys && m->vals && m->full ? 0 : -1;
}

static void omap_free(OwnerMap *m) {
    PyMem_Free(m->keys);
    PyMem_Free(m->vals);
    PyMem_Free(m->full);
}

static inline Py_ssize_t omap_home(const OwnerMap *m, int64_t key) { /* the slot key's probe starts at */
    return (Py_ssize_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> 32) & (m->cap - 1);
}

static inline Py_ssize_t omap_slot(const OwnerMap *m, int64_t key) { /* key's slot, or the empty one it would take */
    Py_ssize_t i = omap_home(m, key);
    while (m->full[i] && m->keys[i] != key) i = (i + 1) & (m->cap - 1);
    return i;
}

static int64_t omap_get(const OwnerMap *m, int64_t key) { /* -1: absent */
    Py_ssize_t i = omap_slot(m, key);
    return m->full[i] ? m->vals[i] : -1;
}

static int omap_set(OwnerMap *m, int64_t key, int64_t val) {
    if (2 * (m->len + 1) > m->cap) {
        OwnerMap bigger;
        if (omap_init(&bigger, 2 * m->cap) < 0) { PyErr_NoMemory(); return -1; }
        for (Py_ssize_t j = 0; j < m->cap; j++) {
            if (!m->full[j]) continue;
            Py_ssize_t i = omap_slot(&bigger, m->keys[j]);
            bigger.full[i] = 1, bigger.keys[i] = m->keys[j], bigger.vals[i] = m->vals[j];
        }
        bigger.len = m->len;
        omap_free(m);
        *m = bigger;
    }
    Py_ssize_t i = omap_slot(m, key);
    if (!m->full[i]) m->full[i] = 1, m->keys[i] = key, m->len++;
    m->vals[i] = val;
    return 0;
}

static void omap_del(OwnerMap *m, int64_t key) { /* backward-shift deletion: no tombstones */
    Py_ssize_t i = omap_slot(m, key), mask = m->cap - 1;
    if (!m->full[i]) return;
    m->full[i] = 0;
    m->len--;
    for (Py_ssize_t j = (i + 1) & mask; m->full[j]; j = (j + 1) & mask) {
        Py_ssize_t home = omap_home(m, m->keys[j]);
        if (((j - home) & mask) >= ((j - i) & mask)) { /* j's home is not between i (exclusive) and j: move it to i */
            m->full[i] = 1, m->keys[i] = m->keys[j], m->vals[i] = m->vals[j];
            m->full[j] = 0;
            i = j;
        }
    }
}

static int owner_arg(PyObject *o, int64_t *out) { /* an owner: an int in int64's range */
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (*out == -1 && PyErr_Occurred()) return -1;
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "owner out of int64 range");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ Pool */
typedef struct {
    PyObject_HEAD
    Py_ssize_t total, low_water, nfree;
    int64_t *free;
    int32_t *carver;
} Pool;

static int Pool_init(Pool *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"num_large_pages", "low_water", NULL};
    Py_ssize_t n, low = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "n|n", names, &n, &low)) return -1;
    if (n < 0 || low < 0) {
        PyErr_SetString(PyExc_ValueError, "num_large_pages and low_water must be >= 0");
        return -1;
    }
    if (self->free) {
        PyErr_SetString(PyExc_RuntimeError, "a pool is initialised once");
        return -1;
    }
    self->free = PyMem_Malloc((n ? n : 1) * sizeof(int64_t));
    self->carver = PyMem_Malloc((n ? n : 1) * sizeof(int32_t));
    if (!self->free || !self->carver) { PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < n; i++) {
        self->free[i] = n - 1 - i; /* large page 0 is handed out first */
        self->carver[i] = -1;
    }
    self->total = n;
    self->nfree = n;
    self->low_water = low;
    return 0;
}

static void Pool_dealloc(Pool *self) {
    PyMem_Free(self->free);
    PyMem_Free(self->carver);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Pool_get_free(Pool *self, void *c) {
    PyObject *out = PyList_New(self->nfree);
    for (Py_ssize_t i = 0; out && i < self->nfree; i++) {
        PyObject *v = PyLong_FromLongLong(self->free[i]);
        if (!v) { Py_CLEAR(out); break; }
        PyList_SET_ITEM(out, i, v);
    }
    return out;
}

static PyObject *Pool_get_carver(Pool *self, void *c) {
    PyObject *out = PyList_New(self->total);
    for (Py_ssize_t i = 0; out && i < self->total; i++) {
        PyObject *v = self->carver[i] < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(self->carver[i]);
        if (!v) { Py_CLEAR(out); break; }
        PyList_SET_ITEM(out, i, v);
    }
    return out;
}

static PyObject *Pool_get_num_free(Pool *self, void *c) { return PyLong_FromSsize_t(self->nfree); }

static PyObject *Pool_get_low_water(Pool *self, void *c) { return PyLong_FromSsize_t(self->low_water); }

static int Pool_set_low_water(Pool *self, PyObject *v, void *c) {
    Py_ssize_t low = v ? PyLong_AsSsize_t(v) : -1;
    if (low == -1 && PyErr_Occurred()) return -1;
    if (low < 0) {
        PyErr_SetString(PyExc_ValueError, "low_water must be >= 0");
        return -1;
    }
    self->low_water = low;
    return 0;
}

static PyMemberDef Pool_members[] = {
    {"total", T_PYSSIZET, offsetof(Pool, total), READONLY, "large pages in the pool"},
    {NULL},
};

static PyGetSetDef Pool_getset[] = {
    {"free", (getter)Pool_get_free, NULL, "the free large pages, a copy (the next one handed out last)", NULL},
    {"carver", (getter)Pool_get_carver, NULL, "per large page the index of the type that carved it, None if free",
     NULL},
    {"num_free", (getter)Pool_get_num_free, NULL, "free large pages", NULL},
    {"low_water", (getter)Pool_get_low_water, (setter)Pool_set_low_water, "see allocator.LargePagePool", NULL},
    {NULL},
};

static PyTypeObject PoolType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sglang_jenga.core._pages.Pool",
    .tp_basicsize = sizeof(Pool),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The common pool of large pages (allocator.LargePagePool).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Pool_init,
    .tp_dealloc = (destructor)Pool_dealloc,
    .tp_members = Pool_members,
    .tp_getset = Pool_getset,
};

/* ------------------------------------------------------------------------------------------ Pages */
typedef struct {
    PyObject_HEAD
    Pool *pool;
    PyObject *name;
    PyObject *used; /* bytearray, one byte per small page */
    OwnerMap open;
    int type_index;
    Py_ssize_t k, num_pages;
    Py_ssize_t pages_used, pages_free_in_carved, large_pages_carved;
    int64_t *stack;
    int32_t *nslots;
    int32_t *count; /* scratch of `free`, per large page; all zero between calls */
    uint8_t *listed, *is_open;
    int64_t *opener;
    OrderedSet holes, open_avail;
    PyObject **ints; /* ints[p]: the int object of page id p, made on its first allocation and kept (page_list) */
} Pages;

static inline uint8_t *used_of(Pages *self) { return (uint8_t *)PyByteArray_AS_STRING(self->used); }

static inline Py_ssize_t available(Pages *self) {
    return self->pages_free_in_carved + self->pool->nfree * self->k;
}

static void out_of_pages(Pages *self, Py_ssize_t requested) {
    PyObject *exc = PyObject_CallFunction(OutOfPages ? OutOfPages : PyExc_MemoryError, "Onn", self->name,
                                          requested, available(self));
    if (exc) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

static int Pages_init(Pages *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"pool", "type_index", "pages_per_large", "name", NULL};
    PyObject *pool, *name;
    int t;
    Py_ssize_t k;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!inU", names, &PoolType, &pool, &t, &k, &name)) return -1;
    if (k < 1) {
        PyErr_SetString(PyExc_ValueError, "pages_per_large must be >= 1");
        return -1;
    }
    if (self->pool) {
        PyErr_SetString(PyExc_RuntimeError, "an allocator is initialised once");
        return -1;
    }
    self->pool = (Pool *)Py_NewRef(pool);
    self->name = Py_NewRef(name);
    self->type_index = t;
    self->k = k;
    Py_ssize_t total = self->pool->total, n = total ? total : 1;
    self->num_pages = total * k;
    self->used = PyByteArray_FromStringAndSize(NULL, self->num_pages);
    self->stack = PyMem_Malloc(n * k * sizeof(int64_t));
    self->nslots = PyMem_Calloc(n, sizeof(int32_t));
    self->count = PyMem_Calloc(n, sizeof(int32_t));
    self->listed = PyMem_Calloc(n, 1);
    self->opener = PyMem_Calloc(n, sizeof(int64_t));
    self->is_open = PyMem_Calloc(n, 1);
    self->ints = PyMem_Calloc(n * k, sizeof(PyObject *));
    if (!self->ints || !self->used || omap_init(&self->open, 64) < 0 || !self->is_open || !self->stack || !self->nslots || !self->count || !self->listed || !self->opener ||
        oset_init(&self->holes, n) < 0 || oset_init(&self->open_avail, n) < 0) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        return -1;
    }
    memset(used_of(self), 0, self->num_pages);
    return 0;
}

static int Pages_traverse(Pages *self, visitproc visit, void *arg) {
    Py_VISIT(self->pool);
    return 0;
}

static void Pages_dealloc(Pages *self) {
    PyObject_GC_UnTrack(self);
    Py_XDECREF(self->pool);
    Py_XDECREF(self->name);
    Py_XDECREF(self->used);
    omap_free(&self->open);
    PyMem_Free(self->stack);
    PyMem_Free(self->nslots);
    PyMem_Free(self->count);
    PyMem_Free(self->listed);
    PyMem_Free(self->opener);
    PyMem_Free(self->is_open);
    oset_free(&self->holes);
    oset_free(&self->open_avail);
    if (self->ints) {
        for (Py_ssize_t p = 0; p < self->num_pages; p++) Py_XDECREF(self->ints[p]);
        PyMem_Free(self->ints);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* -- large pages in and out of this type */

static int64_t pop_large(Pages *self) {
    Pool *pool = self->pool;
    int64_t lp = pool->free[--pool->nfree];
    pool->carver[lp] = self->type_index;
    self->large_pages_carved++;
    return lp;
}

static void push_large(Pages *self, int64_t lp) {
    Pool *pool = self->pool;
    pool->carver[lp] = -1;
    pool->free[pool->nfree++] = lp;
    self->large_pages_carved--;
}

static int64_t carve(Pages *self) { /* a free large page with a full free-slot stack, lowest slot on top */
    int64_t lp = pop_large(self), k = self->k;
    for (int64_t i = 0; i < k; i++) self->stack[lp * k + i] = lp * k + k - 1 - i;
    self->nslots[lp] = (int32_t)k;
    self->listed[lp] = 1;
    self->pages_free_in_carved += k;
    return lp;
}

/* Drop lp's free-slot stack and its hole/open bookkeeping (it is leaving this type). */
static void unlink_large(Pages *self, int64_t lp) {
    self->listed[lp] = 0;
    oset_remove(&self->holes, lp);
    oset_remove(&self->open_avail, lp);
    if (self->is_open[lp]) {
        self->is_open[lp] = 0;
        omap_del(&self->open, self->opener[lp]);
    }
}

/* -- open large pages */

static void close_owner(Pages *self, int64_t owner) {
    int64_t lp = omap_get(&self->open, owner);
    if (lp < 0) return;
    omap_del(&self->open, owner);
    self->is_open[lp] = 0;
    if (self->open_avail.in[lp]) {
        oset_remove(&self->open_avail, lp);
        oset_add(&self->holes, lp);
    } else {
        self->listed[lp] = 0; /* full and no longer open: no free-slot stack */
    }
}

static int set_open(Pages *self, int64_t owner, int64_t lp) {
    close_owner(self, owner);
    if (omap_set(&self->open, owner, lp) < 0) return -1;
    self->opener[lp] = owner;
    self->is_open[lp] = 1;
    if (self->nslots[lp]) oset_add(&self->open_avail, lp);
    return 0;
}

/* Large page for the owner's next slots: a hole (made its open page), else a fresh one (made its open page)
   while the pool is above its low-water mark, else other owners' open pages' free slots, else a fresh one. */
static int64_t next_source(Pages *self, int64_t owner) {
    Pool *pool = self->pool;
    int64_t lp;
    if (self->holes.len) {
        lp = self->holes.head;
        oset_remove(&self->holes, lp);
    } else if (pool->nfree && (pool->nfree > pool->low_water || !self->open_avail.len)) {
        lp = carve(self);
    } else if (self->open_avail.len) {
        return self->open_avail.head;
    } else {
        PyErr_SetString(PyExc_RuntimeError, "no free slot left (the caller checked availability)");
        return -1;
    }
    return set_open(self, owner, lp) < 0 ? -1 : lp;
}

static int64_t source_for(Pages *self, int64_t owner) {
    int64_t lp = omap_get(&self->open, owner);
    return lp >= 0 && self->nslots[lp] ? lp : next_source(self, owner);
}

/* -- taking pages */

static Py_ssize_t take(Pages *self, int64_t lp, Py_ssize_t want, int64_t *out) {
    int64_t *top = self->stack + lp * self->k + self->nslots[lp];
    uint8_t *used = used_of(self);
    Py_ssize_t m = want < self->nslots[lp] ? want : self->nslots[lp];
    for (Py_ssize_t i = 0; i < m; i++) {
        int64_t p = *--top;
        used[p] = 1;
        out[i] = p;
    }
    self->nslots[lp] -= (int32_t)m;
    self->pages_free_in_carved -= m;
    if (!self->nslots[lp]) {
        oset_remove(&self->holes, lp);
        oset_remove(&self->open_avail, lp);
    }
    return m;
}

static void take_whole(Pages *self, Py_ssize_t count, int64_t *out) { /* whole large pages, no stacks */
    uint8_t *used = used_of(self);
    int64_t k = self->k;
    for (Py_ssize_t i = 0; i < count; i++) {
        int64_t lp = pop_large(self);
        memset(used + lp * k, 1, k);
        for (int64_t s = 0; s < k; s++) *out++ = lp * k + s;
    }
}

/* Page ids as a list of ints (what alloc, alloc_each and free_slots return). Each page id's int object is made
   once and kept: a prefill's 16,384 new ints cost more than its whole allocation, and every list a page id goes
   into afterwards (the manager's records, the tree's nodes) holds the same object. */
static PyObject *page_list(Pages *self, const int64_t *pages, Py_ssize_t n) {
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out && i < n; i++) {
        PyObject *v = self->ints[pages[i]];
        if (!v) {
            v = self->ints[pages[i]] = PyLong_FromLongLong(pages[i]);
            if (!v) { Py_CLEAR(out); break; }
        }
        PyList_SET_ITEM(out, i, Py_NewRef(v));
    }
    return out;
}

static PyObject *Pages_alloc(Pages *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "alloc(num_pages, owner)");
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(args[0]);
    int64_t owner;
    if ((n == -1 && PyErr_Occurred()) || owner_arg(args[1], &owner) < 0) return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "num_pages must be >= 0");
        return NULL;
    }
    if (n > available(self)) {
        out_of_pages(self, n);
        return NULL;
    }
    int64_t *out = PyMem_Malloc((n ? n : 1) * sizeof(int64_t));
    if (!out) return PyErr_NoMemory();
    Py_ssize_t got = 0, k = self->k;
    Pool *pool = self->pool;
    if (n) {
        int64_t lp = omap_get(&self->open, owner);
        if (lp >= 0 && self->nslots[lp]) got += take(self, lp, n, out);
    }
    while (got < n) {
        Py_ssize_t whole = (n - got) / k, spare = pool->nfree - pool->low_water;
        whole = whole < spare ? whole : spare;
        if (whole > 0 && !self->holes.len) {
            take_whole(self, whole, out + got); /* bulk prefill: whole large pages, no free-slot stacks */
            got += whole * k;
        } else {
            int64_t lp = next_source(self, owner);
            if (lp < 0) goto fail;
            got += take(self, lp, n - got, out + got);
        }
    }
    self->pages_used += n;
    PyObject *res = page_list(self, out, n);
    PyMem_Free(out);
    return res;
fail:
    PyMem_Free(out);
    return NULL;
}

static PyObject *Pages_alloc_each(Pages *self, PyObject *owners) {
    PyObject *seq = PySequence_Fast(owners, "owners must be a sequence");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *res = NULL;
    int64_t *out = NULL, *ids = NULL;
    Pool *pool = self->pool;
    if (n > available(self)) {
        out_of_pages(self, n);
        goto done;
    }
    out = PyMem_Malloc((n ? n : 1) * sizeof(int64_t));
    ids = PyMem_Malloc((n ? n : 1) * sizeof(int64_t));
    if (!out || !ids) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (owner_arg(items[i], ids + i) < 0) goto done;
    }
    if (self->k == 1 && pool->nfree - pool->low_water >= n) {
        take_whole(self, n, out); /* a small page is a whole large page: no open pages to keep */
    } else {
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t lp = source_for(self, ids[i]);
            if (lp < 0) goto done; /* only on an internal error: pages taken so far are not given back */
            take(self, lp, 1, out + i);
        }
    }
    self->pages_used += n;
    res = page_list(self, out, n);
done:
    PyMem_Free(out);
    PyMem_Free(ids);
    Py_DECREF(seq);
    return res;
}

/* -- freeing pages */

/* Pages of `seq` as int64, checked before anything changes: in range, allocated, each listed once (a page seen
   is marked 2 while checking). On a bad page, ValueError naming the first one (allocator._first_bad's rule). */
static int64_t *checked_pages(Pages *self, PyObject *seq, Py_ssize_t n) {
    PyObject **items = PySequence_Fast_ITEMS(seq);
    uint8_t *used = used_of(self);
    int64_t *pages = PyMem_Malloc((n ? n : 1) * sizeof(int64_t));
    if (!pages) { PyErr_NoMemory(); return NULL; }
    Py_ssize_t i = 0;
    int bad = 0;
    for (; i < n; i++) {
        int overflow;
        int64_t p = PyLong_AsLongLongAndOverflow(items[i], &overflow);
        if (p == -1 && PyErr_Occurred()) break;
        if (overflow || p < 0 || p >= self->num_pages || used[p] != 1) {
            bad = 1;
            break;
        }
        pages[i] = p;
        used[p] = 2;
    }
    for (Py_ssize_t j = 0; j < i; j++) used[pages[j]] = 1;
    if (bad || PyErr_Occurred()) {
        if (bad)
            PyErr_Format(PyExc_ValueError, "%U: page %S is not allocated (or freed twice in one call)", self->name,
                         items[i]);
        PyMem_Free(pages);
        return NULL;
    }
    return pages;
}

/* Return a large page whose small pages are all free (its stack holds all k) to the pool. */
static void uncarve(Pages *self, int64_t lp) {
    unlink_large(self, lp);
    self->pages_free_in_carved -= self->k;
    push_large(self, lp);
}

/* Per-page free (pages checked): back on their large page's stack, which returns to the pool when all k
   slots are free. */
static void free_each(Pages *self, const int64_t *pages, Py_ssize_t n) {
    uint8_t *used = used_of(self);
    int64_t k = self->k;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t p = pages[i], lp = p / k;
        used[p] = 0;
        if (!self->listed[lp]) {
            self->listed[lp] = 1;
            self->nslots[lp] = 0;
        }
        self->stack[lp * k + self->nslots[lp]++] = p;
        if (self->nslots[lp] == k) {
            uncarve(self, lp);
        } else if (self->nslots[lp] == 1) {
            oset_add(self->is_open[lp] ? &self->open_avail : &self->holes, lp);
        }
    }
    self->pages_used -= n;
    self->pages_free_in_carved += n;
}

/* Bulk free: every large page all of whose used pages are in `pages` goes back to the pool at once, in the
   order of their first page in `pages`. The pages of the other large pages are written to `rest` (in order);
   returns how many, or -1 (out of memory, nothing changed). */
static Py_ssize_t free_whole_large(Pages *self, const int64_t *pages, Py_ssize_t n, int64_t *rest) {
    int64_t k = self->k;
    Py_ssize_t nlarge = 0, nrest = 0, nwhole = 0, holes = 0;
    int32_t *count = self->count;
    int64_t *order = PyMem_Malloc((n ? n : 1) * sizeof(int64_t));
    if (!order) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t lp = pages[i] / k;
        if (!count[lp]++) order[nlarge++] = lp;
    }
    uint8_t *used = used_of(self);
    for (Py_ssize_t j = 0; j < nlarge; j++) {
        int64_t lp = order[j];
        int32_t free_slots = self->listed[lp] ? self->nslots[lp] : 0;
        if (count[lp] + free_slots != k) {
            count[lp] = -1; /* stays: its pages go to the per-page path */
            continue;
        }
        holes += free_slots;
        memset(used + lp * k, 0, k);
        if (self->listed[lp]) unlink_large(self, lp);
        push_large(self, lp);
        nwhole++;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (count[pages[i] / k] == -1) rest[nrest++] = pages[i];
    }
    self->pages_used -= nwhole * k - holes;
    self->pages_free_in_carved -= holes;
    for (Py_ssize_t j = 0; j < nlarge; j++) count[order[j]] = 0;
    PyMem_Free(order);
    return nrest;
}

static PyObject *Pages_free(Pages *self, PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "pages must be an iterable of ints");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int64_t *pages = checked_pages(self, seq, n), *rest = NULL;
    PyObject *res = NULL;
    Py_ssize_t before = self->pool->nfree;
    if (!pages) goto done;
    if (self->k == 1) { /* each page is its large page */
        uint8_t *used = used_of(self);
        for (Py_ssize_t i = 0; i < n; i++) {
            used[pages[i]] = 0;
            if (self->listed[pages[i]]) unlink_large(self, pages[i]);
            push_large(self, pages[i]);
        }
        self->pages_used -= n;
        res = PyLong_FromSsize_t(n);
        goto done;
    }
    Py_ssize_t nrest = n;
    if (n >= self->k) {
        rest = PyMem_Malloc(n * sizeof(int64_t));
        if (!rest) { PyErr_NoMemory(); goto done; }
        nrest = free_whole_large(self, pages, n, rest);
        if (nrest < 0) goto done;
    }
    free_each(self, rest ? rest : pages, nrest);
    res = PyLong_FromSsize_t(self->pool->nfree - before);
done:
    PyMem_Free(pages);
    PyMem_Free(rest);
    Py_DECREF(seq);
    return res;
}

static PyObject *Pages_close_owner(Pages *self, PyObject *arg) {
    int64_t owner;
    if (owner_arg(arg, &owner) < 0) return NULL;
    close_owner(self, owner);
    Py_RETURN_NONE;
}

/* -- reading the state */

static PyObject *Pages_available(Pages *self, PyObject *unused) { return PyLong_FromSsize_t(available(self)); }

static PyObject *Pages_is_used(Pages *self, PyObject *arg) {
    Py_ssize_t p = PyLong_AsSsize_t(arg);
    if (p == -1 && PyErr_Occurred()) return NULL;
    if (p < 0 || p >= self->num_pages) {
        PyErr_SetString(PyExc_IndexError, "page out of range");
        return NULL;
    }
    return PyBool_FromLong(used_of(self)[p]);
}

static int64_t large_arg(Pages *self, PyObject *arg) {
    Py_ssize_t lp = PyLong_AsSsize_t(arg);
    if (lp == -1 && PyErr_Occurred()) return -1;
    if (lp < 0 || lp >= self->pool->total) {
        PyErr_SetString(PyExc_IndexError, "large page out of range");
        return -1;
    }
    return lp;
}

static PyObject *Pages_used_in_large(Pages *self, PyObject *arg) {
    int64_t lp = large_arg(self, arg);
    if (lp < 0) return NULL;
    if (self->pool->carver[lp] != self->type_index) return PyLong_FromLong(0);
    return PyLong_FromSsize_t(self->k - (self->listed[lp] ? self->nslots[lp] : 0));
}

static PyObject *Pages_free_slots(Pages *self, PyObject *arg) {
    int64_t lp = large_arg(self, arg);
    if (lp < 0) return NULL;
    if (!self->listed[lp]) Py_RETURN_NONE;
    return page_list(self, self->stack + lp * self->k, self->nslots[lp]);
}

static PyObject *Pages_holes(Pages *self, PyObject *unused) { return oset_list(&self->holes); }

static PyObject *Pages_open_with_slots(Pages *self, PyObject *unused) { return oset_list(&self->open_avail); }

static PyObject *Pages_open_pages(Pages *self, PyObject *unused) {
    PyObject *out = PyDict_New();
    for (Py_ssize_t i = 0; out && i < self->open.cap; i++) {
        if (!self->open.full[i]) continue;
        PyObject *key = PyLong_FromLongLong(self->open.keys[i]), *val = PyLong_FromLongLong(self->open.vals[i]);
        if (!key || !val || PyDict_SetItem(out, key, val) < 0) Py_CLEAR(out);
        Py_XDECREF(key);
        Py_XDECREF(val);
    }
    return out;
}

static PyObject *Pages_get_used(Pages *self, void *c) { return Py_NewRef(self->used); }

static PyMethodDef Pages_methods[] = {
    {"alloc", (PyCFunction)(void (*)(void))Pages_alloc, METH_FASTCALL, "see allocator.SmallPageAllocator"},
    {"alloc_each", (PyCFunction)Pages_alloc_each, METH_O, "see allocator.SmallPageAllocator"},
    {"free", (PyCFunction)Pages_free, METH_O, "see allocator.SmallPageAllocator"},
    {"close_owner", (PyCFunction)Pages_close_owner, METH_O, "see allocator.SmallPageAllocator"},
    {"available", (PyCFunction)Pages_available, METH_NOARGS, "see allocator.SmallPageAllocator"},
    {"is_used", (PyCFunction)Pages_is_used, METH_O, "whether small page p is allocated"},
    {"used_in_large", (PyCFunction)Pages_used_in_large, METH_O, "see allocator.SmallPageAllocator"},
    {"free_slots", (PyCFunction)Pages_free_slots, METH_O,
     "large page lp's free-slot stack (next handed out last), None where it has none"},
    {"holes", (PyCFunction)Pages_holes, METH_NOARGS, "carved large pages, not open, with free slots, in order"},
    {"open_with_slots", (PyCFunction)Pages_open_with_slots, METH_NOARGS, "open large pages with free slots, in order"},
    {"open_pages", (PyCFunction)Pages_open_pages, METH_NOARGS, "owner -> open large page (a copy)"},
    {NULL},
};

static PyMemberDef Pages_members[] = {
    {"pool", T_OBJECT_EX, offsetof(Pages, pool), READONLY, "the common pool"},
    {"name", T_OBJECT_EX, offsetof(Pages, name), READONLY, "the type's name"},
    {"type_index", T_INT, offsetof(Pages, type_index), READONLY, "the type's index in the pool"},
    {"pages_per_large", T_PYSSIZET, offsetof(Pages, k), READONLY, "small pages per large page"},
    {"num_pages", T_PYSSIZET, offsetof(Pages, num_pages), READONLY,
     "small pages this type could hold if it carved every large page"},
    {"pages_used", T_PYSSIZET, offsetof(Pages, pages_used), READONLY, "allocated small pages"},
    {"pages_free_in_carved", T_PYSSIZET, offsetof(Pages, pages_free_in_carved), READONLY,
     "free small pages inside large pages this type has carved"},
    {"large_pages_carved", T_PYSSIZET, offsetof(Pages, large_pages_carved), READONLY,
     "large pages this type holds"},
    {NULL},
};

static PyGetSetDef Pages_getset[] = {
    {"used_flags", (getter)Pages_get_used, NULL, "one byte per small page, 1 while allocated (read-only for callers)",
     NULL},
    {NULL},
};

static PyTypeObject PagesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sglang_jenga.core._pages.Pages",
    .tp_basicsize = sizeof(Pages),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Small pages of one type (allocator.SmallPageAllocator).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Pages_init,
    .tp_dealloc = (destructor)Pages_dealloc,
    .tp_traverse = (traverseproc)Pages_traverse,
    .tp_methods = Pages_methods,
    .tp_members = Pages_members,
    .tp_getset = Pages_getset,
};

/* ------------------------------------------------------------------------------------------ module */
static PyObject *set_out_of_pages_error(PyObject *module, PyObject *cls) {
    Py_XSETREF(OutOfPages, Py_NewRef(cls));
    Py_RETURN_NONE;
}

/* flag_pages(flags, pages, used, keep): the radix tree's check of the pages an insert hands it, one pass. Every
   entry of the list `pages` is None or a page p with 0 <= p < len(flags), used[p] == 1 and flags[p] == 0, listed
   once (a page is flagged as it is checked, so a repeat shows as flagged). On a bad entry ValueError, every flag
   set here cleared; otherwise the flags stay set if `keep`, else they are cleared. Returns the pages (entries
   that are not None). */
static PyObject *flag_pages(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyByteArray_Check(args[0]) || !PyList_Check(args[1]) || !PyByteArray_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "flag_pages(flags: bytearray, pages: list, used: bytearray, keep)");
        return NULL;
    }
    int keep = PyObject_IsTrue(args[3]);
    if (keep < 0) return NULL;
    uint8_t *flags = (uint8_t *)PyByteArray_AS_STRING(args[0]), *used = (uint8_t *)PyByteArray_AS_STRING(args[2]);
    Py_ssize_t nflags = PyByteArray_GET_SIZE(args[0]), nused = PyByteArray_GET_SIZE(args[2]);
    Py_ssize_t limit = nflags < nused ? nflags : nused, n = PyList_GET_SIZE(args[1]), i = 0, count = 0;
    PyObject **items = ((PyListObject *)args[1])->ob_item;
    int bad = 0;
    for (; i < n; i++) {
        if (items[i] == Py_None) continue;
        int overflow;
        long long p = PyLong_Check(items[i]) ? PyLong_AsLongLongAndOverflow(items[i], &overflow) : -1;
        if (!PyLong_Check(items[i]) || overflow || p < 0 || p >= limit || flags[p] || used[p] != 1) {
            bad = 1;
            break;
        }
        flags[p] = 1;
        count++;
    }
    if (bad || !keep) {
        for (Py_ssize_t j = 0; j < i; j++)
            if (items[j] != Py_None) flags[PyLong_AsLongLong(items[j])] = 0;
    }
    if (bad) {
        PyErr_Format(PyExc_ValueError, "page %R is negative, unallocated, repeated or cached elsewhere", items[i]);
        return NULL;
    }
    return PyLong_FromSsize_t(count);
}

/* clear_flags(flags, pages): flags[p] = 0 for every page p of the list (None entries skipped; pages checked by
   flag_pages before). */
static PyObject *clear_flags(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyByteArray_Check(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "clear_flags(flags: bytearray, pages: list)");
        return NULL;
    }
    uint8_t *flags = (uint8_t *)PyByteArray_AS_STRING(args[0]);
    Py_ssize_t nflags = PyByteArray_GET_SIZE(args[0]), n = PyList_GET_SIZE(args[1]);
    PyObject **items = ((PyListObject *)args[1])->ob_item;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (items[i] == Py_None) continue;
        long long p = PyLong_AsLongLong(items[i]);
        if (p == -1 && PyErr_Occurred()) return NULL;
        if (p < 0 || p >= nflags) return PyErr_Format(PyExc_IndexError, "page %lld out of range", p);
        flags[p] = 0;
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_out_of_pages_error", set_out_of_pages_error, METH_O,
     "the exception class raised (type name, requested, available) when pages run short"},
    {"flag_pages", (PyCFunction)(void (*)(void))flag_pages, METH_FASTCALL,
     "check the pages an insert hands the tree and flag them (see _pages.c)"},
    {"clear_flags", (PyCFunction)(void (*)(void))clear_flags, METH_FASTCALL, "clear the flags of a list of pages"},
    {NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pages", "The two-level allocator's bookkeeping in C.",
                                    -1, module_methods};

PyMODINIT_FUNC PyInit__pages(void) {
    if (PyType_Ready(&PoolType) < 0 || PyType_Ready(&PagesType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Pool", (PyObject *)&PoolType) < 0 ||
        PyModule_AddObjectRef(m, "Pages", (PyObject *)&PagesType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
