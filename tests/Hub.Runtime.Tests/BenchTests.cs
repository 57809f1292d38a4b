using System.Diagnostics;
using Hub.IR;
using Hub.Weights;
using Xunit.Abstractions;

namespace Hub.Runtime.Tests;

/// <summary>
/// Throughput of the Linear path through the full runtime (graph → compile → Infer). Runs only with HUB_BENCH=1;
/// prints numbers and asserts nothing about time (wall-clock thresholds do not belong in tests).
/// </summary>
public class BenchTests(ITestOutputHelper output)
{
    [SkippableFact]
    public void Linear_gemm_and_gemv_throughput()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the throughput benchmark");
        output.WriteLine(CpuInfo.Describe());
        foreach (var (n, k) in new[] { (768, 768), (5632, 2048) })
            foreach (var dt in new[] { DType.F32, DType.F16, DType.BF16 })
                Measure(n, k, dt);
    }

    [SkippableFact]
    public void Attention_prefill_throughput()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the throughput benchmark");
        int T = 1024, H = 12, hd = 64;
        var dir = Path.Combine(Path.GetTempPath(), "hub-rt-bench-" + Guid.NewGuid().ToString("N"));
        try
        {
            var b = new GraphBuilder("bench");
            var q = b.Input("q", DType.F32, "batch", "seq", H * hd);
            var o = b.Op(Ops.Attention, "o", new[] { q, q, q }, new { heads = H, head_dim = hd });
            b.Output(o, DType.F32);
            IrFormat.Write(dir, b.Build());
            using var ir = IrModel.Load(dir);
            foreach (int threads in new[] { 1, 0 })
            {
                using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads });
                using var req = cm.CreateInferRequest();
                var r = new Random(1);
                var x = new float[T * H * hd];
                for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() - 0.5);
                req.SetInput("q", x, 1, T, H * hd);
                req.Infer();
                var sw = Stopwatch.StartNew();
                req.Infer();
                double sec = sw.Elapsed.TotalSeconds;
                double flops = 2.0 * 2 * H * hd * (T * (T + 1) / 2.0);
                output.WriteLine($"causal attention T={T} H={H} hd={hd}, {cm.Pool.Size} threads: {sec * 1e3:F1} ms = {flops / sec / 1e9:F2} GFLOP/s");
            }
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    private void Measure(int n, int k, DType dt)
    {
        var dir = Path.Combine(Path.GetTempPath(), "hub-rt-bench-" + Guid.NewGuid().ToString("N"));
        try
        {
            var b = new GraphBuilder("bench");
            var x = b.Input("x", DType.F32, "batch", "seq", k);
            var r = new Random(1);
            var w = new float[(long)n * k];
            for (long i = 0; i < w.Length; i++) w[i] = (float)(r.NextDouble() - 0.5);
            var y = b.Op(Ops.Linear, "y", new[] { x, b.Weight("w", LazyTensor.FromArray(w, new Shape(n, k), "w"), WeightKind.Matrix) });
            b.Output(y, DType.F32, "batch", "seq", n);
            IrFormat.Write(dir, b.Build(), new IrWriteOptions { WeightDType = dt });
            using var ir = IrModel.Load(dir);
            foreach (int threads in new[] { 1, 0 })
            foreach (int m in new[] { 1, 128 })
            {
            using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads });
            using var req = cm.CreateInferRequest();
                var input = new float[m * k];
                for (int i = 0; i < input.Length; i++) input[i] = (float)(r.NextDouble() - 0.5);
                req.SetInput("x", input, 1, m, k);
                req.Infer(); req.Infer();
                int iters = m == 1 ? 200 : 10;
                var proc = Process.GetCurrentProcess();
                var cpu0 = proc.TotalProcessorTime;
                var sw = Stopwatch.StartNew();
                for (int i = 0; i < iters; i++) req.Infer();
                double sec = sw.Elapsed.TotalSeconds / iters;
                proc.Refresh();
                double cpu = (proc.TotalProcessorTime - cpu0).TotalSeconds / iters;
                // With Threads = 1 the CPU-time rate is the per-core rate even on a loaded machine.
                string t = threads == 1 ? "1 thread " : $"{Environment.ProcessorCount} threads";
                if (m == 1)
                    output.WriteLine($"GEMV {dt} [{n}x{k}] {t}: wall {sec * 1e6:F1} µs = {(double)n * k * dt.SizeOf() / sec / 1e9:F2} GB/s; per CPU-second {(double)n * k * dt.SizeOf() / cpu / 1e9:F2} GB/s");
                else
                    output.WriteLine($"GEMM {dt} [{n}x{k}] m={m} {t}: wall {sec * 1e3:F2} ms = {2.0 * m * n * k / sec / 1e9:F2} GFLOP/s; per CPU-second {2.0 * m * n * k / cpu / 1e9:F2} GFLOP/s");
            }
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }
}

/// <summary>End-to-end decode and prefill timing of a mid-size random transformer (HUB_BENCH=1 only).</summary>
public class DecodeBenchTests(ITestOutputHelper output)
{
    [SkippableFact]
    public void Decode_and_prefill_timing()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the throughput benchmark");
        using var tm = new TinyModel { D = 512, H = 8, KV = 4, F = 1408, V = 8000, Layers = 4 };
        using var ir = tm.Build(1);
        foreach (int threads in new[] { 1, 0 })
        {
            using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads, MaxContext = 512 });
            using var req = cm.CreateInferRequest();
            int t = 256;
            var ids = Enumerable.Range(0, t).Select(i => (i * 37) % 8000).ToArray();
            var pos = Enumerable.Range(0, t).ToArray();
            var ones = Enumerable.Repeat(1f, 512).ToArray();
            req.OpTicks = new long[ir.Graph.Nodes.Count];
            var sw = Stopwatch.StartNew();
            req.SetInput("input_ids", ids, 1, t); req.SetInput("positions", pos, 1, t);
            req.SetInput("attention_mask", ones.AsSpan(0, t), 1, t); req.SetInput("logits_to_keep", new[] { 1 }, 1);
            req.Infer();
            double prefill = sw.Elapsed.TotalMilliseconds;
            Report(ir, req.OpTicks, "prefill");
            req.OpTicks = new long[ir.Graph.Nodes.Count];
            int[] id = { 1 }, p = { 0 };
            int steps = 64;
            sw.Restart();
            for (int s = 0; s < steps; s++)
            {
                int past = req.PastLength; p[0] = past; id[0] = (past * 13) % 8000;
                req.SetInput("input_ids", id, 1, 1); req.SetInput("positions", p, 1, 1);
                req.SetInput("attention_mask", ones.AsSpan(0, past + 1), 1, past + 1);
                req.Infer();
            }
            double per = sw.Elapsed.TotalMilliseconds / steps;
            Report(ir, req.OpTicks, "decode");
            output.WriteLine($"threads {cm.Pool.Size}: prefill {t} tokens {prefill:F1} ms ({t / prefill * 1000:F0} tok/s), decode {per:F2} ms/token ({1000 / per:F0} tok/s)");
        }
    }

    private void Report(Hub.IR.IrModel ir, long[] ticks, string what)
    {
        var byOp = new Dictionary<string, long>();
        for (int i = 0; i < ticks.Length; i++)
            byOp[ir.Graph.Nodes[i].Op] = byOp.GetValueOrDefault(ir.Graph.Nodes[i].Op) + ticks[i];
        output.WriteLine($"  {what}: " + string.Join(", ", byOp.OrderByDescending(kv => kv.Value).Select(kv => $"{kv.Key} {kv.Value * 1000.0 / Stopwatch.Frequency:F1} ms")));
    }
}
