/* names.h - mapping checkpoint weight names onto the official RepVGG names (SPEC section 4).
 *
 * Checkpoints reach us under three naming schemes: the official repository's (`stage1.0.rbr_dense.
 * conv.weight`), the same with a `module.` prefix (saved from DataParallel/DDP), and timm's
 * (`stages.0.0.conv_kxk.conv.weight`). rvg_names_normalize rewrites a dictionary in place into the
 * official scheme, which is what the model builder expects. It works on any rvg_dict, whatever file
 * it came from (.pth or safetensors).
 *
 * timm -> official (timm/models/byobnet.py, RepVggBlock; the stem is itself a RepVggBlock):
 *   stem.X                    -> stage0.X
 *   stages.J.i.X              -> stage(J+1).i.X
 *   head.fc.X                 -> linear.X
 *   and inside a block:  conv_kxk -> rbr_dense, conv_1x1 -> rbr_1x1, identity -> rbr_identity,
 *   reparam_conv -> rbr_reparam, attn.fc1 -> se.down, attn.fc2 -> se.up.
 * The nested `.conv.` / `.bn.` names of timm's ConvNormAct match the official conv_bn Sequential,
 * and timm's identity BatchNorm has the same parameter names, so they pass through unchanged.
 */
#ifndef RVG_NAMES_H
#define RVG_NAMES_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Renames every tensor of d in place: strips leading `module.` prefixes, then maps timm names to
 * official ones. Names already official are left alone. *was_timm (may be NULL) is set to 1 when
 * any timm name was mapped, else 0. Returns RVG_STATUS_BAD_NAME (and leaves the remaining names
 * unchanged) when two tensors would end up with the same name, e.g. a dict holding both
 * `module.linear.weight` and `linear.weight`. */
rvg_status rvg_names_normalize(rvg_dict *d, int *was_timm);

#ifdef __cplusplus
}
#endif
#endif
