/* onnx_export.c - writes a RepVGG model as an ONNX ModelProto (see include/rvg/onnx.h).
 *
 * The graph is built node by node into protobuf buffers (protobuf_writer_impl.h) using the field
 * numbers of onnx/onnx.proto:
 *   ModelProto:   ir_version 1, producer_name 2, graph 7, opset_import 8, metadata_props 14
 *   GraphProto:   node 1, name 2, initializer 5, input 11, output 12
 *   NodeProto:    input 1, output 2, name 3, op_type 4, attribute 5
 *   AttributeProto: name 1, f 2, i 3, ints 8, type 20 (FLOAT 1, INT 2, INTS 7)
 *   TensorProto:  dims 1, data_type 2 (FLOAT 1), name 8, raw_data 9
 *   ValueInfoProto: name 1, type 2;  TypeProto: tensor_type 1;  TypeProto.Tensor: elem_type 1,
 *   shape 2;  TensorShapeProto: dim 1;  Dimension: dim_value 1, dim_param 2
 *   OperatorSetIdProto: domain 1, version 2;  StringStringEntryProto: key 1, value 2
 *
 * Weights are never copied into a buffer: every initializer's TensorProto header (name, dims,
 * type, raw_data's tag and length) is encoded on its own, the enclosing GraphProto length is summed
 * from those sizes, and the float data are streamed from the model straight into the file. Peak
 * memory is therefore the model (plus its deploy copy when a train-form model is converted) and a
 * few kilobytes per node, not a second copy of every weight.
 *
 * Not here: shape inference annotations (value_info; runtimes infer them), external data, other
 * dtypes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/protobuf_writer_impl.h"
#include "rvg/io.h"
#include "rvg/onnx.h"

/* onnx.proto field numbers (names as in the .proto). */
enum {
    MODEL_IR_VERSION = 1,
    MODEL_PRODUCER_NAME = 2,
    MODEL_GRAPH = 7,
    MODEL_OPSET_IMPORT = 8,
    MODEL_METADATA_PROPS = 14,
    GRAPH_NODE = 1,
    GRAPH_NAME = 2,
    GRAPH_INITIALIZER = 5,
    GRAPH_INPUT = 11,
    GRAPH_OUTPUT = 12,
    NODE_INPUT = 1,
    NODE_OUTPUT = 2,
    NODE_NAME = 3,
    NODE_OP_TYPE = 4,
    NODE_ATTRIBUTE = 5,
    ATTR_NAME = 1,
    ATTR_F = 2,
    ATTR_I = 3,
    ATTR_INTS = 8,
    ATTR_TYPE = 20,
    ATTR_TYPE_FLOAT = 1,
    ATTR_TYPE_INT = 2,
    ATTR_TYPE_INTS = 7,
    TENSOR_DIMS = 1,
    TENSOR_DATA_TYPE = 2,
    TENSOR_NAME = 8,
    TENSOR_RAW_DATA = 9,
    TENSOR_FLOAT = 1,
    VALUE_INFO_NAME = 1,
    VALUE_INFO_TYPE = 2,
    TYPE_TENSOR_TYPE = 1,
    TYPE_TENSOR_ELEM_TYPE = 1,
    TYPE_TENSOR_SHAPE = 2,
    SHAPE_DIM = 1,
    DIM_VALUE = 1,
    DIM_PARAM = 2,
    OPSET_DOMAIN = 1,
    OPSET_VERSION = 2,
    ENTRY_KEY = 1,
    ENTRY_VALUE = 2,
};

#define BN_EPS 1e-5f /* torch.nn.BatchNorm2d's default, which the model's BN uses */
#define NAME_LEN 96  /* a state_dict key (< 64) plus a suffix such as ".conv.out" */

/* One initializer: the model tensor it streams from, and its encoded header. */
typedef struct {
    const rvg_param *p; /* borrowed from the model */
    rvg__pb_buf head;   /* GraphProto.initializer tag + length, TensorProto fields, raw_data
                           tag + length; the p->numel floats follow in the file */
} initializer;

typedef struct {
    const rvg_model *m;
    rvg__pb_buf graph; /* GraphProto fields other than the initializers */
    initializer *inits;
    int64_t n_inits, cap_inits;
    size_t graph_len; /* bytes of the whole GraphProto, once finished */
    rvg_status st;    /* first failure other than out-of-memory inside a buffer */
} builder;

void rvg_onnx_options_default(rvg_onnx_options *opt) {
    opt->form = RVG_FORM_DEPLOY;
    opt->opset = 13;
    opt->height = opt->width = 224;
    opt->producer = NULL;
    opt->meta = NULL;
}

/* The IR version of the ONNX release that introduced each opset (onnx/docs/Versioning.md): an
 * older IR is not allowed to import a newer opset. */
static int64_t ir_version_for(int64_t opset) {
    if (opset <= 14)
        return 7;
    if (opset <= 18)
        return 8;
    if (opset <= 20)
        return 9;
    return 10;
}

static const rvg_param *find(builder *b, const char *name) {
    for (int64_t i = 0; i < rvg_model_param_count(b->m); i++) {
        const rvg_param *p = rvg_model_param_c(b->m, i);
        if (strcmp(p->name, name) == 0)
            return p;
    }
    if (b->st == RVG_OK)
        b->st = rvg_error(RVG_STATUS_BAD_NAME, "onnx: the model has no tensor '%s'", name);
    return NULL;
}

/* Registers the model tensor called name as an initializer and returns the name (the ONNX value
 * name of an initializer is its state_dict key). */
static const char *use(builder *b, const char *name) {
    const rvg_param *p = find(b, name);
    if (!p)
        return name;
    if (b->n_inits == b->cap_inits) {
        int64_t cap = b->cap_inits ? 2 * b->cap_inits : 64;
        initializer *q = realloc(b->inits, (size_t)cap * sizeof *q);
        if (!q) {
            if (b->st == RVG_OK)
                b->st = rvg_error(RVG_STATUS_NO_MEMORY, "onnx: out of memory");
            return name;
        }
        b->inits = q;
        b->cap_inits = cap;
    }
    initializer *in = &b->inits[b->n_inits++];
    in->p = p;
    rvg__pb_buf t;
    rvg__pb_init(&t);
    for (int d = 0; d < p->ndim; d++)
        rvg__pb_int64(&t, TENSOR_DIMS, p->shape[d]);
    rvg__pb_int64(&t, TENSOR_DATA_TYPE, TENSOR_FLOAT);
    rvg__pb_string(&t, TENSOR_NAME, p->name);
    size_t raw = (size_t)p->numel * sizeof(float);
    rvg__pb_init(&in->head);
    rvg__pb_len_header(&in->head, GRAPH_INITIALIZER,
                       t.len + rvg__pb_len_field_size(TENSOR_RAW_DATA, raw));
    rvg__pb_raw(&in->head, t.data, t.len);
    if (t.failed)
        in->head.failed = 1;
    rvg__pb_len_header(&in->head, TENSOR_RAW_DATA, raw);
    rvg__pb_free(&t);
    return p->name;
}

/* ---- attributes and nodes ------------------------------------------------------------------- */

static void attr_int(rvg__pb_buf *node, const char *name, int64_t v) {
    rvg__pb_buf a;
    rvg__pb_init(&a);
    rvg__pb_string(&a, ATTR_NAME, name);
    rvg__pb_int64(&a, ATTR_I, v);
    rvg__pb_int64(&a, ATTR_TYPE, ATTR_TYPE_INT);
    rvg__pb_message(node, NODE_ATTRIBUTE, &a);
    rvg__pb_free(&a);
}

static void attr_ints(rvg__pb_buf *node, const char *name, int n, int64_t v) {
    rvg__pb_buf a;
    rvg__pb_init(&a);
    rvg__pb_string(&a, ATTR_NAME, name);
    for (int i = 0; i < n; i++)
        rvg__pb_int64(&a, ATTR_INTS, v);
    rvg__pb_int64(&a, ATTR_TYPE, ATTR_TYPE_INTS);
    rvg__pb_message(node, NODE_ATTRIBUTE, &a);
    rvg__pb_free(&a);
}

static void attr_float(rvg__pb_buf *node, const char *name, float v) {
    rvg__pb_buf a;
    rvg__pb_init(&a);
    rvg__pb_string(&a, ATTR_NAME, name);
    rvg__pb_float(&a, ATTR_F, v);
    rvg__pb_int64(&a, ATTR_TYPE, ATTR_TYPE_FLOAT);
    rvg__pb_message(node, NODE_ATTRIBUTE, &a);
    rvg__pb_free(&a);
}

/* Starts a NodeProto with its inputs, one output, name and operator; the caller adds attributes
 * and hands it to node_end. */
static void node_begin(rvg__pb_buf *n, const char *op, const char *name, const char *out, int n_in,
                       const char *const *in) {
    rvg__pb_init(n);
    for (int i = 0; i < n_in; i++)
        rvg__pb_string(n, NODE_INPUT, in[i]);
    rvg__pb_string(n, NODE_OUTPUT, out);
    rvg__pb_string(n, NODE_NAME, name);
    rvg__pb_string(n, NODE_OP_TYPE, op);
}

static void node_end(builder *b, rvg__pb_buf *n) {
    rvg__pb_message(&b->graph, GRAPH_NODE, n);
    rvg__pb_free(n);
}

/* A node without attributes. */
static void simple(builder *b, const char *op, const char *name, const char *out, int n_in,
                   const char *const *in) {
    rvg__pb_buf n;
    node_begin(&n, op, name, out, n_in, in);
    node_end(b, &n);
}

/* Conv node `name` with a k x k kernel: out = conv(x; weight, bias). The weight (and bias) are the
 * model tensors `<wprefix>.weight` (and `<wprefix>.bias` when with_bias). */
static void conv(builder *b, const char *name, const char *out, const char *x, const char *wprefix,
                 int with_bias, int64_t k, int64_t stride, int64_t pad, int64_t group) {
    char wn[NAME_LEN], bn[NAME_LEN];
    snprintf(wn, sizeof wn, "%s.weight", wprefix);
    snprintf(bn, sizeof bn, "%s.bias", wprefix);
    const char *in[3] = {x, use(b, wn), with_bias ? use(b, bn) : NULL};
    rvg__pb_buf n;
    node_begin(&n, "Conv", name, out, with_bias ? 3 : 2, in);
    attr_ints(&n, "dilations", 2, 1);
    attr_int(&n, "group", group);
    attr_ints(&n, "kernel_shape", 2, k);
    attr_ints(&n, "pads", 4, pad);
    attr_ints(&n, "strides", 2, stride);
    node_end(b, &n);
}

/* BatchNormalization node in inference mode over the model's BN `prefix` (weight, bias,
 * running_mean, running_var). */
static void batchnorm(builder *b, const char *prefix, const char *out, const char *x) {
    static const char *const sfx[4] = {"weight", "bias", "running_mean", "running_var"};
    char names[4][NAME_LEN];
    const char *in[5] = {x};
    for (int i = 0; i < 4; i++) {
        snprintf(names[i], NAME_LEN, "%s.%s", prefix, sfx[i]);
        in[i + 1] = use(b, names[i]);
    }
    rvg__pb_buf n;
    node_begin(&n, "BatchNormalization", prefix, out, 5, in);
    attr_float(&n, "epsilon", BN_EPS);
    node_end(b, &n);
}

/* Squeeze-excitation of block `pre` on s (N, K, H, W); the result goes to `out`:
 * out = s * sigmoid(up(relu(down(mean_HW(s))))), as the official SEBlock. */
static void squeeze_excite(builder *b, const char *pre, const char *s, const char *out) {
    char nm[6][NAME_LEN], o[5][NAME_LEN], w[2][NAME_LEN];
    static const char *const step[6] = {"pool", "down", "relu", "up", "sigmoid", "mul"};
    for (int i = 0; i < 6; i++)
        snprintf(nm[i], NAME_LEN, "%s.se.%s", pre, step[i]);
    for (int i = 0; i < 5; i++)
        snprintf(o[i], NAME_LEN, "%s.se.%s.out", pre, step[i]);
    snprintf(w[0], NAME_LEN, "%s.se.down", pre);
    snprintf(w[1], NAME_LEN, "%s.se.up", pre);
    simple(b, "GlobalAveragePool", nm[0], o[0], 1, (const char *const[]){s});
    conv(b, nm[1], o[1], o[0], w[0], 1, 1, 1, 0, 1);
    simple(b, "Relu", nm[2], o[2], 1, (const char *const[]){o[1]});
    conv(b, nm[3], o[3], o[2], w[1], 1, 1, 1, 0, 1);
    simple(b, "Sigmoid", nm[4], o[4], 1, (const char *const[]){o[3]});
    /* (N, K, H, W) * (N, K, 1, 1): Mul broadcasts multidirectionally. */
    simple(b, "Mul", nm[5], out, 2, (const char *const[]){s, o[4]});
}

/* One block from x to `out` (`<prefix>.out`). */
static void block(builder *b, const rvg_block *blk, rvg_form form, const char *x, char *out) {
    const char *pre = blk->prefix;
    char sum[NAME_LEN], se_out[NAME_LEN], relu[NAME_LEN];
    if (form == RVG_FORM_DEPLOY) {
        char nm[NAME_LEN];
        snprintf(nm, sizeof nm, "%s.rbr_reparam", pre);
        snprintf(sum, sizeof sum, "%s.rbr_reparam.out", pre);
        conv(b, nm, sum, x, nm, 1, 3, blk->stride, 1, blk->G);
    } else {
        char cn[NAME_LEN], co[NAME_LEN], bnn[NAME_LEN], d_out[NAME_LEN], o_out[NAME_LEN];
        snprintf(cn, sizeof cn, "%s.rbr_dense.conv", pre);
        snprintf(co, sizeof co, "%s.rbr_dense.conv.out", pre);
        snprintf(bnn, sizeof bnn, "%s.rbr_dense.bn", pre);
        snprintf(d_out, sizeof d_out, "%s.rbr_dense.out", pre);
        conv(b, cn, co, x, cn, 0, 3, blk->stride, 1, blk->G);
        batchnorm(b, bnn, d_out, co);
        snprintf(cn, sizeof cn, "%s.rbr_1x1.conv", pre);
        snprintf(co, sizeof co, "%s.rbr_1x1.conv.out", pre);
        snprintf(bnn, sizeof bnn, "%s.rbr_1x1.bn", pre);
        snprintf(o_out, sizeof o_out, "%s.rbr_1x1.out", pre);
        /* Padding one less than the 3x3 and the same stride, so the outputs line up (SPEC §2). */
        conv(b, cn, co, x, cn, 0, 1, blk->stride, 0, blk->G);
        batchnorm(b, bnn, o_out, co);
        char an[NAME_LEN];
        snprintf(an, sizeof an, "%s.add", pre);
        snprintf(sum, sizeof sum, "%s.add.out", pre);
        simple(b, "Add", an, sum, 2, (const char *const[]){d_out, o_out});
        if (blk->identity) {
            char idn[NAME_LEN], id_out[NAME_LEN], prev[NAME_LEN];
            snprintf(idn, sizeof idn, "%s.rbr_identity", pre);
            snprintf(id_out, sizeof id_out, "%s.rbr_identity.out", pre);
            batchnorm(b, idn, id_out, x);
            memcpy(prev, sum, sizeof prev);
            snprintf(an, sizeof an, "%s.add_identity", pre);
            snprintf(sum, sizeof sum, "%s.add_identity.out", pre);
            simple(b, "Add", an, sum, 2, (const char *const[]){prev, id_out});
        }
    }
    const char *pre_relu = sum;
    if (blk->se_hidden > 0) {
        snprintf(se_out, sizeof se_out, "%s.se.out", pre);
        squeeze_excite(b, pre, sum, se_out);
        pre_relu = se_out;
    }
    snprintf(relu, sizeof relu, "%s.relu", pre);
    snprintf(out, NAME_LEN, "%s.out", pre);
    simple(b, "Relu", relu, out, 1, (const char *const[]){pre_relu});
}

/* ValueInfoProto of a float tensor; dims[i] < 0 means the symbolic dimension params[i]. */
static void value_info(rvg__pb_buf *g, uint32_t field, const char *name, int ndim,
                       const int64_t *dims, const char *const *params) {
    rvg__pb_buf vi, type, tensor, shape, dim;
    rvg__pb_init(&vi);
    rvg__pb_init(&type);
    rvg__pb_init(&tensor);
    rvg__pb_init(&shape);
    rvg__pb_init(&dim);
    for (int i = 0; i < ndim; i++) {
        dim.len = 0;
        if (dims[i] >= 0)
            rvg__pb_int64(&dim, DIM_VALUE, dims[i]);
        else
            rvg__pb_string(&dim, DIM_PARAM, params[i]);
        rvg__pb_message(&shape, SHAPE_DIM, &dim);
    }
    rvg__pb_int64(&tensor, TYPE_TENSOR_ELEM_TYPE, TENSOR_FLOAT);
    rvg__pb_message(&tensor, TYPE_TENSOR_SHAPE, &shape);
    rvg__pb_message(&type, TYPE_TENSOR_TYPE, &tensor);
    rvg__pb_string(&vi, VALUE_INFO_NAME, name);
    rvg__pb_message(&vi, VALUE_INFO_TYPE, &type);
    rvg__pb_message(g, field, &vi);
    rvg__pb_free(&vi);
    rvg__pb_free(&type);
    rvg__pb_free(&tensor);
    rvg__pb_free(&shape);
    rvg__pb_free(&dim);
}

/* Builds the whole graph of m (already in the form to write) into b. */
static rvg_status build_graph(builder *b, const rvg_onnx_options *opt) {
    const rvg_arch *arch = rvg_model_arch(b->m);
    rvg_form form = rvg_model_form(b->m);
    char x[NAME_LEN] = "input", out[NAME_LEN];
    for (int64_t i = 0; i < rvg_model_block_count(b->m); i++) {
        block(b, rvg_model_block(b->m, i), form, x, out);
        memcpy(x, out, sizeof x);
    }
    simple(b, "GlobalAveragePool", "gap", "gap.out", 1, (const char *const[]){x});
    rvg__pb_buf n;
    node_begin(&n, "Flatten", "flatten", "flatten.out", 1, (const char *const[]){"gap.out"});
    attr_int(&n, "axis", 1);
    node_end(b, &n);
    const char *lin[3] = {"flatten.out", use(b, "linear.weight"), use(b, "linear.bias")};
    node_begin(&n, "Gemm", "linear", "logits", 3, lin);
    attr_int(&n, "transB", 1); /* linear.weight is (classes, K), as nn.Linear stores it */
    node_end(b, &n);

    char gname[64];
    snprintf(gname, sizeof gname, "RepVGG-%s-%s", arch->name,
             form == RVG_FORM_DEPLOY ? "deploy" : "train");
    rvg__pb_string(&b->graph, GRAPH_NAME, gname);
    int64_t in_dims[4] = {-1, arch->in_ch, opt->height > 0 ? opt->height : -1,
                          opt->width > 0 ? opt->width : -1};
    value_info(&b->graph, GRAPH_INPUT, "input", 4, in_dims,
               (const char *const[]){"N", NULL, "H", "W"});
    int64_t out_dims[2] = {-1, arch->classes};
    value_info(&b->graph, GRAPH_OUTPUT, "logits", 2, out_dims, (const char *const[]){"N", NULL});

    if (b->st != RVG_OK)
        return b->st;
    RVG_TRY(rvg__pb_status(&b->graph));
    size_t len = b->graph.len;
    for (int64_t i = 0; i < b->n_inits; i++) {
        RVG_TRY(rvg__pb_status(&b->inits[i].head));
        len += b->inits[i].head.len + (size_t)b->inits[i].p->numel * sizeof(float);
    }
    b->graph_len = len;
    return RVG_OK;
}

/* Writes n floats as little-endian bytes (a byte swap on big-endian hosts). */
static int write_f32_le(FILE *f, const float *x, int64_t n) {
    const uint16_t one = 1;
    if (*(const uint8_t *)&one == 1)
        return fwrite(x, sizeof(float), (size_t)n, f) == (size_t)n;
    uint8_t chunk[4096];
    for (int64_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < sizeof chunk / 4 && i < n; k++, i++) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            chunk[4 * k] = (uint8_t)u;
            chunk[4 * k + 1] = (uint8_t)(u >> 8);
            chunk[4 * k + 2] = (uint8_t)(u >> 16);
            chunk[4 * k + 3] = (uint8_t)(u >> 24);
        }
        if (fwrite(chunk, 4, k, f) != k)
            return 0;
    }
    return 1;
}

static void metadata(rvg__pb_buf *model, const char *key, const char *value) {
    rvg__pb_buf e;
    rvg__pb_init(&e);
    rvg__pb_string(&e, ENTRY_KEY, key);
    rvg__pb_string(&e, ENTRY_VALUE, value);
    rvg__pb_message(model, MODEL_METADATA_PROPS, &e);
    rvg__pb_free(&e);
}

static rvg_status write_model(builder *b, const rvg_onnx_options *opt, const char *path) {
    /* A protobuf message may not exceed 2 GiB (its lengths are parsed as int32). */
    if (b->graph_len > 0x7fffffffu - 4096)
        return rvg_error(RVG_STATUS_UNSUPPORTED,
                         "onnx: the graph would take %zu bytes, over protobuf's 2 GiB limit",
                         b->graph_len);
    rvg__pb_buf head, opset;
    rvg__pb_init(&head);
    rvg__pb_init(&opset);
    rvg__pb_int64(&head, MODEL_IR_VERSION, ir_version_for(opt->opset));
    rvg__pb_string(&head, MODEL_PRODUCER_NAME, opt->producer ? opt->producer : "repvgg.c");
    rvg__pb_string(&opset, OPSET_DOMAIN, "");
    rvg__pb_int64(&opset, OPSET_VERSION, opt->opset);
    rvg__pb_message(&head, MODEL_OPSET_IMPORT, &opset);
    char canon[512];
    rvg_arch_format(rvg_model_arch(b->m), canon, sizeof canon);
    metadata(&head, "repvgg.arch", canon);
    metadata(&head, "repvgg.form", rvg_model_form(b->m) == RVG_FORM_DEPLOY ? "deploy" : "train");
    for (int64_t i = 0; opt->meta && i < rvg_dict_meta_count(opt->meta); i++) {
        const char *k, *v;
        rvg_dict_meta_at(opt->meta, i, &k, &v);
        metadata(&head, k, v);
    }
    rvg__pb_len_header(&head, MODEL_GRAPH, b->graph_len);
    rvg_status st = rvg__pb_status(&head);
    rvg__pb_free(&opset);
    if (st != RVG_OK) {
        rvg__pb_free(&head);
        return st;
    }
    FILE *f;
    char *tmp;
    if ((st = rvg_atomic_open(path, &f, &tmp)) != RVG_OK) {
        rvg__pb_free(&head);
        return st;
    }
    int ok = fwrite(head.data, 1, head.len, f) == head.len &&
             fwrite(b->graph.data, 1, b->graph.len, f) == b->graph.len;
    for (int64_t i = 0; ok && i < b->n_inits; i++) {
        const initializer *in = &b->inits[i];
        ok = fwrite(in->head.data, 1, in->head.len, f) == in->head.len &&
             write_f32_le(f, in->p->data, in->p->numel);
    }
    rvg__pb_free(&head);
    if (!ok) {
        rvg_atomic_abort(f, tmp);
        return rvg_error(RVG_STATUS_IO, "onnx: writing '%s' failed", path);
    }
    return rvg_atomic_commit(f, tmp, path);
}

rvg_status rvg_onnx_export(const rvg_model *m, const char *path, const rvg_onnx_options *opt) {
    rvg_onnx_options defaults;
    if (!opt) {
        rvg_onnx_options_default(&defaults);
        opt = &defaults;
    }
    if (opt->opset < 13 || opt->opset > 21)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "onnx: opset %lld is not supported (13..21)",
                         (long long)opt->opset);
    if (opt->height < 0 || opt->width < 0)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "onnx: negative input size %lldx%lld",
                         (long long)opt->height, (long long)opt->width);
    if (opt->form != RVG_FORM_DEPLOY && opt->form != RVG_FORM_TRAIN)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "onnx: unknown form %d", (int)opt->form);
    if (opt->form == RVG_FORM_TRAIN && rvg_model_form(m) != RVG_FORM_TRAIN)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                         "onnx: the train form was requested but the model is in deploy form "
                         "(its branches were already fused)");
    if (opt->height > 0 || opt->width > 0) {
        /* A symbolic side is checked with the fixed one, which is what a square input would be. */
        int64_t h = opt->height > 0 ? opt->height : opt->width;
        int64_t w = opt->width > 0 ? opt->width : opt->height;
        RVG_TRY(rvg_model_check_input(m, rvg_model_arch(m)->in_ch, h, w));
    }
    rvg_model *deploy = NULL;
    if (opt->form == RVG_FORM_DEPLOY && rvg_model_form(m) == RVG_FORM_TRAIN) {
        RVG_TRY(rvg_model_reparam(m, &deploy));
        m = deploy;
    }
    builder b;
    memset(&b, 0, sizeof b);
    b.m = m;
    rvg__pb_init(&b.graph);
    rvg_status st = build_graph(&b, opt);
    if (st == RVG_OK)
        st = write_model(&b, opt, path);
    for (int64_t i = 0; i < b.n_inits; i++)
        rvg__pb_free(&b.inits[i].head);
    free(b.inits);
    rvg__pb_free(&b.graph);
    rvg_model_free(deploy);
    return st;
}
