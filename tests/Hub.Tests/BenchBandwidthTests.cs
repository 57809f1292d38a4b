using System.Text.Json.Nodes;
using Hub.Cli.Commands;
using Hub.Tests;

namespace Hub.Integration.Tests;

/// <summary>
/// The two halves of <c>hub bench</c>'s decode-bandwidth fraction: the bytes a decode step reads and the read probe
/// that stands for the machine's roof (no timing thresholds: only that the figures exist and count the right bytes).
/// </summary>
public sealed class BenchBandwidthTests : IDisposable
{
    private readonly string _tmp = SharedDir.TempDir("hub-bench-bw");

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [SkippableFact]
    public void Weight_bytes_per_token_leave_out_the_untied_embedding_table()
    {
        var dir = SharedDir.Require("fixtures/llama-tiny");
        var r = HubCli.Run(new Dictionary<string, string> { ["HUB_CACHE"] = _tmp, ["HF_HUB_OFFLINE"] = "1" },
            ["bench", dir, "--weight-format", "f32", "--prompt-tokens", "4", "--new-tokens", "4", "--rounds", "1", "--threads", "1", "--json"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var o = JsonNode.Parse(r.Stdout)!.AsObject();
        // llama-tiny (config.json): hidden 64, 2 layers, 8 heads of 8, 4 KV heads, ffn 172, vocab 512, untied head.
        // Per layer q 64·64 + k, v 32·64 + o 64·64 + gate, up, down 3·172·64 + two norms 2·64; then the final norm and
        // lm_head 512·64. The 512·64 embedding table is not read per token (one row is).
        long perLayer = 64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 172 * 64 + 2 * 64;
        long floats = 2 * perLayer + 64 + 512 * 64;
        Assert.Equal(floats * sizeof(float), (long)o["weight_bytes_per_token"]!);
        Assert.True((double)o["read_bandwidth_gb_s"]! > 0);
        Assert.True((double)o["decode_bandwidth_fraction"]! > 0);
    }

    [Fact]
    public void Read_probe_reads_whole_steps_records_passes_and_stops_its_threads()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ReadProbe(0));
        using var probe = new ReadProbe(3, 1 << 20);   // also disposed below: Dispose is idempotent
        long unit = 3L * ReadProbe.Streams * 128;
        Assert.Equal(0, probe.Bytes % unit);
        Assert.InRange(probe.Bytes, (1 << 20) - unit + 1, 1 << 20);
        Assert.True(probe.Pass() > 0);
        Assert.True(probe.Sample(settleMs: 0, passes: 2) > 0);
        Assert.Equal(3, probe.Passes.Count);
        Assert.Single(probe.Samples);
        Assert.Equal(probe.Samples[0], probe.Median);
        probe.Dispose();
        probe.Dispose(); // idempotent
        Assert.Throws<ObjectDisposedException>(() => probe.Pass());
        using var tiny = new ReadProbe(2, 1); // rounds up to one step per stream and thread
        Assert.Equal(2L * ReadProbe.Streams * 128, tiny.Bytes);
        Assert.True(tiny.Pass() > 0);
    }
}
