/* safetensors: header JSON + tensor directory + payload bounds
 * (core/safetensors.c). Every tensor that parses is read in full. */
#include <string.h>

#include "fuzz.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    t2_safetensors st;
    memset(&st, 0, sizeof st);
    t2_err err;
    if (t2_st_parse(&st, data, size, "fuzz", &err) != 0)
        return 0;
    for (size_t i = 0; i < st.n_tensors; i++) {
        const t2_st_tensor *t = &st.tensors[i];
        FUZZ_CHECK(t->nbytes == t->n_elements * t2_st_dtype_size(t->dtype));
        FUZZ_CHECK(fuzz_inside(t->data, t->nbytes, data, size));
        FUZZ_CHECK(t2_st_find(&st, t->name) != NULL);
        if (t->n_elements <= (1u << 20)) {
            float *f = malloc((t->n_elements ? t->n_elements : 1) * sizeof *f);
            FUZZ_CHECK(f != NULL);
            t2_st_to_f32(t, f);
            free(f);
        }
    }
    for (size_t i = 0; i < st.n_meta; i++)
        FUZZ_CHECK(t2_st_meta_get(&st, st.meta[i].key) != NULL);
    t2_st_close(&st);
    return 0;
}
