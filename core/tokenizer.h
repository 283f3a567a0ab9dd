/* BPE tokenizer: byte-level BPE (GPT-2 / Llama 3 / Qwen2 / SmolLM2) and
 * SentencePiece-style BPE with byte fallback (Llama 2 / Mistral / Phi-3),
 * loaded from a Hugging Face tokenizer.json or a GGUF's tokenizer.ggml.*. */
#ifndef T2_TOKENIZER_H
#define T2_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "gguf.h"

typedef struct t2_tokenizer t2_tokenizer;

enum t2_tok_kind {
    T2_TOK_BYTE_LEVEL = 0, /* GPT-2 style byte-to-unicode BPE */
    T2_TOK_SPM = 1,        /* SentencePiece BPE: '▁' for space, <0xNN> byte fallback */
};

/* tokenizer_config_json may be NULL; when given it supplies bos/eos
 * names and the chat template. */
int t2_tok_load_json(t2_tokenizer **out, const char *tokenizer_json_path,
                     const char *tokenizer_config_json_path, t2_err *err);
/* Parses tokenizer.json text from memory (for tests and fuzzing). */
int t2_tok_load_json_buf(t2_tokenizer **out, const char *json, size_t len, t2_err *err);
int t2_tok_load_gguf(t2_tokenizer **out, const t2_gguf *g, t2_err *err);
void t2_tok_free(t2_tokenizer *tok);

enum t2_tok_kind t2_tok_kind(const t2_tokenizer *tok);
int32_t t2_tok_vocab_size(const t2_tokenizer *tok);
int32_t t2_tok_bos(const t2_tokenizer *tok); /* -1 if none */
int32_t t2_tok_eos(const t2_tokenizer *tok); /* -1 if none */
/* Whether the model's own tokenizer prepends BOS by default (Hugging Face
 * post_processor / tokenizer_config add_bos_token, GGUF add_bos_token). */
bool t2_tok_adds_bos(const t2_tokenizer *tok);
/* Id of a token by its exact vocabulary text, or -1. */
int32_t t2_tok_find(const t2_tokenizer *tok, const char *text);
bool t2_tok_is_special(const t2_tokenizer *tok, int32_t id);
/* Chat template text from tokenizer_config.json / tokenizer.chat_template,
 * or NULL. Owned by the tokenizer. */
const char *t2_tok_chat_template(const t2_tokenizer *tok);

/* Encodes UTF-8 text. Invalid UTF-8 is rejected with an error naming the
 * byte offset. When parse_special is true, the text of special/added
 * tokens (e.g. "<|im_start|>") maps to their ids; otherwise it is plain
 * text. add_bos prepends the BOS id when the model has one.
 * *ids is malloc'd, caller frees. */
int t2_tok_encode(const t2_tokenizer *tok, const char *text, size_t len, bool add_bos,
                  bool parse_special, int32_t **ids, size_t *n_ids, t2_err *err);

/* The raw bytes a token stands for (byte-level: unicode-to-byte mapped;
 * SPM: '▁' -> ' ', <0xNN> -> that byte). Special tokens give their text.
 * Returns the byte count written (<= cap) or -1 for an invalid id. */
int t2_tok_token_bytes(const t2_tokenizer *tok, int32_t id, char *buf, size_t cap);

/* Decodes ids to a malloc'd NUL-terminated UTF-8 string. skip_special
 * drops special tokens. SPM: the leading space the encoder added is
 * removed. Invalid UTF-8 sequences become U+FFFD. */
int t2_tok_decode(const t2_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                  char **out, size_t *out_len, t2_err *err);

/* Incremental decoder for streaming: holds back an incomplete UTF-8
 * sequence until the token that completes it arrives. */
typedef struct t2_tok_stream {
    const t2_tokenizer *tok;
    bool skip_special;
    bool at_start; /* SPM: strip the first leading space */
    char pending[8];
    size_t n_pending;
} t2_tok_stream;

/* at_start starts true for SPM; set it false after init when streaming a
 * continuation, so its first token keeps its leading space. */
void t2_tok_stream_init(t2_tok_stream *s, const t2_tokenizer *tok, bool skip_special);
/* Appends the complete UTF-8 text this token finishes to out (NUL
 * terminated, at most cap-1 bytes; cap >= t2_tok_stream_cap(tok) always
 * suffices for one token (it is at least 256); with less, text
 * that does not fit is dropped, whole characters at a time). Returns the
 * number of bytes written. */
size_t t2_tok_stream_push(t2_tok_stream *s, int32_t id, char *out, size_t cap);
/* Flushes held-back bytes (as U+FFFD when incomplete). */
size_t t2_tok_stream_flush(t2_tok_stream *s, char *out, size_t cap);
size_t t2_tok_stream_cap(const t2_tokenizer *tok);

#endif
