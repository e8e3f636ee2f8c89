/* weights.c - open any weights file rvg understands as a tensor dictionary with official names.
 *
 * The format is told by content, not by extension: a zip archive ("PK\x03\x04") is a torch.save
 * checkpoint (src/io/pth.c), a bare pickle (torch.save's legacy format) is refused with a message,
 * anything else is tried as safetensors. Then `module.` prefixes,
 * state_dict/model wrappers and timm names are mapped to the official names (src/io/names.c).
 */
#include <stdio.h>
#include <string.h>

#include "rvg/io.h"
#include "rvg/names.h"
#include "rvg/pth.h"

rvg_status rvg_weights_load_dict(rvg_dict **out, const char *path) {
    *out = NULL;
    uint8_t magic[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return rvg_error(RVG_STATUS_IO, "cannot open '%s'", path);
    size_t got = fread(magic, 1, 8, f);
    fclose(f);
    rvg_dict *d = NULL;
    if (got >= 4 && memcmp(magic, "PK\x03\x04", 4) == 0)
        RVG_TRY(rvg_pth_load(&d, path));
    else if (got == 8 && memcmp(magic, "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46", 8) == 0)
        /* torch.save's legacy format (before PyTorch 1.6, or _use_new_zipfile_serialization=
         * False): a pickle (protocol 2) of its magic number 0x1950a86a20f9469cfc6c first. As a
         * safetensors header length these bytes would be ~5e18, so nothing valid is refused. */
        return rvg_error(RVG_STATUS_UNSUPPORTED,
                         "'%s' is in torch.save's legacy (non-zip) format; save it again with "
                         "torch.save(state_dict, path) from PyTorch 1.6 or later (zip) or as "
                         "safetensors",
                         path);
    else
        RVG_TRY(rvg_safetensors_load(&d, path));
    int was_timm = 0;
    rvg_status st = rvg_names_normalize(d, &was_timm);
    if (st != RVG_OK) {
        rvg_dict_free(d);
        return st;
    }
    *out = d;
    return RVG_OK;
}
