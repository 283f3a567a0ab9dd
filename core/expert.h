/* Experts: one SVF vector z per adapted matrix, read from a safetensors
 * file (tensor names = Hugging Face parameter names, float32 [r]) with
 * __metadata__: name, task (label), description, base_model,
 * parametrization ("direct": values are z; "sigmoid": z = sigmoid(p) *
 * max_mult, max_mult from metadata, default 1), adapted ("mlp", ...).
 * Experts are immutable and reference-counted: a request holds a
 * reference for as long as it uses one. */
#ifndef T2_EXPERT_H
#define T2_EXPERT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "svf.h"

/* Which file an expert came from, as stat(2) saw it (all 0: unknown):
 * a rescan skips a file whose identity did not change. */
typedef struct t2_file_id {
    uint64_t dev, ino, size, mtime_ns, ctime_ns;
} t2_file_id;

typedef struct t2_expert {
    atomic_int refs;
    char *name; /* unique key in the store: [A-Za-z0-9._-]{1,64} */
    char *task; /* label for classification, e.g. "math"; "cls" for a classifier */
    char *description;
    char *base_model;
    char *parametrization; /* as stored: "direct" or "sigmoid" */
    char *adapted;         /* as stored, e.g. "mlp" */
    size_t n_mats;         /* == svf->n */
    float **z;             /* [n_mats]; z[i] == NULL: matrix i not adapted (z = 1) */
    uint64_t version;      /* changes whenever a name is replaced (cache keys) */
    size_t file_bytes;
    t2_file_id file_id; /* set and read by the store under its lock */
} t2_expert;

/* Validates and decodes an expert file held in memory against the model's
 * SVF factors. name_override (may be NULL) replaces the metadata name
 * (uploads under a URL name). base_model_name: the loaded model's name;
 * a file whose base_model differs is rejected. Messages are precise
 * ("tensor 'x': length 255, expected 256"). The result has refs = 1. */
int t2_expert_parse(t2_expert **out, const uint8_t *buf, size_t len, const char *source,
                    const t2_svf *svf, const char *base_model_name, const char *name_override,
                    t2_err *err);

t2_expert *t2_expert_ref(t2_expert *e);
void t2_expert_unref(t2_expert *e); /* frees at zero */

/* Expert names: [A-Za-z0-9._-]{1,64}, not starting with '.' (no ".",
 * ".." or hidden files). */
bool t2_expert_name_valid(const char *name);

/* A directory of <name>.safetensors files, thread-safe. */
typedef struct t2_expert_store t2_expert_store;

/* Loads every *.safetensors in dir (created if missing). Files that fail
 * validation are skipped with a warning through `warn` (may be NULL) and
 * counted in *n_rejected; leftover temp files of interrupted uploads are
 * removed. */
int t2_store_open(t2_expert_store **out, const char *dir, const t2_svf *svf,
                  const char *base_model_name, void (*warn)(void *user, const char *msg),
                  void *user, size_t *n_rejected, t2_err *err);
void t2_store_free(t2_expert_store *st);

/* Validates bytes, writes <dir>/<name>.safetensors atomically (temp +
 * fsync + rename + fsync dir) and swaps it in; replaces an existing one
 * (*replaced set). On any error nothing changes on disk or in memory.
 * err_code: 422 invalid file, 507 disk full, 500 other I/O. */
int t2_store_put(t2_expert_store *st, const char *name, const uint8_t *buf, size_t len,
                 bool *replaced, int *err_code, t2_err *err);
/* t2_store_put that also returns a reference to the expert it stored
 * (*stored, caller unrefs; NULL on error): a concurrent delete may remove
 * the name right after the put, and the caller still describes what it
 * stored. */
int t2_store_put_ref(t2_expert_store *st, const char *name, const uint8_t *buf, size_t len,
                     bool *replaced, t2_expert **stored, int *err_code, t2_err *err);
/* Removes from disk and memory; -1 with err_code 404 when unknown. */
int t2_store_remove(t2_expert_store *st, const char *name, int *err_code, t2_err *err);
/* Brings the store in line with its directory when other processes (other
 * replicas sharing it) added, replaced or removed experts: files that are
 * new or whose content changed are loaded (each file is read and
 * validated: cost proportional to the experts' total size), experts whose
 * files are gone are dropped; invalid files are ignored and keep the last
 * valid version. *changes counts what changed. Readers see each change
 * atomically; requests keep the version they hold. */
int t2_store_rescan(t2_expert_store *st, size_t *changes, t2_err *err);
/* Expert files read and parsed by rescans so far (an unchanged file is
 * not read again: same inode, size, mtime and ctime). */
size_t t2_store_rescan_reads(t2_expert_store *st);
/* New reference to the named expert, or NULL. */
t2_expert *t2_store_get(t2_expert_store *st, const char *name);
/* Snapshot: new references to all experts sorted by name; caller unrefs
 * each and frees the array. */
size_t t2_store_list(t2_expert_store *st, t2_expert ***out);
/* New reference to the first expert whose task equals `task`, or NULL. */
t2_expert *t2_store_find_task(t2_expert_store *st, const char *task);

#endif
