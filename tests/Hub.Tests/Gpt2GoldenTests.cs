using Hub.Generation;
using Hub.Tests;

namespace Hub.Integration.Tests;

/// <summary>GPT-2 end to end through the public API against the PyTorch goldens in shared/fixtures.</summary>
public class Gpt2GoldenTests : IDisposable
{
    private readonly string _cache = SharedDir.TempDir("hub-export");

    public void Dispose() { try { Directory.Delete(_cache, true); } catch (IOException) { } }

    // golden logits from transformers' float32 cache; gpt2-tiny-bin's half-precision weights would make Auto pick f16
    private ModelOptions Options => new() { ExportCacheDir = _cache, Threads = 2, KvCachePrecision = Hub.Runtime.KvCachePrecision.F32 };

    [SkippableTheory]
    [InlineData("gpt2-tiny")]
    [InlineData("gpt2-tiny-bin")]
    public void Logits_match_golden_at_every_position(string fixture)
    {
        var dir = SharedDir.Require($"fixtures/{fixture}");
        var golden = Golden.Load(Path.Combine(dir, "golden.json"));
        using var lm = CausalLM.FromPretrained(dir, export: true, Options);
        foreach (var c in golden["cases"]!.AsArray())
        {
            var ids = Golden.Ints2(c!["input_ids"]);
            for (int b = 0; b < ids.Length; b++)
            {
                var logits = lm.Logits(ids[b]);
                var first8 = c["logits_first8"]![b]!.AsArray();
                for (int t = 0; t < ids[b].Length; t++)
                    Golden.Close(Golden.Floats(first8[t]), logits[t].AsSpan(0, 8), 1e-4f, $"{fixture} row {b} pos {t}");
                Golden.Close(Golden.Floats(c["logits_last"]![b]), logits[^1], 1e-4f, $"{fixture} row {b} last");
                if (c["argmax_per_position"] is { } am)
                    Assert.Equal(Golden.Ints(am[b]), logits.Select(r => Golden.ArgMax(r)).ToArray());
            }
        }
    }

    [SkippableTheory]
    [InlineData("gpt2-tiny")]
    [InlineData("gpt2-tiny-bin")]
    public void Greedy_ids_match_golden(string fixture)
    {
        var dir = SharedDir.Require($"fixtures/{fixture}");
        var golden = Golden.Load(Path.Combine(dir, "golden.json"));
        var case0 = golden["cases"]![0]!;
        using var lm = CausalLM.FromPretrained(dir, export: true, Options);
        var ids = lm.Generate(Golden.Ints2(case0["input_ids"])[0], new GenerationConfig { MaxNewTokens = 20, EosTokenId = [] });
        Assert.Equal(Golden.Ints2(case0["greedy_ids"])[0], ids);
    }

    [SkippableFact]
    public void Batched_forward_matches_golden_last_logits()
    {
        var dir = SharedDir.Require("fixtures/gpt2-tiny");
        var golden = Golden.Load(Path.Combine(dir, "golden.json"));
        var batchCase = golden["cases"]!.AsArray().First(c => c!["input_ids"]!.AsArray().Count == 2)!;
        var ids = Golden.Ints2(batchCase["input_ids"]);
        using var lm = CausalLM.FromPretrained(dir, export: true, Options);
        lm.Reset();
        var logits = lm.Forward(ids.SelectMany(x => x).ToArray(), 2, ids[0].Length, default).ToArray();
        for (int b = 0; b < 2; b++)
            Golden.Close(Golden.Floats(batchCase["logits_last"]![b]), logits.AsSpan(b * lm.VocabSize, lm.VocabSize), 1e-4f, $"batch row {b}");
    }

    [SkippableFact]
    public void Incremental_decoding_with_the_cache_equals_a_full_forward()
    {
        var dir = SharedDir.Require("fixtures/gpt2-tiny");
        using var lm = CausalLM.FromPretrained(dir, export: true, Options);
        int[] ids = [15496, 11, 616, 3290, 318, 13779, 11, 290, 340];
        var full = lm.Logits(ids);
        lm.Reset();
        lm.Forward(ids.AsSpan(0, 4), 1, 4, default);
        for (int t = 4; t < ids.Length; t++)
        {
            var step = lm.Forward(ids.AsSpan(t, 1), 1, 1, default);
            Golden.Close(full[t], step, 1e-5f, $"cached step {t}");
        }
    }

    [SkippableFact]
    public void Steady_state_decode_allocates_nothing()
    {
        var dir = SharedDir.Require("fixtures/gpt2-tiny");
        using var lm = CausalLM.FromPretrained(dir, export: true, Options);
        lm.Reset();
        int[] prompt = [15496, 11, 616];
        var token = new int[1];
        var logits = lm.Forward(prompt, 1, prompt.Length, default);
        token[0] = Golden.ArgMax(logits);
        for (int i = 0; i < 3; i++) token[0] = Golden.ArgMax(lm.Forward(token, 1, 1, default)); // warm up
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 16; i++) token[0] = Golden.ArgMax(lm.Forward(token, 1, 1, default));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
    }

    [SkippableFact]
    public void Save_then_load_without_export_gives_identical_logits()
    {
        var dir = SharedDir.Require("fixtures/gpt2-tiny");
        var saved = Path.Combine(_cache, "saved");
        int[] ids = [464, 2068, 7586, 21831];
        float[][] before;
        using (var lm = CausalLM.FromPretrained(dir, export: true, Options))
        {
            before = lm.Logits(ids);
            lm.Save(saved);
        }
        Assert.True(File.Exists(Path.Combine(saved, "model.ir.json")));
        Assert.True(File.Exists(Path.Combine(saved, "vocab.json")));
        using var again = CausalLM.FromPretrained(saved);
        var after = again.Logits(ids);
        for (int t = 0; t < ids.Length; t++) Assert.Equal(before[t], after[t]);
        Assert.Equal("Hello, my dog is cute", again.Tokenizer!.Decode([15496, 11, 616, 3290, 318, 13779]));
    }

    [SkippableFact]
    public void Second_load_reuses_the_cached_export()
    {
        var dir = SharedDir.Require("fixtures/gpt2-tiny");
        string first;
        using (var lm = CausalLM.FromPretrained(dir, export: true, Options)) first = lm.Directory;
        var stamp = File.GetLastWriteTimeUtc(Path.Combine(first, "model.ir.bin"));
        using var again = CausalLM.FromPretrained(dir, export: true, Options);
        Assert.Equal(first, again.Directory);
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(Path.Combine(first, "model.ir.bin")));
    }

    [SkippableFact]
    public void Checkpoint_without_export_flag_is_rejected_with_advice()
    {
        var dir = SharedDir.Require("fixtures/gpt2-tiny");
        var e = Assert.Throws<HubException>(() => CausalLM.FromPretrained(dir, export: false, Options));
        Assert.Contains("export", e.Message);
    }

    [SkippableFact]
    public void Text_prompt_tokenizes_like_the_golden_ids()
    {
        var dir = SharedDir.Require("fixtures/gpt2-tiny");
        var golden = Golden.Load(Path.Combine(dir, "golden.json"));
        using var lm = CausalLM.FromPretrained(dir, export: true, Options);
        foreach (var c in golden["cases"]!.AsArray().Where(c => c!["text"] is not null))
            Assert.Equal(Golden.Ints2(c!["input_ids"])[0], lm.Tokenizer!.Encode((string)c["text"]!));
    }

    [SkippableFact]
    public void Token_id_outside_vocabulary_is_a_typed_error()
    {
        var dir = SharedDir.Require("fixtures/gpt2-tiny");
        using var lm = CausalLM.FromPretrained(dir, export: true, Options);
        var e = Assert.Throws<ModelInputException>(() => lm.Logits([1, 50257]));
        Assert.Contains("50257", e.Message);
        Assert.Throws<ModelInputException>(() => lm.Logits([-1]));
    }

    [SkippableFact]
    public void Prompt_longer_than_the_context_is_a_typed_error()
    {
        var dir = SharedDir.Require("fixtures/gpt2-tiny");
        using var lm = CausalLM.FromPretrained(dir, export: true, Options);
        var e = Assert.Throws<ModelInputException>(() => lm.Logits(Enumerable.Repeat(11, 129).ToArray()));
        Assert.Contains("128", e.Message);
    }

    [SkippableFact]
    public void Config_missing_a_required_field_names_it()
    {
        var src = SharedDir.Require("fixtures/gpt2-tiny");
        var dir = Path.Combine(_cache, "broken");
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(src)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        var cfg = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!.AsObject();
        cfg.Remove("n_embd");
        File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
        var e = Assert.Throws<ConfigException>(() => CausalLM.FromPretrained(dir, export: true, Options));
        Assert.Equal("n_embd", e.Field);
        Assert.Contains("config.json", e.Message);
    }
}

public class Gpt2BeamTests : IDisposable
{
    private readonly string _cache = SharedDir.TempDir("hub-beam");

    public void Dispose() { try { Directory.Delete(_cache, true); } catch (IOException) { } }

    [SkippableFact]
    public void Beam_search_grows_the_cache_rows_and_one_beam_equals_greedy()
    {
        var dir = SharedDir.Require("fixtures/gpt2-tiny");
        using var lm = CausalLM.FromPretrained(dir, export: true, new ModelOptions { ExportCacheDir = _cache });
        int[] prompt = [15496, 11, 616, 3290, 318, 13779];
        var greedy = lm.Generate(prompt, new GenerationConfig { MaxNewTokens = 8, EosTokenId = [] });
        Assert.Equal(greedy, lm.Generate(prompt, new GenerationConfig { MaxNewTokens = 8, NumBeams = 1, EosTokenId = [] }));
        long before = lm.ForwardCalls;
        var beams = lm.Generate(prompt, new GenerationConfig { MaxNewTokens = 8, NumBeams = 4, EosTokenId = [] });
        Assert.Equal(8, beams.Length);
        Assert.Equal(8, lm.ForwardCalls - before); // one prefill + 7 steps: the prompt is never re-run
    }
}
