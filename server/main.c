/* t2: Transformer² inference server and tools, one binary. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "blas_core.h"
#include "cli.h"

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: t2 <command> [options]\n"
        "\n"
        "commands:\n"
        "  generate   generate text from a prompt (t2 generate --help)\n"
        "  adapt      few-shot search of an expert mixture, saved as a profile (t2 adapt --help)\n"
        "  serve      serve the model over HTTP (t2 serve --help)\n"
        "  bench      measure prefill/decode speed against the machine's limits (t2 bench --help)\n"
        "  version    print the version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    bool computes = strcmp(cmd, "generate") == 0 || strcmp(cmd, "adapt") == 0 ||
                    strcmp(cmd, "serve") == 0 || strcmp(cmd, "bench") == 0;
    if (computes) /* returns unless OpenBLAS runs kernels older than the CPU */
        t2_blas_core_restart(argv);
    char note[256];
    if (computes && strcmp(cmd, "serve") != 0 && t2_blas_core_note(note, sizeof note))
        fprintf(stderr, "t2: %s\n", note); /* serve logs it (log format, level) */
    if (strcmp(cmd, "generate") == 0)
        return t2_cli_generate(argc - 1, argv + 1);
    if (strcmp(cmd, "adapt") == 0)
        return t2_cli_adapt(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0)
        return t2_cli_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return t2_cli_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("t2 %s\n", T2_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "t2: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
