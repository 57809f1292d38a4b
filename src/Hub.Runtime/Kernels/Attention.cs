// Scaled dot-product attention, flash-style (Dao et al. 2022): keys are visited in blocks of 64 with a running max
// and sum per query (online softmax, Milakov & Gimelshein 2018), so the T×S score matrix is never materialized.
// The G query heads of one GQA group are processed together over each key block, so a block of K/V is read from
// memory once per group and reused from L1 by the other heads.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hub.Runtime.Kernels;

/// <summary>Attention kernels over one query row and one GQA group of heads.</summary>
public static unsafe class AttentionKernels
{
    /// <summary>Keys per online-softmax block.</summary>
    public const int BlockKeys = 64;

    /// <summary>Floats of per-worker scratch for a group of <paramref name="groupHeads"/> heads of <paramref name="headDim"/>.</summary>
    public static int ScratchFloats(int groupHeads, int headDim) => groupHeads * (headDim + 2) + BlockKeys + 16;

    /// <summary>
    /// Attends the <paramref name="groupHeads"/> consecutive query heads at <paramref name="q"/> (each head
    /// <paramref name="headDim"/> floats) over keys [0, <paramref name="end"/>) at <paramref name="k"/>/<paramref name="v"/>
    /// (position j at offset j·<paramref name="stride"/>); keys with <paramref name="mask"/>[j] == 0 are dropped.
    /// Writes the heads' outputs to <paramref name="o"/>; a head that sees no key gets zeros.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AttendRow(float* q, int groupHeads, int headDim, float* k, float* v, long stride, int end,
        float* mask, float scale, float* o, float* scratch)
    {
        int hd = headDim, G = groupHeads;
        float* acc = scratch;
        float* mx = acc + G * hd;
        float* l = mx + G;
        float* s = l + G;
        new Span<float>(acc, G * hd).Clear();
        for (int g = 0; g < G; g++) { mx[g] = float.NegativeInfinity; l[g] = 0; }
        for (int j0 = 0; j0 < end; j0 += BlockKeys)
        {
            int jn = Math.Min(BlockKeys, end - j0);
            for (int g = 0; g < G; g++)
            {
                float* qg = q + g * hd;
                float bmax = float.NegativeInfinity;
                for (int jj = 0; jj < jn; jj++)
                {
                    int j = j0 + jj;
                    if (mask != null && mask[j] == 0f) { s[jj] = float.NegativeInfinity; continue; }
                    float sc = Dot(qg, k + j * stride, hd) * scale;
                    s[jj] = sc;
                    if (sc > bmax) bmax = sc;
                }
                if (bmax == float.NegativeInfinity) continue;
                float mnew = Math.Max(mx[g], bmax);
                float* ag = acc + g * hd;
                if (mx[g] != float.NegativeInfinity && mx[g] != mnew)
                {
                    float corr = MathF.Exp(mx[g] - mnew);
                    Scale(ag, corr, hd);
                    l[g] *= corr;
                }
                ExpShifted(s, jn, mnew);
                float sum = l[g];
                for (int jj = 0; jj < jn; jj++)
                {
                    float p = s[jj];
                    if (p == 0f) continue;
                    sum += p;
                    Axpy(p, v + (j0 + jj) * stride, ag, hd);
                }
                l[g] = sum;
                mx[g] = mnew;
            }
        }
        for (int g = 0; g < G; g++)
        {
            float* og = o + g * hd;
            float* ag = acc + g * hd;
            if (l[g] > 0) { float inv = 1f / l[g]; for (int i = 0; i < hd; i++) og[i] = ag[i] * inv; }
            else new Span<float>(og, hd).Clear();
        }
    }

    /// <summary>Rows (query position × head of a GQA group) a prefill block holds; S for them is rows × 64 floats.</summary>
    public const int BlockRows = 32;

    /// <summary>Query positions per <see cref="AttendBlock"/> call for a group of <paramref name="groupHeads"/> heads.</summary>
    public static int QueriesPerBlock(int groupHeads) => Math.Max(1, BlockRows / groupHeads);

    /// <summary>Floats of per-worker scratch <see cref="AttendBlock"/> needs.</summary>
    public static int PrefillScratchFloats(int groupHeads, int headDim)
    {
        int rows = QueriesPerBlock(groupHeads) * groupHeads;
        return rows * (2 * headDim + 2 + BlockKeys) + headDim * BlockKeys + 32;
    }

    /// <summary>
    /// Flash-style prefill over query positions [<paramref name="t0"/>, <paramref name="t1"/>) and the
    /// <paramref name="groupHeads"/> heads of one GQA group: rows (position, head) × a block of 64 keys at a time, scores
    /// as a small GEMM against the transposed key block (packed once for all heads), online softmax per row, then
    /// P·V. Query t (at absolute position <paramref name="past"/>+t) of row t is at q + t·qStride + g·headDim, output
    /// likewise in <paramref name="o"/>; keys/values j at k/v + j·kvStride. Causal: query i sees keys ≤ i, plus keys
    /// below <paramref name="prefixLen"/> when i &lt; prefixLen; <paramref name="mask"/>[j] == 0 drops key j; a row that
    /// sees no key gets zeros. Same result as <see cref="AttendRow"/> per row up to rounding.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AttendBlock(float* q, long qStride, int t0, int t1, int groupHeads, int headDim,
        float* k, float* v, long kvStride, int keys, float* mask, bool causal, int past, int prefixLen, float scale,
        float* o, float* scratch)
    {
        int G = groupHeads, hd = headDim, rows = (t1 - t0) * G;
        if (rows <= 0) return;
        float* Q = (float*)(((nint)scratch + 63) & ~(nint)63);
        float* A = Q + rows * hd;
        float* M = A + rows * hd;
        float* L = M + rows;
        float* S = L + rows;
        float* KT = S + rows * BlockKeys;
        var sv = Vector256.Create(scale);
        for (int r = 0; r < rows; r++)
        {
            float* src = q + (t0 + r / G) * qStride + (r % G) * hd;
            float* dst = Q + r * hd;
            int i = 0;
            if (Vector256.IsHardwareAccelerated) for (; i + 8 <= hd; i += 8) (Vector256.Load(src + i) * sv).Store(dst + i);
            for (; i < hd; i++) dst[i] = src[i] * scale;
            M[r] = float.NegativeInfinity; L[r] = 0;
        }
        new Span<float>(A, rows * hd).Clear();
        int maxEnd = End(t1 - 1, keys, causal, past, prefixLen);
        for (int j0 = 0; j0 < maxEnd; j0 += BlockKeys)
        {
            int jn = Math.Min(BlockKeys, maxEnd - j0);
            // KT[p][jj] = k[j0 + jj][p], zero past jn
            for (int p = 0; p < hd; p++)
            {
                float* kt = KT + p * BlockKeys;
                float* kp = k + j0 * kvStride + p;
                for (int jj = 0; jj < jn; jj++) kt[jj] = kp[jj * kvStride];
                for (int jj = jn; jj < BlockKeys; jj++) kt[jj] = 0;
            }
            Scores(Q, rows, hd, KT, S);
            bool anyMasked = false;
            if (mask != null) for (int jj = 0; jj < jn; jj++) anyMasked |= mask[j0 + jj] == 0f;
            for (int r = 0; r < rows; r++)
            {
                float* sr = S + r * BlockKeys;
                int limit = Math.Min(jn, End(t0 + r / G, keys, causal, past, prefixLen) - j0);
                if (limit <= 0) { new Span<float>(sr, BlockKeys).Clear(); continue; }
                for (int jj = limit; jj < BlockKeys; jj++) sr[jj] = float.NegativeInfinity;
                if (anyMasked) for (int jj = 0; jj < limit; jj++) if (mask![j0 + jj] == 0f) sr[jj] = float.NegativeInfinity;
                float bmax = Max64(sr);
                if (bmax == float.NegativeInfinity) { new Span<float>(sr, BlockKeys).Clear(); continue; }
                float mold = M[r], mnew = Math.Max(mold, bmax);
                if (mold != float.NegativeInfinity && mold != mnew)
                {
                    float corr = MathF.Exp(mold - mnew);
                    Scale(A + r * hd, corr, hd);
                    L[r] *= corr;
                }
                M[r] = mnew;
                ExpShifted(sr, BlockKeys, mnew);
                L[r] += Sum64(sr);
            }
            AccumulatePV(S, rows, jn, v + j0 * kvStride, kvStride, hd, A);
        }
        for (int r = 0; r < rows; r++)
        {
            float* dst = o + (t0 + r / G) * qStride + (r % G) * hd;
            float* ar = A + r * hd;
            if (L[r] > 0) { float inv = 1f / L[r]; for (int i = 0; i < hd; i++) dst[i] = ar[i] * inv; }
            else new Span<float>(dst, hd).Clear();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Max64(float* s)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            var m = Vector256.Max(Vector256.Max(Vector256.Load(s), Vector256.Load(s + 8)), Vector256.Max(Vector256.Load(s + 16), Vector256.Load(s + 24)));
            m = Vector256.Max(m, Vector256.Max(Vector256.Max(Vector256.Load(s + 32), Vector256.Load(s + 40)), Vector256.Max(Vector256.Load(s + 48), Vector256.Load(s + 56))));
            var h = Vector128.Max(m.GetLower(), m.GetUpper());
            return Math.Max(Math.Max(h[0], h[1]), Math.Max(h[2], h[3]));
        }
        float b = float.NegativeInfinity;
        for (int i = 0; i < BlockKeys; i++) b = Math.Max(b, s[i]);
        return b;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Sum64(float* s)
    {
        if (Vector256.IsHardwareAccelerated)
            return Vector256.Sum((Vector256.Load(s) + Vector256.Load(s + 8)) + (Vector256.Load(s + 16) + Vector256.Load(s + 24))
                + (Vector256.Load(s + 32) + Vector256.Load(s + 40)) + (Vector256.Load(s + 48) + Vector256.Load(s + 56)));
        float b = 0;
        for (int i = 0; i < BlockKeys; i++) b += s[i];
        return b;
    }

    // Keys [0, end) a query at position past+t may see.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int End(int t, int keys, bool causal, int past, int prefixLen)
    {
        if (!causal) return keys;
        int qpos = past + t, end = qpos + 1;
        if (qpos < prefixLen) end = Math.Max(end, prefixLen);
        return Math.Min(end, keys);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Madd(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, c) : a * b + c;

    // S[r][0..64) = Q[r]·KT (KT is [hd][64]): two rows × 32 keys per register tile.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores(float* Q, int rows, int hd, float* KT, float* S)
    {
        if (!Vector256.IsHardwareAccelerated)
        {
            for (int r = 0; r < rows; r++)
                for (int jj = 0; jj < BlockKeys; jj++)
                {
                    float s = 0;
                    for (int p = 0; p < hd; p++) s += Q[r * hd + p] * KT[p * BlockKeys + jj];
                    S[r * BlockKeys + jj] = s;
                }
            return;
        }
        for (int r = 0; r < rows; r += 2)
        {
            float* q0 = Q + r * hd, q1 = r + 1 < rows ? q0 + hd : q0;
            for (int h = 0; h < BlockKeys; h += 32)
            {
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
                float* kt = KT + h;
                for (int p = 0; p < hd; p++, kt += BlockKeys)
                {
                    var k0 = Vector256.Load(kt); var k1 = Vector256.Load(kt + 8); var k2 = Vector256.Load(kt + 16); var k3 = Vector256.Load(kt + 24);
                    var x = Vector256.Create(q0[p]);
                    a0 = Madd(x, k0, a0); a1 = Madd(x, k1, a1); a2 = Madd(x, k2, a2); a3 = Madd(x, k3, a3);
                    var y = Vector256.Create(q1[p]);
                    b0 = Madd(y, k0, b0); b1 = Madd(y, k1, b1); b2 = Madd(y, k2, b2); b3 = Madd(y, k3, b3);
                }
                float* s0 = S + r * BlockKeys + h;
                a0.Store(s0); a1.Store(s0 + 8); a2.Store(s0 + 16); a3.Store(s0 + 24);
                if (r + 1 < rows)
                {
                    float* s1 = s0 + BlockKeys;
                    b0.Store(s1); b1.Store(s1 + 8); b2.Store(s1 + 16); b3.Store(s1 + 24);
                }
            }
        }
    }

    // A[r] += Σ_jj P[r][jj]·V[jj] for jj < jn (P rows are 64 apart): two rows × 32 channels per register tile.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulatePV(float* P, int rows, int jn, float* v, long stride, int hd, float* A)
    {
        int c0 = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; c0 + 32 <= hd; c0 += 32)
                for (int r = 0; r < rows; r += 2)
                {
                    bool two = r + 1 < rows;
                    float* x0 = A + r * hd + c0, x1 = two ? x0 + hd : x0;
                    float* p0 = P + r * BlockKeys, p1 = two ? p0 + BlockKeys : p0;
                    var a0 = Vector256.Load(x0); var a1 = Vector256.Load(x0 + 8); var a2 = Vector256.Load(x0 + 16); var a3 = Vector256.Load(x0 + 24);
                    var b0 = Vector256.Load(x1); var b1 = Vector256.Load(x1 + 8); var b2 = Vector256.Load(x1 + 16); var b3 = Vector256.Load(x1 + 24);
                    float* vj = v + c0;
                    for (int jj = 0; jj < jn; jj++, vj += stride)
                    {
                        var v0 = Vector256.Load(vj); var v1 = Vector256.Load(vj + 8); var v2 = Vector256.Load(vj + 16); var v3 = Vector256.Load(vj + 24);
                        var x = Vector256.Create(p0[jj]);
                        a0 = Madd(x, v0, a0); a1 = Madd(x, v1, a1); a2 = Madd(x, v2, a2); a3 = Madd(x, v3, a3);
                        var y = Vector256.Create(p1[jj]);
                        b0 = Madd(y, v0, b0); b1 = Madd(y, v1, b1); b2 = Madd(y, v2, b2); b3 = Madd(y, v3, b3);
                    }
                    a0.Store(x0); a1.Store(x0 + 8); a2.Store(x0 + 16); a3.Store(x0 + 24);
                    if (two) { b0.Store(x1); b1.Store(x1 + 8); b2.Store(x1 + 16); b3.Store(x1 + 24); }
                }
            for (; c0 + 8 <= hd; c0 += 8)
                for (int r = 0; r < rows; r++)
                {
                    float* x0 = A + r * hd + c0, p0 = P + r * BlockKeys;
                    var a0 = Vector256.Load(x0);
                    float* vj = v + c0;
                    for (int jj = 0; jj < jn; jj++, vj += stride) a0 = Madd(Vector256.Create(p0[jj]), Vector256.Load(vj), a0);
                    a0.Store(x0);
                }
        }
        for (int r = 0; r < rows; r++)
        {
            float* x0 = A + r * hd, p0 = P + r * BlockKeys;
            for (int jj = 0; jj < jn; jj++)
            {
                float pj = p0[jj];
                float* vj = v + jj * stride;
                for (int c = c0; c < hd; c++) x0[c] += pj * vj[c];
            }
        }
    }

    /// <summary>Scalar twin of <see cref="AttendRow"/>: materialized scores, two-pass softmax in double.</summary>
    public static void AttendRowReference(float* q, int groupHeads, int headDim, float* k, float* v, long stride, int end,
        float* mask, float scale, float* o)
    {
        var sc = new double[Math.Max(end, 0)];
        for (int g = 0; g < groupHeads; g++)
        {
            float* qg = q + g * headDim;
            double mx = double.NegativeInfinity;
            for (int j = 0; j < end; j++)
            {
                if (mask != null && mask[j] == 0f) { sc[j] = double.NegativeInfinity; continue; }
                double d = 0;
                for (int i = 0; i < headDim; i++) d += (double)qg[i] * k[j * stride + i];
                sc[j] = d * scale;
                mx = Math.Max(mx, sc[j]);
            }
            for (int i = 0; i < headDim; i++) o[g * headDim + i] = 0;
            if (double.IsNegativeInfinity(mx)) continue;
            double sum = 0;
            for (int j = 0; j < end; j++) { sc[j] = double.IsNegativeInfinity(sc[j]) ? 0 : Math.Exp(sc[j] - mx); sum += sc[j]; }
            for (int i = 0; i < headDim; i++)
            {
                double a = 0;
                for (int j = 0; j < end; j++) a += sc[j] * v[j * stride + i];
                o[g * headDim + i] = (float)(a / sum);
            }
        }
    }

    // s[j] = exp(s[j] − shift), exactly 0 for masked (−∞) scores.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ExpShifted(float* s, int n, float shift)
    {
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var sh = Vector256.Create(shift);
            var ninf = Vector256.Create(float.NegativeInfinity);
            for (; j <= n - 8; j += 8)
            {
                var x = Vector256.Load(s + j);
                var e = VecMath.Exp(x - sh);
                Vector256.ConditionalSelect(Vector256.Equals(x, ninf), Vector256<float>.Zero, e).Store(s + j);
            }
        }
        for (; j < n; j++) s[j] = s[j] == float.NegativeInfinity ? 0f : MathF.Exp(s[j] - shift);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(float* a, float* b, int n)
    {
        int i = 0;
        float s = 0;
        if (Fma.IsSupported && Avx.IsSupported && n >= 8)
        {
            Vector256<float> acc0 = default, acc1 = default;
            for (; i <= n - 16; i += 16)
            {
                acc0 = Fma.MultiplyAdd(Avx.LoadVector256(a + i), Avx.LoadVector256(b + i), acc0);
                acc1 = Fma.MultiplyAdd(Avx.LoadVector256(a + i + 8), Avx.LoadVector256(b + i + 8), acc1);
            }
            for (; i <= n - 8; i += 8) acc0 = Fma.MultiplyAdd(Avx.LoadVector256(a + i), Avx.LoadVector256(b + i), acc0);
            s = Vector256.Sum(acc0 + acc1);
        }
        else if (Vector128.IsHardwareAccelerated && n >= 4)
        {
            Vector128<float> acc = default;
            for (; i <= n - 4; i += 4) acc += Vector128.Load(a + i) * Vector128.Load(b + i);
            s = Vector128.Sum(acc);
        }
        for (; i < n; i++) s += a[i] * b[i];
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Axpy(float alpha, float* x, float* y, int n)
    {
        int i = 0;
        if (Fma.IsSupported && Avx.IsSupported)
        {
            var av = Vector256.Create(alpha);
            for (; i <= n - 8; i += 8) Fma.MultiplyAdd(av, Avx.LoadVector256(x + i), Avx.LoadVector256(y + i)).Store(y + i);
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            var av = Vector128.Create(alpha);
            for (; i <= n - 4; i += 4) (Vector128.Load(y + i) + av * Vector128.Load(x + i)).Store(y + i);
        }
        for (; i < n; i++) y[i] += alpha * x[i];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scale(float* y, float alpha, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var av = Vector256.Create(alpha);
            for (; i <= n - 8; i += 8) (Vector256.Load(y + i) * av).Store(y + i);
        }
        for (; i < n; i++) y[i] *= alpha;
    }
}
