/* deploy_engine.c - builds an inference engine (src/infer/) from a model's deploy-form weights.
 * A train-form model is converted with rvg_model_reparam first; the engine copies what it needs,
 * so the temporary deploy model is freed before returning.
 */
#include <stdlib.h>

#include "model_impl.h"
#include "rvg/deploy.h"

rvg_status rvg_deploy_engine_new(rvg_engine **out, const rvg_model *m, int64_t H, int64_t W,
                                 int64_t max_batch, int threads, const rvg_engine_opts *opts) {
    *out = NULL;
    rvg_model *tmp = NULL;
    if (m->form == RVG_FORM_TRAIN) {
        RVG_TRY(rvg_model_reparam(m, &tmp));
        m = tmp;
    }
    rvg_infer_layer *layers = calloc((size_t)m->n_blocks, sizeof *layers);
    if (!layers) {
        rvg_model_free(tmp);
        return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
    }
    for (int64_t i = 0; i < m->n_blocks; i++) {
        const block_impl *b = &m->blocks[i];
        rvg_infer_layer *l = &layers[i];
        l->C = b->b.C;
        l->K = b->b.K;
        l->stride = b->b.stride;
        l->G = b->b.G;
        l->weight = m->views[b->wr].data;
        l->bias = m->views[b->br].data;
        l->se_hidden = b->b.se_hidden;
        if (b->b.se_hidden) {
            l->se_down_w = m->views[b->se_dw].data;
            l->se_down_b = m->views[b->se_db].data;
            l->se_up_w = m->views[b->se_uw].data;
            l->se_up_b = m->views[b->se_ub].data;
        }
    }
    rvg_status st = rvg_engine_new_opts(out, layers, m->n_blocks, m->views[m->fc_w].data,
                                        m->views[m->fc_b].data, m->arch.classes, m->arch.in_ch, H,
                                        W, max_batch, threads, opts);
    free(layers);
    rvg_model_free(tmp);
    return st;
}
