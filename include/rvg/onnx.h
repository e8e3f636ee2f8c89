/* onnx.h - exporting a RepVGG model as an ONNX file (opset 13 by default, IR version 7).
 *
 * Worked example (deploy form, dynamic batch, 224x224 input):
 *
 *     rvg_model *m;
 *     RVG_TRY(rvg_model_load(&m, "RepVGG-A0-train.pth"));
 *     rvg_onnx_options opt;
 *     rvg_onnx_options_default(&opt);            // deploy form, opset 13, 224x224
 *     if (rvg_onnx_export(m, "a0.onnx", &opt) != RVG_OK)
 *         fprintf(stderr, "%s\n", rvg_last_error());
 *     rvg_model_free(m);
 *
 * The graph has one input "input" (N, C, H, W) and one output "logits" (N, classes), float32,
 * where N is the symbolic dimension "N" (any batch size) and H, W are fixed by the options or
 * symbolic ("H", "W"). Initializers are the model's tensors under their official state_dict names
 * (`stage1.0.rbr_reparam.weight`, `linear.bias`, ...), stored as little-endian float32 raw_data;
 * node names are the module names (`stage1.0.rbr_reparam`, `stage1.0.relu`, `linear`).
 *
 * Deploy form, per block: Conv(3x3, pads 1, stride, group, bias) -> [SE] -> Relu, where SE is
 * GlobalAveragePool -> Conv 1x1 (down, bias) -> Relu -> Conv 1x1 (up, bias) -> Sigmoid -> Mul.
 * Train form, per block: Conv 3x3 (no bias) -> BatchNormalization, Conv 1x1 (pad 0, same stride)
 * -> BatchNormalization, optionally the identity BatchNormalization, Add, [SE], Relu; every
 * BatchNormalization in inference mode (running statistics, epsilon 1e-5).
 * Head: GlobalAveragePool -> Flatten -> Gemm (transB = 1) with linear.weight (classes, K).
 *
 * Not here: reading ONNX files, external-data files (so a model must fit the 2 GiB protobuf
 * limit; the largest preset, B3 in train form, is about 0.5 GB), fp16 or quantised export.
 */
#ifndef RVG_ONNX_H
#define RVG_ONNX_H

#include <stdint.h>

#include "model.h"
#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    rvg_form form;         /* graph to write: RVG_FORM_DEPLOY (a train-form model is converted
                              first with rvg_model_reparam) or RVG_FORM_TRAIN (needs a train-form
                              model) */
    int64_t opset;         /* ONNX opset of the default domain, 13..21 */
    int64_t height, width; /* input size; 0 makes that dimension symbolic ("H" / "W") */
    const char *producer;  /* producer_name; NULL gives "repvgg.c" */
    const rvg_dict *meta;  /* NULL, or a dictionary whose string metadata is written into the
                              model's metadata_props after repvgg.arch and repvgg.form (`repvgg
                              export` passes the preprocessing and class names training recorded,
                              so a runtime elsewhere can prepare images and name classes) */
} rvg_onnx_options;

/* Deploy form, opset 13, 224 x 224, producer "repvgg.c", no recorded metadata. */
void rvg_onnx_options_default(rvg_onnx_options *opt);

/* Writes m as an ONNX model to path, atomically (PATH.tmp.<pid> then rename). m is borrowed and
 * unchanged; opt may be NULL for the defaults. Errors: RVG_STATUS_BAD_ARGUMENT (opset out of
 * range, train form requested from a deploy-form model, negative size), RVG_STATUS_BAD_SHAPE (the
 * input size is too small for the five stride-2 stages), RVG_STATUS_UNSUPPORTED (the model would
 * exceed protobuf's 2 GiB message limit), RVG_STATUS_IO, RVG_STATUS_NO_MEMORY. */
rvg_status rvg_onnx_export(const rvg_model *m, const char *path, const rvg_onnx_options *opt);

#ifdef __cplusplus
}
#endif
#endif
