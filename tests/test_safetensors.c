/* safetensors parser and Hugging Face directory loader: every malformed
 * input is rejected with a message, never a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "model.h"
#include "safetensors.h"
#include "test_util.h"

static int parse_buf(const char *header, const void *data, size_t data_len, t2_err *err)
{
    size_t hl = strlen(header);
    uint8_t *buf = malloc(8 + hl + data_len);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (data_len)
        memcpy(buf + 8 + hl, data, data_len);
    t2_safetensors st;
    int rc = t2_st_parse(&st, buf, 8 + hl + data_len, "test.safetensors", err);
    if (rc == 0)
        t2_st_close(&st);
    free(buf);
    return rc;
}

static void expect_reject(const char *header, size_t data_len, const char *needle)
{
    uint8_t data[64] = {0};
    t2_err err = {{0}};
    assert_int_equal(parse_buf(header, data, data_len, &err), -1);
    if (!strstr(err.msg, needle))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
    assert_non_null(strstr(err.msg, "test.safetensors"));
}

static void test_valid(void **state)
{
    (void)state;
    float data[4] = {1, 2, 3, 4};
    t2_err err;
    const char *h = "{\"__metadata__\":{\"name\":\"x\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],"
                    "\"data_offsets\":[0,16]}}";
    size_t hl = strlen(h);
    uint8_t buf[256];
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, h, hl);
    memcpy(buf + 8 + hl, data, 16);
    t2_safetensors st;
    assert_int_equal(t2_st_parse(&st, buf, 8 + hl + 16, "t", &err), 0);
    assert_int_equal(st.n_tensors, 1);
    assert_string_equal(t2_st_meta_get(&st, "name"), "x");
    const t2_st_tensor *t = t2_st_find(&st, "a");
    assert_non_null(t);
    float out[4];
    t2_st_to_f32(t, out);
    assert_true(out[3] == 4.0f);
    t2_st_close(&st);
}

static void test_truncated(void **state)
{
    (void)state;
    char p[1024];
    t2_mapped_file mf;
    t2_err err;
    assert_int_equal(t2_mapped_file_open(
                         &mf, shared_path(p, sizeof p, "models/seedling/model.safetensors"), &err),
                     0);
    /* cut inside the length, inside the header, inside the data */
    size_t cuts[] = {0, 4, 7, 8, 100, 2000, mf.size / 2, mf.size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        t2_safetensors st;
        assert_int_equal(t2_st_parse(&st, mf.data, cuts[i], "cut.safetensors", &err), -1);
        assert_non_null(strstr(err.msg, "cut.safetensors"));
    }
    t2_safetensors st;
    assert_int_equal(t2_st_parse(&st, mf.data, mf.size, "whole", &err), 0);
    assert_int_equal(st.n_tensors, 74);
    t2_st_close(&st);
    t2_mapped_file_close(&mf);
}

static void test_header_length_past_end(void **state)
{
    (void)state;
    uint8_t buf[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    t2_safetensors st;
    t2_err err;
    assert_int_equal(t2_st_parse(&st, buf, sizeof buf, "big", &err), -1);
    assert_non_null(strstr(err.msg, "header length"));
}

static void test_bad_json(void **state)
{
    (void)state;
    expect_reject("{\"a\": ", 0, "not valid JSON");
    expect_reject("[1,2]", 0, "not a JSON object");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  8, "not valid JSON"); /* duplicate key */
}

static void test_out_of_bounds(void **state)
{
    (void)state;
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
                  "past the end");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}", 16,
                  "invalid data_offsets");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[-4,12]}}", 16,
                  "invalid data_offsets");
}

static void test_overlap(void **state)
{
    (void)state;
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                  16, "overlap");
}

static void test_shape_mismatch(void **state)
{
    (void)state;
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 16,
                  "bytes for shape");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 16,
                  "non-negative");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                  "\"data_offsets\":[0,4]}}",
                  16, "too large");
}

static void test_unknown_dtype(void **state)
{
    (void)state;
    expect_reject("{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
                  "unsupported dtype 'I64'");
    expect_reject("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "needs dtype");
}

/* ---- directory loader: a copy of seedling with one thing changed ---- */

static char tmpdir[256];

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char *p = t2_path_join(dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    free(p);
}

static void copy_shared(const char *dir, const char *name)
{
    char rel[256], p[1024];
    snprintf(rel, sizeof rel, "models/seedling/%s", name);
    char *text;
    size_t len;
    t2_err err;
    assert_int_equal(t2_read_file(shared_path(p, sizeof p, rel), 64u << 20, &text, &len, &err), 0);
    write_file(dir, name, text, len);
    free(text);
}

/* Writes model.safetensors with the seedling data and an edited header. */
static void write_edited_model(const char *dir, void (*edit)(json_t *hdr))
{
    char p[1024];
    t2_mapped_file mf;
    t2_err err;
    assert_int_equal(t2_mapped_file_open(
                         &mf, shared_path(p, sizeof p, "models/seedling/model.safetensors"), &err),
                     0);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++)
        hl |= (uint64_t)mf.data[i] << (8 * i);
    json_t *hdr = json_loadb((const char *)mf.data + 8, hl, 0, NULL);
    assert_non_null(hdr);
    edit(hdr);
    char *h = json_dumps(hdr, JSON_COMPACT);
    size_t nl = strlen(h), data_len = mf.size - 8 - hl;
    uint8_t *out = malloc(8 + nl + data_len);
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)((uint64_t)nl >> (8 * i));
    memcpy(out + 8, h, nl);
    memcpy(out + 8 + nl, mf.data + 8 + hl, data_len);
    write_file(dir, "model.safetensors", out, 8 + nl + data_len);
    free(out);
    free(h);
    json_decref(hdr);
    t2_mapped_file_close(&mf);
}

static void load_expect(const char *needle)
{
    t2_model *m = NULL;
    t2_err err = {{0}};
    assert_int_equal(t2_model_load(&m, tmpdir, &err), -1);
    assert_null(m);
    if (!strstr(err.msg, needle))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

static void edit_none(json_t *h)
{
    (void)h;
}
static void edit_shape(json_t *h)
{
    json_t *t = json_object_get(h, "model.layers.0.self_attn.q_proj.weight");
    json_object_set_new(t, "shape", json_pack("[ii]", 128, 512));
}
static void edit_drop(json_t *h)
{
    json_object_del(h, "model.layers.3.mlp.up_proj.weight");
}
static void edit_rename(json_t *h)
{
    json_t *t = json_object_get(h, "model.norm.weight");
    json_object_set(h, "model.extra.weight", t);
    json_object_del(h, "model.norm.weight");
}

static void test_dir_loader(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/t2_test_st_%d", (int)getpid());
    mkdir(tmpdir, 0700);
    copy_shared(tmpdir, "config.json");
    copy_shared(tmpdir, "tokenizer.json");
    copy_shared(tmpdir, "tokenizer_config.json");

    write_edited_model(tmpdir, edit_none);
    t2_model *m;
    t2_err err;
    assert_int_equal(t2_model_load(&m, tmpdir, &err), 0);
    t2_model_free(m);

    write_edited_model(tmpdir, edit_shape);
    load_expect("q_proj.weight' has shape [128, 512], config expects [256, 256]");
    write_edited_model(tmpdir, edit_drop);
    load_expect("'model.layers.3.mlp.up_proj.weight' missing");
    write_edited_model(tmpdir, edit_rename);
    load_expect("unexpected tensor 'model.extra.weight'");

    const char *bad_cfg = "{\"architectures\":[\"GPT2LMHeadModel\"]}";
    write_edited_model(tmpdir, edit_none);
    write_file(tmpdir, "config.json", bad_cfg, strlen(bad_cfg));
    load_expect("unsupported architecture 'GPT2LMHeadModel'");
    const char *no_layers = "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":256}";
    write_file(tmpdir, "config.json", no_layers, strlen(no_layers));
    load_expect("missing 'intermediate_size'");

    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
    load_expect("no such file");
}

/* transformers 4 configs: rope_theta at the top, rope_scaling llama3 */
static void test_config_variants(void **state)
{
    (void)state;
    const char *cfg4 =
        "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":128,"
        "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_"
        "size\":100,"
        "\"rope_theta\":500000.0,\"torch_dtype\":\"bfloat16\",\"eos_token_id\":[7,9],"
        "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":32.0,\"low_freq_factor\":1.0,"
        "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}}";
    t2_config c;
    t2_err err;
    assert_int_equal(t2_config_parse_json(&c, cfg4, strlen(cfg4), &err), 0);
    assert_true(c.rope_theta == 500000.0f);
    assert_true(c.rope_factor == 32.0f);
    assert_int_equal(c.rope_orig_max_pos, 8192);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.n_eos, 2);
    assert_int_equal(c.eos_ids[1], 9);
    assert_false(c.tie_embeddings);
    const char *qwen =
        "{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":64,"
        "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
        "\"vocab_size\":100,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4}}";
    assert_int_equal(t2_config_parse_json(&c, qwen, strlen(qwen), &err), -1);
    assert_non_null(strstr(err.msg, "yarn"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_header_length_past_end),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_out_of_bounds),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_shape_mismatch),
        cmocka_unit_test(test_unknown_dtype),
        cmocka_unit_test(test_dir_loader),
        cmocka_unit_test(test_config_variants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
