/* t2 generate: load a model, generate from one prompt, text on stdout. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "cli.h"
#include "engine.h"

#define MAX_STOPS 16
#define MAX_MIX 32

typedef struct gen_opts {
    const char *model;
    const char *prompt;
    const char *system;
    bool chat;
    bool verbose;
    int threads;
    int n_ctx;
    const char *stops[MAX_STOPS];
    size_t n_stop;
    t2_gen_params gp;
    /* Transformer² */
    t2_engine_opts eo;
    t2_adapt_req req;
    char *mix_spec;
    const char *mix_names[MAX_MIX];
    float mix_alpha[MAX_MIX];
} gen_opts;

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: t2 generate --model DIR|FILE.gguf --prompt TEXT [options]\n"
        "\n"
        "  -m, --model PATH        Hugging Face model directory or GGUF file\n"
        "  -p, --prompt TEXT       prompt text (special-token text such as <|im_start|> is "
        "parsed)\n"
        "      --chat              wrap the prompt as a user message in the model's chat template\n"
        "      --system TEXT       system message (with --chat)\n"
        "  -n, --max-tokens N      tokens to generate at most (default 256)\n"
        "      --temperature T     0 = greedy (default); > 0 samples\n"
        "      --top-k K           keep the K most likely tokens (0 = off)\n"
        "      --top-p P           nucleus sampling threshold (1 = off)\n"
        "      --min-p P           drop tokens below P x the top probability (0 = off)\n"
        "      --repeat-penalty R  penalise tokens seen in the last 64 (1 = off)\n"
        "      --frequency-penalty F, --presence-penalty P\n"
        "                          subtract F times a token's count in the last 64, and P\n"
        "                          once if it is there (OpenAI's; -2..2, 0 = off)\n"
        "      --seed S            random seed for sampling (default 0)\n"
        "      --stop TEXT         stop before this text (repeatable, up to %d)\n"
        "      --ignore-eos        keep generating past end-of-sequence tokens\n"
        "  -t, --threads N         worker threads (default: all cores)\n"
        "  -c, --ctx N             context length (default: the model's maximum)\n"
        "  -v, --verbose           print load and speed figures on stderr\n"
        "\n"
        "Transformer² adaptation (needs --experts):\n"
        "      --experts DIR       expert vectors (*.safetensors) to adapt with\n"
        "      --strategy S        none | expert | mixture | prompt | classifier | profile\n"
        "                          (default: expert with --expert, mixture with --mix, else none)\n"
        "      --expert NAME       use one expert (strategy expert)\n"
        "      --mix A=0.5,B=0.2   explicit mixture weights (strategy mixture)\n"
        "      --method M          pass-1 classification: likelihood (default) | generate\n"
        "      --classify-prompt T classification system prompt; {labels} and {descriptions}\n"
        "                          are filled in (default: %s)\n"
        "      --profiles DIR      adaptation profiles (from t2 adapt); --profile NAME uses one\n"
        "      --svd-cache DIR     cache of the SVD factors (default: none)\n"
        "      --svf-set SET       adapted matrices: mlp (default), attn, mlp,attn\n"
        "      --weights FMT       weights in memory: f32 (default), bf16, q8_0\n"
        "      --kv-cache FMT      K/V cache: f32 (default), f16 (half the memory)\n",
        MAX_STOPS, T2_DEFAULT_CLASSIFY_PROMPT);
}

static int parse_num(const char *s, double lo, double hi, const char *what, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "t2 generate: invalid %s '%s' (expected %g..%g)\n", what, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* "math=0.5,code=0.25" */
static int parse_mix(gen_opts *o, const char *spec)
{
    free(o->mix_spec);
    o->mix_spec = strdup(spec);
    o->req.n_mix = 0;
    for (char *save = NULL, *tok = strtok_r(o->mix_spec, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        char *end = NULL;
        double a = eq ? strtod(eq + 1, &end) : 0;
        if (!eq || end == eq + 1 || *end || o->req.n_mix == MAX_MIX) {
            fprintf(stderr, "t2 generate: --mix wants NAME=WEIGHT,... (at most %d), got '%s'\n",
                    MAX_MIX, tok);
            return -1;
        }
        *eq = '\0';
        o->mix_names[o->req.n_mix] = tok;
        o->mix_alpha[o->req.n_mix++] = (float)a;
    }
    o->req.mix_names = o->mix_names;
    o->req.mix_alpha = o->mix_alpha;
    return 0;
}

static int parse_args(int argc, char **argv, gen_opts *o)
{
    static const struct option longopts[] = {{"model", required_argument, 0, 'm'},
                                             {"prompt", required_argument, 0, 'p'},
                                             {"chat", no_argument, 0, 'C'},
                                             {"system", required_argument, 0, 'S'},
                                             {"max-tokens", required_argument, 0, 'n'},
                                             {"temperature", required_argument, 0, 'T'},
                                             {"top-k", required_argument, 0, 'K'},
                                             {"top-p", required_argument, 0, 'P'},
                                             {"min-p", required_argument, 0, 'M'},
                                             {"repeat-penalty", required_argument, 0, 'R'},
                                             {"frequency-penalty", required_argument, 0, 'F'},
                                             {"presence-penalty", required_argument, 0, 'N'},
                                             {"seed", required_argument, 0, 's'},
                                             {"stop", required_argument, 0, 'x'},
                                             {"ignore-eos", no_argument, 0, 'E'},
                                             {"threads", required_argument, 0, 't'},
                                             {"ctx", required_argument, 0, 'c'},
                                             {"verbose", no_argument, 0, 'v'},
                                             {"help", no_argument, 0, 'h'},
                                             {"experts", required_argument, 0, 1001},
                                             {"strategy", required_argument, 0, 1002},
                                             {"expert", required_argument, 0, 1003},
                                             {"mix", required_argument, 0, 1004},
                                             {"method", required_argument, 0, 1005},
                                             {"classify-prompt", required_argument, 0, 1006},
                                             {"profiles", required_argument, 0, 1007},
                                             {"profile", required_argument, 0, 1008},
                                             {"svd-cache", required_argument, 0, 1009},
                                             {"svf-set", required_argument, 0, 1010},
                                             {"weights", required_argument, 0, 1011},
                                             {"kv-cache", required_argument, 0, 1012},
                                             {0, 0, 0, 0}};
    bool strategy_given = false;
    t2_err err;
    int ch;
    double v;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "m:p:n:t:c:vh", longopts, NULL)) != -1) {
        int bad = 0;
        switch (ch) {
        case 'm': o->model = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'C': o->chat = true; break;
        case 'S': o->system = optarg; break;
        case 'n':
            bad = parse_num(optarg, 1, 1e7, "--max-tokens", &v);
            o->gp.max_tokens = (int)v;
            break;
        case 'T':
            bad = parse_num(optarg, 0, 100, "--temperature", &v);
            o->gp.sampling.temperature = (float)v;
            break;
        case 'K':
            bad = parse_num(optarg, 0, 1e9, "--top-k", &v);
            o->gp.sampling.top_k = (int)v;
            break;
        case 'P':
            bad = parse_num(optarg, 1e-9, 1, "--top-p", &v);
            o->gp.sampling.top_p = (float)v;
            break;
        case 'M':
            bad = parse_num(optarg, 0, 1, "--min-p", &v);
            o->gp.sampling.min_p = (float)v;
            break;
        case 'R':
            bad = parse_num(optarg, 1e-6, 100, "--repeat-penalty", &v);
            o->gp.sampling.repeat_penalty = (float)v;
            break;
        case 'F':
            bad = parse_num(optarg, -2, 2, "--frequency-penalty", &v);
            o->gp.sampling.frequency_penalty = (float)v;
            break;
        case 'N':
            bad = parse_num(optarg, -2, 2, "--presence-penalty", &v);
            o->gp.sampling.presence_penalty = (float)v;
            break;
        case 's':
            bad = parse_num(optarg, 0, 1.8e19, "--seed", &v);
            o->gp.sampling.seed = (uint64_t)v;
            break;
        case 'x':
            if (o->n_stop == MAX_STOPS) {
                fprintf(stderr, "t2 generate: at most %d --stop strings\n", MAX_STOPS);
                return -1;
            }
            o->stops[o->n_stop++] = optarg;
            break;
        case 'E': o->gp.ignore_eos = true; break;
        case 't':
            bad = parse_num(optarg, 1, 1024, "--threads", &v);
            o->threads = (int)v;
            break;
        case 'c':
            bad = parse_num(optarg, 1, 1 << 24, "--ctx", &v);
            o->n_ctx = (int)v;
            break;
        case 'v': o->verbose = true; break;
        case 'h': usage(stdout); exit(0);
        case 1001: o->eo.experts_dir = optarg; break;
        case 1002:
            strategy_given = true;
            if (t2_strategy_parse(optarg, &o->req.strategy) != 0 ||
                o->req.strategy == T2_STRATEGY_FEW_SHOT) {
                fprintf(stderr, "t2 generate: unknown strategy '%s' (few-shot search: t2 adapt)\n",
                        optarg);
                return -1;
            }
            break;
        case 1003: o->req.expert = optarg; break;
        case 1004: bad = parse_mix(o, optarg); break;
        case 1005:
            if (t2_cls_method_parse(optarg, &o->req.method) != 0) {
                fprintf(stderr, "t2 generate: unknown method '%s' (likelihood, generate)\n",
                        optarg);
                return -1;
            }
            break;
        case 1006: o->eo.classify_prompt = optarg; break;
        case 1007: o->eo.profiles_dir = optarg; break;
        case 1008: o->req.profile = optarg; break;
        case 1009: o->eo.svd_cache_dir = optarg; break;
        case 1010:
            if (t2_svf_parse_set(optarg, &o->eo.svf_set, &err) != 0) {
                fprintf(stderr, "t2 generate: %s\n", err.msg);
                return -1;
            }
            break;
        case 1011:
            if (t2_wtype_parse(optarg, &o->eo.weights, &err) != 0) {
                fprintf(stderr, "t2 generate: %s\n", err.msg);
                return -1;
            }
            break;
        case 1012:
            if (t2_kv_cache_parse(optarg, &o->eo.kv_f16, &err) != 0) {
                fprintf(stderr, "t2 generate: --kv-cache: %s\n", err.msg);
                return -1;
            }
            break;
        default: usage(stderr); return -1;
        }
        if (bad)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "t2 generate: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!o->model || !o->prompt) {
        fprintf(stderr, "t2 generate: --model and --prompt are required\n");
        usage(stderr);
        return -1;
    }
    o->gp.stop = o->stops;
    o->gp.n_stop = o->n_stop;
    if (!strategy_given)
        o->req.strategy = o->req.expert    ? T2_STRATEGY_EXPERT
                          : o->req.n_mix   ? T2_STRATEGY_MIXTURE
                          : o->req.profile ? T2_STRATEGY_PROFILE
                                           : T2_STRATEGY_NONE;
    if (o->req.strategy != T2_STRATEGY_NONE && !o->eo.experts_dir) {
        fprintf(stderr, "t2 generate: strategy '%s' needs --experts DIR\n",
                t2_strategy_name(o->req.strategy));
        return -1;
    }
    return 0;
}

/* Prompt ids: the raw text (special-token text parsed, BOS when the
 * tokenizer adds one), or the chat template around a user message. */
static int prompt_ids(const gen_opts *o, t2_engine *e, int32_t **ids, size_t *n_ids, t2_err *err)
{
    if (!o->chat)
        return t2_tok_encode(e->model->tok, o->prompt, strlen(o->prompt),
                             t2_tok_adds_bos(e->model->tok), true, ids, n_ids, err);
    bool known;
    t2_chat_detect(t2_tok_chat_template(e->model->tok), &known);
    if (!known)
        fprintf(stderr, "t2: warning: unrecognised chat template, using ChatML\n");
    t2_chat_msg msgs[2];
    size_t n = 0;
    if (o->system)
        msgs[n++] = (t2_chat_msg){"system", o->system};
    msgs[n++] = (t2_chat_msg){"user", o->prompt};
    return t2_engine_chat_ids(e, msgs, n, ids, n_ids, err);
}

static bool print_piece(void *user, const char *text, size_t len, int32_t token)
{
    (void)user;
    (void)token;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

static void log_stderr(void *user, const char *msg)
{
    if (*(const bool *)user)
        fprintf(stderr, "t2: %s\n", msg);
}

static void report_decision(const t2_decision *d)
{
    fprintf(stderr, "t2: pass 1 (%s): ", t2_strategy_name(d->strategy));
    if (d->label[0])
        fprintf(stderr, "label '%s', ", d->label);
    fprintf(stderr, "mixture {");
    for (size_t i = 0; i < d->mixture.n; i++)
        fprintf(stderr, "%s%s: %.4g", i ? ", " : "", d->mixture.terms[i].expert->name,
                d->mixture.terms[i].alpha);
    fprintf(stderr, "}, %.1f ms, %d tokens\n", d->pass1_ms, d->pass1_tokens);
}

static int run(gen_opts *o)
{
    t2_err err = {{0}};
    t2_engine *e = NULL;
    t2_ctx *ctx = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    t2_gen_result res = {0};
    t2_decision d = {0};
    t2_adapted *w = NULL;
    int status = 1, code;
    o->eo.model_path = o->model;
    o->eo.threads = o->threads;
    o->eo.log = log_stderr;
    o->eo.log_user = &o->verbose;
    if (t2_engine_open(&e, &o->eo, &err) != 0 ||
        t2_ctx_create(&ctx, e->model, e->pool, o->n_ctx, &err) != 0 ||
        prompt_ids(o, e, &ids, &n_ids, &err) != 0 ||
        t2_engine_decide(e, ctx, &o->req, o->prompt, &d, &code, &err) != 0 ||
        t2_engine_weights(e, &d.mixture, o->gp.max_tokens, &w, &err) != 0) {
        fprintf(stderr, "t2 generate: %s\n", err.msg[0] ? err.msg : "failed");
        goto out;
    }
    if (o->verbose && o->req.strategy != T2_STRATEGY_NONE)
        report_decision(&d);
    t2_ctx_set_layers(ctx, w ? w->layers : NULL);
    if (t2_generate(ctx, e->model, ids, n_ids, &o->gp, print_piece, NULL, &res, &err) != 0) {
        fprintf(stderr, "t2 generate: %s\n", err.msg);
        goto out;
    }
    if (res.len == 0 || res.text[res.len - 1] != '\n')
        fputc('\n', stdout);
    if (o->verbose)
        fprintf(stderr,
                "t2: %d prompt tokens in %.1f ms (%.1f tok/s), %d generated in %.1f ms "
                "(%.1f tok/s), finish: %s\n",
                res.n_prompt, res.prefill_ms, res.n_prompt / (res.prefill_ms / 1e3), res.n_tokens,
                res.decode_ms, res.n_tokens > 1 ? (res.n_tokens - 1) / (res.decode_ms / 1e3) : 0.0,
                t2_finish_name(res.finish));
    status = 0;
out:
    t2_gen_result_free(&res);
    t2_decision_clear(&d);
    t2_adapted_unref(w);
    free(ids);
    t2_ctx_free(ctx);
    t2_engine_free(e);
    return status;
}

int t2_cli_generate(int argc, char **argv)
{
    gen_opts o = {0};
    t2_gen_params_defaults(&o.gp);
    t2_engine_opts_defaults(&o.eo);
    int rc = parse_args(argc, argv, &o) != 0 ? 2 : run(&o);
    free(o.mix_spec);
    return rc;
}
