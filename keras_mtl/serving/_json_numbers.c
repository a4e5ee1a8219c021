/* Regular nested JSON arrays of numbers straight into flat buffers.
 *
 * keras_mtl.serving.json_numeric hands a large :predict body to
 * `find_arrays(body, min_bytes, max_rank)`. In one pass over the body, with
 * the GIL released, it takes each maximal stretch made only of number
 * characters, brackets, commas and JSON whitespace, at least `min_bytes`
 * long, that is exactly one non-empty regular nested array of JSON numbers
 * (leading and trailing commas and whitespace aside), reads its shape and
 * its numbers, and answers a list of
 *
 *     (begin, end, bytearray of float64 or int64 values, shape, is_float)
 *
 * with [begin, end) the array's text in the body. A stretch that is
 * anything else, or about which anything is unsure (an integer past int64,
 * a float past the double range, a rank over max_rank), is left out, and
 * the caller leaves it to the JSON parser, so what is accepted, answered
 * and refused does not change.
 *
 * The values are what np.array gives for the same lists after a JSON
 * parse: int64 when the array holds no '.', 'e' or 'E', else float64, each
 * float correctly rounded and each integer converted as Python's float(int)
 * does (so "-0" is 0.0, and "-0.0" is -0.0).
 *
 * A float is exact when its digits fit the double (or long double) fast
 * path: m * 10^k or m / 10^k with m and 10^k both exact is one correctly
 * rounded operation; in long double that result is rounded once more to
 * double, which is right unless it sits within a long-double ulp of a
 * midpoint between two doubles, and those (and anything longer or further
 * out) are parsed by PyOS_string_to_double, Python's own correctly rounded
 * float(), after the GIL is taken back.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_RANK_LIMIT 64

#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
#define DOUBLE_FAST_PATH 1
#else
#define DOUBLE_FAST_PATH 0
#endif
#if DOUBLE_FAST_PATH && LDBL_MANT_DIG >= 64
#define LONG_DOUBLE_PATH 1
#else
#define LONG_DOUBLE_PATH 0
#endif

static const double POW10[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

#if LONG_DOUBLE_PATH
/* 10^k is exact in a 64-bit significand up to k = 27 (5^27 < 2^64) */
#define MAX_LD_POWER 27
static long double POW10_LD[MAX_LD_POWER + 1];
#endif

typedef struct {
    size_t begin, end, index; /* a number's text and its place in the output */
} slow_number;

typedef struct {
    const char *text, *end; /* the whole body */
    int max_rank;
    /* the array being read */
    int is_float;  /* a '.', 'e' or 'E' seen: the values are float64 */
    uint64_t *out; /* the bits of each int64 or float64 */
    size_t count, capacity;
    slow_number *slow;
    size_t slow_count, slow_capacity;
    int rank;
    Py_ssize_t shape[MAX_RANK_LIMIT];
} scanner;

enum { OK = 0, REFUSED = 1, NO_MEMORY = 2 };

/* *buffer (of `item`-byte items) holding at least `needed` of them: it
 * starts at `first` and doubles. */
static int grow(void **buffer, size_t *capacity, size_t item, size_t needed, size_t first) {
    if (needed <= *capacity) return OK;
    size_t wanted = *capacity ? *capacity : first;
    while (wanted < needed) {
        if (wanted > ((size_t)PY_SSIZE_T_MAX / item) / 2) return NO_MEMORY;
        wanted *= 2;
    }
    void *grown = PyMem_RawRealloc(*buffer, wanted * item);
    if (grown == NULL) return NO_MEMORY;
    *buffer = grown;
    *capacity = wanted;
    return OK;
}

static inline int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static inline const char *skip_space(const char *p, const char *end) {
    while (p < end && is_space(*p)) p++;
    return p;
}

static inline int is_digit(char c) { return (unsigned char)(c - '0') <= 9; }

static inline uint64_t double_bits(double value) {
    uint64_t bits;
    memcpy(&bits, &value, 8);
    return bits;
}

/* A float from its significant digits m (nonzero, at most 19 of them) and
 * decimal exponent k, when that is sure to be correctly rounded; else 0. */
static inline int fast_double(uint64_t m, long k, double *value) {
#if DOUBLE_FAST_PATH
    if (m <= ((uint64_t)1 << 53) && k >= -22 && k <= 22) {
        *value = k >= 0 ? (double)m * POW10[k] : (double)m / POW10[-k];
        return 1;
    }
#endif
#if LONG_DOUBLE_PATH
    if (k >= -MAX_LD_POWER && k <= MAX_LD_POWER) {
        long double r = k >= 0 ? (long double)m * POW10_LD[k] : (long double)m / POW10_LD[-k];
        double d = (double)r;
        if (!isfinite(d) || fabs(d) < DBL_MIN * 4) return 0;
        uint64_t bits = double_bits(d);
        if ((bits & (((uint64_t)1 << 52) - 1)) == 0) return 0; /* a binade's edge */
        /* d's ulp is 2^(e - 52) for its biased exponent field e + 1023 */
        int e = (int)((bits >> 52) & 0x7ff) - 1023;
        long double half_ulp = ldexpl(1.0L, e - 53);
        /* one ulp of r; r is within half of it of the exact value */
        long double slack = ldexpl(1.0L, e + 1 - LDBL_MANT_DIG);
        long double off = fabsl(r - (long double)d); /* exact */
        if (fabsl(off - half_ulp) <= slack) return 0;
        *value = d;
        return 1;
    }
#endif
    (void)m;
    (void)k;
    (void)value;
    return 0;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define EIGHT_AT_ONCE 1
#else
#define EIGHT_AT_ONCE 0
#endif

static const uint64_t POW10_INT[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};

#if EIGHT_AT_ONCE
/* How many of the 8 characters at p lead with digits (0..8), and their
 * value, reading the 8 bytes as one integer (little-endian: the first
 * character is the lowest byte). */
static inline int eight_digits(const char *p, uint64_t *value) {
    const uint64_t high = 0xF0F0F0F0F0F0F0F0ull, zeros = 0x3030303030303030ull;
    uint64_t x;
    memcpy(&x, p, 8);
    /* a byte is a digit when its high nibble is 3 and its low nibble at most 9
     * (adding 6 keeps the high nibble; a carry out of a byte only comes from
     * a non-digit, and only bytes after the first non-digit see it) */
    uint64_t other = ((x & high) ^ zeros) | (((x + 0x0606060606060606ull) & high) ^ zeros);
    /* the top bit of each byte of `other` that is not zero */
    uint64_t flags =
        (((other & 0x7F7F7F7F7F7F7F7Full) + 0x7F7F7F7F7F7F7F7Full) | other) & 0x8080808080808080ull;
    int n = flags ? __builtin_ctzll(flags) >> 3 : 8;
    if (n == 0) {
        *value = 0;
        return 0;
    }
    /* the n digits as the last n of 8, after 8 - n zero digits; the
     * subtraction borrows only upwards, out of the bytes shifted away */
    uint64_t d = (x - zeros) << (8 * (8 - n));
    d = d * 10 + (d >> 8); /* pairs: each even byte holds two digits' value */
    d = (((d & 0x000000FF000000FFull) * (100 + (1000000ull << 32))) +
         (((d >> 16) & 0x000000FF000000FFull) * (1 + (10000ull << 32)))) >>
        32;
    *value = (uint32_t)d;
    return n;
}
#endif

/* The run of digits at p into m, up to 19 significant digits in all (the
 * first is not a zero unless m already holds a digit); *dropped counts the
 * digits past those. Answers the end of the run. */
static inline const char *digit_run(const char *p, const char *end, uint64_t *m, int *digits,
                                    long *dropped) {
#if EIGHT_AT_ONCE
    while (end - p >= 8) {
        uint64_t chunk;
        int n = eight_digits(p, &chunk);
        if (*digits + n > 19) break; /* the byte loop drops what is past 19 */
        *m = *m * POW10_INT[n] + chunk;
        *digits += n;
        p += n;
        if (n < 8) return p;
    }
#endif
    while (p < end && is_digit(*p)) {
        if (*digits < 19) {
            *m = *m * 10 + (uint64_t)(*p - '0');
            (*digits)++;
        } else {
            (*dropped)++;
        }
        p++;
    }
    return p;
}

/* One JSON number at *at, appended to the output; *at moves past it. */
static int number(scanner *s, const char **at) {
    const char *p = *at, *end = s->end, *begin = p;
    int negative = 0;
    if (p < end && *p == '-') {
        negative = 1;
        p++;
    }
    if (p >= end || !is_digit(*p)) return REFUSED;
    uint64_t m = 0;
    int digits = 0;     /* significant digits taken into m */
    long dropped = 0;   /* and past those 19 */
    int integer = 1;
    long k = 0;
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p)) return REFUSED; /* JSON has no leading zeros */
    } else {
        p = digit_run(p, end, &m, &digits, &dropped);
        k += dropped; /* integer digits past the 19th each scale m by 10 */
    }
    if (p < end && *p == '.') {
        integer = 0;
        p++;
        if (p >= end || !is_digit(*p)) return REFUSED;
        if (m == 0) {
            for (; p < end && *p == '0'; p++) k--; /* the fraction's leading zeros */
        }
        int before = digits;
        p = digit_run(p, end, &m, &digits, &dropped);
        k -= digits - before;
    }
    int too_long = dropped > 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        integer = 0;
        p++;
        int exponent_negative = 0;
        if (p < end && (*p == '+' || *p == '-')) {
            exponent_negative = *p == '-';
            p++;
        }
        if (p >= end || !is_digit(*p)) return REFUSED;
        long exponent = 0;
        while (p < end && is_digit(*p)) {
            if (exponent < 100000) exponent = exponent * 10 + (*p - '0');
            p++;
        }
        k += exponent_negative ? -exponent : exponent;
    }
    *at = p;
    if (s->count == s->capacity) {
        int status = grow((void **)&s->out, &s->capacity, 8, s->count + 1, 1024);
        if (status != OK) return status;
    }
    uint64_t *slot = s->out + s->count;
    if (integer) {
        /* as np.array makes it from the Python int: past int64 it would be
         * an object array, which the usual path handles */
        if (too_long) return REFUSED;
        if (negative ? m > (uint64_t)1 << 63 : m > (uint64_t)INT64_MAX) return REFUSED;
        if (!s->is_float) {
            *slot = negative ? 0 - m : m; /* two's complement int64 */
            s->count++;
            return OK;
        }
        if (m == 0) negative = 0; /* float(-0) is 0.0 */
    } else if (!s->is_float) {
        /* the first float: the integers so far become floats, rounded to
         * nearest even as float(int) rounds them */
        for (size_t i = 0; i < s->count; i++) s->out[i] = double_bits((double)(int64_t)s->out[i]);
        s->is_float = 1;
    }
    double value;
    if (m == 0) {
        value = 0.0;
    } else if (too_long || !fast_double(m, k, &value)) {
        int status =
            grow((void **)&s->slow, &s->slow_capacity, sizeof(slow_number), s->slow_count + 1, 64);
        if (status != OK) return status;
        slow_number *entry = &s->slow[s->slow_count++];
        entry->begin = (size_t)(begin - s->text);
        entry->end = (size_t)(p - s->text);
        entry->index = s->count;
        value = 0.0; /* filled in later */
        negative = 0;
    }
    *slot = double_bits(negative ? -value : value);
    s->count++;
    return OK;
}

/* One array from *at (a '['): its rank and shape into s, its values out;
 * *at moves past its closing bracket. */
static int scan(scanner *s, const char **at) {
    Py_ssize_t counts[MAX_RANK_LIMIT];
    const char *p = *at, *end = s->end;
    int rank = 0;
    while (p < end && *p == '[') {
        if (++rank > s->max_rank) return REFUSED;
        p = skip_space(p + 1, end);
    }
    if (rank == 0) return REFUSED;
    for (int level = 0; level < rank; level++) {
        s->shape[level] = -1;
        counts[level] = 0;
    }
    int depth = rank - 1;
    for (;;) {
        /* a number, the next element of the innermost list */
        int status = number(s, &p);
        if (status != OK) return status;
        counts[depth]++;
        p = skip_space(p, end);
        for (;;) {
            if (p >= end) return REFUSED;
            char c = *p++;
            if (c == ',') {
                /* the next element: a number, or lists down to the numbers */
                p = skip_space(p, end);
                for (int level = depth + 1; level < rank; level++) {
                    if (p >= end || *p != '[') return REFUSED;
                    p = skip_space(p + 1, end);
                    counts[level] = 0;
                }
                depth = rank - 1;
                break;
            }
            if (c != ']') return REFUSED;
            if (s->shape[depth] < 0) {
                s->shape[depth] = counts[depth];
            } else if (counts[depth] != s->shape[depth]) {
                return REFUSED; /* ragged */
            }
            if (depth == 0) {
                s->rank = rank;
                *at = p;
                return OK;
            }
            p = skip_space(p, end);
            depth--;
            counts[depth]++;
        }
    }
}

/* The characters a numeric array is written with */
static unsigned char REGION[256];

static const char *skip_separators(const char *p, const char *end) {
    while (p < end && (is_space(*p) || *p == ',')) p++;
    return p;
}

typedef struct {
    size_t begin, end; /* the array's text */
    scanner s;
} found_array;

static void free_found(found_array *found, size_t count) {
    for (size_t i = 0; i < count; i++) {
        PyMem_RawFree(found[i].s.out);
        PyMem_RawFree(found[i].s.slow);
    }
    PyMem_RawFree(found);
}

/* Every stretch's array, into *found_out; without the GIL. */
static int find(const char *text, const char *end, Py_ssize_t min_bytes, int max_rank,
                found_array **found_out, size_t *count_out) {
    found_array *found = NULL;
    size_t count = 0, capacity = 0;
    scanner s;
    memset(&s, 0, sizeof s);
    s.text = text;
    s.end = end;
    s.max_rank = max_rank;
    const char *p = text;
    int status = OK;
    while (p < end) {
        while (p < end && !REGION[(unsigned char)*p]) p++;
        const char *run = p;
        p = skip_separators(p, end);
        if (p < end && *p == '[') {
            const char *after = p;
            s.is_float = 0;
            s.count = s.slow_count = 0;
            status = scan(&s, &after);
            if (status == NO_MEMORY) break;
            if (status == OK) {
                const char *next = skip_separators(after, end);
                int whole = next == end || !REGION[(unsigned char)*next];
                if (whole && next - run >= min_bytes) {
                    status = grow((void **)&found, &capacity, sizeof(found_array), count + 1, 8);
                    if (status != OK) break;
                    found[count].begin = (size_t)(p - text);
                    found[count].end = (size_t)(after - text);
                    found[count].s = s;
                    count++;
                    /* the next array gets buffers of its own */
                    s.out = NULL;
                    s.slow = NULL;
                    s.capacity = s.slow_capacity = 0;
                }
                p = next;
            }
        }
        while (p < end && REGION[(unsigned char)*p]) p++; /* the rest of the stretch */
    }
    PyMem_RawFree(s.out);
    PyMem_RawFree(s.slow);
    if (status == NO_MEMORY) {
        free_found(found, count);
        return NO_MEMORY;
    }
    *found_out = found;
    *count_out = count;
    return OK;
}

/* The slow numbers of s parsed by Python's float(): 1, or 0 when one is
 * past the double range, or -1 with an exception set. */
static int finish_slow(scanner *s, char **token, size_t *token_size) {
    for (size_t i = 0; i < s->slow_count; i++) {
        size_t length = s->slow[i].end - s->slow[i].begin;
        if (length + 1 > *token_size) {
            char *bigger = PyMem_Realloc(*token, length + 1);
            if (bigger == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            *token = bigger;
            *token_size = length + 1;
        }
        memcpy(*token, s->text + s->slow[i].begin, length);
        (*token)[length] = '\0';
        char *stop = NULL;
        double value = PyOS_string_to_double(*token, &stop, NULL);
        if (value == -1.0 && PyErr_Occurred()) return -1;
        if (stop != *token + length || !isfinite(value)) return 0;
        s->out[s->slow[i].index] = double_bits(value);
    }
    return 1;
}

static PyObject *as_tuple(found_array *f) {
    PyObject *dims = PyTuple_New(f->s.rank);
    if (dims == NULL) return NULL;
    for (int level = 0; level < f->s.rank; level++) {
        PyObject *dim = PyLong_FromSsize_t(f->s.shape[level]);
        if (dim == NULL) {
            Py_DECREF(dims);
            return NULL;
        }
        PyTuple_SET_ITEM(dims, level, dim);
    }
    PyObject *values =
        PyByteArray_FromStringAndSize((const char *)f->s.out, (Py_ssize_t)(8 * f->s.count));
    if (values == NULL) {
        Py_DECREF(dims);
        return NULL;
    }
    return Py_BuildValue("(nnNNO)", (Py_ssize_t)f->begin, (Py_ssize_t)f->end, values, dims,
                         f->s.is_float ? Py_True : Py_False);
}

static PyObject *find_arrays(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer view;
    Py_ssize_t min_bytes;
    int max_rank;
    if (!PyArg_ParseTuple(args, "y*ni", &view, &min_bytes, &max_rank)) return NULL;
    if (max_rank < 1 || max_rank > MAX_RANK_LIMIT) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "max_rank must be within 1..%d, got %d", MAX_RANK_LIMIT,
                     max_rank);
        return NULL;
    }
    const char *text = view.buf;
    found_array *found = NULL;
    size_t count = 0;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = find(text, text + view.len, min_bytes, max_rank, &found, &count);
    Py_END_ALLOW_THREADS
    if (status == NO_MEMORY) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    PyObject *result = PyList_New(0);
    char *token = NULL;
    size_t token_size = 0;
    for (size_t i = 0; result != NULL && i < count; i++) {
        int finished = finish_slow(&found[i].s, &token, &token_size);
        if (finished == 0) continue; /* left to the JSON parser */
        PyObject *item = finished < 0 ? NULL : as_tuple(&found[i]);
        if (item == NULL || PyList_Append(result, item) < 0) Py_CLEAR(result);
        Py_XDECREF(item);
    }
    PyMem_Free(token);
    free_found(found, count);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"find_arrays", find_arrays, METH_VARARGS,
     "find_arrays(body, min_bytes, max_rank) -> [(begin, end, values, shape, is_float)]\n\n"
     "Each stretch of `body` (bytes-like) at least `min_bytes` long that is\n"
     "one non-empty regular nested array of JSON numbers: where its text is,\n"
     "its values as float64 or int64 in a bytearray, and its shape."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_json_numbers", "Regular numeric JSON arrays into flat buffers.",
    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__json_numbers(void) {
    for (const char *c = "0123456789.eE+-[], \t\n\r"; *c; c++) REGION[(unsigned char)*c] = 1;
#if LONG_DOUBLE_PATH
    POW10_LD[0] = 1.0L;
    for (int i = 1; i <= MAX_LD_POWER; i++) POW10_LD[i] = POW10_LD[i - 1] * 10.0L;
#endif
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "LONG_DOUBLE_PATH", LONG_DOUBLE_PATH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
