using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>
/// The int8 decode GEMV (for groups of one block the AVX2 one-row loop or the AVX-VNNI pair loop, also forced on every K, the four-row pass for
/// longer groups) on both multiply paths (AVX2 sign trick, and AVX-VNNI where supported) against the scalar twin and a
/// float64 loop over the same quantized activations, on odd row counts (a last unpaired row) and split
/// ranges (pairs starting on odd rows), K of one block up to more than two scale chunks (odd block counts per chunk), groups of one block (Q8_0), 2 and 4 blocks and per channel,
/// 1–4 activation rows, symmetric and asymmetric, F16 and F32 scales, and stored bytes at −128 / 0 / 255. Kernel
/// category: <see cref="IsaSweepTests"/> re-runs it with AVX-VNNI off (AVX2 only) and with AVX2 off (only the twin runs).
/// </summary>
[Trait("Category", "Kernel")]
public unsafe class Int8StreamTests
{
    [Fact]
    public void Int8_gemv_matches_twin_on_every_multiply_path()
    {
        foreach (var (group, sym) in new[] { 32, 0, 64, 128 }.SelectMany(g => new[] { (g, true), (g, false) }))
            foreach (int k in new[] { 32, 96, 2048, 4128, 8288 })
                foreach (int n in new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 67 })
                {
                    if (group > 0 && k % group != 0) continue;
                    if (n > 9 && k > 2048) continue;   // keep the test fast: the long rows run on the small row counts
                    if (group != 32 && n % 3 != 0 && n != 67 && n != 1) continue;   // other groupings on fewer row counts
                    int m = 1 + (n + k / 32) % 4;
                    var d = QuantKernelTests.RandomQ(false, n, k, group, sym, n * 31 + k + group + (sym ? 1 : 0));
                    if (sym) d.Data[0] = 0x80;   // -128: valid int8, |w| = 128 as unsigned
                    else if (n * k > 3) { d.Data[1] = 0; d.Data[2] = 255; }
                    var x = QuantKernelTests.Rand(m * k, k + m);
                    var bias = QuantKernelTests.Rand(n, n);
                    var buf = new byte[QuantKernels.ActivationBytes(m, k, d.Groups) + 64];
                    var ranges = new List<(int, int)> { (0, n) };
                    if (n > 2) ranges.Add((1, n - 1));
                    if (n > 6) ranges.Add((3, 6));
                    foreach (var (n0, n1) in ranges)
                        foreach (bool withBias in new[] { true, false })
                            QuantKernelTests.WithMatrix(d, w =>
                            {
                                var twin = new float[m * n];
                                fixed (byte* b0 = buf)
                                fixed (float* xp = x, bp0 = bias, tp = twin)
                                {
                                    byte* b = (byte*)(((nint)b0 + 63) & ~(nint)63);
                                    float* bp = withBias ? bp0 : null;
                                    QuantKernels.QuantizeActivations(w, xp, m, b);
                                    QuantKernels.GemvIntegerReference(w, m, b, bp, tp, n, 0, n);
                                    if (!System.Runtime.Intrinsics.X86.Avx2.IsSupported || !System.Runtime.Intrinsics.X86.Fma.IsSupported)
                                    {
                                        // the scalar machine: GemvInteger is the twin
                                        var y = new float[m * n];
                                        fixed (float* yp = y) QuantKernels.GemvInteger(w, m, b, bp, yp, n, 0, n);
                                        Assert.Equal(twin, y);
                                        return;
                                    }
                                    // the float64 loop over the same quantized activations: Σ_c w(j, c)·dx_b(c)·xq_c + b_j
                                    var exact = new double[m * n];
                                    sbyte* xq = (sbyte*)b;
                                    float* dxs = (float*)(b + (((long)m * k + 63) & ~63L));
                                    for (int i = 0; i < m; i++)
                                        for (int j = 0; j < n; j++)
                                        {
                                            double acc = withBias ? bias[j] : 0;
                                            for (int c = 0; c < k; c++) acc += d.Value(j, c) * dxs[i * (k / 32) + c / 32] * xq[i * k + c];
                                            exact[i * n + j] = acc;
                                        }
                                    // VNNI at groups of one block: the row pairs on every K (pairMaxK unbounded) and the default cut-off
                                    var paths = System.Runtime.Intrinsics.X86.AvxVnni.IsSupported ? new[] { (false, (int?)null), (true, null), (true, int.MaxValue) } : new[] { (false, (int?)null) };
                                    foreach (var (vnni, pairMaxK) in paths)
                                    {
                                        if (pairMaxK != null && group != 32) continue;
                                        var y = Enumerable.Repeat(float.NaN, m * n).ToArray();
                                        fixed (float* yp = y) QuantKernels.GemvIntegerRowsAvx2(w, m, b, bp, yp, n, n0, n1, vnni, pairMaxK);
                                        for (int i = 0; i < m; i++)
                                            for (int j = 0; j < n; j++)
                                            {
                                                int at = i * n + j;
                                                string what = $"vnni={vnni} pairMaxK={pairMaxK} g={group} sym={sym} [{n},{k}] m={m} rows [{n0}, {n1}) bias={withBias} ({i},{j})";
                                                if (j < n0 || j >= n1) { Assert.True(float.IsNaN(y[at]), $"{what}: wrote outside its rows"); continue; }
                                                double scale = 0;
                                                for (int c = 0; c < k; c++) scale += Math.Abs(x[i * k + c] * d.Value(j, c));
                                                scale += withBias ? Math.Abs(bias[j]) : 0;
                                                Assert.True(Math.Abs(y[at] - twin[at]) <= 1e-5 * scale + 1e-6, $"{what}: {y[at]} vs twin {twin[at]}");
                                                Assert.True(Math.Abs(y[at] - exact[at]) <= 1e-5 * scale + 1e-6, $"{what}: {y[at]} vs float64 {exact[at]}");
                                            }
                                    }
                                }
                            });
                }
    }
}
