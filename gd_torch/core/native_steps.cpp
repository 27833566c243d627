// The fast path's SGD steps, hand-written: for each mini-batch, the forward pass, BP1-BP4 and
// torch.optim.SGD's update, for K independent networks of the same sizes (K = 1 for one run).
// The math is that of gd_torch/core/manual.py, line for line; this file only removes the
// operators' dispatch, which costs more than the arithmetic of a 13,002-weight network at
// batch 10. gd_torch/core/native.py compiles it once per machine and calls `steps_float` or
// `steps_double` through ctypes, on the tensors' own memory.
//
// Layout (row-major, as the tensors are):
//   weights[l]   W^{l+1} of every copy, (K, n_{l+1}, n_l)    biases[l]  b^{l+1}, (K, n_{l+1})
//   images       a^0 of every example, (N, n_0)             targets    one-hot y, (N, n_L)
//   indices      example i of step s of copy k: indices[k * copy_stride + s * batch + i]
//   costs, norms C and ‖∇C‖ of step s of copy k: [s * K + k], for start <= s < stop
// weight_gradients[l], bias_gradients[l] are written with every step's ∂C/∂W, ∂C/∂b (BP4,
// BP3): after the call they hold the last step's.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// e^x in float32 by operations that vectorise, as std::exp does not without -ffast-math (a loop of
// σ here: 6.9 -> 1.3 ns each). x = n ln 2 + r with |r| <= ln 2 / 2, so e^x = 2^n e^r, e^r by the
// polynomial of Cephes' expf (σ within 2 ε of the exact, as torch.sigmoid: tests/test_native.py).
// x is first clamped to where 2^n is a normal float, so σ(z) for z below -87 is about 1e-39 rather
// than 0; NaN stays NaN.
inline float exponential(float x) {
    x = x > 88.3762626647949f ? 88.3762626647949f : x;
    x = x < -87.3365478515625f ? -87.3365478515625f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // x / ln 2, to the nearest
    const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;     // x − n ln 2, in two parts
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;  // e^r
    n = n == n ? n : 0.0f;       // (NaN's p is NaN already)
    const int32_t bits = (int32_t(n) + 127) << 23;
    float two_to_n;
    std::memcpy(&two_to_n, &bits, sizeof two_to_n);
    return p * two_to_n;
}

inline double exponential(double x) {  // float64 runs keep the library's e^x
    return std::exp(x);
}

template <typename T>
T sigmoid(T z) {
    return T(1) / (T(1) + exponential(-z));  // a = σ(z)
}

template <typename T>
T softplus(T z) {  // ln(1 + e^z), without overflow
    return z > T(0) ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z));
}

constexpr int64_t BLOCK = 64;  // examples whose rows a pass over one weight row reuses (in L2)
constexpr int64_t LANES = 16;  // the first layer's neurons, LANES at a time (in vector registers)

// a^0 of one example: its nonzero activations `values` at the pixels `columns`
template <typename T>
struct Pixels {
    const int32_t* columns;
    const T* values;
    int64_t count;
};

// The length of a row of W^1 transposed (a pixel's weights side by side): n_first, padded to
// whole vectors with zeros
inline int64_t transposed_width(int64_t n_first) {
    return (n_first + LANES - 1) / LANES * LANES;
}

// W^1 (n_first, n_pixels) into wt (n_pixels, width), the layout of first_weighted_inputs
template <typename T>
void transpose_first(const T* w, int64_t n_first, int64_t n_pixels, int64_t width, T* wt) {
    for (int64_t j = 0; j < n_first; ++j)
        for (int64_t m = 0; m < n_pixels; ++m) wt[m * width + j] = w[j * n_pixels + m];
}

// The inverse: wt (n_pixels, width) back into W^1's own layout (n_first, n_pixels)
template <typename T>
void untranspose_first(const T* wt, int64_t n_first, int64_t n_pixels, int64_t width, T* w) {
    for (int64_t j = 0; j < n_first; ++j)
        for (int64_t m = 0; m < n_pixels; ++m) w[j * n_pixels + m] = wt[m * width + j];
}

// The most neurons of any layer, input included: the length of one example's working rows
inline int64_t widest_layer(int64_t layers, const int64_t* sizes) {
    int64_t widest = 0;
    for (int64_t l = 0; l <= layers; ++l) widest = sizes[l] > widest ? sizes[l] : widest;
    return widest;
}

// z^1 = W^1 a^0 + b^1 for one example, from its nonzero pixels; wt: W^1 transposed, a pixel's
// weights of n neurons in a row of `width` (n rounded up to LANES, the padding zero)
template <typename T>
void first_weighted_inputs(const T* wt, int64_t width, const T* b, int64_t n, Pixels<T> x,
                           T* z) {
    for (int64_t j0 = 0; j0 < n; j0 += LANES) {
        T even[LANES] = {}, odd[LANES] = {};  // two sums, so that a pixel need not wait for the last
        int64_t p = 0;
        for (; p + 2 <= x.count; p += 2) {
            const T v0 = x.values[p], v1 = x.values[p + 1];
            const T* w0 = wt + x.columns[p] * width + j0;
            const T* w1 = wt + x.columns[p + 1] * width + j0;
#pragma omp simd
            for (int64_t j = 0; j < LANES; ++j) even[j] += v0 * w0[j];
#pragma omp simd
            for (int64_t j = 0; j < LANES; ++j) odd[j] += v1 * w1[j];
        }
        if (p < x.count) {
            const T v = x.values[p];
            const T* w = wt + x.columns[p] * width + j0;
#pragma omp simd
            for (int64_t j = 0; j < LANES; ++j) even[j] += v * w[j];
        }
        T sums[LANES];
#pragma omp simd
        for (int64_t j = 0; j < LANES; ++j) sums[j] = even[j] + odd[j];
        const int64_t count = n - j0 < LANES ? n - j0 : LANES;
        for (int64_t j = 0; j < count; ++j) z[j0 + j] = b[j0 + j] + sums[j];
    }
}

// BP4 of the first layer for one example: ∂C/∂W^1_j,m += δ_j a^0_m at its nonzero pixels m, in
// the transposed layout of first_weighted_inputs (gt)
template <typename T>
void add_first_outer_product(T* gt, int64_t width, const T* delta, int64_t n, Pixels<T> x) {
    for (int64_t j0 = 0; j0 < n; j0 += LANES) {
        T d[LANES] = {};
        const int64_t count = n - j0 < LANES ? n - j0 : LANES;
        for (int64_t j = 0; j < count; ++j) d[j] = delta[j0 + j];
        for (int64_t p = 0; p < x.count; ++p) {
            const T v = x.values[p];
            T* g = gt + x.columns[p] * width + j0;
#pragma omp simd
            for (int64_t j = 0; j < LANES; ++j) g[j] += v * d[j];
        }
    }
}

// z_i = b + Σ_m w_m x_i,m for the rows x_i of examples i0 <= i < i1, one row at a time: for a
// layer's last neuron when it has an odd number, and the last row of a batch (the pairs below
// take the rest)
template <typename T>
void weighted_inputs(const T* w, T bias, const T* const* rows, int64_t i0, int64_t i1,
                     int64_t n_in, T* z, int64_t z_stride) {
    for (int64_t i = i0; i < i1; ++i) {
        const T* x = rows[i];
        T s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t m = 0; m < n_in; ++m) s += w[m] * x[m];
        z[i * z_stride] = bias + s;
    }
}

// g_m += Σ_i δ_i x_i,m over examples i0 <= i < i1 (δ_i = delta[i * stride]), one row of BP4,
// one example at a time (as weighted_inputs, for what the pairs below leave)
template <typename T>
void add_outer_products(T* g, const T* delta, int64_t stride, const T* const* rows, int64_t i0,
                        int64_t i1, int64_t n_in) {
    for (int64_t i = i0; i < i1; ++i) {
        const T d = delta[i * stride];
        const T* x = rows[i];
#pragma omp simd
        for (int64_t m = 0; m < n_in; ++m) g[m] += d * x[m];
    }
}

// weighted_inputs for two neurons j, j + 1 at once (weights w0, w1, biases b0, b1; z of j + 1 is
// z + 1): four rows and two weight rows to a pass, so eight multiply-adds share six loads
template <typename T>
void weighted_inputs_pair(const T* w0, const T* w1, T b0, T b1, const T* const* rows, int64_t i0,
                          int64_t i1, int64_t n_in, T* z, int64_t z_stride) {
    int64_t i = i0;
    for (; i + 4 <= i1; i += 4) {
        const T *x0 = rows[i], *x1 = rows[i + 1], *x2 = rows[i + 2], *x3 = rows[i + 3];
        T s0 = 0, s1 = 0, s2 = 0, s3 = 0, t0 = 0, t1 = 0, t2 = 0, t3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3, t0, t1, t2, t3)
        for (int64_t m = 0; m < n_in; ++m) {
            s0 += w0[m] * x0[m];
            s1 += w0[m] * x1[m];
            s2 += w0[m] * x2[m];
            s3 += w0[m] * x3[m];
            t0 += w1[m] * x0[m];
            t1 += w1[m] * x1[m];
            t2 += w1[m] * x2[m];
            t3 += w1[m] * x3[m];
        }
        const T sums[4] = {s0, s1, s2, s3}, next[4] = {t0, t1, t2, t3};
        for (int r = 0; r < 4; ++r) {
            z[(i + r) * z_stride] = b0 + sums[r];
            z[(i + r) * z_stride + 1] = b1 + next[r];
        }
    }
    if (i + 2 <= i1) {
        const T *x0 = rows[i], *x1 = rows[i + 1];
        T s0 = 0, s1 = 0, t0 = 0, t1 = 0;
#pragma omp simd reduction(+ : s0, s1, t0, t1)
        for (int64_t m = 0; m < n_in; ++m) {
            s0 += w0[m] * x0[m];
            s1 += w0[m] * x1[m];
            t0 += w1[m] * x0[m];
            t1 += w1[m] * x1[m];
        }
        z[i * z_stride] = b0 + s0, z[i * z_stride + 1] = b1 + t0;
        z[(i + 1) * z_stride] = b0 + s1, z[(i + 1) * z_stride + 1] = b1 + t1;
        i += 2;
    }
    weighted_inputs(w0, b0, rows, i, i1, n_in, z, z_stride);  // the row left, if one is
    weighted_inputs(w1, b1, rows, i, i1, n_in, z + 1, z_stride);
}

// add_outer_products for two neurons j, j + 1 at once (gradient rows g0, g1; δ_i,j+1 is
// delta[i * stride + 1]): four rows of a^{l-1} to a pass over both gradient rows
template <typename T>
void add_outer_products_pair(T* g0, T* g1, const T* delta, int64_t stride, const T* const* rows,
                             int64_t i0, int64_t i1, int64_t n_in) {
    int64_t i = i0;
    for (; i + 4 <= i1; i += 4) {
        const T* d = delta + i * stride;
        const T d0 = d[0], d1 = d[stride], d2 = d[2 * stride], d3 = d[3 * stride];
        const T e0 = d[1], e1 = d[stride + 1], e2 = d[2 * stride + 1], e3 = d[3 * stride + 1];
        const T *x0 = rows[i], *x1 = rows[i + 1], *x2 = rows[i + 2], *x3 = rows[i + 3];
#pragma omp simd
        for (int64_t m = 0; m < n_in; ++m) {
            g0[m] += d0 * x0[m] + d1 * x1[m] + d2 * x2[m] + d3 * x3[m];
            g1[m] += e0 * x0[m] + e1 * x1[m] + e2 * x2[m] + e3 * x3[m];
        }
    }
    if (i + 2 <= i1) {
        const T* d = delta + i * stride;
        const T d0 = d[0], d1 = d[stride], e0 = d[1], e1 = d[stride + 1];
        const T *x0 = rows[i], *x1 = rows[i + 1];
#pragma omp simd
        for (int64_t m = 0; m < n_in; ++m) {
            g0[m] += d0 * x0[m] + d1 * x1[m];
            g1[m] += e0 * x0[m] + e1 * x1[m];
        }
        i += 2;
    }
    add_outer_products(g0, delta, stride, rows, i, i1, n_in);  // the row left, if one is
    add_outer_products(g1, delta + 1, stride, rows, i, i1, n_in);
}

// z_i = W a_i + b for one layer (n neurons of n_in inputs) and the examples i0 <= i < i1 (their
// inputs a_i are rows[i]), two neurons at a time; z_i,j is written at z[i * n + j]
template <typename T>
void layer_weighted_inputs(const T* w, const T* b, const T* const* rows, int64_t i0, int64_t i1,
                           int64_t n_in, int64_t n, T* z) {
    int64_t j = 0;
    for (; j + 2 <= n; j += 2)
        weighted_inputs_pair(w + j * n_in, w + (j + 1) * n_in, b[j], b[j + 1], rows, i0, i1, n_in,
                             z + j, n);
    if (j < n) weighted_inputs(w + j * n_in, b[j], rows, i0, i1, n_in, z + j, n);
}

template <typename T>
struct Step {  // one copy's buffers for one mini-batch, reused step after step
    std::vector<std::vector<T>> activations;  // a^1 .. a^L, (batch, n_l)
    std::vector<T> delta, previous_delta;     // δ^l, δ^{l-1}, (batch, n_l)
    std::vector<const T*> rows;               // the rows of a^{l-1}, one per example
};

// Where the examples' data lie: a^0 of example e by its nonzero pixels, values[starts[e]] ..
// values[starts[e + 1] - 1] at the pixels columns[starts[e]] .., and its one-hot target y
// (n_out values at targets + e * n_out)
template <typename T>
struct Examples {
    const int64_t* starts;
    const int32_t* columns;
    const T* values;
    const T* targets;
    int64_t n_out;

    Pixels<T> pixels(int64_t e) const {  // a^0 of example e
        return {columns + starts[e], values + starts[e], starts[e + 1] - starts[e]};
    }

    const T* target(int64_t e) const { return targets + e * n_out; }  // y of example e
};

constexpr int64_t GATHERED = 1024;  // examples copied side by side at a time (some 1.2 MB)

// Examples copied side by side in the order the steps take them: each step's examples then
// lie next to the last step's, where the memory streams them, rather than at random places in
// the training set (at batch 10, a quarter of a step's time); the copy reads each example once
template <typename T>
struct Gathered {
    std::vector<int64_t> starts;
    std::vector<int32_t> columns;
    std::vector<T> values, targets;

    // The examples order[0], .., order[count - 1] of `data`, as examples 0, .., count - 1
    Examples<T> take(const Examples<T>& data, const int64_t* order, int64_t count) {
        starts.resize(count + 1);
        starts[0] = 0;
        for (int64_t e = 0; e < count; ++e)
            starts[e + 1] = starts[e] + data.starts[order[e] + 1] - data.starts[order[e]];
        columns.resize(starts[count]);
        values.resize(starts[count]);
        targets.resize(count * data.n_out);
        for (int64_t e = 0; e < count; ++e) {
            const Pixels<T> x = data.pixels(order[e]);
            std::memcpy(columns.data() + starts[e], x.columns, x.count * sizeof(int32_t));
            std::memcpy(values.data() + starts[e], x.values, x.count * sizeof(T));
            std::memcpy(targets.data() + e * data.n_out, data.target(order[e]),
                        data.n_out * sizeof(T));
        }
        return {starts.data(), columns.data(), values.data(), targets.data(), data.n_out};
    }
};

// The forward pass of one network (weights w[l], biases b[l]; W^1 read from first_wt, its
// transposed copy, not from w[0]) for `count` examples, a^0 of example i from its nonzero pixels
// inputs[i]: z^l = W^l a^{l-1} + b^l and a^l = σ(z^l) for l = 1..L, into work.activations[l - 1]
// (count, n_l), and z^L also into output_z (count, n_L)
template <typename T>
void forward(int64_t layers, const int64_t* sizes, const T* const* w, const T* const* b,
             const T* first_wt, const Pixels<T>* inputs, int64_t count, Step<T>& work,
             T* output_z) {
    const int64_t width = transposed_width(sizes[1]);
    for (int64_t l = 0; l < layers; ++l) {
        const int64_t n_in = sizes[l], n = sizes[l + 1];
        T* a = work.activations[l].data();
        if (l == 0) {  // from the nonzero pixels
            for (int64_t i = 0; i < count; ++i)
                first_weighted_inputs(first_wt, width, b[0], n, inputs[i], a + i * n);
        } else {
            for (int64_t i = 0; i < count; ++i)
                work.rows[i] = work.activations[l - 1].data() + i * n_in;
            for (int64_t i0 = 0; i0 < count; i0 += BLOCK)
                layer_weighted_inputs(w[l], b[l], work.rows.data(), i0,
                                      i0 + BLOCK < count ? i0 + BLOCK : count, n_in, n, a);
        }
        if (l == layers - 1)
            for (int64_t i = 0; i < count * n; ++i) output_z[i] = a[i];
#pragma omp simd
        for (int64_t i = 0; i < count * n; ++i) a[i] = sigmoid(a[i]);
    }
}

template <typename T>
void steps(int64_t copies, int64_t layers, const int64_t* sizes, T* const* weights,
           T* const* biases, T* const* weight_gradients, T* const* bias_gradients,
           const int64_t* input_starts, const int32_t* input_columns, const T* input_values,
           const T* targets, const int64_t* indices, int64_t copy_stride, int64_t batch,
           int64_t start, int64_t stop, const T* learning_rates, T weight_decay,
           int64_t decay_biases, int64_t cross_entropy, T cost_scale, T* costs, T* norms) {
    const int64_t n_out = sizes[layers], n_pixels = sizes[0], n_first = sizes[1];
    const int64_t width = transposed_width(n_first), widest = widest_layer(layers, sizes);
    Step<T> work;
    work.activations.resize(layers);
    for (int64_t l = 0; l < layers; ++l) work.activations[l].resize(batch * sizes[l + 1]);
    work.delta.resize(batch * widest);
    work.previous_delta.resize(batch * widest);
    work.rows.resize(batch);
    std::vector<T> output_z(batch * n_out);
    std::vector<T> first_wt(n_pixels * width), first_gt(n_pixels * width);  // padding stays 0
    std::vector<Pixels<T>> inputs(batch);
    std::vector<const T*> copy_w(layers), copy_b(layers);  // one copy's W^l, b^l
    const Examples<T> data = {input_starts, input_columns, input_values, targets, n_out};
    Gathered<T> gathered;
    Examples<T> taken = data;  // the steps' examples, from that of step `taken_from` on
    const int64_t gathered_steps = GATHERED > batch ? GATHERED / batch : 1;
    int64_t taken_from = start;

    for (int64_t k = 0; k < copies; ++k) {  // copies never mix: one after the other
        const T rate = learning_rates[k];
        T* first_w = weights[0] + k * n_first * n_pixels;
        transpose_first(first_w, n_first, n_pixels, width, first_wt.data());  // for the call
        for (int64_t l = 0; l < layers; ++l) {
            copy_w[l] = weights[l] + k * sizes[l + 1] * sizes[l];
            copy_b[l] = biases[l] + k * sizes[l + 1];
        }
        for (int64_t s = start; s < stop; ++s) {
            if ((s - start) % gathered_steps == 0) {  // the examples of this step and the next
                const int64_t steps_taken = stop - s < gathered_steps ? stop - s : gathered_steps;
                taken = gathered.take(data, indices + k * copy_stride + s * batch,
                                      steps_taken * batch);
                taken_from = s;
            }
            const int64_t first_example = (s - taken_from) * batch;  // this step's, in `taken`
            for (int64_t i = 0; i < batch; ++i) inputs[i] = taken.pixels(first_example + i);
            // forward: z^l = W^l a^{l-1} + b^l, a^l = σ(z^l), for l = 1..L
            forward(layers, sizes, copy_w.data(), copy_b.data(), first_wt.data(), inputs.data(),
                    batch, work, output_z.data());
            // C = (1/n) Σ_x C_x (gd_torch/core/cost.py), and BP1: δ^L
            const T* output = work.activations[layers - 1].data();
            T* delta = work.delta.data();
            T total = 0;
            for (int64_t i = 0; i < batch; ++i) {
                const T* y = taken.target(first_example + i);
                for (int64_t j = 0; j < n_out; ++j) {
                    const int64_t at = i * n_out + j;
                    const T a = output[at];
                    if (cross_entropy) {
                        total += softplus(output_z[at]) - y[j] * output_z[at];  // C_x's term
                        delta[at] = (a - y[j]) / T(batch);  // BP1: δ^L = (a^L − y)/n
                    } else {
                        total += (a - y[j]) * (a - y[j]);  // (a_j − y_j)²
                        // BP1: δ^L = ∇_a C ⊙ σ'(z^L), ∇_a C = scale · 2 (a^L − y)/n
                        delta[at] = (T(2) * cost_scale / T(batch)) * (a - y[j]) * (a * (T(1) - a));
                    }
                }
            }
            costs[s * copies + k] = (cross_entropy ? T(1) : cost_scale) * total / T(batch);
            // backward, l = L..1: BP2 for δ^{l-1} (with W^l before its update), BP3, BP4, update
            double squares = 0;  // ‖∇C‖²
            for (int64_t l = layers - 1; l >= 0; --l) {
                const int64_t n_in = sizes[l], n = sizes[l + 1];
                T* w = weights[l] + k * n * n_in;
                T* b = biases[l] + k * n;
                T* nabla_w = weight_gradients[l] + k * n * n_in;
                T* nabla_b = bias_gradients[l] + k * n;
                for (int64_t i = 0; l > 0 && i < batch; ++i)
                    work.rows[i] = work.activations[l - 1].data() + i * n_in;
                if (l > 0) {  // BP2: δ^{l-1} = ((W^l)^T δ^l) ⊙ σ'(z^{l-1}), σ' = a(1 − a)
                    T* previous = work.previous_delta.data();
                    for (int64_t i = 0; i < batch; ++i) {
                        T* row = previous + i * n_in;
                        for (int64_t m = 0; m < n_in; ++m) row[m] = 0;
                        for (int64_t j = 0; j < n; ++j) {
                            const T d = delta[i * n + j];
                            const T* w_j = w + j * n_in;
#pragma omp simd
                            for (int64_t m = 0; m < n_in; ++m) row[m] += d * w_j[m];
                        }
                        const T* a = work.rows[i];
                        for (int64_t m = 0; m < n_in; ++m) row[m] *= a[m] * (T(1) - a[m]);
                    }
                }
                const T bias_decay = decay_biases ? weight_decay : T(0);
                for (int64_t j = 0; j < n; ++j) {
                    // BP3: ∂C/∂b_j = Σ_x δ_x,j
                    T g_b = 0;
                    for (int64_t i = 0; i < batch; ++i) g_b += delta[i * n + j];
                    nabla_b[j] = g_b;
                    squares += double(g_b) * double(g_b);
                    b[j] = b[j] - rate * (g_b + bias_decay * b[j]);  // b ← b − η (∂C/∂b + λ b)
                }
                T w_squares = 0;
                if (l == 0) {  // BP4 from the nonzero pixels, then the update, transposed
                    T* gt = first_gt.data();
                    T* wt = first_wt.data();
                    for (int64_t m = 0; m < n_pixels * width; ++m) gt[m] = 0;
                    for (int64_t i = 0; i < batch; ++i)
                        add_first_outer_product(gt, width, delta + i * n, n, inputs[i]);
                    // w ← w − η (∂C/∂w + λ w): torch.optim.SGD's step without momentum
#pragma omp simd reduction(+ : w_squares)
                    for (int64_t m = 0; m < n_pixels * width; ++m) {
                        w_squares += gt[m] * gt[m];
                        wt[m] = wt[m] - rate * (gt[m] + weight_decay * wt[m]);
                    }
                }
                // BP4: ∂C/∂W_j,m = Σ_x δ_x,j a^{l-1}_x,m, a block of examples at a time; each
                // row's update follows its last block, while the row is in the nearest cache
                for (int64_t i0 = 0; l > 0 && i0 < batch; i0 += BLOCK) {
                    const int64_t i1 = i0 + BLOCK < batch ? i0 + BLOCK : batch;
                    if (i0 == 0)
                        for (int64_t m = 0; m < n * n_in; ++m) nabla_w[m] = 0;
                    for (int64_t j = 0; j < n; j += 2) {
                        T* g = nabla_w + j * n_in;
                        if (j + 1 < n)
                            add_outer_products_pair(g, g + n_in, delta + j, n, work.rows.data(),
                                                    i0, i1, n_in);
                        else
                            add_outer_products(g, delta + j, n, work.rows.data(), i0, i1, n_in);
                        if (i1 < batch) continue;
                        // w ← w − η (∂C/∂w + λ w): torch.optim.SGD's step without momentum,
                        // for the one or two rows just summed
                        T* w_j = w + j * n_in;
                        const int64_t count = (j + 1 < n ? 2 : 1) * n_in;
#pragma omp simd reduction(+ : w_squares)
                        for (int64_t m = 0; m < count; ++m) {
                            w_squares += g[m] * g[m];
                            w_j[m] = w_j[m] - rate * (g[m] + weight_decay * w_j[m]);
                        }
                    }
                }
                squares += w_squares;
                if (l > 0) work.delta.swap(work.previous_delta), delta = work.delta.data();
            }
            norms[s * copies + k] = T(std::sqrt(squares));
        }
        // W^1 and the last step's ∂C/∂W^1, back in place
        untranspose_first(first_wt.data(), n_first, n_pixels, width, first_w);
        T* first_g = weight_gradients[0] + k * n_first * n_pixels;
        untranspose_first(first_gt.data(), n_first, n_pixels, width, first_g);
    }
}

// The cost and accuracy of one network over `count` examples (gd_torch/core/evaluate.py): the
// forward pass of the steps above, from the nonzero pixels; Σ_x C_x (in double) and the number
// whose brightest output, argmax_j z^L_j (the first on a tie, as torch.argmax), is the label
template <typename T>
void evaluate(int64_t layers, const int64_t* sizes, T* const* weights, T* const* biases,
              const int64_t* input_starts, const int32_t* input_columns, const T* input_values,
              const T* targets, const int64_t* labels, int64_t count, int64_t cross_entropy,
              T cost_scale, double* total_cost, int64_t* correct) {
    const int64_t n_pixels = sizes[0], n_first = sizes[1], n_out = sizes[layers];
    const int64_t width = transposed_width(n_first);
    const Examples<T> data = {input_starts, input_columns, input_values, targets, n_out};
    std::vector<T> wt(n_pixels * width);  // the padding stays 0
    transpose_first(weights[0], n_first, n_pixels, width, wt.data());
    Step<T> work;  // a block of BLOCK examples at a time, as a mini-batch of the steps
    work.activations.resize(layers);
    for (int64_t l = 0; l < layers; ++l) work.activations[l].resize(BLOCK * sizes[l + 1]);
    work.rows.resize(BLOCK);
    std::vector<T> output_z(BLOCK * n_out);
    std::vector<Pixels<T>> inputs(BLOCK);
    double total = 0;
    int64_t right = 0;
    for (int64_t e0 = 0; e0 < count; e0 += BLOCK) {
        const int64_t block = count - e0 < BLOCK ? count - e0 : BLOCK;
        for (int64_t i = 0; i < block; ++i) inputs[i] = data.pixels(e0 + i);
        forward(layers, sizes, weights, biases, wt.data(), inputs.data(), block, work,
                output_z.data());
        const T* output = work.activations[layers - 1].data();  // a^L = σ(z^L)
        for (int64_t i = 0; i < block; ++i) {
            const T* z = output_z.data() + i * n_out;
            const T* a = output + i * n_out;
            const T* y = data.target(e0 + i);
            T cost_x = 0;
            int64_t brightest = 0;
            for (int64_t j = 0; j < n_out; ++j) {
                if (cross_entropy)
                    cost_x += softplus(z[j]) - y[j] * z[j];
                else
                    cost_x += (a[j] - y[j]) * (a[j] - y[j]);  // (a_j − y_j)²
                brightest = z[j] > z[brightest] ? j : brightest;
            }
            total += double(cross_entropy ? cost_x : cost_scale * cost_x);
            right += brightest == labels[e0 + i];
        }
    }
    *total_cost = total;
    *correct = right;
}

// Pass 1 of compressing images (count, pixels) by their nonzero activations: starts[e + 1] =
// the nonzero pixels of examples 0..e (starts[0] = 0)
template <typename T>
void count_nonzero(const T* images, int64_t count, int64_t pixels, int64_t* starts) {
    starts[0] = 0;
    for (int64_t e = 0; e < count; ++e) {
        int64_t lit = 0;
        for (int64_t m = 0; m < pixels; ++m) lit += images[e * pixels + m] != T(0);
        starts[e + 1] = starts[e] + lit;
    }
}

// Pass 2: each example's nonzero activations and their pixels, in order
template <typename T>
void gather_nonzero(const T* images, int64_t count, int64_t pixels, int32_t* columns, T* values) {
    int64_t p = 0;
    for (int64_t e = 0; e < count; ++e)
        for (int64_t m = 0; m < pixels; ++m)
            if (images[e * pixels + m] != T(0))
                columns[p] = int32_t(m), values[p] = images[e * pixels + m], ++p;
}

}  // namespace

extern "C" {
#define GD_TORCH_STEPS(NAME, T)                                                               \
    void NAME(int64_t copies, int64_t layers, const int64_t* sizes, T* const* weights,        \
              T* const* biases, T* const* weight_gradients, T* const* bias_gradients,         \
              const int64_t* input_starts, const int32_t* input_columns,                      \
              const T* input_values, const T* targets, const int64_t* indices,                \
              int64_t copy_stride, int64_t batch, int64_t start, int64_t stop,                \
              const T* learning_rates, T weight_decay, int64_t decay_biases,                  \
              int64_t cross_entropy, T cost_scale, T* costs, T* norms) {                      \
        steps<T>(copies, layers, sizes, weights, biases, weight_gradients, bias_gradients,    \
                 input_starts, input_columns, input_values, targets, indices, copy_stride,    \
                 batch, start, stop, learning_rates, weight_decay, decay_biases,              \
                 cross_entropy, cost_scale, costs, norms);                                    \
    }
GD_TORCH_STEPS(steps_float, float)
GD_TORCH_STEPS(steps_double, double)

#define GD_TORCH_NONZERO(SUFFIX, T)                                                            \
    void count_nonzero_##SUFFIX(const T* images, int64_t count, int64_t pixels,                \
                                int64_t* starts) {                                             \
        count_nonzero<T>(images, count, pixels, starts);                                       \
    }                                                                                          \
    void gather_nonzero_##SUFFIX(const T* images, int64_t count, int64_t pixels,               \
                                 int32_t* columns, T* values) {                                \
        gather_nonzero<T>(images, count, pixels, columns, values);                             \
    }
GD_TORCH_NONZERO(float, float)
GD_TORCH_NONZERO(double, double)

#define GD_TORCH_EVALUATE(SUFFIX, T)                                                           \
    void evaluate_##SUFFIX(int64_t layers, const int64_t* sizes, T* const* weights,            \
                           T* const* biases, const int64_t* input_starts,                      \
                           const int32_t* input_columns, const T* input_values,                \
                           const T* targets, const int64_t* labels, int64_t count,             \
                           int64_t cross_entropy, T cost_scale, double* total_cost,            \
                           int64_t* correct) {                                                 \
        evaluate<T>(layers, sizes, weights, biases, input_starts, input_columns, input_values, \
                    targets, labels, count, cross_entropy, cost_scale, total_cost, correct);   \
    }
GD_TORCH_EVALUATE(float, float)
GD_TORCH_EVALUATE(double, double)

#define GD_TORCH_SIGMOID(SUFFIX, T)                                                             \
    void sigmoid_##SUFFIX(const T* z, int64_t count, T* a) { /* the forward pass's σ */         \
        for (int64_t i = 0; i < count; ++i) a[i] = sigmoid(z[i]);                              \
    }
GD_TORCH_SIGMOID(float, float)
GD_TORCH_SIGMOID(double, double)
}
