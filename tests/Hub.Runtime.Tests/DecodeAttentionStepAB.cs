using Hub.IR;
using Hub.Runtime.Kernels;
using Xunit.Abstractions;

namespace Hub.Runtime.Tests;

/// <summary>
/// In-process A/B of a decode-attention switch on a whole model, alternating step by step (HUB_BENCH=1 and
/// HUB_BENCH_IR=&lt;ir folder&gt; only; prints, asserts nothing about time): HUB_BENCH_WARMUP decode steps (default 128)
/// fill the cache, then HUB_BENCH_STEPS steps (default 384) alternate the switch in pairs (off-on, on-off, ...), so the
/// two steps of a pair are a few milliseconds and one position apart and a neighbour's load hits both alike. Prints
/// the Attention ops' time per step, the ratio of the sums (off/on: the speed-up), and the median of the per-pair ratios.
/// Switches (HUB_BENCH_AB): the decode profile's attnhomed, attnpf and attn16, and aa (both halves identical: the
/// harness's own spread; its per-pair median stays within 1.00 ± 0.01 where the decode profile's 16-step segments
/// spread ± 0.06 on this shared host). Add a kernel switch here to A/B it. The sums' ratio is skewed by the odd slow
/// step (aa reads 1.06–1.19): quote the per-pair median.
/// </summary>
[Collection(nameof(AttentionStaticsCollection))]
public class DecodeAttentionStepAB(ITestOutputHelper output)
{
    [SkippableFact]
    public void Decode_attention_step_ab()
    {
        var dir = Environment.GetEnvironmentVariable("HUB_BENCH_IR");
        var ab = Environment.GetEnvironmentVariable("HUB_BENCH_AB") ?? "aa";
        Skip.If(Environment.GetEnvironmentVariable("HUB_BENCH") != "1" || dir is null, "set HUB_BENCH=1 and HUB_BENCH_IR=<ir folder>");
        // the decode profile's attention switches (QuantDecodeProfile, HUB_BENCH_AB)
        Action<bool> set = ab == "aa" ? _ => { }
            : ab == "attnhomed" ? on => Execution.AttentionExec.HomedDecode = on
            : ab == "attnpf" ? on => { Execution.AttentionExec.Prefetch = on; AttentionKernels.PrefetchHalfKeys = on ? 16 : 8; }
            : ab == "attn16" ? on => AttentionKernels.UseHalfRowKeys16 = AttentionKernels.UseRowKeys16 = on
            : throw new ArgumentException($"HUB_BENCH_AB={ab}: attnhomed, attnpf, attn16 or aa");
        using var ir = IrModel.Load(dir!);
        using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = BenchFeed.EnvInt("HUB_BENCH_THREADS", 2), MaxContext = 8192 });
        using var req = cm.CreateInferRequest();
        var names = ir.Graph.Inputs.Select(i => i.Name).ToList();
        int warm = BenchFeed.EnvInt("HUB_BENCH_WARMUP", 128), steps = BenchFeed.EnvInt("HUB_BENCH_STEPS", 384) & ~3;
        var ones = Enumerable.Repeat(1f, warm + steps + 1).ToArray();
        int[] id = { 1 }, p = { 0 };
        var attn = Enumerable.Range(0, ir.Graph.Nodes.Count).Where(i => ir.Graph.Nodes[i].Op == Hub.IR.Ops.Attention).ToArray();
        req.OpTicks = new long[ir.Graph.Nodes.Count];
        var sw = new System.Diagnostics.Stopwatch();
        try
        {
            for (int s = 0; s < warm; s++) BenchFeed.DecodeStep(req, names, id, p, ref ones);
            var t = new[] { new List<double>(), new List<double>() };
            var wall = new[] { new List<double>(), new List<double>() };
            for (int s = 0; s < steps; s++)
            {
                // pairs alternate their order: off-on, on-off, ...
                bool on = ((s & 1) ^ ((s >> 1) & 1)) == 1;
                set(on);
                Array.Clear(req.OpTicks);
                sw.Restart();
                BenchFeed.DecodeStep(req, names, id, p, ref ones);
                wall[on ? 1 : 0].Add(sw.Elapsed.TotalMilliseconds);
                long at = 0;
                foreach (var i in attn) at += req.OpTicks[i];
                t[on ? 1 : 0].Add(at * 1000.0 / System.Diagnostics.Stopwatch.Frequency);
            }
            double Med(IEnumerable<double> l) { var o = l.Order().ToList(); return o[o.Count / 2]; }
            var pr = t[0].Zip(t[1], (a, b) => a / b).Order().ToList();
            var pw = wall[0].Zip(wall[1], (a, b) => a / b).Order().ToList();
            output.WriteLine($"{ab}: contexts {warm}..{warm + steps}, Attention ms/token off {t[0].Average():F4} on {t[1].Average():F4}: speed on/off {t[0].Sum() / t[1].Sum():F3} (sums), per-pair median {Med(pr):F3} (quartiles {pr[pr.Count / 4]:F3}..{pr[pr.Count * 3 / 4]:F3}); step wall off/on {wall[0].Sum() / wall[1].Sum():F3}, per-pair median {Med(pw):F3}");
            // the same by context quarter
            int q4 = steps / 2 / 4;
            for (int q = 0; q < 4; q++)
                output.WriteLine($"  contexts {warm + q * steps / 4}..{warm + (q + 1) * steps / 4}: Attention speed on/off {t[0].Skip(q * q4).Take(q4).Sum() / t[1].Skip(q * q4).Take(q4).Sum():F3}, per-pair median {Med(t[0].Skip(q * q4).Take(q4).Zip(t[1].Skip(q * q4).Take(q4), (a, b) => a / b)):F3}");
        }
        finally { set(true); }   // every switch here is on by default
    }
}
