/* convert_folder.c - a folder of class sub-folders of PNG and JPEG images
 * (torchvision's ImageFolder layout, one per split) to the HDF5 dataset
 * format.
 *
 * SOURCE/train/<class>/<image> and SOURCE/test/<class>/<image>: the sorted
 * class folder names of train/ are classes 0.., test/ may not name others.
 * Images are decoded with libpng and libjpeg to RGB, resized so that the
 * shorter side is `size` (separable triangle filter widened by the
 * reduction factor, as PIL's antialiased bilinear resize does) and
 * centre-cropped to size x size. Files are taken in sorted name order;
 * other extensions are skipped. */
#include "datasets/convert.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>                    /* before jpeglib.h, which uses FILE */
#include <jpeglib.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

typedef struct { int w, h; uint8_t *rgb; } image;

static larch_status load_png(const char *path, image *im)
{
    png_image p;
    memset(&p, 0, sizeof p);
    p.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&p, path))
        return larch_fail(LARCH_ERR_FORMAT, "%s: cannot read the PNG image: %s", path, p.message);
    p.format = PNG_FORMAT_RGB;
    im->w = (int)p.width;
    im->h = (int)p.height;
    im->rgb = malloc(PNG_IMAGE_SIZE(p));
    if (!im->rgb) { png_image_free(&p); return larch_fail(LARCH_ERR_NOMEM, "%s: out of memory", path); }
    if (!png_image_finish_read(&p, NULL, im->rgb, 0, NULL)) {
        free(im->rgb);
        im->rgb = NULL;
        return larch_fail(LARCH_ERR_FORMAT, "%s: cannot decode the PNG image: %s", path, p.message);
    }
    return LARCH_OK;
}

typedef struct { struct jpeg_error_mgr mgr; jmp_buf jump; char msg[JMSG_LENGTH_MAX]; } jpeg_err;

static void jpeg_fail(j_common_ptr c)
{
    jpeg_err *e = (jpeg_err *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jump, 1);
}

static larch_status load_jpeg(const char *path, image *im)
{
    FILE *f = fopen(path, "rb");
    if (!f) return larch_fail(LARCH_ERR_IO, "%s: %s", path, strerror(errno));
    struct jpeg_decompress_struct c;
    jpeg_err e;
    c.err = jpeg_std_error(&e.mgr);
    e.mgr.error_exit = jpeg_fail;
    e.mgr.output_message = jpeg_fail;                      /* warnings (corrupt data) are errors too */
    im->rgb = NULL;
    if (setjmp(e.jump)) {
        jpeg_destroy_decompress(&c);
        fclose(f);
        free(im->rgb);
        im->rgb = NULL;
        return larch_fail(LARCH_ERR_FORMAT, "%s: cannot decode the JPEG image: %s", path, e.msg);
    }
    jpeg_create_decompress(&c);
    jpeg_stdio_src(&c, f);
    jpeg_read_header(&c, TRUE);
    c.out_color_space = JCS_RGB;
    jpeg_start_decompress(&c);
    im->w = (int)c.output_width;
    im->h = (int)c.output_height;
    im->rgb = malloc((size_t)im->w * im->h * 3);
    if (!im->rgb) longjmp(e.jump, 1);
    while (c.output_scanline < c.output_height) {
        JSAMPROW row = im->rgb + (size_t)c.output_scanline * im->w * 3;
        jpeg_read_scanlines(&c, &row, 1);
    }
    jpeg_finish_decompress(&c);
    jpeg_destroy_decompress(&c);
    fclose(f);
    return LARCH_OK;
}

/* Resamples n_in samples (stride `stride` apart) to n_out: output i covers
 * input centre (i + 0.5) * scale - 0.5 with a triangle of half-width
 * max(scale, 1). */
static void resample_line(const float *in, int n_in, int stride, float *out, int n_out, int ostride)
{
    double scale = (double)n_in / n_out, support = scale > 1.0 ? scale : 1.0;
    for (int i = 0; i < n_out; i++) {
        double centre = (i + 0.5) * scale - 0.5, sum = 0.0, wsum = 0.0;
        int lo = (int)floor(centre - support), hi = (int)ceil(centre + support);
        for (int j = lo; j <= hi; j++) {
            double w = 1.0 - fabs(j - centre) / support;
            if (w <= 0.0) continue;
            int jj = j < 0 ? 0 : j >= n_in ? n_in - 1 : j;    // clamp at the borders
            sum += w * in[(size_t)jj * stride];
            wsum += w;
        }
        out[(size_t)i * ostride] = (float)(sum / wsum);
    }
}

/* Shorter side to `size`, then the centre size x size crop, into dst (size, size, 3). */
static larch_status resize_crop(const image *im, int size, uint8_t *dst, const char *path)
{
    int nw, nh;
    if (im->w <= im->h) { nw = size; nh = (int)lround((double)im->h * size / im->w); }
    else { nh = size; nw = (int)lround((double)im->w * size / im->h); }
    if (nh < size) nh = size;
    if (nw < size) nw = size;
    float *src = malloc((size_t)im->w * im->h * 3 * sizeof *src);
    float *tmp = malloc((size_t)nw * im->h * 3 * sizeof *tmp);
    float *out = malloc((size_t)nw * nh * 3 * sizeof *out);
    if (!src || !tmp || !out) { free(src); free(tmp); free(out); return larch_fail(LARCH_ERR_NOMEM, "%s: out of memory", path); }
    for (size_t i = 0; i < (size_t)im->w * im->h * 3; i++) src[i] = im->rgb[i];
    for (int y = 0; y < im->h; y++)                        // rows: width w -> nw
        for (int c = 0; c < 3; c++)
            resample_line(src + (size_t)y * im->w * 3 + c, im->w, 3, tmp + (size_t)y * nw * 3 + c, nw, 3);
    for (int x = 0; x < nw; x++)                           // columns: height h -> nh
        for (int c = 0; c < 3; c++)
            resample_line(tmp + (size_t)x * 3 + c, im->h, nw * 3, out + (size_t)x * 3 + c, nh, nw * 3);
    int oy = (nh - size) / 2, ox = (nw - size) / 2;
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size * 3; x++) {
            float v = roundf(out[((size_t)(y + oy) * nw + ox) * 3 + x]);
            dst[(size_t)y * size * 3 + x] = (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
        }
    free(src);
    free(tmp);
    free(out);
    return LARCH_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The sorted entries of dir (sub-directories when dirs, else image files). */
static larch_status list_dir(const char *dir, int dirs, char ***out, int *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return larch_fail(LARCH_ERR_IO, "%s: %s", dir, strerror(errno));
    int cap = 0;
    larch_status s = LARCH_OK;
    for (struct dirent *e; (e = readdir(d)) && !s;) {
        if (e->d_name[0] == '.') continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) continue;
        if (dirs ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) continue;
        const char *ext = strrchr(e->d_name, '.');
        if (!dirs && (!ext || (strcasecmp(ext, ".png") && strcasecmp(ext, ".jpg") && strcasecmp(ext, ".jpeg")))) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            char **g = realloc(*out, (size_t)cap * sizeof *g);
            if (!g) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory"); break; }
            *out = g;
        }
        if (!((*out)[*n] = strdup(e->d_name))) s = larch_fail(LARCH_ERR_NOMEM, "out of memory");
        else (*n)++;
    }
    closedir(d);
    if (*n) qsort(*out, (size_t)*n, sizeof **out, cmp_str);
    return s;
}

static void free_list(char **l, int n)
{
    for (int i = 0; l && i < n; i++) free(l[i]);
    free(l);
}

static larch_status load_split(const char *root, char **classes, int n_classes, int size, larch_dataset *ds)
{
    char **sub = NULL;
    int n_sub = 0;
    larch_status s = list_dir(root, 1, &sub, &n_sub);
    for (int i = 0; i < n_sub && !s; i++)
        if (!bsearch(&sub[i], classes, (size_t)n_classes, sizeof *classes, cmp_str))
            s = larch_fail(LARCH_ERR_FORMAT, "%s/%s: class '%s' is not among the training classes", root, sub[i], sub[i]);
    free_list(sub, n_sub);
    const size_t per = (size_t)size * size * 3;
    ds->shape = (larch_shape){size, size, 3};
    ds->n_classes = n_classes;
    int cap = 0;
    for (int c = 0; c < n_classes && !s; c++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", root, classes[c]);
        struct stat st;
        if (stat(dir, &st) != 0) continue;                 // a class without test images
        char **files = NULL;
        int nf = 0;
        s = list_dir(dir, 0, &files, &nf);
        for (int i = 0; i < nf && !s; i++) {
            char path[8400];
            snprintf(path, sizeof path, "%s/%s", dir, files[i]);
            if (ds->n == cap) {
                cap = cap ? 2 * cap : 256;
                uint8_t *u = realloc(ds->u8, (size_t)cap * per);
                if (u) ds->u8 = u;
                int32_t *l = realloc(ds->labels, (size_t)cap * sizeof *l);
                if (l) ds->labels = l;
                if (!u || !l) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory after %d images", ds->n); break; }
            }
            image im = {0};
            const char *ext = strrchr(files[i], '.');
            s = strcasecmp(ext, ".png") == 0 ? load_png(path, &im) : load_jpeg(path, &im);
            if (!s && (im.w < 1 || im.h < 1)) s = larch_fail(LARCH_ERR_FORMAT, "%s: empty image", path);
            if (!s) s = resize_crop(&im, size, ds->u8 + (size_t)ds->n * per, path);
            free(im.rgb);
            if (!s) ds->labels[ds->n++] = c;
        }
        free_list(files, nf);
    }
    if (!s && ds->n == 0) s = larch_fail(LARCH_ERR_FORMAT, "%s holds no PNG or JPEG images in class folders", root);
    return s;
}

larch_status larch_convert_folder(const char *source, const larch_convert_opts *o, larch_converted *out)
{
    if (o->size < 1 || o->size > 4096)
        return larch_fail(LARCH_ERR_INVALID, "--size %d is out of range [1, 4096]", o->size);
    char train[4200], test[4200];
    snprintf(train, sizeof train, "%s/train", source);
    snprintf(test, sizeof test, "%s/test", source);
    larch_status s = list_dir(train, 1, &out->classes, &out->n_classes);
    if (!s && out->n_classes < 1) s = larch_fail(LARCH_ERR_FORMAT, "%s has no class folders", train);
    if (!s) s = load_split(train, out->classes, out->n_classes, o->size, &out->split[0]);
    if (!s) s = load_split(test, out->classes, out->n_classes, o->size, &out->split[1]);
    if (s) larch_converted_free(out);
    return s;
}
