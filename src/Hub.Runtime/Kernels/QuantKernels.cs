// Kernels for int8/int4 weights in the layout of docs/quantization.md (W [N, K], groups along K, f16-exact scales,
// int4 packed in Q4_0 runs of 32: byte j = value j | value j+16 << 4).
// Decode GEMV (llama.cpp's ggml_vec_dot_q8_0_q8_0 / q4_0_q8_0 idea): the activation row is quantized once to int8 in
// blocks of 32 (scale dx_b), and every weight byte is streamed once into integer dot products — AVX2 vpmaddubsw +
// vpmaddwd on 32 values at a time, one float FMA per block. vpmaddubsw multiplies unsigned by signed bytes, so signed
// int8 weights use the sign trick (|w| · sign(x, w)); asymmetric int8 bytes are flipped to signed by ^0x80 and the 128
// comes back with the zero point. With AVX-VNNI (session 9) the int8 four-row pass (groups longer than 32) takes one
// vpdpbusd per 32 bytes instead: unsigned weight bytes (asymmetric q as stored, symmetric w + 128) against the signed
// activations, the zero-point term z·Σx or 128·Σx; Q8_0 with rows up to 1 KiB runs two adjacent rows per activation
// load there (GemvInt8Pairs, session 10). Zero points never enter the inner loop: Σ (q - z)·x = Σ q·x - z·Σ x, and Σ x per group is computed once per
// activation row. Q8_0 without VNNI, or with rows longer than PairMaxK, streams one output row at a time (GemvInt8Row); longer int8 groups and
// int4 run four output rows per pass (one activation load per block for all four, software prefetch two passes
// ahead, one hadd tree and one 4-float store per pass), in one small non-inlined kernel per format so that the JIT
// keeps the loop state in registers. Session 11: on AVX-VNNI the compiled model repacks Q8_0 Linear weights at load
// into 4-row interleaved blocks (QuantMatrix.Interleaved, llama.cpp's block_q8_0x4: per block the 4 rows' F16 scales
// then their 4 × 32 values), which GemvInt8X4 streams as one sequential region with exact integer block sums; the
// prefill GEMM and the float paths read that layout too (RowStart/BlockStride/RowScales). Session 12: Q4_0 the same
// way on AVX2+FMA (QuantGemvInt4.InterleaveX4/GemvX4; its blocks through QuantMatrix.Int4Block). Shapes the integer path cannot take
// (K not a multiple of 32) dequantize a row into L1 scratch and use a float dot. Prefill dequantizes panels of rows
// and reuses the f32 GEMM (int4: an int4 × int8 GEMM; int8: QuantGemmInt8's int8 × int8 GEMM).
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hub.Runtime.Kernels;

/// <summary>A quantized [N, K] weight bound to its data, scales and zero points (pointers into the mapped IR).</summary>
public readonly unsafe struct QuantMatrix
{
    /// <summary>Quantized values: I8/U8 [N, K] (int8) or packed U8 [N, K/2] (int4).</summary>
    public readonly byte* Data;
    /// <summary>F32 [N, Groups] (IRs exported before F16 scales), null when <see cref="ScalesF16"/> is set.</summary>
    public readonly float* Scales;
    /// <summary>IEEE half bits [N, Groups] (the current IR format: half the scale bytes of F32), null when <see cref="Scales"/> is set.</summary>
    public readonly ushort* ScalesF16;
    /// <summary>U8 [N, Groups], null when symmetric.</summary>
    public readonly byte* Zeros;
    /// <summary>Rows (outputs) and logical columns (inputs).</summary>
    public readonly int N, K;
    /// <summary>Values per group (K when per channel) and groups per row.</summary>
    public readonly int GroupLength, Groups;
    /// <summary>4-bit packed values (else 8-bit).</summary>
    public readonly bool Int4;
    /// <summary>No zero points (int8 values are signed, int4 values are offset by 8).</summary>
    public readonly bool Symmetric;
    /// <summary>
    /// The load-time copy in the 4-row interleaved Q8_0 layout (<see cref="QuantKernels.X4Fits"/>: per group of 4 rows
    /// and block b, the 4 rows' F16 scales then their 4 × 32 int8 values, <see cref="QuantKernels.X4BlockBytes"/>
    /// bytes) or Q4_0 layout (int4, <see cref="QuantGemvInt4.X4Fits"/>: units of 4 rows × 8 blocks,
    /// <see cref="QuantGemvInt4.X4UnitBytes"/>), or null. When set, the kernels read values and scales from it only: <see cref="Data"/> and
    /// <see cref="ScalesF16"/> still name the original, whose pages the compiled model may have released.
    /// </summary>
    public readonly byte* Interleaved;

    /// <summary>Binds a matrix; <paramref name="groupSize"/> 0 means one group per row.</summary>
    public QuantMatrix(byte* data, float* scales, byte* zeros, int n, int k, int groupSize, bool int4, bool symmetric)
    {
        int gl = groupSize == 0 ? k : groupSize;
        if (n < 0 || k <= 0 || gl <= 0 || k % gl != 0) throw new ArgumentException($"group size {groupSize} does not divide K = {k}");
        if (int4 && (k % 32 != 0 || gl % 32 != 0)) throw new ArgumentException($"int4 needs K ({k}) and the group ({gl}) to be multiples of 32");
        if (!symmetric && zeros == null) throw new ArgumentException("asymmetric weights need zero points");
        if (scales == null) throw new ArgumentNullException(nameof(scales));
        Data = data; Scales = scales; ScalesF16 = null; Zeros = zeros; N = n; K = k; GroupLength = gl; Groups = k / gl; Int4 = int4; Symmetric = symmetric;
    }

    /// <summary>Binds a matrix whose scales are IEEE half bits (finite); <paramref name="groupSize"/> 0 means one group per row.</summary>
    public QuantMatrix(byte* data, ushort* scalesF16, byte* zeros, int n, int k, int groupSize, bool int4, bool symmetric)
        : this(data, (float*)scalesF16, zeros, n, k, groupSize, int4, symmetric)
    {
        Scales = null; ScalesF16 = scalesF16;
    }

    /// <summary>
    /// <paramref name="w"/> bound to its interleaved copy <paramref name="interleaved"/> (made by
    /// <see cref="QuantKernels.InterleaveX4"/>; <paramref name="w"/> must fit <see cref="QuantKernels.X4Fits"/>).
    /// </summary>
    public QuantMatrix(in QuantMatrix w, byte* interleaved)
    {
        if (!QuantKernels.X4Fits(w) && !QuantGemvInt4.X4Fits(w))
            throw new ArgumentException("only symmetric int8 (K a multiple of 32) or int4 (K a multiple of 256) with groups of 32 and N a multiple of 4 has an interleaved layout", nameof(w));
        if (interleaved == null) throw new ArgumentNullException(nameof(interleaved));
        this = w;
        Interleaved = interleaved;
    }

    /// <summary>
    /// The float scales of row <paramref name="row"/>: a pointer into F32 scales, or F16 scales converted (exactly) into
    /// <paramref name="buf"/> (<see cref="Groups"/> floats) — once per pass of rows, never per block.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float* RowScales(int row, float* buf)
    {
        if (Interleaved != null && Int4)
        {
            for (int g = 0; g < Groups; g++) buf[g] = Scale(row, g);
            return buf;
        }
        if (Interleaved != null)
        {
            // the row's scale of block b sits at the head of its 4-row block, 2·(row mod 4) bytes in
            QuantKernels.HalfToSingleX4(Interleaved + (long)(row >> 2) * Groups * QuantKernels.X4BlockBytes + (row & 3) * 2, buf, Groups);
            return buf;
        }
        if (ScalesF16 == null) return Scales + (long)row * Groups;
        QuantKernels.HalfToSingle(ScalesF16 + (long)row * Groups, buf, Groups);
        return buf;
    }

    /// <summary>One scale as float (scalar reference paths).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Scale(int row, int group) =>
        Interleaved != null && Int4 ? QuantKernels.HalfToSingle(((ushort*)Int4Unit(row, group))[QuantGemvInt4.X4ScaleIndex(row & 3, group % QuantGemvInt4.X4UnitBlocks)])
        : Interleaved != null ? QuantKernels.HalfToSingle(((ushort*)(Interleaved + ((long)(row >> 2) * Groups + group) * QuantKernels.X4BlockBytes))[row & 3])
        : ScalesF16 == null ? Scales[(long)row * Groups + group] : QuantKernels.HalfToSingle(ScalesF16[(long)row * Groups + group]);

    // The interleaved int4 unit holding row `row`'s block `block`.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private byte* Int4Unit(int row, int block) =>
        Interleaved + ((long)(row >> 2) * (K / (QuantGemvInt4.X4UnitBlocks * QuantKernels.Block)) + block / QuantGemvInt4.X4UnitBlocks) * QuantGemvInt4.X4UnitBytes;

    /// <summary>
    /// The 16 packed bytes of int4 block <paramref name="block"/> of row <paramref name="row"/> (byte t: value t in the
    /// low nibble, t + 16 in the high one), in the row-major data or the interleaved copy.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte* Int4Block(int row, int block) => Interleaved != null
        ? Interleaved + (long)(row >> 2) * (K / (QuantGemvInt4.X4UnitBlocks * QuantKernels.Block)) * QuantGemvInt4.X4UnitBytes + 64 + 32 * (row & 3) + QuantGemvInt4.X4BlockOffset(block)
        : Data + (long)row * RowBytes + (long)block * (QuantKernels.Block / 2);

    /// <summary>
    /// Where row <paramref name="row"/>'s values start: its first block; block b follows at b·<see cref="BlockStride"/>
    /// bytes (32 bytes per block of an int8 row, or the interleaved layout's block stride). Interleaved int4 has no
    /// fixed block stride: read its blocks through <see cref="Int4Block"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte* RowStart(int row) => Interleaved != null && Int4 ? Int4Block(row, 0)
        : Interleaved != null
        ? Interleaved + (long)(row >> 2) * Groups * QuantKernels.X4BlockBytes + QuantKernels.X4ScaleBytes + (row & 3) * QuantKernels.Block
        : Data + (long)row * RowBytes;

    /// <summary>
    /// Bytes from one 32-value block of a row to the next (int8: 32, or <see cref="QuantKernels.X4BlockBytes"/>
    /// interleaved; int4: 16; interleaved int4 has none and throws: <see cref="Int4Block"/>).
    /// </summary>
    public int BlockStride => Interleaved != null && Int4 ? throw new InvalidOperationException("interleaved int4 blocks have no fixed stride: use Int4Block")
        : Interleaved != null ? QuantKernels.X4BlockBytes : Int4 ? QuantKernels.Block / 2 : QuantKernels.Block;

    /// <summary>Bytes of one stored row.</summary>
    public int RowBytes => Int4 ? K / 2 : K;

    /// <summary>
    /// The constant subtracted from every stored value as the integer kernels read it: int8 sym 0 (signed bytes),
    /// int8 asym z − 128 (bytes read as signed after ^0x80), int4 sym 8, int4 asym z.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int ZeroOffset(int row, int group) =>
        Int4 ? (Symmetric ? 8 : Zeros[(long)row * Groups + group]) : (Symmetric ? 0 : Zeros[(long)row * Groups + group] - 128);
}

/// <summary>GEMV and dequantization kernels for int8/int4 weights (AVX2 with a scalar twin for each).</summary>
public static unsafe class QuantKernels
{
    /// <summary>Activation block length of the integer path (one float scale per 32 int8 values, as Q8_0).</summary>
    public const int Block = 32;

    /// <summary>2^112: the exponent bias difference of f32 (127) and f16 (15).</summary>
    private static readonly float Two112 = MathF.ScaleB(1f, 112);

    /// <summary>
    /// Exact IEEE half → float for finite values (normals, subnormals, ±0): the magnitude bits shifted into float
    /// position and scaled by 2^112 (no rounding: the product is representable), the sign copied. Bit arithmetic, not
    /// the (slow) Half conversion; infinities and NaN are not mapped (the bind rejects them).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HalfToSingle(ushort h) =>
        BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(BitConverter.Int32BitsToSingle((h & 0x7FFF) << 13) * Two112) | ((h & 0x8000) << 16));

    /// <summary>Converts <paramref name="n"/> finite half values to float exactly (eight per AVX2 step, see <see cref="HalfToSingle(ushort)"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void HalfToSingle(ushort* src, float* dst, int n)
    {
        int i = 0;
        if (Avx2.IsSupported)
        {
            var m7 = Vector256.Create(0x7FFF); var m8 = Vector256.Create(0x8000); var sc = Vector256.Create(Two112);
            for (; i + 8 <= n; i += 8)
            {
                var v = Avx2.ConvertToVector256Int32(src + i);
                var f = Avx.Multiply(Avx2.ShiftLeftLogical(Avx2.And(v, m7), 13).AsSingle(), sc);
                Avx.Store(dst + i, Avx.Or(f, Avx2.ShiftLeftLogical(Avx2.And(v, m8), 16).AsSingle()));
            }
        }
        for (; i < n; i++) dst[i] = HalfToSingle(src[i]);
    }

    /// <summary>
    /// Converts <paramref name="n"/> finite half values <see cref="X4BlockBytes"/> bytes apart (one row's scales in the
    /// interleaved layout) to float exactly: eight per AVX2 gather.
    /// </summary>
    internal static void HalfToSingleX4(byte* src, float* dst, int n)
    {
        int i = 0;
        if (Avx2.IsSupported)
        {
            var offsets = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) * X4BlockBytes;
            var m16 = Vector256.Create(0xFFFF); var m7 = Vector256.Create(0x7FFF); var m8 = Vector256.Create(0x8000); var sc = Vector256.Create(Two112);
            // each gather reads 4 bytes at a scale: the next scale or the block's values, inside the copy
            for (; i + 8 <= n; i += 8)
            {
                var v = Avx2.And(Avx2.GatherVector256((int*)(src + (long)i * X4BlockBytes), offsets, 1), m16);
                var f = Avx.Multiply(Avx2.ShiftLeftLogical(Avx2.And(v, m7), 13).AsSingle(), sc);
                Avx.Store(dst + i, Avx.Or(f, Avx2.ShiftLeftLogical(Avx2.And(v, m8), 16).AsSingle()));
            }
        }
        for (; i < n; i++) dst[i] = HalfToSingle(*(ushort*)(src + (long)i * X4BlockBytes));
    }

    /// <summary>
    /// The per-block activation scales dx of a quantized activation buffer: after its m·k int8 values, 64-byte aligned
    /// (the Σx terms xs follow at dx + m·blocks).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float* BlockScales(byte* act, int m, int k) => (float*)(act + (((long)m * k + 63) & ~63L));

    /// <summary>True when <paramref name="w"/> can use the integer (quantized-activation) GEMV.</summary>
    public static bool IntegerPathFits(in QuantMatrix w) => w.K % Block == 0 && w.GroupLength % Block == 0;

    /// <summary>Bytes of the activation buffer <see cref="QuantizeActivations(in QuantMatrix, float*, int, byte*)"/> needs for <paramref name="m"/> rows.</summary>
    public static long ActivationBytes(int m, int k, int groups) => (long)m * k + 4L * m * (k / Block) + 4L * m * groups + 64;

    /// <summary>
    /// Quantizes <paramref name="m"/> rows of x [m, k] to int8 per block of 32 in natural order (the layout int8
    /// matrices read); int4 matrices need <see cref="QuantizeActivations(in QuantMatrix, float*, int, byte*)"/>.
    /// </summary>
    public static void QuantizeActivations(float* x, int m, int k, int groupLength, byte* buf) =>
        QuantizeActivations(x, m, k, groupLength, buf, nibblePairOrder: false, 0, m);

    /// <summary>
    /// Quantizes <paramref name="m"/> rows of x [m, w.K] to int8 per block of 32 (d = amax/127, q = round(x/d)) into
    /// <paramref name="buf"/> in the order <paramref name="w"/>'s GEMV reads: xq [m, k] sbyte, dx [m, k/32] f32, then
    /// per-group sums Σ d_b·Σq [m, groups] f32.
    /// </summary>
    public static void QuantizeActivations(in QuantMatrix w, float* x, int m, byte* buf) =>
        QuantizeActivations(x, m, w.K, w.GroupLength, buf, nibblePairOrder: w.Int4, 0, m);

    /// <summary>
    /// Rows [<paramref name="r0"/>, <paramref name="r1"/>) of <see cref="QuantizeActivations(in QuantMatrix, float*, int, byte*)"/>
    /// (the buffer laid out for all <paramref name="m"/> rows), so that prefill workers can quantize disjoint row ranges at once.
    /// </summary>
    public static void QuantizeActivations(in QuantMatrix w, float* x, int m, byte* buf, int r0, int r1)
    {
        CheckQuantizeRows(x, m, buf, r0, r1);
        QuantizeActivations(x, m, w.K, w.GroupLength, buf, w.Int4, r0, r1);
    }

    // Arguments of the row-range activation quantizers: both buffers present, 0 ≤ r0 ≤ r1 ≤ m.
    private static void CheckQuantizeRows(float* x, int m, byte* buf, int r0, int r1)
    {
        if (x == null || buf == null) throw new ArgumentNullException(x == null ? nameof(x) : nameof(buf));
        if (r0 < 0 || r0 > r1) throw new ArgumentOutOfRangeException(nameof(r0), $"rows [{r0}, {r1}) are outside [0, {m})");
        if (r1 > m) throw new ArgumentOutOfRangeException(nameof(r1), $"rows [{r0}, {r1}) are outside [0, {m})");
    }

    // Arguments of the prefill GEMMs (once per call; QuantGemmInt4/QuantGemmInt8): row and
    // output ranges inside [0, m) × [0, n), ldy ≥ n, and every buffer the ranges address present (the scratch or panel
    // reported under the caller's own argument name); a wrong call is an ArgumentException instead of an access violation.
    internal static void CheckGemmArgs(in QuantMatrix w, int m, byte* act, float* y, int ldy, int m0, int m1, int n0, int n1, void* scratch,
        [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(scratch))] string? scratchName = null)
    {
        KernelArgs.Range(m0, m1);
        KernelArgs.Range(n0, n1);
        if (m1 > m) throw new ArgumentOutOfRangeException(nameof(m1), m1, $"m1 = {m1} is past the {m} quantized activation rows");
        if (n1 > w.N) throw new ArgumentOutOfRangeException(nameof(n1), n1, $"n1 = {n1} is past the weight's {w.N} rows");
        KernelArgs.Stride(ldy, n1, "the output rows");
        bool work = m1 > m0 && n1 > n0;
        KernelArgs.NotNull(act, work);
        KernelArgs.NotNull(y, work);
        KernelArgs.NotNull(scratch, work, scratchName);
    }

    /// <summary>
    /// Where value <paramref name="c"/> of an activation row sits in the quantized buffer. Natural order, except that
    /// int4 matrices (<paramref name="nibblePairOrder"/>) read blocks in pairs as one 32-byte load of packed nibbles
    /// gives them: [b 0..15 | b+1 0..15] then [b 16..31 | b+1 16..31] (a trailing odd block stays natural).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ActivationPosition(int c, int blocks, bool nibblePairOrder)
    {
        int b = c >> 5, t = c & 31;
        if (!nibblePairOrder || ((b & 1) == 0 && b + 1 >= blocks)) return c;
        return (b & ~1) * Block + (t >> 4) * Block + (b & 1) * 16 + (t & 15);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static void QuantizeActivations(float* x, int m, int k, int groupLength, byte* buf, bool nibblePairOrder, int r0, int r1)
    {
        int blocks = k / Block, groups = k / groupLength, bpg = groupLength / Block;
        sbyte* xq = (sbyte*)buf;
        float* dx = BlockScales(buf, m, k);
        float* xs = dx + (long)m * blocks;
        sbyte* tmp = stackalloc sbyte[Block];
        for (int i = r0; i < r1; i++)
        {
            float* xr = x + (long)i * k;
            sbyte* qr = xq + (long)i * k;
            float* dr = dx + (long)i * blocks;
            float* sr = xs + (long)i * groups;
            for (int g = 0; g < groups; g++) sr[g] = 0;
            if (Avx2.IsSupported)
            {
                int b = 0;
                if (nibblePairOrder)
                    for (; b + 1 < blocks; b += 2)
                    {
                        var q0 = QuantizeBlockAvx2(xr + b * Block, out dr[b], out int s0);
                        var q1 = QuantizeBlockAvx2(xr + b * Block + Block, out dr[b + 1], out int s1);
                        Avx.Store(qr + b * Block, Avx2.Permute2x128(q0, q1, 0x20));
                        Avx.Store(qr + b * Block + Block, Avx2.Permute2x128(q0, q1, 0x31));
                        sr[b / bpg] += dr[b] * s0;
                        sr[(b + 1) / bpg] += dr[b + 1] * s1;
                    }
                for (; b < blocks; b++)
                {
                    Avx.Store(qr + b * Block, QuantizeBlockAvx2(xr + b * Block, out dr[b], out int s0));
                    sr[b / bpg] += dr[b] * s0;
                }
                continue;
            }
            for (int b = 0; b < blocks; b++)
            {
                float* xb = xr + b * Block;
                float amax = 0;
                for (int j = 0; j < Block; j++) amax = MathF.Max(amax, MathF.Abs(xb[j]));
                float d = amax / 127f, id = d != 0 ? 1f / d : 0f;
                int isum = 0;
                for (int j = 0; j < Block; j++)
                {
                    int q = (int)MathF.Round(xb[j] * id, MidpointRounding.ToEven);
                    tmp[j] = (sbyte)q;
                    isum += q;
                }
                for (int j = 0; j < Block; j++) qr[ActivationPosition(b * Block + j, blocks, nibblePairOrder)] = tmp[j];
                dr[b] = d;
                sr[b / bpg] += d * isum;
            }
        }
    }

    // One block of 32 floats → 32 int8 in natural order, its scale d = amax/127 and Σq.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> QuantizeBlockAvx2(float* xb, out float d, out int isum)
    {
        var absMask = Vector256.Create(0x7FFFFFFF).AsSingle();
        var v0 = Avx.LoadVector256(xb); var v1 = Avx.LoadVector256(xb + 8);
        var v2 = Avx.LoadVector256(xb + 16); var v3 = Avx.LoadVector256(xb + 24);
        var mx = Avx.Max(Avx.Max(Avx.And(v0, absMask), Avx.And(v1, absMask)), Avx.Max(Avx.And(v2, absMask), Avx.And(v3, absMask)));
        var h = Sse.Max(mx.GetLower(), mx.GetUpper());
        h = Sse.Max(h, Sse.MoveHighToLow(h, h));
        h = Sse.Max(h, Sse.Shuffle(h, h, 1));
        float amax = h.ToScalar();
        d = amax / 127f;
        var vid = Vector256.Create(d != 0 ? 1f / d : 0f);
        // nearest-even rounding (llama.cpp uses roundf, half away from zero: they differ only on exact .5 ties)
        var i0 = Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Avx.Multiply(v0, vid)));
        var i1 = Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Avx.Multiply(v1, vid)));
        var i2 = Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Avx.Multiply(v2, vid)));
        var i3 = Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(Avx.Multiply(v3, vid)));
        var bytes = Avx2.PackSignedSaturate(Avx2.PackSignedSaturate(i0, i1), Avx2.PackSignedSaturate(i2, i3));
        var sum = Avx2.Add(Avx2.Add(i0, i1), Avx2.Add(i2, i3));
        var s4 = Sse2.Add(sum.GetLower(), sum.GetUpper());
        s4 = Sse2.Add(s4, Sse2.Shuffle(s4, 0x4E));
        s4 = Sse2.Add(s4, Sse2.Shuffle(s4, 0xB1));
        isum = s4.ToScalar();
        // the two packs interleave 128-bit lanes: restore element order
        return Avx2.PermuteVar8x32(bytes.AsInt32(), Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7)).AsSByte();
    }

    /// <summary>
    /// y[i, j] = Σ_k x[i,k]·W[j,k] + b[j] for output rows j ∈ [n0, n1) of the <paramref name="m"/> activation rows
    /// quantized for <paramref name="w"/> by <see cref="QuantizeActivations(in QuantMatrix, float*, int, byte*)"/> into
    /// <paramref name="act"/> (integer dot products).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void GemvInteger(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int n0, int n1)
    {
        if (w.Interleaved != null && w.Int4)
        {
            if (Avx2.IsSupported && Fma.IsSupported) QuantGemvInt4.GemvX4(w, m, act, bias, y, ldy, n0, n1);
            else GemvIntegerReference(w, m, act, bias, y, ldy, n0, n1);
            return;
        }
        if (w.Interleaved != null)
        {
            if (AvxVnni.IsSupported && n0 < n1 && m > 0) GemvInt8X4(w, m, act, bias, y, ldy, n0, n1);
            else GemvIntegerReference(w, m, act, bias, y, ldy, n0, n1);
            return;
        }
        if (w.Int4 && QuantGemvInt4.Preferred(w)) { QuantGemvInt4.Gemv(w, m, act, bias, y, ldy, n0, n1); return; }
        if (Avx2.IsSupported && Fma.IsSupported) GemvIntegerRowsAvx2(w, m, act, bias, y, ldy, n0, n1);
        else GemvIntegerReference(w, m, act, bias, y, ldy, n0, n1);
    }

    /// <summary>Scalar twin of <see cref="GemvInteger"/> (same integer sums, float accumulation per block).</summary>
    public static void GemvIntegerReference(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int n0, int n1)
    {
        int k = w.K, blocks = k / Block, bpg = w.GroupLength / Block;
        sbyte* xq = (sbyte*)act;
        float* dx = BlockScales(act, m, k);
        float* xs = dx + (long)m * blocks;
        for (int j = n0; j < n1; j++)
        {
            byte* row = w.RowStart(j);
            for (int i = 0; i < m; i++)
            {
                sbyte* xr = xq + (long)i * k;
                float acc = 0, corr = 0;
                for (int g = 0; g < w.Groups; g++)
                {
                    float s = w.Scale(j, g);
                    for (int b = g * bpg; b < (g + 1) * bpg; b++)
                    {
                        int isum = 0;
                        for (int t = 0; t < Block; t++)
                        {
                            int c = b * Block + t;
                            isum += StoredValue(w, j, row, c) * xr[ActivationPosition(c, blocks, w.Int4)];
                        }
                        acc += isum * (dx[(long)i * blocks + b] * s);
                    }
                    corr += s * w.ZeroOffset(j, g) * xs[(long)i * w.Groups + g];
                }
                y[(long)i * ldy + j] = acc - corr + (bias != null ? bias[j] : 0f);
            }
        }
    }

    // The value the integer kernels multiply: int8 sym q, int8 asym q − 128, int4 the raw nibble (row: RowStart of row j).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int StoredValue(in QuantMatrix w, int j, byte* row, int c)
    {
        if (!w.Int4)
        {
            byte q = row[(long)(c >> 5) * w.BlockStride + (c & 31)];
            return w.Symmetric ? (sbyte)q : q - 128;
        }
        int t = c & 31;
        byte b = w.Int4Block(j, c >> 5)[t & 15];
        return t < 16 ? b & 15 : b >> 4;
    }

    // Software prefetch distance in bytes ahead of a pass's first row: 8 rows for rows under 1 KiB, 4 rows (one pass)
    // for longer rows. A pass reads its four rows interleaved, which the hardware stream prefetcher follows poorly
    // (single-thread DRAM-cold GEMV 6.6 GB/s without, 13–14 GB/s with); each pass prefetches the contiguous bytes that
    // far ahead at four times the rate it walks its own rows.
    internal static nint PrefetchAhead(int rowBytes) => (nint)rowBytes * (rowBytes >= 1024 ? PassRows : 2 * PassRows);

    /// <summary>Output rows one pass of the AVX2 GEMV computes together (each activation load serves all of them).</summary>
    private const int PassRows = 4;

    /// <summary>Blocks whose combined scales s_b·dx_b a pass stages at once (int4: 8 floats per block pair and row, 8 KiB).</summary>
    private const int ScaleChunk = 128;

    /// <summary>Groups per row up to which a GEMV pass converts F16 scales into a stack buffer (4 rows: 16 KiB).</summary>
    private const int StackScaleGroups = 1024;

    // Type arguments that make a kernel's zero-point handling a JIT-time constant (value-type generics are compiled per
    // instantiation, so `typeof(T) == typeof(Asym)` folds and the untaken branches vanish from the loops).
    private struct Sym { }
    private struct Asym { }
    // int8 through AVX-VNNI (vpdpbusd on unsigned bytes: the zero-point term uses z, or 128 when symmetric).
    private struct VSym { }
    private struct VAsym { }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsAsym<T>() where T : struct => typeof(T) == typeof(Asym) || typeof(T) == typeof(VAsym);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsVnni<T>() where T : struct => typeof(T) == typeof(VSym) || typeof(T) == typeof(VAsym);

    /// <summary>
    /// Whether the int8 decode GEMV multiplies with AVX-VNNI (vpdpbusd: one instruction per 32 bytes and row instead of
    /// the sign trick's four): the four-row pass of groups longer than one block (per channel, g64, g128: 1.13–1.19× its
    /// cache-resident rate on Zen 5, session 9) and, at groups of one block (Q8_0) with rows up to <see cref="PairMaxK"/>,
    /// the two-row pair loop instead of the AVX2 one-row loop (session 10). AvxVnni.IsSupported (DOTNET_EnableAVXVNNI=0
    /// turns it off). Settable for in-process A/B benchmarks; tests pass the path to <see cref="GemvIntegerRowsAvx2"/>.
    /// </summary>
    internal static bool Int8Vnni { get; set; } = AvxVnni.IsSupported;

    // Dispatch to one specialised kernel per format. Each kernel is a small non-inlined method whose inner loop sees only
    // locals (row pointers, one offset, four accumulators): one large method with all formats inlined (session 4, 21 KB
    // of code) made the JIT keep the four accumulators on the stack across the loop back edge — a store and a reload
    // on every FMA chain per block, half the single-thread rate of the session-3 loops.
    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    internal static void GemvIntegerRowsAvx2(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int n0, int n1, bool? vnni = null, int? pairMaxK = null)
    {
        if (n0 >= n1 || m <= 0) return;
        bool v = vnni ?? Int8Vnni;
        if ((v || w.Interleaved != null) && !AvxVnni.IsSupported) throw new NotSupportedException("the VNNI path (and the interleaved layout's kernel) needs AvxVnni");
        if (w.Interleaved != null) { GemvInt8X4(w, m, act, bias, y, ldy, n0, n1); return; }
        int bpg = w.GroupLength / Block;
        if (bpg == 1)
        {
            if (w.Int4) { if (w.Symmetric) GemvInt4Blocks<Sym>(w, m, act, bias, y, ldy, n0, n1); else GemvInt4Blocks<Asym>(w, m, act, bias, y, ldy, n0, n1); }
            else if (v && w.K <= (pairMaxK ?? PairMaxK)) { if (w.Symmetric) GemvInt8Pairs<VSym>(w, m, act, bias, y, ldy, n0, n1); else GemvInt8Pairs<VAsym>(w, m, act, bias, y, ldy, n0, n1); }
            else if (w.Symmetric) GemvInt8Row<Sym>(w, m, act, bias, y, ldy, n0, n1);
            else GemvInt8Row<Asym>(w, m, act, bias, y, ldy, n0, n1);
            return;
        }
        // Longer groups read float scale rows: F32 in place, F16 converted for the pass's four rows into sb.
        int groups = w.Groups;
        bool half = w.ScalesF16 != null;
        float* sb = stackalloc float[half && groups <= StackScaleGroups ? PassRows * groups : 0];
        if (half && groups > StackScaleGroups) sb = (float*)NativeMemory.Alloc((nuint)(PassRows * groups), sizeof(float));
        try
        {
            if (w.Int4) GemvInt4Groups(w, m, act, bias, y, ldy, n0, n1, sb);
            else if (v) { if (w.Symmetric) GemvInt8Groups<VSym>(w, m, act, bias, y, ldy, n0, n1, sb); else GemvInt8Groups<VAsym>(w, m, act, bias, y, ldy, n0, n1, sb); }
            else if (w.Symmetric) GemvInt8Groups<Sym>(w, m, act, bias, y, ldy, n0, n1, sb);
            else GemvInt8Groups<Asym>(w, m, act, bias, y, ldy, n0, n1, sb);
        }
        finally
        {
            if (half && groups > StackScaleGroups) NativeMemory.Free(sb);
        }
    }

    // Row r of a pass starting at j, clamped to the last valid row (a short last pass repeats it, stores only valid ones).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static long PassRow(int j, int r, int n1) => Math.Min(j + r, n1 - 1);

    // [Σa0 Σa1 Σa2 Σa3] − corr + bias into y[j .. j + valid).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StorePass(Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3, Vector128<float> corr,
        float* bias, float* yr, int j, int valid)
    {
        // hadd pairs within 128-bit lanes, then add the two lanes
        var h = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
        StoreSums(Sse.Subtract(Sse.Add(h.GetLower(), h.GetUpper()), corr), bias, yr, j, valid);
    }

    // A pass's four row sums + bias into y[j .. j + valid) (a short last pass stores only its valid rows).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void StoreSums(Vector128<float> sum, float* bias, float* yr, int j, int valid)
    {
        if (valid == PassRows)
        {
            if (bias != null) sum = Sse.Add(sum, Sse.LoadVector128(bias + j));
            Sse.Store(yr, sum);
        }
        else
            for (int t = 0; t < valid; t++) yr[t] = sum.GetElement(t) + (bias != null ? bias[j + t] : 0f);
    }

    // Zero-point kinds of the staging step: the constant subtracted from each stored value as the kernels read it.
    private const int OffNone = 0, OffZMinus128 = 1, OffEight = 2, OffZ = 3, Off128 = 4;

    // Staging for groups of one block, one row: ds gets the combined scales s_b·dx_b of blocks [b0, b0 + nb) — one float
    // per block (int8) or, when pairs, the vector [s_b·dx_b ×4 | s_b+1·dx_b+1 ×4] per block pair that the int4 pair dot's
    // lanes are multiplied by (no permute in the loop). Returns the zero-point term Σ_b s_b·off_b·xs_b as 8 lanes to
    // subtract from the row's accumulator (off per kind; xs_b = dx_b·Σq_b from the activation quantization). The F16
    // scales are converted once here, never in the loop.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> StageBlocks(float* sc, ushort* sh, byte* z, long rowOff, float* dx, float* xs, int b0, int nb, float* ds, int kind, bool pairs)
    {
        // the row's scales and zero points (sc or sh is null; z is null when symmetric)
        if (sh != null) sh += rowOff; else sc += rowOff;
        if (kind == OffZ || kind == OffZMinus128) z += rowOff;
        var c = Vector256<float>.Zero;
        float cs = 0;
        int t = 0;
        for (; t + 8 <= nb; t += 8)
        {
            int b = b0 + t;
            var s = sh != null ? LoadHalf8(sh + b) : Avx.LoadVector256(sc + b);
            var d = Avx.Multiply(s, Avx.LoadVector256(dx + b));
            if (pairs)
            {
                Avx.Store(ds + 4 * t, Avx2.PermuteVar8x32(d, Vector256.Create(0, 0, 0, 0, 1, 1, 1, 1)));
                Avx.Store(ds + 4 * t + 8, Avx2.PermuteVar8x32(d, Vector256.Create(2, 2, 2, 2, 3, 3, 3, 3)));
                Avx.Store(ds + 4 * t + 16, Avx2.PermuteVar8x32(d, Vector256.Create(4, 4, 4, 4, 5, 5, 5, 5)));
                Avx.Store(ds + 4 * t + 24, Avx2.PermuteVar8x32(d, Vector256.Create(6, 6, 6, 6, 7, 7, 7, 7)));
            }
            else Avx.Store(ds + t, d);
            if (kind is OffEight or Off128) c = Fma.MultiplyAdd(s, Avx.LoadVector256(xs + b), c);
            else if (kind != OffNone)
            {
                var zi = Avx2.ConvertToVector256Int32(z + b);
                if (kind == OffZMinus128) zi = Avx2.Subtract(zi, Vector256.Create(128));
                c = Fma.MultiplyAdd(Avx.Multiply(s, Avx.ConvertToVector256Single(zi)), Avx.LoadVector256(xs + b), c);
            }
        }
        for (; t < nb; t++)
        {
            int b = b0 + t;
            float s = sh != null ? HalfToSingle(sh[b]) : sc[b], d = s * dx[b];
            if (pairs) { float* p = ds + (t >> 1) * 8 + (t & 1) * 4; p[0] = d; p[1] = d; p[2] = d; p[3] = d; }
            else ds[t] = d;
            if (kind is OffEight or Off128) cs += s * xs[b];
            else if (kind == OffZ) cs += s * z[b] * xs[b];
            else if (kind == OffZMinus128) cs += s * (z[b] - 128) * xs[b];
        }
        if (kind == OffNone) return c;
        if (kind == OffEight) return Avx.Multiply(Avx.Add(c, Vector256.CreateScalar(cs)), Vector256.Create(8f));
        if (kind == Off128) return Avx.Multiply(Avx.Add(c, Vector256.CreateScalar(cs)), Vector256.Create(128f));
        return Avx.Add(c, Vector256.CreateScalar(cs));
    }

    // Int8 weights with groups of one block, one output row at a time: the row's bytes are one sequential stream (the
    // four-row pass reads four 2 KiB streams interleaved at K = 2048), the activation block is reloaded per row from L1.
    // Software prefetcht0 4 KiB ahead in the row stream (without it the arithmetic waits on L2: session 8). Session 8
    // measured this 1.09–1.22× the four-row pass (retired in session 9) streaming from DRAM.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static void GemvInt8Row<TAsym>(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int n0, int n1) where TAsym : struct
    {
        bool asym = typeof(TAsym) == typeof(Asym);
        int k = w.K, blocks = k / Block;
        byte* data = w.Data, zeros = w.Zeros;
        float* sc = w.Scales;
        ushort* sh = w.ScalesF16;
        sbyte* xq = (sbyte*)act;
        float* dx = BlockScales(act, m, k);
        float* xs = dx + (long)m * blocks;
        float* ds = stackalloc float[ScaleChunk];
        const int ahead = 4096;
        int kind = asym ? OffZMinus128 : OffNone;
        for (int j = n0; j < n1; j++)
        {
            byte* r = data + (long)j * k;
            for (int i = 0; i < m; i++)
            {
                sbyte* xr = xq + (long)i * k;
                float* dxi = dx + (long)i * blocks, xsi = xs + (long)i * blocks;
                Vector256<float> a = default;
                for (int b0 = 0; b0 < blocks; b0 += ScaleChunk)
                {
                    int nb = Math.Min(ScaleChunk, blocks - b0);
                    a = Avx.Subtract(a, StageBlocks(sc, sh, zeros, (long)j * blocks, dxi, xsi, b0, nb, ds, kind, false));
                    nint o0 = (nint)b0 * Block;
                    a = Int8RowRun<TAsym>(r + o0, xr + o0, ds, r + o0 + ahead, nb, a);
                }
                // one row's horizontal sum, ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)): the order GemvInt8Pairs uses
                var h = Avx.HorizontalAdd(Avx.HorizontalAdd(a, a), Avx.HorizontalAdd(a, a));
                float v = Sse.Add(h.GetLower(), h.GetUpper()).ToScalar();
                y[(long)i * ldy + j] = bias != null ? v + bias[j] : v;
            }
        }
    }

    // Int8 weights with groups of one block (Q8_0) through AVX-VNNI: two adjacent output rows at a time, so that each
    // activation load serves both (one vpxor with the weight load folded in, one vpdpbusd, one convert and one FMA per
    // block and row). Session 10: the one-row loop was bound by its instruction count, not by DRAM (cache-resident it
    // ran only 1.4–1.9× its own DRAM rate; VNNI or 4 FMA chains in it gained ~1.1×, int32 runs of 4 blocks with
    // telescoped scales and a phadd tree lost); the pair loop runs 2.0–2.7× the one-row loop's DRAM rate cache-resident,
    // and streamed from DRAM 1.10–1.19× (134M shapes, K = 768) and 1.03–1.07× (1b shapes) the one-row loop in paired
    // rounds (Int8StreamBench "kernel"/"avx2"). The pair's 2·K bytes are adjacent, so its two streams advance together
    // through one region; software prefetcht0 runs PairAhead bytes ahead of the pair at twice the rate of the row
    // offset (each row's own stream prefetched instead: 0.83×). Four rows per pass ran faster cache-resident (1.1×)
    // but 0.83–0.92× from DRAM at K = 2048. A last odd row runs as a pair of itself.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static void GemvInt8Pairs<TAsym>(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int n0, int n1) where TAsym : struct
    {
        bool asym = IsAsym<TAsym>();
        int k = w.K, blocks = k / Block;
        byte* data = w.Data, zeros = w.Zeros;
        float* sc = w.Scales;
        ushort* sh = w.ScalesF16;
        sbyte* xq = (sbyte*)act;
        float* dx = BlockScales(act, m, k);
        float* xs = dx + (long)m * blocks;
        float* ds = stackalloc float[2 * ScaleChunk];   // the pair's combined scales: row j at ds, row j + 1 at ds + ScaleChunk
        nint ahead = PairAhead(k);
        // the scale rows as bytes, prefetched as far ahead (in rows) as the weights: F16 (or F32 in older IRs)
        byte* scaleBytes = sh != null ? (byte*)sh : (byte*)sc;
        int scaleRowBytes = blocks * (sh != null ? 2 : 4);
        long scaleAheadRows = ahead / k;
        // vpdpbusd reads unsigned weight bytes: the zero-point term is z·Σx (asymmetric) or 128·Σx (symmetric: StageBlocks'
        // 8·Σ s·xs times 16, exact)
        int kind = asym ? OffZ : Off128;
        for (int j = n0; j < n1; j += 2)
        {
            long j1 = Math.Min(j + 1, n1 - 1);
            byte* r0 = data + (long)j * k, r1 = data + j1 * k;
            // the pair's scales ahead: a separate small stream the hardware prefetcher followed poorly (1.02–1.03×, session 10)
            byte* ps = scaleBytes + (j + scaleAheadRows) * scaleRowBytes;
            for (byte* t = (byte*)((nint)ps & ~(nint)63), te = ps + 2 * scaleRowBytes; t < te; t += 64) Sse.Prefetch0(t);
            for (int i = 0; i < m; i++)
            {
                sbyte* xr = xq + (long)i * k;
                float* dxi = dx + (long)i * blocks, xsi = xs + (long)i * blocks;
                Vector256<float> a0 = default, a1 = default;
                for (int b0 = 0; b0 < blocks; b0 += ScaleChunk)
                {
                    int nb = Math.Min(ScaleChunk, blocks - b0);
                    a0 = Avx.Subtract(a0, StageBlocks(sc, sh, zeros, (long)j * blocks, dxi, xsi, b0, nb, ds, kind, false));
                    a1 = Avx.Subtract(a1, StageBlocks(sc, sh, zeros, j1 * blocks, dxi, xsi, b0, nb, ds + ScaleChunk, kind, false));
                    nint o0 = (nint)b0 * Block;
                    a0 = Int8PairRun<TAsym>(r0 + o0, r1 + o0, xr + o0, ds, r0 + ahead + 2 * o0, nb, a0, ref a1);
                }
                // [Σa0, Σa1] in lanes 0 and 1 (each row's sum in StorePass's order)
                var h = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a0, a1));
                var v = Sse.Add(h.GetLower(), h.GetUpper());
                float* yr = y + (long)i * ldy;
                yr[j] = bias != null ? v.ToScalar() + bias[j] : v.ToScalar();
                if (j1 != j) yr[j1] = bias != null ? v.GetElement(1) + bias[j1] : v.GetElement(1);
            }
        }
    }

    /// <summary>Bytes of one block of a 4-row group in the interleaved layout: 4 F16 scales, then 4 × 32 int8 values.</summary>
    public const int X4BlockBytes = X4ScaleBytes + 4 * Block;

    /// <summary>Bytes of the 4 F16 scales at the head of an interleaved block.</summary>
    public const int X4ScaleBytes = 8;

    /// <summary>
    /// True when <paramref name="w"/> has an interleaved (x4) layout: symmetric int8 with groups of one block (Q8_0) and
    /// N a multiple of 4 (a ragged last group stays unpacked: no shape here has one). The layout stores F16 scales: F32
    /// ones (IRs exported before session 4) must be f16-exact, see <see cref="InterleaveX4"/>.
    /// </summary>
    public static bool X4Fits(in QuantMatrix w) =>
        !w.Int4 && w.Symmetric && w.GroupLength == Block && w.K % Block == 0 && w.N > 0 && w.N % 4 == 0;

    /// <summary>Bytes of the interleaved copy of an [<paramref name="n"/>, <paramref name="k"/>] Q8_0 matrix: the data plus its F16 scales.</summary>
    public static long X4Bytes(int n, int k) => (long)(n / 4) * (k / Block) * X4BlockBytes;

    /// <summary>
    /// Writes 4-row groups [<paramref name="g0"/>, <paramref name="g1"/>) of <paramref name="w"/> (which must fit
    /// <see cref="X4Fits"/>) into <paramref name="dst"/> in the interleaved layout (group g at g·blocks·X4BlockBytes);
    /// throws when a scale is not finite (the check the executor's bind does on the original) or, for F32 scales, not
    /// exactly a half.
    /// </summary>
    // Compiled models save this layout to disk (WeightCacheFile): bump WeightCacheFile.LayoutVersion whenever it changes,
    // or cache files written by an older runtime would be mapped as if they held the new layout.
    public static void InterleaveX4(in QuantMatrix w, byte* dst, int g0, int g1)
    {
        if (!X4Fits(w)) throw new ArgumentException("the matrix has no interleaved layout (see X4Fits)", nameof(w));
        if (dst == null) throw new ArgumentNullException(nameof(dst));
        if (g0 < 0 || g1 > w.N / 4 || g0 > g1) throw new ArgumentOutOfRangeException(nameof(g0), $"groups [{g0}, {g1}) outside [0, {w.N / 4})");
        int k = w.K, blocks = k / Block;
        for (int g = g0; g < g1; g++)
        {
            byte* o = dst + (long)g * blocks * X4BlockBytes;
            byte* r0 = w.Data + (long)g * 4 * k;
            long s0 = (long)g * 4 * blocks;
            for (int b = 0; b < blocks; b++, o += X4BlockBytes)
            {
                ushort* sh = (ushort*)o;
                for (int r = 0; r < 4; r++)
                {
                    long at = s0 + (long)r * blocks + b;
                    ushort h = w.ScalesF16 != null ? w.ScalesF16[at] : HalfBitsOf(w.Scales[at]);
                    if ((h & 0x7C00) == 0x7C00) throw new InvalidOperationException($"scale {at} of the matrix is not finite (or, F32, not a half); re-export the model");
                    sh[r] = h;
                    byte* src = r0 + (long)r * k + b * Block, d = o + X4ScaleBytes + r * Block;
                    if (Avx.IsSupported) Avx.Store(d, Avx.LoadVector256(src));
                    else Buffer.MemoryCopy(src, d, Block, Block);
                }
            }
        }
    }

    /// <summary>True when every F32 scale of <paramref name="w"/> is exactly a finite half (F16 scales: true).</summary>
    public static bool ScalesAreHalves(in QuantMatrix w)
    {
        if (w.ScalesF16 != null) return true;
        long count = (long)w.N * w.Groups;
        for (long i = 0; i < count; i++)
            if ((HalfBitsOf(w.Scales[i]) & 0x7C00) == 0x7C00) return false;
        return true;
    }

    // The half bits of an f16-exact finite float, or 0x7C00 (infinity: rejected) when it is not one.
    internal static ushort HalfBitsOf(float f)
    {
        var h = (Half)f;
        return (float)h == f && Half.IsFinite(h) ? BitConverter.HalfToUInt16Bits(h) : (ushort)0x7C00;
    }

    /// <summary>Bytes the interleaved GEMV prefetches ahead of the block it reads (the f32 GEMV's 8 KiB).</summary>
    private const int X4Ahead = 8192;

    // Q8_0 on the interleaved layout (session 11, llama.cpp's block_q8_0x4 repack): 4 output rows per pass, and their
    // data and scales are one sequential stream (the pair loop's two row streams plus a separate scale stream ran at 0.84
    // of the f32 GEMV's DRAM byte rate, this layout at 0.99 in Int8StreamBench "x4vpf"). Per block one activation load
    // serves the 4 rows: 4 × (vpxor, vpdpbusd, convert, FMA by s_r·dx_b). A range not aligned to 4 rows computes whole
    // groups and stores only its rows.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static void GemvInt8X4(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int n0, int n1)
    {
        int k = w.K, blocks = k / Block;
        long groupBytes = (long)blocks * X4BlockBytes;
        sbyte* xq = (sbyte*)act;
        float* dx = BlockScales(act, m, k);
        for (int j = n0 & ~3; j < n1; j += 4)
        {
            byte* g = w.Interleaved + (long)(j >> 2) * groupBytes;
            int lo = Math.Max(j, n0), hi = Math.Min(j + 4, n1);
            for (int i = 0; i < m; i++)
            {
                var sum = X4Run(g, xq + (long)i * k, dx + (long)i * blocks, blocks);
                float* yr = y + (long)i * ldy;
                if (lo == j && hi == j + 4) StoreSums(sum, bias, yr + j, j, 4);
                else for (int r = lo; r < hi; r++) yr[r] = sum.GetElement(r - j) + (bias != null ? bias[r] : 0f);
            }
        }
    }

    // One 4-row group of the interleaved layout against one activation row: [Σ row 0 .. Σ row 3] without bias. The
    // integer block sums are exact: vpdpbusd takes the weights as unsigned w + 128, and its accumulator starts at
    // −128·(the activation bytes' sum per lane), itself one vpdpbusd of 0x80 bytes shared by the 4 rows — so each lane
    // holds Σ w·x as the AVX2 sign trick computes it. (A float 128·Σx correction per row, as the pair loop subtracts,
    // cancels against a large sum: ~10× the sign trick's error when the activations have a large mean, enough to flip
    // a greedy token of the 1b model.) Four FMA chains (one per row); prefetcht0 X4Ahead bytes ahead, 3 lines per
    // 136-byte block.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static Vector128<float> X4Run(byte* g, sbyte* xr, float* dx, int nb)
    {
        var flip = Vector256.Create((byte)0x80);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int b = 0; b < nb; b++, g += X4BlockBytes, xr += Block)
        {
            Sse.Prefetch0(g + X4Ahead); Sse.Prefetch0(g + X4Ahead + 64); Sse.Prefetch0(g + X4Ahead + 128);
            var xv = Avx.LoadVector256(xr);
            var c = Avx2.Subtract(Vector256<int>.Zero, AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, flip, xv));
            var sc = Sse.Multiply(LoadHalf4((ushort*)g), Vector128.Create(dx[b]));
            a0 = Fma.MultiplyAdd(DotX4(c, Avx.LoadVector256(g + X4ScaleBytes), xv, flip), Avx2.BroadcastScalarToVector256(sc), a0);
            a1 = Fma.MultiplyAdd(DotX4(c, Avx.LoadVector256(g + X4ScaleBytes + Block), xv, flip), Avx2.BroadcastScalarToVector256(Sse.Shuffle(sc, sc, 0x55)), a1);
            a2 = Fma.MultiplyAdd(DotX4(c, Avx.LoadVector256(g + X4ScaleBytes + 2 * Block), xv, flip), Avx2.BroadcastScalarToVector256(Sse.Shuffle(sc, sc, 0xAA)), a2);
            a3 = Fma.MultiplyAdd(DotX4(c, Avx.LoadVector256(g + X4ScaleBytes + 3 * Block), xv, flip), Avx2.BroadcastScalarToVector256(Sse.Shuffle(sc, sc, 0xFF)), a3);
        }
        var h = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
        return Sse.Add(h.GetLower(), h.GetUpper());
    }

    // Σ w·x of one symmetric int8 block as 8 float lanes: vpdpbusd of the flipped (unsigned) bytes onto c = −128·Σx per lane.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> DotX4(Vector256<int> c, Vector256<byte> w, Vector256<sbyte> xv, Vector256<byte> flip) =>
        Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(c, Avx2.Xor(w, flip), xv));

    // Four F16 scales as floats (exact, see HalfToSingle): reads 8 bytes.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> LoadHalf4(ushort* p)
    {
        var v = Sse41.ConvertToVector128Int32(p);
        var f = Sse.Multiply(Sse2.ShiftLeftLogical(Sse2.And(v, Vector128.Create(0x7FFF)), 13).AsSingle(), Vector128.Create(Two112));
        return Sse.Or(f, Sse2.ShiftLeftLogical(Sse2.And(v, Vector128.Create(0x8000)), 16).AsSingle());
    }

    /// <summary>
    /// Longest row (K, bytes) that the Q8_0 decode GEMV runs in VNNI row pairs (<see cref="GemvInt8Pairs{TAsym}"/>); longer
    /// rows keep the AVX2 one-row loop. A pair of short rows is one ≤ 2 KiB region read front to back; at K ≥ 2048 the
    /// pair is two streams K bytes apart, and the whole-model decode of the 1b model (K = 2048/5632) measured 0.91–1.06×
    /// (median 0.98 over six alternating A/Bs; 0.95 on the quietest) while the 134M model's (K = 768) measured
    /// 0.96–1.17× (median 1.08 over nine; 1.11–1.17 with the host loaded, 0.98–1.03 quiet: the pairs save instructions,
    /// which pays when the cores are shared). Settable for in-process A/B benchmarks (HUB_BENCH_AB=pairmaxk=&lt;n&gt;).
    /// </summary>
    internal static int PairMaxK { get; set; } = 1024;

    // Prefetch distance of the pair loop in bytes ahead of a pair's first row: whole pairs, at least 8 KiB (the f32
    // GEMV's distance; 4 KiB measured slower at K = 2048, session 10).
    internal static nint PairAhead(int k) => 2 * (nint)k * ((8192 + 2 * k - 1) / (2 * k));

    // nb blocks of two int8 rows (r0, r1) against one activation row through AVX-VNNI: a += Σ_b dot0_b·ds[b] and
    // a1 += Σ_b dot1_b·ds[ScaleChunk + b], two FMA chains per row; prefetching two lines per 64 bytes of offset. The
    // second row's accumulator comes in and goes out by reference but lives in a register inside the loop.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static Vector256<float> Int8PairRun<TAsym>(byte* r0, byte* r1, sbyte* xr, float* d, byte* pf, int nb, Vector256<float> a, ref Vector256<float> a1) where TAsym : struct
    {
        bool asym = IsAsym<TAsym>();
        float* dEnd = d + (nb & ~1);
        nint o = 0;
        Vector256<float> b = default, c = a1, e = default;
        for (; d < dEnd; d += 2, o += 2 * Block)
        {
            Sse.Prefetch0(pf + 2 * o); Sse.Prefetch0(pf + 2 * o + 64);
            var x0 = Avx.LoadVector256(xr + o);
            var x1 = Avx.LoadVector256(xr + o + Block);
            a = Fma.MultiplyAdd(Dot8<TAsym>(Avx.LoadVector256(r0 + o), x0), Vector256.Create(d[0]), a);
            b = Fma.MultiplyAdd(Dot8<TAsym>(Avx.LoadVector256(r0 + o + Block), x1), Vector256.Create(d[1]), b);
            c = Fma.MultiplyAdd(Dot8<TAsym>(Avx.LoadVector256(r1 + o), x0), Vector256.Create(d[ScaleChunk]), c);
            e = Fma.MultiplyAdd(Dot8<TAsym>(Avx.LoadVector256(r1 + o + Block), x1), Vector256.Create(d[ScaleChunk + 1]), e);
        }
        if ((nb & 1) != 0)
        {
            var x0 = Avx.LoadVector256(xr + o);
            a = Fma.MultiplyAdd(Dot8<TAsym>(Avx.LoadVector256(r0 + o), x0), Vector256.Create(d[0]), a);
            c = Fma.MultiplyAdd(Dot8<TAsym>(Avx.LoadVector256(r1 + o), x0), Vector256.Create(d[ScaleChunk]), c);
        }
        a1 = Avx.Add(c, e);
        return Avx.Add(a, b);
    }

    // nb blocks of one int8 row against one activation row: a += Σ_b dot_b·ds[b], prefetching one line per 64 bytes. Two
    // FMA chains (even and odd blocks, added at the end): one chain waited on the FMA latency every 32 bytes, which
    // held the kernel's cache-resident rate barely above DRAM (session 8).
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static Vector256<float> Int8RowRun<TAsym>(byte* r, sbyte* xr, float* d, byte* pf, int nb, Vector256<float> a) where TAsym : struct
    {
        float* dEnd = d + (nb & ~1);
        nint o = 0;
        var b = Vector256<float>.Zero;
        for (; d < dEnd; d += 2, o += 2 * Block)
        {
            Sse.Prefetch0(pf + o);
            a = Fma.MultiplyAdd(Dot8<TAsym>(Avx.LoadVector256(r + o), Avx.LoadVector256(xr + o)), Vector256.Create(d[0]), a);
            b = Fma.MultiplyAdd(Dot8<TAsym>(Avx.LoadVector256(r + o + Block), Avx.LoadVector256(xr + o + Block)), Vector256.Create(d[1]), b);
        }
        if ((nb & 1) != 0) a = Fma.MultiplyAdd(Dot8<TAsym>(Avx.LoadVector256(r + o), Avx.LoadVector256(xr + o)), Vector256.Create(d[0]), a);
        return Avx.Add(a, b);
    }

    // BlockDot8 on loaded bytes. VNNI (VSym/VAsym): one vpdpbusd of the unsigned bytes — asymmetric q as stored,
    // symmetric w ^ 0x80 = w + 128 — against the signed activations; Int8Correction then subtracts z·Σx or 128·Σx.
    // AVX2: the sign trick into vpmaddubsw + vpmaddwd (asymmetric bytes flipped to signed q − 128 first).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Dot8<TAsym>(Vector256<byte> raw, Vector256<sbyte> xv) where TAsym : struct
    {
        bool asym = IsAsym<TAsym>();
        if (IsVnni<TAsym>())
            return Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, asym ? raw : Avx2.Xor(raw, Vector256.Create((byte)0x80)), xv));
        var wv = asym ? Avx2.Xor(raw, Vector256.Create((byte)0x80)).AsSByte() : raw.AsSByte();
        return Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(wv), Avx2.Sign(xv, wv)), Vector256.Create((short)1)));
    }

    // Int4 weights with groups of one block (Q4_0, or asym g32): a block pair (one 32-byte load per row) at a time, its
    // scale vector [s_b·dx_b ×4 | s_b+1·dx_b+1 ×4] staged per chunk (loaded as the FMA's memory operand); a trailing odd
    // block (K ≡ 32 mod 64) reads 16 bytes in natural order.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static void GemvInt4Blocks<TAsym>(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int n0, int n1) where TAsym : struct
    {
        bool asym = typeof(TAsym) == typeof(Asym);
        int k = w.K, blocks = k / Block, rowBytes = k / 2;
        byte* data = w.Data, zeros = w.Zeros;
        float* sc = w.Scales;
        ushort* sh = w.ScalesF16;
        sbyte* xq = (sbyte*)act;
        float* dx = BlockScales(act, m, k);
        float* xs = dx + (long)m * blocks;
        const int RowStage = ScaleChunk * 4;   // floats per row: 8 per block pair
        float* ds = stackalloc float[PassRows * RowStage];
        nint ahead = PrefetchAhead(rowBytes);
        int kind = asym ? OffZ : OffEight;
        for (int j = n0; j < n1; j += PassRows)
        {
            long j0 = j, j1 = PassRow(j, 1, n1), j2 = PassRow(j, 2, n1), j3 = PassRow(j, 3, n1);
            byte* r0 = data + j0 * rowBytes, r1 = data + j1 * rowBytes, r2 = data + j2 * rowBytes, r3 = data + j3 * rowBytes;
            byte* pf = r0 + ahead;
            for (int i = 0; i < m; i++)
            {
                sbyte* xr = xq + (long)i * k;
                float* dxi = dx + (long)i * blocks, xsi = xs + (long)i * blocks;
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (int b0 = 0; b0 < blocks; b0 += ScaleChunk)
                {
                    int nb = Math.Min(ScaleChunk, blocks - b0);
                    a0 = Avx.Subtract(a0, StageBlocks(sc, sh, zeros, j0 * blocks, dxi, xsi, b0, nb, ds, kind, true));
                    a1 = Avx.Subtract(a1, StageBlocks(sc, sh, zeros, j1 * blocks, dxi, xsi, b0, nb, ds + RowStage, kind, true));
                    a2 = Avx.Subtract(a2, StageBlocks(sc, sh, zeros, j2 * blocks, dxi, xsi, b0, nb, ds + 2 * RowStage, kind, true));
                    a3 = Avx.Subtract(a3, StageBlocks(sc, sh, zeros, j3 * blocks, dxi, xsi, b0, nb, ds + 3 * RowStage, kind, true));
                    float* d = ds;
                    // o: packed-byte offset of the pair (16 bytes per block); activations sit at 2·o
                    nint o = (nint)b0 * 16, end = o + (nint)(nb & ~1) * 16;
                    for (; o < end; o += 32, d += 8)
                    {
                        Sse.Prefetch0(pf + 4 * o); Sse.Prefetch0(pf + 4 * o + 64);
                        var xa = Avx.LoadVector256(xr + 2 * o); var xb = Avx.LoadVector256(xr + 2 * o + 32);
                        a0 = Fma.MultiplyAdd(PairDot4(r0 + o, xa, xb), Avx.LoadVector256(d), a0);
                        a1 = Fma.MultiplyAdd(PairDot4(r1 + o, xa, xb), Avx.LoadVector256(d + RowStage), a1);
                        a2 = Fma.MultiplyAdd(PairDot4(r2 + o, xa, xb), Avx.LoadVector256(d + 2 * RowStage), a2);
                        a3 = Fma.MultiplyAdd(PairDot4(r3 + o, xa, xb), Avx.LoadVector256(d + 3 * RowStage), a3);
                    }
                    if ((nb & 1) != 0)
                    {
                        // the trailing odd block: its scale sits in the first half of the next pair slot
                        var xv = Avx.LoadVector256(xr + 2 * o);
                        a0 = Fma.MultiplyAdd(TailDot4(r0 + o, xv), Vector256.Create(d[0]), a0);
                        a1 = Fma.MultiplyAdd(TailDot4(r1 + o, xv), Vector256.Create(d[RowStage]), a1);
                        a2 = Fma.MultiplyAdd(TailDot4(r2 + o, xv), Vector256.Create(d[2 * RowStage]), a2);
                        a3 = Fma.MultiplyAdd(TailDot4(r3 + o, xv), Vector256.Create(d[3 * RowStage]), a3);
                    }
                }
                StorePass(a0, a1, a2, a3, Vector128<float>.Zero, bias, y + (long)i * ldy + j, j, Math.Min(PassRows, n1 - j));
            }
        }
    }

    // Float scale rows of the pass starting at row j (groups of several blocks): F32 in place, F16 converted once per
    // pass into sb — the four rows' halves are contiguous, so one vector conversion covers them (at K = 768, g128 a
    // row has only 6 groups: converted row by row they would all go through the scalar tail).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PassScales(float* sc, ushort* sh, int j, int n1, int groups, float* sb, float** s0, float** s1, float** s2, float** s3)
    {
        long j1 = PassRow(j, 1, n1), j2 = PassRow(j, 2, n1), j3 = PassRow(j, 3, n1);
        if (sh == null)
        {
            *s0 = sc + (long)j * groups; *s1 = sc + j1 * groups; *s2 = sc + j2 * groups; *s3 = sc + j3 * groups;
            return;
        }
        if (j + PassRows <= n1) HalfToSingle(sh + (long)j * groups, sb, PassRows * groups);
        else
        {
            HalfToSingle(sh + (long)j * groups, sb, groups); HalfToSingle(sh + j1 * groups, sb + groups, groups);
            HalfToSingle(sh + j2 * groups, sb + 2 * groups, groups); HalfToSingle(sh + j3 * groups, sb + 3 * groups, groups);
        }
        *s0 = sb; *s1 = sb + groups; *s2 = sb + 2 * groups; *s3 = sb + 3 * groups;
    }

    // Int8 weights with groups of several blocks (per channel, g64, g128, ...): per group Σ dx_b·dot_b (one dx broadcast
    // per block for the four rows), scaled once at the group's end; the zero-point term once per row and pass.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static void GemvInt8Groups<TAsym>(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int n0, int n1, float* sb) where TAsym : struct
    {
        bool asym = IsAsym<TAsym>(), vnni = IsVnni<TAsym>();
        int k = w.K, blocks = k / Block, groups = w.Groups, bpg = w.GroupLength / Block;
        byte* data = w.Data, zeros = w.Zeros;
        float* sc = w.Scales;
        ushort* sh = w.ScalesF16;
        sbyte* xq = (sbyte*)act;
        float* dx = BlockScales(act, m, k);
        float* xs = dx + (long)m * blocks;
        nint ahead = PrefetchAhead(k);
        for (int j = n0; j < n1; j += PassRows)
        {
            long j0 = j, j1 = PassRow(j, 1, n1), j2 = PassRow(j, 2, n1), j3 = PassRow(j, 3, n1);
            byte* r0 = data + j0 * k, r1 = data + j1 * k, r2 = data + j2 * k, r3 = data + j3 * k;
            byte* pf = r0 + ahead;
            float* s0, s1, s2, s3;
            PassScales(sc, sh, j, n1, groups, sb, &s0, &s1, &s2, &s3);
            for (int i = 0; i < m; i++)
            {
                sbyte* xr = xq + (long)i * k;
                float* dxi = dx + (long)i * blocks;
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                nint o = 0;
                for (int g = 0; g < groups; g++)
                {
                    Vector256<float> t0 = default, t1 = default, t2 = default, t3 = default;
                    float* d = dxi + g * bpg;
                    for (nint end = o + (nint)bpg * Block; o < end; o += Block, d++)
                    {
                        Sse.Prefetch0(pf + 4 * o); Sse.Prefetch0(pf + 4 * o + 64);
                        var xv = Avx.LoadVector256(xr + o);
                        var dv = Vector256.Create(d[0]);
                        t0 = Fma.MultiplyAdd(BlockDot8<TAsym>(r0 + o, xv), dv, t0);
                        t1 = Fma.MultiplyAdd(BlockDot8<TAsym>(r1 + o, xv), dv, t1);
                        t2 = Fma.MultiplyAdd(BlockDot8<TAsym>(r2 + o, xv), dv, t2);
                        t3 = Fma.MultiplyAdd(BlockDot8<TAsym>(r3 + o, xv), dv, t3);
                    }
                    a0 = Fma.MultiplyAdd(t0, Vector256.Create(s0[g]), a0);
                    a1 = Fma.MultiplyAdd(t1, Vector256.Create(s1[g]), a1);
                    a2 = Fma.MultiplyAdd(t2, Vector256.Create(s2[g]), a2);
                    a3 = Fma.MultiplyAdd(t3, Vector256.Create(s3[g]), a3);
                }
                var corr = Vector128<float>.Zero;
                if (asym || vnni)
                {
                    float* xsi = xs + (long)i * groups;
                    corr = Vector128.Create(Int8Correction<TAsym>(s0, zeros + j0 * groups, xsi, groups),
                        Int8Correction<TAsym>(s1, zeros + j1 * groups, xsi, groups),
                        Int8Correction<TAsym>(s2, zeros + j2 * groups, xsi, groups),
                        Int8Correction<TAsym>(s3, zeros + j3 * groups, xsi, groups));
                }
                StorePass(a0, a1, a2, a3, corr, bias, y + (long)i * ldy + j, j, Math.Min(PassRows, n1 - j));
            }
        }
    }

    // Int4 weights with groups of several blocks (g64, g128, ...): per group Σ dx·dot over its block pairs, scaled once
    // at its end; groups of an odd block count (a pair may straddle two groups) scale per pair; a trailing odd block
    // reads 16 bytes in natural order.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static void GemvInt4Groups(in QuantMatrix w, int m, byte* act, float* bias, float* y, int ldy, int n0, int n1, float* sb)
    {
        bool sym = w.Symmetric;
        int k = w.K, blocks = k / Block, groups = w.Groups, bpg = w.GroupLength / Block, rowBytes = k / 2, even = blocks & ~1;
        byte* data = w.Data, zeros = w.Zeros;
        float* sc = w.Scales;
        ushort* sh = w.ScalesF16;
        sbyte* xq = (sbyte*)act;
        float* dx = BlockScales(act, m, k);
        float* xs = dx + (long)m * blocks;
        nint ahead = PrefetchAhead(rowBytes);
        for (int j = n0; j < n1; j += PassRows)
        {
            long j0 = j, j1 = PassRow(j, 1, n1), j2 = PassRow(j, 2, n1), j3 = PassRow(j, 3, n1);
            byte* r0 = data + j0 * rowBytes, r1 = data + j1 * rowBytes, r2 = data + j2 * rowBytes, r3 = data + j3 * rowBytes;
            byte* pf = r0 + ahead;
            float* s0, s1, s2, s3;
            PassScales(sc, sh, j, n1, groups, sb, &s0, &s1, &s2, &s3);
            for (int i = 0; i < m; i++)
            {
                sbyte* xr = xq + (long)i * k;
                float* dxi = dx + (long)i * blocks;
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                int b = 0;
                if ((bpg & 1) == 0)
                    for (int g = 0; b < even; g++)
                    {
                        Vector256<float> t0 = default, t1 = default, t2 = default, t3 = default;
                        for (int be = b + bpg; b < be; b += 2)
                        {
                            nint o = (nint)b * 16;
                            Sse.Prefetch0(pf + 4 * o); Sse.Prefetch0(pf + 4 * o + 64);
                            var xa = Avx.LoadVector256(xr + 2 * o); var xb = Avx.LoadVector256(xr + 2 * o + 32);
                            var d = PairBroadcast(dxi + b);
                            t0 = Fma.MultiplyAdd(PairDot4(r0 + o, xa, xb), d, t0);
                            t1 = Fma.MultiplyAdd(PairDot4(r1 + o, xa, xb), d, t1);
                            t2 = Fma.MultiplyAdd(PairDot4(r2 + o, xa, xb), d, t2);
                            t3 = Fma.MultiplyAdd(PairDot4(r3 + o, xa, xb), d, t3);
                        }
                        a0 = Fma.MultiplyAdd(t0, Vector256.Create(s0[g]), a0);
                        a1 = Fma.MultiplyAdd(t1, Vector256.Create(s1[g]), a1);
                        a2 = Fma.MultiplyAdd(t2, Vector256.Create(s2[g]), a2);
                        a3 = Fma.MultiplyAdd(t3, Vector256.Create(s3[g]), a3);
                    }
                else
                    for (; b < even; b += 2)
                    {
                        nint o = (nint)b * 16;
                        int ga = b / bpg, gb = (b + 1) / bpg;
                        Sse.Prefetch0(pf + 4 * o); Sse.Prefetch0(pf + 4 * o + 64);
                        var xa = Avx.LoadVector256(xr + 2 * o); var xb = Avx.LoadVector256(xr + 2 * o + 32);
                        var d = PairBroadcast(dxi + b);
                        a0 = Fma.MultiplyAdd(PairDot4(r0 + o, xa, xb), Avx.Multiply(d, Vector256.Create(Vector128.Create(s0[ga]), Vector128.Create(s0[gb]))), a0);
                        a1 = Fma.MultiplyAdd(PairDot4(r1 + o, xa, xb), Avx.Multiply(d, Vector256.Create(Vector128.Create(s1[ga]), Vector128.Create(s1[gb]))), a1);
                        a2 = Fma.MultiplyAdd(PairDot4(r2 + o, xa, xb), Avx.Multiply(d, Vector256.Create(Vector128.Create(s2[ga]), Vector128.Create(s2[gb]))), a2);
                        a3 = Fma.MultiplyAdd(PairDot4(r3 + o, xa, xb), Avx.Multiply(d, Vector256.Create(Vector128.Create(s3[ga]), Vector128.Create(s3[gb]))), a3);
                    }
                if (b < blocks)
                {
                    nint o = (nint)b * 16;
                    int g = b / bpg;
                    var xv = Avx.LoadVector256(xr + 2 * o);
                    var d = Vector256.Create(dxi[b]);
                    a0 = Fma.MultiplyAdd(TailDot4(r0 + o, xv), Avx.Multiply(d, Vector256.Create(s0[g])), a0);
                    a1 = Fma.MultiplyAdd(TailDot4(r1 + o, xv), Avx.Multiply(d, Vector256.Create(s1[g])), a1);
                    a2 = Fma.MultiplyAdd(TailDot4(r2 + o, xv), Avx.Multiply(d, Vector256.Create(s2[g])), a2);
                    a3 = Fma.MultiplyAdd(TailDot4(r3 + o, xv), Avx.Multiply(d, Vector256.Create(s3[g])), a3);
                }
                float* xsi = xs + (long)i * groups;
                var corr = Vector128.Create(Correction(s0, null, sym ? null : zeros + j0 * groups, xsi, groups, true, sym),
                    Correction(s1, null, sym ? null : zeros + j1 * groups, xsi, groups, true, sym),
                    Correction(s2, null, sym ? null : zeros + j2 * groups, xsi, groups, true, sym),
                    Correction(s3, null, sym ? null : zeros + j3 * groups, xsi, groups, true, sym));
                StorePass(a0, a1, a2, a3, corr, bias, y + (long)i * ldy + j, j, Math.Min(PassRows, n1 - j));
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float ScaleAt(float* s, ushort* h, int g) => h != null ? HalfToSingle(h[g]) : s[g];

    // Eight F16 scales as floats (exact, see HalfToSingle).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> LoadHalf8(ushort* p)
    {
        var v = Avx2.ConvertToVector256Int32(p);
        var f = Avx.Multiply(Avx2.ShiftLeftLogical(Avx2.And(v, Vector256.Create(0x7FFF)), 13).AsSingle(), Vector256.Create(Two112));
        return Avx.Or(f, Avx2.ShiftLeftLogical(Avx2.And(v, Vector256.Create(0x8000)), 16).AsSingle());
    }

    // Σ(q·x) of one int8 block as 8 float lanes: sign trick |w|·sign(x, w) (asymmetric bytes flipped to signed first).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockDot8<TAsym>(byte* p, Vector256<sbyte> xv) where TAsym : struct
        => Dot8<TAsym>(Avx.LoadVector256(p), xv);

    // Σ(nibble·x) of one block pair (32 packed bytes, activations in nibble-pair order): lanes 0–3 block b, 4–7 block b+1.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> PairDot4(byte* p, Vector256<sbyte> xa, Vector256<sbyte> xb)
    {
        var low4 = Vector256.Create((byte)0x0F);
        var r = Avx.LoadVector256(p);
        var s = Avx2.Add(Avx2.MultiplyAddAdjacent(Avx2.And(r, low4), xa),
                         Avx2.MultiplyAddAdjacent(Avx2.And(Avx2.ShiftRightLogical(r.AsUInt16(), 4).AsByte(), low4), xb));
        return Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(s, Vector256.Create((short)1)));
    }

    // [v[0] ×4 | v[1] ×4] from two consecutive floats.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> PairBroadcast(float* v) =>
        Avx2.PermuteVar8x32(Sse2.LoadScalarVector128((double*)v).AsSingle().ToVector256Unsafe(), Vector256.Create(0, 0, 0, 0, 1, 1, 1, 1));

    // Σ(nibble·x) of one natural-order int4 block (16 packed bytes).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> TailDot4(byte* p, Vector256<sbyte> xv)
    {
        var l = Vector128.Create((byte)0x0F);
        var r = Sse2.LoadVector128(p);
        var wv = Vector256.Create(Sse2.And(r, l), Sse2.And(Sse2.ShiftRightLogical(r.AsUInt16(), 4).AsByte(), l));
        return Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(wv, xv), Vector256.Create((short)1)));
    }

    // Σ_g s_g·off_g·Σx_g (the zero-point term, vectorized over groups): int4 sym off = 8, int4 asym z, int8 asym z − 128.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Correction(float* sc, byte* zr, float* xs, int groups, bool int4, bool sym) =>
        Correction(sc, null, zr, xs, groups, int4, sym);

    // The int8 zero-point term Σ_g s_g·off_g·Σx_g of the longer-group kernels: AVX2 off = z − 128 (asymmetric only);
    // VNNI off = z, or 128 when symmetric (int4's sym term 8·Σ s·xs times 16: exact).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Int8Correction<TAsym>(float* sc, byte* zr, float* xs, int groups) where TAsym : struct
    {
        if (!IsVnni<TAsym>()) return Correction(sc, null, zr, xs, groups, false, false);
        return IsAsym<TAsym>() ? Correction(sc, null, zr, xs, groups, true, false) : 16f * Correction(sc, null, null, xs, groups, true, true);
    }

    // As above with the scales as float (sc) or F16 bits (sh, when not null).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Correction(float* sc, ushort* sh, byte* zr, float* xs, int groups, bool int4, bool sym)
    {
        if (sym && !int4) return 0;
        int g = 0;
        var acc = Vector256<float>.Zero;
        float s = 0;
        if (sym)
        {
            for (; g + 8 <= groups; g += 8) acc = Fma.MultiplyAdd(sh != null ? LoadHalf8(sh + g) : Avx.LoadVector256(sc + g), Avx.LoadVector256(xs + g), acc);
            for (; g < groups; g++) s += ScaleAt(sc, sh, g) * xs[g];
            return 8f * (Vector256.Sum(acc) + s);
        }
        int zb = int4 ? 0 : 128;
        var zbv = Vector256.Create(zb);
        for (; g + 8 <= groups; g += 8)
        {
            var z = Avx.ConvertToVector256Single(Avx2.Subtract(Avx2.ConvertToVector256Int32(zr + g), zbv));
            acc = Fma.MultiplyAdd(Avx.Multiply(sh != null ? LoadHalf8(sh + g) : Avx.LoadVector256(sc + g), z), Avx.LoadVector256(xs + g), acc);
        }
        for (; g < groups; g++) s += ScaleAt(sc, sh, g) * (zr[g] - zb) * xs[g];
        return Vector256.Sum(acc) + s;
    }

    /// <summary>
    /// Float path for any shape: dequantizes each weight row into <paramref name="scratch"/> (K floats, stays in L1)
    /// and dots it with every activation row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void GemvFloat(in QuantMatrix w, float* x, int m, float* bias, float* y, int ldy, int n0, int n1, float* scratch)
    {
        int k = w.K;
        for (int j = n0; j < n1; j++)
        {
            DequantizeRow(w, j, scratch);
            for (int i = 0; i < m; i++)
                y[(long)i * ldy + j] = Dot(x + (long)i * k, scratch, k) + (bias != null ? bias[j] : 0f);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(float* a, float* b, int n)
    {
        int p = 0;
        float s = 0;
        if (Fma.IsSupported && n >= 16)
        {
            Vector256<float> a0 = default, a1 = default;
            for (; p <= n - 16; p += 16)
            {
                a0 = Fma.MultiplyAdd(Avx.LoadVector256(a + p), Avx.LoadVector256(b + p), a0);
                a1 = Fma.MultiplyAdd(Avx.LoadVector256(a + p + 8), Avx.LoadVector256(b + p + 8), a1);
            }
            s = Vector256.Sum(a0 + a1);
        }
        for (; p < n; p++) s += a[p] * b[p];
        return s;
    }

    /// <summary>Σ x per group of <paramref name="groupLength"/> for each of the <paramref name="m"/> rows: dst [m, k/groupLength].</summary>
    public static void GroupSums(float* x, int m, int k, int groupLength, float* dst)
    {
        int groups = k / groupLength;
        for (int i = 0; i < m; i++)
            for (int g = 0; g < groups; g++)
            {
                float s = 0;
                float* p = x + (long)i * k + (long)g * groupLength;
                for (int c = 0; c < groupLength; c++) s += p[c];
                dst[(long)i * groups + g] = s;
            }
    }

    /// <summary>
    /// Float GEMV that widens the stored bytes in registers (no activation rounding): AVX2 only, for K and groups
    /// that are multiples of 32; <paramref name="xsums"/> from <see cref="GroupSums"/>. Kept to compare with the
    /// integer path (HUB_QUANT_GEMV=float), which measured faster.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void GemvFloatRegisters(in QuantMatrix w, float* x, int m, float* xsums, float* bias, float* y, int ldy, int n0, int n1)
    {
        if (!Avx2.IsSupported || !Fma.IsSupported || w.K % 32 != 0 || w.GroupLength % 32 != 0)
            throw new NotSupportedException("GemvFloatRegisters needs AVX2+FMA and K, group multiples of 32");
        if (w.Interleaved != null) throw new NotSupportedException("GemvFloatRegisters reads the row-major layout; an interleaved matrix takes GemvInteger");
        int k = w.K, gl = w.GroupLength, groups = w.Groups, rowBytes = w.RowBytes;
        bool int4 = w.Int4, sym = w.Symmetric;
        var flip = !int4 && !sym ? Vector256.Create((byte)0x80) : Vector256<byte>.Zero;
        var low4 = Vector128.Create((byte)0x0F);
        float[]? sbuf = w.ScalesF16 != null ? new float[groups] : null;
        fixed (float* sb = sbuf)
        for (int j = n0; j < n1; j++)
        {
            byte* row = w.Data + (long)j * rowBytes;
            float* sc = w.RowScales(j, sb);
            byte* zr = w.Zeros + (long)j * groups;
            for (int i = 0; i < m; i++)
            {
                float* xr = x + (long)i * k;
                var acc = Vector256<float>.Zero;
                for (int g = 0; g < groups; g++)
                {
                    Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                    for (int c = g * gl; c < (g + 1) * gl; c += 32)
                    {
                        Vector128<sbyte> lo, hi;
                        if (int4)
                        {
                            var r = Sse2.LoadVector128(row + c / 2);
                            lo = Sse2.And(r, low4).AsSByte();
                            hi = Sse2.And(Sse2.ShiftRightLogical(r.AsUInt16(), 4).AsByte(), low4).AsSByte();
                        }
                        else
                        {
                            var r = Avx2.Xor(Avx.LoadVector256(row + c), flip);
                            lo = r.GetLower().AsSByte(); hi = r.GetUpper().AsSByte();
                        }
                        a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(lo)), Avx.LoadVector256(xr + c), a0);
                        a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(lo, 8))), Avx.LoadVector256(xr + c + 8), a1);
                        a2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(hi)), Avx.LoadVector256(xr + c + 16), a2);
                        a3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(hi, 8))), Avx.LoadVector256(xr + c + 24), a3);
                    }
                    acc = Fma.MultiplyAdd((a0 + a1) + (a2 + a3), Vector256.Create(sc[g]), acc);
                }
                float corr = Correction(sc, sym ? null : zr, xsums + (long)i * groups, groups, int4, sym);
                y[(long)i * ldy + j] = Vector256.Sum(acc) - corr + (bias != null ? bias[j] : 0f);
            }
        }
    }

    /// <summary>Weight rows one integer prefill GEMM unit takes (QuantGemmInt4 and QuantGemmInt8 work on 16-row units).</summary>
    public const int GemmRows = QuantGemmInt8.Rows;

    /// <summary>Dequantizes rows [r0, r1) into <paramref name="dst"/> [r1 − r0, K] (prefill panels, embedding rows).</summary>
    public static void DequantizeRows(in QuantMatrix w, int r0, int r1, float* dst)
    {
        for (int r = r0; r < r1; r++) DequantizeRow(w, r, dst + (long)(r - r0) * w.K);
    }

    /// <summary>Row <paramref name="row"/> of W as float32: (q − z)·s.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DequantizeRow(in QuantMatrix w, int row, float* dst)
    {
        if (w.Interleaved != null && w.Int4)
        {
            // the interleaved Q4_0 copy: symmetric (offset 8), one scale per block
            for (int b = 0; b < w.Groups; b++)
            {
                float s = w.Scale(row, b);
                byte* p = w.Int4Block(row, b);
                for (int t = 0; t < 16; t++)
                {
                    dst[b * Block + t] = ((p[t] & 15) - 8) * s;
                    dst[b * Block + 16 + t] = ((p[t] >> 4) - 8) * s;
                }
            }
            return;
        }
        if (w.Interleaved != null)
        {
            // the interleaved copy (the original's pages may be released): symmetric, one scale per block
            byte* r = w.RowStart(row);
            for (int b = 0; b < w.Groups; b++, r += X4BlockBytes)
            {
                float s = w.Scale(row, b);
                for (int t = 0; t < Block; t++) dst[b * Block + t] = (sbyte)r[t] * s;
            }
            return;
        }
        if (Avx2.IsSupported && w.GroupLength % 32 == 0 && w.K % 32 == 0) { DequantizeRowAvx2(w, row, dst); return; }
        DequantizeRowReference(w, row, dst);
    }

    /// <summary>Scalar twin of <see cref="DequantizeRow"/>.</summary>
    public static void DequantizeRowReference(in QuantMatrix w, int row, float* dst)
    {
        byte* data = w.RowStart(row);
        for (int g = 0; g < w.Groups; g++)
        {
            float s = w.Scale(row, g);
            int z = w.ZeroOffset(row, g);
            for (int c = g * w.GroupLength; c < (g + 1) * w.GroupLength; c++) dst[c] = (StoredValue(w, row, data, c) - z) * s;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DequantizeRowAvx2(in QuantMatrix w, int row, float* dst)
    {
        byte* data = w.Data + (long)row * w.RowBytes;
        var low4 = Vector128.Create((byte)0x0F);
        for (int g = 0; g < w.Groups; g++)
        {
            var s = Vector256.Create(w.Scale(row, g));
            int z = w.ZeroOffset(row, g);
            var zv = Vector256.Create(z);
            for (int c = g * w.GroupLength; c < (g + 1) * w.GroupLength; c += 32)
            {
                Vector128<sbyte> lo, hi;   // 16 + 16 values as signed bytes (int4 nibbles 0..15)
                if (w.Int4)
                {
                    var r = Sse2.LoadVector128(data + c / 2);
                    lo = Sse2.And(r, low4).AsSByte();
                    hi = Sse2.And(Sse2.ShiftRightLogical(r.AsUInt16(), 4).AsByte(), low4).AsSByte();
                }
                else
                {
                    var r = Avx.LoadVector256(data + c);
                    if (!w.Symmetric) r = Avx2.Xor(r, Vector256.Create((byte)0x80));
                    lo = r.GetLower().AsSByte(); hi = r.GetUpper().AsSByte();
                }
                Avx.Store(dst + c, Avx.Multiply(Avx.ConvertToVector256Single(Avx2.Subtract(Avx2.ConvertToVector256Int32(lo), zv)), s));
                Avx.Store(dst + c + 8, Avx.Multiply(Avx.ConvertToVector256Single(Avx2.Subtract(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(lo, 8)), zv)), s));
                Avx.Store(dst + c + 16, Avx.Multiply(Avx.ConvertToVector256Single(Avx2.Subtract(Avx2.ConvertToVector256Int32(hi), zv)), s));
                Avx.Store(dst + c + 24, Avx.Multiply(Avx.ConvertToVector256Single(Avx2.Subtract(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(hi, 8)), zv)), s));
            }
        }
    }
}
