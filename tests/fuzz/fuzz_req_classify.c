/* POST /v1/classify body -> request struct (api/api_tasks.c). */
#include "api_tasks.h"
#include "fuzz_api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    t2_api_gen_req r;
    t2_api_err e;
    if (t2_api_parse_classify((const char *)data, size, &fuzz_limits, &r, &e) == 0)
        fuzz_use_request(&r);
    else
        fuzz_check_refusal(&e);
    t2_api_gen_req_free(&r);
    return 0;
}
