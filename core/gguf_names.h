/* Tensor naming and layout shared by the GGUF exporter and loader:
 * Hugging Face parameter names <-> llama.cpp GGUF tensor names, and the
 * row permutation llama.cpp applies to Llama's Q/K projections. */
#ifndef T2_GGUF_NAMES_H
#define T2_GGUF_NAMES_H

#include <stdbool.h>
#include <stddef.h>

/* "model.layers.3.mlp.up_proj.weight" -> "blk.3.ffn_up.weight".
 * Returns 0, or -1 if the name has no GGUF equivalent or does not fit. */
int t2_gguf_name_from_hf(const char *hf, char *out, size_t cap);
/* The inverse; -1 for unknown names. */
int t2_gguf_name_to_hf(const char *gguf, char *out, size_t cap);

/* llama.cpp's convert_hf_to_gguf.py permutes the rows of Llama's q_proj
 * and k_proj (weights and biases) so that ggml's interleaved RoPE (pairs
 * 2i, 2i+1) computes what HF's rotate-half RoPE (pairs i, i+d/2) does:
 *   w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2).reshape(rows, cols)
 * permute_qk does that (src -> dst, rows x cols row-major); inverse undoes
 * it. rows must be a multiple of 2 * n_head. src and dst must differ. */
void t2_gguf_permute_qk(const float *src, float *dst, size_t rows, size_t cols, int n_head,
                        bool inverse);

/* Whether an HF name is a q/k projection (weight or bias) that llama
 * permutes; *is_k tells which head count applies. */
bool t2_gguf_is_permuted_qk(const char *hf, bool *is_k);

#endif
