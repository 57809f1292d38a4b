using Hub.Generation;
using Hub.Tests;

namespace Hub.Integration.Tests;

/// <summary>
/// What loading a causal LM keeps resident: a caller that feeds token ids never pays for the tokenizer (issue #8's
/// peak-RSS target; docs/performance.md "Memory"), while the generation defaults still stop on the tokenizer's end ids.
/// </summary>
public class LoadMemoryTests : IDisposable
{
    private readonly string _tmp = SharedDir.TempDir("hub-loadmem");

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [SkippableFact]
    public void Token_id_forward_does_not_load_the_tokenizer_and_generation_config_still_merges_its_eos_ids()
    {
        var dir = SharedDir.Require("models/karpathy/tinyllamas/stories260K");
        using var lm = CausalLM.FromPretrained(dir, export: true, new ModelOptions { ExportCacheDir = _tmp });
        lm.Forward([1, 5, 9], 1, 3, default);
        lm.Forward([7], 1, 1, default);
        Assert.False(lm.TokenizerLoaded);

        var eos = lm.GenerationConfig.EosTokenId;
        Assert.True(lm.TokenizerLoaded);
        var tok = lm.Tokenizer;
        Assert.NotNull(tok);
        Assert.NotEmpty(tok.EosTokenIds);
        Assert.NotNull(eos);
        foreach (var id in tok.EosTokenIds) Assert.Contains(id, eos);
        Assert.Same(lm.GenerationConfig, lm.GenerationConfig);
        Assert.Same(tok, lm.Tokenizer); // the one instance the defaults were merged from
    }

    [SkippableFact]
    public void Unreadable_tokenizer_keeps_the_config_eos_ids_and_fails_where_text_is_encoded()
    {
        var src = SharedDir.Require("models/karpathy/tinyllamas/stories260K");
        string ir;
        using (var lm = CausalLM.FromPretrained(src, export: true, new ModelOptions { ExportCacheDir = _tmp })) ir = lm.Directory;
        var copy = Path.Combine(_tmp, "broken-tokenizer");
        Directory.CreateDirectory(copy);
        foreach (var f in Directory.EnumerateFiles(ir)) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
        var tokFiles = Directory.EnumerateFiles(copy, "tok*.bin").ToArray();
        Assert.NotEmpty(tokFiles);
        foreach (var f in tokFiles) File.WriteAllBytes(f, [1, 2, 3]); // truncated: not a tokenizer

        using var broken = CausalLM.FromPretrained(copy);
        using var good = CausalLM.FromPretrained(ir);
        var kept = broken.GenerationConfig.EosTokenId ?? []; // no throw: the defaults do without the tokenizer
        Assert.ThrowsAny<HubException>(() => broken.Tokenizer);
        var all = good.GenerationConfig.EosTokenId;
        Assert.NotNull(all);
        Assert.Equal(all.Where(id => !good.Tokenizer!.EosTokenIds.Contains(id) || kept.Contains(id)), kept);
    }
}
