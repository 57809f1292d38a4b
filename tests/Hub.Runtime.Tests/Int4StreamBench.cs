using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using Hub.Runtime.Kernels;
using Hub.Runtime.Threading;

namespace Hub.Runtime.Tests;

/// <summary>
/// How fast the Q4_0 decode GEMV streams a model's worth of int4 weights from DRAM (HUB_BENCH=1 only, session 12): the
/// 1b model's Linear shapes (22 layers of qkv 2560×2048, o 2048×2048, gate_up 11264×2048, down 2048×5632, logits
/// 32000×2048; HUB_BENCH_MODEL=small: the 134M model's, 12 layers at K = 768) back to back on the runtime's worker pool
/// with QuantLinearExec's unit split, variants alternating per pass, their order rotating per round (medians of
/// HUB_BENCH_ROUNDS, default 7, and per-round speed ratios against the first variant). Variants: "kernel" (QuantGemvInt4
/// on the IR layout: rows as separate streams plus a scale stream), "x4" (QuantGemvInt4.GemvX4 on the interleaved copy
/// of QuantGemvInt4.InterleaveX4; session 12 also measured 512-bit vpmaddubsw and 256-bit AVX-VNNI variants of it, see
/// docs/quantization.md), suffix "np" (no software prefetch: X4Ahead 0), "x4pf&lt;n&gt;" (prefetching n bytes ahead instead of 8 KiB), "read" (a plain read of the same bytes: data then scales), "f32" (the same byte count as F32
/// weights through the default F32 GEMV).
/// </summary>
public unsafe class Int4StreamBench(Xunit.Abstractions.ITestOutputHelper output)
{
    private sealed class Work(Action<int, int> body) : ParallelWork
    {
        public override void Execute(int index, int worker) => body(index, worker);
    }

    [SkippableFact]
    public void Int4_decode_gemv_streaming()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the benchmark");
        Skip.IfNot(Avx2.IsSupported && Fma.IsSupported, "needs AVX2+FMA");
        int threads = BenchFeed.EnvInt("HUB_BENCH_THREADS", 2);
        int rounds = BenchFeed.EnvInt("HUB_BENCH_ROUNDS", 7);
        bool small = Environment.GetEnvironmentVariable("HUB_BENCH_MODEL") == "small";
        var mats = new List<(int N, int K)>();
        for (int l = 0; l < (small ? 12 : 22); l++)
            mats.AddRange(small ? [(2304, 768), (768, 768), (4096, 768), (768, 2048)] : [(2560, 2048), (2048, 2048), (11264, 2048), (2048, 5632)]);
        mats.Add((32000, small ? 768 : 2048));
        long data = mats.Sum(m => (long)m.N * m.K / 2), scales = mats.Sum(m => (long)m.N * m.K / 32);
        var names = Environment.GetEnvironmentVariable("HUB_BENCH_VARIANTS")?.Split(',') ?? ["kernel", "x4", "read", "f32"];
        byte* w = (byte*)NativeMemory.AlignedAlloc((nuint)data, 4096);
        ushort* s = (ushort*)NativeMemory.AlignedAlloc((nuint)(scales * 2), 4096);
        byte* wx = (byte*)NativeMemory.AlignedAlloc((nuint)(data + scales * 2), 4096);
        bool f32 = names.Contains("f32");
        float* wf = f32 ? (float*)NativeMemory.AlignedAlloc((nuint)(data + scales * 2), 4096) : null;
        int maxK = mats.Max(m => m.K);
        byte* act = (byte*)NativeMemory.AlignedAlloc((nuint)QuantKernels.ActivationBytes(1, maxK, maxK / 32), 64);
        float* x = (float*)NativeMemory.AlignedAlloc((nuint)maxK * 4, 64);
        float* y = (float*)NativeMemory.AlignedAlloc(32000 * 4, 64);
        float* y2 = (float*)NativeMemory.AlignedAlloc(32000 * 4, 64);
        using var pool = new WorkerPool(threads);
        int ahead0 = QuantGemvInt4.X4Ahead;
        try
        {
            var rnd = new Random(7);
            for (long i = 0; i < data; i += 4096) rnd.NextBytes(new Span<byte>(w + i, (int)Math.Min(4096, data - i)));
            for (long i = 0; i < scales; i++) s[i] = (ushort)(0x2000 + (i % 1000));
            for (int i = 0; i < maxK; i++) x[i] = MathF.Sin(i * 0.37f) + 0.3f;
            if (f32) for (long i = 0; i < (data + scales * 2) / 4; i++) wf[i] = (sbyte)w[i % data] * (1f / 64);
            long offD = 0, offS = 0, offX = 0;
            var qms = new List<QuantMatrix>();
            foreach (var (n, k) in mats)
            {
                var qm = new QuantMatrix(w + offD, s + offS, null, n, k, 32, true, true);
                QuantGemvInt4.InterleaveX4(qm, wx + offX, 0, n / 4);
                qms.Add(new QuantMatrix(qm, wx + offX));
                offD += (long)n * k / 2; offS += (long)n * k / 32; offX += QuantGemvInt4.X4Bytes(n, k);
            }
            var times = names.Select(_ => new List<double>()).ToArray();
            double sink = 0;
            for (int round = 0; round < rounds; round++)
                for (int cc = 0; cc < names.Length; cc++)
                {
                    int c = (cc + round) % names.Length;
                    string name = names[c];
                    bool np = name.EndsWith("np", StringComparison.Ordinal);
                    string bn = np ? name[..^2] : name;
                    // "x4pf<n>": the x4 kernel prefetching n bytes ahead
                    int pfd = bn.StartsWith("x4pf", StringComparison.Ordinal) ? int.Parse(bn[4..]) : ahead0;
                    if (bn.StartsWith("x4pf", StringComparison.Ordinal)) bn = "x4";
                    QuantGemvInt4.X4Ahead = np ? 0 : pfd;
                    var sw = System.Diagnostics.Stopwatch.StartNew();
                    double[] sums = new double[threads];
                    long fo = 0;
                    foreach (var qx in qms)
                    {
                        int n = qx.N, k = qx.K;
                        var qm = qx;
                        QuantKernels.QuantizeActivations(qm, x, 1, act);
                        int units = Math.Min(threads * 16, (n + 31) / 32);
                        int unitRows = ((n + units - 1) / units + 3) & ~3;
                        units = (n + unitRows - 1) / unitRows;
                        long bytesM = (long)n * k / 2 + (long)n * k / 16;
                        if (bn == "f32")
                        {
                            int kf = k, nf = (int)(bytesM / 4 / k);
                            int uf = Math.Min(threads * 16, (nf + 31) / 32), rf = ((nf + uf - 1) / uf + 3) & ~3;
                            uf = (nf + rf - 1) / rf;
                            float* wfm = wf + fo / 4;
                            pool.Run(new Work((u, wk) => { int c0 = u * rf, c1 = Math.Min(nf, c0 + rf); if (c0 < c1) GemvF32.Rows(x, kf, wfm, null, y, c0, c1, GemvF32.Default); }), uf);
                            fo += (long)nf * k * 4;
                            continue;
                        }
                        var plain = new QuantMatrix(qm.Data, qm.ScalesF16, null, n, k, 32, true, true);
                        byte* xm = qm.Interleaved;
                        pool.Run(new Work((u, wk) =>
                        {
                            int c0 = u * unitRows, c1 = Math.Min(n, c0 + unitRows);
                            if (c0 >= c1) return;
                            if (bn == "kernel") QuantGemvInt4.Gemv(plain, 1, act, null, y, n, c0, c1);
                            else if (bn.StartsWith("x4", StringComparison.Ordinal)) QuantGemvInt4.GemvX4(qm, 1, act, null, y, n, c0, c1);
                            else if (bn == "read")
                                sums[wk] += Read(plain.Data + (long)c0 * k / 2, plain.Data + (long)c1 * k / 2) + Read((byte*)(plain.ScalesF16 + (long)c0 * k / 32), (byte*)(plain.ScalesF16 + (long)c1 * k / 32));
                            else throw new ArgumentException($"HUB_BENCH_VARIANTS: unknown variant '{name}'");
                        }), units);
                    }
                    times[c].Add(sw.Elapsed.TotalSeconds);
                    sink += sums.Sum() + y[0];
                }
            long bytes = data + scales * 2;
            for (int c = 0; c < names.Length; c++)
            {
                double med = times[c].Order().ElementAt(times[c].Count / 2), best = times[c].Min();
                output.WriteLine($"{names[c],-8} {threads} thr: median {med * 1e3,7:F2} ms ({bytes / med / 1e9,5:F2} GB/s), best {best * 1e3,7:F2} ms ({bytes / best / 1e9,5:F2} GB/s)");
            }
            for (int c = 1; c < names.Length; c++)
            {
                var ratios = times[0].Zip(times[c], (t0, tc) => t0 / tc).Order().ToList();
                output.WriteLine($"{names[c]} / {names[0]}: median speed ratio {ratios[ratios.Count / 2]:F3} (quartiles {ratios[ratios.Count / 4]:F3}–{ratios[3 * ratios.Count / 4]:F3})");
            }
            output.WriteLine($"(sink {sink:E1}, {bytes / 1048576.0:F0} MiB per pass incl. F16 scales)");
            // agreement of the x4 kernels with the IR-layout kernel on every shape
            foreach (var qm in qms.DistinctBy(q => (q.N, q.K)))
            {
                var plain = new QuantMatrix(qm.Data, qm.ScalesF16, null, qm.N, qm.K, 32, true, true);
                QuantKernels.QuantizeActivations(qm, x, 1, act);
                QuantGemvInt4.Gemv(plain, 1, act, null, y, qm.N, 0, qm.N);
                {
                    QuantGemvInt4.GemvX4(qm, 1, act, null, y2, qm.N, 0, qm.N);
                    double dmax = 0, ymax = 0;
                    for (int j = 0; j < qm.N; j++) { dmax = Math.Max(dmax, Math.Abs(y[j] - y2[j])); ymax = Math.Max(ymax, Math.Abs(y[j])); }
                    output.WriteLine($"x4 vs kernel on {qm.N}×{qm.K}: max |Δ| {dmax:E2} of max |y| {ymax:E2}");
                }
            }
        }
        finally
        {
            QuantGemvInt4.X4Ahead = ahead0;
            NativeMemory.AlignedFree(w); NativeMemory.AlignedFree(s); NativeMemory.AlignedFree(wx); NativeMemory.AlignedFree(act);
            NativeMemory.AlignedFree(x); NativeMemory.AlignedFree(y); NativeMemory.AlignedFree(y2);
            if (wf != null) NativeMemory.AlignedFree(wf);
        }
    }

    private static double Read(byte* p, byte* e)
    {
        var a = System.Runtime.Intrinsics.Vector256<int>.Zero;
        var b = System.Runtime.Intrinsics.Vector256<int>.Zero;
        for (; p + 64 <= e; p += 64) { a = Avx2.Add(a, Avx.LoadVector256((int*)p)); b = Avx2.Add(b, Avx.LoadVector256((int*)(p + 32))); }
        return System.Runtime.Intrinsics.Vector256.Sum(a + b);
    }
}
