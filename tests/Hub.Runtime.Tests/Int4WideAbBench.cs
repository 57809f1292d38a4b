using Hub.IR;
using Hub.Runtime.Kernels;

namespace Hub.Runtime.Tests;

/// <summary>
/// In-process A/B of the int4 AVX-512 kernels on an exported int4 IR folder in HUB_BENCH_IR (HUB_BENCH=1 only; prints,
/// asserts nothing about time): one compiled model, rounds alternating the AVX2 kernels (off) and the 512-bit ones (on)
/// in flipping order — a HUB_BENCH_M-token prefill (default 128; QuantGemmInt4.Wide) and a segment of 16 decode steps
/// (QuantGemvInt4.Wide) per variant and round, HUB_BENCH_AB_ROUNDS rounds (default 8), medians of wall-time tok/s with
/// HUB_BENCH_THREADS threads (default 2).
/// </summary>
public class Int4WideAbBench(Xunit.Abstractions.ITestOutputHelper output)
{
    [SkippableFact]
    public void Int4_wide_kernels_ab_of_an_ir_folder()
    {
        var dir = Environment.GetEnvironmentVariable("HUB_BENCH_IR");
        Skip.If(Environment.GetEnvironmentVariable("HUB_BENCH") != "1" || dir is null, "set HUB_BENCH=1 and HUB_BENCH_IR=<ir folder>");
        Skip.IfNot(System.Runtime.Intrinsics.X86.Avx512BW.IsSupported, "the wide int4 kernels need AVX-512BW");
        int threads = BenchFeed.EnvInt("HUB_BENCH_THREADS", 2);
        int m = BenchFeed.EnvInt("HUB_BENCH_M", 128);
        int rounds = BenchFeed.EnvInt("HUB_BENCH_AB_ROUNDS", 8);
        using var ir = IrModel.Load(dir!);
        using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads, MaxContext = 4096 });
        using var req = cm.CreateInferRequest();
        var names = ir.Graph.Inputs.Select(i => i.Name).ToList();
        var ids = Enumerable.Range(0, m).Select(i => (i * 13) % 1000 + 1).ToArray();
        var pos = Enumerable.Range(0, m).ToArray();
        var ones = Enumerable.Repeat(1f, m + 64).ToArray();
        bool gemmBefore = QuantGemmInt4.Wide, gemvBefore = QuantGemvInt4.Wide;
        var pre = new[] { new List<double>(), new List<double>() };
        var dec = new[] { new List<double>(), new List<double>() };
        var logits = new float[2][];
        int[] one = { 1 }, p1 = { 0 };
        try
        {
            for (int round = -1; round < rounds; round++)   // round -1 warms up both
                for (int k = 0; k < 2; k++)
                {
                    int v = k ^ (round & 1);
                    QuantGemmInt4.Wide = QuantGemvInt4.Wide = v == 1;
                    req.ResetState();
                    BenchFeed.Set(req, names, ids, pos, m, ref ones);
                    var sw = System.Diagnostics.Stopwatch.StartNew();
                    req.Infer();
                    double prefill = m / sw.Elapsed.TotalSeconds;
                    if (round < 0) logits[v] = req.GetOutput(ir.Graph.Outputs[0].Name).ToArray();
                    sw.Restart();
                    for (int s = 0; s < 16; s++) BenchFeed.DecodeStep(req, names, one, p1, ref ones);
                    double decode = 16 / sw.Elapsed.TotalSeconds;
                    if (round >= 0) { pre[v].Add(prefill); dec[v].Add(decode); }
                }
        }
        finally { QuantGemmInt4.Wide = gemmBefore; QuantGemvInt4.Wide = gemvBefore; }
        double Med(List<double> l) => l.Order().ElementAt(l.Count / 2);
        double maxDiff = logits[0].Zip(logits[1], (a, b) => Math.Abs(a - b)).Max(), maxAbs = logits[0].Max(Math.Abs);
        output.WriteLine($"prefill {m} tokens, {threads} threads: avx2 {Med(pre[0]):F1} tok/s, avx512 {Med(pre[1]):F1} tok/s (ratio {Med(pre[1]) / Med(pre[0]):F3}); per round avx2 [{string.Join(" ", pre[0].Select(x => x.ToString("F0")))}] avx512 [{string.Join(" ", pre[1].Select(x => x.ToString("F0")))}]");
        output.WriteLine($"decode 16 steps after it: avx2 {Med(dec[0]):F2} tok/s, avx512 {Med(dec[1]):F2} tok/s (ratio {Med(dec[1]) / Med(dec[0]):F3}); per round avx2 [{string.Join(" ", dec[0].Select(x => x.ToString("F1")))}] avx512 [{string.Join(" ", dec[1].Select(x => x.ToString("F1")))}]");
        output.WriteLine($"prefill logits max |Δ| {maxDiff:G3} of max |logit| {maxAbs:G3}");
    }
}
