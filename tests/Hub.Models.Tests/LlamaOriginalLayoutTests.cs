using System.Text.Json;
using Hub.Converters;
using Hub.Tests;

namespace Hub.Models.Tests;

/// <summary>Original (interleaved-RoPE) layouts through the converters and the LLaMA builder's permutation hook.</summary>
public class LlamaOriginalLayoutTests
{
    public static TheoryData<string> Runners => LlamaGoldenTests.Runners;

    [SkippableTheory]
    [MemberData(nameof(Runners))]
    public void Llama_tiny_meta_converted_gives_llama_tiny_golden(string kind)
    {
        var dir = SharedDir.Require("fixtures/llama-tiny-meta");
        var golden = SharedDir.Require("fixtures/llama-tiny/golden.json");
        var source = MetaCheckpoint.Open(dir);
        using var _ = source.Weights;
        Assert.Equal(WeightLayout.InterleavedRope, source.Layout);
        LlamaGoldenTests.CheckGolden(kind, LlamaGoldenTests.Export(source), golden);
    }

    [SkippableTheory]
    [MemberData(nameof(Runners))]
    public void Meta_layout_without_the_permutation_gives_different_logits(string kind)
    {
        var dir = SharedDir.Require("fixtures/llama-tiny-meta");
        var meta = MetaCheckpoint.Open(dir);
        using var _ = meta.Weights;
        // The same tensors declared as Hugging Face layout: the builder's permutation hook does not run.
        var unpermuted = new ModelSource { Directory = meta.Directory, Config = meta.Config, ConfigPath = meta.ConfigPath, Weights = meta.Weights, Layout = WeightLayout.HuggingFace };
        var c = LlamaGoldenCase.Load(SharedDir.Require("fixtures/llama-tiny/golden.json"))[0];
        var expected = c.Logits[0].SelectMany(t => t).ToArray();
        using var r = LlamaGoldenTests.Runner(kind, LlamaGoldenTests.Export(unpermuted));
        var logits = r.Forward(c.InputIds[0], 1, c.InputIds[0].Length, 0);
        double worst = expected.Zip(logits).Max(p => Math.Abs(p.First - p.Second));
        Assert.True(worst > 1e-2, $"without the permutation the logits should differ from the golden, max diff {worst:g3}");
        // The first position attends only to itself, so RoPE cancels there: the difference comes from later positions.
        int vocab = c.Logits[0][0].Length;
        Assert.True(expected.Take(vocab).Zip(logits.Take(vocab)).Max(p => Math.Abs(p.First - p.Second)) < 1e-4);
    }

    [SkippableTheory]
    [MemberData(nameof(Runners))]
    public void Aquila_flagai_converted_matches_its_golden(string kind)
    {
        var dir = SharedDir.Require("fixtures/aquila-tiny-flagai");
        var source = FlagAiCheckpoint.Open(dir);
        using var _ = source.Weights;
        LlamaGoldenTests.CheckGolden(kind, LlamaGoldenTests.Export(source), Path.Combine(dir, "golden.json"));
    }

    [SkippableTheory]
    [MemberData(nameof(Runners))]
    public void Stories260K_llama2c_matches_run_c_logits_and_greedy_ids(string kind)
    {
        var dir = SharedDir.Require("models/karpathy/tinyllamas/stories260K");
        var source = Llama2cCheckpoint.Open(Path.Combine(dir, "stories260K.bin"));
        using var _ = source.Weights;
        using var r = LlamaGoldenTests.Runner(kind, LlamaGoldenTests.Export(source));
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "golden.json")));
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            var prompt = c.GetProperty("prompt_ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            var greedy = c.GetProperty("greedy_ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            var logits = c.GetProperty("logits").EnumerateObject().ToDictionary(p => int.Parse(p.Name), p => p.Value.EnumerateArray().Select(x => x.GetSingle()).ToArray());
            var what = $"prompt \"{c.GetProperty("prompt").GetString()}\"";
            r.Reset();
            // run.c: positions 0..P-2 feed the prompt, then the argmax at each position is the next token; BOS stops.
            var step = r.Forward(prompt, 1, prompt.Length, 1);
            int pos = prompt.Length - 1;
            var got = new List<int>();
            while (got.Count < 80)
            {
                if (logits.TryGetValue(pos, out var expected)) LlamaGoldenTests.AssertClose(expected, step, $"{what}: logits at position {pos}");
                int next = LlamaGoldenTests.ArgMax(step);
                if (next == 1) break;
                got.Add(next);
                step = r.Forward([next], 1, 1, 1);
                pos++;
            }
            Assert.Equal(greedy, got);
        }
    }

    [SkippableFact]
    public void Meta_params_disagreeing_with_the_checkpoint_throw_naming_the_tensor()
    {
        var src = SharedDir.Require("fixtures/llama-tiny-meta");
        var dir = SharedDir.TempDir("hub-llama-meta");
        try
        {
            File.Copy(Path.Combine(src, "consolidated.00.pth"), Path.Combine(dir, "consolidated.00.pth"));
            // 8 kv heads where the checkpoint has 4: wk/wv hold half the rows params.json now implies.
            File.WriteAllText(Path.Combine(dir, "params.json"), File.ReadAllText(Path.Combine(src, "params.json")).Replace("\"n_kv_heads\": 4", "\"n_kv_heads\": 8"));
            var e = Assert.ThrowsAny<HubException>(() =>
            {
                var source = MetaCheckpoint.Open(dir);
                using var _ = source.Weights;
                LlamaGoldenTests.Export(source);
            });
            Assert.IsType<CheckpointFormatException>(e);
            Assert.Matches("attention\\.wk|self_attn\\.k_proj", e.Message);
            Assert.Contains("[32, 64]", e.Message); // the stored shape
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [SkippableFact]
    public void Aquila_hub_config_resolves_to_llama_and_runs_llama_weights()
    {
        var dir = SharedDir.Require("fixtures/llama-tiny");
        var source = LlamaGoldenTests.HfSource(dir);
        using var _ = source.Weights;
        // An Aquila hub repo declares model_type "aquila" / AquilaModel over LLaMA tensor names.
        source.Config["model_type"] = "aquila";
        source.Config["architectures"] = new System.Text.Json.Nodes.JsonArray("AquilaModel");
        var arch = ModelRegistry.Resolve(source.Config, source.ConfigPath);
        Assert.Equal("llama", arch.Name);
        var export = arch.Build(source, ExportSettings.Default);
        Assert.Equal("aquila", export.Graph.ModelType);
        LlamaGoldenTests.CheckGolden("runtime", export, Path.Combine(dir, "golden.json"));
    }

    [SkippableTheory]
    [InlineData("fixtures/llama-tiny", WeightLayout.HuggingFace)]
    [InlineData("fixtures/llama-tiny-meta", WeightLayout.InterleavedRope)]
    [InlineData("fixtures/aquila-tiny-flagai", WeightLayout.InterleavedRope)]
    [InlineData("models/karpathy/tinyllamas/stories260K/stories260K.bin", WeightLayout.InterleavedRope)]
    public void Every_detected_llama_source_resolves_to_the_llama_builder(string relative, WeightLayout layout)
    {
        var source = SourceDetector.Detect(SharedDir.Require(relative));
        using var _ = source.Weights;
        Assert.Equal(layout, source.Layout);
        var arch = ModelRegistry.Resolve(source.Config, source.ConfigPath);
        Assert.Equal("llama", arch.Name);
        var export = arch.Build(source, ExportSettings.Default);
        Assert.Equal("causal_lm", (string?)export.Graph.Metadata["task"]);
        Assert.Equal(layout == WeightLayout.InterleavedRope ? "interleaved_rope" : "hugging_face", (string?)export.Graph.Metadata["source_layout"]);
    }
}
