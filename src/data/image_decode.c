/* image_decode.c - JPEG (libjpeg) and PNG (libpng) files to 8-bit RGB pixels.
 *
 * Everything becomes RGB, (H, W, 3) uint8, like PIL's Image.convert("RGB") in torchvision's
 * ImageFolder loader: grey is replicated, palettes expanded, 1/2/4-bit grey scaled to 0..255,
 * 16-bit samples cut to their high byte, alpha and tRNS dropped (not composited), CMYK/YCCK JPEGs
 * (Adobe, inverted) multiplied out, and no gamma correction (PNG gAMA, sRGB, iCCP, cHRM are
 * ignored, as PIL ignores them). libjpeg and libpng report errors through callbacks that longjmp
 * back with the message, so a corrupt file is an error status, never an exit; as with PIL, so is
 * a JPEG that ends inside its image and an image of over 178956970 pixels. Not handled: EXIF
 * orientation, colour profiles, formats other than JPEG and PNG.
 */
/* jpeglib.h uses size_t and FILE without including their headers. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h> /* JWRN_JPEG_EOF */
#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>

#include "data/data_impl.h"

/* PIL refuses images over 2 x Image.MAX_IMAGE_PIXELS as decompression bombs; a header is a few
 * bytes, and a JPEG that claims 30000x30000 in 631 of them would otherwise take 2.7 GB of grey. */
#define IMAGE_MAX_PIXELS 178956970

rvg_status rvg__image_reserve(rvg__image *im, int64_t h, int64_t w, int64_t c) {
    if (h <= 0 || w <= 0 || h > 65535 || w > 65535)
        return rvg_error(RVG_STATUS_BAD_FORMAT, "image: implausible size %lldx%lld", (long long)h,
                         (long long)w);
    if (h * w > IMAGE_MAX_PIXELS)
        return rvg_error(RVG_STATUS_BAD_FORMAT,
                         "image: %lldx%lld is more than %d pixels (a decompression bomb to PIL "
                         "too)",
                         (long long)h, (long long)w, IMAGE_MAX_PIXELS);
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

/* Warnings (e.g. "corrupt JPEG data: extraneous bytes") are not errors for PIL either: ignored.
 * Except the end of the file inside the image, where libjpeg would fill the rest with grey and
 * PIL stops ("image file is truncated"): an error. */
static void jpeg_emit_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF)
        cinfo->err->error_exit(cinfo);
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

/* libpng's classic API, not the simplified one (png_image_*): that one treats 16-bit samples as
 * linear light and converts them to sRGB, and applies gAMA, so an 8-bit image saved as
 * uint16 * 257, or one with gAMA 1.0, came out brightened (4 -> 38). The classic API transforms
 * nothing unless asked; asked here for what PIL's convert("RGB") does with 8-bit files, no gamma.
 * 16-bit samples keep their high byte, as PIL keeps it for colour (PIL clips 16-bit grey to 255,
 * which is not copied); for v = 257 * k, the usual 16-bit copy of an 8-bit image, both give k. */

typedef struct {
    jmp_buf jump;
    char msg[200];
    const uint8_t *buf;
    size_t len, pos;
} png_mem_src;

static void on_png_error(png_structp png, png_const_charp msg) {
    png_mem_src *src = png_get_error_ptr(png);
    snprintf(src->msg, sizeof src->msg, "%s", msg);
    longjmp(src->jump, 1);
}

/* Warnings (bad iCCP profiles, CRC errors in ancillary chunks, which libpng skips) are not errors
 * for PIL either, and the library must not print: ignore them. */
static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static void read_png_memory(png_structp png, png_bytep out, size_t n) {
    png_mem_src *src = png_get_io_ptr(png);
    if (n > src->len - src->pos)
        png_error(png, "file ends early");
    memcpy(out, src->buf + src->pos, n);
    src->pos += n;
}

static rvg_status decode_png(rvg__image *im, const uint8_t *buf, size_t len, const char *what) {
    png_mem_src src = {.buf = buf, .len = len};
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return rvg_error(RVG_STATUS_NO_MEMORY, "png: out of memory");
    }
    /* volatile: set between setjmp and a possible longjmp. */
    uint8_t *volatile tmp = NULL;
    if (setjmp(src.jump)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(tmp);
        return rvg_error(RVG_STATUS_BAD_FORMAT, "png: %s: %s", what, src.msg);
    }
    png_set_read_fn(png, &src, read_png_memory);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    rvg_status s = rvg__image_reserve(im, h, w, 3);
    if (s != RVG_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        return s;
    }
    /* Palettes to RGB, 1/2/4-bit grey scaled to 0..255 (1 -> 255, as PIL), grey to RGB, 16 bits
     * to 8 by keeping the high byte, as PIL does. tRNS is not expanded to alpha
     * (png_set_tRNS_to_alpha is not called), though a palette with tRNS still comes out RGBA:
     * the copy below drops it. */
    int type = png_get_color_type(png, info);
    if (type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (!(type & PNG_COLOR_MASK_COLOR)) {
        png_set_expand_gray_1_2_4_to_8(png);
        png_set_gray_to_rgb(png);
    }
    png_set_strip_16(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int ch = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (png_get_bit_depth(png, info) != 8 || (ch != 3 && ch != 4) || rowbytes != (size_t)w * ch)
        png_error(png, "unexpected layout after the transformations");
    /* RGB rows land in place; RGBA (alpha, or a palette's tRNS) goes through a buffer, whole
     * rather than a row because Adam7's passes revisit every row. */
    uint8_t *dst = im->data;
    if (ch == 4) {
        tmp = malloc((size_t)h * rowbytes);
        if (!tmp) {
            png_destroy_read_struct(&png, &info, NULL);
            return rvg_error(RVG_STATUS_NO_MEMORY, "png: out of memory for %s", what);
        }
        dst = tmp;
    }
    for (int p = 0; p < passes; p++)
        for (png_uint_32 y = 0; y < h; y++)
            png_read_row(png, dst + (size_t)y * rowbytes, NULL);
    /* Not png_read_end: what follows the pixels (text, a missing IEND) does not change them. */
    png_destroy_read_struct(&png, &info, NULL);
    if (ch == 4) {
        /* RGBA -> RGB: PIL's convert("RGB") discards alpha rather than compositing. */
        for (size_t p = 0, n = (size_t)w * h; p < n; p++)
            memcpy(im->data + p * 3, tmp + p * 4, 3);
        free(tmp);
    }
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
