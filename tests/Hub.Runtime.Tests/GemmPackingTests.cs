using System.Runtime.InteropServices;
using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>
/// The GEMM's A-side packing: register-tile micro-panels (k-major, h rows per k step) against a scalar twin, and the
/// row tiling (6-row tiles, then 4-row tiles) covering every block height exactly.
/// </summary>
[Trait("Category", "Kernel")]
/// <summary>
/// Tests that flip Gemm's static switches (PackA, StealSplit) or compare GEMM bits across calls: one collection, so a
/// flip in one class never lands in the middle of another's bit-for-bit comparison (xunit runs classes in parallel).
/// </summary>
[CollectionDefinition(nameof(GemmStaticsCollection))]
public sealed class GemmStaticsCollection { }

[Collection(nameof(GemmStaticsCollection))]
public unsafe class GemmPackingTests
{
    [Theory]
    [InlineData(4)]
    [InlineData(6)]
    public void A_micro_panel_holds_each_row_k_major_for_every_row_count_and_depth(int h)
    {
        const int lda = 409;
        var rng = new Random(h);
        var a = new float[h * lda];
        for (int i = 0; i < a.Length; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
        foreach (int kc in new[] { 1, 7, 8, 9, 15, 16, 63, 256, 384 })
            for (int rows = 1; rows <= h; rows++)
            {
                // 8 floats of slack past h·kc (the overlapping 8-wide stores), filled with a sentinel that must survive after it
                var dst = new float[h * kc + 8 + 4];
                Array.Fill(dst, float.NaN);
                dst[h * kc + 8] = 12345f;
                fixed (float* ap = a, dp = dst) Gemm.PackAPanel(ap, lda, rows, h, kc, dp);
                for (int p = 0; p < kc; p++)
                    for (int r = 0; r < h; r++)
                    {
                        float expected = a[(r < rows ? r : 0) * lda + p];
                        if (BitConverter.SingleToInt32Bits(dst[p * h + r]) != BitConverter.SingleToInt32Bits(expected))
                            Assert.Fail($"h={h} rows={rows} kc={kc}: panel[{p},{r}] = {dst[p * h + r]}, expected {expected}");
                    }
                Assert.Equal(12345f, dst[h * kc + 8]);
            }
    }

    [Fact]
    public void Row_tiles_cover_every_block_height_with_at_most_three_idle_rows()
    {
        for (int mc = 1; mc <= Gemm.MC; mc++)
        {
            Gemm.TilePlan(mc, out int n6, out int tiles);
            Assert.InRange(n6, 0, tiles);
            int covered = n6 * Gemm.MR + (tiles - n6) * 4;
            int lastHeight = tiles > n6 ? 4 : Gemm.MR;
            Assert.True(covered >= mc, $"mc={mc}: tiles cover {covered} rows");
            Assert.True(covered - lastHeight < mc, $"mc={mc}: the last tile has no row of its own");
            Assert.InRange(covered - mc, 0, 3);
            // whole tiles waste nothing when the block height allows it (128 = 20×6 + 2×4)
            if (mc >= 8 && mc % 2 == 0) Assert.Equal(mc, covered);
        }
    }

    [Fact]
    public void Gemm_over_packed_A_equals_gemm_reading_A_in_place_bit_for_bit()
    {
        // Same k order per output in both paths, so the micro-panels must not change a single bit. (Without bias: an edge
        // tile of the in-place path adds the bias after the running sum, a whole 4-row tile inside its register sum.)
        var rng = new Random(3);
        foreach (var (m, n, k) in new[] { (128, 100, 777), (13, 112, 300), (20, 97, 64) }) // ≥ PackAMinColumns
        {
            var x = new float[m * k]; var w = new float[n * k];
            for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
            for (int i = 0; i < w.Length; i++) w[i] = (float)(rng.NextDouble() * 2 - 1);
            var y0 = new float[m * n]; var y1 = new float[m * n];
            var scratch = (float*)NativeMemory.AlignedAlloc((nuint)(Gemm.ScratchFloats(k) * 4), 64);
            try
            {
                fixed (float* xp = x, wp = w, p0 = y0, p1 = y1)
                {
                    Gemm.PackA = false;
                    Gemm.GemmBlock(xp, 0, m, k, (byte*)wp, DType.F32, n, null, p0, 0, n, scratch);
                    Gemm.PackA = true;
                    Gemm.GemmBlock(xp, 0, m, k, (byte*)wp, DType.F32, n, null, p1, 0, n, scratch);
                }
            }
            finally { Gemm.PackA = true; NativeMemory.AlignedFree(scratch); }
            for (int i = 0; i < y0.Length; i++)
                if (BitConverter.SingleToInt32Bits(y0[i]) != BitConverter.SingleToInt32Bits(y1[i]))
                    Assert.Fail($"m={m} n={n} k={k}: y[{i / n},{i % n}] in place {y0[i]:R}, packed {y1[i]:R}");
        }
    }
}
