/* image_decode.c - JPEG (libjpeg) and PNG (libpng) files to 8-bit RGB pixels.
 *
 * Everything becomes RGB, (H, W, 3) uint8, like PIL's Image.convert("RGB") in torchvision's
 * ImageFolder loader: grey is replicated, palettes expanded, 16-bit reduced, alpha dropped (not
 * composited), CMYK/YCCK JPEGs (Adobe, inverted) multiplied out. libjpeg reports errors by
 * calling error_exit, which here longjmps back with the message, so a corrupt file is an error
 * status, never an exit. Not handled: EXIF orientation, colour profiles, formats other than JPEG
 * and PNG.
 */
/* jpeglib.h uses size_t and FILE without including their headers. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>

#include "data/data_impl.h"

rvg_status rvg__image_reserve(rvg__image *im, int64_t h, int64_t w, int64_t c) {
    if (h <= 0 || w <= 0 || h > 65535 || w > 65535)
        return rvg_error(RVG_STATUS_BAD_FORMAT, "image: implausible size %lldx%lld", (long long)h,
                         (long long)w);
    size_t need = (size_t)(h * w * c);
    if (need > im->cap) {
        uint8_t *p = realloc(im->data, need);
        if (!p)
            return rvg_error(RVG_STATUS_NO_MEMORY, "image: out of memory for %lldx%lld",
                             (long long)h, (long long)w);
        im->data = p;
        im->cap = need;
    }
    im->h = h;
    im->w = w;
    im->c = c;
    return RVG_OK;
}

void rvg__image_free(rvg__image *im) {
    free(im->data);
    memset(im, 0, sizeof *im);
}

/* ---- JPEG ------------------------------------------------------------------------------------ */

typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_error_exit(j_common_ptr cinfo) {
    jpeg_err *e = (jpeg_err *)cinfo->err;
    e->mgr.format_message(cinfo, e->msg);
    longjmp(e->jump, 1);
}

/* Warnings (e.g. "premature end of data segment") are not errors for PIL either: ignore them. */
static void jpeg_emit_message(j_common_ptr cinfo, int level) {
    (void)cinfo;
    (void)level;
}

static rvg_status decode_jpeg(rvg__image *im, const uint8_t *buf, size_t len, const char *what) {
    struct jpeg_decompress_struct cinfo;
    jpeg_err err;
    JSAMPROW row = NULL;
    /* volatile: these change between setjmp and a possible longjmp. */
    uint8_t *volatile cmyk_row = NULL;
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = jpeg_error_exit;
    err.mgr.emit_message = jpeg_emit_message;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(cmyk_row);
        return rvg_error(RVG_STATUS_BAD_FORMAT, "jpeg: %s: %s", what, err.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    rvg_status s = rvg__image_reserve(im, cinfo.output_height, cinfo.output_width, 3);
    if (s != RVG_OK) {
        jpeg_destroy_decompress(&cinfo);
        return s;
    }
    if (cmyk) {
        cmyk_row = malloc((size_t)cinfo.output_width * 4);
        if (!cmyk_row) {
            jpeg_destroy_decompress(&cinfo);
            return rvg_error(RVG_STATUS_NO_MEMORY, "jpeg: out of memory");
        }
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *dst = im->data + (size_t)cinfo.output_scanline * (size_t)im->w * 3;
        row = cmyk ? cmyk_row : dst;
        jpeg_read_scanlines(&cinfo, &row, 1);
        if (cmyk) {
            /* Adobe writes inverted CMYK; R = C*K/255 is PIL's conversion. */
            for (int64_t x = 0; x < im->w; x++)
                for (int ch = 0; ch < 3; ch++)
                    dst[x * 3 + ch] =
                        (uint8_t)((cmyk_row[x * 4 + ch] * cmyk_row[x * 4 + 3] + 127) / 255);
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(cmyk_row);
    return RVG_OK;
}

/* ---- PNG ------------------------------------------------------------------------------------- */

static rvg_status decode_png(rvg__image *im, const uint8_t *buf, size_t len, const char *what) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, buf, len))
        return rvg_error(RVG_STATUS_BAD_FORMAT, "png: %s: %s", what, img.message);
    /* RGBA then drop alpha: PIL's convert("RGB") discards alpha rather than compositing. */
    img.format = PNG_FORMAT_RGBA;
    rvg_status s = rvg__image_reserve(im, img.height, img.width, 3);
    uint8_t *rgba = NULL;
    if (s == RVG_OK) {
        rgba = malloc((size_t)img.width * img.height * 4);
        if (!rgba)
            s = rvg_error(RVG_STATUS_NO_MEMORY, "png: out of memory");
    }
    if (s != RVG_OK) {
        png_image_free(&img);
        return s;
    }
    if (!png_image_finish_read(&img, NULL, rgba, 0, NULL)) {
        s = rvg_error(RVG_STATUS_BAD_FORMAT, "png: %s: %s", what, img.message);
        png_image_free(&img);
        free(rgba);
        return s;
    }
    size_t n = (size_t)img.width * img.height;
    for (size_t p = 0; p < n; p++)
        memcpy(im->data + p * 3, rgba + p * 4, 3);
    free(rgba);
    return RVG_OK;
}

rvg_status rvg__decode_memory(rvg__image *im, const uint8_t *buf, size_t len, const char *what) {
    if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF)
        return decode_jpeg(im, buf, len, what);
    if (len >= 8 && memcmp(buf, "\x89PNG\r\n\x1a\n", 8) == 0)
        return decode_png(im, buf, len, what);
    return rvg_error(RVG_STATUS_BAD_FORMAT, "image: %s is neither JPEG nor PNG", what);
}

rvg_status rvg__decode_file(rvg__image *im, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return rvg_error(RVG_STATUS_IO, "image: cannot open %s", path);
    uint8_t *buf = NULL;
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        len = ftell(f);
    rvg_status s = RVG_OK;
    if (len < 0 || fseek(f, 0, SEEK_SET) != 0) {
        s = rvg_error(RVG_STATUS_IO, "image: cannot size %s", path);
    } else if (!(buf = malloc(len > 0 ? (size_t)len : 1))) {
        s = rvg_error(RVG_STATUS_NO_MEMORY, "image: out of memory for %s", path);
    } else if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
        s = rvg_error(RVG_STATUS_IO, "image: short read on %s", path);
    }
    fclose(f);
    if (s == RVG_OK)
        s = rvg__decode_memory(im, buf, (size_t)len, path);
    free(buf);
    return s;
}
