/* engine_amx_impl.h - the inference engine on Intel AMX: every layer a bf16x3 GEMM on the tiles
 * (amx_impl.h), chosen with the kernel set RVG_INFER_ISA_AMX (or its plain-C twin AMX_TWIN).
 *
 * Why: the fp32 engine (engine.c) is at the core's FMA peak once Winograd has removed what
 * multiplications it can. AMX multiplies bf16 pairs 16 times faster; with each fp32 operand
 * split into a hi and a lo bf16 part (three products per multiply-add) the convolutions keep
 * ~16 bits of their inputs' 24 and still run about 5x the FMA rate. It is a different precision
 * from fp32, so it is never the automatic choice: the caller asks for it.
 *
 * Layout: activations are NHWC with a zero border of one pixel, channels padded to Cs = a multiple
 * of 16 (the first layer's input: exactly its channels, if at most 10), as two arrays, hi and lo:
 * (N, img) with img = ((H+2)(W+2) + SLACK) pixels x Cs. For a kernel row ky, the 3 x Cs values
 * of the three taps are contiguous in a padded row, so the GEMM's k runs over (ky, 32-value
 * steps of those 3 Cs values): 3 * ceil(3 Cs / 32) steps. A step's last values may run into the
 * next pixel; their weights are zero (and every buffer value is finite, so they add nothing).
 * An RGB stem thus takes 3 steps of 9 useful values rather than 9 of 3. Weights are packed once
 * into B tiles (amx_impl.h). A layer runs as one of (amx_kind):
 *   FLAT  stride 1: an implicit GEMM whose 16 A rows are 16 consecutive pixels of the padded
 *         image, read straight from the activations (a step is a fixed offset); the rows that
 *         fall on the border columns compute garbage that is not stored (2 of W+2 per row);
 *   ROW   stride 2 on wide maps: the same, 16 rows two pixels apart within one output row, R of
 *         them used (R <= 16 divides the row into equal tiles);
 *   COL   tiny maps (2x2, 4x4 ...) and narrow stride-2 maps: the three row segments of each
 *         output pixel copied into a dense A over the whole batch, so that the rows of several
 *         images fill a tile.
 * The last layer writes fp32 (N, P*Q, Kt*16) for the pool and the classifier (fp32, as in the
 * other kernel sets). A squeeze-excitation layer (RepVGG-D2se) writes its pre-activation there
 * too (in a scratch of that shape if it is not the last); the gate is computed in fp32 and the
 * gated, ReLU'd map goes on as hi/lo (infer.h has the SE's definition).
 *
 * Files: engine_amx.c (availability, plan, packed weights, buffers), engine_amx_run.c (the
 * forward pass), kern_amx.c / kern_amx_ref.c (the tile kernels and their C twin).
 */
#ifndef RVG_ENGINE_AMX_IMPL_H
#define RVG_ENGINE_AMX_IMPL_H

#include <stdint.h>

#include "amx_impl.h"
#include "engine_impl.h"

/* Pixels after each image's padded plane (zero at allocation, then whatever finite values an
 * earlier layer left): the A rows of the last tiles of FLAT and ROW layers read up to ~34 pixels
 * past the plane, and a step up to 31 values past its segment (rows whose outputs are
 * dropped, values whose weights are zero). */
enum { SLACK = 80 };

typedef enum { AMX_FLAT, AMX_ROW, AMX_COL } amx_kind;

/* Input channels up to which the first layer's input keeps exactly its channels (3 Cs <= 32: one
 * step per kernel row) rather than a multiple of 16. */
enum { NARROW_C = 10 };

/* The most hidden channels of an SE layer here (RepVGG-D2se has K/16 <= 160): the gate's hidden
 * vector lives on the stack. */
enum { SE_HIDDEN_MAX = 1024 };

typedef struct {
    amx_kind kind;
    int64_t C, K, G, stride, H, W, P, Q;
    int64_t Cs, Hp, Wp, img; /* input: channel stride, padded plane, elements per image */
    int64_t spk, ks, kp;     /* steps per kernel row, k steps (3 spk), kp = 32 ks */
    int64_t Kt;              /* 16-channel output tiles */
    int64_t mt;              /* FLAT: tiles per image; ROW: tiles per output row; COL: tiles over
                                the batch at max_batch (of 16 output pixels) */
    int64_t R;               /* ROW: output pixels per tile */
    int64_t *aoff;           /* per k step (FLAT, ROW: offset from the row's pixel; COL: 32 s) */
    int64_t astride;         /* elements between A rows */
    uint16_t *bh, *bl;       /* (Kt, ks, 512) */
    float *bias;             /* Kt * 16 */
    int64_t Cpo, imgo;       /* output: channel stride (Kt * 16), elements per image */
    int64_t se_hidden;       /* 0, or SE with copies of its weights (see infer.h): */
    float *se_dw, *se_db, *se_uw, *se_ub; /* (hid, K), (hid), (K, hid), (K) */
} amx_layer;

struct rvg__amx_net {
    const rvg__amx_kernels *k;
    amx_layer *L;
    int64_t nl;
    uint16_t *ah[2], *al[2]; /* ping-pong activations */
    uint16_t *ch, *cl;       /* im2col */
    float *feat;             /* last layer, fp32 (N, P*Q, Kt*16) */
    float *sef;              /* an SE layer's pre-activation, fp32 (N, P*Q, Kt*16), if not last */
    float *gate;             /* SE: per image, the channels' means, then their gates (N, kmax) */
    int64_t kmax;            /* the most output channels of a layer */
    float *pooled;           /* (N, K) */
    float *colf;             /* per thread: one padded input row in fp32 (task_pack) */
    int64_t colf_floats;
};

#endif
