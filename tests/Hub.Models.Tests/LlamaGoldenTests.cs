using Hub.Converters;
using Hub.IR;
using Hub.Models.Llama;
using Hub.Tests;

namespace Hub.Models.Tests;

/// <summary>LLaMA-family fixtures against their PyTorch goldens, on the runtime and on the float64 reference.</summary>
public class LlamaGoldenTests
{
    public static TheoryData<string> Runners => new() { "runtime", "reference" };

    internal static LlamaRunner Runner(string kind, ModelExport export) => kind switch
    {
        "runtime" => new LlamaRuntimeRunner(export),
        "reference" => new LlamaReferenceRunner(export),
        _ => throw new ArgumentException(kind),
    };

    internal static ModelSource HfSource(string dir)
    {
        var cfgPath = Path.Combine(dir, "config.json");
        return new ModelSource { Directory = dir, Config = ConfigReader.Load(cfgPath), ConfigPath = cfgPath, Weights = CheckpointLoader.OpenFolder(dir) };
    }

    internal static ModelExport Export(ModelSource source) => new LlamaArchitecture().Build(source, ExportSettings.Default);

    internal static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        return best;
    }

    /// <summary>Max absolute difference, checked against <paramref name="tol"/> (the fixtures' 1e-4 by default).</summary>
    internal static void AssertClose(float[] expected, ReadOnlySpan<float> actual, string what, double tol = 1e-4)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0; int at = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            double err = Math.Abs(expected[i] - actual[i]);
            if (err > worst) { worst = err; at = i; }
        }
        Assert.True(worst <= tol, $"{what}: max error {worst:g3} at {at} (expected {(at >= 0 ? expected[at] : 0)}, got {(at >= 0 ? actual[at] : 0)})");
    }

    /// <summary>Every case's logits at every position, then the 20 greedy ids of case 0 through the cache.</summary>
    internal static void CheckGolden(string kind, ModelExport export, string goldenPath)
    {
        var cases = LlamaGoldenCase.Load(goldenPath);
        using var r = Runner(kind, export);
        foreach (var (c, ci) in cases.Select((c, i) => (c, i)))
        {
            r.Reset();
            int batch = c.InputIds.Length, seq = c.InputIds[0].Length;
            var logits = r.Forward(c.InputIds.SelectMany(x => x).ToArray(), batch, seq, 0);
            AssertClose(c.Logits.SelectMany(b => b.SelectMany(t => t)).ToArray(), logits, $"case {ci} logits");
        }
        var greedy = cases[0].GreedyIds!;
        r.Reset();
        var step = r.Forward(cases[0].InputIds[0], 1, cases[0].InputIds[0].Length, 1);
        var got = new List<int>();
        while (got.Count < greedy[0].Length)
        {
            got.Add(ArgMax(step));
            if (got.Count < greedy[0].Length) step = r.Forward([got[^1]], 1, 1, 1);
        }
        Assert.Equal(greedy[0], got);
    }

    [SkippableTheory]
    [MemberData(nameof(Runners))]
    public void Llama_tiny_sharded_bf16_matches_golden_logits_and_greedy_ids(string kind)
    {
        var dir = SharedDir.Require("fixtures/llama-tiny");
        var source = HfSource(dir);
        using var _ = source.Weights;
        CheckGolden(kind, Export(source), Path.Combine(dir, "golden.json"));
    }

    [SkippableTheory]
    [MemberData(nameof(Runners))]
    public void Cached_decoding_equals_a_full_forward(string kind)
    {
        var dir = SharedDir.Require("fixtures/llama-tiny");
        var source = HfSource(dir);
        using var _ = source.Weights;
        var export = Export(source);
        var ids = LlamaGoldenCase.Load(Path.Combine(dir, "golden.json"))[1].InputIds;   // batch of 2
        int batch = ids.Length, seq = ids[0].Length, vocab = 512;
        using var r = Runner(kind, export);
        var full = r.Forward(ids.SelectMany(x => x).ToArray(), batch, seq, 0);
        r.Reset();
        // Prefill 3 positions, then one token at a time.
        var pre = r.Forward(ids.SelectMany(x => x.Take(3)).ToArray(), batch, 3, 0);
        var stepped = new float[full.Length];
        for (int b = 0; b < batch; b++) Array.Copy(pre, b * 3 * vocab, stepped, b * seq * vocab, 3 * vocab);
        for (int t = 3; t < seq; t++)
        {
            var step = r.Forward(ids.Select(x => x[t]).ToArray(), batch, 1, 1);
            for (int b = 0; b < batch; b++) Array.Copy(step, b * vocab, stepped, (b * seq + t) * vocab, vocab);
        }
        AssertClose(full, stepped, "cached vs full", 1e-5);
    }

    [Fact]
    public void Runtime_matches_reference_with_biases_tied_head_wide_heads_and_scaled_rope()
    {
        var cfg = LlamaMemorySource.TinyConfig(tied: true, biases: true);
        cfg["head_dim"] = 16;   // q width 64 ≠ hidden 32
        cfg["rope_scaling"] = new System.Text.Json.Nodes.JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0 };
        using var src = LlamaMemorySource.RandomLlama(cfg, 11);
        var export = new LlamaArchitecture().Build(new ModelSource { Directory = "memory", Config = cfg, ConfigPath = "memory/config.json", Weights = src }, ExportSettings.Default);
        int[] ids = [5, 17, 98, 0, 42, 42, 7, 63, 2, 11, 30];
        using var runtime = Runner("runtime", export);
        using var reference = Runner("reference", export);
        var expected = reference.Forward(ids, 1, ids.Length, 0);
        AssertClose(expected, runtime.Forward(ids, 1, ids.Length, 0), "full forward");
        runtime.Reset();
        runtime.Forward(ids[..6], 1, 6, 1);
        for (int t = 6; t < ids.Length; t++)
            AssertClose(expected.AsSpan(t * 99, 99).ToArray(), runtime.Forward([ids[t]], 1, 1, 1), $"cached step {t}");
    }
}
