using System.Diagnostics;
using Hub.IR;
using Xunit.Abstractions;

namespace Hub.Runtime.Tests;

/// <summary>
/// Where a decode step's time goes outside the kernels. HUB_BENCH=1 and HUB_BENCH_IR=&lt;exported causal LM folder&gt;;
/// prints, asserts nothing about time.
/// </summary>
public class DecodeOverheadTests(ITestOutputHelper output)
{
    /// <summary>
    /// Per token: wall time; kernel time = time inside pool work items (summed over the participants, divided by
    /// their number: the wall time the kernels would take perfectly split) + the ops that run on the caller alone
    /// (everything but Linear and Attention at one token); non-kernel = the rest (dispatch, wake-ups, waiting for the
    /// last item, shape inference and memory binding, input copies).
    /// </summary>
    [SkippableFact]
    public void Decode_non_kernel_time_of_an_ir_folder()
    {
        var dir = Environment.GetEnvironmentVariable("HUB_BENCH_IR");
        Skip.If(Environment.GetEnvironmentVariable("HUB_BENCH") != "1" || dir is null, "set HUB_BENCH=1 and HUB_BENCH_IR=<ir folder>");
        int threads = int.TryParse(Environment.GetEnvironmentVariable("HUB_BENCH_THREADS"), out var t) ? t : 2;
        using var ir = IrModel.Load(dir!);
        using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = threads, MaxContext = 1024 });
        using var req = cm.CreateInferRequest();
        var names = ir.Graph.Inputs.Select(i => i.Name).ToHashSet();
        const int prompt = 128, steps = 64;
        var ones = Enumerable.Repeat(1f, prompt + steps + 1).ToArray();
        var ids = Enumerable.Range(0, prompt).Select(i => i * 7 % 1000 + 1).ToArray();
        var pos = Enumerable.Range(0, prompt).ToArray();
        int[] id = [1], p = [0], keep = [1];
        void Feed(int[] tokens, int[] positions, int n)
        {
            int past = req.PastLength;
            req.SetInput("input_ids", tokens.AsSpan(0, n), 1, n);
            if (names.Contains("position_ids")) req.SetInput("position_ids", positions.AsSpan(0, n), 1, n);
            if (names.Contains("attention_mask")) req.SetInput("attention_mask", ones.AsSpan(0, past + n), 1, past + n);
            if (names.Contains("logits_to_keep")) req.SetInput("logits_to_keep", keep, 1);
            req.Infer();
        }
        var nodes = ir.Graph.Nodes;
        var serialOps = Enumerable.Range(0, nodes.Count).Where(i => nodes[i].Op is not (Ops.Linear or Ops.Attention)).ToArray();
        // Per-step samples, so that steps a neighbour process preempted show up as outliers and the medians hold.
        var wall = new List<double>(); var nonKernel = new List<double>(); var plain = new List<double>();
        double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
        for (int round = 0; round < 6; round++)
        {
            req.ResetState();
            Feed(ids, pos, prompt);
            bool profile = round % 2 == 1;
            var opTicks = profile ? new long[nodes.Count] : null;
            req.OpTicks = opTicks;
            cm.Pool.BusyTicks = profile ? new long[cm.Pool.Size] : null;
            for (int s = 0; s < steps; s++)
            {
                p[0] = req.PastLength; id[0] = (s * 13) % 1000 + 1;
                long busy0 = profile ? cm.Pool.BusyTicks!.Sum() : 0, serial0 = profile ? serialOps.Sum(i => opTicks![i]) : 0;
                long t0 = Stopwatch.GetTimestamp();
                Feed(id, p, 1);
                double w = Ms(Stopwatch.GetTimestamp() - t0);
                if (!profile) { plain.Add(w); continue; }
                double busy = Ms(cm.Pool.BusyTicks!.Sum() - busy0) / cm.Pool.Size, serial = Ms(serialOps.Sum(i => opTicks![i]) - serial0);
                wall.Add(w); nonKernel.Add(w - busy - serial);
            }
        }
        static double Median(List<double> l) { var a = l.Order().ToArray(); return a[a.Length / 2]; }
        static double Quartile(List<double> l) { var a = l.Order().ToArray(); return a[a.Length / 4]; }
        output.WriteLine($"{dir}: {threads} threads, decode at {prompt}..{prompt + steps} positions, {plain.Count} + {wall.Count} steps");
        output.WriteLine($"unprofiled step: median {Median(plain):F3} ms ({1000 / Median(plain):F1} tok/s), lower quartile {Quartile(plain):F3} ms, fastest {plain.Min():F3} ms");
        output.WriteLine($"profiled step: median {Median(wall):F3} ms; non-kernel per step: median {Median(nonKernel) * 1000:F0} µs, lower quartile {Quartile(nonKernel) * 1000:F0} µs, least {nonKernel.Min() * 1000:F0} µs");
        cm.Pool.BusyTicks = null;
    }
}
