/* Subcommands of the t2 binary. Each returns the process exit status. */
#ifndef T2_CLI_H
#define T2_CLI_H

int t2_cli_generate(int argc, char **argv);
int t2_cli_adapt(int argc, char **argv);
int t2_cli_serve(int argc, char **argv); /* serve.c */
int t2_cli_bench(int argc, char **argv); /* bench/bench.c */

#endif
