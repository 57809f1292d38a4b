using Hub.Runtime;

namespace Hub.Tests;

/// <summary>ModelOptions.KvCachePrecision end to end: Auto per export format, an explicit choice, the CLI flag.</summary>
public sealed class KvCacheOptionTests : IDisposable
{
    private readonly string _cache = SharedDir.TempDir("hub-kvcache");

    public void Dispose() { try { Directory.Delete(_cache, true); } catch (IOException) { } }

    [SkippableTheory]
    [InlineData(WeightFormat.F32, KvCachePrecision.F32)]
    [InlineData(WeightFormat.F16, KvCachePrecision.F16)]
    [InlineData(WeightFormat.BF16, KvCachePrecision.F16)]
    [InlineData(WeightFormat.Int8, KvCachePrecision.F16)]
    [InlineData(WeightFormat.Int4, KvCachePrecision.F16)]
    public void Auto_follows_the_weight_format_and_an_explicit_choice_wins(WeightFormat format, KvCachePrecision expected)
    {
        var src = SharedDir.Require("fixtures/llama-tiny");
        var options = new ModelOptions { ExportCacheDir = _cache, Threads = 1, WeightFormat = format, GroupSize = format == WeightFormat.Int4 ? 32 : null };
        using (var auto = CausalLM.FromPretrained(src, export: true, options))
            Assert.Equal(expected, auto.KvCachePrecision);
        var other = expected == KvCachePrecision.F32 ? KvCachePrecision.F16 : KvCachePrecision.F32;
        using var pinned = CausalLM.FromPretrained(src, export: true, new ModelOptions
        {
            ExportCacheDir = _cache, Threads = 1, WeightFormat = format, GroupSize = options.GroupSize, KvCachePrecision = other,
        });
        Assert.Equal(other, pinned.KvCachePrecision);
        // beam search regrows the cache for two rows: the recompiled model keeps the precision
        pinned.Generate([1, 2], new Hub.Generation.GenerationConfig { MaxNewTokens = 2, NumBeams = 2 });
        Assert.Equal(other, pinned.KvCachePrecision);
    }

    [Fact]
    public void Cli_rejects_an_unknown_kv_cache_value_naming_the_allowed_ones()
    {
        var env = new Dictionary<string, string> { ["HUB_CACHE"] = _cache, ["HF_HUB_OFFLINE"] = "1" };
        var bad = HubCli.Run(env, "generate", _cache, "--prompt-ids", "1", "--kv-cache", "q8");
        Assert.Equal(1, bad.ExitCode);
        Assert.Single(bad.Stderr.Trim().Split('\n'));
        Assert.Contains("--kv-cache 'q8'", bad.Stderr);
        Assert.Contains("auto, f32, f16", bad.Stderr);
    }

    [Theory]
    [InlineData("embed")]
    [InlineData("classify")]
    public void Encoder_commands_do_not_take_a_kv_cache_flag(string command)
    {
        // encoders keep no KV cache: the flag is refused by the parser instead of being accepted and ignored
        var env = new Dictionary<string, string> { ["HUB_CACHE"] = _cache, ["HF_HUB_OFFLINE"] = "1" };
        var r = HubCli.Run(env, command, _cache, "--text", "hi", "--kv-cache", "f16");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("--kv-cache", r.Stderr);
        Assert.DoesNotContain("--kv-cache", HubCli.Run(env, command, "--help").Stdout);
        Assert.Contains("--kv-cache", HubCli.Run(env, "generate", "--help").Stdout);
    }
}
