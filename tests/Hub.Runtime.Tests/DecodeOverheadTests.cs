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
    /// last item, shape inference and memory binding, input copies); a job the caller runs alone counts whole. Also per op kind: µs per step inside Run, and the
    /// step's time outside every op's Run (binding, shape pass, memory plan).
    /// HUB_BENCH_AB=&lt;switch&gt; runs two requests side by side, off and on (HUB_BENCH_AB_BLOCK steps each in turn,
    /// default 1), and prints both variants' medians and their ratio.
    /// </summary>
    [SkippableFact]
    public void Decode_non_kernel_time_of_an_ir_folder()
    {
        var dir = Environment.GetEnvironmentVariable("HUB_BENCH_IR");
        Skip.If(Environment.GetEnvironmentVariable("HUB_BENCH") != "1" || dir is null, "set HUB_BENCH=1 and HUB_BENCH_IR=<ir folder>");
        int threads = BenchFeed.EnvInt("HUB_BENCH_THREADS", 2);
        var ab = Environment.GetEnvironmentVariable("HUB_BENCH_AB") is { Length: > 0 } abv ? abv : null;
        int pairs = int.TryParse(Environment.GetEnvironmentVariable("HUB_BENCH_AB_ROUNDS"), out var pr) && pr > 0 ? pr : 4;
        using var ir = IrModel.Load(dir!);
        // A switch read when a model is compiled gets a model per variant (threads1: off = a one-thread model, the pool
        // never used; on = HUB_BENCH_THREADS); a switch read per call would be flipped on one model through `set`.
        Func<bool, RuntimeOptions>? compiled = ab switch
        {
            "threads1" => on => new RuntimeOptions { Threads = on ? threads : 1, MaxContext = 1024 },
            _ => null,
        };
        Action<bool> set = ab switch
        {
            null => _ => { },
            _ when compiled is not null => _ => { },
            _ => throw new ArgumentException($"HUB_BENCH_AB={ab}: no such switch (known: threads1)"),
        };
        var cms = new CompiledModel[2];
        var reqs = new InferRequest[2];
        for (int v = 0; v < 2; v++)
        {
            cms[v] = v == 1 && compiled is null ? cms[0]
                : CompiledModel.Compile(ir, compiled?.Invoke(v == 1) ?? new RuntimeOptions { Threads = threads, MaxContext = 1024 });
            reqs[v] = cms[v].CreateInferRequest();
        }
        CompiledModel cm = cms[0];
        InferRequest req = reqs[0];
        var names = ir.Graph.Inputs.Select(i => i.Name).ToHashSet();
        var nodes = ir.Graph.Nodes;
        // token ids inside the vocabulary of the embedding table (stories260K has 512)
        int vocab = (int)ir.Graph.Weights.First(w => w.Name == nodes.First(n => n.Op == Ops.Embedding).Inputs[1]).Shape[0];
        const int prompt = 128, steps = 64;
        var ones = Enumerable.Repeat(1f, prompt + steps + 1).ToArray();
        var ids = Enumerable.Range(0, prompt).Select(i => (i * 7 % 1000 + 1) % vocab).ToArray();
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
        var serialOps = Enumerable.Range(0, nodes.Count).Where(i => nodes[i].Op is not (Ops.Linear or Ops.Attention)).ToArray();
        // Per-step samples per variant, so that steps a neighbour process preempted show up as outliers and the medians hold.
        var wall = new[] { new List<double>(), new List<double>() };
        var nonKernel = new[] { new List<double>(), new List<double>() };
        var outside = new[] { new List<double>(), new List<double>() };
        var plain = new[] { new List<double>(), new List<double>() };
        // process CPU time over the unprofiled steps (every thread: a worker spinning for nothing shows here)
        var cpu = new double[2];
        // per op kind and variant: the kind's µs per profiled step (medians, as preempted steps inflate the mean)
        var kinds = nodes.Select(n => n.Op).Distinct().ToArray();
        var kindOf = nodes.Select(n => Array.IndexOf(kinds, n.Op)).ToArray();
        var kindUs = new[] { kinds.Select(_ => new List<double>()).ToArray(), kinds.Select(_ => new List<double>()).ToArray() };
        var before = new long[nodes.Count];
        var stepKind = new long[kinds.Length];
        // kernel ticks inside pool jobs: the participants' sum split perfectly, plus the jobs the caller ran alone
        long Busy() { var b = cm.Pool.BusyTicks!; long sum = 0; for (int i = 0; i < cm.Pool.Size; i++) sum += b[i]; return sum / cm.Pool.Size + b[cm.Pool.Size]; }
        double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
        int variants = ab is null ? 1 : 2;
        // A/B: both requests decode side by side, the variant alternating every `block` steps (default 1, the order
        // flipping each time), so a neighbour's burst hits both alike; process CPU is attributed per block (blocks of
        // 16 steps or more give it a useful resolution).
        int block = int.TryParse(Environment.GetEnvironmentVariable("HUB_BENCH_AB_BLOCK"), out var bl) && bl > 0 ? Math.Min(bl, steps) : 1;
        var opTicksOf = new long[2][];
        var busyOf = new long[2][];
        for (int round = 0; round < (ab is null ? 6 : 2 * pairs); round++)
        {
            bool profile = round % 2 == 1;
            for (int v = 0; v < variants; v++)
            {
                set(v == 1);
                cm = cms[v]; req = reqs[v];
                req.ResetState();
                Feed(ids, pos, prompt);
                req.OpTicks = opTicksOf[v] = profile ? new long[nodes.Count] : null!;
                cm.Pool.BusyTicks = busyOf[v] = profile ? new long[cm.Pool.Size + 1] : null!;   // the last slot: jobs the caller ran alone
            }
            for (int s0 = 0; s0 < steps; s0 += block)
                for (int vi = 0; vi < variants; vi++)
                {
                    int v = ab is null ? 0 : vi ^ ((s0 / block) & 1);
                    set(v == 1);
                    cm = cms[v]; req = reqs[v];
                    var opTicks = opTicksOf[v];
                    var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
                    for (int s = s0; s < Math.Min(steps, s0 + block); s++)
                    {
                        p[0] = req.PastLength; id[0] = ((s * 13) % 1000 + 1) % vocab;
                        long busy0 = profile ? Busy() : 0, serial0 = profile ? serialOps.Sum(i => opTicks![i]) : 0;
                        long all0 = profile ? opTicks!.Sum() : 0;
                        if (profile) opTicks!.CopyTo(before, 0);
                        long t0 = Stopwatch.GetTimestamp();
                        Feed(id, p, 1);
                        double w = Ms(Stopwatch.GetTimestamp() - t0);
                        if (!profile) { plain[v].Add(w); continue; }
                        double busy = Ms(Busy() - busy0), serial = Ms(serialOps.Sum(i => opTicks![i]) - serial0);
                        wall[v].Add(w); nonKernel[v].Add(w - busy - serial); outside[v].Add(w - Ms(opTicks!.Sum() - all0));
                        Array.Clear(stepKind);
                        for (int i = 0; i < nodes.Count; i++) stepKind[kindOf[i]] += opTicks![i] - before[i];
                        for (int k = 0; k < kinds.Length; k++) kindUs[v][k].Add(Ms(stepKind[k]) * 1000);
                    }
                    if (!profile) cpu[v] += (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalMilliseconds;
                }
        }
        set(false);
        for (int v = 0; v < 2; v++) { reqs[v].OpTicks = null; cms[v].Pool.BusyTicks = null; }
        reqs[1].Dispose(); reqs[0].Dispose();
        if (cms[1] != cms[0]) cms[1].Dispose();
        cms[0].Dispose();
        static double Median(List<double> l) { var a = l.Order().ToArray(); return a[a.Length / 2]; }
        static double Quartile(List<double> l) { var a = l.Order().ToArray(); return a[a.Length / 4]; }
        output.WriteLine($"{dir}: {threads} threads, decode at {prompt}..{prompt + steps} positions{(ab is null ? "" : $", A/B '{ab}' over {pairs} pairs of rounds, alternating every {block} steps")}");
        for (int v = 0; v < variants; v++)
        {
            if (ab is not null) output.WriteLine(v == 0 ? "-- off" : "-- on");
            output.WriteLine($"unprofiled step: median {Median(plain[v]):F3} ms ({1000 / Median(plain[v]):F1} tok/s), lower quartile {Quartile(plain[v]):F3} ms, fastest {plain[v].Min():F3} ms ({plain[v].Count} steps); process CPU {cpu[v] / plain[v].Count:F3} ms a step");
            output.WriteLine($"profiled step: median {Median(wall[v]):F3} ms; non-kernel per step: median {Median(nonKernel[v]) * 1000:F0} µs, lower quartile {Quartile(nonKernel[v]) * 1000:F0} µs, least {nonKernel[v].Min() * 1000:F0} µs; outside the ops' Run: median {Median(outside[v]) * 1000:F1} µs");
            var byKind = Enumerable.Range(0, kinds.Length)
                .Select(k => (Kind: kinds[k], Count: kindOf.Count(x => x == k), Us: Median(kindUs[v][k]))).OrderByDescending(x => x.Us);
            output.WriteLine("per step, µs in Run by op kind (median): " + string.Join(", ", byKind.Select(x => $"{x.Kind}×{x.Count} {x.Us:F1}")));
        }
        if (ab is not null)
            output.WriteLine($"on/off: unprofiled step median {Median(plain[1]) / Median(plain[0]):F3}, lower quartile {Quartile(plain[1]) / Quartile(plain[0]):F3}; non-kernel median {Median(nonKernel[1]) / Median(nonKernel[0]):F3}; process CPU a step {cpu[1] / cpu[0]:F3}");
    }
}
