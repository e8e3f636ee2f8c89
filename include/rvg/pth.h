/* pth.h - reading PyTorch checkpoints (torch.save, zip format) into a rvg_dict, without Python.
 *
 * A torch.save file (PyTorch >= 1.6) is a zip archive: <prefix>/data.pkl holds a pickle of the
 * saved object, <prefix>/data/<key> one raw little-endian storage per key. The loader unpickles
 * data.pkl with a restricted unpickler that executes nothing (only containers, scalars, strings,
 * OrderedDict, torch's tensor/parameter rebuild functions and typed storages are accepted), then
 * copies every tensor of the state dict out of its storage as a contiguous tensor.
 *
 *     rvg_dict *w = NULL;
 *     if (rvg_pth_load(&w, "RepVGG-A0-train.pth") != RVG_OK)
 *         fprintf(stderr, "%s\n", rvg_last_error());
 *     int was_timm = 0;
 *     rvg_names_normalize(w, &was_timm);     // rvg/names.h: official RepVGG names
 *
 * What is taken: a dict of tensors at the top level, or the dict under "state_dict" or "model"
 * when the checkpoint wraps it (nested wrappers too). Entries that are not tensors (epoch counters,
 * optimizer state, config strings) are skipped. Strided views (transposes, slices, storage offsets)
 * become contiguous copies. Storage dtypes: float32, float16, bfloat16, float64, int64, int32,
 * uint8.
 *
 * Not supported: the legacy (pre-1.6) non-zip format, pickled nn.Modules (torch.save(model)),
 * overlapping views that address more elements than their storage holds (expand()), and
 * newer tensor subclasses. Names are left as saved; see rvg/names.h.
 */
#ifndef RVG_PTH_H
#define RVG_PTH_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Loads the torch.save checkpoint at `path` into a new dictionary (*out, caller frees with
 * rvg_dict_free), tensors in the order the pickle lists them. Returns RVG_STATUS_IO when the file
 * cannot be opened; RVG_STATUS_BAD_FORMAT for anything malformed (not a zip, truncated, CRC
 * mismatch, no data.pkl, a pickle opcode or global outside the safe subset, a missing storage, a
 * tensor past the end of its storage, no tensors at all); RVG_STATUS_UNSUPPORTED for the legacy
 * format or an overlapping view. On failure *out is NULL and rvg_last_error() says why. */
rvg_status rvg_pth_load(rvg_dict **out, const char *path);

/* Same, for a checkpoint image already in memory (borrowed; used by the loader's tests and the
 * fuzzer). */
rvg_status rvg_pth_parse(rvg_dict **out, const uint8_t *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
