#define _XOPEN_SOURCE 700   /* nftw */
/* test_datasets.c - the HDF5 dataset format and the converters of
 * datasets/: every source format from small files written here, the
 * values that come out (layout transposes, labels, resizing, statistics),
 * per-channel normalization in the loader, and the errors a bad file gives.
 */
#include "datasets/convert.h"
#include "larch/data.h"
#include "check.h"

#include <ftw.h>
#include <hdf5.h>
#include <jpeglib.h>
#include <png.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) { return remove(p); }

static void path_of(char *out, size_t len, const char *name) { snprintf(out, len, "%.100s/%.150s", dir, name); }

static void write_bytes(const char *name, const void *buf, size_t n)
{
    char p[512];
    path_of(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    fwrite(buf, 1, n, f);
    fclose(f);
}

/* ---- IDX ---- */
static void test_idx(void)
{
    char sub[300];
    path_of(sub, sizeof sub, "idx");
    mkdir(sub, 0755);
    uint8_t img[3 * 4 * 5], lab[3] = {2, 0, 9};
    for (int i = 0; i < 60; i++) img[i] = (uint8_t)(i * 4);
    const char *names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    for (int k = 0; k < 4; k++) {
        larch_idx x = {0x08, k % 2 ? 1 : 3, {3, 4, 5}, k % 2 ? 3 : 60, k % 2 ? (void *)lab : (void *)img};
        char p[400];
        snprintf(p, sizeof p, "%s/%s.gz", sub, names[k]);
        CHECK_OK(larch_idx_write(p, &x, 1));
    }
    larch_converted c = {0};
    larch_convert_opts o = {32};
    CHECK_OK(larch_convert_idx(sub, &o, &c));
    CHECK(c.split[0].n == 3 && c.split[0].shape.h == 4 && c.split[0].shape.w == 5 && c.split[0].shape.c == 1,
          "idx: %d samples of %dx%dx%d", c.split[0].n, c.split[0].shape.h, c.split[0].shape.w, c.split[0].shape.c);
    CHECK(c.split[0].labels[2] == 9 && c.split[0].u8[59] == 236 && !c.classes, "idx: values");
    larch_converted_free(&c);
}

/* ---- CIFAR ---- */
static void cifar_record(uint8_t *r, int label_bytes, int coarse, int fine, int seed)
{
    if (label_bytes == 2) r[0] = (uint8_t)coarse;
    r[label_bytes - 1] = (uint8_t)fine;
    for (int i = 0; i < 3072; i++) r[label_bytes + i] = (uint8_t)((i * 7 + seed * 31) & 255);
}

static void test_cifar(void)
{
    char sub[300], p[400];
    path_of(sub, sizeof sub, "cifar10");
    mkdir(sub, 0755);
    uint8_t rec[2 * 3074];
    for (int b = 1; b <= 5; b++) {
        cifar_record(rec, 1, 0, b, b);
        cifar_record(rec + 3073, 1, 0, 9, 100 + b);
        snprintf(p, sizeof p, "cifar10/data_batch_%d.bin", b);
        write_bytes(p, rec, 2 * 3073);
    }
    write_bytes("cifar10/test_batch.bin", rec, 3073);
    const char *meta = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    write_bytes("cifar10/batches.meta.txt", meta, strlen(meta));
    larch_converted c = {0};
    larch_convert_opts o = {32};
    CHECK_OK(larch_convert_cifar(sub, &o, &c));
    CHECK(c.split[0].n == 10 && c.split[1].n == 1 && c.n_classes == 10 && c.classes && !strcmp(c.classes[9], "truck"),
          "cifar10: %d/%d samples, %d names", c.split[0].n, c.split[1].n, c.n_classes);
    if (c.split[0].n == 10) {
        /* sample 0 = batch 1 record 0: pixel (y=1, x=2) channel c is planar byte c*1024 + 1*32 + 2 */
        const uint8_t *u = c.split[0].u8;
        int ok = 1;
        for (int ch = 0; ch < 3; ch++) ok &= u[(1 * 32 + 2) * 3 + ch] == (uint8_t)(((ch * 1024 + 34) * 7 + 31) & 255);
        CHECK(ok && c.split[0].labels[0] == 1 && c.split[0].labels[1] == 9 && c.split[0].shape.c == 3,
              "cifar10: planar to channels-last transpose or labels wrong");
    }
    larch_converted_free(&c);
    /* a truncated batch */
    write_bytes("cifar10/data_batch_3.bin", rec, 3000);
    CHECK_FAIL(larch_convert_cifar(sub, &o, &c), LARCH_ERR_FORMAT, "data_batch_3.bin: 3000 bytes is not a whole number");

    path_of(sub, sizeof sub, "cifar100");
    mkdir(sub, 0755);
    cifar_record(rec, 2, 19, 99, 1);
    cifar_record(rec + 3074, 2, 3, 42, 2);
    write_bytes("cifar100/train.bin", rec, 2 * 3074);
    write_bytes("cifar100/test.bin", rec, 3074);
    memset(&c, 0, sizeof c);
    CHECK_OK(larch_convert_cifar(sub, &o, &c));
    CHECK(c.split[0].n == 2 && c.split[0].labels[1] == 42 && c.split[0].n_derived == 1 && c.split[0].derived[0][1] == 3 &&
          !strcmp(c.split[0].derived_name[0], "coarse") && c.split[0].n_classes == 100,
          "cifar100: fine and coarse labels");
    larch_converted_free(&c);
}

/* ---- npy ---- */
static void write_npy(const char *name, const char *descr, const char *shape, const void *data, size_t bytes)
{
    char hdr[128];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    int total = 10 + n + 1, pad = (64 - total % 64) % 64;      /* header padded to 64 bytes, ends with \n */
    char buf[256 + 4096];
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    int hl = n + pad + 1;
    buf[8] = (char)(hl & 255);
    buf[9] = (char)(hl >> 8);
    memcpy(buf + 10, hdr, (size_t)n);
    memset(buf + 10 + n, ' ', (size_t)pad);
    buf[10 + n + pad] = '\n';
    memcpy(buf + 10 + hl, data, bytes);
    write_bytes(name, buf, 10 + (size_t)hl + bytes);
}

static void test_npy(void)
{
    char sub[300];
    path_of(sub, sizeof sub, "npy");
    mkdir(sub, 0755);
    float x[4 * 3];
    for (int i = 0; i < 12; i++) x[i] = (float)i - 0.5f;
    int64_t y[4] = {0, 1, 2, 1};
    write_npy("npy/x_train.npy", "<f4", "(4, 3)", x, sizeof x);
    write_npy("npy/y_train.npy", "<i8", "(4,)", y, sizeof y);
    write_npy("npy/x_test.npy", "<f4", "(2, 3)", x, 6 * sizeof(float));
    write_npy("npy/y_test.npy", "<i8", "(2,)", y, 2 * sizeof(int64_t));
    larch_converted c = {0};
    larch_convert_opts o = {32};
    CHECK_OK(larch_convert_npy(sub, &o, &c));
    CHECK(c.split[0].n == 4 && c.split[0].shape.c == 3 && c.split[0].shape.h == 1 && c.split[0].f32 &&
          c.split[0].f32[11] == 10.5f && c.split[0].labels[2] == 2 && c.split[0].n_classes == 3,
          "npy: float features (4, 3) with labels");
    larch_converted_free(&c);
    uint8_t img[2 * 2 * 2 * 3];
    for (int i = 0; i < 24; i++) img[i] = (uint8_t)(i * 10);
    write_npy("npy/x_train.npy", "|u1", "(2, 2, 2, 3)", img, sizeof img);
    write_npy("npy/y_train.npy", "<i8", "(2,)", y, 2 * sizeof(int64_t));
    write_npy("npy/x_test.npy", "|u1", "(2, 2, 2, 3)", img, sizeof img);
    memset(&c, 0, sizeof c);
    CHECK_OK(larch_convert_npy(sub, &o, &c));
    CHECK(c.split[0].u8 && c.split[0].shape.h == 2 && c.split[0].shape.c == 3 && c.split[0].u8[23] == 230, "npy: uint8 images");
    larch_converted_free(&c);
    write_npy("npy/y_train.npy", "<i8", "(3,)", y, 3 * sizeof(int64_t));
    CHECK_FAIL(larch_convert_npy(sub, &o, &c), LARCH_ERR_FORMAT, "x_train.npy has 2 samples but");
    write_npy("npy/y_train.npy", "<i8", "(2,)", y, sizeof(int64_t));   /* header says 2, data holds 1 */
    CHECK_FAIL(larch_convert_npy(sub, &o, &c), LARCH_ERR_FORMAT, "y_train.npy: truncated: 8 of 16 data bytes");
    write_npy("npy/y_train.npy", ">i8", "(2,)", y, 2 * sizeof(int64_t));
    CHECK_FAIL(larch_convert_npy(sub, &o, &c), LARCH_ERR_FORMAT, "dtype >i8 is not supported");
}

/* ---- folder of PNG and JPEG images ---- */
static void write_png(const char *name, int w, int h, const uint8_t *rgb)
{
    char p[512];
    path_of(p, sizeof p, name);
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)w;
    im.height = (png_uint_32)h;
    im.format = PNG_FORMAT_RGB;
    CHECK(png_image_write_to_file(&im, p, 0, rgb, 0, NULL), "cannot write %s", p);
}

static void write_jpeg(const char *name, int w, int h, const uint8_t *rgb)
{
    char p[512];
    path_of(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)rgb + (size_t)c.next_scanline * w * 3;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

static void test_folder(void)
{
    const char *dirs[] = {"img", "img/train", "img/test", "img/train/cat", "img/train/dog", "img/test/dog"};
    for (int i = 0; i < 6; i++) {
        char p[300];
        path_of(p, sizeof p, dirs[i]);
        mkdir(p, 0755);
    }
    /* cat: 16x8 PNG, left half (x < 8) red, right half blue; resized to
     * 4x4 the shorter side (8) becomes 4: 8x4, centre crop keeps x 2..5,
     * whose left two columns are red and right two blue. */
    uint8_t a[16 * 8 * 3], b[6 * 6 * 3];
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 16; x++) {
            uint8_t *px = a + (y * 16 + x) * 3;
            px[0] = x < 8 ? 200 : 0;
            px[1] = 10;
            px[2] = x < 8 ? 0 : 240;
        }
    write_png("img/train/cat/a.png", 16, 8, a);
    for (int i = 0; i < 6 * 6 * 3; i++) b[i] = i % 3 == 1 ? 128 : 64;    /* a flat colour */
    write_jpeg("img/train/dog/b.jpg", 6, 6, b);
    write_jpeg("img/test/dog/c.JPEG", 6, 6, b);
    write_bytes("img/train/dog/notes.txt", "skipped", 7);
    larch_converted c = {0};
    larch_convert_opts o = {4};
    char src[300];
    path_of(src, sizeof src, "img");
    CHECK_OK(larch_convert_folder(src, &o, &c));
    CHECK(c.split[0].n == 2 && c.split[1].n == 1 && c.n_classes == 2 && !strcmp(c.classes[0], "cat") &&
          c.split[0].labels[1] == 1 && c.split[1].labels[0] == 1 && c.split[0].shape.h == 4 && c.split[0].shape.c == 3,
          "folder: %d/%d images, %d classes", c.split[0].n, c.split[1].n, c.n_classes);
    if (c.split[0].n == 2) {
        const uint8_t *u = c.split[0].u8;
        CHECK(u[0] == 200 && u[2] == 0 && u[(0 * 4 + 3) * 3 + 2] == 240 && u[(3 * 4 + 3) * 3] == 0,
              "folder: resize + centre crop of the PNG: %d %d %d %d", u[0], u[2], u[11], u[45]);
        const uint8_t *v = u + 4 * 4 * 3;
        int flat = 1;
        for (int i = 0; i < 48; i++) flat &= abs(v[i] - (i % 3 == 1 ? 128 : 64)) <= 2;
        CHECK(flat, "folder: a flat JPEG stays flat after decoding and resizing");
    }
    larch_converted_free(&c);
    write_bytes("img/train/dog/broken.png", "\x89PNG\r\n\x1a\nxxxx", 12);
    CHECK_FAIL(larch_convert_folder(src, &o, &c), LARCH_ERR_FORMAT, "broken.png: cannot read the PNG image");
}

/* ---- the HDF5 layout: round trip, per-channel normalization, errors ---- */
static void test_h5(void)
{
    larch_dataset ds = {0};
    snprintf(ds.name, sizeof ds.name, "toy");
    ds.n = 4;
    ds.shape = (larch_shape){2, 2, 3};
    ds.n_classes = 3;
    ds.u8 = malloc(48);
    ds.labels = malloc(4 * sizeof(int32_t));
    ds.derived[0] = malloc(4 * sizeof(int32_t));
    ds.n_derived = 1;
    ds.derived_classes[0] = 2;
    snprintf(ds.derived_name[0], sizeof ds.derived_name[0], "coarse");
    for (int i = 0; i < 48; i++) ds.u8[i] = (uint8_t)(i * 5);
    for (int i = 0; i < 4; i++) { ds.labels[i] = i % 3; ds.derived[0][i] = i % 2; }
    float mean[3] = {0.5f, 0.25f, 0.0f}, std[3] = {0.5f, 0.25f, 2.0f};
    CHECK_OK(larch_dataset_set_norm(&ds, mean, std, 3));
    float bad[2] = {1, 1};
    CHECK_FAIL(larch_dataset_set_norm(&ds, bad, bad, 2), LARCH_ERR_SHAPE, "2 normalization values for 3 channels");
    char p[300], spec[400];
    path_of(p, sizeof p, "toy.h5");
    const char *names[3] = {"a", "b", "c"};
    CHECK_OK(larch_dataset_h5_write(p, "train", &ds, names));
    CHECK_FAIL(larch_dataset_h5_write(p, "train", &ds, names), LARCH_ERR_IO, "already holds a group /train");

    larch_dataset r;
    CHECK_OK(larch_dataset_h5_read(p, "train", &r));
    CHECK(r.n == 4 && r.shape.c == 3 && !memcmp(r.u8, ds.u8, 48) && r.labels[2] == 2 && r.n_classes == 3 &&
          r.n_derived == 1 && r.derived[0][3] == 1 && !strcmp(r.derived_name[0], "coarse") && r.n_norm == 3 &&
          r.mean[1] == 0.25f && r.std[2] == 2.0f, "h5 round trip");
    /* the loader normalizes each channel with its own pair */
    larch_loader *l = NULL;
    larch_loader_opts lo = {.global_batch = 4, .world = 1, .drop_last = 1, .seed = 1};
    CHECK_OK(larch_loader_create(&l, &r, &lo));
    if (l) {
        const larch_batch *b = larch_loader_next(l, NULL, NULL);
        int ok = 1;
        for (int j = 0; j < 48; j++) {
            int ch = j % 3;
            float want = ((float)r.u8[j] / 255.0f - mean[ch]) / std[ch];
            ok &= fabsf(b->x[j] - want) <= 1e-6f * (1 + fabsf(want));
        }
        CHECK(ok, "loader: per-channel normalization");
        larch_loader_free(l);
    }
    lo.crop_pad = 1;                                   /* the augmented path: padding is each channel's black */
    CHECK_OK(larch_loader_create(&l, &r, &lo));
    if (l) {
        const larch_batch *b = larch_loader_next(l, NULL, NULL);
        int ok = 1;
        for (int j = 0; j < 4 * 12; j++) {
            int ch = j % 3;
            float v = b->x[j] * std[ch] + mean[ch];    /* undo: a pixel value / 255 */
            float k = v * 255.0f;
            ok &= fabsf(k - roundf(k)) < 1e-3f;
        }
        CHECK(ok, "loader: augmented per-channel normalization");
        larch_loader_free(l);
    }
    larch_dataset_free(&r);
    larch_shape sh;
    int n, k;
    CHECK_OK(larch_dataset_h5_probe(p, "train", &sh, &n, &k));
    CHECK(n == 4 && k == 3 && sh.w == 2, "probe");
    char **cn;
    int ncn;
    CHECK_OK(larch_dataset_h5_class_names(p, "train", &cn, &ncn));
    CHECK(ncn == 3 && !strcmp(cn[2], "c"), "class names");
    larch_dataset_h5_free_names(cn, ncn);

    /* errors, each naming the file and the dataset */
    CHECK_FAIL(larch_dataset_h5_read(p, "test", &r), LARCH_ERR_FORMAT, "has no group /test (the split is missing)");
    snprintf(spec, sizeof spec, "%s:/train", p);
    CHECK_OK(larch_dataset_h5_read(spec, "x", &r));
    larch_dataset_free(&r);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "/bad", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t d4[4] = {4, 2, 2, 3}, d1 = 3;
    float fx[48] = {0};
    int32_t lab[4] = {0, 1, 5, 0};
    hid_t sp = H5Screate_simple(4, d4, NULL);
    hid_t d = H5Dcreate2(g, "images", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, fx);
    H5Dclose(d);
    H5Sclose(sp);
    hid_t g2 = H5Gcreate2(f, "/count", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    sp = H5Screate_simple(4, d4, NULL);
    d = H5Dcreate2(g2, "features", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, fx);
    H5Dclose(d);
    H5Sclose(sp);
    sp = H5Screate_simple(1, &d1, NULL);
    d = H5Dcreate2(g2, "labels", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, lab);
    H5Dclose(d);
    H5Sclose(sp);
    hid_t g3 = H5Gcreate2(f, "/range", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    sp = H5Screate_simple(4, d4, NULL);
    d = H5Dcreate2(g3, "features", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, fx);
    H5Dclose(d);
    H5Sclose(sp);
    hsize_t d1b = 4;
    sp = H5Screate_simple(1, &d1b, NULL);
    d = H5Dcreate2(g3, "labels", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, lab);
    H5Dclose(d);
    H5Sclose(sp);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 4);
    hsize_t d2 = 2;
    sp = H5Screate_simple(1, &d2, NULL);
    hid_t a = H5Acreate2(g3, "classes", st, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, st, "cat\0dog\0");
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(st);
    H5Gclose(g3);
    H5Gclose(g2);
    H5Gclose(g);
    H5Fclose(f);
    CHECK_FAIL(larch_dataset_h5_read(p, "bad", &r), LARCH_ERR_FORMAT, "toy.h5:/bad/images: has the wrong type: images must be uint8");
    CHECK_FAIL(larch_dataset_h5_read(p, "count", &r), LARCH_ERR_FORMAT,
               "toy.h5:/count/labels: has the wrong shape: 1 dimensions of which the first is 3, for 4 samples");
    CHECK_FAIL(larch_dataset_h5_read(p, "range", &r), LARCH_ERR_FORMAT, "toy.h5:/range/labels: has a label out of range: label 5 of sample 2 is outside 0..1");
    CHECK_OK(larch_dataset_h5_class_names(p, "range", &cn, &ncn));
    CHECK(ncn == 2 && !strcmp(cn[1], "dog"), "fixed-length class names");
    larch_dataset_h5_free_names(cn, ncn);
    /* a truncated file */
    char q[300];
    path_of(q, sizeof q, "cut.h5");
    FILE *in = fopen(p, "rb"), *out = fopen(q, "wb");
    char buf[1500];
    size_t got = fread(buf, 1, sizeof buf, in);
    fwrite(buf, 1, got, out);
    fclose(in);
    fclose(out);
    larch_status s = larch_dataset_h5_read(q, "train", &r);
    CHECK(s != LARCH_OK && strstr(larch_errmsg(), "cut.h5"), "truncated file: %s", larch_errmsg());
    path_of(q, sizeof q, "missing.h5");
    CHECK_FAIL(larch_dataset_h5_read(q, "train", &r), LARCH_ERR_IO, "missing.h5: cannot open it");
    larch_dataset_free(&ds);
}

/* Random resized crop: the identity crop reproduces the plain batch, crops
 * of a horizontal ramp stay ramps (rows equal, columns monotone, values
 * within the image's), a flat image stays flat, and bad settings fail. */
static void test_resized_crop(void)
{
    larch_dataset ds = {0};
    snprintf(ds.name, sizeof ds.name, "ramp");
    ds.n = 8;
    ds.shape = (larch_shape){6, 10, 1};
    ds.n_classes = 2;
    ds.u8 = malloc(8 * 60);
    ds.labels = calloc(8, sizeof(int32_t));
    for (int i = 0; i < 8; i++)
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 10; x++) ds.u8[i * 60 + y * 10 + x] = (uint8_t)(i < 7 ? 20 * x + i : 77);
    float m = 0.5f, sd = 0.25f;
    larch_dataset_set_norm(&ds, &m, &sd, 1);
    larch_loader_opts plain = {.global_batch = 8, .world = 1, .drop_last = 1, .seed = 3};
    larch_loader_opts rc = plain;
    rc.resized_crop = 1;
    rc.scale_lo = rc.scale_hi = 1.0f;
    rc.ratio_lo = rc.ratio_hi = 10.0f / 6.0f;
    larch_loader *a = NULL, *b = NULL;
    CHECK_OK(larch_loader_create(&a, &ds, &plain));
    CHECK_OK(larch_loader_create(&b, &ds, &rc));
    if (a && b) {
        const larch_batch *x = larch_loader_next(a, NULL, NULL), *y = larch_loader_next(b, NULL, NULL);
        float worst = 0;
        for (int j = 0; j < 8 * 60; j++) worst = fmaxf(worst, fabsf(x->x[j] - y->x[j]));
        CHECK(worst < 1e-5f, "resized crop of the whole image = no augmentation (worst %g)", worst);
    }
    larch_loader_free(a);
    larch_loader_free(b);
    rc.scale_lo = 0.2f;
    rc.scale_hi = 0.6f;
    rc.ratio_lo = 0.5f;
    rc.ratio_hi = 2.0f;
    rc.flip = 1;
    CHECK_OK(larch_loader_create(&b, &ds, &rc));
    if (b) {
        int rows_equal = 1, monotone = 1, inside = 1, flat = 1, varied = 0;
        float first[7];
        for (int e = 0; e < 3; e++) {
            const larch_batch *y = larch_loader_next(b, NULL, NULL);
            for (int j = 0; j < 8; j++) {
                const float *img = y->x + j * 60;
                int lbl_flat = 1;
                for (int k = 0; k < 60; k++) lbl_flat &= fabsf(img[k] - img[0]) < 1e-6f;
                if (j == 7) {                      /* no shuffle: sample 7 is the flat one */
                    flat &= lbl_flat && fabsf(img[0] - ((77 / 255.0f - m) / sd)) < 1e-5f;
                    continue;
                }
                int sgn = 0;
                for (int yy = 0; yy < 6; yy++)
                    for (int xx = 0; xx < 10; xx++) {
                        float v = img[yy * 10 + xx], raw = (v * sd + m) * 255.0f;
                        inside &= raw > -0.01f && raw < 187.01f;
                        rows_equal &= fabsf(v - img[xx]) < 1e-5f;
                        if (xx) {
                            float d = v - img[yy * 10 + xx - 1];
                            if (d > 1e-6f) { monotone &= sgn >= 0; sgn = 1; }
                            if (d < -1e-6f) { monotone &= sgn <= 0; sgn = -1; }
                        }
                    }
                if (e == 0 && j < 7) first[j] = img[0];
                if (e == 1 && j < 7 && fabsf(first[j] - img[0]) > 1e-6f) varied = 1;
            }
        }
        CHECK(rows_equal && monotone && inside && flat, "crops of a ramp stay ramps (rows %d, monotone %d, inside %d, flat %d)",
              rows_equal, monotone, inside, flat);
        CHECK(varied, "crops differ between epochs");
        larch_loader_free(b);
    }
    rc.crop_pad = 2;
    CHECK_FAIL(larch_loader_create(&b, &ds, &rc), LARCH_ERR_INVALID, "without crop_pad");
    larch_dataset_free(&ds);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/larch-test-datasets-XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    test_idx();
    test_cifar();
    test_npy();
    test_folder();
    test_h5();
    test_resized_crop();
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return check_result("test_datasets");
}
