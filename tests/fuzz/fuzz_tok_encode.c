/* The tokenizer's encode and decode on arbitrary bytes, with real
 * tokenizers loaded once: seedling's tokenizer.json (byte-level BPE) and
 * the Llama SPM and GPT-2 vocab GGUFs. Byte 0 picks the tokenizer and the
 * flags; the rest is the text. Checks: ids in range, byte-level round
 * trip of plain text, streamed decode == whole decode; then the same
 * bytes read as token ids go through both decoders. */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "gguf.h"
#include "tokenizer.h"

#define N_TOK 3

static t2_tokenizer *toks[N_TOK];
static t2_gguf ggufs[N_TOK];

static t2_tokenizer *load_gguf(int i, const char *file)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab/%s", fuzz_shared_dir(), file);
    t2_err err;
    t2_tokenizer *tok;
    if (t2_gguf_open(&ggufs[i], path, &err) != 0 || t2_tok_load_gguf(&tok, &ggufs[i], &err) != 0) {
        fprintf(stderr, "fuzz_tok_encode: %s\n", err.msg);
        exit(1);
    }
    return tok;
}

static void load_all(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/models/seedling/tokenizer.json", fuzz_shared_dir());
    t2_err err;
    if (t2_tok_load_json(&toks[0], path, NULL, &err) != 0) {
        fprintf(stderr, "fuzz_tok_encode: %s\n", err.msg);
        exit(1);
    }
    toks[1] = load_gguf(1, "ggml-vocab-llama-spm.gguf");
    toks[2] = load_gguf(2, "ggml-vocab-gpt-2.gguf");
}

/* Streams ids through t2_tok_stream and compares with `whole`. */
static void check_stream(const t2_tokenizer *tok, const int32_t *ids, size_t n, bool skip,
                         const char *whole, size_t whole_len)
{
    size_t cap = t2_tok_stream_cap(tok), total = 0;
    char *piece = malloc(cap);
    char *acc = malloc(whole_len + 1);
    FUZZ_CHECK(piece && acc);
    t2_tok_stream s;
    t2_tok_stream_init(&s, tok, skip);
    for (size_t i = 0; i < n; i++) {
        size_t k = t2_tok_stream_push(&s, ids[i], piece, cap);
        FUZZ_CHECK(k < cap && total + k <= whole_len);
        memcpy(acc + total, piece, k);
        total += k;
    }
    size_t k = t2_tok_stream_flush(&s, piece, cap);
    FUZZ_CHECK(k < cap && total + k <= whole_len);
    memcpy(acc + total, piece, k);
    total += k;
    FUZZ_CHECK(total == whole_len && memcmp(acc, whole, total) == 0);
    free(piece);
    free(acc);
}

static void encode_decode(const t2_tokenizer *tok, bool byte_level, const uint8_t *text, size_t len,
                          bool special, bool bos)
{
    int32_t *ids;
    size_t n;
    t2_err err;
    if (t2_tok_encode(tok, (const char *)text, len, bos, special, &ids, &n, &err) != 0)
        return;
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(ids[i] >= 0 && ids[i] < t2_tok_vocab_size(tok));
    char *out;
    size_t out_len;
    FUZZ_CHECK(t2_tok_decode(tok, ids, n, bos, &out, &out_len, &err) == 0);
    if (byte_level && !special)
        FUZZ_CHECK(out_len == len && memcmp(out, text, len) == 0);
    check_stream(tok, ids, n, bos, out, out_len);
    free(out);
    free(ids);
}

/* Arbitrary ids (in and out of range) through both decoders. */
static void decode_ids(const t2_tokenizer *tok, const uint8_t *data, size_t size, bool skip)
{
    size_t n = size / 4;
    int32_t *ids = calloc(n ? n : 1, sizeof *ids);
    FUZZ_CHECK(ids != NULL);
    bool in_range = true;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, data + 4 * i, 4);
        ids[i] = (int32_t)(u % (uint32_t)(t2_tok_vocab_size(tok) + 2)) - 1;
        in_range = in_range && ids[i] >= 0 && ids[i] < t2_tok_vocab_size(tok);
    }
    char *out;
    size_t out_len;
    t2_err err;
    if (t2_tok_decode(tok, ids, n, skip, &out, &out_len, &err) == 0) {
        if (in_range)
            check_stream(tok, ids, n, skip, out, out_len);
        free(out);
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!toks[0])
        load_all();
    if (size < 1)
        return 0;
    int which = (data[0] >> 2) % N_TOK;
    bool special = data[0] & 1, bos = data[0] & 2;
    const t2_tokenizer *tok = toks[which];
    bool byte_level = t2_tok_kind(tok) == T2_TOK_BYTE_LEVEL;
    encode_decode(tok, byte_level, data + 1, size - 1, special, bos);
    decode_ids(tok, data + 1, size - 1, bos);
    return 0;
}
