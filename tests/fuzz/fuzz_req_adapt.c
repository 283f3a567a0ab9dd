/* POST /v1/adapt body -> few-shot search request (api/api_tasks.c). */
#include "api_tasks.h"
#include "expert.h"
#include "fuzz_api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    t2_api_adapt_req r;
    t2_api_err e;
    if (t2_api_parse_adapt((const char *)data, size, &r, &e) == 0) {
        FUZZ_CHECK(r.name && t2_expert_name_valid(r.name));
        FUZZ_CHECK(r.n_examples >= 1 && r.n_examples <= T2_API_MAX_EXAMPLES);
        for (size_t i = 0; i < r.n_experts; i++)
            FUZZ_CHECK(r.experts[i] != NULL);
    } else {
        fuzz_check_refusal(&e);
    }
    t2_api_adapt_req_free(&r);
    return 0;
}
