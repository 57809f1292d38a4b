using System.Text.Json.Nodes;
using Hub.Cli.Commands;
using Hub.Tests;

namespace Hub.Integration.Tests;

/// <summary><c>hub bench --contexts</c>: per-context decode figures with the cache counters (no timing thresholds).</summary>
public sealed class BenchContextsTests : IDisposable
{
    private readonly string _tmp = SharedDir.TempDir("hub-bench-ctx");

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [SkippableFact]
    public void Contexts_bench_on_chatglm2_reports_zero_copied_cache_bytes_and_one_token_appended_per_step()
    {
        var dir = SharedDir.Require("fixtures/chatglm2-tiny");
        var r = HubCli.Run(new Dictionary<string, string> { ["HUB_CACHE"] = _tmp, ["HF_HUB_OFFLINE"] = "1" },
            ["bench", dir, "--contexts", "100,16", "--threads", "1", "--rounds", "1", "--json"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var o = JsonNode.Parse(r.Stdout)!.AsObject();
        var rows = o["contexts"]!.AsArray();
        Assert.Equal("F16", (string)o["kv_cache"]!);
        Assert.Equal([16, 100], rows.Select(x => (int)x!["context"]!).ToArray());
        foreach (var row in rows)
        {
            Assert.Equal(0, (double)row!["state_bytes_copied_per_step"]!);
            Assert.Equal(0, (long)row["gc_bytes_per_step"]!);
            // chatglm2-tiny: 2 layers × (K, V) × 2 query groups × 16 channels × 2 bytes (its f16 weights give an f16
            // cache) for the one new token.
            Assert.Equal(2 * 2 * 2 * 16 * 2, (long)row["state_bytes_appended_per_step"]!);
            Assert.InRange((double)row["attention_share"]!, 0.0, 1.0);
            Assert.True((double)row["ms_per_token"]! > 0);
        }
        // The attention work per token scales with the context: (100 + 1) / (16 + 1) cached positions.
        Assert.Equal(101.0 / 17.0, (double)rows[1]!["cache_bytes_read_per_token"]! / (double)rows[0]!["cache_bytes_read_per_token"]!, 6);
    }

    [Fact]
    public void Contexts_option_rejects_non_numbers()
    {
        Assert.Equal([64, 1024], BenchContexts.ParseContexts("1024, 64,64"));
        Assert.Throws<ArgumentException>(() => BenchContexts.ParseContexts("64,abc"));
        Assert.Throws<ArgumentException>(() => BenchContexts.ParseContexts("0"));
    }
}
