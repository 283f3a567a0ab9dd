/* t2-hf-to-gguf: converts a Hugging Face model directory (Llama / Qwen2,
 * safetensors) to a llama.cpp-compatible GGUF file. */
#include <stdio.h>
#include <string.h>

#include "gguf_export.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: t2-hf-to-gguf [--type f32|f16|bf16|q8_0] [--pre NAME] MODEL_DIR OUT.gguf\n"
               "  --type  storage type of 2-D weight matrices (default f16); norms and\n"
               "          biases are always f32\n"
               "  --pre   tokenizer.ggml.pre, the llama.cpp pre-tokenizer name\n"
               "          (e.g. smollm, llama-bpe, qwen2; default \"default\")\n");
}

int main(int argc, char **argv)
{
    t2_gguf_export_opts opts = {.type = T2_GGML_F16, .pre = "default"};
    const char *pos[2];
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--type") == 0 && i + 1 < argc) {
            if (t2_gguf_parse_type_name(argv[++i], &opts.type) != 0) {
                fprintf(stderr, "t2-hf-to-gguf: unknown --type '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--pre") == 0 && i + 1 < argc) {
            opts.pre = argv[++i];
        } else if (argv[i][0] == '-' || n_pos == 2) {
            usage(stderr);
            return 2;
        } else {
            pos[n_pos++] = argv[i];
        }
    }
    if (n_pos != 2) {
        usage(stderr);
        return 2;
    }
    t2_err err;
    if (t2_gguf_export(pos[0], pos[1], &opts, &err) != 0) {
        fprintf(stderr, "t2-hf-to-gguf: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s (%s)\n", pos[1], t2_ggml_type_name(opts.type));
    return 0;
}
