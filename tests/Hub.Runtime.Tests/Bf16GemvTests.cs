using Hub.IR;
using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>
/// The BF16 decode GEMV (Gemm.GemvRows with one input row: HalfGemv.Bf16Rows on AVX-512, Dot4Half on AVX2, the
/// scratch-widening loop below that) against a float64 loop on every depth 1..130 and the 1b model's row lengths with
/// tails, on row ranges, with inf/NaN weights. Kernel category, so <see cref="IsaSweepTests"/> re-runs it per ISA path.
/// </summary>
[Trait("Category", "Kernel")]
public unsafe class Bf16GemvTests
{
    private static ushort[] RandomBf16(int count, int seed)
    {
        var r = new Random(seed);
        var w = new ushort[count];
        for (int i = 0; i < count; i++)
        {
            float f = (float)((r.NextDouble() * 2 - 1) * Math.Pow(2, r.Next(-20, 6)));
            if (i % 17 == 0) f = 0;
            w[i] = (ushort)(BitConverter.SingleToInt32Bits(f) >>> 16);
        }
        return w;
    }

    private static float Widen(ushort h) => BitConverter.Int32BitsToSingle(h << 16);

    private static void Check(float[] x, ushort[] w, float[]? bias, float[] y, int k, int n, int n0, int n1, string what)
    {
        for (int j = 0; j < n; j++)
        {
            if (j < n0 || j >= n1) { Assert.True(float.IsNaN(y[j]), $"{what}: row {j} outside [{n0}, {n1}) written"); continue; }
            double e = bias?[j] ?? 0, mag = Math.Abs(e);
            for (int p = 0; p < k; p++) { double t = x[p] * (double)Widen(w[(long)j * k + p]); e += t; mag += Math.Abs(t); }
            if (double.IsNaN(e)) { Assert.True(float.IsNaN(y[j]), $"{what}: row {j} = {y[j]}, expected NaN"); continue; }
            if (double.IsInfinity(e)) { Assert.Equal((float)e, y[j]); continue; }
            // float32 accumulation over at most k + 2 additions, each off by ≤ 2^-24 of the running magnitude.
            double tol = 4 * (k + 2) * Math.Pow(2, -24) * mag + 1e-30;
            Assert.True(Math.Abs(y[j] - e) <= tol, $"{what}: row {j} = {y[j]}, expected {e} (tol {tol})");
        }
    }

    private static void Run(float[] x, ushort[] w, float[]? bias, float[] y, int k, int n, int n0, int n1)
    {
        var scratch = new float[Gemm.ScratchFloats(k)];
        fixed (float* xq = x, bq = bias, yq = y, sq = scratch) fixed (ushort* wq = w)
            Gemm.GemvRows(xq, 1, k, (byte*)wq, DType.BF16, n, bias == null ? null : bq, yq, n0, n1, sq);
    }

    [Fact]
    public void Bf16_gemv_matches_float64_on_every_depth_and_row_range()
    {
        const int n = 13;
        var ks = Enumerable.Range(1, 130).Concat(new[] { 0, 1, 15, 16, 17, 31, 33, 47, 63 }.SelectMany(r => new[] { 2048 + r, 5632 + r }));
        var r = new Random(9);
        foreach (int k in ks)
        {
            var w = RandomBf16(n * k, k);
            var x = Enumerable.Range(0, k).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray();
            var bias = Enumerable.Range(0, n).Select(i => 0.25f * i - 1f).ToArray();
            foreach (var (n0, n1) in new[] { (0, n), (3, 11), (12, 13), (5, 5) })
                foreach (bool withBias in new[] { false, true })
                {
                    var y = Enumerable.Repeat(float.NaN, n).ToArray();
                    Run(x, w, withBias ? bias : null, y, k, n, n0, n1);
                    Check(x, w, withBias ? bias : null, y, k, n, n0, n1, $"k={k} [{n0}, {n1}) bias={withBias}");
                }
        }
    }

    [Fact]
    public void Bf16_gemv_propagates_inf_and_nan_weights_in_the_vector_part_and_the_tail()
    {
        const int n = 6;
        foreach (int k in new[] { 40, 77, 2048 + 9 })
        {
            var x = Enumerable.Range(0, k).Select(i => 0.25f * (i % 7 - 3) + 0.125f).ToArray();
            var w = RandomBf16(n * k, 3);
            w[0 * k + 5] = 0x7F80;              // +inf
            w[2 * k + k - 1] = 0xFF80;          // -inf in the tail
            w[4 * k + 20] = 0x7FC0;             // NaN
            var y = Enumerable.Repeat(float.NaN, n).ToArray();
            Run(x, w, null, y, k, n, 0, n);
            Check(x, w, null, y, k, n, 0, n, $"k={k}");
            Assert.False(float.IsFinite(y[0]));
            Assert.True(float.IsNaN(y[4]));
        }
    }
}
