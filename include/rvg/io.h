/* io.h - reading and writing files: safetensors, NumPy .npy, and atomic file replacement.
 *
 * All writers are atomic: they write PATH.tmp.<pid>, fsync, then rename over PATH, so a crash never
 * leaves a half-written file under the final name.
 */
#ifndef RVG_IO_H
#define RVG_IO_H

#include <stdint.h>
#include <stdio.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Loads a safetensors file into a new dictionary (*out, caller frees). Checks the header length,
 * JSON, dtypes, shapes and that every data range lies inside the file and they do not overlap.
 * The __metadata__ entries become the dictionary's metadata. */
rvg_status rvg_safetensors_load(rvg_dict **out, const char *path);
/* Parses a safetensors image already in memory (used by the loader and the fuzzer). */
rvg_status rvg_safetensors_parse(rvg_dict **out, const uint8_t *buf, size_t len);
/* Writes d to path atomically, tensors in insertion order, metadata as __metadata__. */
rvg_status rvg_safetensors_save(const rvg_dict *d, const char *path);

/* Loads any supported weights file into a new dictionary with official PyTorch names: safetensors
 * or a torch.save .pth archive (told apart by content), with `module.` prefixes, state_dict/model
 * wrappers and timm names mapped (SPEC §4). */
rvg_status rvg_weights_load_dict(rvg_dict **out, const char *path);

/* Reads a float32 (or float64, converted) C-order .npy array. *data is new (rvg_free). */
rvg_status rvg_npy_load_f32(const char *path, float **data, int *ndim, int64_t shape[RVG_MAX_DIMS]);
/* Writes a float32 C-order .npy array atomically. */
rvg_status rvg_npy_save_f32(const char *path, const float *data, int ndim, const int64_t *shape);

/* Atomic write helpers: open PATH.tmp.<pid> for writing; commit = fflush+fsync+fclose+rename;
 * abort = fclose+unlink. */
rvg_status rvg_atomic_open(const char *path, FILE **f, char **tmp_path);
rvg_status rvg_atomic_commit(FILE *f, char *tmp_path, const char *path);
void rvg_atomic_abort(FILE *f, char *tmp_path);

/* Reads a whole file into a new buffer (rvg_free). */
rvg_status rvg_read_file(const char *path, uint8_t **buf, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
