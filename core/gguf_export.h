/* Hugging Face model directory -> llama.cpp-compatible GGUF (architecture
 * llama or qwen2): metadata, weights (F32/F16/BF16/Q8_0) and the embedded
 * byte-level BPE tokenizer. The t2-hf-to-gguf tool is a thin wrapper. */
#ifndef T2_GGUF_EXPORT_H
#define T2_GGUF_EXPORT_H

#include "error.h"
#include "gguf.h"
#include "gguf_write.h"
#include "model.h"

typedef struct t2_gguf_export_opts {
    /* storage type for 2-D matrices; 1-D tensors (norms, biases) are
     * always F32, and Q8_0 falls back to F16 for rows that are not a
     * multiple of 32 */
    enum t2_ggml_type type;
    const char *pre; /* tokenizer.ggml.pre; NULL = "default" */
} t2_gguf_export_opts;

/* Loads hf_dir with t2_model_load and writes out_path atomically. */
int t2_gguf_export(const char *hf_dir, const char *out_path, const t2_gguf_export_opts *opts,
                   t2_err *err);

/* Same from a model already loaded from hf_dir (the tokenizer files are
 * read from hf_dir). */
int t2_gguf_export_model(const t2_model *m, const char *hf_dir, const char *out_path,
                         const t2_gguf_export_opts *opts, t2_err *err);

/* Adds tokenizer.ggml.* and tokenizer.chat_template from hf_dir's
 * tokenizer.json / tokenizer_config.json (parsed with jansson here, not
 * through the tokenizer module) to w. The token list is padded to
 * cfg->vocab with "[PAD<id>]" entries as llama.cpp's converter does. */
int t2_gguf_export_tokenizer(t2_gguf_writer *w, const char *hf_dir, const t2_config *cfg,
                             const char *pre, t2_err *err);

/* "f32", "f16", "bf16", "q8_0" (case-insensitive) -> type; -1 if unknown. */
int t2_gguf_parse_type_name(const char *s, enum t2_ggml_type *out);

#endif
