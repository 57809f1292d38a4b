// f32 prefill GEMM with W read in place (session 8). y = x·Wᵀ + b is computed as its transpose yᵀ[N×M] = W[N×K]·xᵀ:
// W is the broadcast operand of the register tile, read straight from its rows (six row pointers, one vbroadcastss
// each per k step, no packing), and x (M×K, a prefill chunk of at most MC rows) is packed once per call and K block
// into k-major 16-row panels of xᵀ, the shape of Gemm's W panels, so the tile arithmetic is Gemm's 6×16 (2 panel
// loads + 6 broadcasts + 12 FMAs per k step). Each 6-row group of W runs against every xᵀ panel of the block while its
// rows sit in L1 (W comes from DRAM once, the xᵀ block from L2), and the group after it streams into L2 from inside
// the k loops. The 6×16 accumulator tile is yᵀ: it is transposed in registers on the store (16 output rows × 6 columns).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hub.Runtime.Kernels;

/// <summary>The AVX2 f32 GEMM for prefill-sized M that reads W [N, K] in place instead of packing it per call.</summary>
public static unsafe class GemmWRows
{
    /// <summary>W rows per register tile (the broadcast operand).</summary>
    public const int WR = 6;

    /// <summary>Input rows per packed xᵀ panel (two 8-float vectors per k step).</summary>
    public const int XR = 16;

    /// <summary>Whether this machine runs the kernel: AVX2 + FMA without AVX-512 (AVX-512 machines keep Gemm's 32-wide
    /// zmm tiles; without AVX2 Gemm's portable path runs).</summary>
    public static readonly bool IsSupported = Avx2.IsSupported && Fma.IsSupported && !Avx512F.IsSupported;

    /// <summary>Most rows M of a Linear for which <see cref="Gemm"/> takes this path for F32 weights packed per call
    /// (0 turns it off; a switch for the kernel bench and the prefill A/B, never flipped by tests).</summary>
    internal static int MaxRows = 512;

    /// <summary>Whether a Linear of <paramref name="m"/> rows with weights of type <paramref name="wt"/> (packed per
    /// call) runs here.</summary>
    internal static bool Applies(int m, DType wt) => IsSupported && wt == DType.F32 && m > Gemm.GemvMaxRows && m <= MaxRows;

    /// <summary>Floats of scratch <see cref="Block"/> needs for a row block of <paramref name="rows"/> rows (at most
    /// <see cref="Gemm.MC"/>) and depth <paramref name="k"/>; <see cref="Gemm.ScratchFloats"/>(k) covers it.</summary>
    public static long ScratchFloats(int rows, int k)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        return PackOffset + (long)Panels(rows) * XR * k + 16;
    }

    // scratch: [0, 96) the spill tile for edge stores, then (64-byte aligned) the packed xᵀ of the row block.
    private const int PackOffset = 128;

    private static int Panels(int rows) => (rows + XR - 1) / XR;

    // Gemm's K blocks (the whole of k up to 384, else near-equal blocks of at most Gemm.DeepKC), so every output sums
    // in the order of Gemm's packed paths and a model gives the same bits whether its weights are packed once or not.
    private static int KBlock(int k) => Math.Max(1, Gemm.KBlock(k, false));

    /// <summary>
    /// Packs rows [m0, m1) of x (row stride k) into the scratch as xᵀ panels: for the K block at pc (depth kc), panel j
    /// (rows m0 + 16j …) at pack + pc·P·16 + j·kc·16, element [p·16 + r] = x[m0 + 16j + r, pc + p], zero past m1.
    /// </summary>
    public static void PackX(float* x, int m0, int m1, int k, float* scratch)
    {
        KernelArgs.Range(m0, m1);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        KernelArgs.NotNull(x, m1 > m0 && k > 0, nameof(x));
        KernelArgs.NotNull(scratch, m1 > m0 && k > 0, nameof(scratch));
        if (m1 - m0 > Gemm.MC) throw new ArgumentOutOfRangeException(nameof(m1), $"rows [{m0}, {m1}) exceed one row block of {Gemm.MC}");
        if (!IsSupported) throw new PlatformNotSupportedException("GemmWRows needs AVX2 + FMA without AVX-512");
        PackCore(x, m0, m1, k, scratch);
    }

    private static void PackCore(float* x, int m0, int m1, int k, float* scratch)
    {
        float* pack = Pack(scratch);
        int rows = m1 - m0, panels = Panels(rows), kcb = KBlock(k);
        for (int pc = 0; pc < k; pc += kcb)
        {
            int kc = Math.Min(kcb, k - pc);
            float* blk = pack + (long)pc * panels * XR;
            for (int j = 0; j < panels; j++)
                Gemm.PackRowsPanel(x + (long)(m0 + j * XR) * k + pc, k, Math.Min(XR, rows - j * XR), kc, blk + (long)j * kc * XR);
        }
    }

    private static float* Pack(float* scratch) => (float*)(((nint)scratch + PackOffset * 4 + 63) & ~(nint)63);

    /// <summary>
    /// y[m0..m1, n0..n1) = x·Wᵀ + b for one row block (at most <see cref="Gemm.MC"/> rows) with W F32 [n, k] read in
    /// place. x is packed into the scratch unless <paramref name="packedRow"/> already equals m0 (a worker running
    /// several column chunks of the same row block packs once; pass −1 to force packing); it is set to m0 on return.
    /// <paramref name="pastEnd"/>: the last W group prefetches the rows after n1 (a split owner's next chunk).
    /// <paramref name="gemmReadsAInPlace"/>: Gemm's packed path would read A in place for this range (see
    /// <see cref="Gemm.GemmBlockPacked"/>), so the bias order of its edge rows is followed: results then equal its bits.
    /// </summary>
    public static void Block(float* x, int m0, int m1, int k, float* w, int n, float* bias, float* y, int n0, int n1,
        float* scratch, ref int packedRow, bool pastEnd = false, bool gemmReadsAInPlace = false)
    {
        KernelArgs.Range(m0, m1);
        KernelArgs.Range(n0, n1);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(n1, n);
        if (m1 - m0 > Gemm.MC) throw new ArgumentOutOfRangeException(nameof(m1), $"rows [{m0}, {m1}) exceed one row block of {Gemm.MC}");
        KernelArgs.NotNull(x, m1 > m0 && k > 0, nameof(x));
        KernelArgs.NotNull(w, n1 > n0 && k > 0, nameof(w));
        KernelArgs.NotNull(y, m1 > m0 && n1 > n0, nameof(y));
        KernelArgs.NotNull(scratch, m1 > m0 && n1 > n0 && k > 0, nameof(scratch));
        if (m0 >= m1 || n0 >= n1) return;
        if (!IsSupported) throw new PlatformNotSupportedException("GemmWRows needs AVX2 + FMA without AVX-512");
        if (k == 0)
        {
            for (int i = m0; i < m1; i++)
                if (bias != null) Buffer.MemoryCopy(bias + n0, y + (long)i * n + n0, (n1 - n0) * 4L, (n1 - n0) * 4L);
                else new Span<float>(y + (long)i * n + n0, n1 - n0).Clear();
            return;
        }
        if (packedRow != m0) { PackCore(x, m0, m1, k, scratch); packedRow = m0; }
        // Gemm with A read in place (narrow column ranges) adds the bias of a partial last 6-row tile after y: so do its rows
        int lateRow = gemmReadsAInPlace ? m0 + (m1 - m0) / Gemm.MR * Gemm.MR : m1;
        Columns(m0, m1, k, w, n, bias, y, n0, n1, scratch, pastEnd, lateRow);
    }

    /// <summary>Runs rows [m0, m1) (any count, in row blocks of <see cref="Gemm.MC"/>) × columns [n0, n1) on one thread.</summary>
    public static void Rows(float* x, int m0, int m1, int k, float* w, int n, float* bias, float* y, int n0, int n1, float* scratch,
        bool gemmReadsAInPlace = false)
    {
        KernelArgs.Range(m0, m1);
        int packedRow = -1;
        for (int mb = m0; mb < m1; mb += Gemm.MC)
            Block(x, mb, Math.Min(m1, mb + Gemm.MC), k, w, n, bias, y, n0, n1, scratch, ref packedRow, false, gemmReadsAInPlace);
    }

    // The W groups of columns [n0, n1) against every packed xᵀ panel; with several K blocks in column chunks of NC (the
    // chunk's y, ≤ MC×NC floats, stays in L2 across the K blocks).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Columns(int m0, int m1, int k, float* w, int n, float* bias, float* y, int n0, int n1, float* scratch, bool pastEnd, int lateRow)
    {
        float* pack = Pack(scratch), tile = (float*)(((nint)scratch + 63) & ~(nint)63);
        int rows = m1 - m0, panels = Panels(rows), kcb = KBlock(k);
        int chunk = k > kcb ? Gemm.NC : n1 - n0;
        int edgeStart = n0 + ((n1 - n0) & ~(XR - 1));
        for (int c0 = n0; c0 < n1; c0 += chunk)
        {
            int c1 = Math.Min(n1, c0 + chunk);
            for (int pc = 0; pc < k; pc += kcb)
            {
                int kc = Math.Min(kcb, k - pc);
                bool first = pc == 0, last = pc + kc == k;
                float* blk = pack + (long)pc * panels * XR;
                // 6-row groups, the remainder as 4-row groups (16 columns = 6 + 6 + 4, 32 = 4×6 + 2×4; Gemm.TilePlan)
                Gemm.TilePlan(c1 - c0, out int n6, out int groups);
                for (int g = 0, col = c0; g < groups; g++)
                {
                    int h = g < n6 ? WR : 4, wrows = Math.Min(h, c1 - col);
                    // the group after this one: the next of this chunk, else the chunk's first at the next K block, else
                    // the next chunk, else (pastEnd, one K block) the rows after n1
                    int nextCol = -1, nextPc = pc;
                    if (col + wrows < c1) nextCol = col + wrows;
                    else if (!last) { nextCol = c0; nextPc = pc + kc; }
                    else if (c1 < n1) { nextCol = c1; nextPc = 0; }
                    else if (pastEnd && n1 < n && k == kc) { nextCol = n1; nextPc = 0; }
                    float* next = nextCol >= 0 && nextCol < n ? w + (long)nextCol * k + nextPc : null;
                    int nextRows = next != null ? Math.Min(WR, n - nextCol) : 0;
                    float* wg = w + (long)col * k + pc;
                    float* bg = last && bias != null ? bias + col : null;
                    // Gemm adds the bias of a partial last panel's columns after y (AddTile): those columns do the same
                    int edgeFrom = Math.Clamp(edgeStart - col, 0, wrows);
                    for (int j = 0; j < panels; j++)
                    {
                        int mr = Math.Min(XR, rows - j * XR);
                        // panel j streams next-group row j (and, with fewer panels than rows, j + panels, … as bursts)
                        byte* pf = j < nextRows ? (byte*)(next + (long)j * k) : null;
                        if (panels < nextRows)
                            for (int r = j + panels; r < nextRows; r += panels)
                            {
                                byte* rp = (byte*)(next + (long)r * k);
                                for (int l = 0; l < kc * 4; l += 64) Sse.Prefetch1(rp + l);
                            }
                        float* yp = y + (long)(m0 + j * XR) * n + col;
                        float* xp = blk + (long)j * kc * XR;
                        int lateI = Math.Clamp(lateRow - (m0 + j * XR), 0, mr);
                        if (h == WR) Tile6(wg, k, wrows, xp, kc, yp, n, mr, first, bg, edgeFrom, lateI, pf, tile);
                        else Tile4(wg, k, wrows, xp, kc, yp, n, mr, first, bg, edgeFrom, lateI, pf, tile);
                    }
                    col += wrows;
                }
            }
        }
    }

    // yᵀ tile: rows = W rows w + r·ldw (r < wrows; the rest repeat row 0 and are discarded), columns = the 16 input rows
    // of the xᵀ panel xp; stored transposed into y (ldy) for the first mr input rows, y (=|+=) tile (+ bias[r]).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile6(float* w, int ldw, int wrows, float* xp, int kc, float* y, int ldy, int mr, bool assign, float* bias, int edgeFrom, int lateI, byte* pf, float* spill)
    {
        float* w0 = w, w1 = wrows > 1 ? w + ldw : w, w2 = wrows > 2 ? w + 2L * ldw : w, w3 = wrows > 3 ? w + 3L * ldw : w,
            w4 = wrows > 4 ? w + 4L * ldw : w, w5 = wrows > 5 ? w + 5L * ldw : w;
        if (pf == null) pf = (byte*)xp;
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        nint p = 0, kc2 = kc & ~1;
        float* bp = xp;
        for (; p < kc2; p += 2)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var av = Avx.BroadcastScalarToVector256(w0 + p); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(w1 + p); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(w2 + p); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(w3 + p); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            av = Avx.BroadcastScalarToVector256(w4 + p); c40 = Fma.MultiplyAdd(av, b0, c40); c41 = Fma.MultiplyAdd(av, b1, c41);
            av = Avx.BroadcastScalarToVector256(w5 + p); c50 = Fma.MultiplyAdd(av, b0, c50); c51 = Fma.MultiplyAdd(av, b1, c51);
            b0 = Avx.LoadVector256(bp + 16);
            b1 = Avx.LoadVector256(bp + 24);
            av = Avx.BroadcastScalarToVector256(w0 + p + 1); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(w1 + p + 1); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(w2 + p + 1); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(w3 + p + 1); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            av = Avx.BroadcastScalarToVector256(w4 + p + 1); c40 = Fma.MultiplyAdd(av, b0, c40); c41 = Fma.MultiplyAdd(av, b1, c41);
            av = Avx.BroadcastScalarToVector256(w5 + p + 1); c50 = Fma.MultiplyAdd(av, b0, c50); c51 = Fma.MultiplyAdd(av, b1, c51);
            // the next group's row: 8 bytes per 2 k steps = the row's kc floats over the loop
            Sse.Prefetch1(pf);
            pf += 8; bp += 32;
        }
        if (p < kc)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var av = Avx.BroadcastScalarToVector256(w0 + p); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(w1 + p); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(w2 + p); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(w3 + p); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            av = Avx.BroadcastScalarToVector256(w4 + p); c40 = Fma.MultiplyAdd(av, b0, c40); c41 = Fma.MultiplyAdd(av, b1, c41);
            av = Avx.BroadcastScalarToVector256(w5 + p); c50 = Fma.MultiplyAdd(av, b0, c50); c51 = Fma.MultiplyAdd(av, b1, c51);
        }
        // (rows from edgeFrom of an accumulating store add the bias after y: the spill path)
        bool late = bias != null && !assign && (edgeFrom < wrows || lateI < mr);
        if (bias != null && !late)
        {
            Vector256<float> v = Vector256.Create(bias[0]); c00 += v; c01 += v;
            if (wrows > 1) { v = Vector256.Create(bias[1]); c10 += v; c11 += v; }
            if (wrows > 2) { v = Vector256.Create(bias[2]); c20 += v; c21 += v; }
            if (wrows > 3) { v = Vector256.Create(bias[3]); c30 += v; c31 += v; }
            if (wrows > 4) { v = Vector256.Create(bias[4]); c40 += v; c41 += v; }
            if (wrows > 5) { v = Vector256.Create(bias[5]); c50 += v; c51 += v; }
        }
        if (wrows == WR && mr == XR && !late)
        {
            Store6x8(c00, c10, c20, c30, c40, c50, y, ldy, assign);
            Store6x8(c01, c11, c21, c31, c41, c51, y + 8L * ldy, ldy, assign);
            return;
        }
        c00.Store(spill); c01.Store(spill + 8); c10.Store(spill + 16); c11.Store(spill + 24);
        c20.Store(spill + 32); c21.Store(spill + 40); c30.Store(spill + 48); c31.Store(spill + 56);
        c40.Store(spill + 64); c41.Store(spill + 72); c50.Store(spill + 80); c51.Store(spill + 88);
        SpillStore(spill, wrows, mr, y, ldy, assign, late ? bias : null, edgeFrom, lateI);
    }

    // The 4-row tile for the W rows a 6-row grouping leaves over (8 accumulators keep both FMA pipes busy).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4(float* w, int ldw, int wrows, float* xp, int kc, float* y, int ldy, int mr, bool assign, float* bias, int edgeFrom, int lateI, byte* pf, float* spill)
    {
        float* w0 = w, w1 = wrows > 1 ? w + ldw : w, w2 = wrows > 2 ? w + 2L * ldw : w, w3 = wrows > 3 ? w + 3L * ldw : w;
        if (pf == null) pf = (byte*)xp;
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default;
        nint p = 0, kc2 = kc & ~1;
        float* bp = xp;
        for (; p < kc2; p += 2)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var av = Avx.BroadcastScalarToVector256(w0 + p); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(w1 + p); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(w2 + p); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(w3 + p); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            b0 = Avx.LoadVector256(bp + 16);
            b1 = Avx.LoadVector256(bp + 24);
            av = Avx.BroadcastScalarToVector256(w0 + p + 1); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(w1 + p + 1); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(w2 + p + 1); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(w3 + p + 1); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
            Sse.Prefetch1(pf);
            pf += 8; bp += 32;
        }
        if (p < kc)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var av = Avx.BroadcastScalarToVector256(w0 + p); c00 = Fma.MultiplyAdd(av, b0, c00); c01 = Fma.MultiplyAdd(av, b1, c01);
            av = Avx.BroadcastScalarToVector256(w1 + p); c10 = Fma.MultiplyAdd(av, b0, c10); c11 = Fma.MultiplyAdd(av, b1, c11);
            av = Avx.BroadcastScalarToVector256(w2 + p); c20 = Fma.MultiplyAdd(av, b0, c20); c21 = Fma.MultiplyAdd(av, b1, c21);
            av = Avx.BroadcastScalarToVector256(w3 + p); c30 = Fma.MultiplyAdd(av, b0, c30); c31 = Fma.MultiplyAdd(av, b1, c31);
        }
        // (rows from edgeFrom of an accumulating store add the bias after y: the spill path)
        bool late = bias != null && !assign && (edgeFrom < wrows || lateI < mr);
        if (bias != null && !late)
        {
            Vector256<float> v = Vector256.Create(bias[0]); c00 += v; c01 += v;
            if (wrows > 1) { v = Vector256.Create(bias[1]); c10 += v; c11 += v; }
            if (wrows > 2) { v = Vector256.Create(bias[2]); c20 += v; c21 += v; }
            if (wrows > 3) { v = Vector256.Create(bias[3]); c30 += v; c31 += v; }
        }
        if (wrows == 4 && mr == XR && !late)
        {
            Store4x8(c00, c10, c20, c30, y, ldy, assign);
            Store4x8(c01, c11, c21, c31, y + 8L * ldy, ldy, assign);
            return;
        }
        c00.Store(spill); c01.Store(spill + 8); c10.Store(spill + 16); c11.Store(spill + 24);
        c20.Store(spill + 32); c21.Store(spill + 40); c30.Store(spill + 48); c31.Store(spill + 56);
        SpillStore(spill, wrows, mr, y, ldy, assign, late ? bias : null, edgeFrom, lateI);
    }

    // Edge tile: spill[r·16 + i] = yᵀ[r, i] → y[i·ldy + r] for r < wrows, i < mr. With lateBias (accumulating, bias
    // not yet added) the cells of W rows from edgeFrom or input rows from lateI add (y + t) + b (Gemm's edge tiles),
    // the others y + (t + b) (its full tiles).
    private static void SpillStore(float* spill, int wrows, int mr, float* y, int ldy, bool assign, float* lateBias, int edgeFrom, int lateI)
    {
        for (int i = 0; i < mr; i++)
        {
            float* yi = y + (long)i * ldy;
            for (int r = 0; r < wrows; r++)
            {
                float t = spill[r * XR + i];
                if (lateBias == null) yi[r] = assign ? t : yi[r] + t;
                else yi[r] = r < edgeFrom && i < lateI ? yi[r] + (t + lateBias[r]) : (yi[r] + t) + lateBias[r];
            }
        }
    }

    // Rows r0..r5 (yᵀ rows = output columns 0..5) over 8 input rows → y[i·ldy + 0..5] for i < 8: the first two steps
    // of an 8×8 transpose give, per input row i, lanes of rows 0-3 in one 128-bit half and rows 4-5 in a 64-bit pair.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store6x8(Vector256<float> r0, Vector256<float> r1, Vector256<float> r2, Vector256<float> r3,
        Vector256<float> r4, Vector256<float> r5, float* y, int ldy, bool assign)
    {
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);   // (r0,r1) pairs of inputs 0,1,4,5 / 2,3,6,7
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);  // rows 0-3 of inputs 0|4, 1|5
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);  // 2|6, 3|7
        long l = ldy;
        Store6(y, u0.GetLower(), t4.GetLower(), false, assign);
        Store6(y + l, u1.GetLower(), t4.GetLower(), true, assign);
        Store6(y + 2 * l, u2.GetLower(), t5.GetLower(), false, assign);
        Store6(y + 3 * l, u3.GetLower(), t5.GetLower(), true, assign);
        Store6(y + 4 * l, u0.GetUpper(), t4.GetUpper(), false, assign);
        Store6(y + 5 * l, u1.GetUpper(), t4.GetUpper(), true, assign);
        Store6(y + 6 * l, u2.GetUpper(), t5.GetUpper(), false, assign);
        Store6(y + 7 * l, u3.GetUpper(), t5.GetUpper(), true, assign);
    }

    // y[0..3] (=|+=) lo; y[4..5] (=|+=) the low (hiPair false) or high 64-bit pair of pair.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store6(float* y, Vector128<float> lo, Vector128<float> pair, bool hiPair, bool assign)
    {
        if (!assign) lo += Sse.LoadVector128(y);
        Sse.Store(y, lo);
        if (hiPair)
        {
            if (!assign) pair += Sse.LoadHigh(pair, y + 4);
            Sse.StoreHigh(y + 4, pair);
        }
        else
        {
            if (!assign) pair += Sse2.LoadScalarVector128((double*)(y + 4)).AsSingle();
            Sse.StoreLow(y + 4, pair);
        }
    }

    // Rows r0..r3 over 8 input rows → y[i·ldy + 0..3].
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store4x8(Vector256<float> r0, Vector256<float> r1, Vector256<float> r2, Vector256<float> r3, float* y, int ldy, bool assign)
    {
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        long l = ldy;
        Store4(y, u0.GetLower(), assign); Store4(y + l, u1.GetLower(), assign);
        Store4(y + 2 * l, u2.GetLower(), assign); Store4(y + 3 * l, u3.GetLower(), assign);
        Store4(y + 4 * l, u0.GetUpper(), assign); Store4(y + 5 * l, u1.GetUpper(), assign);
        Store4(y + 6 * l, u2.GetUpper(), assign); Store4(y + 7 * l, u3.GetUpper(), assign);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store4(float* y, Vector128<float> v, bool assign)
    {
        if (!assign) v += Sse.LoadVector128(y);
        Sse.Store(y, v);
    }
}
