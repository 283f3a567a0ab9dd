/* Tokenizer internals shared by the tokenizer_*.c files: the vocabulary
 * table, the merge map, the encode pipeline (normalizers, pre-tokenizers,
 * BPE model) and the loaders' helpers. Not a public API. */
#ifndef T2_TOK_INTERNAL_H
#define T2_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "tokenizer.h"

/* Hard limits so hostile files cannot ask for absurd allocations. */
#define TOK_MAX_VOCAB (1 << 22)
#define TOK_MAX_TOKEN_LEN 65536
#define TOK_MAX_STEPS 32

/* Per-token attributes. */
enum {
    TA_SPECIAL = 1,  /* control/special: matched only with parse_special, skippable */
    TA_ADDED = 2,    /* matched in the raw text before pre-tokenization */
    TA_BYTE = 4,     /* <0xNN> byte-fallback token */
    TA_UNUSED = 8,   /* no text (hole in the id space) */
    TA_NOMERGE = 16, /* never produced by merging text (SPM score merges) */
    TA_LSTRIP = 32,  /* added token swallows whitespace on its left */
    TA_RSTRIP = 64,  /* ... and on its right */
    TA_SINGLE_WORD = 128,
};

/* Vocabulary: token text (as the model stores it, e.g. "Ġthe" or "▁the")
 * and the raw bytes it decodes to, both in pools; a hash index text->id. */
typedef struct tok_vocab {
    int32_t n;
    uint32_t *off, *len;   /* text in pool */
    uint32_t *boff, *blen; /* decoded bytes in bpool */
    uint8_t *attr;
    float *score; /* SPM score merges only, else NULL */
    char *pool;
    size_t pool_len, pool_cap;
    char *bpool;
    size_t bpool_len;
    uint32_t *slots; /* id or UINT32_MAX */
    uint32_t mask;
    size_t max_bytes; /* longest decoded token */
} tok_vocab;

typedef struct tok_merge_slot {
    uint64_t key; /* (left id << 32) | right id; UINT64_MAX = empty */
    uint32_t rank;
    int32_t id;
} tok_merge_slot;

typedef struct tok_merges {
    tok_merge_slot *slots;
    uint32_t mask;
    size_t n;
} tok_merges;

/* Added tokens, sorted by first byte then longest first, so the scan
 * tries only the candidates that can start at a position. */
typedef struct tok_added {
    int32_t *ids;
    size_t n;
    uint32_t first[257]; /* ids[first[b] .. first[b+1]) start with byte b */
} tok_added;

enum tok_norm_type { TN_PREPEND, TN_REPLACE };

typedef struct tok_norm {
    enum tok_norm_type type;
    char *str; /* PREPEND: the prefix; REPLACE: the replacement */
    size_t str_len;
    pcre2_code *re; /* REPLACE: what to replace */
} tok_norm;

enum tok_pre_type { TP_SPLIT, TP_METASPACE, TP_PREFIX_SPACE };

/* Hugging Face SplitDelimiterBehavior */
enum tok_split_behavior { TS_REMOVED, TS_ISOLATED, TS_MERGED_PREV, TS_MERGED_NEXT, TS_CONTIGUOUS };

enum tok_prepend_scheme { TM_ALWAYS, TM_FIRST, TM_NEVER };

typedef struct tok_pre {
    enum tok_pre_type type;
    pcre2_code *re; /* SPLIT; METASPACE: the replacement char when split */
    enum tok_split_behavior behavior;
    bool invert;
    char rep[8]; /* METASPACE replacement (UTF-8) */
    size_t rep_len;
    enum tok_prepend_scheme prepend;
    bool split;
} tok_pre;

typedef struct tok_model {
    bool score_merges; /* GGUF SentencePiece: merge by token score, no merge list */
    bool byte_fallback;
    bool fuse_unk;
    bool ignore_merges;
    int32_t unk;
    int32_t byte_tok[256]; /* byte-level: token of the mapped char; SPM: <0xNN> */
    tok_merges merges;
} tok_model;

struct t2_tokenizer {
    enum t2_tok_kind kind;
    tok_vocab v;
    tok_model m;
    tok_added added;
    tok_norm norms[TOK_MAX_STEPS];
    size_t n_norms;
    tok_pre pres[TOK_MAX_STEPS];
    size_t n_pres;
    int32_t bos, eos;
    bool add_bos;
    bool strip_space; /* SPM: decoder drops the leading space the encoder added */
    char *chat_template;
};

/* tokenizer.c: loaders start from tok_new and end with tok_finish_load
 * (after the vocabulary is finished and the merges added). */
t2_tokenizer *tok_new(void);
int tok_finish_load(t2_tokenizer *tok, t2_err *err);

/* tokenizer_vocab.c */
int tok_vocab_init(tok_vocab *v, int32_t n, t2_err *err);
void tok_vocab_free(tok_vocab *v);
/* Sets the text of id (fails if it already has one). */
int tok_vocab_set(tok_vocab *v, int32_t id, const char *text, size_t len, uint8_t attr,
                  t2_err *err);
/* Sets an added token: merges attributes when id already has this text,
 * replaces the text when it has another. */
int tok_vocab_set_added(tok_vocab *v, int32_t id, const char *text, size_t len, uint8_t attr,
                        t2_err *err);
/* Builds the text->id index and the decoded bytes; call once all are set. */
int tok_vocab_finish(tok_vocab *v, enum t2_tok_kind kind, t2_err *err);
int32_t tok_vocab_find(const tok_vocab *v, const char *s, size_t len);
static inline const char *tok_text(const tok_vocab *v, int32_t id)
{
    return v->pool + v->off[id];
}

/* tokenizer_merges.c */
uint32_t tok_table_size(size_t n); /* power of two >= 2n, for both hash tables */
int tok_merges_init(tok_merges *m, size_t n, t2_err *err);
void tok_merges_free(tok_merges *m);
void tok_merges_add(tok_merges *m, int32_t a, int32_t b, uint32_t rank, int32_t id);
bool tok_merges_get(const tok_merges *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id);
/* Adds a merge "a b" (split at the first space after the first char). */
int tok_merges_add_text(t2_tokenizer *tok, const char *s, size_t len, uint32_t rank, t2_err *err);
int tok_merges_add_pair(t2_tokenizer *tok, const char *a, size_t alen, const char *b, size_t blen,
                        uint32_t rank, t2_err *err);

/* Collects the TA_ADDED tokens into the scan table. */
int tok_added_build(t2_tokenizer *tok, t2_err *err);
/* Fills m.byte_tok from the vocabulary. */
void tok_model_bytes(t2_tokenizer *tok);

/* GPT-2's byte <-> printable code point mapping. */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp); /* -1 if not in the mapping */

/* tokenizer_utf8.c */
size_t tok_utf8_len(uint8_t lead); /* 1..4, 0 for an invalid lead */
bool tok_utf8_valid(const char *s, size_t n, size_t *bad_off);
size_t tok_utf8_encode(uint32_t cp, char *out);             /* out has 4 bytes */
int tok_utf8_decode(const char *s, size_t n, uint32_t *cp); /* length, -1 if invalid */
/* Whether c can be continuation byte i (>= 1) of a sequence led by lead. */
bool tok_utf8_cont_ok(uint8_t lead, size_t i, uint8_t c);

/* tokenizer_pretok.c */
pcre2_code *tok_regex_compile(const char *pat, size_t len, bool literal, t2_err *err);
void tok_pipeline_free(t2_tokenizer *tok);

#define TOK_GPT2_REGEX                                                                             \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define TOK_LLAMA3_REGEX                                                                           \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}"         \
    "\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define TOK_QWEN2_REGEX                                                                            \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}"              \
    "\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* Adds pipeline steps (fail when TOK_MAX_STEPS is reached). */
int tok_add_split(t2_tokenizer *tok, const char *pat, size_t len, bool literal,
                  enum tok_split_behavior b, bool invert, t2_err *err);
int tok_add_norm_prepend(t2_tokenizer *tok, const char *s, size_t len, t2_err *err);
int tok_add_norm_replace(t2_tokenizer *tok, const char *pat, size_t pat_len, bool literal,
                         const char *with, size_t with_len, t2_err *err);
int tok_add_metaspace(t2_tokenizer *tok, const char *rep, size_t rep_len,
                      enum tok_prepend_scheme scheme, bool split, t2_err *err);
int tok_add_prefix_space(t2_tokenizer *tok, t2_err *err);

/* Encode-time scratch state (one per t2_tok_encode call). */
typedef struct tok_buf {
    char *p;
    size_t len, cap;
} tok_buf;

typedef struct tok_piece {
    uint32_t off, len;
    bool origin; /* starts at offset 0 of the input (Metaspace "first") */
} tok_piece;

typedef struct tok_span {
    uint32_t start, end;
    bool match;
} tok_span;

typedef struct tok_sym {
    int32_t prev, next;
    uint32_t start, n;
    int32_t id;
} tok_sym;

typedef struct tok_pair {
    double key; /* smaller merges first */
    int32_t left, right;
    uint32_t size;
    int32_t id;
} tok_pair;

typedef struct tok_ctx {
    const t2_tokenizer *tok;
    int32_t *ids;
    size_t n_ids, cap_ids;
    tok_buf text, scratch;
    tok_piece *pieces, *pieces2;
    size_t n_pieces, n_pieces2, cap_pieces, cap_pieces2;
    tok_span *spans;
    size_t n_spans, cap_spans;
    tok_sym *syms;
    size_t cap_syms;
    tok_pair *heap;
    size_t n_heap, cap_heap;
    pcre2_match_data *md;
    t2_err *err;
} tok_ctx;

/* Grows *p (of *cap elements) to hold at least need elements. */
int tok_grow(void **p, size_t *cap, size_t need, size_t elem, t2_err *err);
int tok_buf_reserve(tok_buf *b, size_t extra, t2_err *err);
int tok_buf_append(tok_buf *b, const char *s, size_t n, t2_err *err);
int tok_push_id(tok_ctx *c, int32_t id);

/* Normalizes and pre-tokenizes text[0..len) of the input into c->pieces
 * over c->text. */
int tok_pretokenize(tok_ctx *c, const char *s, size_t len, bool origin);
/* tokenizer_bpe.c: runs the model over one piece, appending ids. */
int tok_bpe_piece(tok_ctx *c, const char *p, size_t n);

/* tokenizer_decode.c */
typedef struct tok_sink {
    char *p;
    size_t len, cap;
    bool grow; /* realloc as needed, else drop what does not fit */
    bool failed;
} tok_sink;
/* Feeds bytes through the UTF-8 repair state in pend/n_pend. */
void tok_utf8_feed(tok_sink *s, char *pend, size_t *n_pend, const char *b, size_t n);
void tok_utf8_flush(tok_sink *s, char *pend, size_t *n_pend);

#endif
