/* POST /v1/chat/completions body -> request struct (api/api_openai.c). */
#include "api_gen.h"
#include "fuzz_api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    t2_api_gen_req r;
    t2_api_err e;
    if (t2_api_parse_chat((const char *)data, size, &fuzz_limits, &r, &e) == 0)
        fuzz_use_request(&r);
    else
        fuzz_check_refusal(&e);
    t2_api_gen_req_free(&r);
    return 0;
}
