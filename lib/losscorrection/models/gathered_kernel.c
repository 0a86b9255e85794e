/* The IMDB embedding model's body, logits = (keep * table[ids]).flatten(1) @ weight.T,
 * and its gradients, one review at a time (see gathered.py for the maths).
 *
 * Shapes (all contiguous, row-major): ids int64 (n, L) in [0, V); table float
 * (V, D); keep float (n, D) or NULL; weight float (C, L, D). padding_id: the id
 * reviews are padded with at the front, or -1 for none. The forward pass writes
 * lead int64 (n), the number of leading positions of each review that hold the
 * padding id, and prefix float (C, L + 1, D), prefix[c, s] = sum over t < s of
 * weight[c, t]; the backward pass reads both.
 *
 * A review's real tokens are read once: their table rows (D floats) and the
 * weight rows of their positions (C x D floats) pass through the core's caches,
 * and the leading padding contributes through prefix in one step.
 *
 * Each call allocates its scratch (C x D floats, and D more in the backward
 * pass) once on the heap and frees it before returning: C x D may exceed any
 * thread's stack. Both functions return GATHERED_BAD_SIZE when C, D or L is
 * not positive or the scratch size overflows, and GATHERED_NO_MEMORY when the
 * allocation fails; then nothing is computed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GATHERED_BAD_SIZE (-2)
#define GATHERED_NO_MEMORY (-3)

/* Table rows are read in the order of the review's tokens, which is random:
 * fetching the rows AHEAD tokens early hides the latency of the shared cache. */
#define AHEAD 8

/* GATHERED_BAD_SIZE, or 0 with *scratch holding zeroed room for C x D + extra floats. */
static int64_t allocate_scratch(int64_t C, int64_t D, int64_t L, int64_t extra, float **scratch)
{
    *scratch = NULL;
    if (C <= 0 || D <= 0 || L <= 0 || extra < 0)
        return GATHERED_BAD_SIZE;
    const size_t limit = SIZE_MAX / sizeof(float);
    if ((uint64_t)C > limit / (uint64_t)D || (uint64_t)(C * D) > limit - (uint64_t)extra)
        return GATHERED_BAD_SIZE;
    *scratch = calloc((size_t)(C * D + extra), sizeof(float));
    return *scratch ? 0 : GATHERED_NO_MEMORY;
}

static inline void prefetch_row(const float *row, int64_t D, int write)
{
    for (int64_t k = 0; k < D; k += 16) {
        if (write)
            __builtin_prefetch(row + k, 1);
        else
            __builtin_prefetch(row + k, 0);
    }
}

/* Returns -1, the flat index of the first id outside [0, V), GATHERED_BAD_SIZE or
 * GATHERED_NO_MEMORY (nothing computed but -1). */
int64_t gathered_forward(const int64_t *ids, int64_t n, int64_t L, const float *table, int64_t V,
                         int64_t D, const float *keep, const float *weight, int64_t C,
                         int64_t padding_id, float *logits, int64_t *lead, float *prefix)
{
    float *acc;
    const int64_t failed = allocate_scratch(C, D, L, 0, &acc);
    if (failed)
        return failed;
    for (int64_t i = 0; i < n * L; i++)
        if (ids[i] < 0 || ids[i] >= V) {
            free(acc);
            return i;
        }
    for (int64_t i = 0; i < n; i++) {
        int64_t s = 0;
        while (padding_id >= 0 && s < L && ids[i * L + s] == padding_id)
            s++;
        lead[i] = s;
    }
    for (int64_t c = 0; c < C; c++) {
        float *p = prefix + c * (L + 1) * D;
        memset(p, 0, D * sizeof(float));
        for (int64_t t = 0; t < L; t++)
            for (int64_t d = 0; d < D; d++)
                p[(t + 1) * D + d] = p[t * D + d] + weight[(c * L + t) * D + d];
    }
    const float *pad = padding_id >= 0 ? table + padding_id * D : NULL;
    for (int64_t i = 0; i < n; i++) {
        memset(acc, 0, (size_t)(C * D) * sizeof(float));
        for (int64_t t = lead[i]; t < L; t++) {
            if (t + AHEAD < L)
                prefetch_row(table + ids[i * L + t + AHEAD] * D, D, 0);
            const float *row = table + ids[i * L + t] * D;
            for (int64_t c = 0; c < C; c++) {
                const float *w = weight + (c * L + t) * D;
                float *a = acc + c * D;
                for (int64_t d = 0; d < D; d++)
                    a[d] += row[d] * w[d];
            }
        }
        if (lead[i] > 0)
            for (int64_t c = 0; c < C; c++) {
                const float *p = prefix + (c * (L + 1) + lead[i]) * D;
                for (int64_t d = 0; d < D; d++)
                    acc[c * D + d] += pad[d] * p[d];
            }
        for (int64_t c = 0; c < C; c++) {
            float s = 0.0f;
            for (int64_t d = 0; d < D; d++)
                s += acc[c * D + d] * (keep ? keep[i * D + d] : 1.0f);
            logits[i * C + c] = s;
        }
    }
    free(acc);
    return -1;
}

/* grad (n, C) of the logits. Accumulates into zeroed grad_table (V, D) and
 * grad_weight (C, L, D); lead_grad (C, L + 1, D), zeroed scratch, collects at
 * s = lead[i] the weight gradient that every position t < s shares, and is
 * summed over s > t into grad_weight at the end. Returns 0, GATHERED_BAD_SIZE
 * or GATHERED_NO_MEMORY (nothing computed). */
int64_t gathered_backward(const int64_t *ids, const int64_t *lead, int64_t n, int64_t L,
                       const float *table, int64_t D, const float *keep, const float *weight,
                       const float *prefix, int64_t C, const float *grad, int64_t padding_id,
                       float *grad_table, float *grad_weight, float *lead_grad)
{
    float *g;
    const int64_t failed = allocate_scratch(C, D, L, D, &g);
    if (failed)
        return failed;
    float *row_grad = g + C * D;
    const float *pad = padding_id >= 0 ? table + padding_id * D : NULL;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t c = 0; c < C; c++)
            for (int64_t d = 0; d < D; d++)
                g[c * D + d] = grad[i * C + c] * (keep ? keep[i * D + d] : 1.0f);
        for (int64_t t = lead[i]; t < L; t++) {
            if (t + AHEAD < L) {
                prefetch_row(table + ids[i * L + t + AHEAD] * D, D, 0);
                prefetch_row(grad_table + ids[i * L + t + AHEAD] * D, D, 1);
            }
            const int64_t id = ids[i * L + t];
            const float *row = table + id * D;
            memset(row_grad, 0, (size_t)D * sizeof(float));
            for (int64_t c = 0; c < C; c++) {
                const float *w = weight + (c * L + t) * D;
                float *gw = grad_weight + (c * L + t) * D;
                const float *gc = g + c * D;
                for (int64_t d = 0; d < D; d++) {
                    gw[d] += gc[d] * row[d];
                    row_grad[d] += gc[d] * w[d];
                }
            }
            float *gt = grad_table + id * D;
            for (int64_t d = 0; d < D; d++)
                gt[d] += row_grad[d];
        }
        if (lead[i] > 0)
            for (int64_t c = 0; c < C; c++) {
                const float *p = prefix + (c * (L + 1) + lead[i]) * D;
                float *lg = lead_grad + (c * (L + 1) + lead[i]) * D;
                float *gp = grad_table + padding_id * D;
                for (int64_t d = 0; d < D; d++) {
                    lg[d] += g[c * D + d] * pad[d];
                    gp[d] += g[c * D + d] * p[d];
                }
            }
    }
    /* position t < s shares lead_grad[c, s]: a running sum from s = L down to t + 1 */
    for (int64_t c = 0; c < C; c++) {
        float *lg = lead_grad + c * (L + 1) * D;
        for (int64_t t = L - 1; t >= 0; t--)
            for (int64_t d = 0; d < D; d++) {
                lg[t * D + d] += lg[(t + 1) * D + d];
                grad_weight[(c * L + t) * D + d] += lg[(t + 1) * D + d];
            }
    }
    free(g);
    return 0;
}
