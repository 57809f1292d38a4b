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
