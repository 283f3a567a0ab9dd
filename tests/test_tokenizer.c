/* Tokenizer tests on tokenizer.json: seedling's byte-level BPE against its
 * reference ids, UTF-8 round trips, invalid input, streaming decode,
 * malformed files, and a small SentencePiece-style BPE built here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <time.h>

#include "test_util.h"
#include "tokenizer.h"

static t2_tokenizer *load_seedling(void)
{
    char a[1024], b[1024];
    t2_err err = {{0}};
    t2_tokenizer *tok = NULL;
    int rc =
        t2_tok_load_json(&tok, shared_path(a, sizeof a, "models/seedling/tokenizer.json"),
                         shared_path(b, sizeof b, "models/seedling/tokenizer_config.json"), &err);
    if (rc != 0)
        fprintf(stderr, "load: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(tok);
    return tok;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)sz + 1);
    assert_non_null(buf);
    *len = fread(buf, 1, (size_t)sz, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static int32_t *enc(const t2_tokenizer *tok, const char *s, bool bos, bool special, size_t *n)
{
    int32_t *ids = NULL;
    t2_err err = {{0}};
    int rc = t2_tok_encode(tok, s, strlen(s), bos, special, &ids, n, &err);
    if (rc != 0)
        fprintf(stderr, "encode \"%s\": %s\n", s, err.msg);
    assert_int_equal(rc, 0);
    return ids;
}

static char *dec(const t2_tokenizer *tok, const int32_t *ids, size_t n, bool skip)
{
    char *s = NULL;
    size_t len = 0;
    t2_err err = {{0}};
    assert_int_equal(t2_tok_decode(tok, ids, n, skip, &s, &len, &err), 0);
    assert_int_equal(strlen(s), len);
    return s;
}

static void assert_ids(const int32_t *got, size_t n, const int32_t *want, size_t m)
{
    if (n != m || memcmp(got, want, n * sizeof *got) != 0) {
        fprintf(stderr, "got:");
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %d", (int)got[i]);
        fprintf(stderr, "\nwant:");
        for (size_t i = 0; i < m; i++)
            fprintf(stderr, " %d", (int)want[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(n, m);
    assert_memory_equal(got, want, n * sizeof *got);
}

/* ---- seedling ---- */

static void test_seedling_meta(void **state)
{
    (void)state;
    t2_tokenizer *tok = load_seedling();
    assert_int_equal(t2_tok_kind(tok), T2_TOK_BYTE_LEVEL);
    assert_int_equal(t2_tok_vocab_size(tok), 1024);
    assert_int_equal(t2_tok_bos(tok), 1);
    assert_int_equal(t2_tok_eos(tok), 2);
    assert_false(t2_tok_adds_bos(tok)); /* no post_processor */
    assert_int_equal(t2_tok_find(tok, "<|im_end|>"), 2);
    assert_int_equal(t2_tok_find(tok, "assistant"), 277);
    assert_int_equal(t2_tok_find(tok, "no such token"), -1);
    assert_true(t2_tok_is_special(tok, 0));
    assert_false(t2_tok_is_special(tok, 277));
    assert_false(t2_tok_is_special(tok, -1));
    assert_false(t2_tok_is_special(tok, 1024));
    assert_non_null(strstr(t2_tok_chat_template(tok), "<|im_start|>"));
    char b[16];
    assert_int_equal(t2_tok_token_bytes(tok, t2_tok_find(tok, "\xC4\xA0is"), b, sizeof b), 3);
    assert_memory_equal(b, " is", 3);
    assert_int_equal(t2_tok_token_bytes(tok, t2_tok_find(tok, "\xC4\x8A"), b, sizeof b), 1);
    assert_int_equal(b[0], '\n');
    assert_int_equal(t2_tok_token_bytes(tok, 1, b, sizeof b), 12);
    assert_memory_equal(b, "<|im_start|>", 12);
    assert_int_equal(t2_tok_token_bytes(tok, 1024, b, sizeof b), -1);
    assert_int_equal(t2_tok_token_bytes(tok, -5, b, sizeof b), -1);
    t2_tok_free(tok);
}

static void test_seedling_vectors(void **state)
{
    (void)state;
    t2_tokenizer *tok = load_seedling();
    json_t *v = load_vectors();
    assert_non_null(v);
    json_t *vecs = json_object_get(v, "vectors");
    assert_true(json_array_size(vecs) >= 4);
    size_t i;
    json_t *e;
    json_array_foreach(vecs, i, e)
    {
        const char *prompt = json_string_value(json_object_get(e, "prompt"));
        size_t m, n;
        int32_t *want = json_ids(json_object_get(e, "ids"), &m);
        int32_t *got = enc(tok, prompt, false, true, &n);
        assert_ids(got, n, want, m);
        char *back = dec(tok, got, n, false);
        assert_string_equal(back, prompt);
        free(back);
        free(got);
        free(want);
    }
    json_decref(v);
    t2_tok_free(tok);
}

/* The same file through the in-memory loader; parse_special off turns the
 * special-token text into ordinary pieces. */
static void test_seedling_buf_and_plain_specials(void **state)
{
    (void)state;
    char p[1024];
    size_t len, n;
    char *json = read_all(shared_path(p, sizeof p, "models/seedling/tokenizer.json"), &len);
    t2_tokenizer *tok;
    t2_err err = {{0}};
    assert_int_equal(t2_tok_load_json_buf(&tok, json, len, &err), 0);
    free(json);
    assert_int_equal(t2_tok_bos(tok), -1); /* no config given */
    int32_t *ids = enc(tok, "<|im_end|>", false, false, &n);
    assert_true(n > 1);
    for (size_t i = 0; i < n; i++)
        assert_false(t2_tok_is_special(tok, ids[i]));
    char *s = dec(tok, ids, n, true);
    assert_string_equal(s, "<|im_end|>");
    free(s);
    free(ids);
    ids = enc(tok, "x<|im_end|>", true, true, &n); /* no BOS without config */
    assert_int_equal(n, 2);
    assert_int_equal(ids[1], 2);
    free(ids);
    t2_tok_free(tok);
}

static const char *const edge_cases[] = {
    "",
    " ",
    "Hello, world!",
    "emoji: \xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD "
    "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 \xF0\x9F\xA6\x99",
    "CJK: \xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8"
    "apple\xE5\xB7\xA5\xE4\xBD\x9C \xE3\x81\x93\xE3\x82\x93\xE3\x81\xAB\xE3\x81\xA1\xE3\x81\xAF "
    "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",
    "combining: e\xCC\x81 n\xCC\x83 a\xCC\x8A\xCC\x81 \xE0\xA4\xA8\xE0\xA4\xBF",
    "   leading and trailing   ",
    "runs:    \t\t  \n\n\n   \r\n  x",
    "digits 1234567890 3.14159 1,000,000 \xD9\xA3\xD9\xA4",
    "\n\n\n",
    "\t",
    "tabs\tand\ttabs\t\t",
    "RTL \xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7 \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D",
    "symbols <>{}[]()!@#$%^&*_+-=~`|\\/?'\"",
    "contractions: I'm you're they've it's we'll he'd 'S",
    "max code point \xF4\x8F\xBF\xBF and U+FFFD \xEF\xBF\xBD and NUL-free",
};

static void roundtrip(const t2_tokenizer *tok, const char *s, bool special)
{
    size_t n;
    int32_t *ids = enc(tok, s, false, special, &n);
    char *back = dec(tok, ids, n, false);
    assert_string_equal(back, s);
    free(back);
    free(ids);
}

static void test_seedling_roundtrip(void **state)
{
    (void)state;
    t2_tokenizer *tok = load_seedling();
    for (size_t i = 0; i < sizeof edge_cases / sizeof edge_cases[0]; i++) {
        roundtrip(tok, edge_cases[i], false);
        roundtrip(tok, edge_cases[i], true);
    }
    /* Digits are split one by one; whitespace runs keep the last space
     * for the next word (GPT-2's \s+(?!\S)). */
    size_t n;
    int32_t *ids = enc(tok, "12", false, false, &n);
    int32_t want12[] = {19, 20};
    assert_ids(ids, n, want12, 2);
    free(ids);
    t2_tok_free(tok);
}

static void expect_utf8_error(const t2_tokenizer *tok, const char *s, size_t len, size_t off)
{
    int32_t *ids = (int32_t *)1;
    size_t n = 99;
    t2_err err = {{0}};
    assert_int_equal(t2_tok_encode(tok, s, len, false, true, &ids, &n, &err), -1);
    assert_null(ids);
    assert_int_equal(n, 0);
    char want[64];
    snprintf(want, sizeof want, "byte offset %zu ", off);
    if (!strstr(err.msg, want))
        fprintf(stderr, "message: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "invalid UTF-8"));
    assert_non_null(strstr(err.msg, want));
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    t2_tokenizer *tok = load_seedling();
    expect_utf8_error(tok, "abc\xFF", 4, 3);
    expect_utf8_error(tok, "\xC3\x28", 2, 0);         /* bad continuation */
    expect_utf8_error(tok, "ok \xC0\xAF", 5, 3);      /* overlong */
    expect_utf8_error(tok, "x\xED\xA0\x80y", 5, 1);   /* surrogate */
    expect_utf8_error(tok, "ab\xE2\x82", 4, 2);       /* truncated at the end */
    expect_utf8_error(tok, "\xF4\x90\x80\x80", 4, 0); /* above U+10FFFF */
    expect_utf8_error(tok, "caf\xC3\xA9 \x80", 7, 6); /* stray continuation */
    expect_utf8_error(tok, "<|im_start|>\xFE", 13, 12);
    t2_tok_free(tok);
}

/* Streams ids one at a time; returns the concatenation. */
static char *stream_all(const t2_tokenizer *tok, const int32_t *ids, size_t n, bool skip,
                        size_t *held)
{
    t2_tok_stream s;
    t2_tok_stream_init(&s, tok, skip);
    size_t cap = t2_tok_stream_cap(tok);
    assert_true(cap >= 256);
    char *out = calloc(1, (n + 1) * cap + 1), *chunk = malloc(cap);
    size_t len = 0;
    *held = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = t2_tok_stream_push(&s, ids[i], chunk, cap);
        assert_int_equal(strlen(chunk), k);
        if (k == 0)
            (*held)++;
        memcpy(out + len, chunk, k + 1);
        len += k;
    }
    size_t k = t2_tok_stream_flush(&s, chunk, cap);
    memcpy(out + len, chunk, k + 1);
    free(chunk);
    return out;
}

static void test_stream(void **state)
{
    (void)state;
    t2_tokenizer *tok = load_seedling();
    for (size_t i = 0; i < sizeof edge_cases / sizeof edge_cases[0]; i++) {
        size_t n, held;
        int32_t *ids = enc(tok, edge_cases[i], false, true, &n);
        char *whole = dec(tok, ids, n, false);
        char *streamed = stream_all(tok, ids, n, false, &held);
        assert_string_equal(streamed, whole);
        free(whole);
        free(streamed);
        free(ids);
    }
    /* The llama emoji is four byte tokens here: three are held back. */
    size_t n, held;
    int32_t *ids = enc(tok, "\xF0\x9F\xA6\x99!", false, true, &n);
    assert_int_equal(n, 5);
    char *s = stream_all(tok, ids, n, false, &held);
    assert_string_equal(s, "\xF0\x9F\xA6\x99!");
    assert_int_equal(held, 3);
    free(s);

    /* An incomplete character at the end is flushed as U+FFFD. */
    s = stream_all(tok, ids, 2, false, &held);
    assert_string_equal(s, "\xEF\xBF\xBD");
    free(s);
    /* ... and so is a broken one in the middle, like the whole decoder. */
    int32_t broken[] = {ids[0], ids[4], ids[0], ids[1], ids[2], ids[3]};
    s = stream_all(tok, broken, 6, false, &held);
    assert_string_equal(s, "\xEF\xBF\xBD!\xF0\x9F\xA6\x99");
    char *d = dec(tok, broken, 6, false);
    assert_string_equal(d, s);
    free(d);
    free(s);
    free(ids);

    /* skip_special drops the special tokens in both decoders. */
    ids = enc(tok, "<|im_start|>user\nhi<|im_end|>", false, true, &n);
    s = stream_all(tok, ids, n, true, &held);
    assert_string_equal(s, "user\nhi");
    d = dec(tok, ids, n, true);
    assert_string_equal(d, "user\nhi");
    free(d);
    free(s);
    free(ids);

    /* A too-small buffer drops whole characters, never overflows. */
    t2_tok_stream st;
    t2_tok_stream_init(&st, tok, false);
    char tiny[2];
    int32_t is_id = t2_tok_find(tok, "\xC4\xA0is");
    assert_int_equal(t2_tok_stream_push(&st, is_id, tiny, sizeof tiny), 1);
    assert_string_equal(tiny, " ");
    assert_int_equal(t2_tok_stream_push(&st, -3, tiny, sizeof tiny), 0);

    /* decode rejects ids out of range */
    char *out = (char *)1;
    t2_err err = {{0}};
    int32_t bad[] = {5, 4096};
    assert_int_equal(t2_tok_decode(tok, bad, 2, false, &out, NULL, &err), -1);
    assert_null(out);
    assert_non_null(strstr(err.msg, "4096"));
    t2_tok_free(tok);
}

/* ---- malformed tokenizer.json ---- */

static void expect_load_error(const char *json, size_t len, const char *needle)
{
    t2_tokenizer *tok = (t2_tokenizer *)1;
    t2_err err = {{0}};
    int rc = t2_tok_load_json_buf(&tok, json, len, &err);
    if (rc == 0 || (needle && !strstr(err.msg, needle)))
        fprintf(stderr, "input %.80s -> rc %d, message \"%s\"\n", json ? json : "(null)", rc,
                err.msg);
    assert_int_equal(rc, -1);
    assert_null(tok);
    assert_true(strlen(err.msg) > 0);
    if (needle)
        assert_non_null(strstr(err.msg, needle));
}

#define BAD(j, needle) expect_load_error(j, strlen(j), needle)

static void test_malformed_json(void **state)
{
    (void)state;
    expect_load_error(NULL, 0, "empty");
    BAD("", "empty");
    BAD("{", "line");
    BAD("[1, 2]", "not an object");
    BAD("{}", "model");
    BAD("{\"model\": 5}", "model");
    BAD("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "Unigram");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": [], \"merges\": []}}", "vocab");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}", "empty vocabulary");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"0\"}, \"merges\": []}}", "integer");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", "range");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": 7}}", "merges");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}",
        "twice");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 900000}, \"merges\": []}}", "beyond");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [3]}}", "merges[0]");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}", "merge 0");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\"]]}}",
        "merges[0]");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
        " \"added_tokens\": {}}",
        "added_tokens");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
        " \"added_tokens\": [{\"id\": \"1\", \"content\": \"x\"}]}",
        "added_tokens");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
        " \"added_tokens\": [{\"id\": 1, \"content\": 5}]}",
        "content");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
        " \"added_tokens\": [{\"id\": 1, \"content\": \"x\", \"special\": \"yes\"}]}",
        "boolean");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
        " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"},"
        " \"behavior\": \"Isolated\"}}",
        "regex");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
        " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"},"
        " \"behavior\": \"Sideways\"}}",
        "behavior");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
        " \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}}",
        "BertPreTokenizer");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
        " \"normalizer\": {\"type\": \"Lowercase\"}}",
        "Lowercase");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
        " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": 3}}",
        "Sequence");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
        " \"normalizer\": [1]}",
        "normalizer");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"byte_fallback\": "
        "1}}",
        "byte_fallback");

    /* every truncation of the real file fails cleanly */
    char p[1024];
    size_t len;
    char *json = read_all(shared_path(p, sizeof p, "models/seedling/tokenizer.json"), &len);
    size_t stride = test_quick() ? 4870 : 487; /* quick mode: every 4870th cut */
    for (size_t cut = 0; cut < len; cut += stride)
        expect_load_error(json, cut, NULL);
    free(json);
}

/* Random byte flips: loading may succeed or fail, but never crashes, and
 * whatever loads can encode and decode. */
static void test_mutated_json(void **state)
{
    (void)state;
    char p[1024];
    size_t len;
    char *orig = read_all(shared_path(p, sizeof p, "models/seedling/tokenizer.json"), &len);
    char *json = malloc(len);
    uint32_t rng = 12345;
    int loaded = 0;
    int iters = test_quick() ? 20 : 200; /* quick mode: 20 mutants */
    for (int iter = 0; iter < iters; iter++) {
        memcpy(json, orig, len);
        /* Swap letters for letters and digits for digits so that most
         * mutants stay JSON and reach the tokenizer's own checks. */
        for (int k = 0; k < 4; k++) {
            rng = rng * 1664525u + 1013904223u;
            size_t at = (rng >> 8) % len;
            rng = rng * 1664525u + 1013904223u;
            char c = json[at];
            if (c >= '0' && c <= '9')
                json[at] = (char)('0' + (rng >> 8) % 10);
            else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
                json[at] = (char)('a' + (rng >> 8) % 26);
        }
        t2_tokenizer *tok;
        t2_err err = {{0}};
        if (t2_tok_load_json_buf(&tok, json, len, &err) == 0) {
            loaded++;
            size_t n;
            int32_t *ids = enc(tok, "Hello 123 <|im_start|> w\xC3\xB6rld\n", true, true, &n);
            free(dec(tok, ids, n, false)); /* a mutant may have lost tokens: no equality */
            free(ids);
            t2_tok_free(tok);
        }
    }
    fprintf(stderr, "mutated tokenizer.json: %d of %d still loaded\n", loaded, iters);
    free(json);
    free(orig);
}

/* ---- a SentencePiece-style BPE (Llama 2 / Mistral layout) ---- */

/* vocab: <unk> <s> </s>, 256 byte tokens, characters, then merges. */
static const char *const spm_chars[] = {"\xE2\x96\x81", "h", "e", "l", "o", "w", "r", "d"};
static const char *const spm_merges[][2] = {
    {"l", "l"},
    {"\xE2\x96\x81", "h"},
    {"e", "ll"},
    {"\xE2\x96\x81h", "ell"},
    {"o", "r"},
    {"\xE2\x96\x81", "w"},
    {"\xE2\x96\x81w", "or"},
};
enum {
    ID_BYTE0 = 3,
    ID_SPACE = 259,
    ID_H = 260,
    ID_O = 263,
    ID_L = 262,
    ID_D = 266,
    ID_LL = 267,
    ID_SPACE_H = 268,
    ID_ELL = 269,
    ID_HELL = 270,
    ID_WOR = 273,
    ID_TOOL = 274
};

/* pre: 0 = normalizer Prepend+Replace, 1 = Metaspace "first".
 * pairs: merges as ["a", "b"] instead of "a b". */
static char *spm_json(int pre, bool pairs)
{
    json_t *vocab = json_object();
    json_object_set_new(vocab, "<unk>", json_integer(0));
    json_object_set_new(vocab, "<s>", json_integer(1));
    json_object_set_new(vocab, "</s>", json_integer(2));
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        json_object_set_new(vocab, name, json_integer(ID_BYTE0 + b));
    }
    int id = ID_SPACE;
    for (size_t i = 0; i < sizeof spm_chars / sizeof spm_chars[0]; i++)
        json_object_set_new(vocab, spm_chars[i], json_integer(id++));
    json_t *merges = json_array();
    for (size_t i = 0; i < sizeof spm_merges / sizeof spm_merges[0]; i++) {
        char cat[32], sp[32];
        snprintf(cat, sizeof cat, "%s%s", spm_merges[i][0], spm_merges[i][1]);
        snprintf(sp, sizeof sp, "%s %s", spm_merges[i][0], spm_merges[i][1]);
        json_object_set_new(vocab, cat, json_integer(id++));
        json_array_append_new(merges, pairs ? json_pack("[ss]", spm_merges[i][0], spm_merges[i][1])
                                            : json_string(sp));
    }
    json_t *norm =
        pre == 0 ? json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}", "type", "Sequence",
                             "normalizers", "type", "Prepend", "prepend", "\xE2\x96\x81", "type",
                             "Replace", "pattern", "String", " ", "content", "\xE2\x96\x81")
                 : json_null();
    json_t *pretok = pre == 1
                         ? json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace", "replacement",
                                     "\xE2\x96\x81", "prepend_scheme", "first", "split", 0)
                         : json_null();
    json_t *root =
        json_pack("{s:[{s:i, s:s, s:b}, {s:i, s:s, s:b}, {s:i, s:s, s:b}, {s:i, s:s, s:b}],"
                  " s:o, s:o, s:{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:{s:{s:s, s:[i]}}},"
                  " s:{s:s, s:o, s:o, s:s, s:b, s:b, s:b}}",
                  "added_tokens", "id", 0, "content", "<unk>", "special", 1, "id", 1, "content",
                  "<s>", "special", 1, "id", 2, "content", "</s>", "special", 1, "id", ID_TOOL,
                  "content", "<|tool|>", "special", 0, "normalizer", norm, "pre_tokenizer", pretok,
                  "post_processor", "type", "TemplateProcessing", "single", "SpecialToken", "id",
                  "<s>", "type_id", 0, "Sequence", "id", "A", "type_id", 0, "special_tokens", "<s>",
                  "id", "<s>", "ids", 1, "model", "type", "BPE", "vocab", vocab, "merges", merges,
                  "unk_token", "<unk>", "byte_fallback", 1, "fuse_unk", 1, "ignore_merges", 0);
    assert_non_null(root);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

static t2_tokenizer *load_spm(int pre, bool pairs)
{
    char *json = spm_json(pre, pairs);
    t2_tokenizer *tok;
    t2_err err = {{0}};
    int rc = t2_tok_load_json_buf(&tok, json, strlen(json), &err);
    if (rc != 0)
        fprintf(stderr, "spm: %s\n", err.msg);
    assert_int_equal(rc, 0);
    free(json);
    return tok;
}

static void test_spm_json(void **state)
{
    (void)state;
    for (int variant = 0; variant < 3; variant++) {
        t2_tokenizer *tok = load_spm(variant == 2, variant == 1);
        assert_int_equal(t2_tok_kind(tok), T2_TOK_SPM);
        assert_int_equal(t2_tok_vocab_size(tok), ID_TOOL + 1);
        assert_int_equal(t2_tok_bos(tok), 1);
        assert_true(t2_tok_adds_bos(tok));
        size_t n;
        /* ▁ h e l l o ▁ w o r l d: lowest rank first, whatever the order */
        int32_t *ids = enc(tok, "hello world", true, true, &n);
        int32_t want[] = {1, ID_HELL, ID_O, ID_WOR, ID_L, ID_D};
        assert_ids(ids, n, want, 6);
        char *s = dec(tok, ids, n, true);
        assert_string_equal(s, "hello world");
        free(s);
        s = dec(tok, ids, n, false);
        assert_string_equal(s, "<s> hello world");
        free(s);
        free(ids);

        /* characters outside the vocabulary fall back to their bytes */
        ids = enc(tok, "h\xC3\xA9\xF0\x9F\xA6\x99", false, false, &n);
        /* "▁h" is a merge, the rest are byte tokens */
        int32_t want2m[] = {ID_SPACE_H,      ID_BYTE0 + 0xC3, ID_BYTE0 + 0xA9, ID_BYTE0 + 0xF0,
                            ID_BYTE0 + 0x9F, ID_BYTE0 + 0xA6, ID_BYTE0 + 0x99};
        assert_ids(ids, n, want2m, 7);
        s = dec(tok, ids, n, false);
        assert_string_equal(s, "h\xC3\xA9\xF0\x9F\xA6\x99");
        free(s);
        free(ids);

        /* "<|tool|>" is a non-special added token: matched even when
         * parse_special is off. Prepend applies to each stretch of text;
         * Metaspace "first" only to the one at the start. */
        ids = enc(tok, "hell<|tool|>hell", false, false, &n);
        if (variant == 2) {
            int32_t w[] = {ID_HELL, ID_TOOL, ID_H, ID_ELL};
            assert_ids(ids, n, w, 4);
        } else {
            int32_t w[] = {ID_HELL, ID_TOOL, ID_HELL};
            assert_ids(ids, n, w, 3);
        }
        free(ids);
        ids = enc(tok, "<s>", false, false, &n);
        for (size_t i = 0; i < n; i++)
            assert_int_not_equal(ids[i], 1);
        free(ids);

        /* Metaspace does not add a second space before a leading one, so
         * the decoder's strip loses it there, as in Hugging Face. */
        for (size_t i = 0; i < sizeof edge_cases / sizeof edge_cases[0]; i++)
            if (variant != 2 || edge_cases[i][0] != ' ')
                roundtrip(tok, edge_cases[i], false);
        t2_tok_free(tok);
    }
}

/* ---- speed (printed, not asserted: valgrind runs this too) ---- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A synthetic n-token vocabulary with n merges; 150k is as big as Qwen2's. */
static char *big_json(int n)
{
    size_t cap = 16u << 20, len = 0;
    char *s = malloc(cap);
    len += (size_t)snprintf(
        s + len, cap - len,
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false},"
        " \"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s\"t%d\": %d", i ? ", " : "", i, i);
    len += (size_t)snprintf(s + len, cap - len, "}, \"merges\": [");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s\"t%d t%d\"", i ? ", " : "", i, i + 1);
    snprintf(s + len, cap - len, "]}}");
    return s;
}

static void test_speed(void **state)
{
    (void)state;
    int n_vocab = test_quick() ? 15000 : 150000; /* quick mode: a 15k-token vocabulary */
    char *json = big_json(n_vocab);
    t2_tokenizer *tok;
    t2_err err = {{0}};
    double t0 = now();
    assert_int_equal(t2_tok_load_json_buf(&tok, json, strlen(json), &err), 0);
    double t1 = now();
    assert_int_equal(t2_tok_vocab_size(tok), n_vocab);
    fprintf(stderr, "load of a %d-token tokenizer.json: %.3f s\n", n_vocab, t1 - t0);
    t2_tok_free(tok);
    free(json);

    tok = load_seedling();
    char p[1024];
    size_t len, n;
    char *text = read_all(shared_path(p, sizeof p, "models/seedling/data/math_test.jsonl"), &len);
    int32_t *ids;
    t0 = now();
    assert_int_equal(t2_tok_encode(tok, text, len, false, true, &ids, &n, &err), 0);
    t1 = now();
    fprintf(stderr, "encode: %zu bytes -> %zu tokens in %.4f s (%.1f MB/s)\n", len, n, t1 - t0,
            (double)len / (t1 - t0) / 1e6);
    char *back = dec(tok, ids, n, false);
    assert_string_equal(back, text);
    free(back);
    free(ids);
    free(text);
    t2_tok_free(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seedling_meta),
        cmocka_unit_test(test_seedling_vectors),
        cmocka_unit_test(test_seedling_buf_and_plain_specials),
        cmocka_unit_test(test_seedling_roundtrip),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_mutated_json),
        cmocka_unit_test(test_spm_json),
        cmocka_unit_test(test_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
