using System.Text.Json.Nodes;
using Hub.Tests;

namespace Hub.Peers.Tests;

/// <summary>
/// <c>hub bench --peer llamacpp</c> measures each engine's peak in its own phase, after the exports, and says which
/// exports it made; a second run reuses both caches.
/// </summary>
public class BenchPeerRssTests : IDisposable
{
    private readonly string _tmp = SharedDir.TempDir("hub-bench-peer-rss");

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [SkippableFact]
    public void Peer_bench_reports_exports_once_and_each_engine_as_baseline_plus_its_own_growth()
    {
        var src = SharedDir.Require("models/karpathy/tinyllamas/stories260K");
        var env = new Dictionary<string, string> { ["HUB_CACHE"] = _tmp, ["HF_HUB_OFFLINE"] = "1" };
        string[] args = ["bench", src, "--peer", "llamacpp", "--gguf-type", "q8_0", "--prompt-tokens", "4", "--new-tokens", "4", "--rounds", "1", "--threads", "1", "--json"];

        var first = HubCli.Run(env, args);
        Assert.True(first.ExitCode == 0, first.Stderr);
        var a = JsonNode.Parse(first.Stdout)!;
        Assert.True((double)a["export_seconds"]! > 0);
        Assert.True((double)a["gguf_export_seconds"]! > 0);
        if (OperatingSystem.IsLinux())
        {
            double baseline = (double)a["process_baseline_rss_mib"]!;
            foreach (var engine in new[] { "hub", "llamacpp" })
            {
                double peak = (double)a[engine]!["peak_rss_mib"]!, growth = (double)a[engine]!["peak_rss_growth_mib"]!;
                Assert.True(growth > 0, $"{engine}: no growth");
                Assert.True(Math.Abs(peak - (baseline + growth)) <= 0.11, $"{engine}: peak {peak} ≠ baseline {baseline} + growth {growth}");
            }
            Assert.True((double)a["peak_rss_both_engines_mib"]! >= baseline);
            // The between-rounds read probe's 256 MiB buffer is resident through the timed rounds but not counted.
            Assert.True((double)a["peak_rss_both_engines_mib"]! < baseline + 200, $"both engines {a["peak_rss_both_engines_mib"]} MiB over baseline {baseline} counts the probe buffer");
        }
        else Assert.Contains("cannot reset", (string)a["llamacpp"]!["peak_rss_mib_note"]!);

        var second = HubCli.Run(env, args);
        Assert.True(second.ExitCode == 0, second.Stderr);
        var b = JsonNode.Parse(second.Stdout)!;
        Assert.Null(b["export_seconds"]);
        Assert.Null(b["gguf_export_seconds"]);
        Assert.Equal((string?)a["gguf"], (string?)b["gguf"]);
        Assert.True((double)b["read_bandwidth_between_rounds_gb_s"]! > 0);
        foreach (var engine in new[] { "hub", "llamacpp" }) Assert.True((double)b[engine]!["decode_bandwidth_fraction_between_rounds"]! > 0);
    }
}
