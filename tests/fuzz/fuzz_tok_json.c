/* tokenizer.json loading from memory (core/tokenizer_json*.c and the
 * vocabulary, merges and pre-tokenizer setup behind it); a tokenizer that
 * loads encodes and decodes one fixed text. */
#include <string.h>

#include "fuzz.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    t2_tokenizer *tok;
    t2_err err;
    if (t2_tok_load_json_buf(&tok, (const char *)data, size, &err) != 0)
        return 0;
    static const char text[] = "Hello world! <|im_start|>x 123 \xc3\xa9\xe2\x96\x81 \n\n  ab";
    for (int special = 0; special < 2; special++) {
        int32_t *ids;
        size_t n;
        if (t2_tok_encode(tok, text, sizeof text - 1, true, special, &ids, &n, &err) != 0)
            continue;
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(ids[i] >= 0 && ids[i] < t2_tok_vocab_size(tok));
        char *out;
        size_t len;
        if (t2_tok_decode(tok, ids, n, special, &out, &len, &err) == 0) {
            FUZZ_CHECK(strlen(out) <= len);
            free(out);
        }
        free(ids);
    }
    t2_tok_free(tok);
    return 0;
}
