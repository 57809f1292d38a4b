// int8 symmetric Q8_0 prefill GEMM in the broadcast layout (issue #8). The dot-product layout of QuantKernels.GemmInt8
// spends a vpsignb per (activation row, weight row, block) to feed signed × signed bytes to vpmaddubsw, and that sign
// step was its bottleneck. Here each call first repacks its weight rows, once, into a scratch panel where the sign
// problem disappears and no horizontal reduction is needed:
//   - every int8 weight is split into two unsigned nibble planes, w = 16·h + l − 128 with h = (w >> 4) + 8 and
//     l = w & 15 (both 0..15), so vpmaddubsw takes the plane (unsigned) against the activation bytes (signed) directly;
//   - 8 output rows are interleaved: one 32-byte vector holds 4 consecutive k values (a "quad") for each of the 8 rows,
//     so the kernel broadcasts 4 activation bytes per activation row (vpbroadcastd) against the vector and each int16
//     pair of the product belongs to one output row.
// Per activation row, block of 32 k and 8 weight rows: 8 broadcasts, 16 vpmaddubsw and 16 int16 adds (|pair| ≤
// 2·15·127 = 3810, eight quads ≤ 30480: no saturation), then two vpmaddwd (by 16 and by 1) recombine the planes into
// the 8 rows' int32 block sums, one convert, one FMS for dx_b·Σ − 128·Σx_b (Σx_b·dx_b is the group sum the activation
// quantizer already stores, the group being the block) and one FMA by the 8 rows' scales. Results are those of
// QuantKernels.GemvIntegerReference on the same quantized activations up to float rounding.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hub.Runtime.Kernels;

/// <summary>
/// Prefill GEMM for int8 symmetric weights with groups of 32 (Q8_0) against int8 activations quantized in the decode
/// layout: weight rows repacked per call into interleaved nibble planes (see the file header), AVX2 + FMA.
/// </summary>
public static unsafe class QuantGemmInt8
{
    /// <summary>Weight rows one pass repacks at once (two interleaved groups of 8): the unit the executor hands out.</summary>
    public const int Rows = 16;

    private const int Interleave = 8;                       // output rows per weight vector
    private const int Block = QuantKernels.Block;           // 32 k per block (= group)
    private const int BlockBytes = Interleave * Block * 2;  // one block of 8 rows in both planes: 512 bytes
    private const int MR = 4;                               // activation rows per register tile
    private const int RowChunk = 64;                        // activation rows whose float accumulators live in scratch
    private const int KcBlocks = 16;                        // blocks per pass over a row chunk (8 KiB of panel per group)

    /// <summary>True when <paramref name="w"/> can use <see cref="Gemm"/> (the same shapes as <see cref="QuantKernels.GemmInt8"/>).</summary>
    public static bool Fits(in QuantMatrix w) => QuantKernels.Int8GemmFits(w);

    /// <summary>Scratch floats <see cref="Gemm"/> needs for K = <paramref name="k"/>: the panel (2 bytes per weight), its scales, the accumulators and 128·Σx per row chunk.</summary>
    public static long ScratchFloats(int k) => (long)Rows * k / 2 + (long)Rows * (k / Block) + (long)(RowChunk + MR) * Rows + (long)RowChunk * (k / Block) + 32;

    /// <summary>
    /// y[i, j] = Σ_k x[i,k]·W[j,k] + b[j] for rows i ∈ [<paramref name="m0"/>, <paramref name="m1"/>) and outputs
    /// j ∈ [<paramref name="n0"/>, <paramref name="n1"/>), with x quantized for <paramref name="w"/> by
    /// <see cref="QuantKernels.QuantizeActivations(in QuantMatrix, float*, int, byte*)"/> into <paramref name="act"/>
    /// (<see cref="QuantKernels.ActivationBytes"/> for <paramref name="m"/> rows). <paramref name="scratch"/> holds
    /// <see cref="ScratchFloats"/> floats; each call repacks its weight rows <see cref="Rows"/> at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Gemm(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int m0, int m1, int n0, int n1, float* scratch)
    {
        if (!Fits(w)) throw new NotSupportedException($"QuantGemmInt8 needs int8 symmetric weights with groups of {Block} and AVX2+FMA (group {w.GroupLength}, int4 = {w.Int4}, symmetric = {w.Symmetric}); check Fits first");
        QuantKernels.CheckGemmArgs(w, m, act, y, ldy, m0, m1, n0, n1, scratch);
        bool work = m1 > m0 && n1 > n0;
        if (!work) return;

        int k = w.K, blocks = k / Block;
        sbyte* xq = (sbyte*)act;
        float* dx = (float*)(act + (((long)m * k + 63) & ~63L));
        float* xs = dx + (long)m * blocks;   // groups = blocks: Σ_t x_t·dx_b per row and block
        byte* panel = (byte*)(((nint)scratch + 63) & ~(nint)63);
        float* sc = (float*)(panel + (long)Rows * k * 2);
        float* acc = sc + (long)Rows * blocks;
        float* c128 = acc + (RowChunk + MR) * Rows;   // 128·xs [RowChunk, blocks] of the current row chunk
        for (int jc = n0; jc < n1; jc += Rows)
        {
            int jn = Math.Min(Rows, n1 - jc), groups = (jn + Interleave - 1) / Interleave;
            Repack(w, jc, jn, panel, sc);
            for (int ic = m0; ic < m1; ic += RowChunk)
            {
                int rows = Math.Min(RowChunk, m1 - ic);
                for (int t = 0; t < rows; t++)
                {
                    float* src = xs + (long)(ic + t) * blocks, dst = c128 + (long)t * blocks;
                    for (int b = 0; b < blocks; b++) dst[b] = 128f * src[b];
                }
                for (int g = 0; g < groups; g++)
                {
                    byte* pg = panel + (long)g * blocks * BlockBytes;
                    float* sg = sc + (long)g * blocks * Interleave;
                    new Span<float>(acc, (RowChunk + MR) * Interleave).Clear();
                    for (int kb = 0; kb < blocks; kb += KcBlocks)
                    {
                        int nb = Math.Min(KcBlocks, blocks - kb);
                        for (int t = 0; t < rows; t += MR)
                        {
                            // rows past the range repeat the last one and accumulate into spare rows of acc
                            long r0 = ic + t, r1 = ic + Math.Min(t + 1, rows - 1), r2 = ic + Math.Min(t + 2, rows - 1), r3 = ic + Math.Min(t + 3, rows - 1);
                            long o = (long)kb * Block;
                            Tile(pg + (long)kb * BlockBytes, sg + kb * Interleave, nb,
                                xq + r0 * k + o, xq + r1 * k + o, xq + r2 * k + o, xq + r3 * k + o,
                                dx + r0 * blocks + kb, dx + r1 * blocks + kb, dx + r2 * blocks + kb, dx + r3 * blocks + kb,
                                c128 + (r0 - ic) * blocks + kb, c128 + (r1 - ic) * blocks + kb, c128 + (r2 - ic) * blocks + kb, c128 + (r3 - ic) * blocks + kb,
                                acc + t * Interleave, blocks);
                        }
                    }
                    int j0 = jc + g * Interleave, cols = Math.Min(Interleave, n1 - j0);
                    for (int t = 0; t < rows; t++)
                    {
                        float* yr = y + (long)(ic + t) * ldy + j0;
                        float* ar = acc + t * Interleave;
                        for (int c = 0; c < cols; c++) yr[c] = ar[c] + (bias != null ? bias[j0 + c] : 0f);
                    }
                }
            }
        }
    }

    // MR = 4 activation rows × 8 interleaved weight rows over nb blocks; acc [4, 8] floats (row stride 8) accumulates.
    // Register budget: 8 int16 plane accumulators, 2 weight vectors, the broadcast, one product. The activation
    // broadcasts are vbroadcastss (a plain load on AMD, unlike vpbroadcastd) of the same 4 bytes; the first quad of a
    // block initializes the accumulators.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Tile(byte* wp, float* sp, int nb, sbyte* x0, sbyte* x1, sbyte* x2, sbyte* x3,
        float* d0, float* d1, float* d2, float* d3, float* c0, float* c1, float* c2, float* c3, float* acc, int blocks)
    {
        var sixteen = Vector256.Create((short)16);
        var one = Vector256.Create((short)1);
        for (int b = 0; b < nb; b++)
        {
            byte* p = wp + b * BlockBytes;
            int o = b * Block;
            var wh = Avx.LoadVector256(p);
            var wl = Avx.LoadVector256(p + 32);
            var v = Avx.BroadcastScalarToVector256((float*)(x0 + o)).AsSByte();
            var h0 = Avx2.MultiplyAddAdjacent(wh, v); var l0 = Avx2.MultiplyAddAdjacent(wl, v);
            v = Avx.BroadcastScalarToVector256((float*)(x1 + o)).AsSByte();
            var h1 = Avx2.MultiplyAddAdjacent(wh, v); var l1 = Avx2.MultiplyAddAdjacent(wl, v);
            v = Avx.BroadcastScalarToVector256((float*)(x2 + o)).AsSByte();
            var h2 = Avx2.MultiplyAddAdjacent(wh, v); var l2 = Avx2.MultiplyAddAdjacent(wl, v);
            v = Avx.BroadcastScalarToVector256((float*)(x3 + o)).AsSByte();
            var h3 = Avx2.MultiplyAddAdjacent(wh, v); var l3 = Avx2.MultiplyAddAdjacent(wl, v);
            for (int q = 1; q < 8; q++)
            {
                p += 64; o += 4;
                wh = Avx.LoadVector256(p);
                wl = Avx.LoadVector256(p + 32);
                v = Avx.BroadcastScalarToVector256((float*)(x0 + o)).AsSByte();
                h0 = Avx2.Add(h0, Avx2.MultiplyAddAdjacent(wh, v));
                l0 = Avx2.Add(l0, Avx2.MultiplyAddAdjacent(wl, v));
                v = Avx.BroadcastScalarToVector256((float*)(x1 + o)).AsSByte();
                h1 = Avx2.Add(h1, Avx2.MultiplyAddAdjacent(wh, v));
                l1 = Avx2.Add(l1, Avx2.MultiplyAddAdjacent(wl, v));
                v = Avx.BroadcastScalarToVector256((float*)(x2 + o)).AsSByte();
                h2 = Avx2.Add(h2, Avx2.MultiplyAddAdjacent(wh, v));
                l2 = Avx2.Add(l2, Avx2.MultiplyAddAdjacent(wl, v));
                v = Avx.BroadcastScalarToVector256((float*)(x3 + o)).AsSByte();
                h3 = Avx2.Add(h3, Avx2.MultiplyAddAdjacent(wh, v));
                l3 = Avx2.Add(l3, Avx2.MultiplyAddAdjacent(wl, v));
            }
            var s = Avx.LoadVector256(sp + b * Interleave);
            Combine(h0, l0, sixteen, one, d0 + b, c0 + b, s, acc);
            Combine(h1, l1, sixteen, one, d1 + b, c1 + b, s, acc + Interleave);
            Combine(h2, l2, sixteen, one, d2 + b, c2 + b, s, acc + 2 * Interleave);
            Combine(h3, l3, sixteen, one, d3 + b, c3 + b, s, acc + 3 * Interleave);
        }
    }

    // acc[0..8) += s · (dx·(16·H + L) − 128·xs): the planes' int32 block sums, the −128·Σx term (c = 128·xs, prepared
    // per call) and the scales.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Combine(Vector256<short> h, Vector256<short> l, Vector256<short> sixteen, Vector256<short> one,
        float* dx, float* c, Vector256<float> s, float* acc)
    {
        var sum = Avx.ConvertToVector256Single(Avx2.Add(Avx2.MultiplyAddAdjacent(h, sixteen), Avx2.MultiplyAddAdjacent(l, one)));
        var t = Fma.MultiplySubtract(sum, Avx.BroadcastScalarToVector256(dx), Avx.BroadcastScalarToVector256(c));
        Avx.Store(acc, Fma.MultiplyAdd(t, s, Avx.LoadVector256(acc)));
    }

    // Rows [j0, j0 + jn) of w into the panel: per group of 8 rows and block, 8 quads of [h plane 32 B | l plane 32 B]
    // with row r at bytes 4r..4r+3 of each plane vector (an 8 × 8 transpose of dwords per plane); scales
    // [group, block, 8] as float. Rows past jn read as 0 with scale 0.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Repack(in QuantMatrix w, int j0, int jn, byte* panel, float* sc)
    {
        int k = w.K, blocks = k / Block, groups = (jn + Interleave - 1) / Interleave;
        var low = Vector256.Create((byte)0x0F);
        var eight = Vector256.Create((byte)0x08);
        byte** rows = stackalloc byte*[Interleave];
        float* rs = stackalloc float[blocks];
        for (int g = 0; g < groups; g++)
        {
            byte* pg = panel + (long)g * blocks * BlockBytes;
            float* sg = sc + (long)g * blocks * Interleave;
            int live = Math.Min(Interleave, jn - g * Interleave);
            for (int r = 0; r < Interleave; r++)
            {
                int j = j0 + g * Interleave + Math.Min(r, live - 1);
                rows[r] = w.Data + (long)j * k;
                float* s = w.RowScales(j, rs);
                for (int b = 0; b < blocks; b++) sg[b * Interleave + r] = r < live ? s[b] : 0f;
            }
            for (int b = 0; b < blocks; b++)
            {
                int o = b * Block;
                byte* dst = pg + (long)b * BlockBytes;
                var v0 = Avx.LoadVector256(rows[0] + o); var v1 = Avx.LoadVector256(rows[1] + o);
                var v2 = Avx.LoadVector256(rows[2] + o); var v3 = Avx.LoadVector256(rows[3] + o);
                var v4 = Avx.LoadVector256(rows[4] + o); var v5 = Avx.LoadVector256(rows[5] + o);
                var v6 = Avx.LoadVector256(rows[6] + o); var v7 = Avx.LoadVector256(rows[7] + o);
                Transpose(Hi(v0, low, eight), Hi(v1, low, eight), Hi(v2, low, eight), Hi(v3, low, eight),
                          Hi(v4, low, eight), Hi(v5, low, eight), Hi(v6, low, eight), Hi(v7, low, eight), dst);
                Transpose(Avx2.And(v0, low), Avx2.And(v1, low), Avx2.And(v2, low), Avx2.And(v3, low),
                          Avx2.And(v4, low), Avx2.And(v5, low), Avx2.And(v6, low), Avx2.And(v7, low), dst + 32);
            }
        }
    }

    // (w >> 4) + 8 of signed bytes = the unsigned high nibble with its top bit flipped.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Hi(Vector256<byte> v, Vector256<byte> low, Vector256<byte> eight) =>
        Avx2.Xor(Avx2.And(Avx2.ShiftRightLogical(v.AsUInt16(), 4).AsByte(), low), eight);

    // Rows a..h of 8 dwords each → 8 vectors (stride 64 bytes from dst), vector q = dword q of rows a..h.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose(Vector256<byte> a, Vector256<byte> b, Vector256<byte> c, Vector256<byte> d,
        Vector256<byte> e, Vector256<byte> f, Vector256<byte> g, Vector256<byte> h, byte* dst) =>
        Kernels.Gemm.Transpose8x8(a.AsSingle(), b.AsSingle(), c.AsSingle(), d.AsSingle(), e.AsSingle(), f.AsSingle(), g.AsSingle(), h.AsSingle(), (float*)dst, 16);
}
