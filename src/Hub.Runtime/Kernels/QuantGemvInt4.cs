// Decode GEMV for int4 weights (Q4_0 g32 and group-wise g64/g128/per-channel, sym and asym) against int8 activations
// quantized by QuantKernels.QuantizeActivations (nibble-pair order), in the weights' IR layout (no repack).
// Per block pair (one 32-byte load per row) a row costs six vector ops: the low nibbles (vpand) and the high ones
// (vpsrlw + vpand) are unsigned, so vpmaddubsw multiplies them with the signed activations directly (no sign step),
// and one vpaddw adds the two halves: 16 int16 sums, eight per block. The four rows of a pass are then reduced
// together: two levels of vphaddw and one vpmaddwd give [r0 r1 r2 r3] of block b in the low 128-bit lane and of block
// b+1 in the high one (each int16 holds at most 16 products of 15·127: 30480, no overflow), so a pass needs one
// vcvtdq2ps and one FMA per block pair for all four rows instead of four of each — with a staged scale vector
// [s_r,b·dx_b | s_r,b+1·dx_b+1] (Q4_0) or the activation scales [dx_b ×4 | dx_b+1 ×4] and one group-scale FMA at
// each group's end (longer groups). The offset (8 or the zero point) never enters the loop: Σ(q − z)·x = Σq·x − z·Σx.
// With AVX-512BW (session 9) the row-wise runs take 16 blocks per step as four 512-bit vectors of one row (RowChunks:
// 1.6–2.3× the 256-bit runs single-thread): half the instructions per weight byte; groups of 1–16 blocks.
// Session 12: Q4_0 weights with K a multiple of 256 are repacked at load (CompiledModel) into 4-row interleaved units
// (InterleaveX4: 576 bytes = the 4 rows' 32 scales + 8 blocks each), which GemvX4 streams as one sequential region with
// exact int32 block sums (docs/quantization.md, "Session 12: Q4_0 interleaving"); the row-wise kernels here keep the
// other int4 groupings and shapes.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hub.Runtime.Kernels;

/// <summary>AVX2 / AVX-512BW integer GEMV for int4 weights (the decode path of <see cref="QuantKernels.GemvInteger"/>).</summary>
public static unsafe class QuantGemvInt4
{
    private const int Block = QuantKernels.Block;

    /// <summary>Output rows one pass computes together (each activation load and scale vector serves all of them).</summary>
    private const int PassRows = 4;

    /// <summary>Floats of staged scales a kernel keeps on the stack before it takes native memory (32 KiB).</summary>
    private const int StackFloats = 8192;

    /// <summary>
    /// True when this kernel takes <paramref name="w"/>: int4, AVX2+FMA, and groups of one block, of an even number of
    /// blocks, or one group per row (an odd block count only as the row's trailing block).
    /// </summary>
    public static bool Fits(in QuantMatrix w)
    {
        if (!w.Int4 || !Avx2.IsSupported || !Fma.IsSupported || w.K % Block != 0 || w.GroupLength % Block != 0) return false;
        int bpg = w.GroupLength / Block;
        return bpg == 1 || bpg % 2 == 0 || w.Groups == 1;
    }

    /// <summary>
    /// True when <see cref="QuantKernels.GemvInteger"/> dispatches <paramref name="w"/> here (every matrix this kernel
    /// <see cref="Fits"/> while <see cref="Enabled"/>): single-thread 1.7–2.0× the session-6 loop on Q4_0 and
    /// 1.07–1.26× on asym g128 (docs/quantization.md).
    /// </summary>
    public static bool Preferred(in QuantMatrix w) => Enabled && Fits(w);

    /// <summary>
    /// Whether <see cref="Preferred"/> may pick this kernel (HUB_QGEMV_INT4=0: every int4 matrix on the session-6 loop).
    /// Settable only for the decode profile's in-process A/B (HUB_BENCH_AB=int4), never by tests.
    /// </summary>
    internal static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("HUB_QGEMV_INT4") != "0";

    /// <summary>
    /// y[i, j] = Σ_k x[i,k]·W[j,k] + b[j] for rows j ∈ [<paramref name="n0"/>, <paramref name="n1"/>) and the
    /// <paramref name="m"/> activation rows quantized for <paramref name="w"/> into <paramref name="act"/>; the same
    /// integer sums as <see cref="QuantKernels.GemvIntegerReference"/>.
    /// </summary>
    public static void Gemv(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int n0, int n1) =>
        Gemv(w, m, act, bias, y, ldy, n0, n1, chunks: true);

    /// <summary>
    /// <see cref="Gemv(in QuantMatrix, int, byte*, float*, float*, int, int, int)"/> with the Q4_0 variant as a
    /// parameter (tests and A/B benchmarks): <paramref name="chunks"/> false runs every block four rows at a time with
    /// staged scales instead of row by row in runs of eight blocks.
    /// </summary>
    internal static void Gemv(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int n0, int n1, bool chunks) =>
        Gemv(w, m, act, bias, y, ldy, n0, n1, chunks, Wide);

    /// <summary>
    /// <see cref="Gemv(in QuantMatrix, int, byte*, float*, float*, int, int, int, bool)"/> with the row-wise runs as
    /// 16-block chunks of 512-bit vectors (<paramref name="wide"/>, AVX-512BW) or eight-block runs of 256-bit ones.
    /// </summary>
    internal static void Gemv(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int n0, int n1, bool chunks, bool wide)
    {
        if (wide && !Avx512BW.IsSupported) throw new NotSupportedException("the 16-block chunks need AVX-512BW");
        if (w.Interleaved != null) throw new ArgumentException("an interleaved matrix takes GemvX4 (this kernel reads the row-major layout)", nameof(w));
        if (!Fits(w)) throw new ArgumentException($"the int4 GEMV does not take this matrix (int4 {w.Int4}, K {w.K}, group {w.GroupLength}, AVX2 {Avx2.IsSupported})", nameof(w));
        KernelArgs.Range(n0, n1);
        if (n1 > w.N) throw new ArgumentOutOfRangeException(nameof(n1), n1, $"n1 = {n1} is past the weight's {w.N} rows");
        if (n0 >= n1 || m <= 0) return;
        KernelArgs.NotNull(act, true);
        KernelArgs.NotNull(y, true);
        if (w.GroupLength == Block) Blocks(w, m, act, bias, y, ldy, n0, n1, chunks, chunks && wide);
        else Groups(w, m, act, bias, y, ldy, n0, n1, chunks, chunks && wide);
    }

    // Groups of one block (Q4_0 sym, asym g32). Per pass and activation row, the combined scales s_r,b·dx_b of the four
    // rows are staged transposed, one 8-float vector per block pair (a trailing odd block repeats its 4 in both halves),
    // with the offset term Σ_b s_r,b·off_r,b·xs_b; then one leaf loop over the pairs.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static void Blocks(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int n0, int n1, bool chunks, bool wide)
    {
        bool sym = w.Symmetric;
        int k = w.K, blocks = k / Block, rowBytes = k / 2, pairs = blocks / 2, slots = (blocks + 1) / 2;
        int cb = chunks ? blocks & (wide ? ~15 : ~7) : 0;   // blocks the row-wise run loop takes
        byte* data = w.Data, zeros = w.Zeros;
        float* sc = w.Scales;
        ushort* sh = w.ScalesF16;
        sbyte* xq = (sbyte*)act;
        float* dx = QuantKernels.BlockScales(act, m, k);
        float* xs = dx + (long)m * blocks;
        // staged pair scales, then ChunkRun's aux per activation row, then (wide) the chunk-ordered activations
        int stFloats = slots * 8 + 8 + 2 * cb * m + 8 + (wide ? 8 * cb * m + 16 : 0);
        bool heap = stFloats > StackFloats;
        float* stack = stackalloc float[heap ? 8 : stFloats];
        float* st = heap ? (float*)NativeMemory.AlignedAlloc((nuint)stFloats * sizeof(float), 64) : stack;
        try
        {
            nint ahead = QuantKernels.PrefetchAhead(rowBytes);
            float* aux = st + slots * 8 + 8;
            sbyte* xw = (sbyte*)(((nint)(aux + 2L * cb * m) + 63) & ~(nint)63);
            if (cb > 0)
                for (int i = 0; i < m; i++)
                {
                    if (!wide) { RunScales(dx + (long)i * blocks, xs + (long)i * blocks, cb / 8, 1, sym ? 8f : 1f, aux + (long)i * 2 * cb); continue; }
                    ChunkScales(dx + (long)i * blocks, xs + (long)i * blocks, cb / 16, 1, sym ? 8f : 1f, aux + (long)i * 2 * cb);
                    ChunkOrder(xq + (long)i * k, cb, xw + (long)i * cb * 32);
                }
            for (int j = n0; j < n1; j += PassRows)
            {
                long j0 = j, j1 = QuantKernels.PassRow(j, 1, n1), j2 = QuantKernels.PassRow(j, 2, n1), j3 = QuantKernels.PassRow(j, 3, n1);
                byte* r0 = data + j0 * rowBytes, r1 = data + j1 * rowBytes, r2 = data + j2 * rowBytes, r3 = data + j3 * rowBytes;
                for (int i = 0; i < m; i++)
                {
                    sbyte* xr = xq + (long)i * k;
                    float* dxi = dx + (long)i * blocks, xsi = xs + (long)i * blocks;
                    float* ai = aux + (long)i * 2 * cb;
                    // runs of eight blocks row by row (ChunkRun), the remaining blocks staged four rows at a time
                    var head = Vector128<float>.Zero;
                    if (cb > 0)
                    {
                        head = Head(sc, sh, sym ? null : zeros, j0 * blocks, j1 * blocks, j2 * blocks, j3 * blocks, r0, r1, r2, r3,
                            wide ? xw + (long)i * cb * 32 : xr, ai, ahead, cb, 1, wide);
                    }
                    var corr = Vector128<float>.Zero;
                    var acc = Vector256<float>.Zero;
                    if (cb < blocks)
                    {
                        nint o = (nint)cb * 16;
                        corr = StageBlocks(sc, sh, sym ? null : zeros, j0 * blocks + cb, j1 * blocks + cb, j2 * blocks + cb, j3 * blocks + cb,
                            dxi + cb, xsi + cb, blocks - cb, st);
                        acc = PairRun(r0 + o, r1 + o, r2 + o, r3 + o, xr + 2 * o, st, r0 + ahead + 4 * o, pairs - cb / 2, Vector256<float>.Zero);
                        if (pairs < slots) acc = Fma.MultiplyAdd(TailTree(r0 + o, r1 + o, r2 + o, r3 + o, xr + 2 * o, pairs - cb / 2), Avx.LoadVector256(st + 8 * (pairs - cb / 2)), acc);
                    }
                    corr = Sse.Subtract(corr, head);
                    Store(acc, corr, bias, y + (long)i * ldy + j, j, Math.Min(PassRows, n1 - j));
                }
            }
        }
        finally
        {
            if (heap) NativeMemory.AlignedFree(st);
        }
    }

    // Stages st[8p + 4h + r] = s_r,b·dx_b for b = 2p + h (the trailing odd block in both halves of its slot) and returns
    // [Σ_b s_r,b·off_r,b·xs_b]_r (off 8 when z is null, else the zero point): eight blocks per step, 4×8 transposed.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> StageBlocks(float* sc, ushort* sh, byte* z, long o0, long o1, long o2, long o3, float* dx, float* xs, int blocks, float* st)
    {
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
        int b = 0;
        for (; b + 8 <= blocks; b += 8)
        {
            var d = Avx.LoadVector256(dx + b);
            var x = Avx.LoadVector256(xs + b);
            var s0 = Scales8(sc, sh, o0 + b); var s1 = Scales8(sc, sh, o1 + b);
            var s2 = Scales8(sc, sh, o2 + b); var s3 = Scales8(sc, sh, o3 + b);
            if (z == null)
            {
                c0 = Fma.MultiplyAdd(s0, x, c0); c1 = Fma.MultiplyAdd(s1, x, c1);
                c2 = Fma.MultiplyAdd(s2, x, c2); c3 = Fma.MultiplyAdd(s3, x, c3);
            }
            else
            {
                c0 = Fma.MultiplyAdd(Avx.Multiply(s0, Zeros8(z + o0 + b)), x, c0); c1 = Fma.MultiplyAdd(Avx.Multiply(s1, Zeros8(z + o1 + b)), x, c1);
                c2 = Fma.MultiplyAdd(Avx.Multiply(s2, Zeros8(z + o2 + b)), x, c2); c3 = Fma.MultiplyAdd(Avx.Multiply(s3, Zeros8(z + o3 + b)), x, c3);
            }
            var p0 = Avx.Multiply(s0, d); var p1 = Avx.Multiply(s1, d); var p2 = Avx.Multiply(s2, d); var p3 = Avx.Multiply(s3, d);
            Transpose4x8(Avx.Multiply(s0, d), Avx.Multiply(s1, d), Avx.Multiply(s2, d), Avx.Multiply(s3, d), st + 4 * b);
        }
        var h = Avx.HorizontalAdd(Avx.HorizontalAdd(c0, c1), Avx.HorizontalAdd(c2, c3));
        var corr = Sse.Add(h.GetLower(), h.GetUpper());
        float e0 = 0, e1 = 0, e2 = 0, e3 = 0;
        for (; b < blocks; b++)
        {
            float f0 = Scale(sc, sh, o0 + b), f1 = Scale(sc, sh, o1 + b), f2 = Scale(sc, sh, o2 + b), f3 = Scale(sc, sh, o3 + b);
            float* o = st + 4 * b;
            o[0] = f0 * dx[b]; o[1] = f1 * dx[b]; o[2] = f2 * dx[b]; o[3] = f3 * dx[b];
            if (z == null) { e0 += f0 * xs[b]; e1 += f1 * xs[b]; e2 += f2 * xs[b]; e3 += f3 * xs[b]; }
            else
            {
                e0 += f0 * z[o0 + b] * xs[b]; e1 += f1 * z[o1 + b] * xs[b];
                e2 += f2 * z[o2 + b] * xs[b]; e3 += f3 * z[o3 + b] * xs[b];
            }
        }
        if ((blocks & 1) != 0) Sse.Store(st + 4 * blocks, Sse.LoadVector128(st + 4 * blocks - 4));
        corr = Sse.Add(corr, Vector128.Create(e0, e1, e2, e3));
        return z == null ? Sse.Multiply(corr, Vector128.Create(8f)) : corr;
    }

    // Rows p0..p3 of 8 columns → dst[4c + r] (32 floats: one [r0 r1 r2 r3] quadruple per column, two per vector).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose4x8(Vector256<float> p0, Vector256<float> p1, Vector256<float> p2, Vector256<float> p3, float* dst)
    {
        var t0 = Avx.UnpackLow(p0, p1); var t1 = Avx.UnpackLow(p2, p3);     // columns 0,1 | 4,5
        var t2 = Avx.UnpackHigh(p0, p1); var t3 = Avx.UnpackHigh(p2, p3);   // columns 2,3 | 6,7
        var u0 = Avx.Shuffle(t0, t1, 0x44); var u1 = Avx.Shuffle(t0, t1, 0xEE);   // column 0 | 4, column 1 | 5
        var u2 = Avx.Shuffle(t2, t3, 0x44); var u3 = Avx.Shuffle(t2, t3, 0xEE);   // column 2 | 6, column 3 | 7
        Avx.Store(dst, Avx.Permute2x128(u0, u1, 0x20));
        Avx.Store(dst + 8, Avx.Permute2x128(u2, u3, 0x20));
        Avx.Store(dst + 16, Avx.Permute2x128(u0, u1, 0x31));
        Avx.Store(dst + 24, Avx.Permute2x128(u2, u3, 0x31));
    }

    // The pass's group scales transposed, sg[4g + r] = s_r,g, and the offset products so[4g + r] = s_r,g·off_r,g (off 8
    // when z is null, else the zero point): F16 scales converted first into tmp (4 × groups floats; the four rows'
    // halves are contiguous in a full pass of whole rows (`contiguous`), so one vector conversion covers them even when a row has only 6 groups),
    // then eight groups per transpose step.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StageGroups(float* sc, ushort* sh, byte* z, long o0, long o1, long o2, long o3, int groups, bool contiguous, float* sg, float* so, float* tmp)
    {
        float* f0, f1, f2, f3;
        if (sh == null) { f0 = sc + o0; f1 = sc + o1; f2 = sc + o2; f3 = sc + o3; }
        else
        {
            if (contiguous) QuantKernels.HalfToSingle(sh + o0, tmp, PassRows * groups);
            else
            {
                QuantKernels.HalfToSingle(sh + o0, tmp, groups); QuantKernels.HalfToSingle(sh + o1, tmp + groups, groups);
                QuantKernels.HalfToSingle(sh + o2, tmp + 2 * groups, groups); QuantKernels.HalfToSingle(sh + o3, tmp + 3 * groups, groups);
            }
            f0 = tmp; f1 = tmp + groups; f2 = tmp + 2 * groups; f3 = tmp + 3 * groups;
        }
        int g = 0;
        for (; g + 8 <= groups; g += 8)
        {
            var s0 = Avx.LoadVector256(f0 + g); var s1 = Avx.LoadVector256(f1 + g);
            var s2 = Avx.LoadVector256(f2 + g); var s3 = Avx.LoadVector256(f3 + g);
            Transpose4x8(s0, s1, s2, s3, sg + 4 * g);
            if (z == null)
            {
                var e = Vector256.Create(8f);
                Transpose4x8(Avx.Multiply(s0, e), Avx.Multiply(s1, e), Avx.Multiply(s2, e), Avx.Multiply(s3, e), so + 4 * g);
            }
            else
                Transpose4x8(Avx.Multiply(s0, Zeros8(z + o0 + g)), Avx.Multiply(s1, Zeros8(z + o1 + g)),
                    Avx.Multiply(s2, Zeros8(z + o2 + g)), Avx.Multiply(s3, Zeros8(z + o3 + g)), so + 4 * g);
        }
        for (; g < groups; g++)
        {
            var v = Vector128.Create(f0[g], f1[g], f2[g], f3[g]);
            Sse.Store(sg + 4 * g, v);
            Sse.Store(so + 4 * g, Sse.Multiply(v, z == null ? Vector128.Create(8f) : Vector128.Create((float)z[o0 + g], z[o1 + g], z[o2 + g], z[o3 + g])));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Scales8(float* sc, ushort* sh, long at) =>
        sh != null ? QuantKernels.LoadHalf8(sh + at) : Avx.LoadVector256(sc + at);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Scale(float* sc, ushort* sh, long at) => sh != null ? QuantKernels.HalfToSingle(sh[at]) : sc[at];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Zeros8(byte* z) => Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(z));

    // Σ nibble·x of one block pair of one row as 16 int16 (8 per block): low nibbles × xa, high nibbles × xb.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> PairSums(byte* p, Vector256<sbyte> xa, Vector256<sbyte> xb, Vector256<byte> low4)
    {
        var r = Avx.LoadVector256(p);
        return Avx2.Add(Avx2.MultiplyAddAdjacent(Avx2.And(r, low4), xa),
                        Avx2.MultiplyAddAdjacent(Avx2.And(Avx2.ShiftRightLogical(r.AsUInt16(), 4).AsByte(), low4), xb));
    }

    // PairSums with the activations read from x (pair order: low nibbles' 32 bytes, then the high nibbles') as the
    // multiplies' memory operands, so that a row-at-a-time loop keeps no activation registers live.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> PairSumsAt(byte* p, sbyte* x, Vector256<byte> low4)
    {
        var r = Avx.LoadVector256(p);
        var lo = Avx2.MultiplyAddAdjacent(Avx2.And(r, low4), Avx.LoadVector256(x));
        var hi = Avx2.MultiplyAddAdjacent(Avx2.And(Avx2.ShiftRightLogical(r.AsUInt16(), 4).AsByte(), low4), Avx.LoadVector256(x + 32));
        return Avx2.Add(lo, hi);
    }

    // Four rows' 16 int16 sums → [r0 r1 r2 r3] per 128-bit lane as float (exact: |each int16| ≤ 4·7620 = 30480).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Tree(Vector256<short> q0, Vector256<short> q1, Vector256<short> q2, Vector256<short> q3, Vector256<short> ones) =>
        Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.HorizontalAdd(Avx2.HorizontalAdd(q0, q1), Avx2.HorizontalAdd(q2, q3)), ones));

    // acc += Σ_p Tree(pair p)·st[8p..8p+8) over np block pairs of four rows: a leaf whose loop keeps every pointer in a
    // register, prefetching the bytes `pf` walks at four times the rate of one row.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static Vector256<float> PairRun(byte* r0, byte* r1, byte* r2, byte* r3, sbyte* x, float* st, byte* pf, int np, Vector256<float> acc)
    {
        var low4 = Vector256.Create((byte)0x0F);
        var ones = Vector256.Create((short)1);
        float* end = st + 8L * np;
        for (nint o = 0; st < end; st += 8, o += 32)
        {
            Sse.Prefetch0(pf + 4 * o); Sse.Prefetch0(pf + 4 * o + 64);
            var xa = Avx.LoadVector256(x + 2 * o); var xb = Avx.LoadVector256(x + 2 * o + 32);
            var t = Tree(PairSums(r0 + o, xa, xb, low4), PairSums(r1 + o, xa, xb, low4), PairSums(r2 + o, xa, xb, low4), PairSums(r3 + o, xa, xb, low4), ones);
            acc = Fma.MultiplyAdd(t, Avx.LoadVector256(st), acc);
        }
        return acc;
    }

    // Scale formats of ChunkRun (value-type generics: the untaken branch folds away).
    private struct F16 { }
    private struct F32 { }

    // Q4_0 rows in runs of eight blocks (four pairs), one row after the other: the four pairs' int16 sums of ONE row go
    // through the vphaddw tree, giving blocks [0 2 4 6 | 1 3 5 7] of the run in the lanes. Its scales then need no
    // staging across rows — eight consecutive scales of the row, loaded and permuted into that order (F16: vpshufb
    // on the halves before widening) — times the activation scales permuted the same way once per call (aux: per run
    // dx then 8·xs), and the offset term 8·Σ s_b·xs_b is one more FMA per run. The activations are the multiplies'
    // memory operands (L1), so the loop holds only constants and one accumulator, and each row streams sequentially.
    // Returns [Σ row r] for the four rows, offset already subtracted.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static Vector128<float> ChunkRun<TScale, TGroup, TOff>(byte* r0, byte* r1, byte* r2, byte* r3, sbyte* x, float* aux,
        byte* s0, byte* s1, byte* s2, byte* s3, byte* z0, byte* z1, byte* z2, byte* z3, nint ahead, int runs, bool wide)
        where TScale : struct where TGroup : struct where TOff : struct
    {
        if (wide)
        {
            // 16-block chunks (runs / 2 of them) of 512-bit vectors
            var w0 = RowChunks<TScale, TGroup, TOff>(r0, x, aux, s0, z0, ahead, runs / 2);
            var w1 = RowChunks<TScale, TGroup, TOff>(r1, x, aux, s1, z1, ahead, runs / 2);
            var w2 = RowChunks<TScale, TGroup, TOff>(r2, x, aux, s2, z2, ahead, runs / 2);
            var w3 = RowChunks<TScale, TGroup, TOff>(r3, x, aux, s3, z3, ahead, runs / 2);
            var v = Avx.HorizontalAdd(Avx.HorizontalAdd(Avx.Add(w0.GetLower(), w0.GetUpper()), Avx.Add(w1.GetLower(), w1.GetUpper())),
                                      Avx.HorizontalAdd(Avx.Add(w2.GetLower(), w2.GetUpper()), Avx.Add(w3.GetLower(), w3.GetUpper())));
            return Sse.Add(v.GetLower(), v.GetUpper());
        }
        var a0 = RowRun<TScale, TGroup, TOff>(r0, x, aux, s0, z0, ahead, runs);
        var a1 = RowRun<TScale, TGroup, TOff>(r1, x, aux, s1, z1, ahead, runs);
        var a2 = RowRun<TScale, TGroup, TOff>(r2, x, aux, s2, z2, ahead, runs);
        var a3 = RowRun<TScale, TGroup, TOff>(r3, x, aux, s3, z3, ahead, runs);
        var h = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
        return Sse.Add(h.GetLower(), h.GetUpper());
    }

    // One row's runs: a += tree·(s·dx) − s·off·e per run (aux: dx, then e = the group's Σx, times 8 for Off8, divided
    // by the lanes the group fills), lanes in block order [0 2 4 6 | 1 3 5 7]; each lane's scale (and zero point) is its
    // group's: G1 eight per run, G2 four ([0 1 2 3 | 0 1 2 3]), G4 two ([0 0 1 1 | 0 0 1 1]).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> RowRun<TScale, TGroup, TOff>(byte* w, sbyte* x, float* aux, byte* s, byte* z, nint ahead, int runs)
        where TScale : struct where TGroup : struct where TOff : struct
    {
        var low4 = Vector256.Create((byte)0x0F);
        var ones = Vector256.Create((short)1);
        var a = Vector256<float>.Zero;
        int perRun = typeof(TGroup) == typeof(G1) ? 8 : typeof(TGroup) == typeof(G2) ? 4 : 2;   // scales per run
        nint sb = perRun * (typeof(TScale) == typeof(F16) ? 2 : 4);   // scale bytes per run
        byte* pf = w + ahead;
        for (byte* end = w + (nint)runs * 128; w < end; w += 128, x += 256, pf += 128, aux += 16, s += sb, z += perRun)
        {
            Sse.Prefetch0(pf); Sse.Prefetch0(pf + 64);
            var q0 = PairSumsAt(w, x, low4);
            var q1 = PairSumsAt(w + 32, x + 64, low4);
            var h01 = Avx2.HorizontalAdd(q0, q1);
            var q2 = PairSumsAt(w + 64, x + 128, low4);
            var q3 = PairSumsAt(w + 96, x + 192, low4);
            var h23 = Avx2.HorizontalAdd(q2, q3);
            var t = Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.HorizontalAdd(h01, h23), ones));
            var sv = RunScaleVector<TScale, TGroup>(s);
            a = Fma.MultiplyAdd(t, Avx.Multiply(sv, Avx.LoadVector256(aux)), a);
            if (typeof(TOff) == typeof(OffZ)) sv = Avx.Multiply(sv, RunZeros<TGroup>(z));
            a = Fma.MultiplyAddNegated(sv, Avx.LoadVector256(aux + 8), a);
        }
        return a;
    }

    // The scales of one run in RowRun's lane order, as floats. F16: the halves shuffled into lane order and
    // sign-extended, then (h << 13) with bits 30..28 cleared is the magnitude in float position with the sign in bit
    // 31, times 2^112 (exact, as QuantKernels.HalfToSingle).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> RunScaleVector<TScale, TGroup>(byte* s) where TScale : struct where TGroup : struct
    {
        if (typeof(TScale) == typeof(F16))
        {
            Vector128<byte> hv;
            if (typeof(TGroup) == typeof(G1)) hv = Ssse3.Shuffle(Sse2.LoadVector128(s), Vector128.Create((byte)0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15));
            else if (typeof(TGroup) == typeof(G2)) hv = Ssse3.Shuffle(Sse2.LoadScalarVector128((long*)s).AsByte(), Vector128.Create((byte)0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7));
            else hv = Ssse3.Shuffle(Sse2.LoadScalarVector128((int*)s).AsByte(), Vector128.Create((byte)0, 1, 0, 1, 2, 3, 2, 3, 0, 1, 0, 1, 2, 3, 2, 3));
            var v = Avx2.And(Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(hv.AsInt16()), 13), Vector256.Create(unchecked((int)0x8FFFFFFF)));
            return Avx.Multiply(v.AsSingle(), Vector256.Create(MathF.ScaleB(1f, 112)));
        }
        if (typeof(TGroup) == typeof(G1)) return Avx2.PermuteVar8x32(Avx.LoadVector256((float*)s), Vector256.Create(0, 2, 4, 6, 1, 3, 5, 7));
        if (typeof(TGroup) == typeof(G2)) { var q = Sse.LoadVector128((float*)s); return Vector256.Create(q, q); }
        return Avx2.PermuteVar8x32(Sse2.LoadScalarVector128((double*)s).AsSingle().ToVector256Unsafe(), Vector256.Create(0, 0, 1, 1, 0, 0, 1, 1));
    }

    // The zero points of one run in RowRun's lane order, as floats (G1: 8 bytes, G2: 4, G4: 2; never read past them).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> RunZeros<TGroup>(byte* z) where TGroup : struct
    {
        Vector128<byte> zb = typeof(TGroup) == typeof(G4)
            ? Ssse3.Shuffle(Vector128.CreateScalar(*(ushort*)z).AsByte(), Vector128.Create((byte)0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0))
            : typeof(TGroup) == typeof(G2)
            ? Ssse3.Shuffle(Vector128.CreateScalar(*(uint*)z).AsByte(), Vector128.Create((byte)0, 1, 2, 3, 0, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0))
            : Ssse3.Shuffle(Vector128.CreateScalar(*(ulong*)z).AsByte(), Vector128.Create((byte)0, 2, 4, 6, 1, 3, 5, 7, 0, 0, 0, 0, 0, 0, 0, 0));
        return Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(zb));
    }

    // Offsets of RowRun: 8 (symmetric) or the zero point (asymmetric).
    private struct Off8 { }
    private struct OffZ { }

    // Group lengths of RowRun in blocks (value-type generics, as F16/F32).
    private struct G1 { }
    private struct G2 { }
    private struct G4 { }

    // aux for ChunkRun: per run of eight blocks, dx in lane order [0 2 4 6 1 3 5 7], then e: per lane its group's Σx
    // (xs, one per group of bpg blocks) times `mul` / (lanes per group: 8 / (8 / bpg) ... = bpg) — exact (powers of 2).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RunScales(float* dx, float* xs, int runs, int bpg, float mul, float* aux)
    {
        var perm = Vector256.Create(0, 2, 4, 6, 1, 3, 5, 7);
        for (int c = 0; c < runs; c++, dx += 8, aux += 16)
        {
            Avx.Store(aux, Avx2.PermuteVar8x32(Avx.LoadVector256(dx), perm));
            // lane l holds block 2(l mod 4) + l / 4 of the run
            for (int l = 0; l < 8; l++) aux[8 + l] = xs[(c * 8 + 2 * (l & 3) + (l >> 2)) / bpg] * (mul / bpg);
        }
    }

    // The trailing natural-order block (16 bytes per row at pair index p): Tree lanes hold its low and high halves, so a
    // scale vector repeating [s_r·dx]_r in both halves scales it.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> TailTree(byte* r0, byte* r1, byte* r2, byte* r3, sbyte* x, int p)
    {
        nint o = (nint)p * 32;
        var xv = Avx.LoadVector256(x + 2 * o);
        var ones = Vector256.Create((short)1);
        return Tree(TailSums(r0 + o, xv), TailSums(r1 + o, xv), TailSums(r2 + o, xv), TailSums(r3 + o, xv), ones);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> TailSums(byte* p, Vector256<sbyte> xv)
    {
        var l = Vector128.Create((byte)0x0F);
        var r = Sse2.LoadVector128(p);
        return Avx2.MultiplyAddAdjacent(Vector256.Create(Sse2.And(r, l), Sse2.And(Sse2.ShiftRightLogical(r.AsUInt16(), 4).AsByte(), l)), xv);
    }

    // [Σ lanes r and r+4] − corr + bias into y[j .. j + valid).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector256<float> acc, Vector128<float> corr, float* bias, float* yr, int j, int valid)
    {
        QuantKernels.StoreSums(Sse.Subtract(Sse.Add(acc.GetLower(), acc.GetUpper()), corr), bias, yr, j, valid);
    }

    // Groups of several blocks (g64, g128, ..., or one per row). Per call the activation scales of every block pair are
    // staged as [dx_b ×4 | dx_b+1 ×4] (dp, per activation row); per pass the four rows' group scales transposed
    // (sg[4g + r]) and their offset products (og = s·off, off 8 or the zero point). The leaf accumulates a group's pairs against
    // dp and scales the group's sum by sg once at its end.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static void Groups(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int n0, int n1, bool chunks, bool wide)
    {
        bool sym = w.Symmetric;
        int k = w.K, blocks = k / Block, rowBytes = k / 2, groups = w.Groups, bpg = w.GroupLength / Block;
        // blocks (groups) ChunkRun takes: 16-block chunks when wide and a group divides them, else runs of eight
        wide = wide && (bpg == 2 || bpg == 4 || bpg == 8 || bpg == 16);
        int cb = wide ? blocks & ~15 : chunks && (bpg == 2 || bpg == 4) ? blocks & ~7 : 0, gc = cb / bpg;
        int pairs = blocks / 2, slots = (blocks + 1) / 2;
        // pairs per group: a group of an odd block count is the whole row (Fits), whose trailing block is done apart
        int ppg = groups == 1 ? pairs : bpg / 2;
        byte* data = w.Data, zeros = w.Zeros;
        float* sc = w.Scales;
        ushort* sh = w.ScalesF16;
        sbyte* xq = (sbyte*)act;
        float* dx = QuantKernels.BlockScales(act, m, k);
        float* xs = dx + (long)m * blocks;
        long dpFloats = (long)m * slots * 8, auxFloats = 2L * m * cb, total = dpFloats + 12L * groups + auxFloats + 48 + (wide ? 8L * cb * m + 16 : 0);
        bool heap = total > StackFloats;
        float* stack = stackalloc float[heap ? 8 : (int)total];
        float* dp = heap ? (float*)NativeMemory.AlignedAlloc((nuint)total * sizeof(float), 64) : stack;
        float* sg = dp + dpFloats, og = sg + 4L * groups, tmp = og + 4L * groups, aux = tmp + 4L * groups + 8;
        sbyte* xw = (sbyte*)(((nint)(aux + auxFloats) + 63) & ~(nint)63);
        try
        {
            for (int i = 0; i < m; i++)
            {
                float* d = dx + (long)i * blocks, o = dp + (long)i * slots * 8;
                for (int b = 0; b < blocks; b++)
                {
                    var v = Vector128.Create(d[b]);
                    Sse.Store(o + 4 * b, v);
                    if ((b & 1) == 0 && b == blocks - 1) Sse.Store(o + 4 * b + 4, v);
                }
                if (cb == 0) continue;
                if (!wide) { RunScales(d, xs + (long)i * groups, cb / 8, bpg, sym ? 8f : 1f, aux + (long)i * 2 * cb); continue; }
                ChunkScales(d, xs + (long)i * groups, cb / 16, bpg, sym ? 8f : 1f, aux + (long)i * 2 * cb);
                ChunkOrder(xq + (long)i * k, cb, xw + (long)i * cb * 32);
            }
            nint ahead = QuantKernels.PrefetchAhead(rowBytes);
            for (int j = n0; j < n1; j += PassRows)
            {
                long j1 = QuantKernels.PassRow(j, 1, n1), j2 = QuantKernels.PassRow(j, 2, n1), j3 = QuantKernels.PassRow(j, 3, n1);
                // staged scales and offset products of the groups the four-row loop takes (those after ChunkRun's)
                if (gc < groups)
                    StageGroups(sc, sh, sym ? null : zeros, j * (long)groups + gc, j1 * groups + gc, j2 * groups + gc, j3 * groups + gc, groups - gc, gc == 0 && j + PassRows <= n1, sg, og, tmp);
                byte* r0 = data + j * (long)rowBytes, r1 = data + j1 * rowBytes, r2 = data + j2 * rowBytes, r3 = data + j3 * rowBytes;
                for (int i = 0; i < m; i++)
                {
                    sbyte* xr = xq + (long)i * k;
                    float* xsi = xs + (long)i * groups, dpi = dp + (long)i * slots * 8;
                    var corr = Vector128<float>.Zero;
                    for (int g = gc; g < groups; g++)
                        corr = Fma.MultiplyAdd(Sse.LoadVector128(og + 4 * (g - gc)), Vector128.Create(xsi[g]), corr);
                    if (cb > 0)
                    {
                        // the first cb blocks row by row (runs of eight, or chunks of 16 when wide), the remaining groups four rows at a time
                        float* ai = aux + (long)i * 2 * cb;
                        var head = Head(sc, sh, sym ? null : zeros, j * (long)groups, j1 * groups, j2 * groups, j3 * groups, r0, r1, r2, r3,
                            wide ? xw + (long)i * cb * 32 : xr, ai, ahead, cb, bpg, wide);
                        corr = Sse.Subtract(corr, head);
                    }
                    nint ob = (nint)cb * 16;
                    var acc = GroupRun(r0 + ob, r1 + ob, r2 + ob, r3 + ob, xr + 2 * ob, dpi + 4 * cb, sg, r0 + ahead + 4 * ob, groups - gc, ppg);
                    if (pairs < slots)
                    {
                        // per channel, odd block count: the trailing block, scaled by the row's one group scale
                        var s = Vector256.Create(Sse.LoadVector128(sg), Sse.LoadVector128(sg));
                        acc = Fma.MultiplyAdd(TailTree(r0, r1, r2, r3, xr, pairs), Avx.Multiply(Avx.LoadVector256(dpi + 8 * pairs), s), acc);
                    }
                    Store(acc, corr, bias, y + (long)i * ldy + j, j, Math.Min(PassRows, n1 - j));
                }
            }
        }
        finally
        {
            if (heap) NativeMemory.AlignedFree(dp);
        }
    }

    // Σ_g sg[g]·Σ_{p in g} Tree(pair p)·dp[p] over `groups` groups of ppg pairs: one leaf for the whole row.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static Vector256<float> GroupRun(byte* r0, byte* r1, byte* r2, byte* r3, sbyte* x, float* dp, float* sg, byte* pf, int groups, int ppg)
    {
        var low4 = Vector256.Create((byte)0x0F);
        var ones = Vector256.Create((short)1);
        var acc = Vector256<float>.Zero;
        nint o = 0;
        float* sgEnd = sg + 4L * groups;
        for (; sg < sgEnd; sg += 4)
        {
            var t = Vector256<float>.Zero;
            for (float* end = dp + 8L * ppg; dp < end; dp += 8, o += 32)
            {
                Sse.Prefetch0(pf + 4 * o); Sse.Prefetch0(pf + 4 * o + 64);
                var xa = Avx.LoadVector256(x + 2 * o); var xb = Avx.LoadVector256(x + 2 * o + 32);
                var s = Tree(PairSums(r0 + o, xa, xb, low4), PairSums(r1 + o, xa, xb, low4), PairSums(r2 + o, xa, xb, low4), PairSums(r3 + o, xa, xb, low4), ones);
                t = Fma.MultiplyAdd(s, Avx.LoadVector256(dp), t);
            }
            acc = Fma.MultiplyAdd(t, Avx.BroadcastVector128ToVector256(sg), acc);
        }
        return acc;
    }

    /// <summary>
    /// Whether the row-wise runs take 16-block chunks of 512-bit vectors (Avx512BW; groups of 1, 2, 4, 8 or 16 blocks)
    /// instead of eight-block runs of 256-bit ones. Settable only by the kernel A/B benchmark.
    /// </summary>
    internal static bool Wide { get; set; } = Avx512BW.IsSupported;

    // The row-wise head of a pass (ChunkRun) for the scale format, offset and group length of the matrix: cb blocks from
    // scale/zero offsets o0..o3 of rows r0..r3.
    private static Vector128<float> Head(float* sc, ushort* sh, byte* z, long o0, long o1, long o2, long o3,
        byte* r0, byte* r1, byte* r2, byte* r3, sbyte* x, float* aux, nint ahead, int cb, int bpg, bool wide)
    {
        byte* z0 = z == null ? null : z + o0, z1 = z == null ? null : z + o1, z2 = z == null ? null : z + o2, z3 = z == null ? null : z + o3;
        if (sh != null)
        {
            byte* h0 = (byte*)(sh + o0), h1 = (byte*)(sh + o1), h2 = (byte*)(sh + o2), h3 = (byte*)(sh + o3);
            return z == null ? Head<F16, Off8>(bpg, r0, r1, r2, r3, x, aux, h0, h1, h2, h3, z0, z1, z2, z3, ahead, cb / 8, wide)
                             : Head<F16, OffZ>(bpg, r0, r1, r2, r3, x, aux, h0, h1, h2, h3, z0, z1, z2, z3, ahead, cb / 8, wide);
        }
        byte* f0 = (byte*)(sc + o0), f1 = (byte*)(sc + o1), f2 = (byte*)(sc + o2), f3 = (byte*)(sc + o3);
        return z == null ? Head<F32, Off8>(bpg, r0, r1, r2, r3, x, aux, f0, f1, f2, f3, z0, z1, z2, z3, ahead, cb / 8, wide)
                         : Head<F32, OffZ>(bpg, r0, r1, r2, r3, x, aux, f0, f1, f2, f3, z0, z1, z2, z3, ahead, cb / 8, wide);
    }

    private static Vector128<float> Head<TScale, TOff>(int bpg, byte* r0, byte* r1, byte* r2, byte* r3, sbyte* x, float* aux,
        byte* s0, byte* s1, byte* s2, byte* s3, byte* z0, byte* z1, byte* z2, byte* z3, nint ahead, int runs, bool wide)
        where TScale : struct where TOff : struct => bpg switch
    {
        1 => ChunkRun<TScale, G1, TOff>(r0, r1, r2, r3, x, aux, s0, s1, s2, s3, z0, z1, z2, z3, ahead, runs, wide),
        2 => ChunkRun<TScale, G2, TOff>(r0, r1, r2, r3, x, aux, s0, s1, s2, s3, z0, z1, z2, z3, ahead, runs, wide),
        4 => ChunkRun<TScale, G4, TOff>(r0, r1, r2, r3, x, aux, s0, s1, s2, s3, z0, z1, z2, z3, ahead, runs, wide),
        8 => ChunkRun<TScale, G8, TOff>(r0, r1, r2, r3, x, aux, s0, s1, s2, s3, z0, z1, z2, z3, ahead, runs, wide),
        _ => ChunkRun<TScale, G16, TOff>(r0, r1, r2, r3, x, aux, s0, s1, s2, s3, z0, z1, z2, z3, ahead, runs, wide),
    };

    // Group lengths of 8 and 16 blocks: the 16-block chunks only.
    private struct G8 { }
    private struct G16 { }

    // One row's 16-block chunks (256 weight bytes, 512 activation bytes in ChunkOrder): per 64 weight bytes (blocks
    // 4i..4i+3, one per 128-bit lane) the low and high nibbles times the activations (512-bit vpmaddubsw; each int16
    // ≤ 4·15·127) and one vpmaddwd; the four vectors' per-block sums are then gathered by two unpack-and-add levels
    // (AVX-512 has no vphaddw) into lane 4L + i = block 4i + L, so one convert and one FMA per chunk scale all 16 blocks
    // with the scales permuted into that order, and one more FMA subtracts the offset term (aux: dx, then e as in RowRun).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> RowChunks<TScale, TGroup, TOff>(byte* w, sbyte* x, float* aux, byte* s, byte* z, nint ahead, int chunks)
        where TScale : struct where TGroup : struct where TOff : struct
    {
        var low4 = Vector512.Create((byte)0x0F);
        var ones = Vector512.Create((short)1);
        var a = Vector512<float>.Zero;
        int per = typeof(TGroup) == typeof(G1) ? 16 : typeof(TGroup) == typeof(G2) ? 8 : typeof(TGroup) == typeof(G4) ? 4 : typeof(TGroup) == typeof(G8) ? 2 : 1;
        nint sb = per * (typeof(TScale) == typeof(F16) ? 2 : 4);
        byte* pf = w + ahead;
        for (byte* end = w + (nint)chunks * 256; w < end; w += 256, x += 512, pf += 256, aux += 32, s += sb, z += per)
        {
            Sse.Prefetch0(pf); Sse.Prefetch0(pf + 64); Sse.Prefetch0(pf + 128); Sse.Prefetch0(pf + 192);
            var m0 = Avx512BW.MultiplyAddAdjacent(QuadSums(w, x, low4), ones);
            var m1 = Avx512BW.MultiplyAddAdjacent(QuadSums(w + 64, x + 128, low4), ones);
            var u0 = Avx512F.Add(Avx512F.UnpackLow(m0, m1), Avx512F.UnpackHigh(m0, m1));
            var m2 = Avx512BW.MultiplyAddAdjacent(QuadSums(w + 128, x + 256, low4), ones);
            var m3 = Avx512BW.MultiplyAddAdjacent(QuadSums(w + 192, x + 384, low4), ones);
            var u1 = Avx512F.Add(Avx512F.UnpackLow(m2, m3), Avx512F.UnpackHigh(m2, m3));
            // the 64-bit unpacks move int32 pairs; the add must stay 32-bit (a 64-bit add would carry between them)
            var v = Avx512F.Add(Avx512F.UnpackLow(u0.AsInt64(), u1.AsInt64()).AsInt32(), Avx512F.UnpackHigh(u0.AsInt64(), u1.AsInt64()).AsInt32());
            var sv = ChunkScaleVector<TScale, TGroup>(s);
            a = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(v), Avx512F.Multiply(sv, Avx512F.LoadVector512(aux)), a);
            if (typeof(TOff) == typeof(OffZ)) sv = Avx512F.Multiply(sv, ChunkZeros<TGroup>(z));
            a = Avx512F.FusedMultiplyAddNegated(sv, Avx512F.LoadVector512(aux + 16), a);
        }
        return a;
    }

    // Σ nibble·x of four blocks of one row as 32 int16 (8 per block and 128-bit lane): low nibbles × x[0, 64), high × x[64, 128).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> QuadSums(byte* p, sbyte* x, Vector512<byte> low4)
    {
        var r = Avx512F.LoadVector512(p);
        var lo = Avx512BW.MultiplyAddAdjacent(Avx512F.And(r, low4), Avx512F.LoadVector512(x));
        var hi = Avx512BW.MultiplyAddAdjacent(Avx512F.And(Avx512BW.ShiftRightLogical(r.AsUInt16(), 4).AsByte(), low4), Avx512F.LoadVector512(x + 64));
        return Avx512BW.Add(lo, hi);
    }

    // Lane l of a chunk holds block 4(l mod 4) + l / 4; the index of that block's group within the chunk's groups.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> ChunkIndex<TGroup>() where TGroup : struct =>
        typeof(TGroup) == typeof(G1) ? Vector512.Create(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)
        : typeof(TGroup) == typeof(G2) ? Vector512.Create(0, 2, 4, 6, 0, 2, 4, 6, 1, 3, 5, 7, 1, 3, 5, 7)
        : typeof(TGroup) == typeof(G4) ? Vector512.Create(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3)
        : typeof(TGroup) == typeof(G8) ? Vector512.Create(0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1)
        : Vector512<int>.Zero;

    // The scales of one chunk (16, 8, 4, 2 or 1; never read past them) in RowChunks' lane order, as floats (F16 as in
    // RunScaleVector).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> ChunkScaleVector<TScale, TGroup>(byte* s) where TScale : struct where TGroup : struct
    {
        Vector512<float> f;
        if (typeof(TScale) == typeof(F16))
        {
            Vector128<short> h8 = typeof(TGroup) == typeof(G2) ? Sse2.LoadVector128((short*)s)
                : typeof(TGroup) == typeof(G4) ? Sse2.LoadScalarVector128((long*)s).AsInt16()
                : typeof(TGroup) == typeof(G8) ? Sse2.LoadScalarVector128((int*)s).AsInt16()
                : Vector128.CreateScalar(*(short*)s);
            var h = typeof(TGroup) == typeof(G1) ? Avx.LoadVector256((short*)s) : h8.ToVector256Unsafe();
            var v = Avx512F.And(Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(h), 13), Vector512.Create(unchecked((int)0x8FFFFFFF)));
            f = Avx512F.Multiply(v.AsSingle(), Vector512.Create(MathF.ScaleB(1f, 112)));
        }
        else if (typeof(TGroup) == typeof(G16)) return Vector512.Create(*(float*)s);
        else f = typeof(TGroup) == typeof(G1) ? Avx512F.LoadVector512((float*)s)
            : typeof(TGroup) == typeof(G2) ? Avx.LoadVector256((float*)s).ToVector512Unsafe()
            : typeof(TGroup) == typeof(G4) ? Sse.LoadVector128((float*)s).ToVector256Unsafe().ToVector512Unsafe()
            : Sse2.LoadScalarVector128((double*)s).AsSingle().ToVector256Unsafe().ToVector512Unsafe();
        return Avx512F.PermuteVar16x32(f, ChunkIndex<TGroup>());
    }

    // The zero points of one chunk (16, 8, 4, 2 or 1 bytes; never read past them) in RowChunks' lane order, as floats.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> ChunkZeros<TGroup>(byte* z) where TGroup : struct
    {
        Vector128<byte> zb = typeof(TGroup) == typeof(G1) ? Sse2.LoadVector128(z)
            : typeof(TGroup) == typeof(G2) ? Sse2.LoadScalarVector128((ulong*)z).AsByte()
            : typeof(TGroup) == typeof(G4) ? Vector128.CreateScalar(*(uint*)z).AsByte()
            : typeof(TGroup) == typeof(G8) ? Vector128.CreateScalar(*(ushort*)z).AsByte()
            : Vector128.CreateScalar(*z);
        return Avx512F.PermuteVar16x32(Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(zb)), ChunkIndex<TGroup>());
    }

    // aux for RowChunks: per chunk of 16 blocks, dx in lane order, then e: per lane its group's Σx times `mul` / bpg
    // (exact: powers of 2), as RunScales.
    private static void ChunkScales(float* dx, float* xs, int chunks, int bpg, float mul, float* aux)
    {
        for (int c = 0; c < chunks; c++, aux += 32)
            for (int l = 0; l < 16; l++)
            {
                int b = c * 16 + 4 * (l & 3) + (l >> 2);
                aux[l] = dx[b];
                aux[16 + l] = xs[b / bpg] * (mul / bpg);
            }
    }

    // The activations of the first `blocks` blocks (a multiple of 16) reordered for RowChunks: each 128 bytes (two block
    // pairs, nibble-pair order [lo p | hi p | lo p+1 | hi p+1]) become [lo p | lo p+1 | hi p | hi p+1], so one 512-bit
    // load serves the low (or high) nibbles of four consecutive blocks.
    private static void ChunkOrder(sbyte* x, int blocks, sbyte* dst)
    {
        for (nint o = 0, end = (nint)blocks * 32; o < end; o += 128)
        {
            var a = Avx.LoadVector256(x + o); var b = Avx.LoadVector256(x + o + 32);
            var c = Avx.LoadVector256(x + o + 64); var d = Avx.LoadVector256(x + o + 96);
            Avx.Store(dst + o, a); Avx.Store(dst + o + 32, c); Avx.Store(dst + o + 64, b); Avx.Store(dst + o + 96, d);
        }
    }

    // ---- Session 12: Q4_0 in a 4-row interleaved layout (x4) ----

    /// <summary>Blocks of 32 values per row in one unit of the interleaved Q4_0 layout (256 values).</summary>
    public const int X4UnitBlocks = 8;

    /// <summary>
    /// Bytes of one unit of the interleaved Q4_0 layout: 4 rows × 8 blocks, the 32 F16 scales (64 bytes, in the
    /// kernels' lane order, see <see cref="X4ScaleIndex"/>) then per block pair p the 4 rows' 32 packed bytes (128 bytes):
    /// nine whole cache lines.
    /// </summary>
    public const int X4UnitBytes = 64 + 4 * 4 * 32;

    /// <summary>
    /// True when <paramref name="w"/> has an interleaved (x4) Q4_0 layout: int4, symmetric, groups of one block, K a
    /// multiple of 256 (whole units) and N a multiple of 4.
    /// </summary>
    public static bool X4Fits(in QuantMatrix w) =>
        w.Int4 && w.Symmetric && w.GroupLength == Block && w.K % (X4UnitBlocks * Block) == 0 && w.N > 0 && w.N % 4 == 0;

    /// <summary>Bytes of the interleaved copy of an [<paramref name="n"/>, <paramref name="k"/>] Q4_0 matrix: data plus F16 scales.</summary>
    public static long X4Bytes(int n, int k) => (long)(n / 4) * (k / (X4UnitBlocks * Block)) * X4UnitBytes;

    /// <summary>
    /// Index (in halves from the unit's start) of the scale of row <paramref name="r"/> (0..3) and block
    /// <paramref name="bl"/> (0..7) of a unit: per half unit (block pairs p, q = 2h, 2h + 1) 16 scales in the lane order
    /// the kernels' reduction leaves: lane 4L + i holds row 2(i &amp; 1) + (L &gt;&gt; 1), block of pair (i &gt;&gt; 1) and
    /// half (L &amp; 1).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int X4ScaleIndex(int r, int bl) => 16 * (bl >> 2) + 4 * (2 * (r & 1) + (bl & 1)) + 2 * ((bl >> 1) & 1) + (r >> 1);

    /// <summary>Byte offset from a unit's start of the 16 packed bytes of row <paramref name="r"/> and block <paramref name="bl"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int X4DataOffset(int r, int bl) => 64 + 32 * r + X4BlockOffset(bl);

    /// <summary>
    /// Byte offset of block <paramref name="b"/> of a row from its block 0 in the interleaved layout (the same for the
    /// 4 rows of a group: whole units, then 128 bytes per pair and 16 within it).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int X4BlockOffset(int b) => (b >> 3) * X4UnitBytes + 128 * ((b & 7) >> 1) + 16 * (b & 1);

    /// <summary>
    /// Writes 4-row groups [<paramref name="g0"/>, <paramref name="g1"/>) of <paramref name="w"/> (which must fit
    /// <see cref="X4Fits"/>) into <paramref name="dst"/> in the interleaved layout (group g at g·units·X4UnitBytes);
    /// throws when a scale is not finite (the check the executor's bind does on the original) or, for F32 scales, not
    /// exactly a half.
    /// </summary>
    // Compiled models save this layout to disk (WeightCacheFile): bump WeightCacheFile.LayoutVersion whenever it changes,
    // or cache files written by an older runtime would be mapped as if they held the new layout.
    public static void InterleaveX4(in QuantMatrix w, byte* dst, int g0, int g1)
    {
        if (!X4Fits(w)) throw new ArgumentException("the matrix has no interleaved int4 layout (see X4Fits)", nameof(w));
        if (dst == null) throw new ArgumentNullException(nameof(dst));
        if (g0 < 0 || g1 > w.N / 4 || g0 > g1) throw new ArgumentOutOfRangeException(nameof(g0), $"groups [{g0}, {g1}) outside [0, {w.N / 4})");
        int blocks = w.K / Block, units = blocks / X4UnitBlocks, rowBytes = w.RowBytes;
        for (int g = g0; g < g1; g++)
            for (int u = 0; u < units; u++)
            {
                byte* o = dst + ((long)g * units + u) * X4UnitBytes;
                for (int r = 0; r < 4; r++)
                {
                    long row = 4L * g + r;
                    for (int bl = 0; bl < X4UnitBlocks; bl++)
                    {
                        long at = row * blocks + u * X4UnitBlocks + bl;
                        ushort h = w.ScalesF16 != null ? w.ScalesF16[at] : QuantKernels.HalfBitsOf(w.Scales[at]);
                        if ((h & 0x7C00) == 0x7C00) throw new InvalidOperationException($"scale {at} of the matrix is not finite (or, F32, not a half); re-export the model");
                        ((ushort*)o)[X4ScaleIndex(r, bl)] = h;
                    }
                    // a block pair is 32 contiguous bytes in the row and in the unit
                    byte* src = w.Data + row * rowBytes + (long)u * X4UnitBlocks * (Block / 2);
                    for (int bl = 0; bl < X4UnitBlocks; bl += 2)
                    {
                        if (Avx.IsSupported) Avx.Store(o + X4DataOffset(r, bl), Avx.LoadVector256(src + bl * (Block / 2)));
                        else Buffer.MemoryCopy(src + bl * (Block / 2), o + X4DataOffset(r, bl), 32, 32);
                    }
                }
            }
    }

    /// <summary>Bytes the interleaved GEMV prefetches ahead of the unit it reads.</summary>
    internal static int X4Ahead { get; set; } = 8192;

    /// <summary>Floats of the x4 GEMV's per-row activation staging: per half unit (128 values) 8 dx + 8 offsets.</summary>
    private static int X4AuxFloats(int k) => k / 128 * 16;

    /// <summary>
    /// The Q4_0 decode GEMV on the interleaved copy <see cref="QuantMatrix.Interleaved"/>: y[i, j] for rows
    /// j ∈ [<paramref name="n0"/>, <paramref name="n1"/>) (a range not aligned to 4 rows computes whole groups and
    /// stores its rows). The block sums are exact integers Σ(q − 8)·x (the offset subtracted as 8·Σx in int32).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    public static void GemvX4(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int n0, int n1)
    {
        if (w.Interleaved == null || !X4Fits(w)) throw new ArgumentException("the x4 GEMV needs an interleaved Q4_0 matrix", nameof(w));
        if (!Avx2.IsSupported || !Fma.IsSupported) throw new NotSupportedException("the x4 GEMV needs AVX2+FMA");
        KernelArgs.Range(n0, n1);
        if (n1 > w.N) throw new ArgumentOutOfRangeException(nameof(n1), n1, $"n1 = {n1} is past the weight's {w.N} rows");
        if (n0 >= n1 || m <= 0) return;
        KernelArgs.NotNull(act, true);
        KernelArgs.NotNull(y, true);
        int k = w.K, blocks = k / Block, units = blocks / X4UnitBlocks, auxRow = X4AuxFloats(k);
        long groupBytes = (long)units * X4UnitBytes;
        sbyte* xq = (sbyte*)act;
        float* dx = QuantKernels.BlockScales(act, m, k);
        int auxFloats = m * auxRow + 16;
        bool heap = auxFloats > StackFloats;
        float* stack = stackalloc float[heap ? 16 : auxFloats];
        float* aux = heap ? (float*)NativeMemory.AlignedAlloc((nuint)auxFloats * sizeof(float), 64) : (float*)(((nint)stack + 63) & ~(nint)63);
        try
        {
            for (int i = 0; i < m; i++) X4Stage(xq + (long)i * k, dx + (long)i * blocks, k, aux + (long)i * auxRow);
            nint ahead = X4Ahead;
            for (int j = n0 & ~3; j < n1; j += 4)
            {
                byte* g = w.Interleaved + (long)(j >> 2) * groupBytes;
                int lo = Math.Max(j, n0), hi = Math.Min(j + 4, n1);
                for (int i = 0; i < m; i++)
                {
                    sbyte* xr = xq + (long)i * k;
                    float* ai = aux + (long)i * auxRow;
                    var sum = X4Run(g, xr, ai, units, ahead);
                    float* yr = y + (long)i * ldy;
                    if (lo == j && hi == j + 4) QuantKernels.StoreSums(sum, bias, yr + j, j, 4);
                    else for (int r = lo; r < hi; r++) yr[r] = sum.GetElement(r - j) + (bias != null ? bias[r] : 0f);
                }
            }
        }
        finally
        {
            if (heap) NativeMemory.AlignedFree(aux);
        }
    }

    // Per half unit of one activation row (4 blocks: pairs p, q): dx of each lane's block, then 8·Σq of it as int32, in
    // the lane order Tree256 leaves (lane 4L + i, L = 0, 1: block 2(i >> 1) + L of the half; the same for the rows 0, 2
    // and the rows 1, 3 vector). The block sums go through the kernel's own reduction (vpmaddubsw of ones, vpmaddwd,
    // Tree256), so a unit's call costs ~0.1 instruction per activation value.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void X4Stage(sbyte* x, float* dx, int k, float* aux)
    {
        var one8 = Vector256.Create((byte)1);
        var ones = Vector256.Create((short)1);
        var order = Vector256.Create(0, 0, 2, 2, 1, 1, 3, 3);
        for (int h = 0; h < k / 128; h++, aux += 16, x += 128, dx += 4)
        {
            var sp = Avx2.MultiplyAddAdjacent(Avx2.Add(Avx2.MultiplyAddAdjacent(one8, Avx.LoadVector256(x)), Avx2.MultiplyAddAdjacent(one8, Avx.LoadVector256(x + 32))), ones);
            var sq = Avx2.MultiplyAddAdjacent(Avx2.Add(Avx2.MultiplyAddAdjacent(one8, Avx.LoadVector256(x + 64)), Avx2.MultiplyAddAdjacent(one8, Avx.LoadVector256(x + 96))), ones);
            Avx.Store(aux, Avx2.PermuteVar8x32(Sse.LoadVector128(dx).ToVector256Unsafe(), order));
            Avx.Store((int*)(aux + 8), Avx2.ShiftLeftLogical(Tree256(sp, sp, sq, sq), 3));
        }
    }

    // Σ nibble·x of one row's block pair (32 packed bytes) as 8 int32: lanes 0–3 block 2p, 4–7 block 2p + 1 (vpmaddubsw
    // of the unsigned nibbles with the signed activations, each int16 ≤ 2·2·15·128, then vpmaddwd by ones).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dot256(byte* p, Vector256<sbyte> xa, Vector256<sbyte> xb, Vector256<byte> low4, Vector256<short> ones)
    {
        var r = Avx.LoadVector256(p);
        var lo = Avx2.And(r, low4);
        var hi = Avx2.And(Avx2.ShiftRightLogical(r.AsUInt16(), 4).AsByte(), low4);
        return Avx2.MultiplyAddAdjacent(Avx2.Add(Avx2.MultiplyAddAdjacent(lo, xa), Avx2.MultiplyAddAdjacent(hi, xb)), ones);
    }

    // Four int32 vectors (each 128-bit lane one block's partial sums) → lane i of each 128-bit lane L = Σ of vector i's lane L.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Tree256(Vector256<int> m0, Vector256<int> m1, Vector256<int> m2, Vector256<int> m3)
    {
        var u0 = Avx2.Add(Avx2.UnpackLow(m0, m1), Avx2.UnpackHigh(m0, m1));
        var u1 = Avx2.Add(Avx2.UnpackLow(m2, m3), Avx2.UnpackHigh(m2, m3));
        return Avx2.Add(Avx2.UnpackLow(u0.AsInt64(), u1.AsInt64()).AsInt32(), Avx2.UnpackHigh(u0.AsInt64(), u1.AsInt64()).AsInt32());
    }

    // Eight F16 scales as floats (exact), the sign-extension trick of ChunkScaleVector.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Halves8(byte* p)
    {
        var v = Avx2.And(Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((short*)p), 13), Vector256.Create(unchecked((int)0x8FFFFFFF)));
        return Avx.Multiply(v.AsSingle(), Vector256.Create(MathF.ScaleB(1f, 112)));
    }

    // One 4-row group against one activation row on 256-bit vectors: [Σ row 0 .. Σ row 3] without bias. Per half unit
    // and pair, one activation load pair serves 4 rows; the rows' block sums are gathered by Tree256 into two vectors in
    // the scales' lane order (rows 0, 2 | rows 1, 3), the offsets subtracted in int32, one convert and FMA each.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static Vector128<float> X4Run(byte* u, sbyte* x, float* aux, int units, nint ahead)
    {
        var low4 = Vector256.Create((byte)0x0F);
        var ones = Vector256.Create((short)1);
        Vector256<float> a0 = default, a1 = default;
        for (byte* end = u + (nint)units * X4UnitBytes; u < end; u += X4UnitBytes, x += 256, aux += 32)
        {
            byte* pf = u + ahead;
            Sse.Prefetch0(pf); Sse.Prefetch0(pf + 64); Sse.Prefetch0(pf + 128); Sse.Prefetch0(pf + 192); Sse.Prefetch0(pf + 256);
            Sse.Prefetch0(pf + 320); Sse.Prefetch0(pf + 384); Sse.Prefetch0(pf + 448); Sse.Prefetch0(pf + 512);
            for (int h = 0; h < 2; h++)
            {
                byte* d = u + 64 + 256 * h;
                sbyte* xh = x + 128 * h;
                float* ah = aux + 16 * h;
                var xa = Avx.LoadVector256(xh); var xb = Avx.LoadVector256(xh + 32);
                var p0 = Dot256(d, xa, xb, low4, ones); var p1 = Dot256(d + 32, xa, xb, low4, ones);
                var p2 = Dot256(d + 64, xa, xb, low4, ones); var p3 = Dot256(d + 96, xa, xb, low4, ones);
                xa = Avx.LoadVector256(xh + 64); xb = Avx.LoadVector256(xh + 96);
                var q0 = Dot256(d + 128, xa, xb, low4, ones); var q1 = Dot256(d + 160, xa, xb, low4, ones);
                var q2 = Dot256(d + 192, xa, xb, low4, ones); var q3 = Dot256(d + 224, xa, xb, low4, ones);
                var c = Avx.LoadVector256((int*)(ah + 8));
                var dxv = Avx.LoadVector256(ah);
                var v0 = Avx2.Subtract(Tree256(p0, p2, q0, q2), c);
                var v1 = Avx2.Subtract(Tree256(p1, p3, q1, q3), c);
                a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(v0), Avx.Multiply(Halves8(u + 32 * h), dxv), a0);
                a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(v1), Avx.Multiply(Halves8(u + 32 * h + 16), dxv), a1);
            }
        }
        return X4Reduce(a0, a1);
    }

    // a0: lanes 4L + i (L = 0, 1) rows 0, 2, 0, 2; a1 rows 1, 3, 1, 3 → [Σ r0, Σ r1, Σ r2, Σ r3].
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> X4Reduce(Vector256<float> a0, Vector256<float> a1)
    {
        var s0 = Sse.Add(a0.GetLower(), a0.GetUpper());
        var s1 = Sse.Add(a1.GetLower(), a1.GetUpper());
        s0 = Sse.Add(s0, Sse.MoveHighToLow(s0, s0));   // [r0, r2, ·, ·]
        s1 = Sse.Add(s1, Sse.MoveHighToLow(s1, s1));   // [r1, r3, ·, ·]
        return Sse.UnpackLow(s0, s1);
    }
}
